"""Conformance: flanker's DKIM canonicalisation cases and dkimpy's signed messages, through the lab's DKIM code.

tests/core/test_dkim.py already verifies dkimpy's RFC 8463 example, its RSA variant, the Exim-signed message
and the 2013 gmail.com message; here come the cases it leaves out: the canonical forms themselves, the
signed mailbox message, dkimpy's key formats, and an altered copy of each signed message.
Public data is read from /work/shared/data first and from the copies in fixtures/dkim/ second.
"""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest
import yaml
from dkim.canonicalization import Relaxed, Simple
from support import capture

from lab.core.checks.dkim import check_dkim
from lab.core.context import Context
from lab.core.dnsview import ZoneView
from lab.core.results import CheckResult, Level

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "fixtures"


def _locate(rel: str) -> Path | None:
    """The shared copy of a data folder, else the one in fixtures/, else None."""
    return next((base / rel for base in (SHARED, FIXTURES) if (base / rel).is_dir()), None)


def _params(folder: Path | None, rel: str, values: list, arity: int = 1) -> list:
    """`values` as parameters, or one skipped parameter that says where the data was looked for."""
    if folder is None:
        reason = f"public test data {rel} is neither at {SHARED / rel} nor at {FIXTURES / rel}"
        return [pytest.param(*[None] * arity, marks=pytest.mark.skip(reason=reason), id="no-data")]
    return values


def _crlf(raw: bytes) -> bytes:
    """Wire format: every LF line ending becomes CRLF; a bare CR inside a line stays as it is."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# --- flanker: canonical headers, a blank line, then the canonical body (RFC 6376 §3.4) --------------------------

FLANKER = _locate("dkim/flanker-canonicalization")
CASES = sorted(p.suffix[1:] for p in FLANKER.glob("email.*")) if FLANKER else []


def test_the_flanker_set_is_complete():
    if FLANKER is None:
        rel = "dkim/flanker-canonicalization"
        pytest.skip(f"public test data {rel} is neither at {SHARED / rel} nor at {FIXTURES / rel}")
    assert len(CASES) == 21
    for n in CASES:
        assert (FLANKER / f"simple.expected.{n}").is_file() and (FLANKER / f"relaxed.expected.{n}").is_file()


@pytest.mark.parametrize("algorithm", [Simple, Relaxed], ids=["simple", "relaxed"])
@pytest.mark.parametrize("n", _params(FLANKER, "dkim/flanker-canonicalization", CASES))
def test_flanker_canonicalisation(n, algorithm):
    headers, body = dkim.rfc822_parse(_crlf((FLANKER / f"email.{n}").read_bytes()))
    canonical = (b"".join(name + b":" + value for name, value in algorithm.canonicalize_headers(headers))
                 + b"\r\n" + algorithm.canonicalize_body(body))
    expected = _crlf((FLANKER / f"{algorithm.name.decode()}.expected.{n}").read_bytes())
    assert canonical == expected


# --- dkimpy: signed messages verified by check_dkim, with DNS from DNS_RECORDS.yaml -----------------------------

DKIMPY = _locate("dkim/dkimpy")


def _data(name: str) -> bytes:
    return (DKIMPY / "data" / name).read_bytes()


def _zone() -> ZoneView:
    """DNS_RECORDS.yaml `records:` as TXT records; `{file: x}` means the text of data/x."""
    records = yaml.safe_load((DKIMPY / "DNS_RECORDS.yaml").read_text())["records"]
    zone = {}
    for name, value in records.items():
        text = (DKIMPY / "data" / value["file"]).read_text().strip() if isinstance(value, dict) else value
        zone[(name.lower(), "TXT")] = ((text.encode(),),)
    return ZoneView(zone, label="DNS_RECORDS.yaml")


def run(raw: bytes) -> list[CheckResult]:
    return check_dkim(Context(capture(raw), _zone()))


def verdicts(raw: bytes) -> dict[str, tuple[str, str | None]]:
    return {r.id: (r.result, r.evidence.get("reason")) for r in run(raw)}


def _mbox(canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple")) -> bytes:
    """message.mbox signed as dkimpy's test_extra_headers signs it: every header, Received (repeated) included.

    Its own kitterman.com signature stays below; DNS_RECORDS.yaml has no key for it.
    """
    raw = _crlf(_data("message.mbox"))
    signer = dkim.DKIM(raw)
    signer.should_not_sign.remove(b"received")
    sig = signer.sign(b"test", b"example.com", _data("test.private"), include_headers=signer.all_sign_headers(),
                      canonicalize=canonicalize)
    return sig + raw


KITTERMAN = "dkim.kitterman.com.2007-00"


@pytest.mark.parametrize("canonicalize", _params(DKIMPY, "dkim/dkimpy", [
    (h, b) for h in (b"simple", b"relaxed") for b in (b"simple", b"relaxed")]))
def test_the_signed_mailbox_message_verifies(canonicalize):
    results = run(_mbox(canonicalize))
    assert [(r.id, r.result) for r in results] == [("dkim.example.com.test", "pass"), (KITTERMAN, "permerror")]
    assert results[0].evidence["c"] == b"/".join(canonicalize).decode()
    received = _crlf(_data("message.mbox")).count(b"\r\nReceived:")
    assert results[0].evidence["h"].split(":").count("received") == received == 6  # each instance is signed
    assert results[1].evidence["reason"] == "no key for signature"  # a real 2011 key, not in the test DNS


# dkimpy's key formats: PKCS#1 and PKCS#8 private keys; SubjectPublicKeyInfo and bare RSAPublicKey in p=
KEYS = [
    ("test.private", "test", "example.com", "rsa", "1024"),
    ("1024_testkey.key", "test2", "example.com", "rsa", "1024"),  # p= is a bare PKCS#1 RSAPublicKey
    ("2048_testkey.key", "test3", "example.com", "rsa", "2048"),
    ("2048_testkey.key", "test4", "example.com", "rsa", "2048"),  # p= is a bare PKCS#1 RSAPublicKey
    ("2048_testkey_PKCS8.key", "test5", "example.com", "rsa", "2048"),
    ("ed25519test.key", "test", "example.net", "ed25519", "256"),
    ("rfc8032_7_1.key", "brisbane", "football.example.com", "ed25519", "256"),  # RFC 8463 A.1
]


@pytest.mark.parametrize(("keyfile", "selector", "domain", "key_type", "bits"), _params(DKIMPY, "dkim/dkimpy", [
    pytest.param(*k, id=f"{k[0]}-{k[1]}") for k in KEYS], arity=5))
def test_dkimpy_test_keys_sign_and_verify(keyfile, selector, domain, key_type, bits):
    raw = _crlf(_data("test.message"))
    algorithm = b"ed25519-sha256" if key_type == "ed25519" else b"rsa-sha256"
    sig = dkim.sign(raw, selector.encode(), domain.encode(), _data(keyfile).strip(), signature_algorithm=algorithm,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    r = run(sig + raw)
    assert len(r) == 1
    assert (r[0].id, r[0].result, r[0].level) == (f"dkim.{domain}.{selector}", "pass", Level.PASS)
    assert (r[0].evidence["key-type"], r[0].evidence["key-bits"]) == (key_type, bits)


def _replace(old: bytes, new: bytes):
    def alter(raw: bytes) -> bytes:
        assert raw.count(old) == 1, f"{old!r} must occur exactly once"
        return raw.replace(old, new)
    return alter


BODY, HEADER = "body hash mismatch", "signature mismatch"
RFC8463 = ("dkim.football.example.com.brisbane", "dkim.football.example.com.test")

# (message, how to get it signed, the alteration, the signatures it breaks and how)
ALTERED = [
    # the body of rfc6376.signed.msg is altered in tests/core/test_dkim.py already
    ("rfc6376.signed.msg", "subject", _replace(b"Subject: Is dinner ready?", b"Subject: Is lunch ready?"),
     dict.fromkeys(RFC8463, HEADER)),
    ("rfc6376.signed.rsa.msg", "body", _replace(b"We lost the game.", b"We won the game."), {RFC8463[1]: BODY}),
    ("rfc6376.signed.rsa.msg", "subject", _replace(b"Subject: Is dinner ready?", b"Subject: Is lunch ready?"),
     {RFC8463[1]: HEADER}),
    ("ed25519test2.msg", "body", _replace(b"\r\ncontent", b"\r\naltered content"), {"dkim.test.ex.sed": BODY}),
    ("ed25519test2.msg", "from", _replace(b"From: nobody@example.com", b"From: somebody@example.com"),
     {"dkim.test.ex.sed": HEADER}),
    ("test2.message", "body", _replace(b"Hello, DKIM", b"Hello, ARC"), {"dkim.gmail.com.20120113": BODY}),
    ("test2.message", "subject", _replace(b"DKIM test mail #1", b"DKIM test mail #2"),
     {"dkim.gmail.com.20120113": HEADER}),
    ("message.mbox", "body", _replace(b"\r\nScott K\r\n", b"\r\nScott K.\r\n"), {"dkim.example.com.test": BODY}),
    ("message.mbox", "subject", _replace(b"Subject: Comments on PEP 394", b"Subject: Re: Comments on PEP 394"),
     {"dkim.example.com.test": HEADER}),
]


@pytest.mark.parametrize(("name", "alter", "broken"), _params(DKIMPY, "dkim/dkimpy", [
    pytest.param(name, alter, broken, id=f"{name}-{what}") for name, what, alter, broken in ALTERED], arity=3))
def test_an_altered_copy_fails_with_the_reason(name, alter, broken):
    raw = _mbox() if name == "message.mbox" else _crlf(_data(name))
    got = verdicts(alter(raw))
    for cid, reason in broken.items():
        assert got.pop(cid) == ("fail", reason), cid
    if name == "message.mbox":  # the original signature has no key either way
        assert got.pop(KITTERMAN) == ("permerror", "no key for signature")
    assert got == {}
