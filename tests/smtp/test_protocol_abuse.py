"""Protocol abuse over real sockets, each answered with an exact reply (Postfix smtpd is the model).

Commands out of order, unknown verbs, over-long lines, floods, clients that stop or crawl, STARTTLS
injection, SMTP smuggling and AUTH in cleartext. Replies are compared whole: code, enhanced status code
(RFC 3463) and text.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support import message
from support.client import RawClient, client_tls, queued_id

HOST = "maillab.localhost"  # Config.hostname
OK, MAIL_OK, RCPT_OK = b"250 2.0.0 OK", b"250 2.1.0 OK", b"250 2.1.5 OK"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>"
NEED_EHLO = b"503 5.5.1 Error: send HELO/EHLO first"
NEED_MAIL = b"503 5.5.1 Error: need MAIL command"
NEED_RCPT = b"503 5.5.1 Error: need RCPT command"
NEED_TLS = b"530 5.7.0 Must issue a STARTTLS command first"
TOO_LONG = b"500 5.5.2 Error: command line too long"
CANNOT_VRFY = b"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"
TIMEOUT = f"421 4.4.2 {HOST} Error: timeout exceeded".encode()
COMMANDS = b"DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"
HELP = b"214 2.0.0 Supported commands: " + COMMANDS
RELAY_AUTH = (b"502 5.5.1 AUTH is not offered on the relay listener (port 25 role); "
              b"submit on the submission or smtps listener")
PLAIN = "AUTH PLAIN AGFsaWNlAHNlY3JldA=="  # alice / secret


class TLSClient(RawClient):
    """RawClient over implicit TLS (the smtps listener)."""

    def __init__(self, port: int):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_tls().wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.greeting = self.reply()


def starttls(c: RawClient) -> None:
    """Start TLS on a RawClient after its 220; nothing may be buffered from the cleartext phase."""
    assert c.buf == b"", f"cleartext after the 220: {c.buf!r}"
    c.sock = client_tls().wrap_socket(c.sock, server_hostname="localhost")


def replies(c: RawClient, n: int) -> list[bytes]:
    return [c.reply() for _ in range(n)]


def rest(c: RawClient) -> bytes:
    """Everything the server still sends until it closes the connection."""
    data, c.buf = c.buf, b""
    while chunk := c.sock.recv(65536):
        data += chunk
    return data


def nothing_pending(c: RawClient, wait: float = 0.3) -> bool:
    c.sock.settimeout(wait)
    try:
        c.sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    finally:
        c.sock.settimeout(10)
    return False


def in_background(c: RawClient, data: bytes) -> threading.Thread:
    """Write a flood while the replies are read, so neither side's buffers can stall the other."""
    t = threading.Thread(target=c.send, args=(data,))
    t.start()
    return t


def stored_ids(lab) -> list[int]:
    store = lab.store()
    try:
        return store.ids()
    finally:
        store.close()


# commands out of order ----------------------------------------------------------------------------

def test_commands_before_ehlo_on_relay(lab):
    """RFC 5321 4.1.4: NOOP, RSET, HELP, VRFY and QUIT work at any time; a transaction needs EHLO first."""
    c = RawClient(lab.port("relay"))
    assert c.greeting == f"220 {HOST} maillab ESMTP".encode()
    assert c.cmd("NOOP") == OK
    assert c.cmd("RSET") == OK
    assert c.cmd("HELP") == HELP  # AUTH is not listed: the relay does not offer it
    assert c.cmd("HELP MAIL") == b"214 2.0.0 Syntax: MAIL FROM: <address>"
    assert c.cmd("VRFY <bob@example.net>") == CANNOT_VRFY
    assert c.cmd("MAIL FROM:<a@example.com>") == NEED_EHLO
    assert c.cmd("RCPT TO:<b@example.net>") == NEED_EHLO
    assert c.cmd("DATA") == NEED_EHLO
    assert c.cmd(PLAIN) == RELAY_AUTH
    assert c.cmd("QUIT") == b"221 2.0.0 Bye"
    assert rest(c) == b""
    c.close()


def test_commands_before_ehlo_on_submission_and_smtps(lab):
    """RFC 3207 4: before TLS only NOOP, EHLO, STARTTLS and QUIT; STARTTLS needs no EHLO first."""
    c = RawClient(lab.port("submission"))
    assert c.cmd("NOOP") == OK
    for cmd in ("HELO x.example.com", "RSET", "HELP", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.net>", "DATA",
                PLAIN, "XCLIENT ADDR=192.0.2.1"):
        assert c.cmd(cmd) == NEED_TLS, cmd
    assert c.cmd("STARTTLS") == b"220 2.0.0 Ready to start TLS"
    starttls(c)
    assert c.cmd("MAIL FROM:<a@example.com>") == NEED_EHLO
    assert c.cmd(PLAIN) == b"503 5.5.1 Error: send EHLO first"
    c.close()
    s = TLSClient(lab.port("smtps"))
    assert s.cmd("MAIL FROM:<a@example.com>") == NEED_EHLO
    assert s.cmd(PLAIN) == b"503 5.5.1 Error: send EHLO first"
    assert s.cmd("HELO x.example.com") == f"250 {HOST}".encode()
    assert s.cmd(PLAIN) == b"503 5.5.1 Error: send EHLO first (AUTH needs ESMTP, not HELO)"
    s.close()


def test_transaction_commands_out_of_sequence(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    assert c.cmd("DATA") == NEED_RCPT
    assert c.cmd("RCPT TO:<b@example.net>") == NEED_MAIL
    assert c.cmd("MAIL FROM:<a@example.com>") == MAIL_OK
    assert c.cmd("MAIL FROM:<a@example.com>") == b"503 5.5.1 Error: nested MAIL command"
    assert c.cmd("DATA") == NEED_RCPT
    assert c.cmd("RSET") == OK
    assert c.cmd("RCPT TO:<b@example.net>") == NEED_MAIL  # RSET ended the transaction
    assert c.cmd("MAIL FROM:<a@example.com>") == MAIL_OK  # and a new one may start
    c.close()


def test_truncated_addresses_are_malformed_not_a_server_error(lab):
    """The stdlib address parser raises IndexError on these; aiosmtpd turned that into `500 Error: (IndexError)`."""
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    for arg in ("<", "<a@", " <"):
        assert c.cmd(f"MAIL FROM:{arg}") == b"553 5.1.3 Error: malformed address", arg
    assert c.cmd("VRFY <") == b"501 5.1.3 Bad recipient address syntax"
    assert c.cmd("MAIL FROM:<a@example.com>") == MAIL_OK
    assert c.cmd("RCPT TO:<") == b"553 5.1.3 Error: malformed address"
    c.close()


def test_unknown_verbs_get_500_then_421_and_disconnect(lab):
    """aiosmtpd's budget is five unknown verbs; the fifth gets a 421 (not a bare close) as in Postfix."""
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    assert c.cmd("FOO bar") == b'500 5.5.2 Error: command "FOO" not recognized'
    assert c.cmd(b"\x1b[2J") == b'500 5.5.2 Error: command "?[2J" not recognized'  # never echoed raw
    assert c.cmd("NOOP") == OK  # known commands do not refill the budget
    assert c.cmd("X" * 100) == b'500 5.5.2 Error: command "' + b"X" * 40 + b'" not recognized'
    assert c.cmd("BOGUS") == b'500 5.5.2 Error: command "BOGUS" not recognized'
    assert c.cmd("ZAP") == f"421 4.7.0 {HOST} Error: too many unrecognized commands".encode()
    assert rest(c) == b""
    c.close()


def test_only_empty_lines_get_500s_then_421_too_many_errors(lab):
    """Postfix's smtpd_hard_error_limit (20): twenty 500 replies, then 421 and nothing more is answered."""
    c = RawClient(lab.port("relay"))
    c.send(b"\r\n" * 30 + b"NOOP\r\n")
    assert replies(c, 20) == [b"500 5.5.2 Error: bad syntax"] * 20
    assert rest(c) == f"421 4.7.0 {HOST} Error: too many errors\r\n".encode()
    c.close()


# limits -----------------------------------------------------------------------------------------

def test_a_thousand_recipients_get_100_accepted_and_900_452(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    sender = in_background(c, b"".join(f"RCPT TO:<r{i}@example.net>\r\n".encode() for i in range(1000)))
    got = replies(c, 1000)
    sender.join()
    assert got == [RCPT_OK] * 100 + [b"452 4.5.3 Error: too many recipients (at most 100 per message)"] * 900
    assert c.cmd("DATA") == GO_AHEAD
    raw = message(subject="a hundred of a thousand")
    mid = queued_id(c.cmd(raw + b"."))
    c.close()
    store = lab.store()
    assert store.get(mid).capture.envelope.rcpt_to == tuple(f"r{i}@example.net" for i in range(100))
    assert store.raw(mid) == raw
    store.close()


def test_over_long_command_lines_get_500_and_the_session_goes_on(lab):
    """RFC 5321 4.5.3.1.4: 512 octets a command line; MAIL may be longer by the SIZE and SMTPUTF8 allowances."""
    c = RawClient(lab.port("relay"))
    assert c.cmd("NOOP " + "x" * 507) == OK  # 512 octets
    assert c.cmd("NOOP " + "x" * 508) == TOO_LONG  # 513
    assert c.cmd("NOOP " + "x" * 8188) == TOO_LONG  # 8193: past the line reader's own limit
    assert c.cmd("NOOP " + "x" * 100_000) == TOO_LONG
    assert c.cmd("X" * 100_000) == TOO_LONG  # one reply however long, and no "unrecognized" after it
    c.cmd("EHLO x.example.com")
    mail = "MAIL FROM:<{}@example.com>"
    assert c.cmd(mail.format("a" * (548 - len(mail.format(""))))) == MAIL_OK  # 512 + 26 (SIZE) + 10 (SMTPUTF8)
    c.cmd("RSET")
    too_long = mail.format("a" * (549 - len(mail.format(""))))
    assert c.cmd(too_long) == TOO_LONG
    c.send(b"EHLO x.example.com\r\n" * 300)  # aiosmtpd grew the allowance on every EHLO, for every connection
    replies(c, 300)
    assert c.cmd(too_long) == TOO_LONG
    assert c.cmd("MAIL FROM:<a@example.com>") == MAIL_OK
    assert c.cmd("RCPT TO:<b@example.net>") == RCPT_OK
    assert c.cmd("DATA") == GO_AHEAD
    assert c.cmd(message() + b".").startswith(b"250 2.0.0 OK: queued as ")
    c.close()


# floods -----------------------------------------------------------------------------------------

def test_five_thousand_pipelined_noops_get_five_thousand_replies_in_order(lab):
    c = RawClient(lab.port("relay"))
    commands = ["HELP NOOP" if i % 1000 == 999 else "NOOP" for i in range(5000)] + ["QUIT"]
    sender = in_background(c, "".join(f"{cmd}\r\n" for cmd in commands).encode())
    got = replies(c, 5001)
    sender.join()
    expected = [b"214 2.0.0 Syntax: NOOP [ignored]" if cmd == "HELP NOOP" else OK for cmd in commands[:-1]]
    assert got == expected + [b"221 2.0.0 Bye"]
    assert rest(c) == b""
    c.close()


def test_two_hundred_whole_transactions_in_one_write(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    raws = [message(subject=f"flood {i}") for i in range(200)]
    flood = b"".join(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b%d@example.net>\r\nDATA\r\n%s.\r\n" % (i, raw)
                     for i, raw in enumerate(raws))
    sender = in_background(c, flood + b"QUIT\r\n")
    got = replies(c, 801)
    sender.join()
    c.close()
    assert got[-1] == b"221 2.0.0 Bye"
    ids = []
    for i in range(200):
        mail, rcpt, go, done = got[4 * i: 4 * i + 4]
        assert (mail, rcpt, go) == (MAIL_OK, RCPT_OK, GO_AHEAD)
        assert done == b"250 2.0.0 OK: queued as %d (captured by maillab, never delivered)" % queued_id(done)
        ids.append(queued_id(done))
    store = lab.store()
    assert store.ids() == sorted(ids)
    for i, mid in enumerate(ids):
        assert store.raw(mid) == raws[i]
        assert store.get(mid).capture.envelope.rcpt_to == (f"b{i}@example.net",)
    store.close()


# clients that stop or crawl ---------------------------------------------------------------------

def test_a_client_that_stops_mid_data_leaves_nothing_stored(lab):
    """The client half-closes after a partial end mark: no reply, the connection is closed, nothing stored."""
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    assert c.cmd("DATA") == GO_AHEAD
    c.send(b"Subject: half\r\n\r\nthe end mark never completes\r\n.\r")
    c.sock.shutdown(socket.SHUT_WR)
    assert rest(c) == b""
    c.close()
    assert stored_ids(lab) == []


def test_an_idle_client_gets_421_then_the_connection_closes(make_lab):
    lab = make_lab(idle_timeout=1.5)
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    start = time.monotonic()
    assert c.line() == TIMEOUT
    assert rest(c) == b""
    assert 1.2 < time.monotonic() - start < 5
    c.close()


def test_a_client_that_stalls_mid_data_times_out_and_nothing_is_stored(make_lab):
    lab = make_lab(idle_timeout=1.5)
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    assert c.cmd("DATA") == GO_AHEAD
    c.send(b"Subject: stalled\r\n\r\nand then nothing")
    assert c.line() == TIMEOUT
    assert rest(c) == b""
    c.close()
    assert stored_ids(lab) == []


def test_a_client_trickling_data_completes(make_lab):
    """Every read resets the idle timer: 3 s of one byte per 0.5 s under a 1.5 s timeout still delivers."""
    lab = make_lab(idle_timeout=1.5)
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    assert c.cmd("DATA") == GO_AHEAD
    c.send(b"Subject: slow\r\n\r\n")
    for byte in b"x\r\n.\r\n":
        time.sleep(0.5)
        c.send(bytes([byte]))
    mid = queued_id(c.reply())
    c.close()
    store = lab.store()
    assert store.raw(mid) == b"Subject: slow\r\n\r\nx\r\n"
    store.close()


# TLS and AUTH -----------------------------------------------------------------------------------

@pytest.mark.parametrize("listener", ["relay", "submission"])
def test_commands_pipelined_after_starttls_are_discarded(lab, listener):
    """RFC 3207 4.2 (CVE-2011-0411): what came in cleartext with STARTTLS is neither answered nor acted on."""
    c = RawClient(lab.port(listener))
    c.cmd("EHLO x.example.com")
    c.send(f"STARTTLS\r\n{PLAIN}\r\nMAIL FROM:<evil@example.com>\r\n".encode())
    assert c.reply() == b"220 2.0.0 Ready to start TLS"
    assert c.buf == b"" and nothing_pending(c), "a cleartext reply to an injected command"
    starttls(c)
    c.cmd("EHLO x.example.com")
    if listener == "submission":
        assert c.cmd("RCPT TO:<b@example.net>") == b"530 5.7.0 Authentication required"  # the AUTH was dropped
        assert c.cmd(PLAIN) == b"235 2.7.0 Authentication successful"
    assert c.cmd("RCPT TO:<b@example.net>") == NEED_MAIL  # and so was the MAIL
    c.close()


def test_starttls_when_tls_is_already_active(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    assert c.cmd("STARTTLS") == b"220 2.0.0 Ready to start TLS"
    starttls(c)
    assert c.cmd("STARTTLS") == b"554 5.5.1 Error: TLS already active"  # aiosmtpd tried TLS inside TLS
    assert c.cmd("NOOP") == OK
    c.close()
    s = TLSClient(lab.port("smtps"))
    s.cmd("EHLO x.example.com")
    assert s.cmd("STARTTLS") == b"554 5.5.1 Error: TLS already active"
    s.close()


def test_auth_in_cleartext_is_refused(lab):
    c = RawClient(lab.port("submission"))
    ehlo = c.cmd("EHLO x.example.com")
    assert b"250-STARTTLS" in ehlo and b"AUTH" not in ehlo
    assert c.cmd(PLAIN) == NEED_TLS
    assert c.cmd("AUTH LOGIN") == NEED_TLS
    c.close()
    r = RawClient(lab.port("relay"))
    r.cmd("EHLO x.example.com")
    assert r.cmd(PLAIN) == RELAY_AUTH
    r.cmd("STARTTLS")
    starttls(r)
    r.cmd("EHLO x.example.com")
    assert r.cmd(PLAIN) == RELAY_AUTH  # not a TLS matter: the port 25 role takes no AUTH
    r.close()
    s = TLSClient(lab.port("smtps"))
    s.cmd("EHLO x.example.com")
    assert s.cmd("MAIL FROM:<alice@example.com>") == b"530 5.7.0 Authentication required"
    assert s.cmd("AUTH") == b"501 5.5.4 Syntax: AUTH mechanism [initial-response]"
    assert s.cmd("AUTH KERBEROS_V4") == b"504 5.5.4 Unrecognized authentication type"
    assert s.cmd(PLAIN) == b"235 2.7.0 Authentication successful"
    assert s.cmd(PLAIN) == b"503 5.5.1 Error: already authenticated"
    assert s.cmd("MAIL FROM:<alice@example.com>") == MAIL_OK
    s.close()


# SMTP smuggling ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("mark", "kept"), [
    (b"\n.\n", b"\n.\n"),
    (b"\r.\r", b"\r.\r"),
    (b"\r\n.\n", b"\r\n\n"),  # a line starting with "." (its end is the next CRLF): the dot is unstuffed
    (b"\n.\r\n", b"\n.\r\n"),
], ids=["LF.LF", "CR.CR", "CRLF.LF", "LF.CRLF"])
def test_smuggled_end_of_data_variants_are_content(lab, mark, kept):
    smuggled = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
                b"From: evil@example.com\r\nSubject: smuggled\r\n\r\nevil\r\n")
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    assert c.cmd("DATA") == GO_AHEAD
    reply = c.cmd(b"Subject: cover\r\n\r\nbefore" + mark + smuggled + b".")
    assert reply == b"250 2.0.0 OK: queued as %d (captured by maillab, never delivered)" % queued_id(reply)
    assert c.cmd("RCPT TO:<x@example.net>") == NEED_MAIL  # no smuggled MAIL was run
    c.close()
    store = lab.store()
    assert store.ids() == [queued_id(reply)]
    assert store.raw(queued_id(reply)) == b"Subject: cover\r\n\r\nbefore" + kept + smuggled
    store.close()


# the rest: CHUNKING, VRFY, EXPN, HELP -----------------------------------------------------------

def test_bdat_is_refused_as_chunking_is_not_offered(lab):
    c = RawClient(lab.port("relay"))
    assert b"CHUNKING" not in c.cmd("EHLO x.example.com")
    assert c.cmd("BDAT 0 LAST") == b"502 5.5.1 Error: BDAT is not offered (no CHUNKING); use DATA"
    assert c.cmd("NOOP") == OK
    c.close()


def test_a_bdat_chunk_sent_anyway_is_discarded_not_read_as_commands(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    c.cmd("MAIL FROM:<a@example.com>")
    c.cmd("RCPT TO:<b@example.net>")
    chunk = b"RSET\r\nMAIL FROM:<evil@example.com>\r\nQUIT\r\n"  # commands hidden in the chunk
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert c.reply() == b"502 5.5.1 Error: BDAT is not offered (no CHUNKING); use DATA"
    assert c.cmd("NOOP") == OK  # the session goes on: none of the chunk's lines was answered
    assert c.cmd("MAIL FROM:<c@example.com>") == b"503 5.5.1 Error: nested MAIL command"  # the transaction stands
    c.close()


def test_vrfy_expn_and_help_replies(lab):
    c = RawClient(lab.port("relay"))
    c.cmd("EHLO x.example.com")
    assert c.cmd("VRFY bob@example.net") == CANNOT_VRFY
    assert c.cmd("VRFY") == b"501 5.5.4 Syntax: VRFY <address>"
    assert c.cmd("VRFY <<bob") == b"501 5.1.3 Bad recipient address syntax"
    assert c.cmd("EXPN staff") == b"502 5.5.1 Error: EXPN is not implemented"
    assert c.cmd("HELP RCPT") == b"214 2.0.0 Syntax: RCPT TO: <address> [SP <mail-parameters>]"
    assert c.cmd("HELP FROB") == b"501 5.5.4 HELP: unknown command; supported commands: " + COMMANDS
    assert c.cmd("MAIL FROM:<a@example.com> FROB=1") == (
        b"555 5.5.4 MAIL FROM parameters not recognized or not implemented")
    assert c.cmd("MAIL") == b"501 5.5.4 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
    c.close()
    s = TLSClient(lab.port("smtps"))
    s.cmd("EHLO x.example.com")
    s.cmd(PLAIN)
    assert s.cmd("HELP") == b"214 2.0.0 Supported commands: AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY"
    s.close()
