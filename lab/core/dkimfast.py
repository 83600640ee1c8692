r"""Provides install(): faster drop-ins for the dkimpy helpers that showed in the profile of a verification.

Profiled on the 12 KB message of bench/analysis.py (an RSA-2048 and an ed25519 signature, dkimpy 1.1.8),
DKIM took 2.0 ms of the message's 4.4 ms, and little of it was cryptography:
- `crypto.int2str` / `crypto.str2int` turn 2048-bit integers into bytes and back one byte per loop turn;
  `int.to_bytes` / `int.from_bytes` do the same in C (0.34 ms a message);
- the relaxed canonicalization calls `re.sub` with a pattern given as bytes for every header field and
  every signature, paying re's cache lookup each time: the same patterns, compiled once;
- the RSA public key's ASN.1 is parsed in pure Python for every message: parsed once per key (a receiver
  caches keys, too) and handed out as a copy;
- `RE_BTAG`, which blanks the b= value of the signature being verified (two or three times a signature),
  nests optional whitespace inside a repetition and backtracks: 87 us on a 565-byte header. Its folding
  whitespace `(?:(?:\s*\r?\n)?\s+)?` matches exactly the runs `\s*` matches, so the same language is
  written without the nesting (10 us);
- `rfc822_parse` splits the whole message at `\r?\n` with a regex, which tries every byte (0.26 ms for
  12 KB): split at `\n` and drop the one `\r` before it instead (0.02 ms);
- `parse_tag_value` (six tag lists a message: two signatures, their keys, twice) checks each tag name with
  a module-level `re.match` (re's cache lookup, then a regex): `bytes.isalpha()` on its first byte says
  the same (0.1 ms a message).

Each replacement returns what the original returns (tests compare them on random input), and install()
first compares them with the dkimpy it finds on a few values: if a dkimpy release changed what one of them
means, that one is left as dkimpy has it.
"""

from __future__ import annotations

import re
from functools import lru_cache

import dkim
import dkim.canonicalization
import dkim.crypto
import dkim.util

_ORIGINAL = {
    "int2str": dkim.crypto.int2str,
    "str2int": dkim.crypto.str2int,
    "parse_public_key": dkim.crypto.parse_public_key,
    "strip_trailing_whitespace": dkim.canonicalization.strip_trailing_whitespace,
    "compress_whitespace": dkim.canonicalization.compress_whitespace,
    "unfold_header_value": dkim.canonicalization.unfold_header_value,
    "rfc822_parse": dkim.rfc822_parse,
    "RE_BTAG": dkim.RE_BTAG,
    "parse_tag_value": dkim.util.parse_tag_value,
}

_TRAILING_WSP = re.compile(b"[\t ]+\r\n")
_WSP = re.compile(b"[\t ]+")
_LINE_BREAK = re.compile(b"\r?\n")
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")
RE_BTAG = re.compile(rb"([;\s]b\s*=)(?:[\sa-zA-Z0-9+/=]*[a-zA-Z0-9+/=])?(?:\r?\n\Z)?")


def int2str(n: int, length: int = -1) -> bytearray:
    """Big-endian bytes of n: as few as hold it (at least one), or its low `length` bytes (dkimpy's loop
    stops there, so a longer n is cut, not refused)."""
    assert n >= 0
    if length < 0:
        return bytearray(n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big"))
    return bytearray((n & ((1 << (8 * length)) - 1)).to_bytes(length, "big"))


def str2int(s: bytes | bytearray) -> int:
    return int.from_bytes(s, "big")


@lru_cache(maxsize=256)
def _parsed_key(data: bytes) -> dict:
    return _ORIGINAL["parse_public_key"](data)


def parse_public_key(data: bytes) -> dict:
    return dict(_parsed_key(bytes(data)))


def strip_trailing_whitespace(content: bytes) -> bytes:
    return _TRAILING_WSP.sub(b"\r\n", content)


def compress_whitespace(content: bytes) -> bytes:
    return _WSP.sub(b" ", content)


def unfold_header_value(content: bytes) -> bytes:
    return _LINE_BREAK.sub(b"", content)


def split_lines(message: bytes) -> list[bytes]:
    """`re.split(b"\\r?\\n", message)`, without a regex."""
    parts = message.split(b"\n")
    if b"\r" not in message:
        return parts
    last = parts.pop()
    return [p[:-1] if p[-1:] == b"\r" else p for p in parts] + [last]


def rfc822_parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """Header fields as [name, value + CRLF] (continuation lines added to the value), and the body joined
    with CRLF, as dkimpy's own parser returns them, with its errors: a first line that continues nothing
    raises IndexError, a line that is no field MessageFormatError."""
    lines = split_lines(message)
    headers: list[list[bytes]] = []
    for i, line in enumerate(lines):
        if not line:
            return headers, b"\r\n".join(lines[i + 1:])
        if line[0] in (9, 32):
            headers[-1][1] += line + b"\r\n"
            continue
        m = _FIELD_NAME.match(line)
        if m is not None:
            headers.append([m.group(1), line[m.end():] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise dkim.MessageFormatError(f"Unexpected characters in RFC822 header: {line!s}")
    return headers, b""


def parse_tag_value(tag_list: bytes) -> dict[bytes, bytes]:
    """An RFC 6376 §3.2 tag=value list as dkimpy reads it, with its errors: a spec without "=" or whose name does
    not start with an ASCII letter is an InvalidTagSpec, a repeated name a DuplicateTag."""
    tags: dict[bytes, bytes] = {}
    specs = tag_list.strip().split(b";")
    if not specs[-1]:  # a trailing semicolon is allowed
        specs.pop()
    for spec in specs:
        key, sep, value = spec.partition(b"=")
        key = key.strip()
        if not sep or not key[:1].isalpha():
            raise dkim.util.InvalidTagSpec(spec)
        if key in tags:
            raise dkim.util.DuplicateTag(key)
        tags[key] = value.strip()
    return tags


_SAMPLE_INT = (1 << 2047) + 0x1234567890ABCDEF
_SAMPLE_HEADER = b" value  with\t spaces \r\n\tfolded\tagain \r\n"
_SAMPLE_SIGNATURES = (b"v=1; a=rsa-sha256; b=ab c\r\n\tde==; bh=x", b"; b =\r\n  ZZ+/ \r\n", b" b= ;b=1 \n", b"")
_SAMPLE_MESSAGES = (b"A: 1\r\nB:2\r\n x\r\n\r\nbody\r\n\r\n", b"From x\nA: 1\n\nbody\r\r\nend\r", b"A: b", b"")


_SAMPLE_TAG_LISTS = (b" v=1; a = rsa-sha256 ;b=x=y;", b"", b"v=1;;", b"v", b"9=1", b"a=1; a=2", b"=x", b"k=\xff",
                     b" x1_=2")


def _outcome(fn, value):
    try:
        return fn(value)
    except Exception as exc:  # noqa: BLE001 - what is raised is part of what is compared
        return type(exc)


def _agrees(name: str) -> bool:
    """Whether dkimpy's own `name` still does what its replacement does, on a few values."""
    old, new = _ORIGINAL[name], globals()[name]
    try:
        if name == "int2str":
            return all(old(n, k) == new(n, k) for n, k in ((_SAMPLE_INT, 256), (_SAMPLE_INT, -1), (0, -1), (255, 4)))
        if name == "str2int":
            return all(old(b) == new(b) for b in (b"", b"\x00\x01", int2str(_SAMPLE_INT)))
        if name == "rfc822_parse":
            return all(old(m) == new(m) for m in _SAMPLE_MESSAGES)
        if name == "parse_tag_value":
            return all(_outcome(old, t) == _outcome(new, t) for t in _SAMPLE_TAG_LISTS)
        if name == "RE_BTAG":
            return all(old.sub(b"\\1", v) == new.sub(b"\\1", v) for v in _SAMPLE_SIGNATURES)
        return old(_SAMPLE_HEADER) == new(_SAMPLE_HEADER)
    except Exception:  # noqa: BLE001 - a changed signature: keep dkimpy's
        return False


def install() -> list[str]:
    """Put in place the replacements that agree with this dkimpy; returns their names."""
    installed = []
    for name in ("int2str", "str2int"):
        if _agrees(name):
            setattr(dkim.crypto, name, globals()[name])
            installed.append(name)
    for name in ("strip_trailing_whitespace", "compress_whitespace", "unfold_header_value"):
        if _agrees(name):
            setattr(dkim.canonicalization, name, globals()[name])
            installed.append(name)
    if _agrees("RE_BTAG"):
        dkim.RE_BTAG = RE_BTAG  # a global of dkim/__init__, read when a signature is verified
        installed.append("RE_BTAG")
    if _agrees("rfc822_parse"):
        dkim.rfc822_parse = rfc822_parse  # looked up as a global of dkim/__init__ by DKIM and ARC
        installed.append("rfc822_parse")
    if _agrees("parse_tag_value") and getattr(dkim, "parse_tag_value", None) is _ORIGINAL["parse_tag_value"]:
        dkim.util.parse_tag_value = parse_tag_value
        dkim.parse_tag_value = parse_tag_value  # dkim/__init__ imported the name
        installed.append("parse_tag_value")
    if getattr(dkim, "parse_public_key", None) is _ORIGINAL["parse_public_key"]:
        dkim.crypto.parse_public_key = parse_public_key
        dkim.parse_public_key = parse_public_key  # dkim/__init__ imported the name
        installed.append("parse_public_key")
    return installed


def original(name: str):
    """dkimpy's own function, for the tests that compare."""
    return _ORIGINAL[name]
