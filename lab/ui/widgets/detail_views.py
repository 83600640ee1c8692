"""Provides the other message tabs: Headers, Text, Parts, Raw and Session. Every byte from the mail is escaped."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static, Tree

from lab.core import mime
from lab.core.message import ParsedMessage
from lab.textsafe import visible

RAW_LIMIT = 512 * 1024  # beyond this the Raw tab shows the start; `e` exports the whole message


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
        for h in msg.headers:
            text.append(visible(h.name), style="bold cyan")
            text.append(": ")
            text.append(visible(h.value) + "\n")
            if h.value != h.raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"):
                text.append("    raw: " + visible(h.raw) + "\n", style="dim")
        for problem in msg.problems:
            text.append(f"! {visible(problem)}\n", style="yellow")
        self.set(text)


class BodyView(TextPane):
    def show(self, raw: bytes) -> None:
        readable = mime.readable(raw)
        text = Text()
        text.append(f"[{readable.source}]\n\n", style="dim")
        text.append(visible(readable.text, keep_newlines=True) or "(no readable text part)")
        if readable.links:
            text.append("\n\nLinks (not followed):\n", style="bold")
            for n, link in enumerate(readable.links, 1):
                text.append(f"  [{n}] ", style="dim")
                text.append(visible(link) + "\n", style="underline")
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
        shown = raw[:RAW_LIMIT]
        text = Text()
        for n, line in enumerate(shown.split(b"\n"), 1):
            body = line.decode("utf-8", "surrogateescape")
            cr = body.endswith("\r")
            text.append(f"{n:>5} ", style="dim")
            text.append(visible(body[:-1] if cr else body))
            text.append("␍␊\n" if cr else "␊\n", style="dim")
        if len(raw) > RAW_LIMIT:
            text.append(f"\n… {len(raw) - RAW_LIMIT:,} more bytes: press e to export the whole message\n",
                        style="bold")
        self.set(text)


class SessionView(TextPane):
    def show(self, session: list) -> None:
        text = Text()
        if not session:
            text.append("No SMTP session (the message was imported or checked from a file).", style="dim")
        for entry in session:
            try:
                t, direction, line = entry
            except (TypeError, ValueError):
                continue
            text.append(f"{float(t):8.3f} ", style="dim")
            style = {">": "bold cyan", "<": "green", "!": "yellow"}.get(direction, "")
            who = {">": "C:", "<": "S:", "!": "--"}.get(direction, "  ")
            text.append(f"{who} ", style=style)
            text.append(visible(str(line)) + "\n")
        self.set(text)
