"""Provides the other message tabs: Headers, Text, Parts, Raw and Session. Every byte from the mail is escaped."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static, Tree

from lab.core import mime
from lab.core.message import ParsedMessage
from lab.textsafe import visible

RAW_LIMIT = 512 * 1024  # beyond this the Raw tab shows the start; `e` exports the whole message
# Textual lays out every line of a Static when it is shown (about 0.3 ms a line here), so 10,000 header fields
# froze the UI for 5 s and a body of empty lines for minutes. Each pane shows at most this much; the whole
# message is one `e` (export) or `maillab show ID --raw` away.
MAX_LINES = 1000
TEXT_LIMIT = 256 * 1024
MAX_PROBLEMS = 20
MAX_LINKS = 100


def _head(text: str, lines: int = MAX_LINES, chars: int = TEXT_LIMIT) -> tuple[str, bool]:
    """The start of `text`: at most `lines` lines and `chars` characters; True when something was cut."""
    cut = text[:chars]
    end = -1
    for _ in range(lines):
        end = cut.find("\n", end + 1)
        if end < 0:
            break
    else:
        cut = cut[:end + 1]
    return cut, len(cut) < len(text)


class TextPane(VerticalScroll):
    """A scrolling pane holding one Static; `show()` replaces its content."""

    DEFAULT_CSS = "TextPane > Static { padding: 0 1; width: 100%; }"

    def compose(self):
        yield Static("")

    def set(self, renderable) -> None:
        self.query_one(Static).update(renderable)
        self.scroll_home(animate=False)


class HeadersView(TextPane):
    def show(self, raw: bytes) -> None:
        msg = ParsedMessage(raw)
        text = Text()
        budget = TEXT_LIMIT
        for n, h in enumerate(msg.headers):
            if n >= MAX_LINES or budget <= 0:
                text.append(f"… {len(msg.headers) - n:,} more header fields: press e to export the whole message\n",
                            style="bold")
                break
            value, cut = _head(h.value, lines=MAX_LINES, chars=budget)
            text.append(visible(h.name[:200]) + ("…" if len(h.name) > 200 else ""), style="bold cyan")
            text.append(": ")
            text.append(visible(value) + ("…" if cut else "") + "\n")
            budget -= len(value) + len(h.name)
            if h.value != h.raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"):
                raw_value, cut = _head(h.raw, lines=MAX_LINES, chars=max(0, budget))
                text.append("    raw: " + visible(raw_value) + ("…" if cut else "") + "\n", style="dim")
                budget -= len(raw_value)
        for problem in msg.problems[:MAX_PROBLEMS]:
            text.append(f"! {visible(problem)}\n", style="yellow")
        if len(msg.problems) > MAX_PROBLEMS:
            text.append(f"! … and {len(msg.problems) - MAX_PROBLEMS:,} more problems\n", style="yellow")
        self.set(text)


class BodyView(TextPane):
    def show(self, raw: bytes) -> None:
        readable = mime.readable(raw)
        text = Text()
        text.append(f"[{readable.source}]\n\n", style="dim")
        body, cut = _head(readable.text)
        text.append(visible(body, keep_newlines=True) or "(no readable text part)")
        if cut:
            text.append(f"\n\n… the text goes on for {len(readable.text) - len(body):,} more characters: press e to "
                        "export the whole message", style="bold")
        if readable.links:
            text.append("\n\nLinks (not followed):\n", style="bold")
            for n, link in enumerate(readable.links[:MAX_LINKS], 1):
                text.append(f"  [{n}] ", style="dim")
                text.append(visible(link[:2000]) + "\n", style="underline")
            if len(readable.links) > MAX_LINKS:
                text.append(f"  … and {len(readable.links) - MAX_LINKS:,} more links\n", style="dim")
        self.set(text)


class PartsView(Tree):
    """The MIME tree; each node's data is the part's path, for saving attachments."""

    def show(self, raw: bytes) -> None:
        self.clear()
        root = mime.tree(raw)
        self.root.set_label(self._label(root))
        self.root.data = root.path
        self._add(self.root, root)
        self.root.expand_all()

    def _add(self, node, part: mime.Part) -> None:
        for child in part.children:
            if child.children:
                branch = node.add(self._label(child), data=child.path)
                self._add(branch, child)
            else:
                node.add_leaf(self._label(child), data=child.path)

    @staticmethod
    def _label(part: mime.Part) -> Text:
        label = Text()
        label.append(f"{part.path}  ", style="dim")
        label.append(visible(part.content_type), style="bold")
        label.append(f"  {part.size:,} bytes", style="dim")
        if part.charset:
            label.append(f"  charset={visible(part.charset)}", style="dim")
        if part.encoding:
            label.append(f"  {visible(part.encoding)}", style="dim")
        if part.filename:
            label.append(f"  📎 {visible(part.filename)}", style="cyan")
        if part.notes:
            label.append(f"  ! {visible(', '.join(part.notes))}", style="yellow")
        return label


class RawView(TextPane):
    def show(self, raw: bytes) -> None:
        lines = raw[:RAW_LIMIT].split(b"\n", MAX_LINES)
        if len(lines) > MAX_LINES:
            lines.pop()  # the unsplit rest
        text = Text()
        shown = 0
        for n, line in enumerate(lines, 1):
            body = line.decode("utf-8", "surrogateescape")
            cr = body.endswith("\r")
            text.append(f"{n:>5} ", style="dim")
            text.append(visible(body[:-1] if cr else body))
            text.append("␍␊\n" if cr else "␊\n", style="dim")
            shown += len(line) + 1
        shown = min(shown, len(raw), RAW_LIMIT)
        if len(raw) > shown:
            text.append(f"\n… {len(raw) - shown:,} more bytes: press e to export the whole message\n", style="bold")
        self.set(text)


class SessionView(TextPane):
    def show(self, session: list) -> None:
        text = Text()
        if not session:
            text.append("No SMTP session (the message was imported or checked from a file).", style="dim")
        for entry in session[:MAX_LINES]:
            try:
                t, direction, line = entry
            except (TypeError, ValueError):
                continue
            text.append(f"{float(t):8.3f} ", style="dim")
            style = {">": "bold cyan", "<": "green", "!": "yellow"}.get(direction, "")
            who = {">": "C:", "<": "S:", "!": "--"}.get(direction, "  ")
            text.append(f"{who} ", style=style)
            text.append(visible(str(line)[:2000]) + "\n")
        if len(session) > MAX_LINES:
            text.append(f"… {len(session) - MAX_LINES:,} more lines of the session (maillab show ID --json)\n",
                        style="dim")
        self.set(text)
