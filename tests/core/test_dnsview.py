"""Tests for the DNS views: zone text parsing, CNAMEs, wildcards, NXDOMAIN vs NODATA, timeouts and layering."""

from __future__ import annotations

import pytest
from support import ZONES

from lab.core.dnsview import Answer, DnsTempError, LayeredView, ZoneSyntaxError, ZoneView, txt_records
from lab.resolver import load_zones

# No SOA, no NS: an overlay is a handful of records. Names are relative to $ORIGIN unless they end in a dot.
ZONE = """; a test overlay
$ORIGIN example.net.
$TTL 60
@                        TXT   "v=spf1 -all"
@                        MX    20 backup.example.org.
@                        MX    10 mail
mail                     A     192.0.2.1
mail                     AAAA  2001:DB8:0:0::1
long                     TXT   "v=DKIM1; k=rsa; " "p=ABC" "DEF"
multi                    TXT   "first"
multi                    TXT   "second"
alias                    CNAME mail
alias2                   CNAME alias.example.net.
loop1                    CNAME loop2
loop2                    CNAME loop1
dangling                 CNAME gone.example.net.
*.wild                   TXT   "synthesised"
exact.wild               TXT   "exact"
*.ent                    TXT   "wild under ent"
a.b.ent                  TXT   "below an empty non-terminal"
10.2.0.192.in-addr.arpa. PTR   Mail.Example.NET.
Absolute.Example.ORG.    TXT   "outside the origin"
"""


@pytest.fixture(scope="module")
def zone() -> ZoneView:
    return ZoneView.from_text(ZONE, label="test.zone")


@pytest.mark.parametrize(("name", "rtype", "records"), [
    ("example.net", "TXT", ((b"v=spf1 -all",),)),
    ("example.net", "MX", ((20, "backup.example.org"), (10, "mail.example.net"))),
    ("mail.example.net", "A", ("192.0.2.1",)),
    ("mail.example.net", "AAAA", ("2001:db8::1",)),
    ("long.example.net", "TXT", ((b"v=DKIM1; k=rsa; ", b"p=ABC", b"DEF"),)),
    ("10.2.0.192.in-addr.arpa", "PTR", ("mail.example.net",)),
    ("absolute.example.org", "TXT", ((b"outside the origin",),)),
    ("alias.example.net", "CNAME", ("mail.example.net",)),
    ("MAIL.Example.NET.", "a", ("192.0.2.1",)),  # names and types are case-insensitive, a final dot is ignored
])
def test_from_text_gives_typed_values(zone, name, rtype, records):
    answer = zone.lookup(name, rtype)
    assert answer.records == records
    assert answer.exists is True
    assert answer.source == "test.zone"


def test_two_txt_records_at_one_name_stay_separate(zone):
    assert sorted(zone.lookup("multi.example.net", "TXT").records) == [(b"first",), (b"second",)]
    assert sorted(txt_records(zone, "multi.example.net")) == ["first", "second"]


def test_txt_records_joins_the_strings_of_one_record(zone):
    assert txt_records(zone, "long.example.net") == ["v=DKIM1; k=rsa; p=ABCDEF"]


def test_origin_argument_and_default_ttl_replace_the_directives():
    view = ZoneView.from_text('_dmarc TXT "v=DMARC1; p=none"\n', origin="example.com.")
    assert view.records == {("_dmarc.example.com", "TXT"): ((b"v=DMARC1; p=none",),)}


@pytest.mark.parametrize(("name", "rtype", "records", "exists"), [
    ("alias.example.net", "A", ("192.0.2.1",), True),  # one hop
    ("alias2.example.net", "AAAA", ("2001:db8::1",), True),  # two hops
    ("dangling.example.net", "A", (), False),  # the target does not exist: NXDOMAIN
    ("loop1.example.net", "A", (), True),  # a loop ends instead of recursing forever
])
def test_cname_chains_are_followed(zone, name, rtype, records, exists):
    answer = zone.lookup(name, rtype)
    assert (answer.records, answer.exists) == (records, exists)
    assert answer.name == name  # the answer is for the name that was asked


@pytest.mark.parametrize(("name", "rtype", "records", "exists"), [
    # RFC 4592: `*.<closest encloser>` synthesises names that do not exist...
    ("x.wild.example.net", "TXT", ((b"synthesised",),), True),
    ("a.b.wild.example.net", "TXT", ((b"synthesised",),), True),  # closest encloser is still wild.example.net
    ("x.wild.example.net", "MX", (), True),  # the wildcard owner exists, without MX: NODATA
    # ...but never a name that exists, with records of another type or as an empty non-terminal
    ("exact.wild.example.net", "TXT", ((b"exact",),), True),
    ("exact.wild.example.net", "A", (), True),
    ("wild.example.net", "TXT", (), True),
    ("b.ent.example.net", "TXT", (), True),
    ("c.ent.example.net", "TXT", ((b"wild under ent",),), True),
    # the closest encloser has no wildcard child: NXDOMAIN, even with a wildcard further up
    ("y.exact.wild.example.net", "TXT", (), False),
    ("x.b.ent.example.net", "TXT", (), False),
])
def test_wildcards_follow_the_closest_encloser_rule(zone, name, rtype, records, exists):
    answer = zone.lookup(name, rtype)
    assert (answer.records, answer.exists) == (records, exists)


@pytest.mark.parametrize(("name", "rtype", "exists"), [
    ("nothere.example.net", "TXT", False),  # NXDOMAIN
    ("nothere.invalid", "A", False),
    ("mail.example.net", "TXT", True),  # NODATA: the name has an A record
    ("example.net", "A", True),
    ("in-addr.arpa", "PTR", True),  # an empty non-terminal exists
])
def test_nxdomain_is_told_apart_from_nodata(zone, name, rtype, exists):
    answer = zone.lookup(name, rtype)
    assert answer.records == ()
    assert answer.exists is exists


@pytest.mark.parametrize("name", ["slow.example.net", "SLOW.example.net."])
def test_a_timeout_name_raises_temperror(name):
    view = ZoneView({("slow.example.net", "TXT"): ((b"never seen",),)}, timeouts=["slow.example.net"], label="t")
    with pytest.raises(DnsTempError, match=r"slow\.example\.net TXT: lookup timed out \(t\)"):
        view.lookup(name, "TXT")
    assert view.lookup("fast.example.net", "TXT").exists is False  # only the listed name times out


@pytest.mark.parametrize(("text", "where", "detail"), [
    ('a TXT "x"\nb TXT "y"\nc BOGUS 1\n', "bad.zone:3:", "unknown rdatatype 'BOGUS'"),
    ('a TXT "x"\n\nc MX ten mail\n', "bad.zone:3:", "expecting an integer"),
    ('a TXT "unterminated\nb TXT "y"\n', "bad.zone:2:", "newline in quoted string"),
    ("$INCLUDE /etc/passwd\n", "bad.zone:1:", "'$INCLUDE' is not allowed"),  # the core reads no files
])
def test_zone_syntax_errors_name_the_file_and_line(text, where, detail):
    with pytest.raises(ZoneSyntaxError) as err:
        ZoneView.from_text(text, origin="example.com.", label="bad.zone")
    assert str(err.value).startswith(where)
    assert detail in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.xfail(strict=True, reason="dnspython reports errors found after the end of the record line (bad "
                                        "address, trailing junk) on the following line")
@pytest.mark.parametrize("text", ['a TXT "x"\nb A 192.0.2.999\n', 'a TXT "x"\nb A 192.0.2.1 junk\n'])
def test_zone_syntax_errors_in_a_value_name_its_line(text):
    with pytest.raises(ZoneSyntaxError, match=r"^bad\.zone:2: "):
        ZoneView.from_text(text, origin="example.com.", label="bad.zone")


def test_load_zones_names_the_file_of_a_syntax_error(tmp_path):
    good = tmp_path / "good.zone"
    good.write_text('$ORIGIN a.test.\n@ TXT "ok"\n')
    bad = tmp_path / "bad.zone"
    bad.write_text('$ORIGIN b.test.\n@ TXT "ok"\nwww A 192.0.2.1 extra\n')
    with pytest.raises(ZoneSyntaxError, match=rf"^{bad}:\d+: "):
        load_zones([good, bad])
    with pytest.raises(FileNotFoundError, match="missing.zone"):
        load_zones([good, tmp_path / "missing.zone"])


def test_merge_concatenates_record_sets_and_unions_timeouts():
    one = ZoneView.from_text('@ TXT "one"\nslow TXT "x"\n', origin="example.com.", label="one.zone")
    two = ZoneView({("example.com", "TXT"): ((b"two",),), ("other.test", "A"): ("192.0.2.7",)},
                   timeouts=["late.test"], label="two.zone")
    merged = ZoneView.merge([one, two])
    assert merged.lookup("example.com", "TXT").records == ((b"one",), (b"two",))
    assert merged.lookup("other.test", "A").records == ("192.0.2.7",)
    assert merged.lookup("slow.example.com", "TXT").records == ((b"x",),)
    assert merged.lookup("other.test", "A").source == "overlay"
    with pytest.raises(DnsTempError):
        merged.lookup("late.test", "A")
    assert len(merged) == 3


class Recorder:
    """A fallback view that answers every question with one A-ish value and remembers what it was asked."""

    label = "recorder"

    def __init__(self):
        self.asked: list[tuple[str, str]] = []

    def lookup(self, name: str, rtype: str) -> Answer:
        self.asked.append((name, rtype))
        return Answer(name, rtype, ("198.51.100.7",), True, "system")


OVERLAY = """$ORIGIN example.com.
@         TXT   "v=spf1 -all"
www       CNAME example.com.
*.wild    TXT   "wild"
"""


@pytest.mark.parametrize(("name", "rtype", "source", "records"), [
    ("example.com", "TXT", "overlay", ((b"v=spf1 -all",),)),  # the overlay has this name and type
    ("example.com", "A", "system", ("198.51.100.7",)),  # same name, type not in the overlay: fallback
    ("www.example.com", "TXT", "overlay", ((b"v=spf1 -all",),)),  # a CNAME in the overlay answers every type
    ("x.wild.example.com", "TXT", "overlay", ((b"wild",),)),  # wildcard synthesis counts as known
    ("x.wild.example.com", "MX", "system", ("198.51.100.7",)),
    ("elsewhere.org", "TXT", "system", ("198.51.100.7",)),
])
def test_layered_view_prefers_the_overlay_per_name_and_type(name, rtype, source, records):
    fallback = Recorder()
    view = LayeredView(ZoneView.from_text(OVERLAY, label="overlay"), fallback)
    answer = view.lookup(name, rtype)
    assert (answer.source, answer.records) == (source, records)
    assert fallback.asked == ([(name, rtype)] if source == "system" else [])
    assert view.offline is False


def test_layered_view_timeouts_in_the_overlay_never_reach_the_fallback():
    fallback = Recorder()
    view = LayeredView(ZoneView(timeouts=["slow.example.com"]), fallback)
    with pytest.raises(DnsTempError):
        view.lookup("slow.example.com", "TXT")
    assert fallback.asked == []


@pytest.mark.parametrize(("name", "rtype", "exists", "records"), [
    ("example.com", "TXT", True, ((b"v=spf1 -all",),)),
    ("example.com", "A", True, ()),  # NODATA
    ("elsewhere.org", "TXT", False, ()),  # offline: everything unknown is NXDOMAIN
])
def test_layered_view_offline_answers_from_the_overlay_alone(name, rtype, exists, records):
    view = LayeredView(ZoneView.from_text(OVERLAY))
    assert view.offline is True
    answer = view.lookup(name, rtype)
    assert (answer.exists, answer.records) == (exists, records)


@pytest.mark.parametrize(("name", "rtype", "expected"), [
    ("example.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"),
    ("_dmarc.example.org", "TXT", "v=DMARC1; p=none; rua=mailto:dmarc@example.org"),
    ("_dmarc.npdomain.test", "TXT", "v=DMARC1; p=none; np=reject"),
])
def test_load_zones_reads_the_fixture_zones(name, rtype, expected):
    view = load_zones(ZONES)
    assert txt_records(view, name) == [expected]


def test_load_zones_keeps_split_keys_as_one_record_and_typed_values():
    view = load_zones(ZONES)
    (key,) = view.lookup("rsa2048._domainkey.example.com", "TXT").records
    assert len(key) == 3  # published as three strings of one record
    assert b"".join(key).startswith(b"v=DKIM1; k=rsa; p=MIIBIjAN")
    assert view.lookup("example.com", "MX").records == ((10, "mail.example.com"),)
    assert view.lookup("mail.example.com", "A").records == ("192.0.2.10",)
    assert sorted(txt_records(view, "_dmarc.twodmarc.test")) == ["v=DMARC1; p=none", "v=DMARC1; p=reject"]
    assert view.lookup("none.test", "TXT").exists is True  # none.test has an A record only
    assert view.lookup("missing.test", "TXT").exists is False


def test_layered_overlay_cname_to_a_name_it_does_not_know_asks_the_fallback():
    from lab.core.dnsview import Answer, LayeredView, ZoneView

    class Fallback:
        def __init__(self):
            self.asked = []

        def lookup(self, name, rtype):
            self.asked.append((name, rtype))
            return Answer(name, rtype, ("198.51.100.1",), True, "system")

    overlay = ZoneView.from_text("alias.example.com. CNAME real.example.net.\n")
    fallback = Fallback()
    answer = LayeredView(overlay, fallback).lookup("alias.example.com", "A")
    assert answer.records == ("198.51.100.1",) and answer.name == "alias.example.com"
    assert fallback.asked == [("real.example.net", "A")]


def test_dmarc_version_tag_is_case_sensitive():
    from lab.core.checks.dmarc import discover
    from lab.core.dnsview import ZoneView

    view = ZoneView.from_text('_dmarc.lower.test. TXT "v=dmarc1; p=reject"\n_dmarc.ok.test. TXT "v=DMARC1; p=reject"\n')
    assert discover(view, "lower.test").record is None
    assert discover(view, "ok.test").record.p == "reject"
