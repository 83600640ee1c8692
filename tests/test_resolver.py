"""The production DNS view against a real DNS server on loopback: answers, NXDOMAIN, SERVFAIL, timeouts."""

from __future__ import annotations

import time

import pytest
from support import GOOD_IP, ZONES, capture, message
from support.dnsserver import TinyDNS

from lab.core.analyse import analyse
from lab.core.dnsview import DnsTempError, LayeredView, ZoneView
from lab.resolver import SystemView, build_view, parse_nameserver

ZONE = """
served.test.         TXT "v=spf1 ip4:192.0.2.0/24 -all"
served.test.         MX  10 mx.served.test.
served.test.         A   192.0.2.10
_dmarc.served.test.  TXT "v=DMARC1; p=reject"
long.served.test.    TXT "part one " "part two"
record.big.          TXT "v=spf1 ip4:192.0.2.0/24 -all"
loop1.served.test.   CNAME loop2.served.test.
loop2.served.test.   CNAME loop1.served.test.
"""


@pytest.fixture
def server():
    s = TinyDNS(ZONE)
    yield s
    s.close()


def test_system_view_answers_from_a_real_server(server):
    view = SystemView(server.address)
    assert view.lookup("served.test", "TXT").records == ((b"v=spf1 ip4:192.0.2.0/24 -all",),)
    assert view.lookup("served.test", "MX").records == ((10, "mx.served.test"),)
    assert view.lookup("long.served.test", "TXT").records == ((b"part one ", b"part two"),)
    nx = view.lookup("nothing.served.test", "A")
    assert (nx.exists, nx.records) == (False, ())
    nodata = view.lookup("served.test", "AAAA")
    assert (nodata.exists, nodata.records) == (True, ())


def test_servfail_is_a_temperror(server):
    with pytest.raises(DnsTempError):
        SystemView(server.address).lookup("x.servfail", "TXT")


def test_a_silent_server_is_a_temperror_within_about_two_seconds(server):
    start = time.monotonic()
    with pytest.raises(DnsTempError):
        SystemView(server.address).lookup("x.blackhole", "TXT")
    assert time.monotonic() - start < 3.5


def test_overlay_answers_first_and_the_rest_goes_to_the_server(server):
    overlay = ZoneView.from_text('served.test. TXT "v=spf1 ip4:198.51.100.0/24 -all"\n')
    view = LayeredView(overlay, SystemView(server.address))
    assert view.lookup("served.test", "TXT").records == ((b"v=spf1 ip4:198.51.100.0/24 -all",),)
    assert view.lookup("served.test", "TXT").source == "overlay"
    assert view.lookup("_dmarc.served.test", "TXT").source == "system"
    assert ("served.test.", "TXT") not in server.questions


def test_full_analysis_through_a_real_server(server):
    view = LayeredView(ZoneView(), SystemView(server.address))
    verdict = analyse(capture(message(from_="a@served.test"), mail_from="a@served.test", ip=GOOD_IP, helo=None),
                      view)
    by_id = {c.id: c for c in verdict.checks}
    assert by_id["spf.mailfrom"].result == "pass"
    assert by_id["dmarc"].result == "pass"
    temp = analyse(capture(message(from_="a@x.blackhole"), mail_from="a@x.blackhole", helo=None),
                   LayeredView(ZoneView(), SystemView(server.address, lifetime=0.5)))
    assert {c.id: c.result for c in temp.checks}["spf.mailfrom"] == "temperror"
    assert temp.disposition.startswith("Deferred")


def test_a_dead_resolver_costs_one_timeout_per_message_not_one_per_lookup(server):
    view = LayeredView(ZoneView(), SystemView(server.address, lifetime=1.0))
    start = time.monotonic()
    verdict = analyse(capture(message(from_="a@x.blackhole"), mail_from="a@x.blackhole", helo="h.blackhole"), view)
    assert time.monotonic() - start < 2.5  # SPF, HELO SPF and DMARC would be three timeouts
    results = {c.id: c.result for c in verdict.checks}
    assert results["spf.mailfrom"] == results["spf.helo"] == results["dmarc"] == "temperror"


def test_offline_view_has_no_fallback():
    view = build_view(ZONES, offline=True)
    assert view.fallback is None
    assert view.lookup("example.net", "TXT").exists is False


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:5300", ("::1", 5300)), ("::1", ("::1", 53)),
])
def test_parse_nameserver(text, expected):
    assert parse_nameserver(text) == expected


def test_a_truncated_udp_answer_is_retried_over_tcp(server):
    answer = SystemView(server.address).lookup("record.big", "TXT")
    assert answer.records == ((b"v=spf1 ip4:192.0.2.0/24 -all",),)
    assert ("record.big.", "TXT", "udp") in server.questions and ("record.big.", "TXT", "tcp") in server.questions


def test_a_cname_loop_ends_quickly_without_an_answer(server):
    start = time.monotonic()
    try:
        answer = SystemView(server.address).lookup("loop1.served.test", "TXT")
        assert answer.records == ()
    except DnsTempError:
        pass  # some resolvers call a loop a failure; either way it must not hang or raise anything else
    assert time.monotonic() - start < 3
    overlay = ZoneView.from_text("a.test. CNAME b.test.\nb.test. CNAME a.test.\n")
    assert overlay.lookup("a.test", "TXT").records == ()


def test_after_the_resolver_recovers_a_recheck_gives_the_right_answer(server):
    from lab.resolver import DEAD_FOR

    view = LayeredView(ZoneView(), SystemView(server.address, lifetime=0.5))
    raw = message(from_="a@served.test")
    verdict = analyse(capture(raw, mail_from="a@x.blackhole", ip=GOOD_IP, helo=None), view)
    assert {c.id: c.result for c in verdict.checks}["spf.mailfrom"] == "temperror"
    server.blackhole = False  # the name server answers again (NXDOMAIN for these names)
    time.sleep(DEAD_FOR + 0.1)
    again = analyse(capture(raw, mail_from="a@served.test", ip=GOOD_IP, helo=None), view)
    assert {c.id: c.result for c in again.checks}["spf.mailfrom"] == "pass"


def test_zone_files_parse_once_into_the_cache_and_are_read_back_from_it(tmp_path, monkeypatch):
    """`maillab check` keeps what a zone text parses to (dnspython's zone parser costs 30 ms to import): the
    second load reads the same records without parsing; an edited file is parsed again; the cache is
    owner-only, bounded, and a damaged entry is parsed again rather than trusted."""
    from lab import resolver
    from lab.core.dnsview import ZoneSyntaxError

    cache = tmp_path / "data" / "cache" / "zones"
    zone = tmp_path / "served.zone"
    zone.write_text(ZONE)
    first = resolver.load_zones([zone], cache_dir=cache)
    assert [p.stat().st_mode & 0o777 for p in (tmp_path / "data", cache.parent, cache)] == [0o700] * 3
    (entry,) = cache.glob("*.zone")

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again")

    with monkeypatch.context() as m:
        m.setattr(ZoneView, "from_text", no_parsing)
        again = resolver.load_zones([zone], cache_dir=cache)
    assert again.records == first.records and again.lookup("long.served.test", "TXT").records == ((b"part one ",
                                                                                                     b"part two"),)
    zone.write_text(ZONE + 'new.served.test. TXT "hello"\n')
    edited = resolver.load_zones([zone], cache_dir=cache)
    assert edited.lookup("new.served.test", "TXT").records == ((b"hello",),) and len(list(cache.glob("*.zone"))) == 2
    entry.write_bytes(b"\x00damaged")
    zone.write_text(ZONE)
    assert resolver.load_zones([zone], cache_dir=cache).records == first.records
    monkeypatch.setattr(resolver, "ZONE_CACHE_KEEP", 2)
    for n in range(3):
        zone.write_text(ZONE + f'n{n}.served.test. TXT "{n}"\n')
        resolver.load_zones([zone], cache_dir=cache)
    assert len(list(cache.glob("*.zone"))) == 2
    zone.write_text("bad.served.test. TXT\n")  # no data: the error names the file, as without a cache
    with pytest.raises(ZoneSyntaxError, match="served.zone"):
        resolver.load_zones([zone], cache_dir=cache)
