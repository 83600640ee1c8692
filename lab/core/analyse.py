"""Provides analyse(): the one entry point from a capture and a DNS view to a Verdict.

The checks run in a fixed order because DMARC is computed from the SPF and DKIM results before it.
A check that raises is a bug in the lab, not in the mail; it becomes a visible `<family>.error` result
so one bad message or one bug never stops the others from being judged.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import replace

from lab.core.authres import render
from lab.core.checks.arc import check_arc
from lab.core.checks.blocklist import check_blocklist
from lab.core.checks.bulk import check_bulk, profile_disposition
from lab.core.checks.client import check_client
from lab.core.checks.content import check_content, external_results
from lab.core.checks.dkim import check_dkim
from lab.core.checks.dmarc import check_dmarc
from lab.core.checks.headers import check_headers
from lab.core.checks.retry import check_retry
from lab.core.checks.sender import check_sender
from lab.core.checks.spf import check_helo, check_mailfrom
from lab.core.checks.transport import check_transport
from lab.core.context import Context, Options
from lab.core.dnsview import DnsView
from lab.core.message import ParsedMessage
from lab.core.model import Capture, Listener
from lab.core.results import CheckResult, Level, Verdict, check
from lab.core.score import priced, score

Check = Callable[[Context], list[CheckResult]]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("retry", check_retry),
    ("transport", check_transport),
    ("spf", check_mailfrom),
    ("spf", check_helo),
    ("dkim", check_dkim),
    ("arc", check_arc),
    ("sender", check_sender),
    ("headers", check_headers),
    ("client", check_client),
    ("content", check_content),
)

# Mail the lab wrote itself (DSNs, auto-replies) was never sent by a client, nor to a provider: these families
# would judge the lab
LAB_SKIPS = frozenset({"transport", "spf", "client", "blocklist", "retry", "bulk"})

FAMILIES = ("bulk", "retry", "transport", "client", "blocklist", "spf", "dkim", "dmarc", "arc", "sender", "headers",
            "content")


def analyse(capture: Capture, dns: DnsView, authserv_id: str = "maillab", options: Options | None = None,
            message: ParsedMessage | None = None) -> Verdict:
    """Every check, then DMARC (from SPF and DKIM), then the provider profile's rules (from all of them).

    `message` is the capture already parsed, when the caller needed it first (to choose the options)."""
    options = options or Options()
    ctx = Context(capture, dns, authserv_id, options, _message=message)
    results: list[CheckResult] = []
    generated = capture.transport.listener is Listener.LAB
    if generated:
        results.append(check("transport.generated", Level.INFO, "Written by the lab (a bounce or an auto-reply for "
                             "the envelope sender): no client sent it, so transport, SPF, client, blocklist "
                             "and provider checks do not apply"))
    skipped = LAB_SKIPS if generated else frozenset()
    for family, fn in CHECKS:
        if family not in skipped:
            results.extend(_guarded(family, fn, ctx))
    if options.blocklists is not None and "blocklist" not in skipped:
        results.extend(_guarded("blocklist", lambda c: check_blocklist(c, options.blocklists), ctx))
    results.extend(_guarded("dmarc", lambda c: check_dmarc(c, results), ctx))
    results = _dmarc_override(results)
    profile = options.profile if options.profile is not None and getattr(options.profile, "provider", "") else None
    if "bulk" in skipped:
        profile = None
    if profile is not None:
        results.extend(_guarded("bulk", lambda c: check_bulk(c, results, profile), ctx))
    results.extend(external_results(options.external))
    results = priced(results)
    ordered = _unique_ids(sorted(results, key=lambda r: FAMILIES.index(r.family) if r.family in FAMILIES else 99))
    return Verdict(
        level=Verdict.overall(ordered),
        checks=ordered,
        authentication_results=render(authserv_id, capture, ordered),
        disposition=profile_disposition(ordered, profile) if profile is not None else disposition(ordered),
        headers=_summary(ctx),
        score=score(ordered),
        profile=profile.name if profile is not None else "none",
    )


def _dmarc_override(results: list[CheckResult]) -> list[CheckResult]:
    """An SPF fail under a DMARC pass is delivered by receivers that follow DMARC (RFC 7489 §10.1): a warning."""
    if not any(r.id == "dmarc" and r.result == "pass" for r in results):
        return results
    return [
        replace(r, level=Level.WARN, summary=r.summary + " (DMARC still passes through aligned DKIM)")
        if r.id == "spf.mailfrom" and r.level is Level.FAIL else r
        for r in results
    ]


def _unique_ids(results: list[CheckResult]) -> tuple[CheckResult, ...]:
    """Scripts key checks by id, so a repeated id gets `#2`, `#3` (checks should not repeat one)."""
    seen: dict[str, int] = {}
    out = []
    for r in results:
        n = seen[r.id] = seen.get(r.id, 0) + 1
        out.append(r if n == 1 else replace(r, id=f"{r.id}#{n}"))
    return tuple(out)


def _guarded(family: str, fn: Callable[[Context], list[CheckResult]], ctx: Context) -> list[CheckResult]:
    try:
        return fn(ctx)
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return [check(f"{family}.error", Level.WARN, f"The {family} check could not complete: "
                      f"{type(exc).__name__}: {exc}", location=f"{where.filename}:{where.lineno}",
                      fix="This is a bug in maillab; please report it with the message (maillab show ID --raw).")]


def _summary(ctx: Context) -> dict[str, str]:
    try:
        return ctx.message.summary()
    except Exception:  # noqa: BLE001
        return {}


def disposition(checks: tuple[CheckResult, ...]) -> str:
    """One line on what a typical receiving filter would do with the message."""
    by_id = {c.id: c for c in checks}
    dmarc = by_id.get("dmarc")
    spf = by_id.get("spf.mailfrom")
    dkim_pass = any(c.family == "dkim" and c.result == "pass" for c in checks)
    if any(c.result == "temperror" for c in checks if c.family in ("spf", "dmarc")):
        return "Deferred: 451 4.7.x a DNS lookup failed; a receiver would retry later"
    if dmarc is not None and dmarc.result == "fail":
        policy = dmarc.evidence.get("policy", "").split(" ")[0]
        if policy == "reject":
            return "Reject: 550 5.7.1 DMARC fails under p=reject (nothing aligned with the From domain passed)"
        if policy == "quarantine":
            return "Spam folder: DMARC fails under p=quarantine (nothing aligned with the From domain passed)"
    if spf is not None and spf.result == "fail" and not dkim_pass:
        return "Likely reject: SPF fail (-all) and no valid DKIM signature"
    if dmarc is not None and dmarc.result == "pass":
        worst = Verdict.overall(checks)
        if worst is Level.PASS:
            return "Inbox: authenticated and aligned"
        failing = sum(c.level is Level.FAIL for c in checks)
        if failing:
            return (f"Inbox likely: DMARC passes, but {failing} check{'s' if failing > 1 else ''} fail; "
                    "fix before real traffic")
        return "Inbox likely: DMARC passes; fix the warnings before real traffic"
    if any(c.level is Level.FAIL for c in checks):
        return "Spam folder likely: the message fails checks receivers weigh heavily"
    if spf is not None and spf.result == "pass" or dkim_pass:
        return "Delivered, trusted less: authenticated but without an aligned DMARC pass"
    return "Spam folder likely: nothing authenticates the sender"
