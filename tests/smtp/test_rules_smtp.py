"""Scripted receiver behaviour over real sockets: the built-in local parts, a rules file at every stage, the
refused attempts the lab records, the bounces and auto-replies it writes (read back over POP3), and the
acceptance test from issue 8 with a tiny retrying sender.

Everything runs against a real lab (RunningLab, or the `maillab` pytest fixture) with smtplib, poplib, a
line-level client and a small asyncio SMTP client; no mocks. Greylisting waits 1 second (`greylist_delay`).
"""

from __future__ import annotations

import asyncio
import json
import poplib
import smtplib
import socket
import time
from pathlib import Path

import pytest
from support import free_ports, message
from support.client import RawClient, queued_id

from lab.core.model import DSN_STAGE, Listener

SENDER = "app@example.com"


# helpers ----------------------------------------------------------------------------------------------


def rules_lab(make_lab, tmp_path: Path, text: str, **settings):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return make_lab(rules=str(path), **settings), path


def until(fn, timeout: float = 10, every: float = 0.02):
    """fn()'s first truthy value, polling; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"nothing within {timeout}s")


def attempts(lab, n: int | None = None, timeout: float = 10):
    """The recorded attempts, oldest first; waits until there are at least `n`."""
    def read():
        store = lab.store()
        try:
            found = store.attempts()[::-1]
        finally:
            store.close()
        return found if n is None or len(found) >= n else None
    return read() if n is None else until(read, timeout)


def generated(lab, rcpt: str, timeout: float = 10):
    """The first message the lab wrote itself (listener `lab`) to `rcpt`."""
    def find():
        store = lab.store()
        try:
            for mid in store.ids():
                stored = store.get(mid)
                if stored.capture.transport.listener is Listener.LAB and rcpt in stored.capture.envelope.rcpt_to:
                    return stored
        finally:
            store.close()
        return None
    return until(find, timeout)


def mailbox_over_pop3(port: int, user: str) -> list[bytes]:
    pop = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        pop.user(user)
        pop.pass_("anything")
        count, _ = pop.stat()
        return [b"\r\n".join(pop.retr(i)[1]) for i in range(1, count + 1)]
    finally:
        pop.quit()


def checks(lab, mid: int) -> dict:
    return {c.id: c for c in lab.wait(mid).verdict.checks}


def relay(lab) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="mail.example.com", timeout=10)


def send(lab, rcpts: list[str], raw: bytes, mail_from: str = SENDER) -> int:
    """MAIL, RCPT, DATA on the relay listener; the stored message's id."""
    with relay(lab) as s:
        s.ehlo()
        assert s.mail(mail_from)[0] == 250
        for rcpt in rcpts:
            assert s.rcpt(rcpt)[0] == 250
        code, reply = s.data(raw)
        assert code == 250, reply
        return queued_id(reply)


# built-in local parts, no rules file ----------------------------------------------------------------------


def test_bounce_hard_and_soft_at_rcpt_with_an_ordinary_recipient_beside_them(make_lab):
    lab = make_lab()
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt("bounce-hard@example.net") == (
            550, b"5.1.1 <bounce-hard@example.net>: Recipient address rejected: User unknown")
        assert s.rcpt("Bounce-Soft+x@Example.NET") == (
            452, b"4.2.2 <Bounce-Soft+x@Example.NET>: Recipient address rejected: Mailbox full")
        assert s.rcpt("bob@example.net")[0] == 250
        code, reply = s.data(message())
        assert code == 250
        mid = queued_id(reply)
    store = lab.store()
    assert store.get(mid).capture.envelope.rcpt_to == ("bob@example.net",)
    store.close()
    hard, soft = attempts(lab, 2)
    assert (hard.stage, hard.code, hard.status, hard.rcpt, hard.mail_from) == (
        "rcpt", 550, "5.1.1", "bounce-hard@example.net", SENDER)
    assert (soft.code, soft.status) == (452, "4.2.2")
    assert "bounce-hard@: unknown user" in hard.rule and "(built-in)" in hard.rule
    assert hard.message == soft.message == mid  # the partial refusal is tied to the message stored
    assert hard.txn == soft.txn and hard.txn  # one transaction, so one try
    assert ("bob@example.net", "250") in hard.recipients and hard.recipients[0][0] == "bob@example.net"
    assert any("RCPT TO:<bounce-hard@example.net>" in line[2] for line in store_session(lab, hard.id))


def store_session(lab, attempt_id: int) -> list:
    store = lab.store()
    try:
        return store.attempt(attempt_id)[1]
    finally:
        store.close()


def test_ordinary_mail_records_no_attempt_and_rcpt_rules_are_a_prefix_check(make_lab):
    lab = make_lab()
    with relay(lab) as s:
        s.sendmail(SENDER, ["bob@example.net", "bounce-hardly@example.net", "ooo-not@example.net"], message())
    assert attempts(lab) == []
    handler = lab.engine.handler
    assert handler.stages == {"rcpt"} and "bounce-hard@" in handler.rcpt_prefixes
    assert "greylist+" in handler.rcpt_prefixes and "ooo@" in handler.rcpt_prefixes


def test_greylist_refuses_the_first_attempt_and_accepts_a_retry_after_the_delay(make_lab):
    lab = make_lab(greylist_delay=1)
    rcpt = "greylist@example.net"
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        code, reply = s.rcpt(rcpt)
        assert code == 451 and reply.startswith(b"4.7.1 <greylist@example.net>: Recipient address rejected: "
                                                b"Greylisted, try again in 1 seconds")
        s.rset()
        s.mail(SENDER)
        assert s.rcpt(rcpt)[0] == 451  # too soon
    time.sleep(1.1)
    mid = send(lab, [rcpt], message(to=rcpt))
    results = checks(lab, mid)
    assert results["retry.after_temporary"].level == "fail"  # the second try came at once: hammering
    assert results["retry.after_temporary"].result == "hammering"
    assert "451 4.7.1" in results["retry.after_temporary"].evidence["timeline"]


def test_greylist_with_a_sane_retry_passes_the_retry_check(make_lab):
    lab = make_lab(greylist_delay=1)
    rcpt = "greylist+sane@example.net"
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt(rcpt)[0] == 451
    time.sleep(1.2)
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt(rcpt)[0] == 250
        code, reply = s.data(message(to=rcpt))
    r = checks(lab, queued_id(reply))["retry.after_temporary"]
    assert (r.level, r.result) == ("pass", "retried")
    assert "then it was accepted" in r.summary


def test_ooo_is_accepted_and_an_rfc3834_reply_lands_in_the_senders_pop3_mailbox(make_lab):
    (pop3,) = free_ports(1)
    lab = make_lab(pop3_port=pop3)
    with relay(lab) as s:
        s.sendmail(SENDER, ["ooo@example.net"], message(to="ooo@example.net", subject="Quarterly report"))
    reply = generated(lab, SENDER)
    e = reply.capture.envelope
    assert (e.mail_from, e.rcpt_to, reply.capture.transport.listener) == ("", (SENDER,), Listener.LAB)
    assert b"Auto-Submitted: auto-replied" in reply.capture.raw
    assert b"Subject: Auto: Quarterly report" in reply.capture.raw
    assert b"In-Reply-To: <" in reply.capture.raw
    verdict = lab.wait(reply.capture.id).verdict
    ids = {c.id for c in verdict.checks}
    assert "transport.generated" in ids and not ids & {"transport.port", "spf.mailfrom", "client.ip", "blocklist.ip"}
    (got,) = mailbox_over_pop3(pop3, SENDER)
    assert b"Auto-Submitted: auto-replied" in got and b"From: <ooo@example.net>" in got


def test_no_autoreply_to_bulk_mail_and_the_transcript_says_why(make_lab):
    lab = make_lab()
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt("ooo@example.net")
        code, reply = s.data(message(to="ooo@example.net", extra="Precedence: bulk\r\n"))
    stored = lab.wait(queued_id(reply))
    assert any("no auto-reply for ooo@example.net" in line[2] and "Precedence: bulk" in line[2]
               for line in stored.session)
    with relay(lab) as s:  # a message after it, to be sure the lab had time to write a reply it should not
        s.sendmail(SENDER, ["ooo@example.net"], message(to="ooo@example.net"))
    generated(lab, SENDER)
    store = lab.store()
    assert sum(store.get(i).capture.transport.listener is Listener.LAB for i in store.ids()) == 1
    store.close()


def test_bounce_hard_dsn_is_accepted_then_an_rfc3464_bounce_reaches_the_sender_over_pop3(make_lab):
    (pop3,) = free_ports(1)
    lab = make_lab(pop3_port=pop3)
    rcpt = "bounce-hard+dsn@example.net"
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt(rcpt) == (250, b"2.1.5 OK")
        code, reply = s.data(message(to=rcpt))
        assert code == 250
        first = queued_id(reply)
    dsn = generated(lab, SENDER)
    raw = dsn.capture.raw
    assert b"multipart/report; report-type=delivery-status" in raw
    assert b"Final-Recipient: rfc822; bounce-hard+dsn@example.net" in raw and b"Status: 5.1.1" in raw
    assert b"Action: failed" in raw and b"Diagnostic-Code: smtp; 550 5.1.1" in raw
    assert b"From: Mail Delivery System <MAILER-DAEMON@maillab.localhost>" in raw
    (got,) = mailbox_over_pop3(pop3, SENDER)
    assert b"Status: 5.1.1" in got
    (bounced,) = until(lambda: [a for a in attempts(lab) if a.stage == DSN_STAGE])
    assert (bounced.rcpt, bounced.message, bounced.dsn, bounced.status) == (rcpt, first, dsn.capture.id, "5.1.1")
    # mailing the address again after the bounce is what the retry checks warn about
    lab.wait(first), lab.wait(dsn.capture.id)  # both judged: the sender history below has seen them
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt(rcpt)
        code, reply = s.data(message(to=rcpt))
    results = checks(lab, queued_id(reply))
    r = results["retry.after_bounce"]
    assert (r.level, r.result) == ("warn", "mailed-again") and r.evidence["dsn-message"] == str(dsn.capture.id)
    history = results["sender.history"]  # the lab's bounce is not in the application's sending history
    assert history.level == "pass" and history.evidence["earlier-messages"] == "1"
    assert "maillab.localhost" not in history.evidence["earlier-from"]


def test_a_null_sender_gets_no_dsn(make_lab):
    lab = make_lab()
    with _raw(lab) as c:
        c.cmd("EHLO mail.example.com")
        assert c.cmd("MAIL FROM:<>").startswith(b"250")
        assert c.cmd("RCPT TO:<bounce-hard+dsn@example.net>").startswith(b"250")
        assert c.cmd("DATA").startswith(b"354")
        reply = c.cmd(message().replace(b"\r\n.", b"\r\n..") + b".")
    stored = lab.wait(queued_id(reply))
    assert any("no DSN for bounce-hard+dsn@example.net" in line[2] for line in stored.session)


class _raw:
    """RawClient as a context manager."""

    def __init__(self, lab, listener: str = "relay"):
        self.client = RawClient(lab.port(listener))

    def __enter__(self) -> RawClient:
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.close()


def test_hostile_recipients_are_recorded_as_valid_text_and_bounded(make_lab, capsys):
    from lab.cli import main

    lab = make_lab()
    with _raw(lab) as c:
        c.cmd("EHLO mail.example.com")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        c.send(b"RCPT TO:<bounce-hard+\xe9\xff@example.net>\r\n" + b"RCPT TO:<bounce-hard@example.net>\r\n" * 300)
        replies = [c.reply() for _ in range(301)]
        assert all(r.startswith(b"550 5.1.1 <bounce-hard") for r in replies) and b"\xff" not in replies[0]
        c.cmd("QUIT")
    found = attempts(lab, 100)
    time.sleep(0.3)
    assert len(attempts(lab)) == 100  # MAX_PENDING per transaction
    assert found[0].rcpt == "bounce-hard+\ufffd\ufffd@example.net"
    session = store_session(lab, found[0].id)
    assert session[-1][2] == "(201 more refused recipients in this transaction were not recorded)"
    assert store_session(lab, found[1].id) == []  # the transcript is kept once per transaction
    assert main(["list", "--attempts", "--data-dir", str(lab.config.data_dir)]) == 0
    assert "bounce-hard+\ufffd\ufffd@example.net" in capsys.readouterr().out


# a rules file at every stage ------------------------------------------------------------------------------


def test_connect_554_greeting_then_503_to_everything_but_quit(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, '[[rule]]\nstage = "connect"\nreply = "554 5.7.1 No SMTP service here"\n')
    c = RawClient(lab.port("relay"))
    try:
        assert c.greeting == b"554 5.7.1 No SMTP service here"
        assert c.cmd("EHLO mail.example.com") == b"503 5.5.1 Error: bad sequence of commands"
        assert c.cmd("MAIL FROM:<a@example.com>") == b"503 5.5.1 Error: bad sequence of commands"
        assert c.cmd("QUIT").startswith(b"221")
    finally:
        c.close()
    (a,) = attempts(lab, 1)
    assert (a.stage, a.code, a.mail_from, a.rcpt, a.client_ip) == ("connect", 554, None, None, "127.0.0.1")


def test_connect_rate_limit_421_closes_and_submission_gets_503_not_530(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, '[[rule]]\nstage = "connect"\nrate = { count = 2, window = 60 }\n')
    for _ in range(2):
        c = RawClient(lab.port("relay"))
        assert c.greeting.startswith(b"220 ")
        c.close()
    c = RawClient(lab.port("relay"))
    try:
        assert c.greeting == b"421 4.7.0 Error: too many connections from 127.0.0.1"
        assert c.sock.recv(100) == b""  # closed after the 421
    finally:
        c.close()
    (a,) = attempts(lab, 1)
    assert a.disconnect and a.stage == "connect" and "rule #1" in a.rule


def test_connect_delay_holds_the_greeting_and_silent_disconnect_sends_nothing(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
stage = "connect"
listener = "relay"
delay = 0.6

[[rule]]
stage = "connect"
listener = "submission"
disconnect = true
""")
    t0 = time.monotonic()
    c = RawClient(lab.port("relay"))
    assert c.greeting.startswith(b"220 ") and time.monotonic() - t0 >= 0.55
    c.close()
    with socket.create_connection(("127.0.0.1", lab.port("submission")), timeout=5) as sock:
        assert sock.recv(100) == b""
    (a,) = attempts(lab, 1)
    assert (a.stage, a.reply, a.disconnect, a.listener) == ("connect", "", True, Listener.SUBMISSION)


def test_xclient_asks_the_connect_rules_again_for_the_new_client(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
stage = "connect"
client_ip = "192.0.2.0/24"
reply = "554 5.7.1 <{client_ip}>: Client host rejected"
""")
    with _raw(lab) as c:
        assert c.greeting.startswith(b"220 ")
        c.cmd("EHLO mail.example.com")
        assert c.cmd("XCLIENT ADDR=192.0.2.5") == b"554 5.7.1 <192.0.2.5>: Client host rejected"
        assert c.cmd("EHLO mail.example.com") == b"503 5.5.1 Error: bad sequence of commands"
    (a,) = attempts(lab, 1)
    assert (a.stage, a.client_ip, a.client_source) == ("connect", "192.0.2.5", "xclient")


def test_the_smtps_greeting_is_decided_after_the_tls_handshake(make_lab, tmp_path):
    from support.client import client_tls

    lab, _ = rules_lab(make_lab, tmp_path, '[[rule]]\nstage = "connect"\nlistener = "smtps"\n'
                                           'reply = "554 5.7.1 No service on 465 today"\n')
    with pytest.raises(smtplib.SMTPConnectError) as err:
        smtplib.SMTP_SSL("127.0.0.1", lab.port("smtps"), context=client_tls(), timeout=10)
    assert err.value.smtp_code == 554 and b"No service on 465 today" in err.value.smtp_error
    (a,) = attempts(lab, 1)
    assert a.tls_version in ("TLSv1.2", "TLSv1.3") and a.listener is Listener.SMTPS


def test_a_delay_longer_than_the_idle_timeout_is_not_a_timeout(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, '[[rule]]\nrcpt = "slow@example.net"\ndelay = 1.2\n', idle_timeout=0.5)
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        t0 = time.monotonic()
        assert s.rcpt("slow@example.net") == (250, b"2.1.5 OK")
        assert time.monotonic() - t0 >= 1.1
        assert s.data(message())[0] == 250


def test_helo_refused_is_not_remembered_and_a_good_helo_works(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
helo = ["localhost", "re:^[0-9.]+$"]
reply = "504 5.5.2 <{helo}>: Helo command rejected: need fully-qualified hostname"
""")
    with _raw(lab) as c:
        assert c.cmd("EHLO localhost") == b"504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
        assert c.cmd("MAIL FROM:<a@example.com>").startswith(b"503")  # the refused HELO did not count
        assert c.cmd("HELO 192.0.2.1").startswith(b"504 5.5.2 <192.0.2.1>")
        assert c.cmd("EHLO mail.example.com").startswith(b"250-")
        assert c.cmd("MAIL FROM:<a@example.com>").startswith(b"250")
    helo = attempts(lab, 2)
    assert [a.stage for a in helo] == ["helo", "helo"] and helo[0].txn != helo[1].txn


def test_mail_stage_refusal_and_a_2xx_override_at_rcpt(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
mail_from = "*@spammer.example"
reply = "554 5.7.1 <{mail_from}>: Sender address rejected: Access denied"

[[rule]]
rcpt = "vip@example.net"
reply = "250 2.1.5 Welcome, VIP"
""")
    with relay(lab) as s:
        s.ehlo()
        assert s.mail("x@Spammer.example") == (554, b"5.7.1 <x@Spammer.example>: Sender address rejected: "
                                                    b"Access denied")
        assert s.rcpt("bob@example.net")[0] == 503  # no transaction was started
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("vip@example.net") == (250, b"2.1.5 Welcome, VIP")
        code, reply = s.data(message())
        assert code == 250
    (a,) = attempts(lab, 1)
    assert (a.stage, a.mail_from, a.rcpt, a.code) == ("mail", "x@Spammer.example", None, 554)


def test_size_is_the_mail_size_parameter_until_the_data_arrives(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
stage = "rcpt"
size_min = 5000
reply = "552 5.3.4 Message too big for this recipient"

[[rule]]
stage = "end-of-data"
size_min = 3000
reply = "552 5.3.4 Message too big after all"
""")
    big = message(body="x" * 4000 + "\r\n")
    with _raw(lab) as c:
        c.cmd("EHLO mail.example.com")
        assert c.cmd(f"MAIL FROM:<{SENDER}> SIZE=6000").startswith(b"250")
        assert c.cmd("RCPT TO:<bob@example.net>") == b"552 5.3.4 Message too big for this recipient"
        c.cmd("RSET")
        assert c.cmd(f"MAIL FROM:<{SENDER}> SIZE=100").startswith(b"250")
        assert c.cmd("RCPT TO:<bob@example.net>").startswith(b"250")
        assert c.cmd("DATA").startswith(b"354")
        assert c.cmd(big + b".") == b"552 5.3.4 Message too big after all"
    rcpt, eod = attempts(lab, 2)
    assert (rcpt.stage, eod.stage, eod.size) == ("rcpt", "end-of-data", len(big))


def test_data_stage_refusal_and_disconnect(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
stage = "data"
rcpt = "policy@example.net"
reply = "554 5.7.1 Rejected for policy"

[[rule]]
stage = "data"
rcpt = "hangup@example.net"
disconnect = true
""")
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt("bob@example.net")
        s.rcpt("policy@example.net")
        assert s.docmd("DATA") == (554, b"5.7.1 Rejected for policy")
        assert s.rcpt("bob@example.net")[0] == 503  # the transaction is over
    with _raw(lab) as c:
        c.cmd("EHLO mail.example.com")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        c.cmd("RCPT TO:<hangup@example.net>")
        c.send(b"DATA\r\n")
        assert c.sock.recv(100) == b""
    refused = attempts(lab, 3)
    assert [(a.stage, a.rcpt, a.code) for a in refused[:2]] == [
        ("data", "bob@example.net", 554), ("data", "policy@example.net", 554)]
    assert refused[2].stage == "data" and refused[2].disconnect and refused[2].reply == ""
    assert lab.store().count() == 0


def test_end_of_data_refusal_stores_nothing_and_a_seeded_retry_is_grouped_by_message_id(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
name = "flaky"
stage = "end-of-data"
probability = 0.5
reply = "451 4.3.0 Error: queue file write error"
""", rules_seed=1)  # random.Random(1): 0.134 (refused), then 0.847 (accepted)
    raw = message(subject="flaky")
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt("bob@example.net")
        assert s.data(raw) == (451, b"4.3.0 Error: queue file write error")
    assert lab.store().count() == 0  # never stored: the client was not told 250
    (a,) = attempts(lab, 1)
    store = lab.store()
    full, session = store.attempt(a.id)
    store.close()
    assert full.raw == raw and full.size == len(raw) and a.message_id and a.message_id in raw.decode()
    assert any(line[2].startswith("rule #1 'flaky'") for line in session)
    assert session[-1][1:] == ["<", "451 4.3.0 Error: queue file write error"]
    time.sleep(1.1)
    mid = send(lab, ["carol@example.net"], raw, "other@example.com")  # a retry found through its Message-ID
    r = checks(lab, mid)["retry.after_temporary"]
    assert r.level == "pass" and "451 4.3.0" in r.evidence["timeline"]


def test_end_of_data_delay_commits_before_the_250_and_silent_disconnect_stores_nothing(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
stage = "end-of-data"
rcpt = "slow@example.net"
delay = 1.0

[[rule]]
stage = "end-of-data"
rcpt = "drop@example.net"
disconnect = true
""")
    with _raw(lab) as c:
        c.cmd("EHLO mail.example.com")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        c.cmd("RCPT TO:<slow@example.net>")
        c.cmd("DATA")
        c.send(message(subject="slow") + b".\r\n")
        t0 = time.monotonic()
        assert until(lambda: lab.store().count() == 1, timeout=0.9)  # stored while the 250 is held
        reply = c.reply()
        assert reply.startswith(b"250 2.0.0 OK: queued as") and time.monotonic() - t0 >= 0.8
    with _raw(lab) as c:
        c.cmd("EHLO mail.example.com")
        c.cmd(f"MAIL FROM:<{SENDER}>")
        c.cmd("RCPT TO:<drop@example.net>")
        c.cmd("DATA")
        c.send(message(subject="dropped") + b".\r\n")
        assert c.sock.recv(100) == b""
    (a,) = attempts(lab, 1)
    assert (a.stage, a.reply, a.disconnect) == ("end-of-data", "", True)
    assert lab.store().count() == 1


def test_rules_file_dsn_with_a_delayed_status_and_a_custom_autoreply(make_lab, tmp_path):
    (pop3,) = free_ports(1)
    lab, _ = rules_lab(make_lab, tmp_path, """
[[rule]]
rcpt = "full@example.net"
dsn = "452 4.2.2 <{rcpt}>: Mailbox full"

[[rule]]
rcpt = "support@example.net"
autoreply = "The support desk is closed until Monday."
""", pop3_port=pop3)
    with relay(lab) as s:
        s.sendmail(SENDER, ["full@example.net", "support@example.net"], message())
    until(lambda: len(mailbox_over_pop3(pop3, SENDER)) == 2)
    texts = mailbox_over_pop3(pop3, SENDER)
    dsn = next(t for t in texts if b"delivery-status" in t)
    assert b"Action: delayed" in dsn and b"Status: 4.2.2" in dsn
    assert any(b"The support desk is closed until Monday." in t for t in texts)


def test_rules_are_reloaded_on_change_and_a_broken_edit_keeps_them(make_lab, tmp_path):
    lab, path = rules_lab(make_lab, tmp_path, '[[rule]]\nrcpt = "a@example.net"\nreply = "550 5.1.1 gone A"\n')
    heard: list[tuple[str, bool]] = []
    lab.engine.subscribe_rules(lambda text, bad: heard.append((text, bad)))

    def rcpt(address: str) -> int:
        with relay(lab) as s:
            s.ehlo()
            s.mail(SENDER)
            return s.rcpt(address)[0]

    assert (rcpt("a@example.net"), rcpt("b@example.net")) == (550, 250)
    path.write_text('[[rule]]\nrcpt = "b@example.net"\nreply = "550 5.1.1 gone B, now"\n')
    until(lambda: rcpt("b@example.net") == 550, timeout=5, every=0.2)
    assert rcpt("a@example.net") == 250
    until(lambda: any("reloaded" in t for t, _ in heard))
    path.write_text('[[rule]]\nrcpt = "c@example.net"\nreply = "nonsense"\n')
    until(lambda: any(bad for _, bad in heard), timeout=5, every=0.1)
    text = next(t for t, bad in heard if bad)
    assert str(path) in text and "[[rule]] #1" in text and "still using the rules loaded before" in text
    assert (rcpt("b@example.net"), rcpt("c@example.net")) == (550, 250)
    assert lab.engine.rules_error is not None


def test_a_rule_that_fails_is_ignored_and_mail_still_flows(make_lab, tmp_path):
    lab, _ = rules_lab(make_lab, tmp_path, '[[rule]]\nrcpt = "x@example.net"\nreply = "550 5.1.1 no"\n')

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a rule")

    lab.engine.handler.ruleset().decide = broken
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt("x@example.net")[0] == 250


# the acceptance test of issue 8 ----------------------------------------------------------------------------


class RetryingApp:
    """A tiny sender that does what a well-behaved application should: retry a 4xx with a growing delay,
    give up on a 5xx at once. An asyncio SMTP client, as an application's mail queue would be."""

    def __init__(self, port: int, sender: str, delays=(1.1, 2.2, 4.4)):
        self.port, self.sender, self.delays = port, sender, delays

    async def _send_once(self, rcpt: str, raw: bytes) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def reply() -> int:
            while (line := await reader.readline())[3:4] == b"-":
                pass
            return int(line[:3])

        async def cmd(text: bytes) -> int:
            writer.write(text + b"\r\n")
            return await reply()

        try:
            await reply()
            for command in (b"EHLO app.example.com", b"MAIL FROM:<" + self.sender.encode() + b">",
                            b"RCPT TO:<" + rcpt.encode() + b">", b"DATA"):
                code = await cmd(command)
                if code >= 400:
                    return code
            return await cmd(raw.replace(b"\r\n.", b"\r\n..") + b".")
        finally:
            writer.close()

    async def send(self, rcpt: str) -> str:
        raw = message(to=rcpt, subject=f"to {rcpt}")
        for delay in (*self.delays, None):
            code = await self._send_once(rcpt, raw)
            if code < 400:
                return "sent"
            if code >= 500 or delay is None:
                return "failed"
            await asyncio.sleep(delay)
        return "failed"


POP3_PORT = free_ports(1)[0]


@pytest.mark.maillab(greylist_delay=1, pop3_port=POP3_PORT)
def test_my_app_retries_a_soft_bounce_stops_on_a_hard_bounce_and_reads_the_dsn_over_pop3(maillab, capsys):
    app = RetryingApp(maillab.port("relay"), sender="bounces@app.example")
    assert asyncio.run(app.send("greylist@example.net")) == "sent"  # 451 first, sent on the retry
    assert asyncio.run(app.send("bounce-hard@example.net")) == "failed"  # 550: given up at once
    assert asyncio.run(app.send("bounce-hard+dsn@example.net")) == "sent"  # accepted, bounced afterwards

    assert maillab.wait_for(to="greylist@example.net").checks["retry.after_temporary"].level == "pass"

    from lab.cli import main  # the hard bounce: one attempt, not retried (`maillab list --attempts --json`)
    main(["list", "--attempts", "--json", "--data-dir", str(maillab.data_dir)])
    hard = next(g for g in json.loads(capsys.readouterr().out) if g["rcpt"] == "bounce-hard@example.net")
    assert len(hard["attempts"]) == 1 and {c["id"]: c["level"] for c in hard["checks"]} == {
        "retry.after_permanent": "pass"}

    dsn = until(lambda: [m for m in mailbox_over_pop3(POP3_PORT, "bounces@app.example")
                         if b"Final-Recipient: rfc822; bounce-hard+dsn@example.net" in m])
    assert b"Status: 5.1.1" in dsn[0] and b"Action: failed" in dsn[0]


def test_a_refused_attempt_is_shown_by_list_and_show(make_lab, capsys):
    from lab.cli import main

    lab = make_lab(greylist_delay=1)
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt("greylist@example.net")[0] == 451
    time.sleep(1.1)
    with relay(lab) as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt("greylist@example.net")
        mid = queued_id(s.data(message())[1])
    lab.wait(mid)
    data_dir = str(lab.config.data_dir)
    assert main(["list", "--attempts", "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    assert f"MAIL FROM:<{SENDER}> -> greylist@example.net: 1 attempt, then accepted as message #{mid}" in out
    assert "451 4.7.1" in out and "retry.after_temporary" in out
    assert main(["show", str(mid), "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out
    assert "[retry]" in out and "Attempts (1)" in out and "greylist@: greylisted" in out
    assert main(["show", str(mid), "--json", "--data-dir", data_dir]) == 0
    doc = json.loads(capsys.readouterr().out)
    (a,) = doc["attempts"]
    assert (a["kind"], a["stage"], a["code"], a["status"], a["envelope"]["rcpt"]) == (
        "refused", "rcpt", 451, "4.7.1", "greylist@example.net")
    assert any(c["id"] == "retry.after_temporary" for c in doc["checks"])
