"""Provides DnsView: the DNS tab, the From domain's records explained (lab.core.dnsreport) and what to change.

The report is a diagnostic of the domain, not a verdict on the message. It is made in a worker thread
through the lab's DNS view (overlay zones first), so a silent name server never stalls the screen, and
kept per domain and set of selectors until `forget()` (the app calls it when `r` re-reads the zone files).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.containers import VerticalScroll
from textual.widgets import Static

from lab.core.dnsreport import DomainReport, inspect_domain
from lab.core.dnsview import DnsView as Resolver
from lab.core.results import Level
from lab.textsafe import visible
from lab.ui.dnstarget import Target, target_of
from lab.ui.format import SYMBOL
from lab.ui.widgets.dns_report import (
    SECTION_TITLES,
    SECTIONS,
    dkim_renderable,
    dmarc_renderable,
    head_text,
    level_of,
    mx_renderable,
    recommendations,
    section_status,
    spf_renderable,
)

CACHE_SIZE = 64  # domain reports kept until the zone files are read again

DnsSource = Callable[[], tuple[Resolver, str]]  # the lab's DNS view now, and how to describe it


class DnsView(VerticalScroll):
    """Made once; `show_for()` updates the panes in place, from the cache or when the worker answers."""

    DEFAULT_CSS = """
    DnsView > .dns-head { padding: 0 1; margin: 0 0 1 0; height: auto; }
    DnsView > .dns-pane { border: round $panel-lighten-2; padding: 0 1; margin: 0 0 1 0; height: auto; }
    DnsView > .dns-pane.level-pass { border: round $success; }
    DnsView > .dns-pane.level-warn { border: round $warning; }
    DnsView > .dns-pane.level-fail { border: round $error; }
    """

    def __init__(self, source: DnsSource, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.cache: OrderedDict[tuple, DomainReport] = OrderedDict()
        self.generation = 0  # bumped by forget(): a report made from older zone files is dropped
        self.shown_id: int | None = None  # the message the tab is showing, or waiting for

    def compose(self):
        yield Static("", classes="dns-head")
        yield Static("", classes="dns-pane dns-recs")
        for section in SECTIONS:
            yield Static("", classes=f"dns-pane dns-{section}")

    # what to show ----------------------------------------------------------------------------------

    def show_for(self, message_id: int, raw: bytes) -> None:
        """The From domain's report for this message: from the cache, else looked up in a worker."""
        self.shown_id = message_id
        target = target_of(raw)
        if target.key is None:
            self.show_note(Text(target.problem or "Nothing to look up.", style="yellow"))
            return
        report = self.cache.get(target.key)
        if report is not None:
            self.cache.move_to_end(target.key)
            self.show_report(report, target, self.source()[1])
            return
        note = Text("Looking up the DNS records of ")
        note.append(target.domain or "", style="bold cyan")
        note.append(" …")
        self.show_note(note)
        self.inspect(message_id, target, self.generation)

    def forget(self) -> None:
        """The zone files were read again: every report may be stale."""
        self.generation += 1
        self.cache.clear()

    @work(thread=True, exclusive=True, group="dns")
    def inspect(self, message_id: int, target: Target, generation: int) -> None:
        resolver, _ = self.source()
        report, error = None, None
        try:
            report = inspect_domain(target.domain or "", resolver, target.selectors)
        except Exception as exc:  # noqa: BLE001 - a diagnostic that fails says so; the lab keeps running
            error = f"The DNS report for {target.domain} could not be made: {type(exc).__name__}: {exc}"
        if not self.app.is_running:
            return
        try:
            self.app.call_from_thread(self._ready, message_id, target, generation, report, error)
        except RuntimeError:
            pass  # the app closed while DNS answered

    def _ready(self, message_id: int, target: Target, generation: int, report: DomainReport | None,
               error: str | None) -> None:
        if generation != self.generation:
            return  # made from zone files that have been read again since
        if report is not None:
            self.cache[target.key] = report  # kept even when the user has moved on
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
        if message_id != self.shown_id or not self.is_attached:
            return
        if report is None:
            self.show_note(Text(visible(error or "No report."), style="yellow"))
        else:
            self.show_report(report, target, self.source()[1])

    # drawing ---------------------------------------------------------------------------------------

    def show_note(self, text: Text | str) -> None:
        """A line instead of a report: looking up, or why there is nothing to look up."""
        self.query_one(".dns-head", Static).update(text)
        for pane in self.query(".dns-pane"):
            pane.display = False
        self.scroll_home(animate=False)

    def show_report(self, report: DomainReport, target: Target, mode: str = "") -> None:
        self.query_one(".dns-head", Static).update(head_text(report, target, mode))
        recs = self.query_one(".dns-recs", Static)
        recs.display = True
        recs.update(recommendations(report))
        self._title(recs, level_of(report.recommendations), "What to change")
        renderers = {"spf": lambda: spf_renderable(report), "dmarc": lambda: dmarc_renderable(report),
                     "dkim": lambda: dkim_renderable(report, target), "mx": lambda: mx_renderable(report)}
        for section in SECTIONS:
            pane = self.query_one(f".dns-{section}", Static)
            pane.display = True
            pane.update(renderers[section]())
            level = level_of([r for r in report.recommendations if r.section == section])
            self._title(pane, level, f"{SECTION_TITLES[section]}  {section_status(report, section)}")
        self.scroll_home(animate=False)

    @staticmethod
    def _title(pane: Static, level: Level, title: str) -> None:
        for lv in ("pass", "warn", "fail"):
            pane.set_class(level.value == lv, f"level-{lv}")
        pane.border_title = Text(f"{SYMBOL[level]} {title}")  # Text: names from DNS are never read as markup
