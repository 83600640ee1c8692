"""Tests for the blocklist checks: what each list's answers mean, and the IP, sender-domain and link lookups.

Listings are simulated in fixtures/zones/client/dnsbl.zone (names like 66.2.0.192.zen.spamhaus.org, as a
real list publishes them). A timeout is a view that raises DnsTempError, as the system resolver does.
"""

from __future__ import annotations

import ipaddress
import time

import pytest
from support import FIXTURES, message

from lab.core.checks.blocklist import (
    DEFAULT_ZONES,
    MAX_LINK_DOMAINS,
    BlocklistZones,
    check_blocklist,
    explain,
    reversed_ip,
)
from lab.core.context import Context
from lab.core.dnsview import Answer, DnsTempError, ZoneView
from lab.core.model import Capture, Client, Envelope
from lab.core.results import CheckResult, Level
from lab.resolver import load_zones

ZONE = FIXTURES / "zones" / "client" / "dnsbl.zone"
BASE = load_zones([ZONE])
VIEW = ZoneView(BASE.records, timeouts=["71.2.0.192.bl.spamcop.net"])


class Recording:
    """A view that records every question and times out for names under `slow` (a list that is down)."""

    def __init__(self, inner=VIEW, slow: str | None = None):
        self.inner = inner
        self.slow = slow
        self.asked: list[tuple[str, str]] = []

    def lookup(self, name: str, rtype: str) -> Answer:
        self.asked.append((name, rtype))
        if self.slow and name.endswith("." + self.slow):
            raise DnsTempError(f"{name} {rtype}: timed out")
        return self.inner.lookup(name, rtype)


class NoDns:
    def lookup(self, name: str, rtype: str) -> Answer:
        raise AssertionError(f"looked up {name} {rtype}")


def run(ip: str = "192.0.2.10", from_: str = "Alice <alice@example.net>", mail_from: str = "alice@example.net",
        body: str = "Hello.\r\n", raw: bytes | None = None, view=VIEW,
        zones: BlocklistZones = DEFAULT_ZONES) -> dict[str, CheckResult]:
    capture = Capture(raw or message(from_=from_, body=body), Envelope(mail_from=mail_from, helo="mail.example.net"),
                      client=Client(ip=ip, peer_ip="127.0.0.1", source="xclient"))
    results = check_blocklist(Context(capture, view), zones)
    assert [r.id for r in results] == ["blocklist.ip", "blocklist.domain", "blocklist.links"]
    return {r.id: r for r in results}


# --- the answers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "code", "kind", "words"), [
    ("zen.spamhaus.org", "127.0.0.2", "listed", "SBL"),
    ("zen.spamhaus.org", "127.0.0.3", "listed", "CSS"),
    ("zen.spamhaus.org", "127.0.0.4", "listed", "XBL"),
    ("zen.spamhaus.org", "127.0.0.7", "listed", "XBL"),
    ("zen.spamhaus.org", "127.0.0.9", "listed", "DROP"),
    ("zen.spamhaus.org", "127.0.0.10", "listed", "PBL (ISP maintained)"),
    ("zen.spamhaus.org", "127.0.0.11", "listed", "PBL (Spamhaus maintained)"),
    ("ZEN.Spamhaus.org.", "127.0.0.2", "listed", "SBL"),
    ("mykey.zen.dq.spamhaus.net", "127.0.0.4", "listed", "XBL"),  # Spamhaus DQS
    ("zen.spamhaus.org", "127.255.255.254", "error", "public/open resolver"),
    ("zen.spamhaus.org", "127.255.255.255", "error", "excessive number of queries"),
    ("zen.spamhaus.org", "127.255.255.252", "error", "typing error"),
    ("zen.spamhaus.org", "127.255.255.253", "error", "not a listing"),
    ("dbl.spamhaus.org", "127.0.1.2", "listed", "spam domain"),
    ("dbl.spamhaus.org", "127.0.1.4", "listed", "phishing"),
    ("dbl.spamhaus.org", "127.0.1.5", "listed", "malware"),
    ("dbl.spamhaus.org", "127.0.1.6", "listed", "botnet"),
    ("dbl.spamhaus.org", "127.0.1.102", "listed", "abused legitimate domain, used in spam"),
    ("dbl.spamhaus.org", "127.0.1.106", "listed", "abused legitimate domain, used for botnet"),
    ("dbl.spamhaus.org", "127.0.1.255", "error", "IP address queries"),
    ("dbl.spamhaus.org", "127.255.255.254", "error", "public/open resolver"),
    ("zrd.spamhaus.org", "127.0.2.5", "listed", "first seen about 5 hours ago"),
    ("multi.uribl.com", "127.0.0.2", "listed", "black"),
    ("multi.uribl.com", "127.0.0.4", "listed", "grey"),
    ("multi.uribl.com", "127.0.0.8", "listed", "red"),
    ("multi.uribl.com", "127.0.0.14", "listed", "black: domain used by spammers; grey"),
    ("multi.uribl.com", "127.0.0.1", "error", "query refused"),
    ("multi.surbl.org", "127.0.0.8", "listed", "PH: phishing"),
    ("multi.surbl.org", "127.0.0.16", "listed", "MW: malware"),
    ("multi.surbl.org", "127.0.0.64", "listed", "ABUSE"),
    ("multi.surbl.org", "127.0.0.128", "listed", "CR: cracked"),
    ("multi.surbl.org", "127.0.0.80", "listed", "MW: malware; ABUSE"),
    ("multi.surbl.org", "127.0.0.1", "error", "query refused"),
    ("bl.spamcop.net", "127.0.0.2", "listed", "SpamCop"),
    ("b.barracudacentral.org", "127.0.0.2", "listed", "Barracuda"),
    ("dnsbl.example", "127.0.0.2", "listed", "listed (127.0.0.2)"),
    ("bl.spamcop.net", "127.0.0.1", "error", "127.0.0.1"),
    ("zen.spamhaus.org", "198.51.100.200", "ignored", "outside 127.0.0.0/8"),
    ("zen.spamhaus.org", "2001:db8::1", "ignored", "not an IPv4 address"),
])
def test_explain(zone, code, kind, words):
    got_kind, meaning = explain(zone, code)
    assert got_kind == kind
    assert words in meaning


@pytest.mark.parametrize(("ip", "query"), [
    ("192.0.2.66", "66.2.0.192"),
    ("2001:db8::66", "6.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"),
])
def test_reversed_ip(ip, query):
    assert reversed_ip(ipaddress.ip_address(ip)) == query


# --- blocklist.ip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ip", "result", "level"), [
    ("192.0.2.66", "listed", Level.FAIL),  # SBL + PBL
    ("192.0.2.67", "listed", Level.FAIL),  # PBL
    ("192.0.2.68", "listed", Level.FAIL),  # SpamCop
    ("2001:db8::66", "listed", Level.FAIL),  # XBL by nibbles
    ("192.0.2.10", "pass", Level.PASS),
    ("2001:db8::10", "pass", Level.PASS),
    ("192.0.2.70", "pass", Level.PASS),  # a non-127 answer is not a listing
    ("192.0.2.69", "unknown", Level.INFO),  # Spamhaus refused the query
    ("192.0.2.71", "temperror", Level.WARN),  # SpamCop timed out
])
def test_ip(ip, result, level):
    r = run(ip)["blocklist.ip"]
    assert (r.result, r.level) == (result, level), r.summary
    assert (r.fix is not None) == (result in ("listed", "temperror", "unknown"))


def test_ip_listing_evidence_is_zone_code_meaning_and_reason():
    r = run("192.0.2.66")["blocklist.ip"]
    assert r.summary.startswith("The client IP 192.0.2.66 is listed on zen.spamhaus.org: SBL")
    zen = r.evidence["zen.spamhaus.org"]
    assert "127.0.0.2 SBL" in zen and "127.0.0.11 PBL (Spamhaus maintained)" in zen
    assert zen.endswith("reason: https://check.spamhaus.org/sbl/query/SBL000001")
    assert "bl.spamcop.net" not in r.evidence  # clean lists are counted, not listed
    assert r.evidence["lists"] == "zen.spamhaus.org, bl.spamcop.net, b.barracudacentral.org"
    assert r.evidence["query"] == "66.2.0.192"
    assert r.evidence["rfc"] == "RFC 5782 §2"
    assert "check.spamhaus.org" in r.fix and "provider's or ESP's" not in r.fix  # SBL: not the PBL advice


def test_pbl_only_listing_says_to_send_through_a_provider():
    r = run("192.0.2.67")["blocklist.ip"]
    assert "provider's or ESP's mail server" in r.fix


def test_spamcop_listing_keeps_its_reason():
    r = run("192.0.2.68")["blocklist.ip"]
    assert r.evidence["bl.spamcop.net"] == ("127.0.0.2 SpamCop: reported as a spam source by SpamCop users "
                                            "(127.0.0.2); reason: Blocked - see "
                                            "https://www.spamcop.net/bl.shtml?192.0.2.68")


def test_clean_ip_says_how_many_lists():
    r = run("192.0.2.10")["blocklist.ip"]
    assert r.summary == "The client IP 192.0.2.10: not listed on 3 lists"


def test_refused_query_is_unknown_not_listed():
    r = run("192.0.2.69")["blocklist.ip"]
    assert "not listed on 2 lists; unknown on zen.spamhaus.org" in r.summary
    assert "public/open resolver" in r.evidence["zen.spamhaus.org"]
    assert "--nameserver" in r.fix


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.20", "172.16.5.5", "100.64.0.1",
                                "169.254.1.1", "fd00::1", "fe80::1", "not-an-ip"])
def test_loopback_and_private_ips_are_not_looked_up(ip):
    r = run(ip, view=NoDns(), zones=BlocklistZones(ip_zones=DEFAULT_ZONES.ip_zones))["blocklist.ip"]
    assert (r.result, r.level) == ("none", Level.INFO)
    assert "not looked up" in r.summary


def test_public_ip_is_looked_up_by_reversed_octets():
    view = Recording()
    r = run("8.8.4.4", view=view, zones=BlocklistZones(ip_zones=("zen.spamhaus.org", "bl.spamcop.net")))
    assert r["blocklist.ip"].result == "pass"
    assert view.asked == [("4.4.8.8.zen.spamhaus.org", "A"), ("4.4.8.8.bl.spamcop.net", "A")]


def test_no_zones_no_lookups():
    results = run("192.0.2.66", from_="A <a@spam-shop.test>", body="http://spam-shop.test/\r\n", view=NoDns(),
                  zones=BlocklistZones())
    for r in results.values():
        assert (r.result, r.level) == ("none", Level.INFO)


# --- blocklist.domain --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("from_", "mail_from", "result", "level"), [
    ("A <a@spam-shop.test>", "a@spam-shop.test", "listed", Level.FAIL),
    ("A <a@news.spam-shop.test>", "a@example.net", "listed", Level.FAIL),  # organisational domain
    ("A <a@example.net>", "bounce@spam-shop.test", "listed", Level.FAIL),  # the envelope sender counts too
    ("A <a@example.net>", "a@example.net", "pass", Level.PASS),
    ("A <a@refused-shop.test>", "a@refused-shop.test", "unknown", Level.INFO),
    ("undisclosed-recipients:;", "", "none", Level.INFO),
])
def test_domain(from_, mail_from, result, level):
    r = run(from_=from_, mail_from=mail_from)["blocklist.domain"]
    assert (r.result, r.level) == (result, level), r.summary


def test_domain_evidence():
    one = run(from_="A <a@spam-shop.test>", mail_from="a@spam-shop.test")["blocklist.domain"]
    assert one.summary == "The sender domain spam-shop.test is listed on dbl.spamhaus.org: DBL: spam domain"
    assert one.evidence["domains"] == "spam-shop.test (From and MAIL FROM)"
    assert one.evidence["dbl.spamhaus.org"] == ("127.0.1.2 DBL: spam domain; reason: "
                                                "https://www.spamhaus.org/query/domain/spam-shop.test")
    two = run(from_="A <a@example.net>", mail_from="bounce@spam-shop.test")["blocklist.domain"]
    assert two.evidence["domains"] == "example.net (From), spam-shop.test (MAIL FROM)"
    assert "spam-shop.test on dbl.spamhaus.org" in two.evidence
    assert two.summary.startswith("spam-shop.test is listed on dbl.spamhaus.org")
    clean = run()["blocklist.domain"]
    assert clean.summary == "The sender domain example.net: not listed on 3 lists"


# --- blocklist.links ---------------------------------------------------------------------------------------


def html(body: str) -> bytes:
    return (b"From: A <a@example.net>\r\nTo: b@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n" + body.encode())


@pytest.mark.parametrize(("body", "raw", "result", "level"), [
    ("Log in: https://secure.phish-bank.test/login\r\n", None, "listed", Level.FAIL),
    (None, html('<a href="http://www.spam-shop.test/deal">Deal</a>'), "listed", Level.FAIL),
    ("See https://www.example.net/ and https://docs.example.org/x\r\n", None, "pass", Level.PASS),
    ("No links here.\r\n", None, "none", Level.INFO),
    ("http://192.0.2.66/x only\r\n", None, "none", Level.INFO),  # an IP link is not a domain
    ("https://refused-shop.test/\r\n", None, "unknown", Level.INFO),
])
def test_links(body, raw, result, level):
    r = run(body=body or "", raw=raw)["blocklist.links"]
    assert (r.result, r.level) == (result, level), r.summary


def test_links_evidence_per_domain_and_zone():
    r = run(body="https://phish-bank.test/a https://www.example.net/b https://phish-bank.test/c\r\n")["blocklist.links"]
    assert r.summary.startswith("phish-bank.test is listed on multi.uribl.com, multi.surbl.org: black")
    assert r.evidence["domains"] == "phish-bank.test, example.net"
    assert r.evidence["phish-bank.test on multi.uribl.com"] == (
        "127.0.0.6 black: domain used by spammers; grey: domain seen in bulk mail, may honour opt-out")
    assert r.evidence["phish-bank.test on multi.surbl.org"].startswith("127.0.0.24 PH: phishing; MW: malware; "
                                                                     "reason: Blocked, phish-bank.test")
    assert "example.net on dbl.spamhaus.org" not in r.evidence
    assert "phish-bank.test" in r.fix


def test_ip_links_are_named_as_not_looked_up():
    r = run(body="http://192.0.2.66/x https://www.example.net/\r\n")["blocklist.links"]
    assert r.evidence["not-looked-up"] == "192.0.2.66"
    assert r.evidence["domains"] == "example.net"


def test_at_most_twenty_link_domains_are_looked_up():
    body = "".join(f"https://www.site{i}.test/\r\n" for i in range(30))
    view = Recording()
    r = run(body=body, view=view, zones=BlocklistZones(domain_zones=("dbl.spamhaus.org",)))["blocklist.links"]
    asked = [n for n, _ in view.asked if n.startswith("site")]
    assert len(asked) == MAX_LINK_DOMAINS
    assert asked[0] == "site0.test.dbl.spamhaus.org"
    assert r.evidence["beyond-limit"] == "10 more domain(s) not looked up (at most 20)"
    assert r.result == "pass"


def test_a_list_that_times_out_is_asked_once():
    body = "".join(f"https://site{i}.test/\r\n" for i in range(5))
    view = Recording(slow="multi.surbl.org")
    results = run(body=body, view=view)
    assert [n for n, _ in view.asked if n.endswith(".multi.surbl.org")] == ["example.net.multi.surbl.org"]
    domain = results["blocklist.domain"]  # asked first: the sender domain met the timeout
    assert (domain.result, domain.level) == ("temperror", Level.WARN)
    assert domain.evidence["multi.surbl.org"] == "lookup timed out"
    links = results["blocklist.links"]
    assert (links.result, links.level) == ("temperror", Level.WARN)
    assert links.evidence["site1.test on multi.surbl.org"] == "lookup timed out (not asked again)"
    assert "site1.test on multi.uribl.com" not in links.evidence  # the other lists answered: clean
    assert "multi.surbl.org" in links.summary


def test_a_listing_outweighs_a_timeout():
    view = Recording(slow="multi.surbl.org")
    r = run(body="https://phish-bank.test/\r\n", view=view)["blocklist.links"]
    assert (r.result, r.level) == ("listed", Level.FAIL)
    assert r.evidence["multi.surbl.org"] == "lookup timed out (not asked again)"


def test_a_list_that_refused_is_asked_once():
    body = "https://refused-shop.test/ https://site1.test/ https://site2.test/\r\n"
    view = Recording()
    r = run(body=body, view=view)["blocklist.links"]
    assert r.result == "unknown"
    uribl = [n for n, rt in view.asked if n.endswith(".multi.uribl.com") and rt == "A"]
    assert uribl == ["example.net.multi.uribl.com", "refused-shop.test.multi.uribl.com"]  # not site1, site2
    assert r.evidence["site2.test on multi.uribl.com"].endswith("query refused (127.0.0.1: the list blocks this "
                                                                 "resolver or too many queries) (not asked again)")


def test_ten_thousand_links_stay_bounded():
    body = "".join(f"<a href='http://h{i}.spam{i}.test/'>x</a>" for i in range(10_000))
    view = Recording()
    start = time.monotonic()
    r = run(raw=html(body), view=view)["blocklist.links"]
    assert time.monotonic() - start < 10
    assert r.result == "pass"
    assert len(view.asked) <= MAX_LINK_DOMAINS * 3 + 6  # links, plus the sender domain and the IP


def test_all_lists_refusing_is_unknown_without_a_count():
    r = run("192.0.2.69", zones=BlocklistZones(ip_zones=("zen.spamhaus.org",)))["blocklist.ip"]
    assert r.summary == "The client IP 192.0.2.69: unknown on zen.spamhaus.org, which refused the query"
