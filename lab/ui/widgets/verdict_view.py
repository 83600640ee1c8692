"""Provides VerdictView: what a receiver would do, then one bordered pane per check family.

The head answers the user's question first: the outcome for the selected provider profile (rejected, sent
to spam, delivered), the 0-10 score with the findings that cost the most, and why, one line per problem.
The provider-rules pane (family `bulk`) shows each rule with the provider's gate and reply code on one line
instead of the evidence every other pane lists. Everything shown is read from the stored Verdict.
"""

from __future__ import annotations

import re
from datetime import UTC

from rich.console import Group
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from lab.core.model import DSN_STAGE
from lab.core.profiles import PROFILES
from lab.core.results import CheckResult, Level, Verdict
from lab.render import FAMILY_ORDER
from lab.retries import JudgedGroup
from lab.textsafe import visible
from lab.ui.format import STYLE, SYMBOL

TITLES = {"transport": "Transport", "spf": "SPF", "dkim": "DKIM", "dmarc": "DMARC", "arc": "ARC", "sender": "Sender",
          "headers": "Headers", "client": "Client (IP, reverse DNS, HELO)", "blocklist": "Blocklists",
          "content": "Content", "bulk": "Provider rules", "retry": "Retries"}
WHY_LINES = 5  # problems listed in the head; the panes below have them all
LOSSES = 5  # findings named beside the score
LABEL_WIDTH = 11  # " DELIVERED ", " REJECTED? "

# How the head names the outcome the disposition line starts with, and its colour. The disposition is the
# core's sentence; this only picks a badge for it (longest prefix first).
OUTCOMES = (
    ("would be rejected", "REJECTED", "red"),
    ("would be deferred", "DEFERRED", "yellow"),
    ("would be sent to spam", "SPAM", "yellow"),
    ("would be delivered", "DELIVERED", "green"),
    ("likely reject", "REJECTED?", "red"),
    ("reject", "REJECTED", "red"),
    ("deferred", "DEFERRED", "yellow"),
    ("spam folder likely", "SPAM?", "yellow"),
    ("spam folder", "SPAM", "yellow"),
    ("delivered, trusted less", "DELIVERED", "yellow"),
    ("inbox likely", "INBOX?", "green"),
    ("inbox", "INBOX", "green"),
)
GATES = {"reject": "reject", "defer": "defer", "spam": "spam", "none": "advice"}
_REPLY = re.compile(r"\b([45]\d\d [45]\.\d{1,3}\.\d{1,3})\b")


def outcome(disposition: str) -> tuple[str, str] | None:
    """The badge word and colour for a disposition line; None when it names no outcome."""
    low = disposition.strip().lower()
    for prefix, word, colour in OUTCOMES:
        if low.startswith(prefix):
            return word, colour
    return None


def profile_label(name: str) -> str:
    profile = PROFILES.get(name)
    return profile.label if profile is not None and profile.provider else ""


def short_summary(c: CheckResult, label: str) -> str:
    """A provider rule's summary without the "Gmail (bulk): " every one of them starts with."""
    if c.family == "bulk" and label:
        return c.summary.removeprefix(f"{label}: ")
    return c.summary


def reply(code: str, gate: str) -> str:
    """The documented reply that goes with the gate: the 5xx for a rejection, the 4xx for a deferral."""
    replies = _REPLY.findall(code or "")
    want = {"reject": "5", "defer": "4"}.get(gate)
    if want is None or not replies:
        return ""
    return next((r for r in replies if r.startswith(want)), replies[0])


def losses(verdict: Verdict, limit: int = LOSSES) -> Text:
    """`6.9/10: dkim.example.org.rsa2048 -1.5, spf.mailfrom -0.5, … and 2 more (-0.6)`."""
    text = Text()
    score = verdict.score if verdict.score is not None else 0.0
    colour = "green" if score >= 8 else "yellow" if score >= 5 else "red"
    text.append(f"{score:g}/10", style=f"bold {colour}")
    lost = sorted((c for c in verdict.checks if c.points), key=lambda c: -c.points)
    if not lost:
        text.append(": no points lost", style="dim")
        return text
    text.append(": ")
    for n, c in enumerate(lost[:limit]):
        if n:
            text.append(", ", style="dim")
        text.append(visible(c.id))
        text.append(f" -{c.points:g}", style=STYLE[c.level])
    if len(lost) > limit:
        rest = sum(c.points for c in lost[limit:])
        text.append(f", and {len(lost) - limit} more (-{rest:.1f})", style="dim")
    return text


def head(verdict: Verdict, why_lines: int = WHY_LINES) -> Table:
    """Outcome for the profile, score and its biggest losses, then the problems: a grid with a label column."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True, width=LABEL_WIDTH)
    grid.add_column(ratio=1)
    label = profile_label(verdict.profile)
    found = outcome(verdict.disposition)
    badge = Text(f" {found[0]} ", style=f"bold reverse {found[1]}") if found else Text(" receiver", style="bold")
    line = Text(visible(verdict.disposition), style=f"bold {found[1]}" if found else "bold")
    if not label:
        line.append("  (no provider profile)", style="dim")
    grid.add_row(badge, line)
    if verdict.score is not None:
        grid.add_row(Text(" score", style="bold"), losses(verdict))
    problems = [c for c in verdict.checks if c.level is Level.FAIL] + \
               [c for c in verdict.checks if c.level is Level.WARN]
    lines = []
    for c in problems[:why_lines]:
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(f"{SYMBOL[c.level]} ", style=STYLE[c.level])
        row.append(f"{visible(c.id)}: ", style="bold")
        row.append(visible(short_summary(c, label)))
        lines.append(row)
    if len(problems) > why_lines:
        lines.append(Text(f"… and {len(problems) - why_lines} more below", style="dim"))
    if not problems:
        lines.append(Text("every check passes", style="green"))
    level = verdict.level
    grid.add_row(Text(f" {SYMBOL[level]} {level.value.upper()} ", style=f"reverse {STYLE[level]}"), Group(*lines))
    return grid


class Hanging:
    """Rows of a label and a body, the body wrapped beside the label and its further lines indented under it:
    what a two-column `Table.grid(padding=(0, 1), expand=True)` draws, line for line (tests/ui/
    test_verdict_view.py compares them), without the table. Rich measures every cell of a table to size its
    columns each time Textual measures or draws a pane: showing a message took 55 ms from the call to the
    screen drawn, and a keypress waited behind it."""

    def __init__(self, rows: list[tuple[Text, Text]]):
        self.rows = rows
        self._drawn: tuple[int, list[Segment]] | None = None  # Textual measures a pane, then draws it: once

    def __rich_console__(self, console, options):
        width = options.max_width
        if self._drawn is None or self._drawn[0] != width:
            self._drawn = (width, list(self._draw(console, width)))
        return self._drawn[1]

    def _draw(self, console, width: int):
        label_width = max((label.cell_len for label, _ in self.rows), default=0)
        body_width = max(1, width - label_width - 1)
        indent = " " * (label_width + 1)
        newline = Segment.line()
        for label, body in self.rows:
            lines = body.wrap(console, body_width, justify="left", overflow="ellipsis")
            for i, line in enumerate(lines):
                line.truncate(body_width, overflow="ellipsis", pad=True)
                head = (label, " " * (label_width - label.cell_len + 1)) if i == 0 else (indent,)
                yield from Text.assemble(*head, line).render(console)  # segments: a Text would be wrapped again
                yield newline


def check_text(checks) -> Hanging:
    """The checks of one family, one row each: the level, then the id, result, points and summary, with the
    evidence, fix and rule under the summary (a hanging indent, so wrapped lines stay readable)."""
    rows = []
    for ch in checks:
        level = Text(f"{SYMBOL[ch.level]} {ch.level.value:4}", style=STYLE[ch.level])
        body = Text()
        body.append(visible(ch.id), style="bold")
        if ch.result:
            body.append(f" ({visible(ch.result)})", style=STYLE[ch.level])
        if ch.points:
            body.append(f" -{ch.points:g}", style="bold " + STYLE[ch.level])
        body.append("  " + visible(ch.summary))
        for key, value in ch.evidence.items():
            body.append(f"\n{visible(key)}: ", style="dim")
            body.append(visible(value))
        if ch.fix and ch.level is not Level.PASS:
            body.append("\nfix: ", style="bold cyan")
            body.append(visible(ch.fix))
        if ch.ref:
            body.append(f"\n{visible(ch.ref)}", style="dim italic")
        rows.append((level, body))
    return Hanging(rows)


def group_head(judged: JudgedGroup) -> Group:
    """A sender and recipient the lab refused and never accepted: who, how often, what it was told last, then
    every attempt with the time since the first (the sender's back-off, readable at a glance)."""
    group = judged.group
    codes = [a.code for a in judged.refusals if a.code]
    colour = "red" if any(c >= 500 for c in codes) else "yellow"
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True, width=LABEL_WIDTH)
    grid.add_column(ratio=1)
    who = (f"MAIL FROM:<{group.mail_from}> → {group.rcpt or '(refused before RCPT)'}" if group.mail_from is not None
           else f"client {group.client_ip} (refused before MAIL)")
    tries = judged.tries
    line = Text(visible(who), style="bold")
    line.append(f"\n{tries} {'try' if tries == 1 else 'tries'} refused, not delivered", style=f"bold {colour}")
    if judged.last_reply:
        line.append(": last told ")
        line.append(visible(judged.last_reply), style=colour)
    grid.add_row(Text(" REFUSED ", style=f"bold reverse {colour}"), line)
    timeline = Table(box=None, padding=(0, 1), show_edge=False, expand=True, header_style="dim")
    for name, kw in (("time", {"no_wrap": True}), ("after", {"no_wrap": True, "justify": "right"}),
                     ("stage", {"no_wrap": True}), ("reply", {"ratio": 1}), ("rule", {"ratio": 1, "style": "dim"})):
        timeline.add_column(name, **kw)
    first = group.attempts[0].at
    for a in group.attempts:
        if a.stage == DSN_STAGE:
            reply = Text(f"bounce sent (DSN #{a.dsn}): {visible(a.reply)}", style="magenta")
        else:
            reply = Text(visible(a.reply or "closed without a reply"),
                         style="red" if (a.code or 0) >= 500 else "yellow")
            if a.delay:
                reply.append(f" after {a.delay:g} s", style="dim")
            if a.disconnect and a.reply:
                reply.append(", then disconnected", style="dim")
        timeline.add_row(a.at.astimezone(UTC).strftime("%H:%M:%S"), _elapsed((a.at - first).total_seconds()),
                         a.stage, reply, visible(a.rule))
    return Group(grid, Text(""), timeline)


def _elapsed(seconds: float) -> str:
    """`+0s`, `+0.4s`, `+45s`, `+5m02s`, `+2h05m`: how long after the first attempt."""
    if seconds < 10:
        return f"+{seconds:.1f}s" if seconds else "+0s"
    s = int(round(seconds))
    if s < 60:
        return f"+{s}s"
    if s < 3600:
        return f"+{s // 60}m{s % 60:02d}s"
    return f"+{s // 3600}h{s % 3600 // 60:02d}m"


class BulkRules:
    """Provider rules, one row each: the rule, what the provider does when it fails (gate and reply), the
    summary, and the fix when it is not met; the evidence stays in `maillab show ID --json`.

    A Rich renderable that lays itself out for the width it gets: below NARROW columns the reply is only
    the enhanced status code (5.7.27), so the summary keeps room to breathe at 80 columns.
    """

    NARROW = 100

    def __init__(self, checks: list[CheckResult], label: str):
        self.checks = checks
        self.label = label

    def __rich_console__(self, console, options):
        narrow = options.max_width < self.NARROW
        rows = []
        for ch in self.checks:
            name = Text(f"{SYMBOL[ch.level]} ", style=STYLE[ch.level])
            name.append(visible(ch.id.removeprefix("bulk.")), style="bold")
            gate = ch.evidence.get("gate", "")
            code = reply(ch.evidence.get("provider-code", ""), gate)
            if narrow:
                code = code.partition(" ")[2] or code
            gate_text = Text(" ".join(x for x in (GATES.get(gate, visible(gate)), code) if x),
                             style="dim" if ch.level in (Level.PASS, Level.INFO) else STYLE[ch.level])
            fix = None
            if ch.fix and ch.level is not Level.PASS:
                fix = Text("fix: ", style="bold cyan")
                fix.append(visible(ch.fix))
            rows.append((name, gate_text, Text(visible(short_summary(ch, self.label))), fix))
        header = (Text("rule", style="dim"), Text("if unmet", style="dim"), Text("found", style="dim"), None)
        rows.insert(0, header)
        widths = [max((r[i].cell_len for r in rows), default=1) for i in (0, 1)]

        def grid() -> Table:
            table = Table.grid(padding=(0, 1), expand=True)
            table.add_column(no_wrap=True, width=widths[0])
            table.add_column(no_wrap=True, width=widths[1])
            table.add_column(ratio=1)
            return table

        if narrow:  # the fix under the rule, across the pane: long fixes stay readable at 80 columns
            for name, gate_text, summary, fix in rows:
                table = grid()
                table.add_row(name, gate_text, summary)
                yield table
                if fix is not None:
                    yield Padding(fix, (0, 0, 0, 4))
        else:
            table = grid()
            for name, gate_text, summary, fix in rows:
                if fix is not None:
                    summary = Text.assemble(summary, "\n", fix)
                table.add_row(name, gate_text, summary)
            yield table
        first = self.checks[0] if self.checks else None
        if first is not None and (first.ref or first.evidence.get("doc")):
            source = Text("rules: ", style="dim")
            source.append(visible(first.ref or ""), style="dim italic")
            if first.evidence.get("doc"):
                source.append("\n" + visible(first.evidence["doc"]), style="dim")
            yield source


class VerdictView(VerticalScroll):
    """Panes are made once and updated in place: moving through the list must not re-mount widgets."""

    DEFAULT_CSS = """
    VerdictView > .family { border: round $panel-lighten-2; padding: 0 1; margin: 0 0 1 0; height: auto; }
    VerdictView > .family.level-pass { border: round $success; }
    VerdictView > .family.level-warn { border: round $warning; }
    VerdictView > .family.level-fail { border: round $error; }
    VerdictView > .disposition { padding: 0 1 0 0; margin: 0 0 1 0; height: auto; }
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
        disposition.update(head(verdict))
        label = profile_label(verdict.profile)
        families = verdict.by_family()
        others = [c for f in sorted(set(families) - set(FAMILY_ORDER)) for c in families[f]]
        for family, pane in panes.items():
            checks = others if family == "other" else families.get(family)
            pane.display = bool(checks)
            if not checks:
                continue
            level = Verdict.overall(checks)
            pane.update(BulkRules(checks, label) if family == "bulk" else check_text(checks))
            for lv in ("pass", "warn", "fail"):
                pane.set_class(level.value == lv, f"level-{lv}")
            title = TITLES.get(family, family.title())
            if family == "other":  # families this version of the UI has no pane for, each named
                title = ", ".join(TITLES.get(f, visible(f).title()) for f in sorted({c.family for c in checks}))
            if family == "bulk":
                title = f"{title}: {label or visible(verdict.profile)}"
            lost = sum(c.points for c in checks)
            pane.border_title = f"{SYMBOL[level]} {title}" + (f"  (-{lost:g})" if lost else "")
        authres.display = True
        authres.update(Text("Authentication-Results: " + visible(verdict.authentication_results)))
        self.scroll_home(animate=False)

    def show_group(self, judged: JudgedGroup) -> None:
        """Refused attempts that no message ended: the attempts, then the retry checks in their own pane."""
        self.query_one(".disposition", Static).update(group_head(judged))
        for family in (*FAMILY_ORDER, "other"):
            pane = self.query_one(f".family-{family}", Static)
            pane.display = family == "retry" and bool(judged.checks)
            if pane.display:
                level = judged.level
                pane.update(check_text(judged.checks))
                for lv in ("pass", "warn", "fail"):
                    pane.set_class(level.value == lv, f"level-{lv}")
                pane.border_title = f"{SYMBOL[level]} {TITLES['retry']}"
        self.query_one(".authres", Static).display = False
        self.scroll_home(animate=False)
