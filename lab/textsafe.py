"""Provides `visible()`: text made safe for a terminal, with every control or invisible character shown escaped.

Captured mail is hostile input. Escape sequences (CSI, OSC 52 clipboard writes), C0/C1 controls, bidi
overrides and zero-width characters must never reach a terminal raw, in the TUI or in CLI output.
"""

from __future__ import annotations

import re

_BIDI_AND_INVISIBLE = {
    "\u061c", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d",
    "\u202e", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064", "\u2066", "\u2067", "\u2068", "\u2069",
    "\ufeff", "\u00ad", "\u180e", "\u2028", "\u2029",
}
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f" + "".join(sorted(_BIDI_AND_INVISIBLE)) + "\ud800-\udfff\U000e0000-\U000e007f]"
)


def visible(text: str, keep_newlines: bool = False) -> str:
    """Escape everything that is not printable; tabs and (optionally) newlines stay."""
    if keep_newlines:
        text = text.replace("\r\n", "\n")
    else:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    if code == 0x1B:
        return "␛"
    if code < 0x20:
        return f"^{chr(code + 0x40)}"
    if 0xD800 <= code <= 0xDFFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}" if code >= 0xDC80 else "\\ufffd"
    return f"<U+{code:04X}>"


def shown(text: str, limit: int = 200) -> str:
    """One line of mail-supplied text for a summary or evidence: escaped and capped at `limit` characters."""
    if len(text) <= limit and text.isprintable():  # the common case: nothing to escape
        return text
    return visible(text[:limit]) + ("…" if len(text) > limit else "")
