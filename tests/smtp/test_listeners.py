"""The three listeners over real sockets with smtplib: TLS, AUTH, XCLIENT, limits and exact capture."""

from __future__ import annotations

import hmac
import smtplib

import pytest
from support import GOOD_IP, message, sign
from support.client import RawClient, client_tls, queued_id, send


def test_relay_accepts_plain_mail_and_stores_exact_bytes(lab):
    raw = message(subject="plain relay")
    with smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="mail.example.com") as s:
        mid = send(s, raw)
    # committed before the 250: readable at once, without waiting for analysis
    store = lab.store()
    assert store.raw(mid) == raw
    store.close()
    stored = lab.wait(mid)
    t = stored.capture.transport
    assert (t.listener.value, t.tls_version, t.auth_mechanism) == ("relay", None, None)
    assert stored.capture.envelope.helo == "mail.example.com"
    checks = {c.id: c for c in stored.verdict.checks}
    assert checks["transport.port"].level == "warn"
    assert checks["transport.tls"].level == "warn"


def test_relay_offers_starttls_but_not_auth(lab):
    with smtplib.SMTP("127.0.0.1", lab.port("relay")) as s:
        s.ehlo("mail.example.com")
        assert s.has_extn("starttls")
        assert not s.has_extn("auth")
        code, reply = s.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
        assert code == 502 and b"relay listener" in reply
        s.starttls(context=client_tls())
        s.ehlo("mail.example.com")
        mid = send(s, message())
    stored = lab.wait(mid)
    assert stored.capture.transport.tls_version in ("TLSv1.2", "TLSv1.3")


def test_submission_requires_starttls_then_auth(lab):
    with smtplib.SMTP("127.0.0.1", lab.port("submission")) as s:
        s.ehlo("client.example.com")
        assert not s.has_extn("auth"), "AUTH must not be offered before TLS"
        code, reply = s.docmd("MAIL FROM:<alice@example.com>")
        assert (code, reply) == (530, b"5.7.0 Must issue a STARTTLS command first")
        code, reply = s.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
        assert code == 530
        s.starttls(context=client_tls())
        s.ehlo("client.example.com")
        assert "PLAIN" in s.esmtp_features["auth"] and "CRAM-MD5" in s.esmtp_features["auth"]
        code, reply = s.docmd("MAIL FROM:<alice@example.com>")
        assert code == 530 and b"Authentication required" in reply


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_submission_auth_mechanisms_are_recorded_without_password(lab, mechanism):
    password = f"pw-{mechanism}-Zq9"
    with smtplib.SMTP("127.0.0.1", lab.port("submission")) as s:
        s.starttls(context=client_tls())
        s.ehlo()
        s.user, s.password = "alice@example.com", password
        code, _ = s.auth(mechanism, getattr(s, f"auth_{mechanism.lower().replace('-', '_')}"))
        assert code == 235
        mid = send(s, message())
    stored = lab.wait(mid)
    t = stored.capture.transport
    assert (t.auth_mechanism, t.auth_user) == (mechanism, "alice@example.com")
    assert {c.id: c.level for c in stored.verdict.checks}["transport.port"] == "pass"
    for path in lab.config.data_dir.glob("maillab.db*"):
        assert password.encode() not in path.read_bytes(), f"password found in {path.name}"


def test_smtps_is_implicit_tls_with_auth_required(lab):
    with smtplib.SMTP_SSL("127.0.0.1", lab.port("smtps"), context=client_tls()) as s:
        s.ehlo("client.example.com")
        assert not s.has_extn("starttls")
        code, _ = s.docmd("MAIL FROM:<alice@example.com>")
        assert code == 530
        s.login("alice", "secret")
        mid = send(s, message())
    stored = lab.wait(mid)
    t = stored.capture.transport
    assert t.listener.value == "smtps" and t.tls_version and t.auth_mechanism
    checks = {c.id: c for c in stored.verdict.checks}
    assert checks["transport.tls"].level == "pass" and checks["transport.auth"].level == "pass"


def test_credentials_file_restricts_auth(make_lab, tmp_path):
    creds = tmp_path / "users"
    creds.write_text("# test users\nalice:right-password\n")
    lab = make_lab(credentials=str(creds))
    with smtplib.SMTP_SSL("127.0.0.1", lab.port("smtps"), context=client_tls()) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login("alice", "wrong")
        assert err.value.smtp_code == 535
    with smtplib.SMTP_SSL("127.0.0.1", lab.port("smtps"), context=client_tls()) as s:
        s.ehlo()
        code, _ = s.auth("CRAM-MD5", lambda challenge=None: _cram("alice", "right-password", challenge))
        assert code == 235


def _cram(user: str, password: str, challenge: bytes | None) -> str:
    if challenge is None:
        return None
    return f"{user} {hmac.new(password.encode(), challenge, 'md5').hexdigest()}"


def test_xclient_sets_client_ip_name_and_helo(lab):
    with smtplib.SMTP("127.0.0.1", lab.port("relay")) as s:
        s.ehlo("localhost")
        assert s.has_extn("xclient")
        code, _ = s.docmd("XCLIENT", f"ADDR={GOOD_IP} NAME=mail.example.com HELO=mail.example.com")
        assert code == 220
        s.ehlo("localhost")
        mid = send(s, sign(message()))
    stored = lab.wait(mid)
    c = stored.capture.client
    assert (c.ip, c.peer_ip, c.name, c.source) == (GOOD_IP, "127.0.0.1", "mail.example.com", "xclient")
    assert stored.capture.envelope.helo == "mail.example.com"
    results = {c.id: c.result for c in stored.verdict.checks}
    assert results["spf.mailfrom"] == "pass" and results["spf.helo"] == "pass"
    assert results["dkim.example.com.rsa2048"] == "pass" and results["dmarc"] == "pass"


def test_xclient_rejects_bad_input(lab):
    c = RawClient(lab.port("relay"))
    banner = c.greeting
    c.cmd("EHLO localhost")
    assert c.cmd("XCLIENT ADDR=not-an-ip").startswith(b"501")
    assert c.cmd("XCLIENT COLOUR=blue").startswith(b"501")
    assert c.cmd("XCLIENT ADDR=IPV6:2001:db8::5") == banner  # a fresh greeting, as Postfix sends
    c.cmd("MAIL FROM:<a@example.com>")
    assert c.cmd("XCLIENT ADDR=192.0.2.1").startswith(b"503")
    c.close()


def test_configured_client_ip_applies_to_loopback_senders(make_lab):
    lab = make_lab(client_ip=GOOD_IP)
    with smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="mail.example.com") as s:
        mid = send(s, message())
    c = lab.wait(mid).capture.client
    assert (c.ip, c.source) == (GOOD_IP, "configured")


def test_size_limit_is_advertised_and_enforced(make_lab):
    lab = make_lab(max_size=20_000)
    with smtplib.SMTP("127.0.0.1", lab.port("relay")) as s:
        s.ehlo("x.example.com")
        assert s.esmtp_features["size"] == "20000"
        code, _ = s.docmd("MAIL FROM:<a@example.com> SIZE=30000")
        assert code == 552
        s.rset()
        s.mail("a@example.com")
        s.rcpt("b@example.net")
        code, reply = s.data(message(body="x" * 70 + "\r\n") * 400)
        assert code == 552 and b"5.3.4" in reply
        mid = send(s, message())  # the session goes on after a refused message
    store = lab.store()
    assert store.ids() == [mid]
    store.close()


def test_recipient_limit_gives_452(make_lab):
    lab = make_lab(max_recipients=5)
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    replies = [c.cmd(f"RCPT TO:<r{i}@example.net>") for i in range(6)]
    assert all(r.startswith(b"250") for r in replies[:5])
    assert replies[5].startswith(b"452 4.5.3")
    c.close()


def test_dot_stuffing_long_lines_and_8bit_are_kept_exactly(lab):
    body = "..x\r\n.hidden\r\n.\r\n" + "y" * 100_000 + "\r\nnaïve\r\n"
    raw = message(body=body)
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com> BODY=8BITMIME")
    c.cmd("RCPT TO:<b@example.net>")
    assert c.cmd("DATA").startswith(b"354")
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in raw.split(b"\r\n"))
    reply = c.cmd(stuffed + b".\r\n")
    c.close()
    mid = queued_id(reply)
    store = lab.store()
    assert store.raw(mid) == raw
    assert store.get(mid).capture.envelope.mail_options == ("BODY=8BITMIME",)
    store.close()


def test_only_crlf_dot_crlf_ends_data(lab):
    """SMTP smuggling: <LF>.<LF> and <CR>.<CR> inside DATA are content, not the end of the message."""
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    c.cmd("DATA")
    smuggled = b"Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.com>\r.\rRCPT TO:<x@example.net>\r\n"
    reply = c.cmd(smuggled + b".")
    assert reply.startswith(b"250")
    c.cmd("QUIT")
    c.close()
    store = lab.store()
    assert len(store.ids()) == 1
    assert store.raw(queued_id(reply)) == smuggled
    store.close()


def test_pipelined_transaction_and_data_in_one_write(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    raw = message(subject="pipelined")
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert [c.reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    c.send(raw + b".\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n" + raw + b".\r\nQUIT\r\n")
    replies = [c.reply() for _ in range(5)]
    c.close()
    assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"354", b"250"]
    store = lab.store()
    assert [store.raw(i) for i in store.ids()] == [raw, raw]
    store.close()


def test_protocol_errors_get_clear_replies(lab):
    c = RawClient(lab.port("relay"))
    assert c.cmd("MAIL FROM:<a@example.com>").startswith(b"503")  # before EHLO
    c.cmd("EHLO x.example.com")
    assert c.cmd("RCPT TO:<b@example.net>").startswith(b"503")  # RCPT without MAIL
    assert c.cmd("MAIL FROM:<a@example.com>").startswith(b"250")
    assert c.cmd("MAIL FROM:<a@example.com>").startswith(b"503")  # nested MAIL
    assert c.cmd("DATA").startswith(b"503")  # DATA without RCPT
    c.close()


def test_client_that_stops_mid_data_stores_nothing(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    c.cmd("DATA")
    c.send(b"Subject: half\r\n\r\nand then the client vanishes")
    c.close()
    with smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="x.example.com") as s:
        mid = send(s, message())
    store = lab.store()
    assert store.ids() == [mid]
    store.close()


def test_session_transcript_is_recorded_without_secrets(lab):
    with smtplib.SMTP("127.0.0.1", lab.port("submission"), local_hostname="client.example.com") as s:
        s.starttls(context=client_tls())
        s.login("alice", "hunter2-secret")
        mid = send(s, message())
    stored = lab.wait(mid)
    text = "\n".join(f"{d} {t}" for _, d, t in stored.session)
    assert "> EHLO client.example.com" in text and "> STARTTLS" in text
    assert "> AUTH CRAM-MD5 [credentials hidden]" in text
    assert "< 235" in text and "octets of message data" in text
    assert "hunter2" not in text


def test_each_message_of_a_long_session_keeps_the_preamble_and_its_own_transaction(lab):
    with smtplib.SMTP("127.0.0.1", lab.port("submission"), local_hostname="client.example.com") as s:
        s.starttls(context=client_tls())
        s.login("alice", "pw")
        first = send(s, message(subject="one"), mail_from="first@example.com")
        s.rset()
        ids = [send(s, message(subject=f"n{i}"), mail_from=f"n{i}@example.com") for i in range(3)]
    last = "\n".join(f"{d} {t}" for _, d, t in lab.wait(ids[-1]).session)
    assert "> EHLO client.example.com" in last and "> STARTTLS" in last and "> AUTH " in last
    assert "> MAIL FROM:<n2@example.com>" in last
    assert "first@example.com" not in last and "n1@example.com" not in last  # earlier transactions are not repeated
    assert "(3 earlier messages in this session not shown)" in last
    assert last.count("not shown") == 1  # one line counts them all: a long session's transcripts stay short
    assert len(lab.wait(ids[-1]).session) == len(lab.wait(ids[-2]).session)
    assert "> RSET" not in last
    one = "\n".join(f"{d} {t}" for _, d, t in lab.wait(first).session)
    assert "> MAIL FROM:<first@example.com>" in one and "earlier message" not in one


def test_restart_keeps_messages_and_analyses_the_backlog(make_lab, tmp_path):
    from datetime import UTC, datetime

    from lab.core.model import Capture, Envelope
    from lab.store import Store

    first = make_lab(data_dir=tmp_path / "keep")
    with smtplib.SMTP("127.0.0.1", first.port("relay"), local_hostname="x.example.com") as s:
        kept = send(s, message(subject="before restart"))
    first.wait(kept)
    first.stop()
    cert = (tmp_path / "keep" / "tls" / "cert.pem").read_bytes()
    assert oct((tmp_path / "keep" / "tls" / "key.pem").stat().st_mode & 0o777) == "0o600"
    # a capture stored but never analysed, as after a crash between commit and analysis
    store = Store(tmp_path / "keep" / "maillab.db")
    orphan = store.add(Capture(message(subject="orphan"), Envelope("a@example.com", ("b@example.net",), "x"),
                               received_at=datetime.now(UTC)))
    store.close()
    second = make_lab(data_dir=tmp_path / "keep")
    assert (tmp_path / "keep" / "tls" / "cert.pem").read_bytes() == cert  # made once, then reused
    assert b"Subject: before restart" in second.wait(kept).capture.raw
    assert second.wait(orphan).verdict is not None
    store = second.store()
    assert store.ids() == [kept, orphan]
    store.close()


def test_a_busy_port_is_fatal_unless_partial_start_is_asked_for(tmp_path):
    import asyncio
    import socket

    from lab.config import Config
    from lab.engine import Engine

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config = Config(data_dir=tmp_path, offline=True, relay_port=port, submission_port=0, smtps_port=0)

    async def run():
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port} for relay"):
            await Engine(config).start()
        engine = Engine(config)
        errors = await engine.start(partial=True)
        try:
            assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0]
            bound = {s.listener.value: s.server is not None for s in engine.specs}
            assert bound == {"relay": False, "submission": True, "smtps": True}
        finally:
            await engine.stop()

    try:
        asyncio.run(run())
    finally:
        busy.close()
