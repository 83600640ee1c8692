"""mime.parse's one-part shortcut must read a message exactly as the stdlib parser does."""

from __future__ import annotations

import pytest
from hostile.corpus import generated, shared
from support import message, sign

from lab.core import mime


def _slow(raw: bytes):
    parser = mime._BoundedParser()
    parser.feed(raw)
    return parser.close()


def _same(a, b) -> None:
    assert a.items() == b.items()
    assert a.is_multipart() == b.is_multipart()
    assert a.get_content_type() == b.get_content_type()
    if a.is_multipart():
        assert len(a.get_payload()) == len(b.get_payload())
        for x, y in zip(a.get_payload(), b.get_payload(), strict=True):
            _same(x, y)
        return
    assert a._payload == b._payload  # get_payload() itself raises on some charsets (idna)
    assert mime.decoded(a) == mime.decoded(b)
    assert mime.text_of(a) == mime.text_of(b)


CORPUS = {**generated(), **shared()}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_shortcut_agrees_with_the_stdlib_parser(name):
    raw = CORPUS[name]
    _same(mime.parse(raw), _slow(raw))


def test_the_shortcut_is_taken_for_plain_one_part_mail_only():
    plain = sign(message(body="Hello\r\n.dot\r\n\xe9t\xe9\r\n"))
    assert mime._single_part(plain) is not None
    _same(mime._single_part(plain), _slow(plain))
    assert mime._single_part(plain.replace(b"\r\n", b"\n")) is None  # bare LF: the full parser decides
    multi = message().replace(b"Subject:", b"Content-Type: multipart/mixed; boundary=x\r\nSubject:")
    assert mime._single_part(multi) is None
    folded = message().replace(b"Subject:", b"Content-Type:\r\n message/rfc822\r\nSubject:")
    assert mime._single_part(folded) is None
    assert mime._single_part(b"no header section at all\r\n\r\nbody") is None
