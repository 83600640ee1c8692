"""Provides SPF (RFC 7208) for the MAIL FROM and HELO identities, evaluated by pyspf through the lab's DNS view.

pyspf reads DNS through a module global. It is replaced once, at import, by a function that asks the
view held in a ContextVar, so concurrent checks in several threads each see their own view.
"""

from __future__ import annotations

import ipaddress
import re
from contextvars import ContextVar

import spf as pyspf

from lab.core.context import Context
from lab.core.dnsview import DnsTempError, DnsView, txt_records
from lab.core.results import AuthResult, CheckResult, Level, check

_SPF_V = re.compile(r"v=spf1( |$)", re.IGNORECASE)  # RFC 7208 §4.5, as pyspf selects records
_current_view: ContextVar[DnsView | None] = ContextVar("maillab_spf_view", default=None)


def _lookup(name, qtype, strict=True, timeout=None):  # pyspf's DNSLookup signature
    view = _current_view.get()
    if view is None:
        raise pyspf.TempError("no DNS view installed for this SPF check")
    try:
        answer = view.lookup(name, qtype)
    except DnsTempError as exc:
        raise pyspf.TempError(f"DNS {exc}") from exc
    return [((name, qtype), value) for value in answer.records]


pyspf.DNSLookup = _lookup

_MAILFROM_LEVEL = {
    "pass": Level.PASS,
    "fail": Level.FAIL,
    "softfail": Level.WARN,
    "neutral": Level.WARN,
    "none": Level.WARN,
    "permerror": Level.FAIL,
    "temperror": Level.WARN,
}
_HELO_LEVEL = {**_MAILFROM_LEVEL, "none": Level.INFO, "neutral": Level.INFO, "fail": Level.WARN,
               "permerror": Level.WARN}

_MEANING = {
    "pass": "{ip} is authorised to send for {domain}",
    "fail": "{domain} says {ip} must not send its mail (-all): receivers may reject it",
    "softfail": "{domain} says {ip} is probably not authorised (~all): likely spam-foldered",
    "neutral": "{domain} makes no assertion about {ip} (?all)",
    "none": "{domain} publishes no SPF record",
    "permerror": "the SPF record of {domain} is broken",
    "temperror": "the SPF record of {domain} could not be fetched (DNS failure)",
}


def evaluate(view: DnsView, ip: str, sender: str, helo: str) -> tuple[str, str, str | None, int]:
    """Run pyspf; returns (result, explanation, matched mechanism, DNS lookup count)."""
    token = _current_view.set(view)
    try:
        q = pyspf.query(i=ip, s=sender, h=helo or "unknown", timeout=20)
        result, _code, explanation = q.check()
        return result, explanation, q.mechanism, q.lookups
    except Exception as exc:  # noqa: BLE001 - pyspf raises on odd input; that is a permerror for us
        return "permerror", f"{type(exc).__name__}: {exc}", None, 0
    finally:
        _current_view.reset(token)


def spf_record(view: DnsView, domain: str) -> str | None:
    try:
        records = [t for t in txt_records(view, domain) if _SPF_V.match(t)]
    except DnsTempError:
        return None
    return " | ".join(records) if records else None


def check_mailfrom(ctx: Context) -> list[CheckResult]:
    env = ctx.capture.envelope
    helo = env.helo or ""
    if env.mail_from:
        domain = env.mail_from_domain
        sender = env.mail_from
        identity = "MAIL FROM"
    else:
        domain = _helo_domain(helo)
        sender = f"postmaster@{domain}" if domain else ""
        identity = "MAIL FROM <> (null sender: the HELO name stands in)"
    if not domain:
        return [check("spf.mailfrom", Level.WARN, "No domain to check SPF for: MAIL FROM has no domain and "
                      "HELO is not a domain name", result=AuthResult.NONE, ref="RFC 7208 §2.4",
                      fix="Send with a MAIL FROM address on your own domain.")]
    return [_result("spf.mailfrom", ctx, domain, sender, helo, identity, _MAILFROM_LEVEL)]


def check_helo(ctx: Context) -> list[CheckResult]:
    helo = ctx.helo or ""
    if not helo:
        return [check("spf.helo", Level.INFO, "No HELO name is known, so the HELO identity was not checked",
                      ref="RFC 7208 §2.3")]
    domain = _helo_domain(helo)
    if not domain:
        return [check("spf.helo", Level.INFO, f"HELO name {helo!r} is not a domain name, so it has no SPF",
                      result=AuthResult.NONE, ref="RFC 7208 §2.3", helo=helo or "(none)")]
    return [_result("spf.helo", ctx, domain, "", domain, "HELO", _HELO_LEVEL)]


def _result(cid: str, ctx: Context, domain: str, sender: str, helo: str, identity: str,
            levels: dict[str, Level]) -> CheckResult:
    ip = ctx.client_ip
    result, explanation, mechanism, lookups = evaluate(ctx.dns, ip, sender, helo)
    record = spf_record(ctx.dns, domain) if result != "temperror" else None
    summary = _MEANING.get(result, result).format(ip=ip, domain=domain)
    level = levels.get(result, Level.WARN)
    return check(
        cid, level, f"SPF {result}: {summary}", result=result, ref=_section(result, explanation),
        fix=None if result == "pass" else _fix(result, domain, ip, record, ctx.capture.client.is_loopback),
        identity=identity, domain=domain, client_ip=ip, record=record, mechanism=mechanism,
        dns_lookups=f"{lookups} of 10" if lookups else None,
        explanation=explanation if result not in ("pass", "none") else None,
    )


_SECTIONS = {"pass": "RFC 7208 §2.6.3", "fail": "RFC 7208 §2.6.4", "softfail": "RFC 7208 §2.6.5",
             "neutral": "RFC 7208 §2.6.2", "none": "RFC 7208 §2.6.1", "temperror": "RFC 7208 §2.6.6",
             "permerror": "RFC 7208 §2.6.7"}


def _section(result: str, explanation: str) -> str:
    """The RFC 7208 section behind a result, down to the rule a permerror broke."""
    text = explanation.lower()
    if result == "permerror":
        if "lookup" in text:
            return "RFC 7208 §4.6.4"  # more than 10 DNS-querying terms, or more than 2 void lookups
        if "two or more" in text:
            return "RFC 7208 §4.5"
        if "unknown mechanism" in text or "invalid" in text or "qualifier" in text:
            return "RFC 7208 §4.6.1"
        if "include" in text or "redirect" in text or "no spf record" in text:
            return "RFC 7208 §5.2"
    return _SECTIONS.get(result, "RFC 7208")


def _fix(result: str, domain: str, ip: str, record: str | None, loopback: bool) -> str:
    if loopback and result in ("fail", "softfail", "neutral"):
        return (f"The message came from loopback ({ip}). Say which IP it would come from in production: "
                f"`maillab serve --client-ip IP` or XCLIENT ADDR=IP; then publish that IP in {domain}'s SPF.")
    mech = f"ip6:{ip}" if _is_v6(ip) else f"ip4:{ip}"
    if result == "none":
        return f'Publish a TXT record at {domain}: "v=spf1 {mech} -all" (list every host that sends for it).'
    if result in ("fail", "softfail", "neutral"):
        if record:
            fixed = record.replace(" -all", f" {mech} -all").replace(" ~all", f" {mech} ~all")
            if fixed == record:
                fixed = record.replace("v=spf1", f"v=spf1 {mech}", 1)
            return f'Authorise {ip}: change the TXT record at {domain} to "{fixed}".'
        return f"Add {mech} to the SPF record of {domain}."
    if result == "permerror":
        return (f"Fix the SPF record at {domain}: keep exactly one v=spf1 TXT record, valid mechanisms only, "
                "and at most 10 DNS-querying mechanisms (include, a, mx, ptr, exists, redirect).")
    if result == "temperror":
        return "Check that the domain's name servers answer; receivers will defer (4xx) the mail meanwhile."
    return "Review the SPF record."


def _helo_domain(helo: str) -> str | None:
    name = helo.strip().strip("[]").rstrip(".").lower()
    if not name or "." not in name or name == "localhost":
        return None
    try:
        ipaddress.ip_address(name.removeprefix("ipv6:"))
        return None
    except ValueError:
        return name


def _is_v6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return False
