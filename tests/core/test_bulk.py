"""Tests for provider profiles: each rule fires and stays quiet, per profile, on real signed mail and real DNS zones.

Every message is built and DKIM-signed with dkimpy, judged by the real analysis (lab.core.analyse), and only
then handed to check_bulk, so the rules read the same results a running lab produces. The client.fcrdns
family is written by another module; its result is supplied here as the CheckResult that family returns.
"""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import BAD_IP, GOOD_IP, capture, key, message, sign

from lab.core.analyse import analyse
from lab.core.checks.bulk import NO_CODE, RULES, check_bulk, profile_disposition
from lab.core.context import Context
from lab.core.dnsview import LayeredView, ZoneView
from lab.core.model import Capture, Client, Listener
from lab.core.profiles import PROFILES, Profile, get_profile
from lab.core.results import CheckResult, Level, check

UNSUB = "List-Unsubscribe: <https://example.com/u/TOKEN>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
FOOTER = "Hi Bob,\r\nthis week's news.\r\n\r\nUnsubscribe: https://example.com/u/TOKEN\r\n"
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe", b"list-unsubscribe-post"]
ORG_KEY = {"domain": "example.org", "selector": "s1"}
ALL_RULES = ["bulk.auth", "bulk.spf", "bulk.dkim", "bulk.dkim-key", "bulk.dmarc", "bulk.alignment", "bulk.fcrdns",
             "bulk.tls", "bulk.format", "bulk.one-click", "bulk.unsubscribe-link"]
APPLIES = {
    "gmail-bulk": ALL_RULES,
    "gmail": ["bulk.auth", "bulk.dkim-key", "bulk.fcrdns", "bulk.tls", "bulk.format"],
    "yahoo": [r for r in ALL_RULES if r != "bulk.tls"],
    "outlook": ["bulk.spf", "bulk.dkim", "bulk.dmarc", "bulk.alignment", "bulk.format", "bulk.unsubscribe-link"],
}


def newsletter(extra: str = UNSUB, body: str = FOOTER, from_: str = "News <news@example.com>",
               headers: list[bytes] | None = None, **signing) -> bytes:
    """A bulk message that meets every rule: one-click unsubscribe signed by DKIM, a link in the footer."""
    return sign(message(from_=from_, extra=extra, body=body), include_headers=headers or SIGNED, **signing)


def fcrdns(word: str) -> CheckResult:
    """The result the client.fcrdns family gives (result word pass/fail/none/temperror)."""
    return check("client.fcrdns", Level.PASS if word == "pass" else Level.FAIL, f"FCrDNS {word}", result=word,
                 fix=None if word == "pass" else "Publish a PTR record and a matching A record.")


def judge(view, raw: bytes | Capture, profile: str, fc: str | None = "pass", dns=None, **kw) -> dict[str, CheckResult]:
    cap = raw if isinstance(raw, Capture) else capture(raw, **kw)
    dns = dns or view
    results = [r for r in analyse(cap, dns).checks if r.id != "client.fcrdns"]  # replaced by the one asked for
    if fc is not None:
        results.append(fcrdns(fc))
    return {r.id: r for r in check_bulk(Context(cap, dns), results, get_profile(profile))}


def disposition(view, raw, profile: str, **kw) -> str:
    return profile_disposition(list(judge(view, raw, profile, **kw).values()), get_profile(profile))


def ev(r: CheckResult) -> tuple[str, str]:
    return r.evidence["gate"], r.evidence["provider-code"]


# --- profiles ---------------------------------------------------------------------------------------


def test_the_profiles_and_their_lookup():
    assert list(PROFILES) == ["gmail-bulk", "gmail", "yahoo", "outlook", "none"]
    assert get_profile(" Gmail-Bulk ") is PROFILES["gmail-bulk"]
    assert (get_profile("gmail-bulk").bulk, get_profile("gmail").bulk) == (True, False)
    assert (get_profile("gmail-bulk").label, get_profile("gmail").label) == ("Gmail (bulk)", "Gmail")
    assert all(p.doc_url.startswith("https://") for p in PROFILES.values() if p.provider)
    with pytest.raises(ValueError, match="gmail-bulk, gmail, yahoo, outlook, none"):
        get_profile("hotmail")
    with pytest.raises(AttributeError):
        PROFILES["gmail"].bulk = True  # frozen: a profile cannot be changed under a running lab


def test_rule_table_names_only_known_profiles_and_gates():
    for rule, by_profile in RULES.items():
        assert set(by_profile) <= set(PROFILES) - {"none"}, rule
        assert all(spec.gate in ("reject", "defer", "spam", "none") for spec in by_profile.values())


def test_the_none_profile_judges_nothing(view):
    assert judge(view, newsletter(), "none") == {}
    assert profile_disposition([], get_profile("none")).startswith("No provider profile")


# --- a compliant message ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["gmail-bulk", "gmail", "yahoo", "outlook"])
def test_a_compliant_newsletter_passes_every_rule_of_every_profile(view, profile):
    out = judge(view, newsletter(), profile)
    assert list(out) == APPLIES[profile]
    assert {r.id: r.level for r in out.values()} == dict.fromkeys(APPLIES[profile], Level.PASS)
    for r in out.values():
        assert r.evidence["profile"] == profile
        assert r.evidence["gate"] in ("reject", "defer", "spam", "none")
        assert r.evidence["provider-code"]
        assert r.ref and not r.ref.startswith("RFC")  # the provider's documentation
        assert r.summary.startswith(get_profile(profile).label + ": ")
        assert r.fix is None
    assert disposition(view, newsletter(), profile).startswith(
        f"Would be delivered by {get_profile(profile).label}: every requirement checked is met")


# --- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "level", "code"), [
    ("gmail", Level.FAIL, "421 4.7.26 / 550 5.7.26"),
    ("gmail-bulk", Level.FAIL, "421 4.7.26 / 550 5.7.26"),
    ("yahoo", Level.FAIL, "550 5.7.9"),
])
def test_unauthenticated_mail_is_rejected(view, profile, level, code):
    out = judge(view, message(), profile, ip=BAD_IP)  # unsigned, from an IP SPF -all refuses
    assert (out["bulk.auth"].level, ev(out["bulk.auth"])) == (level, ("reject", code))
    assert out["bulk.auth"].result == "fail" and "DKIM" in out["bulk.auth"].fix
    assert judge(view, sign(message()), profile, ip=BAD_IP)["bulk.auth"].level is Level.PASS  # DKIM alone is enough
    assert judge(view, message(), profile)["bulk.auth"].level is Level.PASS  # so is SPF alone


def test_gmail_names_the_unauthenticated_reply_first(view):
    assert disposition(view, message(), "gmail-bulk", ip=BAD_IP).startswith(
        "Would be rejected by Gmail (bulk): 550 5.7.26 neither SPF nor DKIM passes")
    assert disposition(view, message(), "gmail", ip=BAD_IP).startswith("Would be rejected by Gmail: 550 5.7.26")


@pytest.mark.parametrize(("profile", "level", "gate", "code"), [
    ("gmail-bulk", Level.FAIL, "reject", "421 4.7.27 / 550 5.7.27"),
    ("yahoo", Level.WARN, "spam", NO_CODE),
    ("outlook", Level.FAIL, "reject", "550 5.7.515"),
])
def test_bulk_senders_must_pass_spf_as_well_as_dkim(view, profile, level, gate, code):
    out = judge(view, newsletter(), profile, ip=BAD_IP)
    spf = out["bulk.spf"]
    assert (spf.level, spf.result, ev(spf)) == (level, "fail", (gate, code))
    assert spf.evidence["spf"] == "fail (example.com)" and "203.0.113.5" in spf.fix
    assert out["bulk.dkim"].level is Level.PASS
    assert judge(view, newsletter(), profile)["bulk.spf"].level is Level.PASS


def test_all_senders_at_gmail_need_only_one_of_spf_and_dkim(view):
    out = judge(view, newsletter(), "gmail", ip=BAD_IP)
    assert "bulk.spf" not in out and out["bulk.auth"].level is Level.PASS
    assert disposition(view, newsletter(), "gmail-bulk", ip=BAD_IP).startswith(
        "Would be rejected by Gmail (bulk): 550 5.7.27 SPF fail for example.com")


@pytest.mark.parametrize(("profile", "level", "gate", "code"), [
    ("gmail-bulk", Level.FAIL, "reject", "421 4.7.30 / 550 5.7.30"),
    ("yahoo", Level.WARN, "spam", NO_CODE),
    ("outlook", Level.FAIL, "reject", "550 5.7.515"),
])
def test_bulk_senders_must_pass_dkim_as_well_as_spf(view, profile, level, gate, code):
    unsigned = message(extra=UNSUB, body=FOOTER)
    r = judge(view, unsigned, profile)["bulk.dkim"]
    assert (r.level, ev(r)) == (level, (gate, code))
    assert r.summary.endswith("the message is not DKIM-signed: bulk senders must pass DKIM")
    broken = newsletter().replace(b"this week's news", b"this week's olds")  # body changed after signing
    r = judge(view, broken, profile)["bulk.dkim"]
    assert r.level is level and "no DKIM signature verifies" in r.summary and "Sign the message last" in r.fix
    assert judge(view, newsletter(), profile)["bulk.dkim"].level is Level.PASS


def test_gmail_rejects_bulk_mail_without_dkim_with_5_7_30(view):
    assert disposition(view, message(extra=UNSUB, body=FOOTER), "gmail-bulk").startswith(
        "Would be rejected by Gmail (bulk): 550 5.7.30")


def _key(bits: int) -> tuple[bytes, bytes]:
    """A fresh RSA key of `bits`: (private PEM, the DKIM TXT record for its public half)."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)


@pytest.mark.parametrize(("profile", "short_level", "short_gate"), [
    ("gmail-bulk", Level.FAIL, "reject"),
    ("gmail", Level.WARN, "spam"),
    ("yahoo", Level.WARN, "spam"),
])
def test_dkim_key_sizes(view, profile, short_level, short_gate):
    pem, record = _key(1024)
    dns = LayeredView(ZoneView({("k1024._domainkey.example.com", "TXT"): ((record,),)}), view)
    raw = message(from_="News <news@example.com>", extra=UNSUB, body=FOOTER)
    medium = dkim.sign(raw, b"k1024", b"example.com", pem, include_headers=SIGNED) + raw
    r = judge(view, medium, profile, dns=dns)["bulk.dkim-key"]
    assert (r.level, r.result, r.evidence["gate"]) == (Level.WARN, "pass", "none")  # met; 2048 recommended
    assert "1024 bits: accepted, but 2048 is recommended" in r.summary and "2048-bit" in r.fix
    r = judge(view, newsletter(selector="short"), profile)["bulk.dkim-key"]  # 512 bits: never verifies
    assert (r.level, r.result, r.evidence["gate"]) == (short_level, "fail", short_gate)
    assert "short._domainkey.example.com is 512 bits" in r.summary
    assert judge(view, newsletter(), profile)["bulk.dkim-key"].level is Level.PASS  # 2048
    ed = newsletter(selector="ed", keyfile="example.com.ed.ed25519")
    assert judge(view, ed, profile)["bulk.dkim-key"].level is Level.PASS
    unsigned = judge(view, message(extra=UNSUB, body=FOOTER), profile)["bulk.dkim-key"]
    assert unsigned.level is Level.INFO and unsigned.result is None


def test_a_short_extra_key_beside_a_strong_passing_one_is_fine(view):
    raw = newsletter(selector="short")
    both = dkim.sign(raw, b"rsa2048", b"example.com", key("example.com.rsa2048.pem"), include_headers=SIGNED) + raw
    r = judge(view, both, "gmail-bulk")["bulk.dkim-key"]
    assert r.level is Level.PASS
    assert "short._domainkey.example.com: rsa 512 bits" in r.evidence["keys"]


def _zone_without_dmarc(view) -> LayeredView:
    key = view.lookup("rsa2048._domainkey.example.com", "TXT").records
    return LayeredView(ZoneView({("nodmarc.test", "TXT"): ((b"v=spf1 ip4:192.0.2.0/24 -all",),),
                                 ("rsa2048._domainkey.nodmarc.test", "TXT"): key}), view)


@pytest.mark.parametrize(("profile", "level", "gate", "code"), [
    ("gmail-bulk", Level.FAIL, "reject", "421 4.7.40 / 550 5.7.40"),
    ("yahoo", Level.WARN, "spam", NO_CODE),
    ("outlook", Level.FAIL, "reject", "550 5.7.515"),
])
def test_bulk_senders_must_publish_dmarc(view, profile, level, gate, code):
    dns = _zone_without_dmarc(view)
    raw = newsletter(from_="news@nodmarc.test", domain="nodmarc.test", keyfile="example.com.rsa2048.pem")
    out = judge(view, raw, profile, dns=dns, mail_from="bounce@nodmarc.test")
    assert (out["bulk.dmarc"].level, ev(out["bulk.dmarc"])) == (level, (gate, code))
    assert "nodmarc.test publishes no DMARC policy" in out["bulk.dmarc"].summary
    assert '"v=DMARC1; p=none' in out["bulk.dmarc"].fix
    assert out["bulk.alignment"].level is Level.PASS  # alignment is judged without a record
    assert (out["bulk.spf"].level, out["bulk.dkim"].level) == (Level.PASS, Level.PASS)
    relaxed = judge(view, newsletter(from_="news@example.org", **ORG_KEY), profile, mail_from="news@example.org")
    assert relaxed["bulk.dmarc"].level is Level.PASS and "p=none" in relaxed["bulk.dmarc"].summary


def test_gmail_rejects_bulk_mail_without_dmarc_with_5_7_40(view):
    raw = newsletter(from_="news@nodmarc.test", domain="nodmarc.test", keyfile="example.com.rsa2048.pem")
    assert disposition(view, raw, "gmail-bulk", dns=_zone_without_dmarc(view), mail_from="b@nodmarc.test") \
        .startswith("Would be rejected by Gmail (bulk): 550 5.7.40 no usable DMARC policy")


@pytest.mark.parametrize(("profile", "level", "gate", "code"), [
    ("gmail-bulk", Level.FAIL, "reject", "421 4.7.32 / 550 5.7.32"),
    ("yahoo", Level.WARN, "spam", NO_CODE),
    ("outlook", Level.FAIL, "reject", "550 5.7.515"),
])
def test_from_must_align_with_a_passing_spf_or_dkim_domain(view, profile, level, gate, code):
    raw = newsletter(**ORG_KEY)  # From example.com, signed by example.org, MAIL FROM example.org
    out = judge(view, raw, profile, mail_from="news@example.org")
    r = out["bulk.alignment"]
    assert (out["bulk.spf"].level, out["bulk.dkim"].level) == (Level.PASS, Level.PASS)  # both pass, neither aligns
    assert (r.level, ev(r)) == (level, (gate, code))
    assert "passed: SPF example.org, DKIM d=example.org" in r.summary and "d=example.com" in r.fix
    ok = judge(view, newsletter(from_="news@news.example.com"), profile, ip=BAD_IP)["bulk.alignment"]
    assert ok.level is Level.PASS and "DKIM (d=example.com)" in ok.summary  # relaxed: the parent domain aligns


def test_dns_failures_defer_rather_than_fail(view):
    dns = LayeredView(ZoneView(timeouts=["_dmarc.example.com"]), view)
    r = judge(view, newsletter(), "gmail-bulk", dns=dns)["bulk.dmarc"]
    assert (r.level, r.result, ev(r)) == (Level.FAIL, "temperror", ("defer", "451 4.7.26"))
    assert disposition(view, newsletter(), "gmail-bulk", dns=dns).startswith(
        "Would be deferred by Gmail (bulk): 451 4.7.26")
    assert ev(judge(view, newsletter(), "yahoo", dns=dns)["bulk.dmarc"]) == ("defer", NO_CODE)
    dns = LayeredView(ZoneView(timeouts=["rsa2048._domainkey.example.com"]), view)
    out = judge(view, newsletter(), "gmail-bulk", dns=dns)
    assert (out["bulk.dkim"].result, out["bulk.spf"].result) == ("temperror", "pass")
    dns = LayeredView(ZoneView(timeouts=["example.com"]), view)
    out = judge(view, newsletter(), "gmail-bulk", dns=dns)
    assert (out["bulk.spf"].result, out["bulk.auth"].result) == ("temperror", "pass")


# --- infrastructure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "level", "gate", "code"), [
    ("gmail-bulk", Level.FAIL, "reject", "451 4.7.23 / 550 5.7.25"),
    ("gmail", Level.FAIL, "reject", "451 4.7.23 / 550 5.7.25"),
    ("yahoo", Level.WARN, "spam", NO_CODE),
])
@pytest.mark.parametrize("word", ["fail", "none"])
def test_the_sending_ip_needs_forward_confirmed_reverse_dns(view, profile, level, gate, code, word):
    r = judge(view, newsletter(), profile, fc=word)["bulk.fcrdns"]
    assert (r.level, r.result, ev(r)) == (level, "fail", (gate, code))
    assert r.evidence["client-ip"] == GOOD_IP and r.fix == "Publish a PTR record and a matching A record."
    assert judge(view, newsletter(), profile, fc="pass")["bulk.fcrdns"].level is Level.PASS


def test_fcrdns_not_yet_checked_is_info_not_a_failure(view):
    r = judge(view, newsletter(), "gmail-bulk", fc=None)["bulk.fcrdns"]
    assert (r.level, r.result) == (Level.INFO, None) and "not checked" in r.summary
    assert disposition(view, newsletter(), "gmail-bulk", fc=None) == (
        "Would be delivered by Gmail (bulk): every requirement checked is met "
        "(not checked: the sending IP has forward-confirmed reverse DNS)")
    r = judge(view, newsletter(), "gmail", fc="temperror")["bulk.fcrdns"]
    assert (r.level, r.evidence["gate"]) == (Level.FAIL, "defer")
    loopback = capture(newsletter(), ip="127.0.0.1")
    r = judge(view, replace(loopback, client=Client(ip="127.0.0.1")), "gmail", fc="none")["bulk.fcrdns"]
    assert r.level is Level.INFO and "loopback" in r.summary and "--client-ip" in r.fix
    assert "bulk.fcrdns" not in judge(view, newsletter(), "outlook", fc="fail")


@pytest.mark.parametrize("profile", ["gmail-bulk", "gmail"])
def test_gmail_requires_tls(view, profile):
    r = judge(view, newsletter(), profile, tls=False, auth=None, listener=Listener.RELAY)["bulk.tls"]
    assert (r.level, ev(r)) == (Level.FAIL, ("reject", "421 4.7.29 / 550 5.7.29"))
    assert "STARTTLS" in r.fix
    assert disposition(view, newsletter(), profile, tls=False, auth=None, listener=Listener.RELAY).startswith(
        f"Would be rejected by {get_profile(profile).label}: 550 5.7.29 the session was not encrypted")
    old = capture(newsletter())
    old = replace(old, transport=replace(old.transport, tls_version="TLSv1"))
    r = judge(view, old, profile)["bulk.tls"]
    assert (r.level, r.result, r.evidence["gate"]) == (Level.WARN, "pass", "none")
    cli = judge(view, newsletter(), profile, listener=Listener.CLI, tls=False, auth=None)["bulk.tls"]
    assert cli.level is Level.INFO and "--tls" in cli.summary  # `maillab check` without --tls: nothing to judge
    assert judge(view, newsletter(), profile)["bulk.tls"].level is Level.PASS


def test_yahoo_and_outlook_document_no_tls_rule(view):
    for profile in ("yahoo", "outlook"):
        assert "bulk.tls" not in judge(view, newsletter(), profile, tls=False, auth=None, listener=Listener.RELAY)


# --- format -----------------------------------------------------------------------------------------


def _drop(raw: bytes, name: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    return b"\r\n".join(line for line in head.split(b"\r\n") if not line.lower().startswith(name + b":")) + sep + body


FORMAT_BREAKS = [
    pytest.param(lambda: message(extra="From: Mallory <m@example.com>\r\n"), "2 From fields", id="two-from"),
    pytest.param(lambda: message(from_="a@example.com, b@example.com"), "From holds 2 addresses", id="two-mailboxes"),
    pytest.param(lambda: _drop(message(), b"message-id"), "0 Message-ID fields", id="no-message-id"),
    pytest.param(lambda: _drop(message(), b"date"), "0 Date fields", id="no-date"),
    pytest.param(lambda: message(extra="Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"), "2 Date fields", id="two-dates"),
    pytest.param(lambda: message(extra="Subject: again\r\n"), "2 Subject fields", id="two-subjects"),
    pytest.param(lambda: message(extra="To: c@example.net\r\n"), "2 To fields", id="two-to"),
]


@pytest.mark.parametrize(("profile", "level", "gate", "code"), [
    ("gmail-bulk", Level.FAIL, "reject", "550 5.7.1"),
    ("gmail", Level.FAIL, "reject", "550 5.7.1"),
    ("yahoo", Level.FAIL, "reject", NO_CODE),
    ("outlook", Level.WARN, "none", NO_CODE),
])
@pytest.mark.parametrize(("build", "problem"), FORMAT_BREAKS)
def test_rfc5322_format(view, profile, level, gate, code, build, problem):
    r = judge(view, build(), profile)["bulk.format"]
    assert (r.level, r.result, ev(r)) == (level, "fail", (gate, code))
    assert problem in r.summary and problem in r.evidence["problems"]
    assert judge(view, message(), profile)["bulk.format"].level is Level.PASS


HEADER_LIMITS = [
    pytest.param(lambda: message(subject="s" * 999), "Subject is 999 characters", id="subject"),
    pytest.param(lambda: message(extra=f"X-Data: {'x' * (32 * 1024 + 1)}\r\n"), "X-Data is 32,769 bytes",
                 id="one-field"),
    pytest.param(lambda: message(extra="".join(f"X-N{i}: v\r\n" for i in range(5000))), "5,007 header fields",
                 id="field-count"),
    pytest.param(lambda: message(extra="".join(f"X-B{i}: {'y' * 30000}\r\n" for i in range(18))),
                 "the header section is", id="total-size"),
    pytest.param(lambda: message(extra=f"X-{'n' * 1024}: v\r\n"), "a header name of 1,026 bytes", id="name"),
    pytest.param(lambda: _drop(message(), b"message-id").replace(
        b"MIME-Version", f"Message-ID: <{'m' * 500}@example.com>\r\nMIME-Version".encode()),
        "Message-ID is 514 characters", id="message-id"),
]


@pytest.mark.parametrize(("build", "problem"), HEADER_LIMITS)
def test_gmail_header_limits(view, build, problem):
    raw = build()
    r = judge(view, raw, "gmail")["bulk.format"]
    assert (r.level, ev(r)) == (Level.FAIL, ("reject", "552 5.3.4"))
    assert problem in r.evidence["problems"]
    for other in ("yahoo", "outlook"):  # neither documents header limits
        assert judge(view, raw, other)["bulk.format"].level is Level.PASS


def test_fields_exempt_from_gmails_per_field_limit_and_the_limits_themselves_pass(view):
    long_to = ", ".join(f"user{i}@example.net" for i in range(2000))  # about 40 KB, one To field
    assert len(long_to) > 32 * 1024
    assert judge(view, message(to=long_to), "gmail")["bulk.format"].level is Level.PASS
    at_limit = message(subject="s" * 998, extra=f"X-Data: {'x' * (32 * 1024)}\r\n")
    assert judge(view, at_limit, "gmail")["bulk.format"].level is Level.PASS


def test_format_problems_and_a_limit_together_keep_the_format_reply(view):
    r = judge(view, message(subject="s" * 999, extra="From: b@example.com\r\n"), "gmail")["bulk.format"]
    assert r.evidence["provider-code"] == "550 5.7.1"
    assert "2 From fields" in r.evidence["problems"] and "Subject is 999" in r.evidence["problems"]


# --- unsubscribe ------------------------------------------------------------------------------------


ONE_CLICK_BREAKS = [
    pytest.param(lambda: newsletter(extra=""), "a List-Unsubscribe field", id="no-header"),
    pytest.param(lambda: newsletter(extra="List-Unsubscribe: <https://example.com/u/T>\r\n"),
                 "List-Unsubscribe-Post: List-Unsubscribe=One-Click", id="no-post"),
    pytest.param(lambda: newsletter(extra="List-Unsubscribe: <http://example.com/u/T>\r\n"
                                          "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
                 "an https URI", id="http-only"),
    pytest.param(lambda: newsletter(extra="List-Unsubscribe: <https://example.com/u/T>\r\n"
                                          "List-Unsubscribe-Post: List-Unsubscribe=Yes\r\n"),
                 "the value List-Unsubscribe=One-Click", id="wrong-post-value"),
    pytest.param(lambda: newsletter(headers=[b"from", b"to", b"subject", b"date", b"message-id"]),
                 "a passing DKIM signature whose h= covers both fields", id="not-signed"),
    pytest.param(lambda: newsletter(headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                             b"list-unsubscribe"]),
                 "h= covers both fields", id="post-not-signed"),
    pytest.param(lambda: newsletter().replace(b"this week's news", b"this week's olds"),
                 "h= covers both fields", id="signature-fails"),
    pytest.param(lambda: message(extra=UNSUB, body=FOOTER), "h= covers both fields", id="unsigned"),
    pytest.param(lambda: newsletter(extra=UNSUB + "List-Unsubscribe: <https://example.com/u/2>\r\n"),
                 "one List-Unsubscribe field, not 2", id="two-headers"),
]


@pytest.mark.parametrize(("build", "missing"), ONE_CLICK_BREAKS)
def test_gmail_bulk_one_click_unsubscribe(view, build, missing):
    r = judge(view, build(), "gmail-bulk")["bulk.one-click"]
    assert (r.level, r.result, ev(r)) == (Level.WARN, "fail", ("spam", NO_CODE))
    assert missing in r.summary and "List-Unsubscribe=One-Click" in r.fix
    assert r.evidence["standard"] == "RFC 8058 §3.1, §4"


def test_one_click_passes_when_signed_and_complete(view):
    r = judge(view, newsletter(), "gmail-bulk")["bulk.one-click"]
    assert r.level is Level.PASS
    assert r.evidence["dkim-signed-fields"] == "list-unsubscribe, list-unsubscribe-post"
    assert r.evidence["https-uri"] == "https://example.com/u/TOKEN"
    both = "List-Unsubscribe: <mailto:u@example.com?subject=stop>, <https://example.com/u/T>\r\n" \
           "List-Unsubscribe-Post:  list-unsubscribe=one-click \r\n"  # ABNF literals are case-insensitive
    r = judge(view, newsletter(extra=both), "gmail-bulk")["bulk.one-click"]
    assert r.level is Level.PASS and r.evidence["mailto-uri"] == "mailto:u@example.com?subject=stop"


def test_only_the_passing_signature_counts_for_coverage(view):
    covering_but_broken = newsletter(selector="short")  # covers both fields, but a 512-bit key never verifies
    raw = sign(covering_but_broken, include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    out = judge(view, raw, "gmail-bulk")
    assert out["bulk.dkim"].level is Level.PASS
    assert out["bulk.one-click"].level is Level.WARN and "h= covers" in out["bulk.one-click"].summary


def test_yahoo_accepts_mailto_and_recommends_rfc8058(view):
    mailto = newsletter(extra="List-Unsubscribe: <mailto:unsub@example.com>\r\n")
    r = judge(view, mailto, "yahoo")["bulk.one-click"]
    assert (r.level, r.result, r.evidence["gate"]) == (Level.WARN, "pass", "none")
    assert "Yahoo accepts" in r.summary
    r = judge(view, newsletter(extra=""), "yahoo")["bulk.one-click"]
    assert (r.level, r.result, r.evidence["gate"]) == (Level.WARN, "fail", "spam")
    assert judge(view, newsletter(), "yahoo")["bulk.one-click"].level is Level.PASS
    assert "bulk.one-click" not in judge(view, newsletter(extra=""), "outlook")
    assert "bulk.one-click" not in judge(view, newsletter(extra=""), "gmail")


HTML_LINK = ('<html><body><p>News.</p><p style="font-size:10px">'
             '<a href="https://example.com/u/T">Unsubscribe</a></p></body></html>')
HTML_NO_LINK = "<html><body><p>News.</p><p>To unsubscribe, write to us.</p></body></html>"


def _html(body: str) -> bytes:
    return newsletter(body=body).replace(b"Content-Type: text/plain", b"Content-Type: text/html")


@pytest.mark.parametrize(("profile", "level", "gate"), [
    ("gmail-bulk", Level.WARN, "spam"),
    ("yahoo", Level.WARN, "spam"),
    ("outlook", Level.WARN, "none"),
])
@pytest.mark.parametrize(("build", "said"), [
    pytest.param(lambda: newsletter(body="Hi Bob,\r\nnews.\r\n"), "no unsubscribe link", id="none"),
    pytest.param(lambda: newsletter(body="Hi,\r\nreply STOP to unsubscribe.\r\n"), "no link near it",
                 id="text-without-link"),
    pytest.param(lambda: _html(HTML_NO_LINK), "no link near it", id="html-without-link"),
    pytest.param(lambda: newsletter(body="Unsubscribe here.\r\n" + "x " * 200 + "\r\nhttps://example.com/\r\n"),
                 "no link near it", id="link-too-far"),
])
def test_a_visible_unsubscribe_link(view, profile, level, gate, build, said):
    r = judge(view, build(), profile)["bulk.unsubscribe-link"]
    assert (r.level, r.result, r.evidence["gate"]) == (level, "fail", gate)
    assert said in r.summary and "Unsubscribe</a>" in r.fix


@pytest.mark.parametrize("build", [
    pytest.param(lambda: newsletter(), id="text"),
    pytest.param(lambda: _html(HTML_LINK), id="html-anchor"),
    pytest.param(lambda: newsletter(body="Manage mail: https://example.com/unsubscribe?u=1\r\n"), id="in-the-url"),
    pytest.param(lambda: newsletter(body="To opt out, visit https://example.com/prefs\r\n"), id="opt-out"),
])
def test_a_visible_unsubscribe_link_is_found(view, build):
    r = judge(view, build(), "gmail-bulk")["bulk.unsubscribe-link"]
    assert r.level is Level.PASS and r.evidence["found"]


def test_html_link_evidence_names_the_converted_body(view):
    r = judge(view, _html(HTML_LINK), "yahoo")["bulk.unsubscribe-link"]
    assert r.evidence["body"].startswith("text/html") and "Unsubscribe [1]" in r.evidence["found"]


# --- disposition ------------------------------------------------------------------------------------


def test_disposition_puts_rejection_before_spam_and_counts_the_rest(view):
    text = disposition(view, message(), "gmail-bulk", ip=BAD_IP)  # unauthenticated and no unsubscribe
    assert text.startswith("Would be rejected by Gmail (bulk): 550 5.7.26")
    assert text.endswith("(and 3 more)")  # spf, dkim and alignment reject too; the spam-gated ones are not counted
    spam = disposition(view, newsletter(extra="", headers=[b"from", b"to", b"subject", b"date", b"message-id"]),
                       "gmail-bulk")
    assert spam == ("Would be sent to spam by Gmail (bulk): no one-click unsubscribe: missing a List-Unsubscribe "
                    "field, List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    advice = disposition(view, newsletter(extra="List-Unsubscribe: <mailto:u@example.com>\r\n"), "yahoo")
    assert advice == ("Would be delivered by Yahoo (bulk): every requirement checked is met "
                      "(1 recommendation not followed)")


def test_disposition_only_reads_results_of_its_profile(view):
    results = list(judge(view, message(), "gmail", ip=BAD_IP).values())
    assert profile_disposition(results, get_profile("yahoo")) == "Not judged against Yahoo (bulk): no provider results"
    custom = Profile("gmail", "Gmail", False, "", "")
    assert profile_disposition(results, custom).startswith("Would be rejected by Gmail: 550 5.7.26")


# --- hostile input ----------------------------------------------------------------------------------


HOSTILE = [
    pytest.param(lambda: message(extra=f"List-Unsubscribe: {'<' * 50000}{'a' * 50000}\r\n"), id="100k-unsub"),
    pytest.param(lambda: message(extra=f"List-Unsubscribe: <https://x/{'a' * 100_000}>\r\n"), id="100k-uri"),
    pytest.param(lambda: message(extra="".join(f"X-H{i}: v\r\n" for i in range(10_000))), id="10k-headers"),
    pytest.param(lambda: message(extra="".join(f"DKIM-Signature: v=1; d={'a;' * 5000}\r\n" for i in range(40))),
                 id="dkim-junk"),
    pytest.param(lambda: message(body="unsubscribe " * 20_000), id="20k-mentions"),
    pytest.param(lambda: message(body="".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n"
                                              for i in range(2000)) + "unsubscribe\r\n").replace(
        b"text/plain; charset=utf-8", b"multipart/mixed; boundary=b0"), id="deep-mime"),
    pytest.param(lambda: message(body="<a href=" * 20_000).replace(b"text/plain", b"text/html"), id="html-tags"),
]


@pytest.mark.parametrize("build", HOSTILE)
def test_hostile_mail_is_judged_quickly_and_never_raises(view, build):
    cap = capture(build())
    results = list(analyse(cap, view).checks)
    start = time.perf_counter()
    for profile in ("gmail-bulk", "yahoo", "outlook", "gmail"):
        out = check_bulk(Context(cap, view), results, get_profile(profile))
        assert [r.id for r in out] == APPLIES[profile]
    assert time.perf_counter() - start < 2.0


def test_mail_text_in_evidence_is_escaped(view):
    raw = newsletter(extra="List-Unsubscribe: <https://example.com/\x1b[31mred>\r\n")
    r = judge(view, raw, "gmail-bulk")["bulk.one-click"]
    assert "\x1b" not in r.evidence["list-unsubscribe"] and "␛" in r.evidence["list-unsubscribe"]
