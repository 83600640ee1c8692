"""Provides the DNS tab's renderables: a lab.core.dnsreport DomainReport drawn as Rich text and grids.

One function per section (what to change, SPF, DMARC, DKIM, MX) plus the head line, so they can be drawn
and tested without an app. Everything that came from DNS or from the message (names, records, tag
values, explanations quoting them) goes through lab.textsafe, and long lists are cut. Values are
always Rich Text, never markup strings, so a `[` in a TXT record is only a bracket.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from lab.core.dnsreport import DkimKey, DomainReport, Recommendation, SpfNode
from lab.core.results import Level
from lab.textsafe import shown
from lab.ui.dnstarget import Target
from lab.ui.format import STYLE, SYMBOL

MAX_SPF_ROWS = 200  # rows of the SPF tree drawn; the rest is counted
TERM_WIDTH = 34
SECTIONS = ("spf", "dmarc", "dkim", "mx")
SECTION_TITLES = {"spf": "SPF", "dmarc": "DMARC", "dkim": "DKIM", "mx": "MX"}
SELECTOR_NOTE = ("DNS cannot list DKIM selectors: only those this message signs with and a few common ones "
                 "were looked up.")


def _s(text: object, limit: int = 300) -> str:
    return shown(str(text), limit)


def level_of(recs: list[Recommendation]) -> Level:
    worst = max((r.level.rank for r in recs), default=0)
    return {0: Level.PASS, 1: Level.WARN, 2: Level.FAIL}[worst]


def _grid(term_width: int = TERM_WIDTH) -> Table:
    grid = Table.grid(padding=(0, 2), expand=True)
    grid.add_column(max_width=term_width, overflow="fold")
    grid.add_column(ratio=1, overflow="fold")
    return grid


def _labelled(rows: list[tuple[str, Text]]) -> Table:
    """`record  v=spf1 …` lines whose values wrap under themselves, not under the label."""
    grid = Table.grid(padding=(0, 2), expand=True)
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column(ratio=1, overflow="fold")
    for label, value in rows:
        grid.add_row(Text(label, style="dim"), value)
    return grid


def head_text(report: DomainReport, target: Target, mode: str = "") -> Text:
    fails = sum(r.level is Level.FAIL for r in report.recommendations)
    warns = sum(r.level is Level.WARN for r in report.recommendations)
    text = Text()
    text.append("DNS records of ", style="bold")
    text.append(_s(report.domain, 200), style="bold cyan")
    if fails:
        text.append(f"   {SYMBOL[Level.FAIL]} {fails} problem{'s' * (fails != 1)} affect{'s' * (fails == 1)} "
                    "delivery", style=STYLE[Level.FAIL])
    elif warns:
        text.append(f"   {SYMBOL[Level.WARN]} nothing blocks delivery", style=STYLE[Level.WARN])
    else:
        text.append(f"   {SYMBOL[Level.PASS]} nothing to fix", style=STYLE[Level.PASS])
    if warns:
        text.append(f", {warns} warning{'s' * (warns != 1)}", style=STYLE[Level.WARN])
    text.append("\nFrom ", style="dim")
    text.append(_s(target.address, 200), style="dim")
    if target.selectors:
        text.append(" · DKIM selectors in this message: ", style="dim")
        text.append(", ".join(_s(s, 60) for s in target.selectors), style="dim")
    text.append("\n")
    if mode:
        text.append(f"DNS: {_s(mode, 200)} · ", style="dim")
    text.append("r re-reads the zone files", style="dim")
    return text


def recommendations(report: DomainReport) -> Table | Text:
    """What to change, worst first: the problem, the fix, the rule."""
    if not report.recommendations:
        return Text(f"{SYMBOL[Level.PASS]} nothing: the records say what a receiver needs to hear",
                    style=STYLE[Level.PASS])
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    for r in report.recommendations:
        tag = Text(f"{SYMBOL[r.level]} ", style=STYLE[r.level])
        tag.append(SECTION_TITLES.get(r.section, _s(r.section, 10)).ljust(5), style="bold")
        body = Text(_s(r.problem, 600))
        if r.fix:
            body.append("\nfix: ", style="bold cyan")
            body.append(_s(r.fix, 900))
        if r.ref:
            body.append(f"\n{_s(r.ref, 80)}", style="dim italic")
        grid.add_row(tag, body)
    return grid


def spf_renderable(report: DomainReport) -> Group:
    spf = report.spf
    blocks: list = []
    if spf.error:
        blocks.append(Text(f"temperror: {_s(spf.error)}", style=STYLE[Level.WARN]))
    tree = spf.tree
    if tree is None or not tree.records:
        if spf.status == "none":
            blocks.append(Text(f"no SPF record at {_s(spf.domain)}", style=STYLE[Level.FAIL]))
        return Group(*blocks)
    facts: list[tuple[str, Text]] = [("record", Text(_s(record, 500))) for record in tree.records[:5]]
    if tree.status == "syntax":
        blocks.append(_labelled(facts))
        blocks.append(Text("the record has a syntax error: receivers stop there (permerror) and look nothing up",
                           style=STYLE[Level.FAIL]))
    elif tree.status == "ok":
        bound = "" if spf.complete else "at least "
        over = spf.lookups > spf.lookup_limit
        counts = Text(f"{bound}{spf.lookups} of {spf.lookup_limit}", style=STYLE[Level.FAIL] if over else "")
        counts.append("   void lookups ", style="dim")
        counts.append(f"{spf.void_lookups} of {spf.void_limit}",
                      style=STYLE[Level.FAIL] if spf.void_lookups > spf.void_limit else "")
        counts.append("   ends with ", style="dim")
        counts.append(spf.ends_with or "no all (unlisted hosts are neutral)")
        facts.append(("lookups", counts))
        blocks.append(_labelled(facts))
    else:
        blocks.append(_labelled(facts))
        return Group(*blocks)
    grid = _grid()
    rows = _spf_rows(tree, grid, 0, [0])
    blocks.append(grid)
    if rows[0] > MAX_SPF_ROWS:
        blocks.append(Text(f"… {rows[0] - MAX_SPF_ROWS} more rows of the SPF tree (maillab dns "
                           f"{_s(report.domain)})", style="dim"))
    return Group(*blocks)


def _spf_rows(node: SpfNode, grid: Table, depth: int, count: list[int]) -> list[int]:
    """Add a row per term (and per included record, indented under it); `count` counts every row."""
    pad = "  " * min(depth, 8)
    for t in node.terms:
        count[0] += 1
        if count[0] <= MAX_SPF_ROWS:
            style = "dim" if not t.evaluated else STYLE[Level.FAIL] if t.problem else ""
            term = Text(pad + _s(t.text, 120), style=style)
            meaning = Text(_s(t.meaning, 300) if t.meaning else "", style="dim" if not t.evaluated else "")
            if t.lookups:
                meaning.append(f"  [{t.lookups} lookup{'s' * (t.lookups != 1)}]", style="dim")
            if t.addresses:
                more = f" (+{len(t.addresses) - 8} more)" if len(t.addresses) > 8 else ""
                meaning.append("\n→ " + ", ".join(_s(a, 100) for a in t.addresses[:8]) + more, style="dim")
            if t.note:
                meaning.append(f"\nnote: {_s(t.note)}", style="dim")
            if t.problem:
                meaning.append(f"\n{SYMBOL[Level.FAIL]} {_s(t.problem)}", style=STYLE[Level.FAIL])
            grid.add_row(term, meaning)
        child = t.child
        if child is None:
            continue
        count[0] += 1
        if count[0] <= MAX_SPF_ROWS:
            head = Text(f"{pad}  └ {_s(child.domain, 120)}", style="bold")
            if child.status == "ok":
                grid.add_row(head, Text(_s(child.records[0], 300), style="dim"))
            elif child.records:
                grid.add_row(head, Text(f"({child.status}) " + " | ".join(_s(r, 200) for r in child.records[:3]),
                                        style=STYLE[Level.FAIL]))
            else:
                grid.add_row(head, Text(child.status, style=STYLE[Level.FAIL]))
        if child.status in ("ok", "syntax"):
            _spf_rows(child, grid, depth + 2, count)
    if node.more_terms:
        count[0] += 1
        if count[0] <= MAX_SPF_ROWS:
            grid.add_row(Text(f"{pad}…", style="dim"), Text(f"{node.more_terms} more terms not read", style="dim"))
    return count


def dmarc_renderable(report: DomainReport) -> Group:
    d = report.dmarc
    blocks: list = []
    if d.at_org:
        blocks.append(Text(f"no record at _dmarc.{_s(d.domain)}: the organisational domain's applies", style="dim"))
    if d.error:
        blocks.append(Text(_s(d.error), style=STYLE[Level.WARN]))
    facts: list[tuple[str, Text]] = []
    if d.record:
        facts.append(("record", Text(_s(d.record, 500))))
    elif d.status == "none":
        blocks.append(Text(f"no DMARC record at _dmarc.{_s(d.domain)}"
                           + (f" or _dmarc.{_s(d.org_domain)}" if d.org_domain != d.domain else ""),
                           style=STYLE[Level.FAIL]))
    if d.policy:
        line = Text(f"{_s(d.policy, 40)}", style="bold")
        line.append(f" for {_s(d.domain)} (from {_s(d.policy_source, 60)})", style="dim")
        facts.append(("policy", line))
    if facts:
        blocks.append(_labelled(facts))
    if d.tags:
        grid = _grid(32)
        for tag in d.tags:
            grid.add_row(Text(_s(f"{tag.tag}={tag.value}", 80)), Text(_s(tag.meaning)))
        blocks.append(grid)
    for problem in d.problems[:10]:
        blocks.append(Text(f"{SYMBOL[Level.WARN]} {_s(problem)}", style=STYLE[Level.WARN]))
    for r in (d.rua + d.ruf)[:10]:
        if r.problem:
            blocks.append(Text(f"{SYMBOL[Level.WARN]} {_s(r.uri, 100)}: {_s(r.problem)}", style=STYLE[Level.WARN]))
        elif r.external:
            state = {True: "authorised", False: "NOT authorised", None: "authorisation unknown"}[r.authorised]
            blocks.append(Text(f"reports to {_s(r.domain)} (another organisation): {state} by TXT at "
                               f"{_s(r.authorisation_name)}", style="dim" if r.authorised else STYLE[Level.WARN]))
    return Group(*blocks)


def _key_line(key: DkimKey, seen: bool) -> Text:
    line = Text(_s(key.name, 160), style="bold")
    if key.status == "ok":
        line.append(f"  {SYMBOL[Level.PASS]} {_s(key.key_type, 20)} {key.bits}-bit", style=STYLE[Level.PASS])
        if key.testing:
            line.append(", testing (t=y)", style=STYLE[Level.WARN])
        if key.strict:
            line.append(", strict i= (t=s)", style="dim")
    else:
        level = Level.FAIL if key.source == "given" else Level.WARN
        line.append(f"  {SYMBOL[level]} {key.status}", style=STYLE[level])
        if key.bits:
            line.append(f": {_s(key.key_type, 20)} {key.bits}-bit")
    line.append("  (used in this message)" if seen else "  (a common selector)", style="dim")
    return line


def dkim_renderable(report: DomainReport, target: Target) -> Group:
    blocks: list = []
    for key in report.dkim.keys:
        blocks.append(_key_line(key, key.source == "given" and key.selector in target.selectors))
        if key.tags:
            grid = _grid(28)
            for tag in key.tags:
                value = tag.value if tag.tag != "p" or len(tag.value) <= 16 else tag.value[:16] + "…"
                grid.add_row(Text("  " + _s(f"{tag.tag}={value}", 80)), Text(_s(tag.meaning), style="dim"))
            blocks.append(grid)
        for problem in key.problems[:10]:
            blocks.append(Text(f"  {SYMBOL[Level.WARN]} {_s(problem)}", style=STYLE[Level.WARN]))
    if not target.selectors:
        blocks.append(Text("this message has no DKIM signature for this domain", style="dim"))
    if report.dkim.tried:
        blocks.append(Text("no key at the common selectors: " + ", ".join(_s(s, 40) for s in report.dkim.tried),
                           style="dim"))
    blocks.append(Text(SELECTOR_NOTE, style="dim italic"))
    return Group(*blocks)


def mx_renderable(report: DomainReport) -> Group:
    mx = report.mx
    blocks: list = []
    if mx.error:
        blocks.append(Text(_s(mx.error), style=STYLE[Level.WARN]))
    if mx.status == "null":
        blocks.append(Text("null MX (RFC 7505): the domain receives no mail", style=STYLE[Level.WARN]))
    if mx.status == "nxdomain":
        blocks.append(Text(f"{_s(report.domain)} does not exist (NXDOMAIN)", style=STYLE[Level.FAIL]))
    hosts = [h for h in mx.hosts if h.host not in ("", ".")]
    if hosts:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_column(ratio=1, overflow="fold")
        for h in hosts[:20]:
            addresses = Text(", ".join(_s(a, 60) for a in h.addresses[:6]) or "-")
            if h.problem:
                addresses.append(f"  {SYMBOL[Level.WARN]} {_s(h.problem)}", style=STYLE[Level.WARN])
            grid.add_row(Text(str(h.preference), style="dim"), Text(_s(h.host, 120)), addresses)
        blocks.append(grid)
    if mx.status == "none":
        if mx.fallback:
            blocks.append(Text(f"no MX: mail to {_s(report.domain)} goes to its address: "
                               + ", ".join(_s(a, 60) for a in mx.fallback[:6]), style="dim"))
        else:
            blocks.append(Text(f"no MX and no address: mail to {_s(report.domain)} cannot be delivered",
                               style=STYLE[Level.WARN]))
    return Group(*blocks)


def section_status(report: DomainReport, section: str) -> str:
    if section == "spf":
        return f"{_s(report.spf.domain)}: {report.spf.status}"
    if section == "dmarc":
        return f"{_s(report.dmarc.location or '_dmarc.' + report.domain)}: {report.dmarc.status}"
    if section == "dkim":
        ok = sum(k.status == "ok" for k in report.dkim.keys)
        return f"{ok} usable key{'s' * (ok != 1)}"
    return report.mx.status
