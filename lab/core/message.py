"""Provides a tolerant, header-first view of raw message bytes that never raises on broken mail.

The standard library's `email.policy.default` is slow and raises on some real messages, so headers are
split here directly from the bytes; a problem in the mail becomes an entry in `problems`, never an
exception.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses
from functools import cached_property

from lab.core.model import domain_of

_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 ftext


@dataclass(frozen=True, slots=True)
class Header:
    """One header field: the name as written and the value raw (unfolded) and decoded."""

    name: str
    raw: str  # unfolded, bytes decoded as UTF-8 with undecodable bytes escaped
    value: str  # RFC 2047 decoded, for humans
    key: str = ""  # the name in lower case, what lookups compare (made once: checks ask hundreds of times)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name.lower())


@dataclass(frozen=True, slots=True)
class Mailbox:
    display_name: str
    address: str

    @property
    def domain(self) -> str | None:
        return domain_of(self.address)

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]


class ParsedMessage:
    """Headers and body of a raw message, with the structural problems met while splitting it."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.problems: list[str] = []
        head, self.body = _split(raw)
        self.header_bytes = head
        self.headers: tuple[Header, ...] = tuple(self._parse_headers(head))

    def _parse_headers(self, head: bytes):
        if not head:
            if self.raw.strip():
                self.problems.append("the message has no header section")
            return
        for line in _fields(head):
            name, sep, value = line.partition(b":")
            if not sep or not _NAME.match(name):
                shown = line[:60].decode("utf-8", "backslashreplace")
                self.problems.append(f"header line is not 'Name: value': {shown!r}")
                continue
            raw = _FOLD.sub(b"", value).strip(b" \t\r\n").decode("utf-8", "surrogateescape")
            text = name.decode("ascii")
            yield Header(text, raw, decode_words(raw), text.lower())

    @cached_property
    def _by_key(self) -> dict[str, list[Header]]:
        index: dict[str, list[Header]] = {}
        for h in self.headers:
            index.setdefault(h.key, []).append(h)
        return index

    def get_all(self, name: str) -> list[Header]:
        return list(self._by_key.get(name.lower(), ()))

    def first(self, name: str) -> str | None:
        found = self._by_key.get(name.lower())
        return found[0].value if found else None

    def count(self, name: str) -> int:
        return len(self._by_key.get(name.lower(), ()))

    @cached_property
    def from_mailboxes(self) -> list[Mailbox]:
        """Every mailbox in every From field (RFC 5322 allows several; DMARC wants exactly one)."""
        return [m for h in self.get_all("from") for m in parse_mailboxes(h.raw)]

    @cached_property
    def from_mailbox(self) -> Mailbox | None:
        boxes = self.from_mailboxes
        return boxes[0] if len(boxes) == 1 else None

    def summary(self) -> dict[str, str]:
        """The few fields a message list shows."""
        return {
            "from": self.first("from") or "",
            "to": self.first("to") or "",
            "subject": self.first("subject") or "",
            "message_id": self.first("message-id") or "",
            "date": self.first("date") or "",
            "from_address": self.from_mailbox.address.lower() if self.from_mailbox else "",
        }


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line, CRLF or bare LF, whichever comes first."""
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw.partition(b"\n")[2]
    marks = ((raw.find(b"\r\n\r\n"), 4), (raw.find(b"\n\n"), 2), (raw.find(b"\n\r\n"), 3))
    candidates = [(i, n) for i, n in marks if i >= 0]
    if not candidates:
        return raw, b""
    i, n = min(candidates)
    return raw[: i + n], raw[i + n :]


def _fields(head: bytes) -> list[bytes]:
    """Header fields with their continuation lines, line endings kept for unfolding.

    Lines are gathered per field and joined once: appending to a growing bytes object made a field folded
    over 50,000 lines cost quadratic time.
    """
    fields: list[list[bytes]] = []
    for line in head.split(b"\n"):  # a bare CR is text inside a line, as receivers treat it
        if line.strip(b"\r\n") == b"":
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"\n".join(f).rstrip(b"\r\n") for f in fields]


# Codecs Python knows but no mail charset means: punycode decodes in quadratic time (seconds for 100 KB),
# idna and undefined raise, and the bytes-to-bytes or str-to-str codecs (base64, rot13, zlib) are not text.
_UNSAFE_CODECS = frozenset({"punycode", "idna", "undefined", "unicode-escape", "raw-unicode-escape"})
_WORD_CHARSET = re.compile(r"=\?([^?*\s]+)(?:\*[^?\s]*)?\?[bBqQ]\?")


def usable_charset(name: str | None) -> str | None:
    """The codec name for a mail charset when Python can decode it safely and in linear time, else None."""
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip('"'))
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _UNSAFE_CODECS:
        return None
    return info.name


def decode_words(raw: str) -> str:
    """Decode RFC 2047 encoded-words; anything undecodable is kept as written."""
    text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in text:
        return text
    if any(usable_charset(cs) is None for cs in set(_WORD_CHARSET.findall(text))):
        return text  # an unknown or unsafe charset: shown as written, as for any undecodable word
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # noqa: BLE001 - hostile encoded-words must never raise
        return text


def parse_mailboxes(raw: str) -> list[Mailbox]:
    """Mailboxes in an address-list field; groups are flattened, unparseable parts dropped."""
    text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        pairs = getaddresses([text])
    except Exception:  # noqa: BLE001
        return []
    return [Mailbox(decode_words(name), addr) for name, addr in pairs if addr and "@" in addr]
