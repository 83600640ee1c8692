"""Tests for the DNS record inspector: SPF trees and limits, DMARC tags, DKIM keys, MX, recommendations, bounds."""

from __future__ import annotations

import time

import pytest
from support import FIXTURES, ZONES

from lab.core.dnsreport import (
    COMMON_SELECTORS,
    MAX_FOLLOWED,
    DomainReport,
    Recommendation,
    inspect_domain,
    inspect_selector,
    normalise_domain,
)
from lab.core.dnsview import Answer, LayeredView, ZoneView
from lab.core.results import Level
from lab.resolver import load_zones

KEY_1024 = (FIXTURES / "dkim/dkimpy/data/1024_testkey_wo_markers.pub.rsa.txt").read_text().strip().split("p=")[1]
KEY_2048 = ("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0MS8D9luTI0rpTESgjHYWAFpfZWuS7t/VAJ4FwZsr75YoPIT1yqNCorXqJl+"
            "VmcuJVYe1NuccoLRca0MyWCv7xdo+GxmhxLcGCRuuXjWPgl7n2TirOOz6Y08a+Qj8aIK7wBiQIM+oBHSRQxG4ZOjzTCd5H32jvZXeOc3"
            "83HIVJ3ZHkWAODu8SfWBRkL/E/8uxCcVhetQ/m0UYOdNiEsfeBj1V2As676YeOllbsRbj/ruu2TMev4QX9Pem7x3i7sel6KnrC52NIrC"
            "lOCzdQcTlCvItWJl1ymx0yf4sZv8jq76Ztq08tgaAEoSCy+hIgR69sN5J6d3mysJl9wMTZsnMQIDAQAB")
KEY_ED = "EbEjofUZnUm/t0MVrQrp6EufIlmoMp2LdOKa+72mEdQ="
KEY_512 = ("MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALcUZ+swxCfu1PQH9MhC89ejwBq5Ch8IA3aouaEUJSxCd3lWMu5f0rgwTP3XHQ0JyGqlO/"
           "aMpYyE32xHAltyBqUCAwEAAQ==")

# a domain with nothing to fix: the baseline every "fires" test changes one thing in
GOOD = """
$ORIGIN good.test.
@              TXT "v=spf1 ip4:192.0.2.0/24 -all"
@              MX  10 mx1
mx1            A   192.0.2.25
_dmarc         TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"
k2048._domainkey TXT {KEY_2048}
"""


def txt(value: str) -> str:
    """A TXT value as master-file text: quoted strings of at most 200 characters (the limit is 255)."""
    return " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))


def spf_zone(record: str) -> str:
    """GOOD with its SPF record replaced (long records are split into several strings, as DNS does)."""
    return GOOD.replace('"v=spf1 ip4:192.0.2.0/24 -all"', txt(record))


def zone(text: str, timeouts: tuple[str, ...] = ()) -> LayeredView:
    view = ZoneView.from_text(text.replace("{KEY_2048}", txt(f"v=DKIM1; k=rsa; p={KEY_2048}")))
    if timeouts:
        view = ZoneView.merge([view, ZoneView(timeouts=timeouts)])
    return LayeredView(view)


def inspect(text: str, domain: str = "good.test", selectors=("k2048",), **kw) -> DomainReport:
    return inspect_domain(domain, zone(text), selectors, **kw)


def good_with(*lines: str, drop: str | None = None) -> str:
    """GOOD with one line replaced (the line starting with `drop`) and `lines` added."""
    kept = [ln for ln in GOOD.splitlines() if not (drop and ln.startswith(drop))]
    return "\n".join([*kept, *lines]) + "\n"


def recs(report: DomainReport, section: str | None = None, level: Level | None = None) -> list[Recommendation]:
    return [r for r in report.recommendations
            if (section is None or r.section == section) and (level is None or r.level is level)]


def problems(report: DomainReport, section: str) -> str:
    return " | ".join(r.problem for r in recs(report, section))


class CountingView:
    """A real DnsView over zone data that counts the questions it is asked (for the bound tests)."""

    def __init__(self, view):
        self.view = view
        self.asked = 0

    def lookup(self, name: str, rtype: str) -> Answer:
        self.asked += 1
        return self.view.lookup(name, rtype)


# the whole report ------------------------------------------------------------------------------------

def test_good_domain_needs_nothing():
    report = inspect(GOOD)
    assert report.needs_fixing is False and report.level is Level.PASS
    assert [r for r in report.recommendations if r.level is not Level.INFO] == []
    assert report.spf.status == "ok" and report.spf.ends_with == "-all" and report.spf.lookups == 0
    assert report.dmarc.status == "ok" and report.dmarc.policy == "reject"
    assert [(k.selector, k.status, k.key_type, k.bits) for k in report.dkim.keys] == [("k2048", "ok", "rsa", 2048)]
    assert [(h.preference, h.host, h.addresses) for h in report.mx.hosts] == [(10, "mx1.good.test", ["192.0.2.25"])]


def test_fixture_example_com_is_clean_with_its_keys():
    report = inspect_domain("example.com", LayeredView(load_zones(ZONES)), ["rsa2048", "ed"])
    assert not report.needs_fixing
    assert {k.selector: (k.key_type, k.bits) for k in report.dkim.keys} == {"rsa2048": ("rsa", 2048),
                                                                             "ed": ("ed25519", 256)}


@pytest.mark.parametrize(("given", "expected"), [
    ("Good.TEST.", "good.test"),
    ("  good.test ", "good.test"),
    ("bücher.example", "xn--bcher-kva.example"),
])
def test_domain_is_normalised(given, expected):
    assert normalise_domain(given) == expected


@pytest.mark.parametrize("bad", ["", "a..b", "x" * 64 + ".test", "bad domain.test", "evil\x1b[31m.test", "a/b.test"])
def test_not_a_domain_is_a_value_error(bad):
    with pytest.raises(ValueError, match="not a domain name"):
        inspect_domain(bad, zone(GOOD))


def test_recommendations_are_sorted_worst_first():
    report = inspect(good_with('@ TXT "v=spf1 ip4:192.0.2.0/24 ~all"', drop="@              TXT"),
                     selectors=("k2048", "missing"))
    levels = [r.level for r in report.recommendations]
    assert levels[0] is Level.FAIL and levels[-1] is Level.INFO
    assert levels == sorted(levels, key=lambda lv: {Level.FAIL: 0, Level.WARN: 1}.get(lv, 2))


# SPF -------------------------------------------------------------------------------------------------

TREE = """
$ORIGIN tree.test.
@        TXT "v=spf1 a mx include:_spf.provider.test ip4:198.51.100.7 -all"
@        A   192.0.2.1
@        MX  10 mail
mail     A   192.0.2.2
_spf.provider.test. TXT "v=spf1 ip4:203.0.113.0/24 include:_spf2.provider.test ~all"
_spf2.provider.test. TXT "v=spf1 ip6:2001:db8:1::/48 a:relay.provider.test -all"
relay.provider.test. A 203.0.113.99
"""


def test_spf_include_tree_is_expanded_and_counted():
    report = inspect(TREE, "tree.test", ())
    spf = report.spf
    assert spf.status == "ok" and spf.record.startswith("v=spf1 a mx")
    assert spf.lookups == 5  # a, mx, include, nested include, nested a
    assert spf.void_lookups == 0 and spf.complete
    terms = {t.text: t for t in spf.tree.terms}
    assert terms["a"].addresses == ["192.0.2.1"] and "the addresses of tree.test" in terms["a"].meaning
    assert terms["mx"].addresses == ["mail.tree.test"]
    include = terms["include:_spf.provider.test"]
    assert include.lookups == 3  # itself, its include, and the a: inside that
    child = include.child
    assert child.domain == "_spf.provider.test" and child.records == [
        "v=spf1 ip4:203.0.113.0/24 include:_spf2.provider.test ~all"]
    grandchild = {t.text: t for t in child.terms}["include:_spf2.provider.test"].child
    assert {t.text: t.addresses for t in grandchild.terms}["a:relay.provider.test"] == ["203.0.113.99"]
    assert "hosts in 203.0.113.0/24 (256 addresses) → pass" in {t.text: t.meaning for t in child.terms}[
        "ip4:203.0.113.0/24"]
    assert terms["ip4:198.51.100.7"].meaning == "host 198.51.100.7 → pass"
    assert terms["-all"].meaning.startswith("every other host → fail")
    assert recs(report, "spf") == []


def test_spf_more_than_ten_lookups_is_permerror_with_a_flatten_fix():
    includes = " ".join(f"include:i{n}.test" for n in range(1, 11))
    text = spf_zone(f"v=spf1 {includes} include:big.test -all")
    text += "".join(f'i{n}.test. TXT "v=spf1 ip4:192.0.2.{n} -all"\n' for n in range(1, 11))
    text += 'big.test. TXT "v=spf1 include:leaf.test -all"\nleaf.test. TXT "v=spf1 ip4:198.51.100.0/24 -all"\n'
    report = inspect(text)
    assert report.spf.status == "permerror" and report.spf.lookups == 12
    (rec,) = [r for r in recs(report, "spf", Level.FAIL) if "lookups of 10" in r.problem]
    assert rec.problem.startswith("SPF uses 12 lookups of 10")
    assert "flatten `include:big.test` (2 lookups): replace it with `ip4:198.51.100.0/24`" in rec.fix.lower()
    assert rec.ref == "RFC 7208 §4.6.4"
    assert report.needs_fixing


def test_spf_ten_lookups_is_allowed_but_flagged():
    includes = " ".join(f"include:i{n}.test" for n in range(1, 11))
    text = spf_zone(f"v=spf1 {includes} -all")
    text += "".join(f'i{n}.test. TXT "v=spf1 ip4:192.0.2.{n} -all"\n' for n in range(1, 11))
    report = inspect(text)
    assert report.spf.status == "ok" and report.spf.lookups == 10
    assert not recs(report, "spf", Level.FAIL)
    assert [r.problem for r in recs(report, "spf", Level.INFO)] == [
        "SPF uses 10 lookups of 10: one more include will break it"]


def test_fixture_lookups_test_is_permerror():
    report = inspect_domain("lookups.test", LayeredView(load_zones(ZONES)))
    assert report.spf.status == "permerror" and report.spf.lookups == 11


@pytest.mark.parametrize(("mechanisms", "void", "level"), [
    ("a:gone1.test a:gone2.test mx:gone3.test", 3, Level.FAIL),
    ("a:gone1.test", 1, Level.WARN),
    ("a:present.test", 0, None),
])
def test_spf_void_lookups(mechanisms, void, level):
    text = spf_zone(f"v=spf1 {mechanisms} -all") + \
        "present.test. A 192.0.2.44\n"
    report = inspect(text)
    assert report.spf.void_lookups == void
    void_recs = [r for r in recs(report, "spf") if "void lookup" in r.problem]
    if level is None:
        assert void_recs == [] and report.spf.status == "ok"
    else:
        assert {r.level for r in void_recs} == {level}
        assert report.spf.status == ("permerror" if level is Level.FAIL else "ok")
    if level is Level.FAIL:
        assert "3 void lookups" in void_recs[0].problem and "`a:gone1.test`" in void_recs[0].fix


def test_two_spf_records_are_permerror():
    report = inspect(good_with('@ TXT "v=spf1 -all"'))
    assert report.spf.status == "permerror"
    (rec,) = recs(report, "spf", Level.FAIL)
    assert "publishes 2 SPF records" in rec.problem and rec.ref == "RFC 7208 §4.5"


def test_no_spf_record_is_a_failure_and_says_what_to_publish():
    report = inspect(good_with(drop="@              TXT"))
    assert report.spf.status == "none"
    (rec,) = recs(report, "spf")
    assert rec.level is Level.FAIL and 'good.test. TXT "v=spf1' in rec.fix


def test_spf_lookalike_record_is_named():
    report = inspect(good_with('@ TXT "v=spf2 ip4:192.0.2.1 -all"', drop="@              TXT"))
    (rec,) = recs(report, "spf")
    assert "'v=spf2 ip4:192.0.2.1 -all' looks like one" in rec.problem


@pytest.mark.parametrize(("ending", "level", "words"), [
    ("+all", Level.FAIL, "ends in +all"),
    ("?all", Level.WARN, "ends in ?all"),
    ("~all", Level.INFO, "ends in ~all"),
    ("", Level.WARN, "has no all mechanism"),
    ("-all", None, None),
])
def test_spf_endings(ending, level, words):
    report = inspect(spf_zone(f"v=spf1 ip4:192.0.2.0/24 {ending}".rstrip()))
    found = [r for r in recs(report, "spf") if "all" in r.problem]
    if level is None:
        assert found == []
    else:
        assert [(r.level, words in r.problem) for r in found] == [(level, True)]


def test_include_of_a_plus_all_record_passes_everyone():
    report = inspect(spf_zone("v=spf1 include:open.test -all") + 'open.test. TXT "v=spf1 +all"\n')
    (rec,) = recs(report, "spf", Level.FAIL)
    assert "ends in +all" in rec.problem and "`include:open.test`" in rec.problem


def test_ptr_is_deprecated():
    report = inspect(spf_zone("v=spf1 ptr -all"))
    (rec,) = recs(report, "spf", Level.WARN)
    assert "ptr mechanism" in rec.problem and rec.ref == "RFC 7208 §5.5"
    assert report.spf.lookups == 1  # ptr counts, though it cannot be resolved without a client IP


@pytest.mark.parametrize(("term", "why"), [
    ("fancy:thing", "unknown mechanism 'fancy'"),
    ("include:192.0.2.1", "an IP address is not a domain"),
    ("ip4:192.0.2.300", "is not an IPv4 network"),
    ("ip4:192.0.2.0/33", "is not an IPv4 network"),
    ("ip6:192.0.2.1", "is not an IPv6 network"),
    ("a/33", "bad IPv4 prefix length"),
    ("mx//129", "bad IPv6 prefix length"),
    ("include", "include needs a domain"),
    ("all:x", "all takes no argument"),
    ("exists:%{z}.test", "unknown macro"),
    ("include:%{i.test", "unclosed macro"),
    ("ip:192.0.2.1", "did you mean ip4:"),
])
def test_spf_syntax_errors_are_permerror(term, why):
    report = inspect(spf_zone(f"v=spf1 ip4:192.0.2.0/24 {term} -all"))
    assert report.spf.status == "permerror"
    (rec,) = recs(report, "spf", Level.FAIL)
    assert f"`{term}`" in rec.problem and why in rec.problem and rec.ref == "RFC 7208 §4.6.1"


@pytest.mark.parametrize("term", [
    "a/24", "a:good.test/24//64", "mx//64", "ip6:2001:db8::/32", "ip4:192.0.2.1", "exists:%{i}._spf.good.test",
    "include:%{l1r-}.good.test", "?include:good-two.test", "unknown-modifier=whatever", "exp=explain.%{d}",
])
def test_spf_valid_terms_parse(term):
    text = spf_zone(f"v=spf1 ip4:192.0.2.0/24 {term} -all")
    text += 'good-two.test. TXT "v=spf1 -all"\n'
    report = inspect(text)
    assert not [r for r in recs(report, "spf") if "syntax" in r.problem]
    assert report.spf.status == "ok", recs(report, "spf")


def test_spf_macro_names_are_counted_not_looked_up():
    view = CountingView(zone(spf_zone("v=spf1 exists:%{i}._spf.good.test -all")))
    report = inspect_domain("good.test", view, (), common_selectors=())
    (term,) = [t for t in report.spf.tree.terms if t.name == "exists"]
    assert term.lookups == 1 and "macros" in term.note and report.spf.lookups == 1
    assert report.spf.void_lookups == 0


def test_two_redirects_are_a_syntax_error():
    report = inspect(spf_zone("v=spf1 redirect=a.test redirect=b.test"))
    assert report.spf.status == "permerror"
    assert any("more than one redirect=" in r.problem for r in recs(report, "spf", Level.FAIL))


def test_mechanisms_after_all_are_never_evaluated():
    report = inspect(spf_zone("v=spf1 ip4:192.0.2.0/24 -all include:late.test"))
    (late,) = [t for t in report.spf.tree.terms if t.text == "include:late.test"]
    assert late.child is None and late.lookups == 0 and report.spf.lookups == 0
    (rec,) = recs(report, "spf", Level.WARN)
    assert "comes after `-all`" in rec.problem


def test_redirect_is_followed_and_decides_the_ending():
    text = spf_zone("v=spf1 redirect=_spf.good.test")
    text += '_spf.good.test. TXT "v=spf1 ip4:192.0.2.0/24 ~all"\n'
    report = inspect(text)
    assert report.spf.lookups == 1 and report.spf.ends_with == "~all"
    (redirect,) = report.spf.tree.terms
    assert redirect.child.domain == "_spf.good.test" and "decides instead" in redirect.meaning


def test_redirect_beside_all_is_ignored():
    report = inspect(spf_zone("v=spf1 ip4:192.0.2.0/24 redirect=x.test -all"))
    assert report.spf.lookups == 0
    assert [r.problem for r in recs(report, "spf", Level.INFO)] == [
        "redirect= in the SPF record of good.test is ignored because the record also has `-all`"]


@pytest.mark.parametrize(("record", "extra"), [
    ("include:missing.test -all", ""),
    ("redirect=missing.test", ""),
    ("include:two.test -all", 'two.test. TXT "v=spf1 -all"\ntwo.test. TXT "v=spf1 ~all"\n'),
])
def test_include_or_redirect_without_one_record_is_permerror(record, extra):
    report = inspect(spf_zone("v=spf1 " + record) + extra)
    assert report.spf.status == "permerror"
    assert recs(report, "spf", Level.FAIL)


def test_mx_mechanism_with_more_than_ten_hosts_is_permerror():
    hosts = "".join(f"many.test. MX {n} h{n}.many.test.\n" for n in range(11))
    report = inspect(spf_zone("v=spf1 mx:many.test -all") + hosts)
    assert report.spf.status == "permerror"
    assert any("look up 11 MX hosts" in r.problem for r in recs(report, "spf", Level.FAIL))
    ten = "".join(f"ten.test. MX {n} h{n}.ten.test.\n" for n in range(10))
    report = inspect(spf_zone("v=spf1 mx:ten.test -all") + ten)
    assert report.spf.status == "ok"


@pytest.mark.parametrize(("term", "level"), [("ip4:0.0.0.0/0", Level.FAIL), ("ip4:10.0.0.0/7", Level.WARN),
                                             ("ip4:10.0.0.0/8", None)])
def test_huge_ranges_are_flagged(term, level):
    report = inspect(spf_zone(f"v=spf1 {term} -all"))
    found = [r.level for r in recs(report, "spf") if "range" in r.problem or "every IPv4" in r.problem]
    assert found == ([] if level is None else [level])


def test_spf_loop_is_reported_and_ends():
    text = spf_zone("v=spf1 include:a.test -all")
    text += 'a.test. TXT "v=spf1 include:b.test -all"\nb.test. TXT "v=spf1 include:a.test -all"\n'
    report = inspect(text)
    assert report.spf.status == "permerror"
    (rec,) = [r for r in recs(report, "spf", Level.FAIL) if "loop" in r.problem]
    assert "`include:a.test` in b.test leads back to a.test" in rec.problem


def test_self_include_is_a_loop():
    report = inspect(spf_zone("v=spf1 include:good.test -all"))
    assert any("SPF loop" in r.problem for r in recs(report, "spf", Level.FAIL))


def test_deep_include_chain_stops_at_the_depth_bound():
    text = spf_zone("v=spf1 include:d0.test -all")
    text += "".join(f'd{n}.test. TXT "v=spf1 include:d{n + 1}.test -all"\n' for n in range(40))
    report = inspect(text)
    assert report.spf.complete is False
    assert report.spf.status == "permerror"  # 11+ lookups all the same
    depth, node = 0, report.spf.tree
    while node.terms and node.terms[0].child is not None:
        node, depth = node.terms[0].child, depth + 1
    assert depth == 11  # root + 10 levels of include


def test_hostile_fan_out_is_bounded():
    # 30 includes, each with 30 includes of a name that has 30 a: mechanisms: 27,000 lookups if followed naively
    fan = " ".join(f"include:f{n}.test" for n in range(30))
    text = spf_zone(f"v=spf1 {fan} -all")
    inner = " ".join(f"include:g{n}.test" for n in range(30))
    text += "".join(f"f{n}.test. TXT {txt(f'v=spf1 {inner} -all')}\n" for n in range(30))
    many_a = " ".join(f"a:x{m}.test" for m in range(30))
    text += "".join(f"g{n}.test. TXT {txt(f'v=spf1 {many_a} -all')}\n" for n in range(30))
    view = CountingView(zone(text))
    started = time.monotonic()
    report = inspect_domain("good.test", view, (), common_selectors=())
    assert time.monotonic() - started < 2
    assert report.spf.complete is False and report.spf.status == "permerror"
    assert view.asked <= 2 * MAX_FOLLOWED + 20  # SPF at most two queries per followed term; DMARC and MX a few


def test_record_with_thousands_of_terms_is_cut():
    terms = " ".join(f"ip4:10.{n // 250}.{n % 250}.1" for n in range(3000))
    report = inspect(spf_zone(f"v=spf1 {terms} -all"))
    assert len(report.spf.tree.terms) == 100 and report.spf.tree.more_terms == 2901
    assert report.spf.complete is False  # what was not read was not counted
    assert inspect(GOOD).spf.complete is True


def test_ptr_after_all_is_only_reported_as_unreachable():
    report = inspect(spf_zone("v=spf1 ip4:192.0.2.0/24 -all ptr"))
    assert [r.problem for r in recs(report, "spf")] == [
        "`ptr` in the SPF record of good.test comes after `-all`, so receivers never evaluate it"]


def test_spf_temperror_is_reported_not_raised():
    report = inspect_domain("good.test", zone(GOOD, timeouts=("good.test",)), ())
    assert report.spf.status == "temperror" and "timed out" in report.spf.error
    (rec,) = recs(report, "spf")
    assert rec.level is Level.WARN and "could not be fetched" in rec.problem
    assert report.mx.status == "temperror"


def test_temperror_inside_the_tree_is_reported():
    text = spf_zone("v=spf1 include:slow.test -all")
    report = inspect_domain("good.test", zone(text, timeouts=("slow.test",)), ())
    assert report.spf.status == "temperror"
    assert any("Part of the SPF tree" in r.problem for r in recs(report, "spf", Level.WARN))


# DMARC -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tag", "words"), [
    ("p=reject", "this domain: mail that fails DMARC is refused"),
    ("sp=quarantine", "subdomains: mail that fails DMARC goes to the spam folder"),
    ("np=reject", "subdomains that do not exist (RFC 9091): mail that fails DMARC is refused"),
    ("pct=50", "applies to 50% of failing mail"),
    ("adkim=s", "strict: the DKIM d= domain must equal the From domain"),
    ("aspf=r", "relaxed: the MAIL FROM (return-path) domain may be any name under good.test"),
    ("rua=mailto:dmarc@good.test", "aggregate (daily) reports go to mailto:dmarc@good.test"),
    ("ruf=mailto:forensic@good.test", "failure (per-message) reports go to"),
    ("fo=1", "when any mechanism fails to align"),
    ("fo=d:s", "a DKIM signature fails or SPF fails"),
    ("ri=3600", "every 1 hours"),
    ("rf=afrf", "failure report format"),
    ("zz=top", "not a DMARC tag"),
])
def test_each_dmarc_tag_is_explained(tag, words):
    text = GOOD.replace("p=reject; rua=mailto:dmarc@good.test", f"p=reject; rua=mailto:dmarc@good.test; {tag}")
    if tag.startswith(("p=", "rua=")):
        text = GOOD
    report = inspect(text)
    name, _, value = tag.partition("=")
    (found,) = [t for t in report.dmarc.tags if t.tag == name]
    assert found.value == value and words in found.meaning


def test_missing_dmarc_is_a_failure_with_the_record_to_publish():
    report = inspect(good_with(drop="_dmarc"))
    assert report.dmarc.status == "none"
    (rec,) = recs(report, "dmarc")
    assert rec.level is Level.FAIL
    assert '`_dmarc.good.test. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@good.test"`' in rec.fix


def test_subdomain_falls_back_to_the_organisational_record():
    report = inspect_domain("news.example.com", LayeredView(load_zones(ZONES)), ())
    dmarc = report.dmarc
    assert dmarc.at_org and dmarc.location == "_dmarc.example.com" and dmarc.org_domain == "example.com"
    assert (dmarc.policy, dmarc.policy_source) == ("quarantine", "sp")
    assert not recs(report, "dmarc", Level.FAIL)


def test_np_applies_to_a_subdomain_that_does_not_exist():
    report = inspect_domain("gone.npdomain.test", LayeredView(load_zones(ZONES)), ())
    assert report.dmarc.policy == "reject" and report.dmarc.policy_source.startswith("np")


@pytest.mark.parametrize(("record", "status", "words"), [
    ('_dmarc TXT "v=DMARC1; p=none"\n_dmarc TXT "v=DMARC1; p=reject"', "multiple", "more than one DMARC record"),
    ('_dmarc TXT "v=DMARC1; p=bogus"', "invalid", "is invalid"),
    ('_dmarc TXT "v=dmarc1 p=reject"', "invalid", "looks like DMARC"),
])
def test_broken_dmarc_records_fail(record, status, words):
    report = inspect(good_with(record, drop="_dmarc"))
    assert report.dmarc.status == status
    assert any(words in r.problem for r in recs(report, "dmarc", Level.FAIL))


@pytest.mark.parametrize(("record", "level", "words"), [
    ("v=DMARC1; p=none; rua=mailto:d@good.test", Level.INFO, "monitoring only"),
    ("v=DMARC1; p=reject", Level.WARN, "no usable rua="),
    ("v=DMARC1; p=reject; pct=20; rua=mailto:d@good.test", Level.INFO, "applies to 20% of failing mail"),
    ("v=DMARC1; p=reject; rua=https://good.test/r", Level.WARN, "only mailto: addresses"),
    ("v=DMARC1; p=reject; adkim=x; rua=mailto:d@good.test", Level.WARN, "adkim='x' must be r or s"),
])
def test_dmarc_advice(record, level, words):
    report = inspect(good_with(f'_dmarc TXT "{record}"', drop="_dmarc"))
    assert any(words in r.problem for r in recs(report, "dmarc", level)), recs(report, "dmarc")
    clean = inspect(GOOD)
    assert not any(words in r.problem for r in recs(clean, "dmarc"))


def test_external_rua_needs_authorisation():
    record = '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test,mailto:x@reports.example.net!10m"'
    report = inspect(good_with(record, drop="_dmarc"))
    internal, external = report.dmarc.rua
    assert not internal.external and internal.authorised is None
    assert external.external and external.domain == "reports.example.net" and external.authorised is False
    (rec,) = [r for r in recs(report, "dmarc", Level.WARN) if "not authorised" in r.problem]
    assert '`good.test._report._dmarc.reports.example.net. TXT "v=DMARC1"`' in rec.fix
    authorised = inspect(good_with(record, 'good.test._report._dmarc.reports.example.net. TXT "v=DMARC1"',
                                   drop="_dmarc"))
    assert authorised.dmarc.rua[1].authorised is True
    assert not [r for r in recs(authorised, "dmarc") if "not authorised" in r.problem]


def test_dmarc_temperror_is_reported_not_raised():
    report = inspect_domain("good.test", zone(GOOD, timeouts=("_dmarc.good.test",)), ("k2048",))
    assert report.dmarc.status == "temperror"
    (rec,) = recs(report, "dmarc")
    assert rec.level is Level.WARN and "could not be fetched" in rec.problem
    assert report.spf.status == "ok"  # the other sections are unaffected


# DKIM ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("record", "status", "key_type", "bits", "level", "words"), [
    (f"v=DKIM1; k=rsa; p={KEY_2048}", "ok", "rsa", 2048, None, None),
    (f"v=DKIM1; k=rsa; p={KEY_1024}", "ok", "rsa", 1024, Level.INFO, "2048 is recommended"),
    (f"v=DKIM1; k=ed25519; p={KEY_ED}", "ok", "ed25519", 256, Level.INFO, "only ed25519"),
    (f"v=DKIM1; k=rsa; p={KEY_512}", "weak", "rsa", 512, Level.FAIL, "receivers ignore keys under 1024"),
    ("v=DKIM1; k=rsa; p=", "revoked", "rsa", None, Level.FAIL, "revoked"),
    ("v=DKIM1; k=rsa; p=AAAA", "malformed", "rsa", None, Level.FAIL, "not hold a valid public key"),
    ("v=DKIM1; k=rsa", "malformed", "rsa", None, Level.FAIL, "no p= tag"),
    (f"v=DKIM1; k=rsa; h=sha1; p={KEY_2048}", "unusable", "rsa", 2048, Level.FAIL, "rsa-sha1"),
    (f"v=DKIM1; k=rsa; s=other; p={KEY_2048}", "unusable", "rsa", None, Level.FAIL, "not for email"),
    (f"v=DKIM1; k=rsa; t=y; p={KEY_2048}", "ok", "rsa", 2048, Level.WARN, "testing mode"),
    ("v=DKIM1; k=rsa; k=ed25519; p=x", "malformed", None, None, Level.FAIL, "not tag=value"),
])
def test_dkim_keys(record, status, key_type, bits, level, words):
    report = inspect(good_with(f"sel._domainkey TXT {txt(record)}", drop="k2048"), selectors=("sel",))
    (key,) = report.dkim.keys
    assert (key.name, key.status, key.key_type, key.bits) == ("sel._domainkey.good.test", status, key_type, bits)
    found = recs(report, "dkim")
    if level is None:
        assert found == []
    else:
        assert any(r.level is level and words in (r.problem + " ".join(key.problems)) for r in found), found


def test_dkim_key_flags_and_tags_are_explained():
    key = inspect_selector("good.test", "sel", zone(good_with(
        "sel._domainkey TXT " + txt(f"v=DKIM1; k=rsa; t=y:s; h=sha256; n=hello; p={KEY_2048}"))))
    assert key.testing and key.strict and key.hashes == ["sha256"]
    assert {t.tag: t.meaning for t in key.tags}["h"] == "hash algorithms the key may be used with"


def test_missing_named_selector_fails_and_missing_common_ones_are_listed():
    report = inspect(GOOD, selectors=("k2048", "gone"))
    assert [(k.selector, k.status) for k in report.dkim.keys] == [("k2048", "ok"), ("gone", "missing")]
    assert report.dkim.tried == list(COMMON_SELECTORS)
    (rec,) = recs(report, "dkim")
    assert rec.level is Level.FAIL and "No DKIM key at gone._domainkey.good.test" in rec.problem
    assert "DNS cannot list DKIM selectors" in report.dkim.note


def test_common_selectors_are_found_and_judged_gently():
    text = good_with(f'default._domainkey TXT "v=DKIM1; k=rsa; p={KEY_512}"', 's1._domainkey TXT "v=DKIM1; p="')
    report = inspect(text, selectors=())
    keys = {k.selector: (k.source, k.status) for k in report.dkim.keys}
    assert keys == {"default": ("common", "weak"), "s1": ("common", "revoked")}
    levels = {r.problem.split(" is ")[0]: r.level for r in recs(report, "dkim")}
    assert levels == {"The key at default._domainkey.good.test": Level.WARN,
                      "The key at s1._domainkey.good.test": Level.INFO}


def test_no_key_anywhere_suggests_naming_the_selector():
    report = inspect(good_with(drop="k2048"), selectors=())
    (rec,) = recs(report, "dkim")
    assert rec.level is Level.INFO and "--selector" in rec.fix


def test_two_key_records_at_one_selector():
    text = good_with(f'sel._domainkey TXT "v=DKIM1; p={KEY_ED}; k=ed25519"',
                     "sel._domainkey TXT " + txt(f"v=DKIM1; k=rsa; p={KEY_2048}"))
    key = inspect_selector("good.test", "sel", zone(text))
    assert key.status == "multiple"


@pytest.mark.parametrize("selector", ["bad selector", "evil\x1b]52;c;aGk=\x07", "a..b", "x" * 300])
def test_selectors_that_are_not_names_are_not_asked(selector):
    view = CountingView(zone(GOOD))
    key = inspect_selector("good.test", selector, view)
    assert key.status == "bad-selector" and view.asked == 0


def test_selectors_are_deduplicated_and_capped():
    report = inspect(GOOD, selectors=["K2048", "k2048", *[f"s{n}x" for n in range(50)]], common_selectors=())
    assert len(report.dkim.keys) == 20 and report.dkim.keys[0].selector == "k2048"


def test_dkim_temperror():
    report = inspect_domain("good.test", zone(GOOD, timeouts=("k2048._domainkey.good.test",)), ("k2048",))
    (key,) = report.dkim.keys
    assert key.status == "temperror"
    assert [r.level for r in recs(report, "dkim")] == [Level.WARN]


# MX --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mx_lines", "status", "level", "words"), [
    ("@ MX 0 .", "null", Level.WARN, "null MX"),
    ("@ MX 0 .\n@ MX 10 mx1", "null", Level.WARN, "mixes a null MX"),
    ("@ A 192.0.2.9", "none", Level.INFO, "goes to its address (192.0.2.9)"),
    ("", "none", Level.WARN, "neither MX nor address"),
    ("@ MX 10 nowhere", "ok", Level.WARN, "has no address"),
    ("@ MX 10 192.0.2.7.", "ok", Level.WARN, "is an IP address"),
    ("@ MX 10 mx1\n@ MX 20 mx2\nmx2 AAAA 2001:db8::25", "ok", None, None),
])
def test_mx(mx_lines, status, level, words):
    report = inspect(good_with(*mx_lines.splitlines(), drop="@              MX"))
    assert report.mx.status == status
    found = recs(report, "mx")
    if level is None:
        assert found == [] and [h.addresses for h in report.mx.hosts] == [["192.0.2.25"], ["2001:db8::25"]]
    else:
        assert any(r.level is level and words in r.problem for r in found), found


def test_domain_that_does_not_exist():
    report = inspect_domain("nowhere.test", zone(GOOD), ())
    assert report.mx.status == "nxdomain"
    assert any("does not exist" in r.problem for r in recs(report, "mx", Level.FAIL))
    assert report.needs_fixing


def test_many_mx_hosts_are_bounded():
    hosts = "".join(f"@ MX {n} h{n}\n" for n in range(30))
    view = CountingView(zone(good_with(*hosts.splitlines(), drop="@              MX")))
    report = inspect_domain("good.test", view, (), common_selectors=())
    assert len(report.mx.hosts) == 30
    assert sum(1 for h in report.mx.hosts if h.problem and "not looked up" in h.problem) == 20
    assert view.asked < 40


# hostile data stays data -----------------------------------------------------------------------------

def test_escape_sequences_in_records_are_kept_as_data():
    text = spf_zone(r'v=spf1 ip4:192.0.2.0/24 \027[31mred -all')
    report = inspect(text)
    assert "\x1b[31mred" in report.spf.record  # the core keeps it; the renderer escapes it
    assert report.spf.status == "permerror"
    assert any("\x1b[31mred" in r.problem for r in recs(report, "spf", Level.FAIL))


def test_inspector_never_raises_when_nothing_answers():
    names = ("good.test", "_dmarc.good.test", "k2048._domainkey.good.test")
    report = inspect_domain("good.test", zone(GOOD, timeouts=names), ("k2048",), common_selectors=())
    assert (report.spf.status, report.dmarc.status, report.mx.status) == ("temperror",) * 3
    assert report.dkim.keys[0].status == "temperror"
    assert {r.level for r in report.recommendations} == {Level.WARN}
    assert not report.needs_fixing  # nothing is known to be wrong, so nothing is reported as blocking delivery
