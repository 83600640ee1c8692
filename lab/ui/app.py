"""Provides MaillabApp: the lab's Textual UI. It shows what the engine captured and judged; it judges nothing.

The engine runs on its own event loop in another thread (EngineThread), so a slow paint here never
stalls an SMTP client; verdicts arrive as posted messages and are coalesced before the list repaints.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from lab import samples
from lab.config import Config, exposed_warning
from lab.core import mime
from lab.core.dnsview import ZoneSyntaxError
from lab.core.model import Attempt
from lab.engine import Engine, EngineThread
from lab.reproduce import swaks_command
from lab.retries import JudgedGroup
from lab.store import Store, Stored
from lab.textsafe import visible
from lab.ui.listsource import ListSource
from lab.ui.messages import Analysed, RulesChanged, SamplesSent
from lab.ui.screens.modals import ConfirmScreen, HelpScreen
from lab.ui.widgets.detail_views import BodyView, HeadersView, PartsView, RawView, SessionView
from lab.ui.widgets.dns_view import DnsView
from lab.ui.widgets.message_list import MessageList
from lab.ui.widgets.verdict_view import VerdictView
from lab.ui.widgets.welcome import Welcome

TABS = ("verdict", "headers", "text", "parts", "raw", "session", "dns")
TAB_TITLES = {"dns": "DNS"}
BYTE_VIEWS = {"headers": HeadersView, "text": BodyView, "parts": PartsView, "raw": RawView}  # tabs of the raw bytes
FLUSH_GAP = 0.45  # seconds: the list is re-read at most this often while mail keeps arriving (_flush_pending)


class MaillabApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "maillab"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("r", "reanalyse(False)", "Re-check", id="reanalyse"),
        Binding("R", "reanalyse(True)", "Re-check all", show=False, id="reanalyse-all"),
        Binding("e", "export", "Export", id="export"),
        Binding("y", "copy_swaks", "Copy swaks", id="copy-swaks"),
        Binding("d", "delete", "Delete", id="delete"),
        Binding("D", "clear", "Clear all", show=False, id="clear"),
        Binding("s", "save_part", "Save part", show=False, id="save-part"),
        Binding("f1,question_mark", "help", "Help", id="help"),
        *(Binding(str(n), f"tab('{tab}')", TAB_TITLES.get(tab, tab.title()), show=False)
          for n, tab in enumerate(TABS, 1)),
    ]

    def __init__(self, config: Config, engine: Engine | None = None):
        super().__init__()
        self.config = config
        self.engine = engine or Engine(config, tolerant=True)
        self.runner = EngineThread(self.engine)
        self.store: Store | None = None
        self.source: ListSource | None = None
        self._pending: set[int] = set()
        self._flushed = 0.0  # when the list was last re-read for judged mail (monotonic)
        self._status_text: Text | None = None  # what the status line shows, and in how many lines
        self._status_lines = 0
        self._shown: Stored | None = None
        self._shown_group: tuple[JudgedGroup, Attempt | None, list] | None = None
        self._rendered: set[str] = set()
        self._detail_timer = None
        self.start_errors: list[str] = []

    # layout ----------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Vertical(id="list"):
            yield Input(placeholder="filter: words, verdict:fail, verdict:refused, listener:relay, failed:dkim  "
                                    "(Esc clears)", id="filter")
        with Vertical(id="detail"):
            yield Static(id="welcome-holder")
            with TabbedContent(id="tabs", initial="verdict"):
                with TabPane("Verdict", id="verdict"):
                    yield VerdictView(id="verdict-view")
                with TabPane("Headers", id="headers"):
                    yield Lazy(HeadersView(id="headers-view"))
                with TabPane("Text", id="text"):
                    yield Lazy(BodyView(id="text-view"))
                with TabPane("Parts", id="parts"):
                    yield Lazy(PartsView("message", id="parts-view"))
                with TabPane("Raw", id="raw"):
                    yield Lazy(RawView(id="raw-view"))
                with TabPane("Session", id="session"):
                    yield Lazy(SessionView(id="session-view"))
                with TabPane("DNS", id="dns"):
                    yield Lazy(DnsView(lambda: (self.engine.view, self.engine.dns_mode), id="dns-view"))
        yield Footer()

    def on_mount(self) -> None:
        try:
            self.start_errors = self.runner.start(partial=True)
        except Exception as exc:  # noqa: BLE001 - show it, keep the UI up for what still works
            self.start_errors = [f"the lab could not start: {exc}"]
        for error in self.start_errors:
            self.notify(visible(error), title="Listener", severity="error", timeout=15)
        for error in self.engine.dns_errors or []:
            self.notify(visible(error), title="Zone file", severity="error", timeout=15)
        if self.engine.rules_error:
            self.notify(visible(self.engine.rules_error), title="Rules file", severity="error", timeout=15)
        self.engine.subscribe_rules(lambda text, bad: self.post_message(RulesChanged(text, bad)))
        if exposed_warning(self.config.bind):
            self.notify(exposed_warning(self.config.bind), title="Not loopback", severity="warning", timeout=20)
        self.store = Store(self.config.db_path)
        self.source = ListSource(self.store)
        message_list = MessageList(self.source, id="messages")
        self.query_one("#list").mount(message_list, before=0)
        self.query_one("#list").border_title = "Messages"
        self.engine.subscribe(lambda ids: [self.post_message(Analysed(mid)) for mid in ids])
        self.set_interval(0.15, self._flush_pending)
        message_list.reload()
        message_list.focus()
        self._update_status()
        self._update_empty()

    def on_unmount(self) -> None:
        self.runner.stop()
        if self.store is not None:
            self.store.close()

    # status -----------------------------------------------------------------------------------------

    def _update_status(self) -> None:
        text = Text()
        text.append(" maillab ", style="bold reverse")
        text.append(f" {self.config.bind}", style="cyan")
        for spec in self.engine.specs:
            text.append("  ")
            r = spec.role
            mode = "TLS" if r.implicit_tls else ("STARTTLS" if r.require_tls else "STARTTLS optional")
            auth = "+AUTH" if r.require_auth else ", no AUTH"
            if spec.server is None:
                text.append(f"{spec.listener.value} ✗ :{spec.port} not listening", style="bold red")
            else:
                text.append(f"{spec.listener.value} ", style="bold")
                text.append(f":{spec.port}", style="cyan")
                text.append(f" ({r.listener.real_port}: {mode}{auth})", style="dim")
        if self.engine.pop3_port is not None:  # where captured mail and bounces can be read back
            text.append("  pop3 ", style="bold")
            text.append(f":{self.engine.pop3_port}", style="cyan")
        elif self.engine.pop3_error:
            text.append(f"  pop3 ✗ :{self.config.pop3_port} not listening", style="bold red")
        text.append("\n DNS: ", style="bold")
        text.append(self.engine.dns_mode)
        if self.source is not None and self.store is not None:
            total = self.source.total()
            shown = self.source.count()
            text.append("   messages: ", style="bold")
            text.append(f"{total}")
            if not self.source.filter.empty:
                text.append(f" ({shown} match the filter)", style="yellow")
            refused = self.source.refused_rows
            if refused:
                text.append("   refused, not delivered: ", style="bold")
                text.append(f"{refused}", style="yellow")
        status = self.query_one("#status", Static)
        if text == self._status_text:
            return
        # a new layout (every widget measured again: 30-60 ms with a message's detail shown) only when the
        # status needs another number of lines; while mail arrives it is the counts that change, every tick
        width = max(1, status.content_region.width or self.size.width - 2)
        lines = len(text.wrap(self.console, width))
        status.update(text, layout=lines != self._status_lines)
        self._status_text, self._status_lines = text, lines

    def _update_empty(self) -> None:
        empty = self.source is not None and self.source.total() == 0 and not self.source.refused_rows
        holder = self.query_one("#welcome-holder", Static)
        tabs = self.query_one("#tabs", TabbedContent)
        if empty and not holder.children and not self.query("#welcome"):
            holder.display = False
            self.query_one("#detail").mount(Welcome(self.engine.ports, self.config.bind, id="welcome"), before=0)
        elif not empty and self.query("#welcome"):
            self.query_one("#welcome").remove()
        tabs.display = not empty
        holder.display = False

    # live updates -----------------------------------------------------------------------------------

    def on_analysed(self, message: Analysed) -> None:
        self._pending.add(message.message_id)

    def on_rules_changed(self, message: RulesChanged) -> None:
        self.notify(visible(message.text), title="Rules file", severity="error" if message.bad else "information",
                    timeout=15 if message.bad else 5)

    def _flush_pending(self, now: bool = False) -> None:
        """Show what was judged since the last call: checked every 150 ms, but the list is re-read at most every
        FLUSH_GAP seconds while mail keeps arriving (a lone message still shows within a tick). Re-reading and
        redrawing the list on every tick took a quarter of the UI thread at 500 msg/s; a keypress then waited
        33-66 ms (p50), 130-200 ms (p95); at most every 0.45 s: 9-13 ms and 46-83 ms (bench/tui_load.py)."""
        if not self._pending and (self.source is None or not self.source.attempts_changed()):
            return
        if not now and time.monotonic() - self._flushed < FLUSH_GAP:
            return  # what is pending stays pending for a later tick
        self._flushed = time.monotonic()
        pending, self._pending = self._pending, set()
        if not self.query(MessageList):  # verdicts that arrive while the app is closing
            return
        message_list = self.query_one(MessageList)
        message_list.reload()
        self._update_status()
        self._update_empty()
        selected = message_list.selected_id
        if selected in pending or (selected is not None and selected < 0 and self._shown_group is not None
                                   and self.source.group(selected) != self._shown_group[0]):
            self.load_detail(selected)  # a refused row's detail again only when its group was judged anew

    # selection and tabs -----------------------------------------------------------------------------

    @on(MessageList.Highlighted)
    def _highlighted(self, event: MessageList.Highlighted) -> None:
        if event.message_id is None:
            self._shown = None
            self._update_empty()
            return
        # holding j/k or paging must not build every pane on the way: load once the cursor rests
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(0.06, lambda mid=event.message_id: self.load_detail(mid))

    @work(thread=True, exclusive=True, group="detail")
    def load_detail(self, key: int) -> None:
        """A message by id, or (a negative key) a refused group with its last attempt's bytes and transcript."""
        judged = self.source.group(key) if key < 0 and self.source is not None else None
        store = Store(self.config.db_path)
        try:
            if judged is not None:
                last = judged.refusals[-1]
                found = store.attempt(last.id) if last.id is not None else None
                shown = (judged, *(found or (None, [])))
            else:
                shown = store.get(key) if key > 0 else None
        finally:
            store.close()
        if shown is not None and self.is_running:
            self.call_from_thread(self._show, shown)

    def _show(self, shown: Stored | tuple) -> None:
        if isinstance(shown, Stored):
            self._shown, self._shown_group = shown, None
        else:
            self._shown, self._shown_group = None, shown
        self._rendered = set()
        self._render_tab(self.query_one("#tabs", TabbedContent).active or "verdict")

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._render_tab(event.pane.id or "verdict")

    def _render_tab(self, tab: str) -> None:
        """Only the visible tab is built; the others when they are opened."""
        stored = self._shown
        if tab in self._rendered or not self.query(VerdictView):
            return  # already shown, or the app is closing under a late worker
        if self._shown_group is not None:
            self._rendered.add(tab)
            self._render_group_tab(tab, *self._shown_group)
            return
        if stored is None:
            return
        self._rendered.add(tab)
        if tab == "verdict":
            self.query_one(VerdictView).show(stored.verdict)
        elif tab == "session":
            self.query_one(SessionView).show(stored.session)
        else:
            self._render_bytes(tab, stored.capture.raw, stored.capture.id)

    def _render_bytes(self, tab: str, raw: bytes, key: int) -> None:
        """The tabs made from the message's bytes, for a captured message or a refused attempt's."""
        if tab == "dns":
            self.query_one(DnsView).show_for(key, raw)
        else:
            self.query_one(BYTE_VIEWS[tab]).show(raw)

    def _render_group_tab(self, tab: str, judged: JudgedGroup, last: Attempt | None, session: list) -> None:
        """A refused group: the attempts and retry checks; the last attempt's transcript; its bytes, when it was
        refused at end-of-data (earlier refusals never received any)."""
        raw = last.raw if last is not None else b""
        if tab == "verdict":
            self.query_one(VerdictView).show_group(judged)
        elif tab == "session":
            self.query_one(SessionView).show(session)
        elif not raw and tab in ("headers", "text", "raw", "dns"):
            stage = last.stage if last is not None else "?"
            note = Text(f"No message content: the lab refused this attempt at {stage}, before the message was sent. "
                        "The Verdict tab lists every attempt; the Session tab shows the last conversation.",
                        style="yellow")
            if tab == "dns":
                self.query_one(DnsView).show_note(note)
            else:
                self.query_one(BYTE_VIEWS[tab]).set(note)
        else:
            self._render_bytes(tab, raw, judged.key)

    def _dns_reloaded(self) -> None:
        """The zone files were read again: DNS reports may be stale, and the open DNS tab is made again."""
        self.query_one(DnsView).forget()
        if "dns" in self._rendered:
            self._rendered.discard("dns")
            if self.query_one("#tabs", TabbedContent).active == "dns":
                self._render_tab("dns")

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab

    # filter -----------------------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)
        self.query_one(MessageList).focus()

    def _apply_filter(self, query: str) -> None:
        assert self.source is not None
        self.source.set_filter(query)
        box = self.query_one("#filter", Input)
        box.set_class(bool(query.strip()), "shown")
        message_list = self.query_one(MessageList)
        message_list.reload()
        self.query_one("#list").border_title = f"Messages — filter: {visible(query)}" if query.strip() else "Messages"
        self._update_status()

    def on_key(self, event) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and (box.has_focus or box.value):
            box.value = ""
            self._apply_filter("")
            self.query_one(MessageList).focus()
            event.stop()

    # actions on the selected message ----------------------------------------------------------------

    def _selected(self) -> int | None:
        """The selected message's id; None on a refused group's row (it has no message to act on)."""
        key = self.query_one(MessageList).selected_id
        return key if key is not None and key > 0 else None

    def _exports(self) -> Path:
        path = self.config.data_dir / "exports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _export(self, message_id: int) -> Path | None:
        assert self.store is not None
        raw = self.store.raw(message_id)
        if raw is None:
            return None
        path = self._exports() / f"maillab-{message_id}.eml"
        path.write_bytes(raw)
        return path

    def action_export(self) -> None:
        mid = self._selected()
        if mid is None:
            self.notify("No message selected", severity="warning")
            return
        path = self._export(mid)
        self.notify(f"Saved message {mid} to {path}", title="Export")

    def action_copy_swaks(self) -> None:
        mid = self._selected()
        stored = self.store.get(mid) if (mid is not None and self.store) else None
        if stored is None:
            self.notify("No message selected", severity="warning")
            return
        path = self._export(mid)
        command = swaks_command(stored.capture, self.engine.ports, path, host=self.config.bind)
        self.copy_to_clipboard(command)
        self.notify(visible(command), title="Copied swaks command", timeout=10)

    def action_save_part(self) -> None:
        stored = self._shown
        tree = self.query_one(PartsView)
        node = tree.cursor_node
        if stored is None or node is None or not node.data:
            self.notify("Open the Parts tab and select a part first", severity="warning")
            return
        part = mime.find(stored.capture.raw, node.data)
        if part is None or part.is_multipart():
            self.notify("Select a leaf part (an attachment or a body part)", severity="warning")
            return
        name = mime.filename(part) or f"part-{node.data}.bin"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).name).strip("._") or "part.bin"
        path = self._exports() / f"{stored.capture.id}-{safe}"
        path.write_bytes(mime.decoded(part))
        self.notify(f"Saved {path}", title="Attachment")

    def action_delete(self) -> None:
        mid = self._selected()
        if mid is None or self.store is None:
            return
        self.store.delete(mid)
        assert self.source is not None
        self.source.forget_groups()
        self._pending.add(-1)
        self.notify(f"Deleted message {mid}")
        self._flush_pending(now=True)

    def action_clear(self) -> None:
        def done(yes: bool | None) -> None:
            if yes and self.store is not None:
                n = self.store.clear()
                self._shown = self._shown_group = None
                self._pending.add(-1)
                self._flush_pending(now=True)
                self.notify(f"Deleted {n} messages")

        count = self.store.count() if self.store else 0
        self.push_screen(ConfirmScreen(f"Delete all {count} captured messages? This cannot be undone."), done)

    @work(thread=True, exclusive=True, group="reanalyse")
    def action_reanalyse(self, everything: bool) -> None:
        try:
            self.engine.reload_dns()
        except (ZoneSyntaxError, OSError) as exc:
            self.call_from_thread(self.notify, visible(str(exc)), title="Zone file", severity="error", timeout=15)
            return
        for error in self.engine.dns_errors or []:
            self.call_from_thread(self.notify, visible(error), title="Zone file", severity="error", timeout=15)
        self.call_from_thread(self._dns_reloaded)
        store = Store(self.config.db_path)
        try:
            ids = store.ids() if everything else [m for m in [self._selected()] if m is not None]
        finally:
            store.close()
        n = self.engine.reanalyse(ids)
        self.call_from_thread(self.notify, f"Re-checked {n} message{'s' if n != 1 else ''} against the current DNS "
                                           f"and zone files", title="Re-check")
        self.call_from_thread(self._update_status)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # samples and palette ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="samples")
    def send_samples(self) -> None:
        lines = samples.send_all(self.engine.ports, self.config.data_dir, host=self.config.bind)
        self.post_message(SamplesSent(lines))

    def on_samples_sent(self, message: SamplesSent) -> None:
        failed = [line for line in message.lines if line.startswith("failed")]
        if failed:
            self.notify(visible("\n".join(failed)), title="Samples", severity="error", timeout=15)
        else:
            self.notify(f"Sent {len(message.lines)} sample messages: select one and read its Verdict tab",
                        title="Samples")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Send sample messages", "Eight messages that show every verdict pane at work",
                            self.send_samples)
        yield SystemCommand("Re-check all messages", "Re-read the zone files and judge every message again",
                            lambda: self.action_reanalyse(True))
        yield SystemCommand("Export the selected message", "Save it as .eml in the data directory",
                            self.action_export)
        yield SystemCommand("Copy a swaks command for the selected message", "Sends it again, same envelope",
                            self.action_copy_swaks)
        yield SystemCommand("Delete all messages", "Asks first", self.action_clear)
