"""DMARC conformance: the PSL's own tests, OpenDMARC's vectors and a table of RFC 7489 / RFC 9091 scenarios.

Data comes from /work/shared/data/dmarc when present, else from the copies in fixtures/dmarc (same layout,
licences alongside). Rows where the lab deliberately differs from a source are listed in a KNOWN dict with
the reason; those rows assert that the lab still differs, so a stale entry fails instead of hiding a change.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from publicsuffixlist import PublicSuffixList
from support import BAD_IP, GOOD_IP, capture, key, message, sign

from lab.core.analyse import analyse
from lab.core.checks.dmarc import aligned, org_domain, parse_record
from lab.core.dnsview import ZoneView
from lab.core.results import CheckResult, Level, Verdict

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (ROOT.parent / "shared" / "data" / "dmarc", ROOT / "fixtures" / "dmarc")
PSL_TESTS = "publicsuffix-list/tests/tests.txt"
PSL_DAT = "publicsuffix-list/public_suffix_list.dat"
VECTORS = "opendmarc/vectors.yaml"


def data_file(relative: str) -> Path | None:
    """The shared copy if there is one, else the fixtures copy, else None."""
    return next((base / relative for base in SOURCES if (base / relative).is_file()), None)


def missing(relative: str, width: int) -> list:
    """One skipped row that says which file is missing and where it was looked for."""
    reason = f"DMARC data {relative} is in neither {SOURCES[0]} nor {SOURCES[1]}"
    return [pytest.param(*[None] * width, marks=pytest.mark.skip(reason=reason), id="missing-data")]


# --- 1. publicsuffix/list tests/tests.txt ------------------------------------------------------------------
#
# Each line is `domain registrable-domain-or-null`. `null` means the PSL has no registrable domain: the name
# is a public suffix (or is invalid, e.g. a leading dot). RFC 7489 §3.2 builds the organisational domain from
# the longest matching suffix plus the "x+1"th label, which a suffix does not have; the lab then takes the
# name itself (so policy discovery queries _dmarc.<name> once and does not fall back, as RFC 9091 expects for
# a public suffix domain). A null therefore expects org_domain() to return the lowercased name, and the name
# one label below to be an organisation of its own, so a public suffix never aligns (relaxed) with it.
# The `null null` row is a JavaScript null input; the nearest Python input is the empty string.


def psl_cases() -> list:
    path = data_file(PSL_TESTS)
    if path is None:
        return missing(PSL_TESTS, 2)
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("//"):  # upstream disables the .local rows by commenting them out
            continue
        domain, expected = line.split()
        cases.append(pytest.param(domain, expected, id=f"L{n}:{domain}"))
    return cases


@cache
def snapshot_psl() -> PublicSuffixList:
    path = data_file(PSL_DAT)
    if path is None:
        pytest.skip(f"{PSL_DAT} is in neither {SOURCES[0]} nor {SOURCES[1]}")
    with path.open("rb") as f:
        return PublicSuffixList(source=f)


@pytest.mark.parametrize("which", ["snapshot", "bundled"])
@pytest.mark.parametrize(("domain", "expected"), psl_cases())
def test_psl_organisational_domain(which, domain, expected):
    psl = snapshot_psl() if which == "snapshot" else None
    name = "" if domain == "null" else domain
    if expected == "null":
        assert org_domain(name, psl) == name.lower()
        if name:
            assert org_domain("x." + name, psl) != org_domain(name, psl)
    else:
        assert org_domain(name, psl) == expected


# --- 2. OpenDMARC vectors (transcribed from its C tests) ------------------------------------------------------

# alignment rows: (domain, other, mode) -> why the lab's answer differs from OpenDMARC's
KNOWN_ALIGNMENT = {
    (".mac.com.", "mac.com", "strict"): "not a domain name (empty leading label); the lab strips only the root "
    "dot and strict alignment (RFC 7489 §3.1) compares names exactly; OpenDMARC strips any dots",
    ("....mac.com....", "mac.com", "strict"): "as above: empty labels make it no domain name, so it matches nothing",
}
# organizational_domain rows: domain -> reason (the vectors use OpenDMARC's 2012 effective_tld_names.dat)
KNOWN_ORG = {}  # every row still agrees with the current PSL: add `domain: "the current PSL differs"` if not
# record_parse rows: record -> reason
KNOWN_PARSE = {
    "v=DMARC1; p=n;": "OpenDMARC accepts prefix abbreviations; RFC 7489 §6.3 allows only none/quarantine/reject, "
    "so the lab treats p=n as invalid (and, with no rua, the record as unusable, §6.6.3)",
    "v=DMARC1; p=none; rf=bob;": "rf only shapes failure reports, which the lab does not send; RFC 7489 §6.3: "
    "errors outside v/p/sp are discarded in favour of defaults, so the record stays usable",
    "v=DMARC1; p=none; ri=bob;": "ri only sets the aggregate-report interval, which the lab does not use; "
    "RFC 7489 §6.3: the bad value gives way to the default and the record stays usable",
    "v=DMARC1; p=none; rf=000000000000000000000000000000000": "as rf=bob: an unknown report format is ignored",
}
SECTIONS = {"alignment", "organizational_domain", "record_parse"}


@cache
def vectors() -> dict:
    path = data_file(VECTORS)
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path else {}


def vector_cases(section: str, fields: tuple[str, ...]) -> list:
    if data_file(VECTORS) is None:
        return missing(VECTORS, len(fields))
    return [pytest.param(*(row[f] for f in fields), id=f"{section}{i}") for i, row in enumerate(vectors()[section])]


def test_vectors_have_no_section_left_unchecked():
    if data_file(VECTORS) is None:
        pytest.skip(f"{VECTORS} is in neither {SOURCES[0]} nor {SOURCES[1]}")
    assert set(vectors()) == SECTIONS


@pytest.mark.parametrize(("domain", "other", "mode", "expected"),
                         vector_cases("alignment", ("domain", "other", "mode", "aligned")))
def test_opendmarc_alignment(domain, other, mode, expected):
    got = aligned(domain, other, {"relaxed": "r", "strict": "s"}[mode])
    if (domain, other, mode) in KNOWN_ALIGNMENT:
        assert got is not expected, f"no longer differs, drop it from KNOWN_ALIGNMENT: {domain} {other} {mode}"
    else:
        assert got is expected


@pytest.mark.parametrize("which", ["bundled", "snapshot"])
@pytest.mark.parametrize(("domain", "expected"), vector_cases("organizational_domain", ("domain", "expected")))
def test_opendmarc_organizational_domain(which, domain, expected):
    got = org_domain(domain, snapshot_psl() if which == "snapshot" else None)
    if domain in KNOWN_ORG:
        assert got != expected, f"no longer differs, drop it from KNOWN_ORG: {domain}"
    else:
        assert got == expected


@pytest.mark.parametrize(("record", "status"), vector_cases("record_parse", ("record", "status")))
def test_opendmarc_record_parse(record, status):
    parsed = parse_record(record)
    accepted = parsed.usable and not parsed.problems  # OKAY: usable and nothing to correct
    assert status == "OKAY" or status.startswith("ERROR_")
    if record in KNOWN_PARSE:
        assert accepted is not (status == "OKAY"), f"no longer differs, drop it from KNOWN_PARSE: {record!r}"
    else:
        assert accepted is (status == "OKAY"), (status, parsed.problems)


# --- 3. RFC 7489 §3.1 / §6.6 and RFC 9091 scenarios through analyse() ------------------------------------------


def dkim_txt(keyfile: str) -> str:
    private = serialization.load_pem_private_key(key(keyfile), password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    return "( " + " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200)) + " )"


KEY = "example.com.rsa2048.pem"  # a fixture key, published below under selector k for each signing domain
SPF = '"v=spf1 ip4:192.0.2.0/24 -all"'


@cache
def zone() -> ZoneView:
    k = dkim_txt(KEY)
    text = f"""
$ORIGIN test.
$TTL 300
; relaxed.test: default (relaxed) alignment
relaxed                     TXT {SPF}
mail.relaxed                TXT {SPF}
_dmarc.relaxed              TXT "v=DMARC1; p=reject"
k._domainkey.relaxed        TXT {k}
k._domainkey.mail.relaxed   TXT {k}
; strict.test: adkim=s aspf=s
strict                      TXT {SPF}
mail.strict                 TXT {SPF}
_dmarc.strict               TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
k._domainkey.strict         TXT {k}
k._domainkey.mail.strict    TXT {k}
; other.test: a different organisation
other                       TXT {SPF}
k._domainkey.other          TXT {k}
; parent.test: sp for subdomains; own.parent.test has its own record
parent                      TXT {SPF}
_dmarc.parent               TXT "v=DMARC1; p=reject; sp=quarantine"
news.parent                 A   192.0.2.40
own.parent                  A   192.0.2.41
_dmarc.own.parent           TXT "v=DMARC1; p=none"
; fallback.test: no sp, so p applies to subdomains
_dmarc.fallback             TXT "v=DMARC1; p=quarantine"
b.fallback                  A   192.0.2.42
; np.test: RFC 9091 np for non-existent subdomains (NXDOMAIN or NODATA for A, AAAA and MX)
_dmarc.np                   TXT "v=DMARC1; p=none; sp=quarantine; np=reject"
a.np                        A   192.0.2.43
v6.np                       AAAA 2001:db8::43
mx.np                       MX  10 mail.relaxed.test.
txtonly.np                  TXT "v=spf1 -all"
; pct
_dmarc.pct0                 TXT "v=DMARC1; p=reject; pct=0"
_dmarc.pct50                TXT "v=DMARC1; p=quarantine; pct=50"
; broken or missing records
_dmarc.bogus                TXT "v=DMARC1; p=bogus"
_dmarc.bogusrua             TXT "v=DMARC1; p=bogus; rua=mailto:dmarc@bogusrua.test"
_dmarc.badsp                TXT "v=DMARC1; p=reject; sp=bogus"
_dmarc.badsprua             TXT "v=DMARC1; p=reject; sp=bogus; rua=mailto:dmarc@badsprua.test"
_dmarc.two                  TXT "v=DMARC1; p=none"
_dmarc.two                  TXT "v=DMARC1; p=reject"
nodmarc                     TXT {SPF}
"""
    return ZoneView.merge([ZoneView.from_text(text, label="rfc-table"), ZoneView(timeouts=["_dmarc.slow.test"])])


def dmarc(verdict: Verdict) -> CheckResult:
    (r,) = [c for c in verdict.checks if c.family == "dmarc"]
    return r


def run(from_: str, mail_from: str = "", ip: str = BAD_IP, sigs: tuple[str, ...] = ()) -> CheckResult:
    """One message: From, MAIL FROM (default: the From address), client IP, DKIM d= values (first is on top)."""
    raw = message(from_=from_)
    for d in reversed(sigs):
        raw = sign(raw, selector="k", domain=d, keyfile=KEY)
    return dmarc(analyse(capture(raw, mail_from=mail_from or from_, ip=ip), zone()))


FAIL = "RFC 7489 §6.6.2"
P = "reject (p)"
# id, run() arguments, result, level, evidence["policy"] (None: no policy applied), evidence["rfc"], more evidence
RFC_TABLE = [
    # §3.1.2 SPF alignment
    ("spf-relaxed-subdomain", dict(from_="a@relaxed.test", mail_from="b@mail.relaxed.test", ip=GOOD_IP),
     "pass", Level.PASS, P, None, {"spf": "mail.relaxed.test: pass, aligned"}),
    ("spf-strict-subdomain", dict(from_="a@strict.test", mail_from="b@mail.strict.test", ip=GOOD_IP),
     "fail", Level.FAIL, P, FAIL, {"spf": "mail.strict.test: pass, not aligned", "alignment": "adkim=s aspf=s"}),
    ("spf-strict-exact", dict(from_="a@strict.test", ip=GOOD_IP), "pass", Level.PASS, P, None,
     {"spf": "strict.test: pass, aligned"}),
    ("spf-other-org", dict(from_="a@relaxed.test", mail_from="b@other.test", ip=GOOD_IP), "fail", Level.FAIL, P,
     FAIL, {"spf": "other.test: pass, not aligned"}),
    # §3.1.1 DKIM alignment
    ("dkim-relaxed-subdomain", dict(from_="a@relaxed.test", sigs=("mail.relaxed.test",)), "pass", Level.PASS, P,
     None, {"dkim": "mail.relaxed.test: pass, aligned"}),
    ("dkim-relaxed-parent", dict(from_="a@mail.relaxed.test", sigs=("relaxed.test",)), "pass", Level.PASS,
     "reject (p, inherited by the subdomain)", None, {"dkim": "relaxed.test: pass, aligned"}),
    ("dkim-strict-subdomain", dict(from_="a@strict.test", sigs=("mail.strict.test",)), "fail", Level.FAIL, P, FAIL,
     {"dkim": "mail.strict.test: pass, not aligned"}),
    ("dkim-strict-exact", dict(from_="a@strict.test", sigs=("strict.test",)), "pass", Level.PASS, P, None,
     {"dkim": "strict.test: pass, aligned"}),
    # §4.2 / §6.6.2: one aligned passing identifier is enough, whichever signature it is
    ("two-dkim-aligned-second", dict(from_="a@relaxed.test", sigs=("other.test", "relaxed.test")), "pass",
     Level.PASS, P, None, {"dkim": "other.test: pass, not aligned, relaxed.test: pass, aligned"}),
    ("two-dkim-aligned-first", dict(from_="a@relaxed.test", sigs=("relaxed.test", "other.test")), "pass",
     Level.PASS, P, None, {"dkim": "relaxed.test: pass, aligned, other.test: pass, not aligned"}),
    ("two-dkim-none-aligned", dict(from_="a@strict.test", sigs=("other.test", "mail.strict.test")), "fail",
     Level.FAIL, P, FAIL, {"dkim": "other.test: pass, not aligned, mail.strict.test: pass, not aligned"}),
    # §6.6.3 discovery and §6.3 sp
    ("subdomain-sp", dict(from_="a@news.parent.test"), "fail", Level.FAIL, "quarantine (sp)", FAIL,
     {"record-at": "_dmarc.parent.test", "org-domain": "parent.test"}),
    ("subdomain-own-record", dict(from_="a@own.parent.test"), "fail", Level.WARN, "none (p)", FAIL,
     {"record-at": "_dmarc.own.parent.test"}),
    ("subdomain-fallback-p", dict(from_="a@a.b.fallback.test"), "fail", Level.FAIL,
     "quarantine (p, inherited by the subdomain)", FAIL, {"record-at": "_dmarc.fallback.test"}),
    ("org-itself-ignores-sp", dict(from_="a@parent.test"), "fail", Level.FAIL, P, FAIL,
     {"record-at": "_dmarc.parent.test"}),
    # §6.6.4 pct: the lab reports the policy and the sampling rate; it does not sample
    ("pct-0", dict(from_="a@pct0.test"), "fail", Level.FAIL, P, FAIL, {"pct": "0"}),
    ("pct-50", dict(from_="a@pct50.test"), "fail", Level.FAIL, "quarantine (p)", FAIL, {"pct": "50"}),
    # RFC 9091 §2.1 / §4.1 np
    ("np-nxdomain", dict(from_="a@ghost.np.test"), "fail", Level.FAIL,
     "reject (np: the From domain does not exist)", FAIL, {}),
    ("np-nodata-only-txt", dict(from_="a@txtonly.np.test"), "fail", Level.FAIL,
     "reject (np: the From domain does not exist)", FAIL, {}),
    ("np-exists-a", dict(from_="a@a.np.test"), "fail", Level.FAIL, "quarantine (sp)", FAIL, {}),
    ("np-exists-aaaa", dict(from_="a@v6.np.test"), "fail", Level.FAIL, "quarantine (sp)", FAIL, {}),
    ("np-exists-mx", dict(from_="a@mx.np.test"), "fail", Level.FAIL, "quarantine (sp)", FAIL, {}),
    ("np-not-for-org", dict(from_="a@np.test"), "fail", Level.WARN, "none (p)", FAIL, {}),
    # §6.6.3: invalid p or sp -> p=none with a valid rua, otherwise no DMARC processing
    ("p-bogus", dict(from_="a@bogus.test"), "permerror", Level.FAIL, None, "RFC 7489 §6.3", {}),
    ("p-bogus-rua", dict(from_="a@bogusrua.test"), "fail", Level.WARN, "none (p)", FAIL,
     {"record-problems": "p='bogus' is not none, quarantine or reject"}),
    ("sp-bogus", dict(from_="a@x.badsp.test"), "permerror", Level.FAIL, None, "RFC 7489 §6.3", {}),
    ("sp-bogus-rua", dict(from_="a@badsprua.test"), "fail", Level.WARN, "none (p)", FAIL,
     {"record-problems": "sp='bogus' is not valid"}),
    # §6.6.3: more than one record -> no policy; DNS errors -> temperror
    ("two-records", dict(from_="a@two.test"), "none", Level.FAIL, None, "RFC 7489 §6.6.3",
     {"record-at": None}),
    ("two-records-at-org", dict(from_="a@x.two.test"), "none", Level.FAIL, None, "RFC 7489 §6.6.3", {}),
    ("no-record", dict(from_="a@nodmarc.test"), "none", Level.WARN, None, "RFC 7489 §6.1", {}),
    ("temperror", dict(from_="a@slow.test"), "temperror", Level.WARN, None, "RFC 7489 §6.6.3",
     {"reason": "temperror: _dmarc.slow.test TXT: lookup timed out (overlay)"}),
    ("temperror-at-org", dict(from_="a@x.slow.test"), "temperror", Level.WARN, None, "RFC 7489 §6.6.3", {}),
    # §6.6.1: exactly one From address
    ("from-two-addresses", dict(from_="a@relaxed.test, b@relaxed.test", mail_from="a@relaxed.test"), "permerror",
     Level.FAIL, None, "RFC 7489 §6.6.1", {}),
]


@pytest.mark.parametrize(("case", "result", "level", "policy", "rfc", "more"), [row[1:] for row in RFC_TABLE],
                         ids=[row[0] for row in RFC_TABLE])
def test_rfc_table(case, result, level, policy, rfc, more):
    r = run(**case)
    assert (r.result, r.level) == (result, level), r.summary
    assert r.evidence.get("policy") == policy
    assert r.evidence.get("rfc") == rfc
    for name, value in more.items():
        assert r.evidence.get(name) == value, name


def test_pct_is_reported_in_the_summary():
    assert run("a@pct0.test").summary.endswith("(0% of the time, pct=0)")
    assert run("a@pct50.test").summary.endswith("(50% of the time, pct=50)")
