"""lab.filters against real filters: rspamd 3.4 on loopback (tests/support/rspamd.py), and spamd when installed.

The rspamd tests use the interop session's Knot + rspamd and skip cleanly where rspamd is not installed.
SpamAssassin is not installed in this environment, so spamd is tested only where no filter answers (a
closed port, a port that never replies, a peer that answers garbage) and through its reply parser.
The unreachable-path tests need no filter and always run.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import pytest
from support import BAD_IP, GOOD_IP, capture, message, sign

from lab import filters
from lab.core.checks.content import check_content, external_results
from lab.core.context import Context
from lab.core.dnsview import ZoneView
from lab.core.results import Level

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
LONG = " ".join(["Here is a full paragraph of ordinary words about the order you placed."] * 20)


def ask(server, raw: bytes, ip: str = GOOD_IP, mail_from: str = "alice@example.com"):
    return filters.rspamd(raw, ip=ip, helo="mail.example.com", mail_from=mail_from, rcpt=["bob@example.net"],
                          port=server.port)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connecting is refused


@contextmanager
def peer(reply: bytes | None) -> Iterator[int]:
    """A real TCP peer on loopback that reads a request and sends `reply` (None: accepts and never answers)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.2)
                try:
                    conn.recv(1 << 20)
                except OSError:
                    pass
                if reply is None:
                    stop.wait(5)
                else:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


# --- rspamd, the real one ----------------------------------------------------------------------------------


def test_rspamd_scores_a_good_message(rspamd):
    score = ask(rspamd, sign(message()))
    assert score is not None
    assert (score.tool, score.version, score.threshold, score.action) == ("rspamd", "3.4", 15.0, "no action")
    rules = {name: (points, description) for name, points, description in score.rules}
    assert rules["R_SPF_ALLOW"][0] < 0 and rules["R_SPF_ALLOW"][1]  # the envelope IP reached rspamd
    assert "R_DKIM_ALLOW" in rules and "DMARC_POLICY_ALLOW" in rules
    assert score.score == pytest.approx(sum(points for points, _ in rules.values()), abs=0.01)
    (result,) = external_results([score])
    assert (result.id, result.level, result.points) == ("content.rspamd", Level.INFO, 0.0)
    assert result.summary.startswith("From rspamd 3.4: score ")


def test_rspamd_sees_the_envelope_it_is_given(rspamd):
    score = ask(rspamd, message(), ip=BAD_IP)
    names = {name for name, _, _ in score.rules}
    assert {"R_SPF_FAIL", "DMARC_POLICY_REJECT"} <= names  # example.com does not list BAD_IP
    assert score.action == "add header"
    (result,) = external_results([score])
    assert result.level is Level.WARN and "would treat it as spam" in result.summary


def test_our_client_and_urllib_get_the_same_answer(rspamd):
    raw = message()
    ours = ask(rspamd, raw, ip=BAD_IP)
    theirs = rspamd.check(raw, BAD_IP, "mail.example.com", "alice@example.com", "bob@example.net")
    assert ours.score == pytest.approx(theirs["score"])
    assert {name for name, _, _ in ours.rules} == set(theirs["symbols"])


def test_rspamd_rejects_gtube(rspamd):
    score = ask(rspamd, message(body=GTUBE + "\r\n"))
    assert (score.action, [name for name, _, _ in score.rules]) == ("reject", ["GTUBE"])
    assert score.score >= score.threshold


def test_external_scores_asks_every_filter_that_answers(rspamd):
    scores = filters.external_scores(capture(message(), ip=BAD_IP), rspamd_port=rspamd.port,
                                     spamd_port=closed_port())
    assert [s.tool for s in scores] == ["rspamd"]
    assert "R_SPF_FAIL" in {name for name, _, _ in scores[0].rules}
    assert filters.external_scores(capture(message()), rspamd_port=None, spamd_port=None) == []


def _mail(text: str | None = "Hello Bob,\nyour order has shipped.\n", html: str | None = None,
          subject: str = "Your order has shipped", attachment: tuple[str, bytes] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Shop <alice@example.com>", "bob@example.net", subject
    if text is None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    if attachment:
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


NO_MIME = (b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: Hello\r\n"
           b"Content-Type: text/html; charset=us-ascii\r\n\r\n<p>Hello</p>\r\n")
# Our rule and the rspamd symbol for the same signal, a message where both fire and one where neither does.
AGREE = {
    "html-only": ("MIME_HTML_ONLY", _mail(text=None, html=f"<p>{LONG}</p>"), _mail(html=f"<p>{LONG}</p>")),
    "subject-caps": ("SUBJ_ALL_CAPS", _mail(subject="YOUR ORDER HAS SHIPPED TODAY"), _mail()),
    # rspamd also reads the bytes: an "MZ" program header under a harmless name still counts for it
    "executable": ("MIME_BAD_EXTENSION", _mail(attachment=("setup.exe", b"MZ\x90\x00")),
                   _mail(attachment=("setup.txt", b"How to set up the shop.\n"))),
    "mime-version": ("MISSING_MIME_VERSION", NO_MIME, NO_MIME.replace(b"Content-Type", b"MIME-Version: 1.0\r\n"
                                                                      b"Content-Type")),
    "hidden-text": ("ZERO_FONT", _mail(html=f'<p>{LONG}</p><span style="font-size:0px">cheap meds</span>'),
                    _mail(html=f'<p>{LONG}</p><span style="font-size:12px">cheap meds</span>')),
}


@pytest.mark.parametrize("rule", AGREE, ids=AGREE.keys())
def test_our_content_rules_agree_with_rspamd(rule, rspamd):
    symbol, hit, miss = AGREE[rule]
    for raw, expected in ((hit, True), (miss, False)):
        ours = {r.id for r in check_content(Context(capture(raw), ZoneView()))}
        theirs = {name for name, _, _ in ask(rspamd, raw).rules}
        assert (f"content.{rule}" in ours, symbol in theirs) == (expected, expected)


# --- no filter answering: always None, quickly -------------------------------------------------------------


@pytest.mark.parametrize("ask_filter", [filters.rspamd, filters.spamassassin], ids=["rspamd", "spamd"])
def test_a_closed_port_gives_none_quickly(ask_filter):
    start = time.monotonic()
    assert ask_filter(message(), port=closed_port()) is None
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("ask_filter", [filters.rspamd, filters.spamassassin], ids=["rspamd", "spamd"])
def test_a_filter_that_never_answers_gives_none_after_the_timeout(ask_filter):
    with peer(None) as port:
        start = time.monotonic()
        assert ask_filter(message(), port=port, timeout=0.5) is None
        assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(("ask_filter", "reply"), [
    (filters.rspamd, b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\nnot json"),
    (filters.rspamd, b'HTTP/1.0 200 OK\r\n\r\n{"score": "high"}'),
    (filters.rspamd, b"HTTP/1.0 500 Internal Server Error\r\n\r\n{}"),
    (filters.rspamd, b"\x00\xff garbage"),
    (filters.spamassassin, b"SPAMD/1.1 76 Bad header line\r\n\r\n"),
    (filters.spamassassin, b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n"),
    (filters.spamassassin, b"HTTP/1.0 200 OK\r\n\r\n"),
], ids=["rspamd not json", "rspamd no number", "rspamd 500", "rspamd garbage", "spamd error",
        "spamd no Spam header", "spamd wrong protocol"])
def test_a_filter_that_answers_garbage_gives_none(ask_filter, reply):
    with peer(reply) as port:
        assert ask_filter(message(), port=port) is None


# --- spamd -------------------------------------------------------------------------------------------------

# A spamd 3.4 REPORT reply in the layout spamd/PROTOCOL and the report template give it.
REPORT = (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 700\r\nSpam: True ; 7.3 / 5.0\r\n\r\n"
          b"Spam detection software, running on the system \"mx.example\",\nhas identified this incoming email as "
          b"possible spam.\n\nContent analysis details:   (7.3 points, 5.0 required)\n\n"
          b" pts rule name              description\n"
          b"---- ---------------------- --------------------------------------------------\n"
          b" 2.5 URIBL_ABUSE_SURBL      Contains an URL listed in the ABUSE SURBL blocklist\n"
          b"                            [URIs: bit.ly]\n"
          b"-0.0 SPF_PASS               SPF: sender matches SPF record\n"
          b" 1.0 HTML_IMAGE_ONLY_08     BODY: HTML: images with 400-800 bytes of words\n"
          b" 3.8 SUBJ_ALL_CAPS          Subject is all capitals\n\n")


def test_parse_a_spamd_report():
    score = filters.parse_spamd(REPORT)
    assert (score.tool, score.score, score.threshold, score.action) == ("spamassassin", 7.3, 5.0, "spam")
    assert score.rules == [
        ("URIBL_ABUSE_SURBL", 2.5, "Contains an URL listed in the ABUSE SURBL blocklist [URIs: bit.ly]"),
        ("SPF_PASS", -0.0, "SPF: sender matches SPF record"),
        ("HTML_IMAGE_ONLY_08", 1.0, "BODY: HTML: images with 400-800 bytes of words"),
        ("SUBJ_ALL_CAPS", 3.8, "Subject is all capitals"),
    ]
    (result,) = external_results([score])
    assert (result.id, result.level) == ("content.spamassassin", Level.WARN)
    assert result.evidence["rules"].startswith("SUBJ_ALL_CAPS (+3.80)")


def test_parse_spamd_symbols_and_ham():
    score = filters.parse_spamd(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.2 / 5.0\r\n\r\nDKIM_SIGNED,SPF_PASS")
    assert (score.score, score.action, score.rules) == (1.2, "no action", [("DKIM_SIGNED", 0.0, ""),
                                                                           ("SPF_PASS", 0.0, "")])
    assert external_results([score])[0].level is Level.INFO


def test_the_spamd_request_carries_the_envelope():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        got: list[bytes] = []

        def serve():
            conn, _ = server.accept()
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                got.append(data)
                conn.sendall(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.5 / 5.0\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        raw = message()
        score = filters.spamassassin(raw, ip="192.0.2.10", helo="mail.example.com\r\nX-Injected: 1",
                                     mail_from="alice@example.com", port=port)
        thread.join(5)
    head, _, body = got[0].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"REPORT SPAMC/1.5"
    assert f"Content-length: {len(body)}".encode() in head
    assert body.startswith(b"Return-Path: <alice@example.com>\r\nReceived: from mail.example.comX-Injected: 1 "
                           b"([192.0.2.10])")  # CR and LF from the client cannot start a new field
    assert body.endswith(raw)
    assert score.score == 0.5


@pytest.mark.skipif(shutil.which("spamd") is None, reason="SpamAssassin (spamd) is not installed")
def test_a_running_spamd_answers():
    score = filters.spamassassin(message(body=GTUBE + "\r\n"))
    if score is None:
        pytest.skip("spamd is installed but not listening on 127.0.0.1:783")
    assert score.tool == "spamassassin" and score.score >= 100 and "GTUBE" in {n for n, _, _ in score.rules}
