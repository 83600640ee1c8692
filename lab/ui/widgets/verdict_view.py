"""Provides VerdictView: what a receiver would do, then one bordered pane per check family."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from lab.core.results import Level, Verdict
from lab.render import FAMILY_ORDER
from lab.textsafe import visible
from lab.ui.format import STYLE, SYMBOL

TITLES = {"transport": "Transport", "spf": "SPF", "dkim": "DKIM", "dmarc": "DMARC", "arc": "ARC", "sender": "Sender",
          "headers": "Headers", "client": "Client (IP, reverse DNS, HELO)", "blocklist": "Blocklists",
          "content": "Content", "bulk": "Provider rules"}


def check_text(checks) -> Group:
    """The checks of one family: level, id, result, summary, evidence, fix."""
    blocks = []
    for ch in checks:
        line = Text()
        line.append(f"{SYMBOL[ch.level]} {ch.level.value:4} ", style=STYLE[ch.level])
        line.append(ch.id, style="bold")
        if ch.result:
            line.append(f" ({ch.result})", style=STYLE[ch.level])
        if ch.points:
            line.append(f" -{ch.points:g}", style="bold " + STYLE[ch.level])
        line.append("  " + visible(ch.summary))
        blocks.append(line)
        for key, value in ch.evidence.items():
            ev = Text("    ")
            ev.append(f"{key}: ", style="dim")
            ev.append(visible(value))
            blocks.append(ev)
        if ch.fix and ch.level is not Level.PASS:
            fix = Text("    ")
            fix.append("fix: ", style="bold cyan")
            fix.append(visible(ch.fix))
            blocks.append(fix)
        if ch.ref:
            blocks.append(Text(f"    {ch.ref}", style="dim italic"))
    return Group(*blocks)


class VerdictView(VerticalScroll):
    """Panes are made once and updated in place: moving through the list must not re-mount widgets."""

    DEFAULT_CSS = """
    VerdictView > .family { border: round $panel-lighten-2; padding: 0 1; margin: 0 0 1 0; height: auto; }
    VerdictView > .family.level-pass { border: round $success; }
    VerdictView > .family.level-warn { border: round $warning; }
    VerdictView > .family.level-fail { border: round $error; }
    VerdictView > .disposition { padding: 0 1; margin: 0 0 1 0; height: auto; }
    VerdictView > .authres { padding: 0 1; height: auto; color: $text-muted; }
    """

    def compose(self):
        yield Static("", classes="disposition")
        for family in (*FAMILY_ORDER, "other"):
            yield Static("", classes=f"family family-{family}")
        yield Static("", classes="authres")

    def show(self, verdict: Verdict | None) -> None:
        disposition = self.query_one(".disposition", Static)
        panes = {family: self.query_one(f".family-{family}", Static) for family in (*FAMILY_ORDER, "other")}
        authres = self.query_one(".authres", Static)
        if verdict is None:
            disposition.update("Not analysed yet: the verdict appears in a moment.")
            for pane in panes.values():
                pane.display = False
            authres.display = False
            return
        head = Text()
        head.append(f" {SYMBOL[verdict.level]} {verdict.level.value.upper()} ", style=f"reverse {STYLE[verdict.level]}")
        if verdict.score is not None:
            head.append(f"  {verdict.score:g}/10 ", style="bold")
        head.append("  What a receiver would do: ", style="bold")
        head.append(visible(verdict.disposition))
        problems = [c for c in verdict.checks if c.level is Level.FAIL] + \
                   [c for c in verdict.checks if c.level is Level.WARN]
        if problems:
            head.append("\n\n Why:", style="bold")
            for c in problems[:6]:
                head.append(f"\n   {SYMBOL[c.level]} ", style=STYLE[c.level])
                head.append(f"{c.id}: ", style="bold")
                head.append(visible(c.summary))
            if len(problems) > 6:
                head.append(f"\n   … and {len(problems) - 6} more below", style="dim")
        disposition.update(head)
        families = verdict.by_family()
        others = [c for f in sorted(set(families) - set(FAMILY_ORDER)) for c in families[f]]
        for family, pane in panes.items():
            checks = others if family == "other" else families.get(family)
            pane.display = bool(checks)
            if not checks:
                continue
            level = Verdict.overall(checks)
            pane.update(check_text(checks))
            for lv in ("pass", "warn", "fail"):
                pane.set_class(level.value == lv, f"level-{lv}")
            title = TITLES.get(family, family.title())
            if family == "bulk" and verdict.profile != "none":
                title = f"{title}: {verdict.profile}"
            lost = sum(c.points for c in checks)
            pane.border_title = f"{SYMBOL[level]} {title}" + (f"  (-{lost:g})" if lost else "")
        authres.display = True
        authres.update(Text("Authentication-Results: " + visible(verdict.authentication_results)))
        self.scroll_home(animate=False)
