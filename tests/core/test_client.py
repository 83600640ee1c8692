"""Tests for the client checks: PTR, forward confirmation, generic names and HELO, each rule both ways.

DNS comes from fixtures/zones/client/client.zone (kept out of the shared overlay); timeouts are the
ZoneView's own `timeouts`, which raise DnsTempError exactly as the system resolver does.
"""

from __future__ import annotations

import time

import pytest
from support import FIXTURES, message

from lab.core.checks.client import check_client, looks_generic
from lab.core.context import Context
from lab.core.dnsview import Answer, ZoneView
from lab.core.model import Capture, Client, Envelope
from lab.core.results import CheckResult, Level
from lab.resolver import load_zones

ZONE = FIXTURES / "zones" / "client" / "client.zone"
TIMEOUTS = ("29.2.0.192.in-addr.arpa", "slow.example.net")
VIEW = ZoneView(load_zones([ZONE]).records, timeouts=TIMEOUTS)

RESULT_WORDS = {
    "client.ptr": {"pass", "none", "temperror"},
    "client.fcrdns": {"pass", "fail", "none", "temperror"},
    "client.generic-ptr": {"pass", "generic", "none", "temperror"},
    "client.helo": {"pass", "invalid", "literal", "unresolvable", "unrelated", "none", "temperror"},
}


def run(ip: str, helo: str | None = "mail.example.net", name: str | None = None,
        from_: str = "Alice <alice@example.net>", view=VIEW) -> dict[str, CheckResult]:
    capture = Capture(message(from_=from_), Envelope(mail_from="alice@example.net", helo=helo),
                      client=Client(ip=ip, peer_ip="127.0.0.1", name=name, source="xclient"))
    results = check_client(Context(capture, view))
    ids = [r.id for r in results]
    assert len(ids) == len(set(ids)), ids
    return {r.id: r for r in results}


class NoDns:
    def lookup(self, name: str, rtype: str) -> Answer:
        raise AssertionError(f"looked up {name} {rtype}")


# --- skipping ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "127.8.9.10"])
def test_loopback_client_is_one_info_result_and_no_dns(ip):
    results = run(ip, view=NoDns())
    assert list(results) == ["client.ip"]
    r = results["client.ip"]
    assert r.level is Level.INFO and r.result == "none"
    assert "--client-ip" in r.fix and "XCLIENT ADDR" in r.fix


def test_non_loopback_client_gets_the_four_checks():
    results = run("192.0.2.25")
    assert list(results) == ["client.ptr", "client.fcrdns", "client.generic-ptr", "client.helo"]


def test_client_that_is_not_an_ip_is_not_looked_up():
    results = run("not-an-ip", view=NoDns())
    assert list(results) == ["client.ip"]
    assert results["client.ip"].level is Level.INFO


# --- PTR and FCrDNS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ip", "ptr", "ptr_level", "fcrdns", "fcrdns_level"), [
    ("192.0.2.25", "pass", Level.PASS, "pass", Level.PASS),  # mail.example.net A 192.0.2.25
    ("192.0.2.26", "pass", Level.PASS, "fail", Level.FAIL),  # PTR name does not exist
    ("192.0.2.27", "pass", Level.PASS, "fail", Level.FAIL),  # PTR name resolves to another IP
    ("192.0.2.28", "none", Level.FAIL, "none", Level.INFO),  # no PTR
    ("192.0.2.29", "temperror", Level.WARN, "temperror", Level.WARN),  # PTR lookup times out
    ("192.0.2.30", "pass", Level.PASS, "pass", Level.PASS),  # second of two PTR names confirms
    ("192.0.2.31", "pass", Level.PASS, "temperror", Level.WARN),  # forward lookup times out
    ("2001:db8::25", "pass", Level.PASS, "pass", Level.PASS),  # IPv6 via ip6.arpa nibbles and AAAA
    ("::ffff:192.0.2.25", "pass", Level.PASS, "pass", Level.PASS),  # IPv4-mapped is the IPv4 address
])
def test_ptr_and_fcrdns(ip, ptr, ptr_level, fcrdns, fcrdns_level):
    results = run(ip)
    assert (results["client.ptr"].result, results["client.ptr"].level) == (ptr, ptr_level)
    assert (results["client.fcrdns"].result, results["client.fcrdns"].level) == (fcrdns, fcrdns_level)
    for cid, words in RESULT_WORDS.items():
        assert results[cid].result in words


def test_ptr_pass_evidence():
    r = run("192.0.2.25")["client.ptr"]
    assert r.evidence["ptr"] == "mail.example.net"
    assert r.evidence["query"] == "25.2.0.192.in-addr.arpa"
    assert r.fix is None and "gmail" not in r.evidence


def test_missing_ptr_names_gmail_codes_and_the_record_to_publish():
    r = run("192.0.2.28")["client.ptr"]
    assert r.evidence["answer"] == "NXDOMAIN"
    assert "421 4.7.23" in r.evidence["gmail"] and "550 5.7.25" in r.evidence["gmail"]
    assert "`28.2.0.192.in-addr.arpa. PTR mail.example.net.`" in r.fix  # suggested from the From domain
    assert "`mail.example.net. A 192.0.2.28`" in r.fix
    assert r.evidence["rfc"].startswith("RFC 1912")


def test_fcrdns_evidence_shows_names_and_addresses():
    ok = run("192.0.2.25")["client.fcrdns"]
    assert ok.evidence["forward"] == "mail.example.net → 192.0.2.25"
    assert ok.evidence["confirmed"] == "mail.example.net"
    bad = run("192.0.2.27")["client.fcrdns"]
    assert bad.evidence["forward"] == "elsewhere.example.net → 192.0.2.99"
    assert "`elsewhere.example.net. A 192.0.2.27`" in bad.fix
    assert "5.7.25" in bad.evidence["gmail"]
    gone = run("192.0.2.26")["client.fcrdns"]
    assert gone.evidence["forward"] == "gone.example.net → (no A records)"
    two = run("192.0.2.30")["client.fcrdns"]
    assert two.evidence["ptr"] == "old.example.net, out.example.net"
    assert two.evidence["confirmed"] == "out.example.net"
    v6 = run("2001:db8::25")["client.fcrdns"]
    assert v6.evidence["forward"] == "mail.example.net → 2001:db8::25"


# --- generic names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ip", "result", "level"), [
    ("198.51.100.7", "generic", Level.WARN),  # 198-51-100-7.dsl.isp.example.net
    ("198.51.100.8", "generic", Level.WARN),  # static-8-100.cable.isp.example.net
    ("2001:db8::26", "generic", Level.WARN),  # 2001-db8--26.ip6.isp.example.net
    ("198.51.100.9", "pass", Level.PASS),  # mx-pool.example.net: a word, no octets
    ("192.0.2.25", "pass", Level.PASS),  # mail.example.net
    ("192.0.2.28", "none", Level.INFO),  # no PTR
    ("192.0.2.29", "temperror", Level.INFO),
])
def test_generic_ptr(ip, result, level):
    r = run(ip)["client.generic-ptr"]
    assert (r.result, r.level) == (result, level)
    assert (r.fix is not None) == (result == "generic")


def test_generic_ptr_fix_and_evidence():
    r = run("198.51.100.7")["client.generic-ptr"]
    assert r.evidence["name"] == "198-51-100-7.dsl.isp.example.net"
    assert r.evidence["why"] == "contains the address as 198-51-100-7"
    assert "mail.your-domain" in r.fix


@pytest.mark.parametrize(("name", "ip"), [
    ("192-0-2-10.isp.example.net", "192.0.2.10"),
    ("host-10-2-0-192.isp.example.net", "192.0.2.10"),  # reversed
    ("ip-192-000-002-010.isp.example.net", "192.0.2.10"),  # zero-padded
    ("192000002010.isp.example.net", "192.0.2.10"),
    ("192.0.2.10.static.isp.example.net", "192.0.2.10"),  # dotted
    ("c000020a.isp.example.net", "192.0.2.10"),  # hex
    ("3221225994.isp.example.net", "192.0.2.10"),  # decimal
    ("pool-2-10.isp.example.net", "192.0.2.10"),  # word + last two octets
    ("dyn0-2-10.isp.example.net", "192.0.2.10"),  # word + last three octets
    ("10-2.dhcp.isp.example.net", "192.0.2.10"),  # reversed pair
    ("ppp.0.2.10.isp.example.net", "192.0.2.10"),
    ("2001-db8--26.ip6.isp.example.net", "2001:db8::26"),
    ("20010db8000000000000000000000026.isp.example.net", "2001:db8::26"),
])
def test_looks_generic_fires(name, ip):
    assert looks_generic(name, ip)


@pytest.mark.parametrize(("name", "ip"), [
    ("mail.example.net", "192.0.2.10"),
    ("mx-pool.example.net", "192.0.2.10"),  # a generic word alone
    ("mail-2-10.example.net", "192.0.2.10"),  # octets alone, no generic word
    ("192-0-2-11.isp.example.net", "192.0.2.1"),  # another address that merely starts the same
    ("pool-12-10.isp.example.net", "192.0.2.10"),  # 12-10 is not 2-10
    ("192-0-2-10.example.net", "192.0.2.99"),  # the name of another address
    ("mail6.example.net", "2001:db8::26"),
    ("example.net", "192.0.2.10"),  # no host part at all
    ("mail.example.net", "not-an-ip"),
])
def test_looks_generic_does_not_fire(name, ip):
    assert looks_generic(name, ip) is None


def test_looks_generic_is_bounded_on_hostile_names():
    start = time.monotonic()
    assert looks_generic("1-" * 50_000 + "x.example.net", "192.0.2.10") is None
    assert looks_generic("dsl" + "-2" * 50_000 + ".example.net", "192.0.2.2") is None
    assert time.monotonic() - start < 1.0


# --- XCLIENT NAME ------------------------------------------------------------------------------------------


def test_xclient_name_that_dns_confirms():
    r = run("192.0.2.25", name="mail.example.net")["client.ptr"]
    assert r.level is Level.PASS
    assert r.evidence["claimed-name"] == "mail.example.net (from XCLIENT NAME)"
    assert r.evidence["claimed-name-in-dns"] == "yes"


def test_xclient_name_that_dns_contradicts_is_reported_and_dns_decides():
    results = run("192.0.2.25", name="Other.Example.NET")
    assert results["client.ptr"].level is Level.PASS
    assert results["client.ptr"].evidence["claimed-name-in-dns"] == "no: DNS gives mail.example.net"
    assert results["client.fcrdns"].evidence["claimed-name"] == "other.example.net (from XCLIENT NAME)"


def test_xclient_name_without_ptr_in_dns_still_fails_ptr():
    results = run("192.0.2.28", name="mail.example.net")
    ptr = results["client.ptr"]
    assert (ptr.result, ptr.level) == ("none", Level.FAIL)
    assert ptr.evidence["claimed-name-in-dns"] == "no: DNS has no PTR record"
    fcrdns = results["client.fcrdns"]
    assert fcrdns.result == "none"
    assert fcrdns.evidence["claimed-name-resolves-to"] == "192.0.2.25"
    generic = results["client.generic-ptr"]
    assert (generic.result, generic.evidence["source"]) == ("pass", "XCLIENT NAME")


def test_generic_xclient_name_is_judged_when_dns_has_no_ptr():
    r = run("192.0.2.28", name="192-0-2-28.dsl.isp.example.net")["client.generic-ptr"]
    assert (r.result, r.level) == ("generic", Level.WARN)
    assert r.evidence["source"] == "XCLIENT NAME"


def test_no_xclient_name_no_claim_evidence():
    results = run("192.0.2.25")
    assert "claimed-name" not in results["client.ptr"].evidence
    assert "claimed-name" not in results["client.fcrdns"].evidence


# --- HELO --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("helo", "ip", "from_", "result", "level"), [
    ("mail.example.net", "192.0.2.25", None, "pass", Level.PASS),  # the PTR name itself
    ("MAIL.Example.NET.", "192.0.2.25", None, "pass", Level.PASS),  # case and final dot do not matter
    ("out.example.net", "192.0.2.25", None, "pass", Level.PASS),  # same organisation as the PTR name
    ("smtp.example.com", "192.0.2.28", "Alice <alice@example.com>", "pass", Level.PASS),  # From's organisation
    ("smtp.example.com", "192.0.2.25", None, "unrelated", Level.WARN),
    ("relay.example.org", "192.0.2.28", None, "unrelated", Level.WARN),  # no PTR, not the From domain
    ("relay.example.org", "192.0.2.29", None, "temperror", Level.WARN),  # PTR unknown: cannot say
    ("nowhere.example.net", "192.0.2.25", None, "unresolvable", Level.WARN),
    ("slow.example.net", "192.0.2.25", None, "temperror", Level.WARN),
    ("[192.0.2.25]", "192.0.2.25", None, "literal", Level.WARN),
    ("[192.0.2.1]", "192.0.2.25", None, "literal", Level.WARN),
    ("[IPv6:2001:db8::25]", "2001:db8::25", None, "literal", Level.WARN),
    ("localhost", "192.0.2.25", None, "invalid", Level.FAIL),
    ("localhost.localdomain", "192.0.2.25", None, "invalid", Level.FAIL),
    ("laptop.local", "192.0.2.25", None, "invalid", Level.FAIL),
    ("mybox", "192.0.2.25", None, "invalid", Level.FAIL),  # bare word
    ("192.0.2.25", "192.0.2.25", None, "invalid", Level.FAIL),  # IP without brackets
    ("[not-an-ip]", "192.0.2.25", None, "invalid", Level.FAIL),
    ("bad_name.example.net", "192.0.2.25", None, "invalid", Level.FAIL),
    ("host.123", "192.0.2.25", None, "invalid", Level.FAIL),
    ("a" * 100_000, "192.0.2.25", None, "invalid", Level.FAIL),
    (None, "192.0.2.25", None, "none", Level.INFO),
    ("   ", "192.0.2.25", None, "none", Level.INFO),
])
def test_helo(helo, ip, from_, result, level):
    r = run(ip, helo=helo, from_=from_ or "Alice <alice@example.net>")["client.helo"]
    assert (r.result, r.level) == (result, level), r.summary
    assert (r.fix is None) == (result in ("pass", "none")) or result == "temperror"
    if level in (Level.WARN, Level.FAIL):
        assert r.evidence["rfc"] == "RFC 5321 §4.1.1.1, §2.3.5"


def test_helo_evidence():
    ok = run("192.0.2.25", helo="mail.example.net")["client.helo"]
    assert ok.evidence["relation"] == "is the PTR name"
    assert ok.evidence["resolves-to"] == "192.0.2.25, 2001:db8::25"
    assert ok.evidence["matches-client-ip"] == "yes"
    same = run("192.0.2.25", helo="[192.0.2.25]")["client.helo"]
    assert same.evidence["literal-is-client-ip"] == "yes"
    other = run("192.0.2.25", helo="[192.0.2.1]")["client.helo"]
    assert other.evidence["literal-is-client-ip"] == "no"
    bad = run("192.0.2.25", helo="localhost")["client.helo"]
    assert "EHLO mail.example.net" in bad.fix and "local_hostname='mail.example.net'" in bad.fix


def test_hostile_helo_and_name_are_escaped_in_evidence():
    results = run("192.0.2.28", helo="evil\x1b]52;c;AAAA\x07.example.net", name="x\x1b[2J.example.net")
    for r in results.values():
        for value in [r.summary, *r.evidence.values()]:
            assert "\x1b" not in value and "\x07" not in value
    assert results["client.helo"].result == "invalid"


@pytest.mark.parametrize(("ip", "name"), [
    ("192.0.2.25", "mail.example.net"),  # forward-confirmed, proper name: greet with it
    ("198.51.100.7", "mail.example.net"),  # generic PTR: suggest a name under the From domain instead
    ("192.0.2.27", "mail.example.net"),  # PTR not confirmed: same
    ("192.0.2.30", "out.example.net"),  # the confirmed one of two
])
def test_helo_fix_suggests_a_name_worth_using(ip, name):
    r = run(ip, helo="localhost")["client.helo"]
    assert f"EHLO {name})" in r.fix
    assert ("The PTR record of the IP should give that name too" in r.fix) == (ip in ("198.51.100.7", "192.0.2.27"))


@pytest.mark.parametrize("ip", ["fe80::1%eth0", "fe80::1%25", "::1%lo"])
def test_a_scoped_ipv6_client_is_judged_without_its_zone_index(ip):
    """Found by hypothesis: XCLIENT ADDR=fe80::1%eth0 made the check raise (client.error)."""
    results = run(ip)
    assert "client.error" not in results
    assert all("%" not in r.summary for r in results.values() if r.id != "client.ip")
