"""Provides DMARC (RFC 7489, with np= from RFC 9091): record discovery, alignment and the policy that applies.

The organisational domain comes from the Public Suffix List (publicsuffixlist); DMARC is evaluated
from the SPF and DKIM results already computed for the message, as a receiver does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from publicsuffixlist import PublicSuffixList

from lab.core import psl as suffix_list  # `psl` is org_domain's argument
from lab.core.context import Context
from lab.core.dnsview import DnsTempError, DnsView, txt_records
from lab.core.results import AuthResult, CheckResult, Level, check

POLICIES = ("none", "quarantine", "reject")
_DMARC_V = re.compile(r"v\s*=\s*DMARC1\s*(;|$)")  # RFC 7489 §6.6.3: other records are discarded


def org_domain(domain: str, psl: PublicSuffixList | None = None) -> str:
    """The organisational domain (RFC 7489 §3.2): the public suffix plus one label.

    A public suffix (or a name the list cannot place) is its own organisational domain. `psl` replaces
    the list bundled with publicsuffixlist (lab.core.psl), e.g. a snapshot for its own tests.
    """
    if psl is None:
        return suffix_list.org_domain(domain)
    return _org_with(psl, domain)


def _org_with(psl: PublicSuffixList, domain: str) -> str:
    domain = domain.rstrip(".").lower()
    try:
        return psl.privatesuffix(domain) or domain
    except Exception:  # noqa: BLE001 - odd labels must not break the check
        return domain


def aligned(a: str, b: str, mode: str) -> bool:
    """Identifier alignment: strict wants equal domains, relaxed the same organisational domain."""
    a, b = a.rstrip(".").lower(), b.rstrip(".").lower()
    if mode == "s":
        return a == b
    return org_domain(a) == org_domain(b)


@dataclass(frozen=True)
class DmarcRecord:
    raw: str
    tags: dict[str, str]
    problems: tuple[str, ...] = ()
    p: str | None = None
    sp: str | None = None
    np: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = field(default=())

    @property
    def usable(self) -> bool:
        return self.p is not None


def parse_record(raw: str) -> DmarcRecord:
    """Parse a DMARC TXT record tolerantly; unusable records keep `p=None` and say why in `problems`."""
    tags: dict[str, str] = {}
    problems: list[str] = []
    parts = [p.strip() for p in raw.split(";")]
    for part in parts:
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            problems.append(f"tag without a value: {part!r}")
            continue
        tags.setdefault(key.strip().lower(), value.strip())
    first = parts[0].replace(" ", "") if parts else ""
    if first != "v=DMARC1":
        problems.append("the record must start with v=DMARC1")
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip().lower().startswith("mailto:"))
    p = tags.get("p", "").lower() or None
    if p not in POLICIES:
        problems.append(f"p={tags.get('p', '')!r} is not none, quarantine or reject" if p else "p= is missing")
        p = "none" if rua else None  # RFC 7489 §6.6.3: with a valid rua, act as if p=none
    sp = tags.get("sp", "").lower() or None
    if sp is not None and sp not in POLICIES:
        problems.append(f"sp={sp!r} is not valid")
        sp = None
        p = "none" if rua else None  # RFC 7489 §6.6.3: an invalid sp voids the policy as an invalid p does
    np = tags.get("np", "").lower() or None
    if np is not None and np not in POLICIES:
        problems.append(f"np={np!r} is not valid")
        np = None
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    for name, value in (("adkim", adkim), ("aspf", aspf)):
        if value not in ("r", "s"):
            problems.append(f"{name}={value!r} must be r or s")
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        problems.append(f"pct={tags.get('pct')!r} is not a number")
        pct = 100
    if not 0 <= pct <= 100:
        problems.append(f"pct={pct} is outside 0-100")
        pct = max(0, min(100, pct))
    return DmarcRecord(raw, tags, tuple(problems), p, sp, np,
                       adkim if adkim in ("r", "s") else "r", aspf if aspf in ("r", "s") else "r", pct, rua)


@dataclass(frozen=True)
class Discovery:
    record: DmarcRecord | None
    location: str | None
    at_org: bool
    error: str | None = None  # "temperror" or "multiple"


def discover(view: DnsView, from_domain: str) -> Discovery:
    """Policy discovery (RFC 7489 §6.6.3): the From domain first, then its organisational domain."""
    candidates = [from_domain]
    org = org_domain(from_domain)
    if org != from_domain:
        candidates.append(org)
    for i, domain in enumerate(candidates):
        name = f"_dmarc.{domain}"
        try:
            records = [t for t in txt_records(view, name) if _DMARC_V.match(t)]
        except DnsTempError as exc:
            return Discovery(None, name, i > 0, f"temperror: {exc}")
        if len(records) > 1:
            return Discovery(None, name, i > 0, "multiple")
        if records:
            return Discovery(parse_record(records[0]), name, i > 0)
    return Discovery(None, None, False)


def check_dmarc(ctx: Context, prior: list[CheckResult]) -> list[CheckResult]:
    mailbox = ctx.message.from_mailbox
    if mailbox is None or not mailbox.domain:
        n = len(ctx.message.from_mailboxes)
        why = "has no From address" if n == 0 else f"has {n} From addresses"
        return [check("dmarc", Level.FAIL, f"DMARC cannot be evaluated: the message {why}",
                      result=AuthResult.PERMERROR, ref="RFC 7489 §6.6.1",
                      fix="Send exactly one From header with exactly one address.")]
    from_domain = mailbox.domain
    found = discover(ctx.dns, from_domain)
    base = {"from_domain": from_domain, "org_domain": org_domain(from_domain)}
    if found.error == "multiple":
        return [check("dmarc", Level.FAIL, f"{found.location} has more than one DMARC record, so receivers "
                      "apply none", result=AuthResult.NONE, ref="RFC 7489 §6.6.3",
                      fix=f"Keep exactly one v=DMARC1 TXT record at {found.location}.", **base)]
    if found.error:
        return [check("dmarc", Level.WARN, f"The DMARC record at {found.location} could not be fetched",
                      result=AuthResult.TEMPERROR, ref="RFC 7489 §6.6.3", reason=found.error,
                      fix="Check that the domain's name servers answer.", **base)]
    spf_domain, spf_ok = _spf_identity(prior)
    dkim_passes = [(c.evidence.get("d", ""), c) for c in prior
                   if c.family == "dkim" and c.result == AuthResult.PASS]
    record = found.record
    if record is None:
        return [check("dmarc", Level.WARN, f"{from_domain} publishes no DMARC policy", result=AuthResult.NONE,
                      ref="RFC 7489 §6.1",
                      fix=f'Publish a TXT record at _dmarc.{org_domain(from_domain)}: '
                          f'"v=DMARC1; p=none; rua=mailto:dmarc-reports@{org_domain(from_domain)}", '
                          "then move to p=quarantine or p=reject once reports are clean. "
                          "Gmail and Yahoo require a DMARC record from bulk senders.",
                      spf_domain=spf_domain, **base)]
    if not record.usable:
        return [check("dmarc", Level.FAIL, f"The DMARC record at {found.location} is invalid, so receivers "
                      "ignore it", result=AuthResult.PERMERROR, ref="RFC 7489 §6.3",
                      fix="Correct it: " + "; ".join(record.problems), record=record.raw, **base)]
    spf_aligned = bool(spf_ok and spf_domain and aligned(spf_domain, from_domain, record.aspf))
    dkim_aligned = [d for d, _ in dkim_passes if aligned(d, from_domain, record.adkim)]
    policy, policy_tag = _policy(ctx.dns, record, found.at_org, from_domain)
    evidence = dict(
        base, record=record.raw, record_at=found.location, policy=f"{policy} ({policy_tag})",
        alignment=f"adkim={record.adkim} aspf={record.aspf}", pct=record.pct if record.pct != 100 else None,
        spf=f"{spf_domain or '-'}: {'pass' if spf_ok else 'not pass'}, "
            f"{'aligned' if spf_aligned else 'not aligned'}",
        dkim=", ".join(f"{d}: pass, {'aligned' if d in dkim_aligned else 'not aligned'}"
                       for d, _ in dkim_passes) or "no passing signature",
        record_problems="; ".join(record.problems) or None,
    )
    if spf_aligned or dkim_aligned:
        how = " and ".join(x for x in ("SPF" if spf_aligned else "", "DKIM" if dkim_aligned else "") if x)
        return [check("dmarc", Level.PASS, f"DMARC pass: {how} aligned with {from_domain} (policy {policy})",
                      result=AuthResult.PASS, ref="RFC 7489 §4.2", **evidence)]
    level = Level.WARN if policy == "none" else Level.FAIL
    effect = {"none": "monitoring only, so receivers deliver it but trust it less",
              "quarantine": "receivers will put it in the spam folder",
              "reject": "receivers will reject it (550 5.7.1)"}[policy]
    if record.pct < 100 and policy != "none":
        effect += f" ({record.pct}% of the time, pct={record.pct})"
    return [check("dmarc", level, f"DMARC fail under p={policy}: {effect}", result=AuthResult.FAIL,
                  ref="RFC 7489 §6.6.2", fix=_fail_fix(from_domain, spf_domain, spf_ok, dkim_passes),
                  **evidence)]


def _policy(view: DnsView, record: DmarcRecord, at_org: bool, from_domain: str) -> tuple[str, str]:
    """The policy that applies: p for the domain itself, sp (or np) when found at the org domain."""
    assert record.p is not None
    if not at_org:
        return record.p, "p"
    if record.np and not _exists(view, from_domain):
        return record.np, "np: the From domain does not exist"
    if record.sp:
        return record.sp, "sp"
    return record.p, "p, inherited by the subdomain"


def _exists(view: DnsView, domain: str) -> bool:
    """RFC 9091 §2.1: a domain does not exist when A, AAAA and MX all answer NXDOMAIN or NODATA."""
    try:
        return any(view.lookup(domain, rtype).records for rtype in ("A", "AAAA", "MX"))
    except DnsTempError:
        return True


def _spf_identity(prior: list[CheckResult]) -> tuple[str | None, bool]:
    for c in prior:
        if c.id == "spf.mailfrom":
            return c.evidence.get("domain"), c.result == AuthResult.PASS
    return None, False


def _fail_fix(from_domain: str, spf_domain: str | None, spf_ok: bool, dkim_passes: list) -> str:
    tips = []
    if spf_ok and spf_domain:
        tips.append(f"SPF passed for {spf_domain}, which is not aligned with {from_domain}: use a MAIL FROM "
                    f"(return-path) address under {org_domain(from_domain)}")
    if dkim_passes:
        ds = ", ".join(d for d, _ in dkim_passes)
        tips.append(f"DKIM passed for d={ds}, not aligned with {from_domain}: sign with d={from_domain} "
                    f"(or d={org_domain(from_domain)} for relaxed alignment)")
    if not tips:
        tips.append(f"Make SPF pass for a MAIL FROM domain under {org_domain(from_domain)}, or sign with DKIM "
                    f"d={from_domain} and publish the key; DKIM survives forwarding, so do both")
    return "; ".join(tips) + "."
