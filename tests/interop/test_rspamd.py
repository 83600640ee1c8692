"""Differential test: the lab and rspamd 3.4 judge the same mail through the same DNS server.

Each scenario is sent to rspamd's /checkv2 with its envelope (client IP, HELO, MAIL FROM) and analysed by
the lab with the same facts, both resolving through Knot on loopback. SPF, each DKIM signature and DMARC
must agree, except where KNOWN records a difference in which the lab follows an RFC clause rspamd does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from support import BAD_IP, GOOD_IP, message, sign
from support.rspamd import results

from lab.core.analyse import analyse
from lab.core.dnsview import LayeredView, ZoneView
from lab.core.model import Capture, Client, Envelope, Listener, Transport
from lab.resolver import SystemView


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[], bytes]
    mail_from: str
    ip: str = GOOD_IP
    helo: str | None = "mail.example.com"


def _altered(build: Callable[[], bytes], old: bytes, new: bytes) -> Callable[[], bytes]:
    return lambda: build().replace(old, new, 1)


def _both() -> bytes:
    return sign(sign(message()), "ed", keyfile="example.com.ed.ed25519")


SCENARIOS = [
    Scenario("aligned rsa + ed25519 from a listed IP", _both, "alice@example.com"),
    Scenario("ed25519 only", lambda: sign(message(), "ed", keyfile="example.com.ed.ed25519"), "alice@example.com"),
    Scenario("unsigned spoof of a p=reject domain", lambda: message(), "alice@example.com", BAD_IP),
    Scenario("softfail under p=none", lambda: message(from_="a@example.org"), "a@example.org", BAD_IP),
    Scenario("SPF pass, p=none domain", lambda: message(from_="a@example.org"), "a@example.org"),
    Scenario("SPF neutral", lambda: message(from_="a@neutral.test"), "a@neutral.test"),
    Scenario("no SPF record", lambda: message(from_="a@none.test"), "a@none.test"),
    Scenario("include of a domain without SPF", lambda: message(from_="a@permerror.test"), "a@permerror.test",
             "198.51.100.1"),
    Scenario("unknown mechanism", lambda: message(from_="a@badmech.test"), "a@badmech.test", "198.51.100.1"),
    Scenario("two SPF records", lambda: message(from_="a@twospf.test"), "a@twospf.test"),
    Scenario("more than 10 lookups", lambda: message(from_="a@lookups.test"), "a@lookups.test"),
    Scenario("p=quarantine, SPF aligned", lambda: message(from_="a@quarantine.test"), "a@quarantine.test"),
    Scenario("p=quarantine, unauthenticated", lambda: message(from_="a@quarantine.test"), "a@quarantine.test",
             BAD_IP),
    Scenario("subdomain falls back to sp=quarantine", lambda: message(from_="a@news.example.com"),
             "a@news.example.com", BAD_IP),
    Scenario("body changed after signing", _altered(_both, b"this is a test", b"this is a TEST"),
             "alice@example.com", BAD_IP),
    Scenario("signed header changed", _altered(_both, b"Subject: Hello", b"Subject: Hullo"), "alice@example.com",
             BAD_IP),
    Scenario("no key published", _altered(lambda: sign(message()), b"s=rsa2048", b"s=nosuchkey"),
             "alice@example.com", BAD_IP),
    Scenario("revoked key", _altered(lambda: sign(message()), b"s=rsa2048", b"s=revoked"), "alice@example.com",
             BAD_IP),
    Scenario("512-bit key", lambda: sign(message(), "short", keyfile="example.com.short.pem"), "alice@example.com",
             BAD_IP),
    Scenario("DKIM pass but not aligned", lambda: sign(message(), "s1", "example.org"), "bounce@example.org",
             BAD_IP),
    Scenario("strict alignment, parent-domain signature",
             lambda: sign(message(from_="a@strict.example.com")), "a@strict.example.com", BAD_IP),
    Scenario("two DMARC records", lambda: message(from_="a@twodmarc.test"), "a@twodmarc.test", BAD_IP),
    Scenario("p=bogus", lambda: message(from_="a@baddmarc.test"), "a@baddmarc.test", BAD_IP),
    Scenario("DNS SERVFAIL", lambda: message(from_="a@x.servfail.test"), "a@x.servfail.test", BAD_IP, None),
    Scenario("null sender, HELO identity", lambda: message(), "", GOOD_IP, "mail.example.com"),
]

# Where the lab and rspamd disagree on purpose: (scenario, what) -> the RFC clause the lab follows.
KNOWN = {
    ("include of a domain without SPF", "spf"): (
        ("permerror", "fail"), "RFC 7208 §5.2: an include whose target has no SPF record is a permerror"),
    ("unknown mechanism", "spf"): (
        ("permerror", "fail"), "RFC 7208 §4.6.1 and §12: an unknown mechanism makes the record a permerror"),
    ("more than 10 lookups", "spf"): (
        ("permerror", "fail"), "RFC 7208 §4.6.4: more than 10 DNS-querying terms MUST give permerror"),
    ("512-bit key", "dkim"): (
        ({("example.com", "short"): "permerror"}, {("example.com", "short"): "pass"}),
        "RFC 8301 §3.2: verifiers MUST NOT consider signatures using RSA keys of less than 1024 bits valid"),
    ("512-bit key", "dmarc"): (
        ("fail", "pass"), "RFC 8301 §3.2: the only passing DKIM signature is invalid, so nothing aligns"),
    ("two DMARC records", "dmarc"): (
        ("none", "permerror"), "RFC 7489 §6.6.3: with more than one record, DMARC processing is not applied"),
}


def lab_results(scenario: Scenario, raw: bytes, nameserver: str) -> dict:
    capture = Capture(raw, Envelope(scenario.mail_from, ("bob@example.net",), scenario.helo),
                      Transport(Listener.RELAY, 25), Client(ip=scenario.ip, peer_ip="127.0.0.1", source="xclient"))
    verdict = analyse(capture, LayeredView(ZoneView(), SystemView(nameserver)))
    out: dict = {"spf": None, "dkim": {}, "dmarc": None}
    for c in verdict.checks:
        if c.id == "spf.mailfrom":
            out["spf"] = c.result
        elif c.family == "dkim" and "d" in c.evidence:
            out["dkim"][(c.evidence["d"], c.evidence["s"])] = c.result
        elif c.id == "dmarc":
            out["dmarc"] = c.result
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_lab_agrees_with_rspamd(scenario, knot, rspamd):
    raw = scenario.build()
    ours = lab_results(scenario, raw, knot.address)
    theirs = results(rspamd.check(raw, scenario.ip, scenario.helo, scenario.mail_from, "bob@example.net"))
    differences = {what: (ours[what], theirs[what]) for what in ("spf", "dkim", "dmarc") if ours[what] != theirs[what]}
    expected = {what: pair for (name, what), (pair, _why) in KNOWN.items() if name == scenario.name}
    assert differences == expected, f"lab vs rspamd: {differences}"
