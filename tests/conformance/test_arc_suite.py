"""Conformance and unit tests for the ARC check: ValiMail's signing suite, and chains sealed here with dkimpy.

Each signing case of arc-draft-sign-tests.yml gives an input message and the ARC set a sealer must add to
it; the set prepended to the message must validate through the lab's check with the suite's own DNS,
and stop validating once the message is changed. Public data is read from /work/shared/data first and
from the copy in fixtures/arc/ second.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import dkim
import pytest
import yaml
from support import capture, key, message

from lab.core.analyse import analyse
from lab.core.checks.arc import check_arc
from lab.core.context import Context
from lab.core.dnsview import LayeredView, ZoneView
from lab.core.results import CheckResult, Level

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "fixtures"
REL = "arc/arc_test_suite"
SUITE = next((base / REL for base in (SHARED, FIXTURES) if (base / REL).is_dir()), None)
MISSING = f"the ARC test suite is neither at {SHARED / REL} nor at {FIXTURES / REL}"


def run(raw: bytes, dns) -> CheckResult:
    results = check_arc(Context(capture(raw), dns))
    assert len(results) == 1, results
    return results[0]


# --- the ValiMail signing suite --------------------------------------------------------------------------------


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _unwrap(value: str) -> str:
    """A suite header value as its signer wrote it: one line (README, "Signing Header Format Standardization")
    that the YAML wraps for display. A wrap after `;` stood for the one space there; any other wrap (inside
    b=) stood for nothing. Folding it instead would change what the next seal covers."""
    out = ""
    for line in (part.strip() for part in value.strip().splitlines()):
        out += (" " if out.endswith(";") else "") + line
    return out


def _cases() -> list:
    if SUITE is None:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=MISSING), id="no-data")]
    cases = []
    for doc in yaml.safe_load_all((SUITE / "arc-draft-sign-tests.yml").read_text()):
        zone = ZoneView({(name.lower(), "TXT"): (("".join(v.strip() for v in value.splitlines()).encode(),),)
                         for name, value in doc["txt-records"].items()}, label="txt-records")
        cases += [pytest.param(test, zone, id=name) for name, test in doc["tests"].items()]
    return cases


CASES = _cases()


def _sealed(test: dict) -> bytes:
    """The input message with the expected ARC set on top (none when the case expects the sealer to add none)."""
    raw = _crlf(test["message"])
    if not test["AS"].strip():
        return raw
    fields = [("ARC-Seal", "AS"), ("ARC-Message-Signature", "AMS"), ("ARC-Authentication-Results", "AAR")]
    return "".join(f"{name}: {_unwrap(test[k])}\r\n" for name, k in fields).encode() + raw


def _stamped_fail(raw: bytes) -> bool:
    """Whether the newest seal says cv=fail: the sealer found the chain broken, so it is failed by design."""
    newest = re.search(rb"^ARC-Seal:(?:[^\r]|\r\n[ \t])*", raw, re.M)  # the first field, folded lines and all
    return bool(newest and re.search(rb"\bcv=fail\b", newest.group()))


def test_the_suite_is_there():
    if SUITE is None:
        pytest.skip(MISSING)
    assert len(CASES) == 17
    failed_by_design = [case.id for case in CASES if _stamped_fail(_sealed(case.values[0]))]
    assert failed_by_design == ["i1_base_fail", "i2_base_fail", "no_additional_sig"]


@pytest.mark.parametrize(("test", "zone"), CASES)
def test_the_expected_arc_set_validates(test, zone):
    raw = _sealed(test)
    r = run(raw, zone)
    if _stamped_fail(raw):  # i1_base_fail, i2_base_fail, no_additional_sig
        assert (r.result, r.level) == ("fail", Level.WARN)
        assert re.fullmatch(r"ARC-Seal\[\d\] reported failure, the chain is terminated", r.evidence["reason"])
        assert r.evidence["rfc"] == "RFC 8617 §5.2"
        return
    newest = int(re.search(r"\bi=(\d+)", test["AS"]).group(1))
    assert (r.id, r.result, r.level) == ("arc", "pass", Level.PASS), r.summary
    assert r.evidence["instances"] == str(newest)
    assert [r.evidence[f"seal-{i}"] for i in range(1, newest + 1)] == ["d=example.org s=dummy"] * newest
    assert r.evidence["oldest-authserv-id"] == r.evidence["newest-authserv-id"] == "lists.example.org"
    assert r.summary == (f"The ARC chain of {newest} set{'s' if newest > 1 else ''} validates; "
                         "newest seal by example.org (selector dummy)")


def _footer(raw: bytes) -> bytes:
    return raw + b"--\r\nA list footer added after sealing.\r\n"


def _subject_tag(raw: bytes) -> bytes:
    return raw.replace(b"\r\nSubject: Example 1", b"\r\nSubject: [list] Example 1", 1)


@pytest.mark.parametrize(("alter", "detail"), [(_footer, "body hash mismatch"), (_subject_tag, None)],
                         ids=["body", "subject"])
@pytest.mark.parametrize(("test", "zone"), CASES)
def test_an_altered_message_no_longer_validates(test, zone, alter, detail):
    raw = _sealed(test)
    altered = alter(raw)
    assert altered != raw
    r = run(altered, zone)
    assert (r.result, r.level) == ("fail", Level.WARN)
    if not _stamped_fail(raw):
        assert r.evidence["reason"] == "Most recent ARC-Message-Signature did not validate"
        if detail:
            assert r.evidence["detail"].startswith(detail)
        else:  # dkimpy says nothing more when only the header hash differs
            assert "detail" not in r.evidence
        assert "message signature invalid" in r.evidence[f"seal-{r.evidence['instances']}"]
        assert r.fix and "seal after your last change" in r.fix


# --- chains sealed here with dkimpy ----------------------------------------------------------------------------


class _Result:
    def __init__(self, text: str):
        self.text = text.strip()
        self.method, _, rest = self.text.partition("=")
        self.result = rest.split()[0] if rest.split() else ""

    def __str__(self) -> str:
        return self.text


class _Header:
    def __init__(self, authserv_id: str, results: list[_Result]):
        self.authserv_id, self.results = authserv_id, results

    @classmethod
    def parse(cls, text: str) -> _Header:
        srv, *results = (part.strip() for part in text.partition(":")[2].split(";"))
        return cls(srv.split()[0], [_Result(r) for r in results if "=" in r])


@pytest.fixture
def arc_sign(monkeypatch):
    """dkim.arc_sign. dkimpy's sealer reads the sealer's Authentication-Results with the optional `authres`
    package, which the lab does not depend on; without it, a stand-in that reads the plain headers these
    tests write takes its place for the test's duration."""
    try:
        import authres  # noqa: F401
    except ImportError:
        stand_in = types.SimpleNamespace(AuthenticationResultsHeader=_Header,
                                         core=types.SimpleNamespace(SyntaxError=ValueError))
        monkeypatch.setattr(dkim, "authres", stand_in, raising=False)

    def seal(raw: bytes, selector: str, domain: str, srv_id: str, results: str) -> bytes:
        raw = f"Authentication-Results: {srv_id}; {results}\r\n".encode() + raw
        arc_set = dkim.arc_sign(raw, selector.encode(), domain.encode(), key(f"{domain}.{selector}.pem"),
                                srv_id.encode(), include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        assert len(arc_set) == 3, "dkimpy added no ARC set"
        return b"".join(arc_set) + raw
    return seal


@pytest.fixture
def forwarded_twice(arc_sign) -> bytes:
    """A list at example.org seals the message, then a forwarder at example.com seals it again."""
    once = arc_sign(message(), "s1", "example.org", "lists.example.org",
                    "arc=none; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com")
    return arc_sign(once, "rsa2048", "example.com", "mx.example.com", "arc=pass; spf=fail smtp.mailfrom=example.org")


def test_a_message_without_arc_is_none(view):
    r = run(message(), view)
    assert (r.id, r.result, r.level, r.fix) == ("arc", "none", Level.INFO, None)
    assert r.summary == "No ARC chain (the message was not forwarded through an ARC sealer)"
    assert "rfc" not in r.evidence


def test_a_chain_of_two_sets_sealed_here_validates(view, forwarded_twice):
    assert forwarded_twice.count(b"ARC-Seal: i=") == 2
    r = run(forwarded_twice, view)
    assert (r.result, r.level) == ("pass", Level.PASS)
    assert dict(r.evidence) == {"instances": "2", "seal-1": "d=example.org s=s1", "seal-2": "d=example.com s=rsa2048",
                                "oldest-authserv-id": "lists.example.org", "newest-authserv-id": "mx.example.com"}
    assert r.summary == "The ARC chain of 2 sets validates; newest seal by example.com (selector rsa2048)"


def _newest_seal_b(raw: bytes) -> bytes:
    start = raw.index(b"b=", raw.index(b"ARC-Seal: i=2")) + 2
    return raw[:start] + (b"A" if raw[start:start + 1] != b"A" else b"B") + raw[start + 1:]


def _oldest_aar(raw: bytes) -> bytes:
    start = raw.index(b"ARC-Authentication-Results: i=1")
    return raw[:start] + raw[start:].replace(b"dkim=pass", b"dkim=fail", 1)


def _drop_newest_aar(raw: bytes) -> bytes:
    return re.sub(rb"ARC-Authentication-Results: i=2;.*?\r\n(?![ \t])", b"", raw, count=1, flags=re.S)


@pytest.mark.parametrize(("alter", "reason"), [
    (_newest_seal_b, "ARC-Seal[2] did not validate"),
    (_oldest_aar, "ARC-Seal[2] did not validate"),  # an earlier verdict rewritten: every later seal covers it
    (_drop_newest_aar, "Incomplete ARC set for instance 2"),
], ids=["seal-signature", "rewritten-aar", "incomplete-set"])
def test_a_broken_chain_fails_with_dkimpys_reason(view, forwarded_twice, alter, reason):
    altered = alter(forwarded_twice)
    assert altered != forwarded_twice
    r = run(altered, view)
    assert (r.id, r.result, r.level) == ("arc", "fail", Level.WARN)
    assert r.evidence["reason"] == reason
    assert r.summary == f"The ARC chain fails: {reason}"
    assert (r.ref, r.evidence["rfc"]) == ("RFC 8617 §5.2", "RFC 8617 §5.2")
    assert r.fix


def test_a_seal_whose_key_is_gone_fails_and_says_why(view, forwarded_twice):
    dns = LayeredView(ZoneView({("s1._domainkey.example.org", "TXT"): ()}), view)
    r = run(forwarded_twice, dns)
    assert (r.result, r.evidence["reason"]) == ("fail", "ARC-Seal[1] did not validate")
    assert "missing public key" in r.evidence["detail"]
    assert r.evidence["seal-1"].endswith("seal invalid")


def test_a_key_lookup_timeout_is_temperror(view, forwarded_twice):
    dns = LayeredView(ZoneView(timeouts=["rsa2048._domainkey.example.com"]), view)
    r = run(forwarded_twice, dns)
    assert (r.result, r.level) == ("temperror", Level.WARN)
    assert r.evidence["reason"] == "rsa2048._domainkey.example.com TXT: lookup timed out (overlay)"


def test_malformed_arc_fields_are_a_fail_not_an_exception(view):
    raw = b"ARC-Seal: this is not a seal\r\n" + message()
    r = run(raw, view)
    assert (r.result, r.level) == ("fail", Level.WARN)
    assert r.evidence["reason"] == "ARC header fields without a valid i= instance tag"


@pytest.mark.parametrize(("chain", "fragment"), [(False, "; arc=none"), (True, "; arc=pass")])
def test_the_verdict_carries_arc_after_dmarc(view, forwarded_twice, chain, fragment):
    verdict = analyse(capture(forwarded_twice if chain else message()), view)
    ar = verdict.authentication_results
    assert ar.endswith(fragment) and ar.index("dmarc=") < ar.index("arc=", ar.index("dmarc=") + 1)
    families = [c.family for c in verdict.checks]
    assert families.index("arc") > families.index("dmarc") and families.count("arc") == 1
