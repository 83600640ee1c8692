"""Inputs the fuzz targets found, replayed from fixtures/fuzz/ as regression tests.

Each known bug is xfail(strict=True): when a fix lands the test XPASSes, which fails the run, so the
marker (and the matching allowance in test_fuzz_analysis.py / test_fuzz_smtp.py) must be removed with the fix.

`*.eml` files are raw messages. `*.smtp` files are client lines separated by CRLF, replayed one reply per
line; after a 354 the lines are message data up to the lone "." line.
"""

from __future__ import annotations

import socket

import pytest
from fuzzsupport import FUZZ_FIXTURES
from support.client import queued_id
from support.lab import RunningLab

from lab.core import mime
from lab.core.message import ParsedMessage

pytestmark = pytest.mark.fuzz

MAX_SIZE = 64 * 1024  # the limit smtp-size-over-limit.smtp was found under


def fixture(name: str) -> bytes:
    return (FUZZ_FIXTURES / name).read_bytes()


# -- analysis / MIME view ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mime-charset-idna.eml", "mime-charset-nul.eml", "mime-charset-punycode.eml"])
def test_mime_readable_survives_any_charset(name):
    """Found by test_fuzz_analysis: mime.text_of() caught only LookupError, so idna (UnicodeError), a NUL in
    the charset name (ValueError) and punycode (UnicodeDecodeError) escaped readable(), the Text tab."""
    raw = fixture(name)
    ParsedMessage(raw).summary()
    mime.tree(raw)
    assert isinstance(mime.readable(raw).text, str)


# -- SMTP -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    running = RunningLab(tmp_path_factory.mktemp("fuzz-regressions") / "data", max_size=MAX_SIZE)
    yield running
    running.stop()


def replay(port: int, script: bytes) -> list[bytes]:
    """Send each line and read its whole reply; message data after a 354 goes in one send with the "." line."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = b""

    def reply() -> bytes:
        nonlocal buf
        lines = []
        while True:
            while b"\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; replies so far {replies!r}")
                buf += chunk
            line, _, buf = buf.partition(b"\r\n")
            lines.append(line)
            if line[3:4] != b"-":
                return b"\r\n".join(lines)

    replies = [reply()]
    data: list[bytes] | None = None  # message lines since a 354, sent at once with the "." as clients do
    try:
        for line in script.split(b"\r\n")[:-1]:
            if data is not None and line != b".":
                data.append(line + b"\r\n")
                continue
            sock.sendall(b"".join(data or ()) + line + b"\r\n")
            replies.append(reply())
            data = [] if replies[-1].startswith(b"354") else None
    finally:
        sock.close()
    return replies


def assert_no_exception_reply(replies: list[bytes]) -> None:
    leaked = [r for r in replies if r.startswith(b"500 Error: (")]
    assert not leaked, f"the server raised while handling a command: {leaked}"


@pytest.mark.parametrize("name", ["smtp-rcpt-quote.smtp", "smtp-mail-quote.smtp", "smtp-rcpt-open-angle.smtp",
                                  "smtp-mail-open-angle-cr.smtp"])
def test_an_unparseable_address_is_a_syntax_error(lab, name):
    """Found by test_fuzz_smtp: MAIL FROM:/RCPT TO: with '"' or a bare '<' reached aiosmtpd's _getaddr, whose
    stdlib parser raised IndexError, answered '500 Error: (IndexError) ... index out of range'."""
    replies = replay(lab.port("relay"), fixture(name))
    assert_no_exception_reply(replies)
    assert replies[-2][:1] == b"5" and replies[-1].startswith(b"221")


@pytest.mark.parametrize("name", ["smtp-8bit-mail-from.smtp", "smtp-8bit-ehlo.smtp", "smtp-8bit-xclient-name.smtp"])
def test_8bit_envelope_is_stored_or_refused_before_data(lab, name):
    """Found by test_fuzz_smtp: a non-UTF-8 byte in HELO, MAIL FROM or XCLIENT NAME was accepted, then the
    store could not hold the surrogate and DATA got 451: the message was lost. Now stored, with U+FFFD."""
    replies = replay(lab.port("relay"), fixture(name))
    assert_no_exception_reply(replies)
    data_reply = next((r for r in replies if r.startswith(b"354")), None)
    if data_reply is None:
        return  # refused before DATA: acceptable
    final = replies[replies.index(data_reply) + 1]
    assert final.startswith(b"250 "), f"message accepted to DATA, then lost: {final!r}"
    store = lab.store()
    try:
        assert store.raw(queued_id(final)) is not None
    finally:
        store.close()


def test_xclient_8bit_value_gets_a_501(lab):
    """Found by test_fuzz_smtp: smtp_XCLIENT echoed a non-UTF-8 (surrogateescaped) value in its 501; push()
    could not encode it and aiosmtpd answered '500 Error: (UnicodeEncodeError) ...'."""
    replies = replay(lab.port("relay"), fixture("smtp-8bit-xclient-addr.smtp"))
    assert_no_exception_reply(replies)
    assert replies[1].startswith(b"501 ")


def test_a_message_over_the_size_limit_gets_552(lab):
    """Found by test_fuzz_smtp: the read that held <CRLF>.<CRLF> was never checked against the limit."""
    replies = replay(lab.port("relay"), fixture("smtp-size-over-limit.smtp"))
    final = replies[replies.index(b"354 End data with <CR><LF>.<CR><LF>") + 1]
    assert final.startswith(b"552 "), final
