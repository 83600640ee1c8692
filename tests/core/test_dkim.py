"""Tests for DKIM: real dkimpy signatures over the fixture keys, every failure reason, and public test vectors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dkim
import pytest
from support import capture, key, message, sign

from lab.core.analyse import analyse
from lab.core.checks.dkim import check_dkim
from lab.core.context import Context
from lab.core.dnsview import Answer, LayeredView, ZoneView
from lab.core.results import CheckResult, Level

DKIMPY = Path(__file__).parents[2].parent / "shared" / "data" / "dkim" / "dkimpy"
ED = {"selector": "ed", "keyfile": "example.com.ed.ed25519"}
NOW = int(time.time())
DAY = 86400


def run(raw: bytes, dns) -> list[CheckResult]:
    return check_dkim(Context(capture(raw), dns))


def only(results: list[CheckResult]) -> CheckResult:
    assert len(results) == 1, results
    return results[0]


class _Crafted(dkim.DKIM):
    """dkimpy's own signer, with tags it cannot set (x=, a past or future t=) or a From-less h= spliced in
    before the signature is computed, so the result is a genuine signature over the altered tags."""

    def __init__(self, raw: bytes, tags: dict[bytes, bytes], drop: bytes | None):
        super().__init__(raw)
        self.tags, self.drop = tags, drop

    def gen_header(self, fields, include_headers, *args, **kwargs):
        fields = [(k, self.tags.get(k, v)) for k, v in fields]
        if b"x" in self.tags:
            fields.insert([k for k, _ in fields].index(b"h"), (b"x", self.tags[b"x"]))
        if self.drop:
            include_headers = [h for h in include_headers if h != self.drop]
            fields = [(k, b" : ".join(include_headers) if k == b"h" else v) for k, v in fields]
        return super().gen_header(fields, include_headers, *args, **kwargs)


def crafted(raw: bytes, tags: dict[str, int] | None = None, drop: str | None = None) -> bytes:
    signer = _Crafted(raw, {k.encode(): str(v).encode() for k, v in (tags or {}).items()},
                      drop.encode() if drop else None)
    header = signer.sign(b"rsa2048", b"example.com", key("example.com.rsa2048.pem"),
                         include_headers=[b"from", b"to", b"subject", b"date"])
    return header + raw


@pytest.mark.parametrize(("kwargs", "cid", "a", "key_type", "bits"), [
    ({}, "dkim.example.com.rsa2048", "rsa-sha256", "rsa", "2048"),
    (ED, "dkim.example.com.ed", "ed25519-sha256", "ed25519", "256"),
    ({"selector": "s1", "domain": "example.org"}, "dkim.example.org.s1", "rsa-sha256", "rsa", "2048"),
    ({"canonicalize": (b"relaxed", b"relaxed")}, "dkim.example.com.rsa2048", "rsa-sha256", "rsa", "2048"),
])
def test_valid_signatures_pass(view, kwargs, cid, a, key_type, bits):
    r = only(run(sign(message(), **kwargs), view))
    assert (r.id, r.result, r.level) == (cid, "pass", Level.PASS)
    d, s = cid.split(".", 1)[1].rsplit(".", 1)
    assert r.summary == f"Valid signature by {d} (selector {s})"
    assert (r.evidence["a"], r.evidence["key-type"], r.evidence["key-bits"]) == (a, key_type, bits)
    assert r.evidence["key-name"] == f"{s}._domainkey.{d}"
    assert r.evidence["h"] == "from:to:subject:date:message-id"
    assert r.fix is None


def test_relaxed_body_canonicalisation_tolerates_whitespace_changes(view):
    raw = sign(message(body="Hi Bob,\r\nthis is a test.\r\n"), canonicalize=(b"relaxed", b"relaxed"))
    r = only(run(raw.replace(b"this is a test.", b"this  is a test.  "), view))
    assert r.result == "pass"


def test_body_length_limit_is_flagged_even_when_it_passes(view):
    raw = sign(message(), length=True) + b"Appended by anyone.\r\n"
    r = only(run(raw, view))
    assert r.result == "pass"
    assert r.evidence["l"] == str(len(b"Hi Bob,\r\nthis is a test.\r\n"))
    assert r.evidence["l-note"] == "l= lets anyone append to the body"


def _body(raw: bytes) -> bytes:
    return raw.replace(b"this is a test.", b"this is a test!")


def _subject(raw: bytes) -> bytes:
    return raw.replace(b"\r\nSubject: Hello\r\n", b"\r\nSubject: [EXTERNAL] Hello\r\n")


@pytest.mark.parametrize(("kwargs", "alter", "reason"), [
    ({}, _body, "body hash mismatch"),
    (ED, _body, "body hash mismatch"),
    ({}, _subject, "signature mismatch"),
    (ED, _subject, "signature mismatch"),
])
def test_altered_messages_fail_with_the_reason(view, kwargs, alter, reason):
    signed = sign(message(), **kwargs)
    assert only(run(signed, view)).result == "pass"  # the same message verifies before it is altered
    r = only(run(alter(signed), view))
    assert (r.result, r.level, r.evidence["reason"]) == ("fail", Level.FAIL, reason)
    assert r.fix


@pytest.mark.parametrize(("raw", "cid", "result", "reason", "fix_names"), [
    (lambda: sign(message(), selector="nosuch", keyfile="example.com.rsa2048.pem"),
     "dkim.example.com.nosuch", "permerror", "no key for signature", "nosuch._domainkey.example.com"),
    (lambda: sign(message(), selector="revoked", keyfile="example.com.rsa2048.pem"),
     "dkim.example.com.revoked", "permerror", "key revoked", "current selector"),
    (lambda: sign(message(), selector="short"),
     "dkim.example.com.short", "permerror", "key too short", "2048-bit"),
    (lambda: crafted(message(), {"t": NOW - 3 * DAY, "x": NOW - 2 * DAY}),
     "dkim.example.com.rsa2048", "fail", "signature expired", "expiry (x=)"),
    (lambda: crafted(message(), {"t": NOW + 2 * DAY}),
     "dkim.example.com.rsa2048", "fail", "timestamp in the future", "clock"),
])
def test_key_and_timing_failures(view, raw, cid, result, reason, fix_names):
    r = only(run(raw(), view))
    assert (r.id, r.result, r.level, r.evidence["reason"]) == (cid, result, Level.FAIL, reason)
    assert fix_names in r.fix


def test_short_key_evidence_gives_its_size(view):
    r = only(run(sign(message(), selector="short"), view))
    assert (r.evidence["key-type"], r.evidence["key-bits"]) == ("rsa", "512")
    assert r.evidence["detail"] == "public key too small: 512"


def test_an_unexpired_x_tag_passes(view):
    r = only(run(crafted(message(), {"t": NOW - DAY, "x": NOW + DAY}), view))
    assert r.result == "pass"


@pytest.mark.parametrize("published", [
    b"v=DKIM1; k=rsa; p=AAAA",  # not an RSA key
    b"v=DKIM1; k=rsa; p=!!notbase64",
    b"v=DKIM2; k=rsa; p=AAAA",  # unknown version: the record must be ignored (RFC 6376 §3.6.1)
    b"hello",  # not tag=value at all
])
def test_malformed_key_records_are_permerror_not_signature_mismatch(view, published):
    dns = LayeredView(ZoneView({("rsa2048._domainkey.example.com", "TXT"): ((published,),)}), view)
    r = only(run(sign(message()), dns))
    assert (r.result, r.evidence["reason"]) == ("permerror", "key malformed")


def test_a_key_that_is_not_the_signing_key_is_a_signature_mismatch(view):
    other = view.lookup("s1._domainkey.example.org", "TXT").records
    dns = LayeredView(ZoneView({("rsa2048._domainkey.example.com", "TXT"): other}), view)
    r = only(run(sign(message()), dns))
    assert (r.result, r.evidence["reason"]) == ("fail", "signature mismatch")


@pytest.mark.parametrize("dns", [
    pytest.param(lambda base: LayeredView(ZoneView(timeouts=["rsa2048._domainkey.example.com"]), base), id="layered"),
    pytest.param(lambda base: ZoneView(timeouts=["rsa2048._domainkey.example.com"]), id="alone"),
])
def test_key_lookup_timeout_is_temperror(view, dns):
    r = only(run(sign(message()), dns(view)))
    assert (r.result, r.level) == ("temperror", Level.WARN)
    assert r.evidence["reason"] == "rsa2048._domainkey.example.com TXT: lookup timed out (overlay)"


def test_a_signature_that_does_not_cover_from_is_permerror(view):
    raw = crafted(message(), drop="from")
    assert dkim.verify(raw, dnsfunc=_dnsfunc(view))  # dkimpy alone accepts it; the lab must not
    r = only(run(raw, view))
    assert (r.result, r.level, r.evidence["h"]) == ("permerror", Level.FAIL, "to:subject:date")
    assert r.summary == "The signature does not cover the From header"
    assert "Include From in h=" in r.fix
    assert r.evidence["reason"] == "From not signed"


def test_an_ed25519_key_under_an_rsa_signature_is_a_key_type_mismatch(view):
    ed_key = view.lookup("ed._domainkey.example.com", "TXT").records
    dns = LayeredView(ZoneView({("rsa2048._domainkey.example.com", "TXT"): ed_key}), view)
    r = only(run(sign(message()), dns))
    assert (r.result, r.evidence["reason"]) == ("permerror", "key type mismatch")
    assert "ed25519" in r.summary and "rsa-sha256" in r.summary


def _dnsfunc(view):
    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        records = view.lookup(name.decode().rstrip("."), "TXT").records
        return b"".join(records[0]) if records else None
    return dnsfunc


def test_two_signatures_give_two_results_each_with_its_own_verdict(view):
    raw = sign(sign(message(), selector="nosuch", keyfile="example.com.rsa2048.pem"), **ED)
    results = run(raw, view)
    assert [(r.id, r.result) for r in results] == [("dkim.example.com.ed", "pass"),
                                                   ("dkim.example.com.nosuch", "permerror")]
    assert results[0].evidence["s"] == "ed" and results[1].evidence["reason"] == "no key for signature"


def test_two_signatures_by_one_selector_get_distinct_ids(view):
    raw = sign(sign(message()), include_headers=[b"from", b"subject"])
    results = run(raw, view)
    assert [(r.id, r.result) for r in results] == [("dkim.example.com.rsa2048", "pass"),
                                                   ("dkim.example.com.rsa2048#2", "pass")]
    assert [r.evidence["h"] for r in results] == ["from:subject", "from:to:subject:date:message-id"]


def test_unsigned_message_is_dkim_none(view):
    r = only(run(message(), view))
    assert (r.id, r.result, r.level) == ("dkim.none", "none", Level.WARN)
    assert "<selector>._domainkey.<domain>" in r.fix


@pytest.mark.parametrize(("alter", "fragment"), [
    (lambda raw: raw, "dkim=pass header.d=example.com header.s=rsa2048 header.b="),
    (_body, "dkim=fail (body hash mismatch) header.d=example.com header.s=rsa2048 header.b="),
])
def test_authentication_results(view, alter, fragment):
    verdict = analyse(capture(alter(sign(message()))), view)
    assert fragment in verdict.authentication_results


def test_hostile_d_is_quoted_in_authentication_results(view):
    raw = sign(message()).replace(b"d=example.com;", b"d=example.com(x;", 1)
    ar = analyse(capture(raw), view).authentication_results
    assert 'header.d="example.com(x"' in ar


# --- public vectors (dkimpy's test data; the RFC 8463 Appendix A example) ---------------------------------


def _dkimpy_zone() -> ZoneView:
    """The TXT records of DNS_RECORDS.yaml (`name: "value"` or `name: {file: x}` under `records:`)."""
    records: dict[tuple[str, str], tuple] = {}
    in_records = False
    for line in (DKIMPY / "DNS_RECORDS.yaml").read_text().splitlines():
        if not line.startswith(" "):
            in_records = line.startswith("records:")
            continue
        m = re.match(r'\s+"?([^"\s]+?)"?:\s+(?:"([^"]*)"|\{file:\s*([^}\s]+)\s*\})', line)
        if in_records and m:
            name, value, file = m.groups()
            if file:
                value = (DKIMPY / "data" / file).read_text().strip()
            records[(name.lower(), "TXT")] = ((value.encode(),),)
    return ZoneView(records, label="DNS_RECORDS.yaml")


class _Asked:
    def __init__(self, view):
        self.view, self.asked = view, []

    def lookup(self, name: str, rtype: str) -> Answer:
        self.asked.append(name)
        return self.view.lookup(name, rtype)


def _vector(name: str) -> bytes:
    return (DKIMPY / "data" / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


needs_data = pytest.mark.skipif(not DKIMPY.is_dir(), reason=f"public test data not present at {DKIMPY}")


@needs_data
@pytest.mark.parametrize(("name", "expected"), [
    ("rfc6376.signed.msg", {"dkim.football.example.com.brisbane": ("pass", "ed25519", "256"),
                            "dkim.football.example.com.test": ("pass", "rsa", "1024")}),
    ("rfc6376.signed.rsa.msg", {"dkim.football.example.com.test": ("pass", "rsa", "1024")}),
    ("ed25519test2.msg", {"dkim.test.ex.sed": ("pass", "ed25519", "256")}),  # signed by Exim
    ("test2.message", {"dkim.gmail.com.20120113": ("pass", "rsa", "2048")}),  # gmail.com, 2013
])
def test_public_vectors_verify(name, expected):
    results = run(_vector(name), _dkimpy_zone())
    assert {r.id: (r.result, r.evidence["key-type"], r.evidence["key-bits"]) for r in results} == expected


@needs_data
def test_rfc8463_example_with_an_altered_body_fails_both_signatures():
    raw = _vector("rfc6376.signed.msg").replace(b"We lost the game.", b"We won the game.")
    results = run(raw, _dkimpy_zone())
    assert [(r.id, r.result, r.evidence["reason"]) for r in results] == [
        ("dkim.football.example.com.brisbane", "fail", "body hash mismatch"),
        ("dkim.football.example.com.test", "fail", "body hash mismatch")]


@needs_data
def test_hostile_d_value_is_rejected_before_any_lookup():
    dns = _Asked(_dkimpy_zone())
    r = only(run(_vector("test.message.baddomain"), dns))
    assert (r.result, r.evidence["reason"]) == ("permerror", "invalid signature")
    assert "d= value is not valid" in r.evidence["detail"]
    assert dns.asked == []


@pytest.mark.parametrize(("alter", "rfc"), [
    (lambda raw: raw.replace(b"this is a test", b"this is a TEST"), "RFC 6376 §6.1.3"),
    (lambda raw: raw.replace(b"s=rsa2048", b"s=missing"), "RFC 6376 §6.1.2"),
    (lambda raw: raw.replace(b"s=rsa2048", b"s=revoked"), "RFC 6376 §3.6.1"),
])
def test_failures_name_their_rfc_section(view, alter, rfc):
    r = only(run(alter(sign(message())), view))
    assert r.evidence["rfc"] == rfc
