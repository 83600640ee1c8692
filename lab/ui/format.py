"""Provides how the UI shows levels and mail-supplied text: symbols that read without colour, escaped text."""

from __future__ import annotations

from lab.core.results import Level
from lab.textsafe import visible

SYMBOL = {Level.PASS: "✓", Level.INFO: "·", Level.WARN: "!", Level.FAIL: "✗", None: "…"}
STYLE = {Level.PASS: "bold green", Level.INFO: "dim", Level.WARN: "bold yellow", Level.FAIL: "bold red",
         None: "dim"}
WORD = {Level.PASS: "pass", Level.INFO: "info", Level.WARN: "warn", Level.FAIL: "FAIL", None: "new"}


def one_line(text: str, width: int | None = None) -> str:
    """Mail-supplied text for a single cell: escaped, then cut to `width` with an ellipsis."""
    text = visible(" ".join(text.split()) if "\n" in text or "\r" in text else text)
    if width is not None and len(text) > width:
        return text[: max(0, width - 1)] + "…"
    return text
