"""The dkimpy replacements return exactly what dkimpy's own helpers return, and are installed."""

from __future__ import annotations

import base64
import random
import re

import dkim
import dkim.canonicalization
import dkim.crypto
import pytest
from support import FIXTURES

import lab.core.checks.dkim  # noqa: F401 - installs them
from lab.core import dkimfast

RNG = random.Random(6376)


def test_they_are_installed():
    assert dkim.crypto.int2str is dkimfast.int2str and dkim.crypto.str2int is dkimfast.str2int
    assert dkim.parse_public_key is dkimfast.parse_public_key
    assert dkim.canonicalization.compress_whitespace is dkimfast.compress_whitespace
    assert dkim.parse_tag_value is dkim.util.parse_tag_value is dkimfast.parse_tag_value


@pytest.mark.parametrize("bits", [0, 1, 7, 8, 9, 1023, 1024, 2048, 4096])
def test_integer_conversions_agree(bits):
    for _ in range(50):
        n = RNG.getrandbits(bits) if bits else 0
        for length in (-1, (bits + 7) // 8, (bits + 7) // 8 + 3, 512):
            assert dkimfast.int2str(n, length) == dkimfast.original("int2str")(n, length)
            assert type(dkimfast.int2str(n, length)) is bytearray
        data = bytes(dkimfast.int2str(n, 300))
        assert dkimfast.str2int(data) == dkimfast.original("str2int")(data)


def test_too_big_for_the_length_is_cut_to_its_low_bytes_as_dkimpy_does():
    for fn in (dkimfast.int2str, dkimfast.original("int2str")):
        assert fn((1 << 64) + 0x01020304, 4) == bytearray(b"\x01\x02\x03\x04")


def test_canonicalization_helpers_agree_on_random_whitespace():
    alphabet = [b" ", b"\t", b"\r\n", b"\n", b"\r", b"a", b"b", b":", b"\x00", b"\xff"]
    for _ in range(2000):
        data = b"".join(RNG.choice(alphabet) for _ in range(RNG.randrange(0, 40)))
        for name in ("strip_trailing_whitespace", "compress_whitespace", "unfold_header_value"):
            assert getattr(dkimfast, name)(data) == dkimfast.original(name)(data), (name, data)


def test_the_key_cache_hands_out_copies_and_keeps_errors_uncached():
    line = next(x for x in (FIXTURES / "zones" / "example.com.zone").read_text().splitlines()
                if x.startswith("rsa2048._domainkey"))
    record = "".join(re.findall(r'"([^"]*)"', line))
    der = base64.b64decode(record.split("p=")[1])
    first = dkimfast.parse_public_key(der)
    assert first == dkimfast.original("parse_public_key")(der) and first["modulus"].bit_length() == 2048
    first["modulus"] = 3
    assert dkimfast.parse_public_key(der)["modulus"] != 3
    for _ in range(2):  # whatever dkimpy raises, it raises every time: failures are not cached
        with pytest.raises(dkim.crypto.UnparsableKeyError):
            dkimfast.parse_public_key(b"\x30\x03garbage")


def _outcome(fn, data):
    try:
        return fn(data)
    except Exception as exc:  # noqa: BLE001 - the same error type is part of agreeing
        return type(exc)


def test_rfc822_parse_agrees_on_random_messages_including_errors():
    assert dkim.rfc822_parse is dkimfast.rfc822_parse
    pieces = [b"A: 1", b"Subject:x", b"\r\n", b"\n", b"\r", b" cont", b"\tcont", b"From x", b"bad line", b":",
              b"b", b"\xff", b"X-Y: z: w", b""]
    for _ in range(5000):
        data = b"".join(RNG.choice(pieces) for _ in range(RNG.randrange(0, 16)))
        assert _outcome(dkimfast.rfc822_parse, data) == _outcome(dkimfast.original("rfc822_parse"), data), data
    for n in range(2000):  # and the line splitting alone
        data = bytes(RNG.choice(b"\r\na") for _ in range(n % 40))
        assert dkimfast.split_lines(data) == re.split(b"\r?\n", data), data


def test_the_b_tag_pattern_blanks_the_same_bytes_on_random_signature_fields():
    assert dkim.RE_BTAG is dkimfast.RE_BTAG
    original = dkimfast.original("RE_BTAG")
    pieces = [b" ", b"\t", b"\r\n", b"\n", b"\r", b"b", b"=", b";", b"a", b"Z", b"+", b"/", b"h", b"-", b"b=", b"; b=",
              b" b =", b"\xff"]
    for _ in range(20000):
        data = b"".join(RNG.choice(pieces) for _ in range(RNG.randrange(0, 18)))
        assert dkimfast.RE_BTAG.sub(b"\\1", data) == original.sub(b"\\1", data), data


def test_tag_value_lists_parse_the_same_on_random_input_including_errors():
    original = dkimfast.original("parse_tag_value")
    pieces = [b"v", b"a", b"=", b";", b" ", b"\t", b"1", b"_", b"rsa-sha256", b"x=y", b"9", b"\xff", b"\r\n", b"b=",
              b"; "]

    def outcome(fn, data):
        try:
            return fn(data)
        except Exception as exc:  # noqa: BLE001 - the error raised is part of the behaviour compared
            return type(exc), exc.args

    for _ in range(20000):
        data = b"".join(RNG.choice(pieces) for _ in range(RNG.randrange(0, 14)))
        assert outcome(dkimfast.parse_tag_value, data) == outcome(original, data), data
