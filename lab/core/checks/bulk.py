"""Provides the provider-profile checks: the message judged by one mailbox provider's published sender rules.

Gmail, Yahoo and Outlook.com each publish what a sender must do (SPF, DKIM, DMARC, PTR, TLS, RFC 5322,
one-click unsubscribe) and, for most rules, the reply a failing message gets. A developer testing an
application wants to know "would Gmail take this from a bulk sender?", so each rule here is one
`bulk.<rule>` result carrying the provider's reply code, what the provider does when the rule fails (the
gate: reject, defer, spam or none) and the profile it was judged under.

The rules read the other families' results (SPF, DKIM, DMARC, transport, client) instead of evaluating
anything twice, so check_bulk runs after all of them; format and unsubscribe rules read the message itself.
A fact another family did not produce (no TLS facts for `maillab check` without --tls, no FCrDNS result) is
reported as not checked, never as a failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lab.core.checks.dmarc import aligned
from lab.core.context import Context
from lab.core.mime import readable
from lab.core.profiles import Profile
from lab.core.results import CheckResult, Level, check
from lab.textsafe import shown as _shown

NO_CODE = "provider documents no code"


@dataclass(frozen=True)
class Rule:
    """How one provider enforces one rule: what it does to a failing message, and the reply it documents."""

    gate: str  # "reject", "defer", "spam" or "none"
    code: str  # the documented reply, e.g. "421 4.7.27 / 550 5.7.27", or NO_CODE


_G_AUTH = Rule("reject", "421 4.7.26 / 550 5.7.26")
_G_PTR = Rule("reject", "451 4.7.23 / 550 5.7.25")
_G_TLS = Rule("reject", "421 4.7.29 / 550 5.7.29")
_G_FORMAT = Rule("reject", "550 5.7.1")
_G_DKIM = Rule("reject", "421 4.7.30 / 550 5.7.30")
_MS = Rule("reject", "550 5.7.515")  # Outlook.com's one reply for every authentication requirement
_SPAM = Rule("spam", NO_CODE)
_ADVICE = Rule("none", NO_CODE)

# rule -> profile name -> how that profile enforces it. A profile missing from a rule does not apply it.
# Sources: Gmail "Email sender guidelines" and "Gmail SMTP errors and codes" (support.google.com/a/answer/81126,
# /3726730); Yahoo "Sender Requirements & Recommendations", "FAQs" and "SMTP Error Codes"
# (senders.yahooinc.com); Outlook.com "Strengthening Email Ecosystem: Outlook's New Requirements for
# High-Volume Senders" (April 2025, rejections from 5 May 2025) and the 550 5.7.515 NDR article.
RULES: dict[str, dict[str, Rule]] = {
    # all senders: SPF or DKIM
    "auth": {"gmail": _G_AUTH, "gmail-bulk": _G_AUTH, "yahoo": Rule("reject", "550 5.7.9")},
    # bulk senders: SPF and DKIM. Yahoo: "may be sent to the spam folder or rejected", no code documented.
    "spf": {"gmail-bulk": Rule("reject", "421 4.7.27 / 550 5.7.27"), "yahoo": _SPAM, "outlook": _MS},
    "dkim": {"gmail-bulk": _G_DKIM, "yahoo": _SPAM, "outlook": _MS},
    "dmarc": {"gmail-bulk": Rule("reject", "421 4.7.40 / 550 5.7.40"), "yahoo": _SPAM, "outlook": _MS},
    "alignment": {"gmail-bulk": Rule("reject", "421 4.7.32 / 550 5.7.32"), "yahoo": _SPAM, "outlook": _MS},
    # Yahoo lists "IPs which do not have a FQDN in their rDNS" among reasons for the spam folder
    "fcrdns": {"gmail": _G_PTR, "gmail-bulk": _G_PTR, "yahoo": _SPAM},
    "tls": {"gmail": _G_TLS, "gmail-bulk": _G_TLS},
    # Yahoo rejects non-compliant mail with 553/554 but names no status code; Outlook.com only recommends
    "format": {"gmail": _G_FORMAT, "gmail-bulk": _G_FORMAT, "yahoo": Rule("reject", NO_CODE), "outlook": _ADVICE},
    "one-click": {"gmail-bulk": _SPAM, "yahoo": _SPAM},
    "unsubscribe-link": {"gmail-bulk": _SPAM, "yahoo": _SPAM, "outlook": _ADVICE},
    # Gmail and Yahoo require DKIM keys of 1024 bits or more and recommend 2048
    "dkim-key": {"gmail": _SPAM, "gmail-bulk": _G_DKIM, "yahoo": _SPAM},
}

# a DNS failure during authentication: Gmail documents a deferral for it, the others say nothing
_TEMP_CODES = {"Gmail": "451 4.7.26"}

_REFS = {
    "Gmail": "Gmail email sender guidelines",
    "Yahoo": "Yahoo sender requirements",
    "Outlook.com": "Outlook.com high-volume sender requirements",
}

# Gmail message header limits (support.google.com/a/answer/14016360), enforced with 552 5.3.4
GMAIL_HEADER_LIMITS = {"total_bytes": 500 * 1024, "fields": 5000, "value_bytes": 32 * 1024, "message_id": 500,
                       "subject": 998, "name_bytes": 1024}
_UNLIMITED_VALUES = frozenset({"to", "cc", "references"})  # exempt from Gmail's per-header limit
_HEADER_LIMIT_CODE = "552 5.3.4"

EXACTLY_ONE = ("from", "message-id", "date")
AT_MOST_ONE = ("sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "references", "subject")
_SHOWN_NAMES = {"message-id": "Message-ID", "reply-to": "Reply-To", "in-reply-to": "In-Reply-To"}

MAX_SIGNATURES = 20  # DKIM-Signature fields read for h=, as the dkim family verifies at most 20
MAX_URIS = 20
_URI = re.compile(r"<([^<>]{1,2048})>")
_UNSUBSCRIBE_WORDS = ("unsubscribe", "opt out", "opt-out")
_NEAR = 200  # characters either side of the word that may hold the link
_LINK_NEAR = re.compile(r"https?://|mailto:|\[\d{1,4}\]", re.IGNORECASE)  # a URL, or mime's "[n]" link marker
MAX_MENTIONS = 100


@dataclass
class Outcome:
    """What one rule found, before the profile decides what that costs."""

    status: str  # "pass", "fail", "advice" (met, but the provider recommends more), "temp" or "unchecked"
    summary: str
    requirement: str  # the rule in a few words, for the disposition line
    fix: str | None = None
    code: str | None = None  # overrides the rule's documented code (Gmail: header limits get 552 5.3.4)
    ref: str | None = None  # the standard behind the rule, kept as evidence beside the provider's doc
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass
class _Facts:
    """The other families' results that the rules read."""

    spf: CheckResult | None
    dkim: list[CheckResult]
    dmarc: CheckResult | None
    tls: CheckResult | None
    fcrdns: CheckResult | None

    @classmethod
    def of(cls, results: Iterable[CheckResult]) -> _Facts:
        by_id: dict[str, CheckResult] = {}
        dkim: list[CheckResult] = []
        for r in results:
            by_id.setdefault(r.id, r)
            if r.family == "dkim" and r.id not in ("dkim.error", "dkim.more"):
                dkim.append(r)
        return cls(by_id.get("spf.mailfrom"), dkim, by_id.get("dmarc"), by_id.get("transport.tls"),
                   by_id.get("client.fcrdns"))

    @property
    def dkim_passes(self) -> list[CheckResult]:
        return [r for r in self.dkim if r.result == "pass"]

    @property
    def spf_pass(self) -> bool:
        return self.spf is not None and self.spf.result == "pass"


def check_bulk(ctx: Context, results: list[CheckResult], profile: Profile) -> list[CheckResult]:
    """One `bulk.<rule>` result per rule the profile applies, judged from the other families' `results`."""
    if not profile.provider:
        return []
    facts = _Facts.of(results)
    out = []
    for name, rule in _RULE_FUNCTIONS:
        spec = RULES[name].get(profile.name)
        if spec is not None:
            out.append(_result(name, rule(ctx, facts, profile), spec, profile))
    return out


def _result(name: str, o: Outcome, spec: Rule, profile: Profile) -> CheckResult:
    gate, code = spec.gate, o.code or spec.code
    if o.status == "temp":
        gate, code = "defer", _TEMP_CODES.get(profile.provider, NO_CODE)
    elif o.status == "advice":
        gate = "none"
    level = {
        "pass": Level.PASS,
        "advice": Level.WARN,
        "unchecked": Level.INFO,
        "temp": Level.FAIL,
        "fail": Level.FAIL if gate in ("reject", "defer") else Level.WARN,
    }[o.status]
    result = {"pass": "pass", "advice": "pass", "fail": "fail", "temp": "temperror"}.get(o.status)
    return check(f"bulk.{name}", level, f"{profile.label}: {o.summary}", result=result,
                 fix=o.fix if o.status != "pass" else None,
                 ref=_REFS.get(profile.provider, profile.provider), provider_code=code, gate=gate,
                 profile=profile.name, requirement=o.requirement, standard=o.ref, doc=profile.doc_url,
                 **o.evidence)


# --- authentication -------------------------------------------------------------------------------


def _auth(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Every sender must authenticate with SPF or DKIM; a message with neither is refused outright."""
    need = "SPF or DKIM passes"
    ev = {"spf": _spf_word(f), "dkim": _dkim_words(f)}
    if f.spf_pass or f.dkim_passes:
        how = " and ".join(x for x in (f"SPF ({_spf_domain(f)})" if f.spf_pass else "",
                                       f"DKIM (d={', '.join(_ds(f.dkim_passes))})" if f.dkim_passes else "") if x)
        return Outcome("pass", f"authenticated by {how}", need, evidence=ev)
    if _temp(f.spf) or any(_temp(r) for r in f.dkim):
        return Outcome("temp", "authentication could not complete: a DNS lookup failed temporarily", need,
                       fix="Check that the domain's name servers answer; the provider retries later.", evidence=ev)
    if f.spf is None and not f.dkim:
        return Outcome("unchecked", "not checked: no SPF or DKIM results", need, evidence=ev)
    return Outcome("fail", "neither SPF nor DKIM passes, so the sender is unauthenticated", need, evidence=ev,
                   fix="Authenticate the mail: publish an SPF record that lists the sending IP for the MAIL FROM "
                       "domain, and sign with DKIM for the From domain (both, for bulk mail).")


def _spf(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Bulk senders must pass SPF as well as DKIM; SPF is judged for the MAIL FROM domain."""
    need = "SPF passes"
    ev = {"spf": _spf_word(f), "client_ip": ctx.client_ip}
    if f.spf is None:
        return Outcome("unchecked", "SPF not checked: no spf.mailfrom result", need, evidence=ev)
    if f.spf_pass:
        return Outcome("pass", f"SPF passes for {_spf_domain(f)}", need, evidence=ev)
    if _temp(f.spf):
        return Outcome("temp", f"SPF could not be evaluated for {_spf_domain(f)} (temperror)", need, evidence=ev,
                       fix="Check that the domain's name servers answer; the provider retries later.")
    return Outcome("fail", f"SPF {f.spf.result or 'does not pass'} for {_spf_domain(f)}: bulk senders must pass "
                   "SPF", need, evidence=ev,
                   fix=f.spf.fix or "Publish an SPF record for the MAIL FROM domain that lists every sending IP.")


def _dkim(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Bulk senders must pass DKIM as well as SPF: any one valid signature counts."""
    need = "DKIM passes"
    ev = {"dkim": _dkim_words(f)}
    if f.dkim_passes:
        return Outcome("pass", f"DKIM passes (d={', '.join(_ds(f.dkim_passes))})", need, evidence=ev)
    if not f.dkim:
        return Outcome("unchecked", "DKIM not checked: no dkim results", need, evidence=ev)
    if any(_temp(r) for r in f.dkim):
        return Outcome("temp", "the DKIM key could not be fetched (temperror)", need, evidence=ev,
                       fix="Check that the domain's name servers answer; the provider retries later.")
    first = f.dkim[0]
    what = "the message is not DKIM-signed" if first.id == "dkim.none" else "no DKIM signature verifies"
    return Outcome("fail", f"{what}: bulk senders must pass DKIM", need, evidence=ev,
                   fix=next((r.fix for r in f.dkim if r.fix), None)
                   or "Sign outgoing mail with DKIM for the From domain and publish the public key.")


def _dmarc(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Bulk senders must publish a DMARC record; p=none is enough."""
    need = "a DMARC record is published (p=none or stronger)"
    d = f.dmarc
    if d is None:
        return Outcome("unchecked", "DMARC not checked: no dmarc result", need)
    ev = {"dmarc": d.result, "dmarc_record": d.evidence.get("record"), "policy": d.evidence.get("policy")}
    if d.result in ("pass", "fail"):
        policy = (d.evidence.get("policy") or "").split(" ")[0] or "?"
        return Outcome("pass", f"a DMARC record is published (p={policy})", need, evidence=ev)
    if d.result == "temperror":
        return Outcome("temp", "the DMARC record could not be fetched (temperror)", need, evidence=ev,
                       fix="Check that the domain's name servers answer; the provider retries later.")
    org = d.evidence.get("org-domain") or "your-domain"
    return Outcome("fail", f"no usable DMARC policy: {_strip_period(d.summary)}", need, evidence=ev,
                   fix=d.fix or f'Publish a TXT record at _dmarc.{org}: "v=DMARC1; p=none; '
                                 f'rua=mailto:dmarc-reports@{org}".')


def _alignment(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """The From domain must share an organisational domain with the SPF or the DKIM domain that passed."""
    need = "From is aligned with a passing SPF or DKIM domain"
    box = ctx.message.from_mailbox
    if box is None or not box.domain:
        return Outcome("fail", "the message has no single From address to align with", need,
                       fix="Send exactly one From field holding one address under your own domain.")
    frm = box.domain
    spf_dom = _spf_domain(f) if f.spf_pass else None
    spf_ok = bool(spf_dom and aligned(spf_dom, frm, "r"))
    dkim_ok = [d for d in _ds(f.dkim_passes) if aligned(d, frm, "r")]
    ev = {"from_domain": _shown(frm), "spf_domain": spf_dom, "dkim_domains": _ds(f.dkim_passes),
          "aligned_with": [x for x in ("SPF" if spf_ok else "", "DKIM" if dkim_ok else "") if x]}
    if spf_ok or dkim_ok:
        how = " and ".join(x for x in (f"SPF ({spf_dom})" if spf_ok else "",
                                       f"DKIM (d={', '.join(dkim_ok)})" if dkim_ok else "") if x)
        return Outcome("pass", f"From domain {_shown(frm)} is aligned with {how}", need, evidence=ev)
    passed = ", ".join(x for x in (f"SPF {spf_dom}" if spf_dom else "",
                                   *(f"DKIM d={d}" for d in _ds(f.dkim_passes))) if x) or "nothing"
    return Outcome("fail", f"From domain {_shown(frm)} is not aligned with any passing SPF or DKIM domain "
                   f"(passed: {passed})", need, evidence=ev, ref="RFC 7489 §3.1",
                   fix=f"Sign with DKIM d={_shown(frm)} (or its organisational domain), or send with a MAIL FROM "
                       f"(return-path) address under {_shown(frm)}, and make it pass.")


def _dkim_key(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Keys under 1024 bits do not count at Gmail or Yahoo; both recommend 2048."""
    need = "DKIM keys of at least 1024 bits (2048 recommended)"
    keyed = [r for r in f.dkim if r.evidence.get("key-bits", "").isdigit()]
    if not keyed:
        return Outcome("unchecked", "no DKIM key was fetched, so there is no key size to judge", need)
    judged = [r for r in keyed if r.result == "pass"] or keyed  # a short extra key does not matter beside a good one
    ev = {"keys": [f"{r.evidence.get('key-name', r.id)}: {r.evidence.get('key-type', '?')} "
                   f"{r.evidence['key-bits']} bits" for r in keyed[:5]]}
    weakest = min(judged, key=_strength)
    name, bits = weakest.evidence.get("key-name", weakest.id), int(weakest.evidence["key-bits"])
    if _strength(weakest) >= 2048:
        return Outcome("pass", "DKIM keys are strong (2048-bit RSA or ed25519)", need, evidence=ev)
    fix = (f"Generate a 2048-bit RSA key, publish it under a new selector (e.g. TXT at s2048._domainkey.<domain>) "
           f"and sign with it; retire {name} once mail signed with the old key has been delivered.")
    if bits < 1024:
        return Outcome("fail", f"the key at {name} is {bits} bits: keys under 1024 bits are not accepted", need,
                       evidence=ev, fix=fix, ref="RFC 8301 §3.2")
    return Outcome("advice", f"the key at {name} is {bits} bits: accepted, but 2048 is recommended", need,
                   evidence=ev, fix=fix, ref="RFC 8301 §3.2")


def _strength(r: CheckResult) -> int:
    if r.evidence.get("key-type") == "ed25519":
        return 3072  # a 256-bit ed25519 key is stronger than 2048-bit RSA
    return int(r.evidence["key-bits"])


# --- infrastructure ---------------------------------------------------------------------------------


def _fcrdns(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """The sending IP needs a PTR record whose name resolves back to the same IP (forward-confirmed)."""
    need = "the sending IP has forward-confirmed reverse DNS"
    r = f.fcrdns
    ip = ctx.client_ip
    ev = {"client_ip": ip, "fcrdns": r.result if r else None, "detail": _shown(r.summary) if r else None}
    if r is None:
        return Outcome("unchecked", f"forward-confirmed reverse DNS of {ip} not checked", need, evidence=ev)
    if r.result == "pass":
        return Outcome("pass", f"{ip} has forward-confirmed reverse DNS", need, evidence=ev)
    if ctx.capture.client.is_loopback:
        return Outcome("unchecked", f"{ip} is loopback, so its reverse DNS says nothing", need, evidence=ev,
                       fix="Tell the lab the production sending IP: `--client-ip IP`, or XCLIENT ADDR=IP.")
    if r.result == "temperror":
        return Outcome("temp", f"the reverse DNS of {ip} could not be fetched (temperror)", need, evidence=ev,
                       fix="Check that the reverse zone's name servers answer; the provider retries later.")
    if r.result in ("fail", "none"):
        return Outcome("fail", f"{ip} has no forward-confirmed reverse DNS ({r.result})", need, evidence=ev,
                       fix=r.fix or f"Ask whoever owns {ip} (your hosting provider) for a PTR record naming a host "
                                    f"under your domain, and publish an A/AAAA record for that host pointing back "
                                    f"to {ip}.")
    return Outcome("unchecked", f"reverse DNS of {ip} gave {r.result!r}, which this rule does not judge", need,
                   evidence=ev)


def _tls(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Mail must arrive over TLS; Gmail marks cleartext mail and rejects it from bulk senders."""
    need = "the message is sent over TLS"
    t = f.tls
    if t is None:
        return Outcome("unchecked", "TLS not checked: the message did not arrive over SMTP (with `maillab check`, "
                       "pass --tls to say it would)", need)
    ev = {"tls_version": t.evidence.get("tls-version"), "cipher": t.evidence.get("cipher")}
    if t.level is Level.PASS:
        return Outcome("pass", f"sent over {t.evidence.get('tls-version', 'TLS')}", need, evidence=ev)
    if t.evidence.get("tls-version"):
        return Outcome("advice", f"sent over an outdated protocol ({t.evidence['tls-version']})", need,
                       evidence=ev, ref="RFC 8996", fix="Use TLS 1.2 or 1.3.")
    return Outcome("fail", "the session was not encrypted", need, evidence=ev, ref="RFC 3207; RFC 8314",
                   fix="Use STARTTLS on port 587 (or implicit TLS on 465) for every message; make the "
                       "application fail rather than fall back to cleartext.")


# --- the message itself -----------------------------------------------------------------------------


def _format(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """RFC 5322 format as the providers enforce it: single-instance fields once, one From mailbox, sane sizes."""
    need = "RFC 5322 format: one From, Message-ID and Date; no repeated fields; headers within limits"
    msg = ctx.message
    counts: dict[str, int] = {}
    for h in msg.headers:
        counts[h.key] = counts.get(h.key, 0) + 1
    problems: list[str] = []
    for key in EXACTLY_ONE:
        n = counts.get(key, 0)
        if n != 1:
            problems.append(f"{n} {_name(key)} fields (exactly one is required)")
    for key in AT_MOST_ONE:
        if counts.get(key, 0) > 1:
            problems.append(f"{counts[key]} {_name(key)} fields (at most one is allowed)")
    boxes = msg.from_mailboxes
    if counts.get("from") == 1 and len(boxes) != 1:
        problems.append(f"From holds {len(boxes)} addresses (exactly one is required)")
    limits = _header_limits(ctx) if p.provider == "Gmail" else []
    code = None
    if limits and not problems:
        code = _HEADER_LIMIT_CODE
    problems += limits
    ev = {"header_bytes": len(msg.header_bytes), "fields": len(msg.headers),
          "header_limits": "Gmail's (500 KB, 5,000 fields, 32 KB a field)" if p.provider == "Gmail"
          else "none documented by the provider"}
    if not problems:
        return Outcome("pass", "the header fields follow RFC 5322 as the provider checks it", need, evidence=ev,
                       ref="RFC 5322 §3.6")
    shown = problems[:5] + ([f"… and {len(problems) - 5} more"] if len(problems) > 5 else [])
    return Outcome("fail", f"the message breaks the provider's format rules: {problems[0]}", need, code=code,
                   ref="RFC 5322 §3.6", evidence={**ev, "problems": "; ".join(shown)},
                   fix="Build the message with a mail library (it writes exactly one From, Date and Message-ID); "
                       "never add a field that may appear once a second time, and keep header fields small "
                       "(move data into the body).")


def _header_limits(ctx: Context) -> list[str]:
    """Gmail's documented header limits, each exceeded one as a problem."""
    lim = GMAIL_HEADER_LIMITS
    msg = ctx.message
    out = []
    if len(msg.header_bytes) > lim["total_bytes"]:
        out.append(f"the header section is {len(msg.header_bytes):,} bytes (Gmail's limit is 500 KB)")
    if len(msg.headers) > lim["fields"]:
        out.append(f"{len(msg.headers):,} header fields (Gmail's limit is {lim['fields']:,})")
    for h in msg.headers:
        if len(h.name) > lim["name_bytes"]:
            out.append(f"a header name of {len(h.name):,} bytes (Gmail's limit is 1 KB)")
            break
    for h in msg.headers:
        size = len(h.raw.encode("utf-8", "surrogateescape"))
        if size > lim["value_bytes"] and h.key not in _UNLIMITED_VALUES:
            out.append(f"{_shown(h.name, 60)} is {size:,} bytes (Gmail's limit is 32 KB a field)")
            break
    mid = msg.get_all("message-id")
    if mid and len(mid[0].raw) > lim["message_id"]:
        out.append(f"Message-ID is {len(mid[0].raw):,} characters (Gmail's limit is {lim['message_id']})")
    subject = msg.get_all("subject")
    if subject and len(subject[0].raw) > lim["subject"]:
        out.append(f"Subject is {len(subject[0].raw):,} characters (Gmail's limit is {lim['subject']})")
    return out


def _one_click(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Marketing and subscribed mail must offer one-click unsubscribe (RFC 8058): List-Unsubscribe with an
    https URI, List-Unsubscribe-Post: List-Unsubscribe=One-Click, both covered by a valid DKIM signature."""
    need = "one-click unsubscribe (RFC 8058)"
    msg = ctx.message
    fields = msg.get_all("list-unsubscribe")
    uris = _URI.findall(fields[0].raw[:16384])[:MAX_URIS] if fields else []
    https = [u.strip() for u in uris if u.strip().lower().startswith("https://")]
    mailto = [u.strip() for u in uris if u.strip().lower().startswith("mailto:")]
    post = msg.get_all("list-unsubscribe-post")
    post_ok = any(re.sub(r"\s+", "", h.raw).lower() == "list-unsubscribe=one-click" for h in post[:5])
    signed = _signed_fields(ctx, f)
    covered = {"list-unsubscribe", "list-unsubscribe-post"} <= signed
    missing = []
    if not fields:
        missing.append("a List-Unsubscribe field")
    elif not https:
        missing.append("an https URI in List-Unsubscribe")
    if not post:
        missing.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    elif not post_ok:
        missing.append("the value List-Unsubscribe=One-Click in List-Unsubscribe-Post")
    if fields and post and not covered:
        missing.append("a passing DKIM signature whose h= covers both fields")
    if len(fields) > 1:
        missing.append(f"one List-Unsubscribe field, not {len(fields)}")
    ev = {"list_unsubscribe": _shown(fields[0].raw) if fields else None,
          "list_unsubscribe_post": _shown(post[0].raw) if post else None,
          "https_uri": _shown(https[0]) if https else None, "mailto_uri": _shown(mailto[0]) if mailto else None,
          "dkim_signed_fields": ", ".join(sorted(x for x in signed if x.startswith("list-"))) or "none",
          "applies_to": "marketing and subscribed messages; transactional mail (receipts, password resets) "
                        "is exempt"}
    fix = ("Add both fields and sign them with DKIM (list them in h=): 'List-Unsubscribe: "
           "<https://your-domain/unsubscribe/TOKEN>' (optionally also <mailto:...>) and 'List-Unsubscribe-Post: "
           "List-Unsubscribe=One-Click'; the URL must unsubscribe on a POST with no further page or login.")
    if not missing:
        return Outcome("pass", "one-click unsubscribe is offered and DKIM-signed", need, evidence=ev,
                       ref="RFC 8058 §3.1, §4")
    if p.provider == "Yahoo" and fields and (https or mailto):  # Yahoo: mailto is acceptable, RFC 8058 recommended
        return Outcome("advice", f"List-Unsubscribe is present, which Yahoo accepts; it highly recommends RFC 8058 "
                       f"(missing: {missing[0]})", need, evidence=ev, fix=fix, ref="RFC 8058 §3.1, §4")
    return Outcome("fail", f"no one-click unsubscribe: missing {', '.join(missing)}", need, evidence=ev, fix=fix,
                   ref="RFC 8058 §3.1, §4")


def _signed_fields(ctx: Context, f: _Facts) -> set[str]:
    """Field names in h= of the DKIM-Signature fields that the dkim family reported as pass."""
    passing = {(r.evidence.get("d", ""), r.evidence.get("s", ""), r.evidence.get("b", "")) for r in f.dkim_passes}
    if not passing:
        return set()
    out: set[str] = set()
    for header in ctx.message.get_all("dkim-signature")[:MAX_SIGNATURES]:
        tags = _tags(header.raw)
        key = (tags.get("d", "").lower(), tags.get("s", ""), tags.get("b", "")[:12])
        if key in passing:
            out.update(x.strip().lower() for x in tags.get("h", "").split(":") if x.strip())
    return out


def _tags(raw: str) -> dict[str, str]:
    """DKIM tag=value pairs with white space removed from values (RFC 6376 §3.2); the first of a repeated tag."""
    tags: dict[str, str] = {}
    for part in raw[:65536].split(";")[:64]:
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip(), re.sub(r"\s+", "", value))
    return tags


def _unsubscribe_link(ctx: Context, f: _Facts, p: Profile) -> Outcome:
    """Besides the header, the body must show an unsubscribe link a person can see and click."""
    need = "a visible unsubscribe link in the body"
    try:
        body = readable(ctx.capture.raw)
    except Exception:  # noqa: BLE001 - an unparseable body simply has no link to find
        return Outcome("fail", "the body cannot be read, so no unsubscribe link can be found", need)
    text = body.text
    lower = text.lower()
    mentions = 0
    for word in _UNSUBSCRIBE_WORDS:
        i = lower.find(word)
        while i >= 0 and mentions < MAX_MENTIONS:
            mentions += 1
            window = text[max(0, i - _NEAR):i + len(word) + _NEAR]
            if _LINK_NEAR.search(window):
                snippet = _shown(" ".join(text[max(0, i - 40):i + len(word) + 60].split()), 120)
                return Outcome("pass", "the body has a visible unsubscribe link", need,
                               evidence={"body": body.source, "found": snippet})
            i = lower.find(word, i + 1)
    fix = ("Put a clearly visible link in the body, e.g. <a href=\"https://your-domain/unsubscribe/TOKEN\">"
           "Unsubscribe</a> in the footer (it may lead to a preference page), in the HTML and the text part.")
    ev = {"body": body.source}
    if mentions:
        return Outcome("fail", "the body mentions unsubscribing but shows no link near it", need, evidence=ev,
                       fix=fix)
    return Outcome("fail", "the body has no unsubscribe link", need, evidence=ev, fix=fix)


_RULE_FUNCTIONS = (
    ("auth", _auth),
    ("spf", _spf),
    ("dkim", _dkim),
    ("dkim-key", _dkim_key),
    ("dmarc", _dmarc),
    ("alignment", _alignment),
    ("fcrdns", _fcrdns),
    ("tls", _tls),
    ("format", _format),
    ("one-click", _one_click),
    ("unsubscribe-link", _unsubscribe_link),
)


# --- disposition ------------------------------------------------------------------------------------


def profile_disposition(results: Sequence[CheckResult], profile: Profile) -> str:
    """One line on what the profile's provider would do, from the bulk results' gates (worst first)."""
    if not profile.provider:
        return "No provider profile: judged by the lab's own checks only"
    bulk = [r for r in results if r.family == "bulk" and r.evidence.get("profile") == profile.name]
    if not bulk:
        return f"Not judged against {profile.label}: no provider results"
    for gate, verb in (("reject", "rejected"), ("defer", "deferred"), ("spam", "sent to spam")):
        hits = [r for r in bulk if r.level in (Level.FAIL, Level.WARN) and r.evidence.get("gate") == gate
                and r.result != "pass"]
        if hits:
            first = hits[0]
            reply = _reply(first.evidence.get("provider-code", ""), gate)
            why = first.summary.removeprefix(f"{profile.label}: ")
            more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
            return f"Would be {verb} by {profile.label}: {reply + ' ' if reply else ''}{why}{more}"
    advice = sum(r.level is Level.WARN for r in bulk)
    unchecked = [r.evidence.get("requirement", r.id) for r in bulk if r.level is Level.INFO]
    notes = []
    if advice:
        notes.append(f"{advice} recommendation{'s' if advice > 1 else ''} not followed")
    if unchecked:
        notes.append("not checked: " + ", ".join(unchecked))
    tail = f" ({'; '.join(notes)})" if notes else ""
    return f"Would be delivered by {profile.label}: every requirement checked is met{tail}"


_REPLY = re.compile(r"\b([45]\d\d [45]\.\d{1,3}\.\d{1,3})\b")


def _reply(code: str, gate: str) -> str:
    """The documented reply that goes with the gate: the 5xx for a rejection, the 4xx for a deferral."""
    replies = _REPLY.findall(code)
    want = "5" if gate == "reject" else "4" if gate == "defer" else ""
    if not want:
        return ""
    return next((r for r in replies if r.startswith(want)), replies[0] if replies else "")


# --- small helpers ----------------------------------------------------------------------------------


def _temp(r: CheckResult | None) -> bool:
    return r is not None and r.result == "temperror"


def _spf_domain(f: _Facts) -> str:
    return (f.spf.evidence.get("domain") if f.spf else None) or "the MAIL FROM domain"


def _spf_word(f: _Facts) -> str:
    if f.spf is None:
        return "not checked"
    return f"{f.spf.result or '?'} ({f.spf.evidence.get('domain', '-')})"


def _ds(results: Iterable[CheckResult]) -> list[str]:
    return list(dict.fromkeys(r.evidence.get("d", "?") for r in results))


def _dkim_words(f: _Facts) -> str:
    if not f.dkim:
        return "not checked"
    words = [f"d={r.evidence['d']} s={r.evidence.get('s', '?')}: {r.result}" if "d" in r.evidence
             else f"{r.id}: {r.result}" for r in f.dkim[:5]]
    return ", ".join(words) + (f" … and {len(f.dkim) - 5} more" if len(f.dkim) > 5 else "")


def _name(key: str) -> str:
    return _SHOWN_NAMES.get(key, key.title())


def _strip_period(text: str) -> str:
    return text[:1].lower() + text[1:].rstrip(".")
