"""Tests for SPF: every RFC 7208 result from the fixture zones, the evidence and fixes, HELO, and the DNS seam."""

from __future__ import annotations

import threading

import pytest
import spf as pyspf
from support import BAD_IP, GOOD_IP, capture, message

from lab.core.analyse import analyse
from lab.core.checks import spf
from lab.core.context import Context
from lab.core.dnsview import Answer, DnsTempError, LayeredView, ZoneView
from lab.core.results import CheckResult, Level

COM_RECORD = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
LOOKUPS_RECORD = "v=spf1 " + " ".join(f"include:l{i}.test" for i in range(1, 12)) + " -all"
PERMERROR_FIX = "at most 10 DNS-querying mechanisms"


def one(results, cid: str) -> CheckResult:
    found = [r for r in (results.checks if hasattr(results, "checks") else results) if r.id == cid]
    assert len(found) == 1, (cid, found)
    return found[0]


def mailfrom(view, mail_from: str, ip: str = GOOD_IP, helo: str | None = "mail.example.com") -> CheckResult:
    return one(analyse(capture(message(), mail_from=mail_from, ip=ip, helo=helo), view), "spf.mailfrom")


@pytest.mark.parametrize(("mail_from", "ip", "result", "level", "mechanism", "record"), [
    ("alice@example.com", GOOD_IP, "pass", Level.PASS, "ip4:192.0.2.0/24", COM_RECORD),
    ("alice@example.com", BAD_IP, "fail", Level.FAIL, "-all", COM_RECORD),
    ("alice@example.org", BAD_IP, "softfail", Level.WARN, "~all", "v=spf1 ip4:192.0.2.10 ~all"),
    ("alice@neutral.test", GOOD_IP, "neutral", Level.WARN, "?all", "v=spf1 ?all"),
    ("alice@none.test", GOOD_IP, "none", Level.WARN, None, None),
    ("alice@permerror.test", BAD_IP, "permerror", Level.FAIL, None,
     "v=spf1 ip4:192.0.2.10 include:missing.test -all"),
    ("alice@badmech.test", GOOD_IP, "permerror", Level.FAIL, None, "v=spf1 ip4:192.0.2.10 fancy:thing -all"),
    ("alice@twospf.test", GOOD_IP, "permerror", Level.FAIL, None, "v=spf1 -all | v=spf1 +all"),
    ("alice@lookups.test", GOOD_IP, "permerror", Level.FAIL, None, LOOKUPS_RECORD),
    ("alice@mail.example.com", GOOD_IP, "pass", Level.PASS, "a", "v=spf1 a -all"),
    ("alice@example.com", "2001:db8::1", "pass", Level.PASS, "ip6:2001:db8::/32", COM_RECORD),
    ("alice@example.com", "2001:db9::1", "fail", Level.FAIL, "-all", COM_RECORD),
])
def test_mailfrom_results(view, mail_from, ip, result, level, mechanism, record):
    r = mailfrom(view, mail_from, ip)
    domain = mail_from.partition("@")[2]
    assert (r.result, r.level) == (result, level)
    assert r.evidence.get("mechanism") == mechanism
    assert r.evidence.get("record") == record
    assert r.evidence["domain"] == domain
    assert r.evidence["client-ip"] == ip
    assert r.evidence["identity"] == "MAIL FROM"
    assert r.summary.startswith(f"SPF {result}: ")
    assert (r.fix is None) == (result == "pass")


@pytest.mark.parametrize(("mail_from", "explanation"), [
    ("alice@permerror.test", "No valid SPF record for included domain: missing.test"),
    ("alice@badmech.test", "Unknown mechanism found: fancy:thing"),
    ("alice@twospf.test", "Two or more type TXT spf records found"),
    ("alice@lookups.test", "Too many DNS lookups"),
])
def test_permerror_explains_why_and_says_what_to_fix(view, mail_from, explanation):
    r = mailfrom(view, mail_from, BAD_IP)
    assert r.result == "permerror"
    assert explanation in r.evidence["explanation"]
    assert PERMERROR_FIX in r.fix
    assert f"Fix the SPF record at {mail_from.partition('@')[2]}" in r.fix


@pytest.mark.parametrize(("mail_from", "ip", "lookups"), [
    ("alice@lookups.test", GOOD_IP, "11 of 10"),  # the eleventh include is the one too many
    ("alice@permerror.test", BAD_IP, "1 of 10"),
    ("alice@mail.example.com", GOOD_IP, "1 of 10"),
])
def test_dns_lookups_are_counted(view, mail_from, ip, lookups):
    assert mailfrom(view, mail_from, ip).evidence["dns-lookups"] == lookups


def test_ip_mechanisms_cost_no_lookup(view):
    assert "dns-lookups" not in mailfrom(view, "alice@example.com").evidence


@pytest.mark.parametrize(("mail_from", "ip", "record_to_publish"), [
    ("alice@example.com", BAD_IP, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip4:203.0.113.5 -all"),
    ("alice@example.org", BAD_IP, "v=spf1 ip4:192.0.2.10 ip4:203.0.113.5 ~all"),
    ("alice@neutral.test", GOOD_IP, "v=spf1 ip4:192.0.2.10 ?all"),
    ("alice@example.com", "2001:db9::1", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip6:2001:db9::1 -all"),
])
def test_fix_gives_the_record_to_publish(view, mail_from, ip, record_to_publish):
    r = mailfrom(view, mail_from, ip)
    domain = mail_from.partition("@")[2]
    assert r.fix == f'Authorise {ip}: change the TXT record at {domain} to "{record_to_publish}".'


def test_none_fix_proposes_a_first_record(view):
    r = mailfrom(view, "alice@none.test")
    assert r.fix.startswith('Publish a TXT record at none.test: "v=spf1 ip4:192.0.2.10 -all"')
    assert r.summary == "SPF none: none.test publishes no SPF record"


def test_loopback_client_is_told_to_declare_its_production_ip(view):
    r = mailfrom(view, "alice@example.com", "127.0.0.1")
    assert r.result == "fail"
    assert "--client-ip" in r.fix and "XCLIENT ADDR=IP" in r.fix


SLOW_INCLUDE = ZoneView.from_text('@ TXT "v=spf1 include:slow.test -all"\n', origin="relay.test.")


@pytest.mark.parametrize("temp_view", [
    pytest.param(lambda base: LayeredView(ZoneView(timeouts=["example.com"]), base), id="layered-over-fixtures"),
    pytest.param(lambda base: ZoneView(timeouts=["example.com"]), id="timeout-view-alone"),
])
def test_temperror_when_the_record_times_out(view, temp_view):
    r = mailfrom(temp_view(view), "alice@example.com")
    assert (r.result, r.level) == ("temperror", Level.WARN)
    assert "record" not in r.evidence  # nothing was fetched, so nothing is shown as the record
    assert "name servers answer" in r.fix
    assert "example.com" in r.evidence["explanation"]


def test_temperror_in_an_include_is_temperror_for_the_whole_check():
    zone = ZoneView(SLOW_INCLUDE.records, timeouts=["slow.test"])
    r = mailfrom(zone, "alice@relay.test")
    assert r.result == "temperror"
    assert "slow.test" in r.evidence["explanation"]


@pytest.mark.parametrize(("helo", "ip", "result", "level", "evidence"), [
    ("mail.example.com", GOOD_IP, "pass", Level.PASS, {"mechanism": "a", "record": "v=spf1 a -all"}),
    ("mail.example.com", BAD_IP, "fail", Level.WARN, {"mechanism": "-all"}),  # HELO fail is advisory
    ("none.test", GOOD_IP, "none", Level.INFO, {"domain": "none.test"}),
    ("[192.0.2.10]", GOOD_IP, "none", Level.INFO, {"helo": "[192.0.2.10]"}),
    ("[IPv6:2001:db8::1]", GOOD_IP, "none", Level.INFO, {"helo": "[IPv6:2001:db8::1]"}),
    ("localhost", GOOD_IP, "none", Level.INFO, {"helo": "localhost"}),
    ("mailhost", GOOD_IP, "none", Level.INFO, {"helo": "mailhost"}),
])
def test_helo(view, helo, ip, result, level, evidence):
    r = one(analyse(capture(message(), ip=ip, helo=helo), view), "spf.helo")
    assert (r.result, r.level) == (result, level)
    assert {k: r.evidence.get(k) for k in evidence} == evidence
    if "helo" in evidence:
        assert "is not a domain name" in r.summary


def test_no_helo_at_all_is_info_and_left_out_of_authentication_results(view):
    verdict = analyse(capture(message(), helo=None), view)
    r = one(verdict, "spf.helo")
    assert (r.result, r.level) == (None, Level.INFO)
    assert "smtp.helo" not in verdict.authentication_results


def test_null_sender_checks_postmaster_at_the_helo_name(view):
    verdict = analyse(capture(message(), mail_from="", helo="mail.example.com"), view)
    r = one(verdict, "spf.mailfrom")
    assert (r.result, r.evidence["domain"], r.evidence["mechanism"]) == ("pass", "mail.example.com", "a")
    assert r.evidence["identity"].startswith("MAIL FROM <>")
    assert "smtp.mailfrom=postmaster@mail.example.com" in verdict.authentication_results


def test_null_sender_with_an_address_literal_helo_has_nothing_to_check(view):
    r = one(analyse(capture(message(), mail_from="", helo="[192.0.2.10]"), view), "spf.mailfrom")
    assert (r.result, r.level) == ("none", Level.WARN)
    assert r.summary.startswith("No domain to check SPF for")


def test_null_sender_asks_dns_about_the_helo_domain_only():
    asked: list[tuple[str, str]] = []
    zone = ZoneView.from_text('mail TXT "v=spf1 -all"\n', origin="example.com.")

    class Recording:
        def lookup(self, name, rtype):
            asked.append((name.rstrip(".").lower(), rtype))
            return zone.lookup(name, rtype)

    ctx = Context(capture(message(), mail_from="", helo="mail.example.com"), Recording())
    (r,) = spf.check_mailfrom(ctx)
    assert r.result == "fail"
    assert {name for name, _ in asked} == {"mail.example.com"}


def test_authentication_results_carry_both_identities(view):
    verdict = analyse(capture(message(), mail_from="alice@example.org", ip=BAD_IP), view)
    ar = verdict.authentication_results
    assert "spf=softfail (example.org: 203.0.113.5) smtp.mailfrom=alice@example.org" in ar
    assert "spf=fail smtp.helo=mail.example.com" in ar


def test_pyspf_without_a_view_gets_temperror_not_real_dns():
    result, _code, explanation = pyspf.query(i=GOOD_IP, s="alice@example.com", h="mail.example.com").check()
    assert result == "temperror"
    assert "no DNS view installed" in explanation


class GatedView:
    """A DNS view whose TXT lookups wait at a barrier, so two threads are inside pyspf at the same time.

    The record is `a -all`, so the verdict rests on a second lookup made after both threads have started:
    a view swapped through a global would answer that one from the other thread's zone.
    """

    def __init__(self, address: str, barrier: threading.Barrier):
        self.address = address
        self.barrier = barrier
        self.asked: list[str] = []

    def lookup(self, name: str, rtype: str) -> Answer:
        self.asked.append(f"{name} {rtype}")
        if rtype == "TXT":
            try:
                self.barrier.wait(timeout=5)
            except threading.BrokenBarrierError as exc:
                raise DnsTempError("the other thread never arrived") from exc
            return Answer(name, rtype, ((b"v=spf1 a -all",),))
        return Answer(name, rtype, (self.address,) if rtype == "A" else ())


def test_concurrent_checks_each_see_their_own_view():
    barrier = threading.Barrier(2)
    views = {"allow": GatedView(GOOD_IP, barrier), "deny": GatedView("198.51.100.1", barrier)}
    out: dict[str, tuple] = {}

    def run(which: str) -> None:
        out[which] = spf.evaluate(views[which], GOOD_IP, "alice@example.com", "mail.example.com")

    threads = [threading.Thread(target=run, args=(w,)) for w in views]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert out["allow"][:3] == ("pass", "sender SPF authorized", "a")
    assert out["deny"][0] == "fail" and out["deny"][2] == "-all"
    assert views["allow"].asked == views["deny"].asked == ["example.com TXT", "example.com A"]
    assert spf._current_view.get() is None  # nothing leaks into the caller's context


@pytest.mark.parametrize(("mail_from", "ip", "rfc"), [
    ("a@example.com", BAD_IP, "RFC 7208 §2.6.4"),
    ("a@example.org", BAD_IP, "RFC 7208 §2.6.5"),
    ("a@lookups.test", GOOD_IP, "RFC 7208 §4.6.4"),
    ("a@twospf.test", GOOD_IP, "RFC 7208 §4.5"),
    ("a@badmech.test", BAD_IP, "RFC 7208 §4.6.1"),
])
def test_failing_results_name_their_rfc_section(view, mail_from, ip, rfc):
    r = one(analyse(capture(message(from_=mail_from), mail_from=mail_from, ip=ip, helo=None), view), "spf.mailfrom")
    assert r.evidence["rfc"] == rfc == r.ref
