"""Provides `maillab dns DOMAIN`: the DNS record inspector (lab.core.dnsreport) as terminal text and as JSON.

Everything that came from DNS (records, names, explanations quoting them) goes through lab.textsafe
before it is printed, so an escape sequence in a TXT record never reaches the terminal raw.
Exit codes: 0 nothing affects delivery, 1 a recommendation affects delivery, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import sys
from pathlib import Path

from lab.core.dnsreport import (
    MAX_SELECTORS,
    DkimKey,
    DomainReport,
    SpfNode,
    SpfTerm,
    inspect_domain,
    normalise_domain,
)
from lab.core.dnsview import DnsView, ZoneSyntaxError
from lab.core.results import Level
from lab.render import SYMBOL
from lab.textsafe import shown

_TERM_WIDTH = 28
_SECTION_NAMES = {"spf": "SPF", "dmarc": "DMARC", "dkim": "DKIM", "mx": "MX"}


def _s(text: object, limit: int = 200) -> str:
    return shown(str(text), limit)


def render_text(report: DomainReport) -> str:
    """The report for a terminal: one block per section, then the recommendations, worst first."""
    fails = sum(1 for r in report.recommendations if r.level is Level.FAIL)
    warns = sum(1 for r in report.recommendations if r.level is Level.WARN)
    if fails:
        head = f"{SYMBOL[Level.FAIL]} {fails} problem{'s' * (fails != 1)} affect{'s' * (fails == 1)} delivery"
    elif warns:
        head = f"{SYMBOL[Level.WARN]} nothing blocks delivery"
    else:
        head = f"{SYMBOL[Level.PASS]} nothing to fix"
    if warns:
        head += f", {warns} warning{'s' * (warns != 1)}"
    out = [f"DNS report for {_s(report.domain)}: {head}", ""]
    out += _spf_text(report)
    out += _dmarc_text(report)
    out += _dkim_text(report)
    out += _mx_text(report)
    out.append("Recommendations")
    if not report.recommendations:
        out.append("  none: the records say what a receiver needs to hear")
    for r in report.recommendations:
        out.append(f"  {SYMBOL[r.level]} {r.level.value:4} {r.section:5} {_s(r.problem, 600)}")
        if r.fix:
            out.append(f"{'':18}fix: {_s(r.fix, 900)}")
        if r.ref:
            out.append(f"{'':18}see: {_s(r.ref, 80)}")
    return "\n".join(out)


def _spf_text(report: DomainReport) -> list[str]:
    spf = report.spf
    out = [f"SPF  {_s(spf.domain)}: {spf.status}"]
    if spf.error:
        out.append(f"  temperror: {_s(spf.error)}")
    tree = spf.tree
    if tree is not None and tree.records:
        for record in tree.records[:5]:
            out.append(f"  record: {_s(record, 500)}")
    if tree is not None and tree.status == "syntax":
        out.append("  the record has a syntax error: receivers stop there (permerror) and look nothing up")
        out += _node_text(tree, 1)
    elif tree is not None and tree.status == "ok":
        bound = "" if spf.complete else "at least "
        ending = spf.ends_with or "no all (unlisted hosts are neutral)"
        out.append(f"  DNS lookups: {bound}{spf.lookups} of {spf.lookup_limit}   void lookups: {spf.void_lookups} of "
                   f"{spf.void_limit}   ends with: {ending}")
        out += _node_text(tree, 1)
    out.append("")
    return out


def _node_text(node: SpfNode, depth: int) -> list[str]:
    pad = "  " * depth
    out = []
    for t in node.terms:
        out += _term_text(t, pad)
        child = t.child
        if child is None:
            continue
        if child.status == "ok":
            out.append(f"{pad}  └ {_s(child.domain)}: {_s(child.records[0], 300)}")
            out += _node_text(child, depth + 2)
        elif child.records:
            out.append(f"{pad}  └ {_s(child.domain)} ({child.status}): "
                       + " | ".join(_s(r, 200) for r in child.records[:3]))
            if child.status == "syntax":
                out += _node_text(child, depth + 2)
        else:
            out.append(f"{pad}  └ {_s(child.domain)}: {child.status}")
    if node.more_terms:
        out.append(f"{pad}… {node.more_terms} more terms not read")
    return out


def _term_text(t: SpfTerm, pad: str) -> list[str]:
    text = _s(t.text, 120)
    line = f"{pad}{text:<{_TERM_WIDTH}} {_s(t.meaning, 300) if t.meaning else ''}".rstrip()
    if t.lookups:
        line += f"  [{t.lookups} lookup{'s' * (t.lookups != 1)}]"
    out = [line]
    more = pad + " " * (_TERM_WIDTH + 1)
    if t.addresses:
        shown_list = ", ".join(_s(a, 100) for a in t.addresses[:8])
        extra = f" (+{len(t.addresses) - 8} more)" if len(t.addresses) > 8 else ""
        out.append(f"{more}→ {shown_list}{extra}")
    if t.note:
        out.append(f"{more}note: {_s(t.note, 300)}")
    if t.problem:
        out.append(f"{more}{SYMBOL[Level.FAIL]} {_s(t.problem, 300)}")
    return out


def _dmarc_text(report: DomainReport) -> list[str]:
    d = report.dmarc
    out = [f"DMARC  {_s(d.location or '_dmarc.' + report.domain)}: {d.status}"]
    if d.at_org:
        out.append(f"  no record at _dmarc.{_s(d.domain)}: the organisational domain's applies")
    if d.error:
        out.append(f"  {_s(d.error)}")
    if d.record:
        out.append(f"  record: {_s(d.record, 500)}")
    if d.policy:
        out.append(f"  policy for {_s(d.domain)}: {d.policy} ({_s(d.policy_source)})")
    for tag in d.tags:
        out.append(f"  {_s(tag.tag + '=' + tag.value, 60):<{_TERM_WIDTH}} {_s(tag.meaning, 300)}")
    for r in d.rua + d.ruf:
        if r.problem:
            out.append(f"    {_s(r.uri, 100)}: {SYMBOL[Level.WARN]} {_s(r.problem)}")
        elif r.external:
            state = {True: "authorised", False: "NOT authorised", None: "authorisation unknown"}[r.authorised]
            out.append(f"    reports to {_s(r.domain)} (another organisation): {state} by TXT at "
                       f"{_s(r.authorisation_name)}")
    out.append("")
    return out


def _dkim_text(report: DomainReport) -> list[str]:
    out = ["DKIM"]
    for key in report.dkim.keys:
        out += _key_text(key)
    if report.dkim.tried:
        out.append(f"  no key at the common selectors: {', '.join(_s(s, 40) for s in report.dkim.tried)}")
    out.append(f"  {report.dkim.note}")
    out.append("")
    return out


def _key_text(key: DkimKey) -> list[str]:
    if key.status == "ok":
        what = f"{SYMBOL[Level.PASS]} {key.key_type} {key.bits}-bit"
        if key.testing:
            what += ", testing (t=y)"
        if key.strict:
            what += ", strict i= (t=s)"
    else:
        what = f"{SYMBOL[Level.FAIL if key.source == 'given' else Level.WARN]} {key.status}"
        if key.bits:
            what += f": {key.key_type} {key.bits}-bit"
    origin = "named" if key.source == "given" else "common selector"
    out = [f"  {_s(key.name, 120)}  {what}  ({origin})"]
    for tag in key.tags:
        out.append(f"    {_s(tag.tag + '=' + tag.value, 60):<{_TERM_WIDTH - 2}} {_s(tag.meaning)}")
    for problem in key.problems:
        out.append(f"    {SYMBOL[Level.WARN]} {_s(problem, 300)}")
    return out


def _mx_text(report: DomainReport) -> list[str]:
    mx = report.mx
    out = [f"MX  {mx.status}"]
    if mx.error:
        out.append(f"  {_s(mx.error)}")
    if mx.status == "null":
        out.append("  null MX (RFC 7505): the domain receives no mail")
    for h in mx.hosts:
        if h.host in ("", "."):
            continue
        addresses = ", ".join(_s(a, 60) for a in h.addresses[:6]) or "-"
        line = f"  {h.preference:>5} {_s(h.host, 120)}  {addresses}"
        if h.problem:
            line += f"  {SYMBOL[Level.WARN]} {_s(h.problem)}"
        out.append(line)
    if mx.status == "none":
        if mx.fallback:
            out.append(f"  no MX: mail to {_s(report.domain)} goes to its address: "
                       + ", ".join(_s(a, 60) for a in mx.fallback[:6]))
        else:
            out.append(f"  no MX and no address: mail to {_s(report.domain)} cannot be delivered")
    out.append("")
    return out


def to_json(report: DomainReport) -> dict:
    """The report as plain JSON types; strings from DNS are kept as they are (JSON escapes controls)."""
    doc = dataclasses.asdict(report)
    return {"domain": report.domain, "level": report.level.value, "needs_fixing": report.needs_fixing,
            **{k: doc[k] for k in ("spf", "dmarc", "dkim", "mx")},
            "recommendations": [{**r, "level": r["level"].value} for r in doc["recommendations"]]}


def selectors_seen(db_path: str | Path, domain: str, limit: int = 500) -> list[str]:
    """DKIM selectors of `domain` in the verdicts of the newest `limit` captured messages (d= equal to domain)."""
    path = Path(db_path)
    if not path.exists():
        return []
    from lab.store import Store

    found: list[str] = []
    try:
        store = Store(path)
        try:  # the verdict documents only: Store.get would load every message's raw bytes too
            rows = store.db.execute("SELECT data FROM verdicts ORDER BY message_id DESC LIMIT ?", (limit,)).fetchall()
        finally:
            store.close()
    except sqlite3.Error:
        return []
    for (data,) in rows:
        try:
            checks = json.loads(data).get("checks", [])
        except (ValueError, AttributeError):
            continue
        for c in checks if isinstance(checks, list) else ():
            ev = c.get("evidence") if isinstance(c, dict) else None
            if not isinstance(ev, dict):
                continue
            if c.get("family") == "dkim" and str(ev.get("d", "")).lower() == domain and ev.get("s"):
                s = str(ev["s"]).lower()
                if s not in found:
                    found.append(s)
        if len(found) >= MAX_SELECTORS:
            break
    return found


def run(args: argparse.Namespace, view: DnsView | None = None, db_path: str | Path | None = None) -> int:
    """`maillab dns DOMAIN [--selector S ...] [--json]`. Needs `args.domain`, `args.selector`, `args.json`;
    `view` is the DNS view `check` uses (built from `args.zones`/`args.offline`/`args.nameserver` when None),
    and `db_path` the store whose captured mail names more selectors."""
    try:
        domain = normalise_domain(args.domain)
    except ValueError as exc:
        print(f"maillab: {_s(exc, 300)}", file=sys.stderr)
        return 2
    selectors = [s for s in (getattr(args, "selector", None) or []) if s]
    if db_path is not None:
        selectors += selectors_seen(db_path, domain)
    if view is None:
        from lab.resolver import build_view

        try:
            view = build_view(getattr(args, "zones", None) or [], bool(getattr(args, "offline", False)),
                              getattr(args, "nameserver", None))
        except (ZoneSyntaxError, FileNotFoundError) as exc:
            print(f"maillab: {_s(exc, 300)}", file=sys.stderr)
            return 2
    report = inspect_domain(domain, view, selectors)
    mode = _mode(view)
    if getattr(args, "json", False):
        doc = to_json(report)
        if mode:
            doc["dns"] = mode
        print(json.dumps(doc, indent=2))
    else:
        if mode:
            print(f"DNS: {mode}")
        print(render_text(report))
    return 1 if report.needs_fixing else 0


def _mode(view: DnsView) -> str | None:
    from lab.core.dnsview import LayeredView
    from lab.resolver import describe

    return describe(view) if isinstance(view, LayeredView) else None
