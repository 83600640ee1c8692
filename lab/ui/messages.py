"""Provides the messages the engine's threads post to the UI."""

from __future__ import annotations

from textual.message import Message


class Analysed(Message):
    """A message got a (new) verdict. Bursts are coalesced by the app before the list repaints."""

    def __init__(self, message_id: int) -> None:
        super().__init__()
        self.message_id = message_id


class SamplesSent(Message):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines


class RulesChanged(Message):
    """The rules file was reloaded, or an edit could not be loaded (`bad`: the old rules stay in use)."""

    def __init__(self, text: str, bad: bool) -> None:
        super().__init__()
        self.text = text
        self.bad = bad
