"""Runs the RFC 7208 SPF test suite and pyspf's test.yml through the lab's own DNS view and SPF check.

Each YAML document's `zonedata` becomes lab zone data (a ZoneView; a name marked TIMEOUT raises DnsTempError
for every type it does not list, through a LayeredView), and each test goes through `check_mailfrom` (or
`check_helo` when MAIL FROM is empty), as a capture would.
Tests where the lab's answer differs on purpose are listed in KNOWN with the reason; they must keep differing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support import FIXTURES, SHARED

from lab.core.checks import spf
from lab.core.context import Context
from lab.core.dnsview import LayeredView, ZoneView, normalise
from lab.core.model import Capture, Client, Envelope

SUITES = ("rfc7208-tests.yml", "test.yml")
DEFAULT_EXPLANATION = spf.pyspf.EXPLANATIONS["fail"]  # what the suite's `explanation: DEFAULT` stands for

# id -> why the lab's answer is the right one (or the lab's deliberate design), with the rule behind it.
# Both come from pyspf's own test.yml and ask for a non-RFC strictness (`strict: 0` lax, `strict: 2` harsh);
# the lab always evaluates as RFC 7208 says, so the per-test `strict` is not honoured.
KNOWN: dict[str, str] = {
    "corner cases / default-modifier": (
        "lax-mode pyspf extension: `default=-` is a pre-RFC draft modifier; RFC 7208 §6 says unrecognised "
        "modifiers MUST be ignored, and with no mechanism matching and no redirect §4.7 gives neutral"),
    "corner cases / default-modifier-harsh": (
        "`ambiguous` is pyspf's harsh-mode (strict=2) warning, not one of the seven results of RFC 7208 §2.6; "
        "with `default=` ignored (§6) the RFC result is neutral (§4.7)"),
}


def suite_path(name: str) -> Path | None:
    for folder in (SHARED / "spf" / "pyspf", FIXTURES / "spf"):
        if (folder / name).is_file():
            return folder / name
    return None


def _octets(value: str) -> bytes:
    """A TXT character-string: the suite writes raw octets as \\xNN escapes, so latin-1 keeps them as written."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _value(rtype: str, value):
    if rtype in ("TXT", "SPF"):
        strings = value if isinstance(value, list) else [value]
        return tuple(_octets(str(s)) for s in strings)
    if rtype == "MX":
        pref, exchange = value
        return (int(pref), normalise(str(exchange)))
    if rtype in ("PTR", "CNAME"):
        return normalise(str(value))
    return str(value)


def zone_view(zonedata: dict) -> ZoneView | LayeredView:
    """The lab's view of one document's zone data.

    SPF-type records also count as TXT unless the name lists TXT of its own (`TXT: NONE` means none at all).
    TIMEOUT makes every other lookup of that name time out: types listed at the name still answer (the
    suite's "TXT present, SPF lookup times out"), so those names go in an overlay over a view that times out.
    """
    records: dict[tuple[str, str], tuple] = {}
    partial: dict[tuple[str, str], tuple] = {}  # listed records of names that also time out
    timeouts: list[str] = []
    for raw_name, entries in (zonedata or {}).items():
        name = normalise(str(raw_name))
        rrs: dict[str, list] = {}
        has_txt = timeout = False
        for entry in entries or ():
            if entry == "TIMEOUT":
                timeout = True
                continue
            for rtype, value in entry.items():
                rtype = rtype.upper()
                has_txt = has_txt or rtype == "TXT"
                if value != "NONE":
                    rrs.setdefault(rtype, []).append(_value(rtype, value))
        if not has_txt and "SPF" in rrs and not timeout:  # generated TXT follow a TIMEOUT, so they time out
            rrs["TXT"] = list(rrs["SPF"])
        target = partial if timeout else records
        for rtype, values in rrs.items():
            target[(name, rtype)] = tuple(values)
        if timeout:
            timeouts.append(name)
    base = ZoneView(records, timeouts=timeouts, label="suite")
    return LayeredView(ZoneView(partial, label="suite"), base) if partial else base


def _doc_name(doc: dict, index: int) -> str:
    if doc.get("description"):
        return " ".join(str(doc["description"]).split())
    if doc.get("comment"):
        return str(doc["comment"]).strip().splitlines()[0]
    return f"document {index + 1}"


def load(name: str) -> list:
    path = suite_path(name)
    if path is None:
        return [pytest.param(None, None, None, id=f"{name}: missing",
                             marks=pytest.mark.skip(reason=f"{name} is in neither {SHARED} nor {FIXTURES / 'spf'}"))]
    cases = []
    with path.open("rb") as fh:
        for index, doc in enumerate(yaml.safe_load_all(fh)):
            if not doc:
                continue
            view = zone_view(doc.get("zonedata") or {})  # one view per document, shared by its tests
            for test_name, test in (doc.get("tests") or {}).items():
                cid = f"{_doc_name(doc, index)} / {test_name}"
                cases.append(pytest.param(view, test, cid, id=cid))
    return cases


def lab_answer(view, test: dict) -> tuple[str, str | None]:
    """The lab's result word and explanation, through the same wrappers a received message goes through."""
    mail_from = str(test.get("mailfrom") or "")
    capture = Capture(raw=b"", envelope=Envelope(mail_from=mail_from, helo=str(test.get("helo") or "")),
                      client=Client(ip=str(test["host"]), source="cli"))
    ctx = Context(capture, view)
    (r,) = spf.check_mailfrom(ctx) if mail_from else spf.check_helo(ctx)
    return str(r.result), r.evidence.get("explanation")


def differences(view, test: dict) -> list[str]:
    result, explanation = lab_answer(view, test)
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    found = []
    if result not in expected:
        found.append(f"result {result!r}, suite expects {' or '.join(map(repr, expected))}")
    if "explanation" in test:
        want = DEFAULT_EXPLANATION if test["explanation"] == "DEFAULT" else str(test["explanation"])
        if explanation != want:
            found.append(f"explanation {explanation!r}, suite expects {want!r}")
    return found


def _run(view, test, cid):
    found = differences(view, test)
    if cid in KNOWN:
        assert found, f"{cid} now agrees with the suite: take it out of KNOWN ({KNOWN[cid]})"
    else:
        assert not found, f"{cid}: " + "; ".join(found)


@pytest.mark.parametrize(("view", "test", "cid"), load("rfc7208-tests.yml"))
def test_rfc7208_suite(view, test, cid):
    _run(view, test, cid)


@pytest.mark.parametrize(("view", "test", "cid"), load("test.yml"))
def test_pyspf_suite(view, test, cid):
    _run(view, test, cid)


def test_known_differences_name_real_tests():
    ids = [p.id for name in SUITES for p in load(name) if not p.marks]
    if not ids:
        pytest.skip("no SPF suite file found")
    assert len(ids) == len(set(ids)), "test ids must be unique"
    assert set(KNOWN) <= set(ids)
