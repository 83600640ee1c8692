"""Tests for DMARC: organisational domains, alignment, policy discovery and the verdict each policy gives."""

from __future__ import annotations

import pytest
from support import BAD_IP, GOOD_IP, capture, message, sign

from lab.core.analyse import analyse
from lab.core.checks.dmarc import aligned, org_domain, parse_record
from lab.core.dnsview import LayeredView, ZoneView
from lab.core.results import CheckResult, Level, Verdict

COM = "v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=r; rua=mailto:dmarc@example.com"
ORG_SIGN = {"domain": "example.org", "selector": "s1"}


@pytest.mark.parametrize(("domain", "org"), [
    ("example.com", "example.com"),
    ("a.b.example.com", "example.com"),
    ("example.co.uk", "example.co.uk"),
    ("mail.example.co.uk", "example.co.uk"),
    ("EXAMPLE.COM.", "example.com"),
    ("com", "com"),  # a public suffix is its own answer
    ("co.uk", "co.uk"),
    ("x.none.test", "none.test"),  # unknown TLDs follow the PSL default rule "*"
])
def test_org_domain(domain, org):
    assert org_domain(domain) == org


@pytest.mark.parametrize(("a", "b", "mode", "expected"), [
    ("example.com", "example.com", "s", True),
    ("mail.example.com", "example.com", "s", False),
    ("mail.example.com", "example.com", "r", True),
    ("example.com", "news.example.com", "r", True),
    ("a.example.co.uk", "b.example.co.uk", "r", True),
    ("example.co.uk", "other.co.uk", "r", False),  # the public suffix is not an organisation
    ("example.org", "example.com", "r", False),
    ("oooo.com", "ooo.com", "s", False),
    ("EXAMPLE.com.", "example.com", "s", True),
])
def test_aligned(a, b, mode, expected):
    assert aligned(a, b, mode) is expected


def dmarc(verdict: Verdict) -> CheckResult:
    (r,) = [c for c in verdict.checks if c.family == "dmarc"]
    return r


def judge(view, from_: str = "alice@example.com", mail_from: str = "alice@example.com", ip: str = GOOD_IP,
          signed: dict | None = None, helo: str = "mail.example.com") -> Verdict:
    raw = message(from_=from_)
    if signed is not None:
        raw = sign(raw, **signed)
    return analyse(capture(raw, mail_from=mail_from, ip=ip, helo=helo), view)


@pytest.mark.parametrize(("case", "result", "level", "policy", "spf", "dkim"), [
    (dict(), "pass", Level.PASS, "reject (p)", "example.com: pass, aligned", "no passing signature"),
    (dict(ip=BAD_IP, signed={}), "pass", Level.PASS, "reject (p)", "example.com: not pass, not aligned",
     "example.com: pass, aligned"),
    (dict(signed={}), "pass", Level.PASS, "reject (p)", "example.com: pass, aligned", "example.com: pass, aligned"),
    (dict(mail_from="", helo="mail.example.com"), "pass", Level.PASS, "reject (p)",  # HELO stands in for <>
     "mail.example.com: pass, aligned", "no passing signature"),
    (dict(from_="alice@news.example.com", ip=BAD_IP, signed={}), "pass", Level.PASS, "quarantine (sp)",
     "example.com: not pass, not aligned", "example.com: pass, aligned"),  # relaxed: parent d= aligns
    (dict(mail_from="alice@example.org"), "fail", Level.FAIL, "reject (p)", "example.org: pass, not aligned",
     "no passing signature"),
    (dict(ip=BAD_IP, signed=ORG_SIGN), "fail", Level.FAIL, "reject (p)", "example.com: not pass, not aligned",
     "example.org: pass, not aligned"),
    (dict(from_="alice@news.example.com", mail_from="alice@example.org", ip=BAD_IP), "fail", Level.FAIL,
     "quarantine (sp)", "example.org: not pass, not aligned", "no passing signature"),
    (dict(from_="alice@strict.example.com", signed={}), "fail", Level.FAIL, "reject (p)",
     "example.com: pass, not aligned", "example.com: pass, not aligned"),  # adkim=s aspf=s
    (dict(from_="alice@strict.example.com", mail_from="bounce@strict.example.com"), "pass", Level.PASS,
     "reject (p)", "strict.example.com: pass, aligned", "no passing signature"),
    (dict(from_="alice@example.org", mail_from="alice@example.org", ip=BAD_IP), "fail", Level.WARN, "none (p)",
     "example.org: not pass, not aligned", "no passing signature"),
    (dict(from_="alice@quarantine.test", ip=BAD_IP), "fail", Level.FAIL, "quarantine (p)",
     "example.com: not pass, not aligned", "no passing signature"),
    (dict(from_="alice@nonexistent.npdomain.test", ip=BAD_IP), "fail", Level.FAIL,
     "reject (np: the From domain does not exist)", "example.com: not pass, not aligned", "no passing signature"),
    (dict(from_="alice@exists.npdomain.test", ip=BAD_IP), "fail", Level.WARN, "none (p, inherited by the subdomain)",
     "example.com: not pass, not aligned", "no passing signature"),
], ids=["spf-only", "dkim-only", "both", "null-sender-helo", "subdomain-relaxed-dkim", "spf-unaligned",
        "dkim-unaligned", "subdomain-sp", "strict", "strict-spf-exact", "p-none", "p-quarantine", "np-nxdomain",
        "np-existing"])
def test_dmarc_outcomes(view, case, result, level, policy, spf, dkim):
    r = dmarc(judge(view, **case))
    assert (r.result, r.level) == (result, level)
    assert (r.evidence["policy"], r.evidence["spf"], r.evidence["dkim"]) == (policy, spf, dkim)
    assert (r.fix is None) == (result == "pass")


@pytest.mark.parametrize(("case", "summary"), [
    (dict(), "DMARC pass: SPF aligned with example.com (policy reject)"),
    (dict(ip=BAD_IP, signed={}), "DMARC pass: DKIM aligned with example.com (policy reject)"),
    (dict(signed={}), "DMARC pass: SPF and DKIM aligned with example.com (policy reject)"),
    (dict(ip=BAD_IP), "DMARC fail under p=reject: receivers will reject it (550 5.7.1)"),
    (dict(from_="alice@example.org", ip=BAD_IP),
     "DMARC fail under p=none: monitoring only, so receivers deliver it but trust it less"),
])
def test_summaries_say_which_identifier_aligned(view, case, summary):
    assert dmarc(judge(view, **case)).summary == summary


@pytest.mark.parametrize(("case", "fragments"), [
    (dict(mail_from="alice@example.org"),
     ["SPF passed for example.org, which is not aligned with example.com",
      "use a MAIL FROM (return-path) address under example.com"]),
    (dict(ip=BAD_IP, signed=ORG_SIGN),
     ["DKIM passed for d=example.org, not aligned with example.com", "sign with d=example.com"]),
    (dict(ip=BAD_IP), ["Make SPF pass for a MAIL FROM domain under example.com", "sign with DKIM d=example.com"]),
])
def test_fail_fix_says_what_to_align(view, case, fragments):
    fix = dmarc(judge(view, **case)).fix
    for fragment in fragments:
        assert fragment in fix


def test_strict_record_evidence(view):
    r = dmarc(judge(view, from_="alice@strict.example.com", signed={}))
    assert r.evidence["alignment"] == "adkim=s aspf=s"
    assert r.evidence["record-at"] == "_dmarc.strict.example.com"
    assert "sign with d=strict.example.com" in r.fix


@pytest.mark.parametrize(("from_", "record_at", "org"), [
    ("alice@example.com", "_dmarc.example.com", "example.com"),
    ("alice@news.example.com", "_dmarc.example.com", "example.com"),  # falls back to the organisational domain
    ("alice@a.b.example.com", "_dmarc.example.com", "example.com"),
    ("alice@strict.example.com", "_dmarc.strict.example.com", "example.com"),  # its own record wins
])
def test_policy_discovery(view, from_, record_at, org):
    r = dmarc(judge(view, from_=from_, ip=BAD_IP))
    assert (r.evidence["record-at"], r.evidence["org-domain"]) == (record_at, org)
    assert r.evidence["from-domain"] == from_.partition("@")[2]


@pytest.mark.parametrize(("from_", "disposition"), [
    ("alice@example.com", "Reject: 550 5.7.1"),
    ("alice@news.example.com", "Spam folder: DMARC fails under p=quarantine"),
    ("alice@quarantine.test", "Spam folder: DMARC fails under p=quarantine"),
    ("alice@nonexistent.npdomain.test", "Reject: 550 5.7.1"),
])
def test_failing_policy_sets_the_disposition(view, from_, disposition):
    verdict = judge(view, from_=from_, ip=BAD_IP)
    assert verdict.disposition.startswith(disposition)
    assert verdict.level is Level.FAIL


def test_p_none_failure_is_a_warning_not_a_rejection(view):
    verdict = judge(view, from_="alice@example.org", mail_from="alice@example.org", ip=BAD_IP)
    assert dmarc(verdict).level is Level.WARN
    assert not verdict.disposition.startswith(("Reject", "Spam folder:"))


@pytest.mark.parametrize(("from_", "result", "level", "fix"), [
    ("alice@twodmarc.test", "none", Level.FAIL, "Keep exactly one v=DMARC1 TXT record at _dmarc.twodmarc.test"),
    ("alice@baddmarc.test", "permerror", Level.FAIL, "Correct it: p='bogus' is not none, quarantine or reject"),
    ("alice@none.test", "none", Level.WARN, 'Publish a TXT record at _dmarc.none.test: "v=DMARC1; p=none;'),
    ("alice@mail.none.test", "none", Level.WARN, 'Publish a TXT record at _dmarc.none.test: "v=DMARC1; p=none;'),
])
def test_broken_or_missing_records(view, from_, result, level, fix):
    r = dmarc(judge(view, from_=from_))
    assert (r.result, r.level) == (result, level)
    assert r.fix.startswith(fix)
    assert r.evidence["from-domain"] == from_.partition("@")[2]


def test_a_record_at_org_level_is_found_for_a_subdomain_before_giving_up(view):
    r = dmarc(judge(view, from_="alice@x.twodmarc.test"))
    assert (r.result, r.summary) == ("none", "_dmarc.twodmarc.test has more than one DMARC record, so receivers "
                                             "apply none")


@pytest.mark.parametrize(("from_", "timeout"), [
    ("alice@example.com", "_dmarc.example.com"),
    ("alice@news.example.com", "_dmarc.example.com"),  # the organisational lookup times out
    ("alice@news.example.com", "_dmarc.news.example.com"),
])
def test_temperror_when_the_record_cannot_be_fetched(view, from_, timeout):
    dns = LayeredView(ZoneView(timeouts=[timeout]), view)
    r = dmarc(judge(dns, from_=from_))
    assert (r.result, r.level) == ("temperror", Level.WARN)
    assert r.evidence["reason"].startswith("temperror: ")
    assert timeout in r.summary


def test_pct_below_100_is_shown(view):
    zone = ZoneView.from_text('@ TXT "v=spf1 -all"\n_dmarc TXT "v=DMARC1; p=quarantine; pct=25"\n',
                              origin="pct.test.")
    r = dmarc(judge(LayeredView(zone, view), from_="alice@pct.test", ip=BAD_IP))
    assert (r.result, r.level, r.evidence["pct"]) == ("fail", Level.FAIL, "25")
    assert r.summary.endswith("(25% of the time, pct=25)")


def test_from_must_hold_exactly_one_address(view):
    two = dmarc(judge(view, from_="alice@example.com, bob@example.com"))
    assert (two.result, two.level) == ("permerror", Level.FAIL)
    assert two.summary == "DMARC cannot be evaluated: the message has 2 From addresses"
    raw = message().replace(b"From: Alice <alice@example.com>\r\n", b"")
    none = dmarc(analyse(capture(raw), view))
    assert none.summary == "DMARC cannot be evaluated: the message has no From address"


@pytest.mark.parametrize(("raw", "field", "value", "problems"), [
    ("v=DMARC1; p=reject; pct=50; rua=mailto:a@example.com,mailto:b@example.net", "pct", 50, ()),
    ("v=DMARC1; p=reject; pct=50; rua=mailto:a@example.com,mailto:b@example.net", "rua",
     ("mailto:a@example.com", "mailto:b@example.net"), ()),
    ("v=DMARC1; p=none; rua=https://example.com/r, mailto:a@example.com", "rua", ("mailto:a@example.com",), ()),
    ("v=DMARC1;p=REJECT", "p", "reject", ()),
    ("v=DMARC1; p=none; sp=bob", "sp", None, ("sp='bob' is not valid",)),
    ("v=DMARC1; p=none; np=bob", "np", None, ("np='bob' is not valid",)),
    ("v=DMARC1; p=none; adkim=bob", "adkim", "r", ("adkim='bob' must be r or s",)),
    ("v=DMARC1; p=none; aspf=S", "aspf", "s", ()),
    ("v=DMARC1; p=quarantine; pct=abc", "pct", 100, ("pct='abc' is not a number",)),
    ("v=DMARC1; p=quarantine; pct=0", "pct", 0, ()),
    ("v=DMARC1; p=quarantine; pct=-5", "pct", 0, ("pct=-5 is outside 0-100",)),
    ("v=DMARC1; p=none; pct=500", "pct", 100, ("pct=500 is outside 0-100",)),
    ("v=DMARC1; p=bogus", "p", None, ("p='bogus' is not none, quarantine or reject",)),
    ("v=DMARC1; p=bogus; rua=mailto:d@example.com", "p", "none",  # RFC 7489 §6.6.3: a valid rua means p=none
     ("p='bogus' is not none, quarantine or reject",)),
    ("v=DMARC1; pct=100", "p", None, ("p= is missing",)),
    ("V=BOB", "p", None, ("the record must start with v=DMARC1", "p= is missing")),
    ("v=DMARC1; p=none; junk", "p", "none", ("tag without a value: 'junk'",)),
])
def test_parse_record(raw, field, value, problems):
    record = parse_record(raw)
    assert getattr(record, field) == value
    assert record.problems == problems
    assert record.usable is (record.p is not None)


@pytest.mark.parametrize(("case", "fragments"), [
    (dict(signed={}), ["spf=pass (example.com: 192.0.2.10) smtp.mailfrom=alice@example.com",
                       "dkim=pass header.d=example.com header.s=rsa2048",
                       "dmarc=pass (p=reject) header.from=example.com"]),
    (dict(from_="alice@example.org", mail_from="alice@example.org", ip=BAD_IP),
     ["spf=softfail", "dkim=none", "dmarc=fail (p=none) header.from=example.org"]),
    (dict(from_="alice@news.example.com", ip=BAD_IP), ["dmarc=fail (p=quarantine) header.from=news.example.com"]),
    (dict(from_="alice@none.test"), ["dmarc=none header.from=none.test"]),
    (dict(from_="alice@baddmarc.test"), ["dmarc=permerror header.from=baddmarc.test"]),
])
def test_authentication_results(view, case, fragments):
    ar = judge(view, **case).authentication_results
    assert ar.startswith("maillab; ")
    for fragment in fragments:
        assert fragment in ar


def test_authentication_results_for_a_broken_signature_and_an_spf_pass(view):
    raw = sign(message()).replace(b"this is a test.", b"this was a test.")
    ar = analyse(capture(raw), view).authentication_results
    assert "dkim=fail (body hash mismatch) header.d=example.com" in ar
    assert "dmarc=pass (p=reject) header.from=example.com" in ar


def test_org_domain_agrees_with_the_full_punycode_list_on_every_rule():
    """The list is loaded without its punycode twin (0.2 s at start-up); xn-- names are looked up in Unicode."""
    from publicsuffixlist import PublicSuffixList
    from support import psl_rule_names

    full = PublicSuffixList()
    names = psl_rule_names("a")
    differ = []
    for form in names:
        want = full.privatesuffix(form.lower()) or form.lower()
        if org_domain(form) != want:
            differ.append((form, want, org_domain(form)))
    assert len(names) > 5000 and differ == []
    assert org_domain("mail.xn--e1afmkfd.xn--p1ai") == "xn--e1afmkfd.xn--p1ai"
    assert org_domain("a.xn--broken-.com") == "xn--broken-.com"  # invalid punycode: as written
