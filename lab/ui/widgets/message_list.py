"""Provides MessageList: the captured messages, newest first, drawing only the rows on screen.

Textual's DataTable took about 20 s to first paint 100,000 rows; this list renders visible lines only
(the Line API) and pages rows in from the store through ListSource.
"""

from __future__ import annotations

from datetime import UTC

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from lab.retries import JudgedGroup
from lab.store import Summary
from lab.ui.format import STYLE, SYMBOL, WORD, one_line
from lab.ui.listsource import ListSource


def key_of(row: Summary | JudgedGroup) -> int:
    """What the list selects by: a message's id, or a refused group's (negative) key."""
    return row.id if isinstance(row, Summary) else row.key


def columns(width: int) -> list[tuple[str, int]]:
    """Column widths for a terminal width; the subject takes what is left, narrow screens drop To first."""
    if width >= 120:
        return [("", 7), ("time", 8), ("listener", 10), ("from", 30), ("to", 26)]
    if width >= 90:
        return [("", 7), ("time", 8), ("listener", 10), ("from", 28)]
    return [("", 7), ("time", 8), ("from", 22)]


class MessageList(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
    ]

    DEFAULT_CSS = """
    MessageList { height: 1fr; scrollbar-size-vertical: 1; }
    """

    cursor: reactive[int] = reactive(0, always_update=True)

    class Highlighted(Message):
        """The cursor moved onto a message, or a refused group when negative (None when the list is empty)."""

        def __init__(self, message_id: int | None) -> None:
            super().__init__()
            self.message_id = message_id

    def __init__(self, source: ListSource, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.selected_id: int | None = None

    # data -----------------------------------------------------------------------------------------

    def reload(self, keep_selection: bool = True) -> None:
        """Re-read the count and rows; the cursor stays on the same message when it is still listed."""
        self.source.invalidate()
        count = self.source.count()
        self._set_rows(count + 1)  # +1: the column header line
        index = None
        if keep_selection and self.selected_id is not None:
            index = self.source.index_of(self.selected_id)
        if index is None:
            index = min(self.cursor, max(0, count - 1))
        old_top = self.scroll_offset.y
        shift = index - self.cursor
        self._set_cursor(index, announce=self.selected_id is None or self._row_id(index) != self.selected_id)
        if shift > 0 and old_top > 0:  # new mail above: keep the same rows on screen
            self.scroll_to(y=old_top + shift, animate=False)
        self.refresh()

    def _set_rows(self, height: int) -> None:
        """The list's virtual height. Setting `virtual_size` lays out the whole screen again (every widget
        measured: 30-60 ms with a message's detail shown), which new mail did on every tick. Unless the
        scrollbar comes or goes, the rows' count is all that changed: the scrollbar is told, nothing else."""
        new = Size(self.size.width, height)
        old = self.virtual_size
        view = self.scrollable_content_region.height
        if not view or new.width != old.width or (old.height > view) != (height > view):
            self.virtual_size = new
            return
        self.set_reactive(MessageList.virtual_size, new)
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.window_virtual_size = height
            self.vertical_scrollbar.refresh()

    def _row_id(self, index: int) -> int | None:
        row = self.source.row(index)
        return key_of(row) if row else None

    @property
    def count(self) -> int:
        return self.source.count()

    # cursor ---------------------------------------------------------------------------------------

    def _set_cursor(self, index: int, announce: bool = True) -> None:
        count = self.source.count()
        index = max(0, min(index, count - 1)) if count else 0
        self.cursor = index
        new_id = self._row_id(index) if count else None
        changed = new_id != self.selected_id
        self.selected_id = new_id
        if announce or changed:
            self.post_message(self.Highlighted(new_id))
        self._scroll_cursor_into_view()

    def _scroll_cursor_into_view(self) -> None:
        height = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self._set_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        self._set_cursor(0 if where == 0 else self.source.count() - 1)

    def watch_cursor(self) -> None:
        self.refresh()

    def on_click(self, event) -> None:
        y = event.y + self.scroll_offset.y - 1
        if 0 <= y < self.source.count():
            self._set_cursor(y)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.source.count() + 1)

    # drawing --------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._header(width)
        index = self.scroll_offset.y + y - 1
        row = self.source.row(index)
        if row is None:
            return Strip.blank(width)
        selected = index == self.cursor
        if isinstance(row, JudgedGroup):
            return self._group_row(row, width, selected)
        return self._row(row, width, selected)

    def _header(self, width: int) -> Strip:
        style = Style(bold=True, dim=True, underline=True)
        text = "".join(name.ljust(w + 1) for name, w in columns(width)) + "subject"
        return Strip([Segment(text[:width].ljust(width), style)])

    def _row(self, row: Summary, width: int, selected: bool) -> Strip:
        level = row.level
        badge = f"{SYMBOL[level]} {WORD[level]}"
        time = row.received_at[11:19]
        values = {
            "": (badge, Style.parse(STYLE[level])),
            "time": (time, Style(dim=True)),
            "listener": (row.listener, Style()),
            "from": (row.from_header or row.mail_from or "<>", Style()),
            "to": (row.to_header or ", ".join(row.rcpt_to), Style()),
        }
        cells = [(one_line(values[name][0], w).ljust(w + 1), values[name][1]) for name, w in columns(width)]
        tries = self.source.tries(row.id)
        if tries is not None:  # accepted after refusals: how many it took
            cells.append((f"↻{tries.tries} ", Style(bold=True, color="yellow")))
        used = sum(len(text) for text, _ in cells)
        cells.append((one_line(row.subject or "(no subject)", max(0, width - used)), Style(bold=True)))
        return self._strip(cells, width, selected)

    def _group_row(self, judged: JudgedGroup, width: int, selected: bool) -> Strip:
        """A sender and recipient refused and not (yet) delivered: the last reply code, who, and what it was told."""
        group = judged.group
        last = judged.refusals[-1]
        code = last.code
        colour = "red" if (code or 0) >= 500 else "yellow"
        values = {
            "": (f"⊘ {code or '---'}", Style(bold=True, color=colour)),
            "time": (last.at.astimezone(UTC).strftime("%H:%M:%S"), Style(dim=True)),
            "listener": (last.listener.value, Style()),
            "from": (f"<{group.mail_from}>" if group.mail_from is not None else f"client {group.client_ip}", Style()),
            "to": (group.rcpt or "", Style()),
        }
        cells = [(one_line(values[name][0], w).ljust(w + 1), values[name][1]) for name, w in columns(width)]
        if width < 120 and group.rcpt:  # no To column: the recipient leads the description
            cells.append((one_line(f"→ {group.rcpt} "), Style()))
        used = sum(len(text) for text, _ in cells)
        n = judged.tries
        text = f"refused {n}×, not delivered: {judged.last_reply or 'closed without a reply'}"
        cells.append((one_line(text, max(0, width - used)), Style(italic=True, color=colour)))
        return self._strip(cells, width, selected)

    def _strip(self, cells: list[tuple[str, Style]], width: int, selected: bool) -> Strip:
        segments = []
        base = Style(reverse=True) if selected and self.has_focus else (Style(bgcolor="grey23") if selected else None)
        for text, style in cells:
            segments.append(Segment(text, style + base if base else style))
        line = Strip(segments).crop(0, width)
        if line.cell_length < width:
            line = Strip([*line, Segment(" " * (width - line.cell_length), base)])
        return line

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
