"""The POP3 listener over real sockets: poplib, a raw line client and Debian's fetchmail read captured mail.

Each test stores messages with lab.store.Store, starts lab.pop3 on a free loopback port in its own
event-loop thread (as the engine runs it) and reads them back.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import logging
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support import free_ports, message
from support.client import LineClient, client_tls

from lab.core.model import Capture, Envelope
from lab.mailboxes import address_key, mailbox, octets, wire
from lab.pop3 import MAX_LINE, multiline, start_pop3, top
from lab.smtp.auth import Credentials
from lab.smtp.certs import ensure_certificate, server_context
from lab.store import Store

HOST = "127.0.0.1"

# Lines that start with dots (stuffed on the wire), a lone dot, an mbox "From " line and a long line.
DOTTED = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: dots\r\n\r\n"
          b".leading dot\r\n..two dots\r\n.\r\nFrom the middle\r\n" + b"x" * 1500 + b"\r\nlast line\r\n")


class Pop3Lab:
    """A store in a data directory and a POP3 listener on its own event loop, for blocking clients."""

    def __init__(self, data_dir: Path, tls: bool = True, credentials: Credentials | None = None, **options):
        self.db_path = data_dir / "maillab.db"
        self.store = Store(self.db_path)
        cert, key = ensure_certificate(data_dir / "tls", "maillab.localhost")
        self.tls = server_context(cert, key) if tls else None
        self.credentials = credentials
        self.options = options
        self.deleted: list[int] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = None
        self.start()

    def start(self, port: int = 0) -> None:
        coro = start_pop3(HOST, port, self.db_path, self.tls, self.credentials, "maillab.localhost",
                          on_delete=self.deleted.extend, **self.options)
        self.server = asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def restart(self) -> None:
        self.close_server()
        self.start()

    def close_server(self) -> float:
        """Close the listener and its sessions; returns how long that took."""
        started = time.monotonic()

        async def close():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(20)
        return time.monotonic() - started

    def stop(self) -> None:
        try:
            self.close_server()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.store.close()

    def put(self, raw: bytes, *rcpt: str) -> int:
        return self.store.add(Capture(raw=raw, envelope=Envelope(mail_from="alice@example.com",
                                                                  rcpt_to=rcpt or ("bob@example.net",))))

    def client(self, user: str | None = "bob@example.net", password: str = "any password") -> poplib.POP3:
        pop = poplib.POP3(HOST, self.port, timeout=10)
        if user is not None:
            pop.user(user)
            pop.pass_(password)
        return pop


class Raw(LineClient):
    """A line-level POP3 client for exact bytes and hostile input."""

    def __init__(self, port: int):
        super().__init__(port, HOST)
        self.greeting = self.line()

    def cmd(self, text: str | bytes) -> bytes:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        """The exact bytes of a multi-line body up to and including the terminating .CRLF."""
        while b"\r\n.\r\n" not in b"\r\n" + self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a multi-line response")
            self.buf += chunk
        end = (b"\r\n" + self.buf).index(b"\r\n.\r\n") + 3
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def closed(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True



@pytest.fixture
def pop3(tmp_path):
    labs: list[Pop3Lab] = []

    def start(**options) -> Pop3Lab:
        lab = Pop3Lab(tmp_path / f"data{len(labs)}", **options)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


def sessions_end(lab: Pop3Lab, within: float = 2) -> bool:
    """Whether the server's sessions all finish within `within` seconds."""
    deadline = time.monotonic() + within
    while lab.server.sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    return not lab.server.sessions


def joined(lines: list[bytes]) -> bytes:
    """poplib's lines (dot-unstuffed, line ends removed) back into message bytes."""
    return b"".join(line + b"\r\n" for line in lines)


# the byte transformations ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, sent", [
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),  # CRLF mail is sent as stored
    (b"a\nb\n", b"a\r\nb\r\n"),  # bare LF is a line end: CRLF on the wire
    (b"a\r\nb", b"a\r\nb\r\n"),  # the last line gets its CRLF, so the terminating dot stands alone
    (b"a\rb\r\n", b"a\rb\r\n"),  # a bare CR is content, not a line end
    (b"a\r", b"a\r\r\n"),
    (b"a\r\r\nb\n\n", b"a\r\r\nb\r\n\r\n"),
    (b"", b""),
])
def test_wire_form_and_its_size(raw, sent):
    assert wire(raw) == sent
    assert octets(raw) == len(sent)


def test_multiline_stuffs_every_line_that_starts_with_a_dot():
    assert multiline(b".a\r\nb.\r\n..\r\n.\r\n") == b"..a\r\nb.\r\n...\r\n..\r\n.\r\n"
    assert multiline(b"") == b".\r\n"
    assert multiline(b"a\r\n") == b"a\r\n.\r\n"


def test_top_cuts_after_the_header_and_n_body_lines():
    raw = b"Subject: t\r\nX: y\r\n\r\none\r\ntwo\r\nthree\r\n"
    assert top(raw, 0) == b"Subject: t\r\nX: y\r\n\r\n"
    assert top(raw, 2) == b"Subject: t\r\nX: y\r\n\r\none\r\ntwo\r\n"
    assert top(raw, 3) == top(raw, 99999999) == raw
    assert top(b"Subject: no body\r\n", 0) == b"Subject: no body\r\n"  # no blank line: all header
    assert top(b"\r\nbody only\r\n", 0) == b"\r\n"
    assert top(b"Subject: lf\n\nbody\nmore\n", 1) == b"Subject: lf\r\n\r\nbody\r\n"


# mailboxes -------------------------------------------------------------------------------------------

def test_mailbox_is_per_envelope_recipient_domain_case_insensitive_local_part_exact(pop3):
    lab = pop3()
    m1 = lab.put(message(subject="one"), "bob@example.net")
    m2 = lab.put(message(subject="two"), "bob@EXAMPLE.Net")
    m3 = lab.put(message(subject="three"), "Bob@example.net")
    m4 = lab.put(message(subject="four"), "bob+tag@example.net")
    m5 = lab.put(message(subject="five"), "carol@example.org", "bob@example.net")
    m6 = lab.put(message(subject="six"), "postmaster")
    assert [e.id for e in mailbox(lab.store, "bob@example.net")] == [m1, m2, m5]
    assert [e.id for e in mailbox(lab.store, "bob@Example.NET")] == [m1, m2, m5]
    assert [e.id for e in mailbox(lab.store, "<bob@example.net>")] == [m1, m2, m5]
    assert [e.id for e in mailbox(lab.store, "Bob@example.net")] == [m3]
    assert [e.id for e in mailbox(lab.store, "bob+tag@example.net")] == [m4]  # sub-addresses are not folded
    assert [e.id for e in mailbox(lab.store, "carol@example.org")] == [m5]
    assert [e.id for e in mailbox(lab.store, "postmaster")] == [m6]
    assert mailbox(lab.store, "bob") == [] and mailbox(lab.store, "nobody@example.net") == []
    every = [m1, m2, m3, m4, m5, m6]
    assert [e.id for e in mailbox(lab.store, "*")] == every
    assert [e.id for e in mailbox(lab.store, "CatchAll")] == every
    assert address_key("Bob@Example.NET") == ("Bob", "example.net")


def test_mailbox_sizes_are_wire_octets_and_uids_are_printable_and_unique(pop3):
    lab = pop3()
    ids = [lab.put(b"Subject: lf\n\nbare\n"), lab.put(DOTTED)]
    cache: dict[int, int] = {}
    entries = mailbox(lab.store, "bob@example.net", cache)
    assert [(e.id, e.size) for e in entries] == [(ids[0], len(b"Subject: lf\r\n\r\nbare\r\n")), (ids[1], len(DOTTED))]
    assert cache == {ids[0]: entries[0].size, ids[1]: entries[1].size}
    uids = [e.uid for e in entries]
    assert len(set(uids)) == 2
    for u in uids:
        assert u.startswith("maillab-") and 1 <= len(u) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in u)
    assert mailbox(lab.store, "bob@example.net") == entries  # the cache changes nothing but speed


# POP3 sessions with poplib ---------------------------------------------------------------------------

def test_capa_advertises_rfc2449_capabilities_and_stls_only_before_tls(pop3):
    lab = pop3()
    pop = lab.client(user=None)
    assert pop.getwelcome().startswith(b"+OK maillab.localhost")
    caps = pop.capa()
    for cap in ("TOP", "UIDL", "USER", "STLS", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"):
        assert cap in caps, cap
    assert caps["IMPLEMENTATION"] == ["maillab"] and caps["SASL"] == ["PLAIN"]
    pop.stls(client_tls())
    assert "STLS" not in pop.capa()
    with pytest.raises(poplib.error_proto, match="already using TLS"):
        pop._shortcmd("STLS")
    pop.user("bob@example.net")
    pop.pass_("x")
    caps = pop.capa()
    assert "TOP" in caps and "UIDL" in caps and "USER" not in caps and "STLS" not in caps
    pop.quit()


def test_stls_is_refused_after_login_and_not_offered_without_a_certificate(pop3):
    lab = pop3()
    pop = lab.client()
    with pytest.raises(poplib.error_proto, match="already logged in"):
        pop._shortcmd("STLS")
    pop.quit()
    plain = pop3(tls=False)
    pop = plain.client(user=None)
    assert "STLS" not in pop.capa()
    with pytest.raises(poplib.error_proto, match="not available"):
        pop._shortcmd("STLS")
    pop.quit()


def test_stat_list_uidl_and_uids_stable_across_sessions_and_restarts(pop3):
    lab = pop3()
    ids = [lab.put(message(subject=f"n{i}")) for i in range(3)]
    lab.put(message(subject="not bob's"), "carol@example.org")
    sizes = [octets(lab.store.raw(i)) for i in ids]
    pop = lab.client()
    assert pop.stat() == (3, sum(sizes))
    resp, lines, _ = pop.list()
    assert resp.startswith(b"+OK 3 messages") and lines == [f"{n} {s}".encode() for n, s in enumerate(sizes, 1)]
    assert pop.list(2) == f"+OK 2 {sizes[1]}".encode()
    _, uid_lines, _ = pop.uidl()
    uids = [line.split()[1] for line in uid_lines]
    assert [u.decode().rpartition("-")[0] for u in uids] == [f"maillab-{i}" for i in ids]
    assert pop.uidl(3).split()[2] == uids[2]
    pop.quit()
    pop = lab.client()
    assert [line.split()[1] for line in pop.uidl()[1]] == uids
    pop.quit()
    lab.restart()
    pop = lab.client()
    assert [line.split()[1] for line in pop.uidl()[1]] == uids
    pop.quit()


def test_retr_is_byte_exact_and_dot_stuffed_on_the_wire(pop3):
    lab = pop3()
    lab.put(DOTTED)
    pop = lab.client()
    resp, lines, _ = pop.retr(1)
    assert resp == f"+OK {len(DOTTED)} octets".encode()
    assert joined(lines) == DOTTED
    pop.quit()
    raw = Raw(lab.port)
    raw.cmd("USER bob@example.net")
    assert raw.cmd("PASS pw").startswith(b"+OK")
    assert raw.cmd("RETR 1") == f"+OK {len(DOTTED)} octets".encode()
    sent = raw.body()
    assert sent == DOTTED.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert b"\r\n..leading dot\r\n...two dots\r\n..\r\nFrom the middle\r\n" in sent
    raw.close()


def test_bare_lf_and_an_unterminated_last_line_go_out_as_crlf_with_matching_sizes(pop3):
    lab = pop3()
    lab.put(b"Subject: lf\n\n.dot\nbare\nlast")
    pop = lab.client()
    expected = b"Subject: lf\r\n\r\n.dot\r\nbare\r\nlast\r\n"
    assert pop.list(1) == f"+OK 1 {len(expected)}".encode()
    resp, lines, _ = pop.retr(1)
    assert resp == f"+OK {len(expected)} octets".encode() and joined(lines) == expected
    pop.quit()


def test_a_large_message_arrives_intact(pop3):
    lab = pop3()
    big = message(subject="big", body="".join(f".{i:07d} " + "y" * 70 + "\r\n" for i in range(60_000)))
    lab.put(big)
    pop = lab.client()
    assert joined(pop.retr(1)[1]) == big
    pop.quit()


def test_top_sends_the_header_and_n_lines(pop3):
    lab = pop3()
    lab.put(DOTTED)
    pop = lab.client()
    head = DOTTED[:DOTTED.index(b"\r\n\r\n") + 4]
    assert joined(pop.top(1, 0)[1]) == head
    assert joined(pop.top(1, 2)[1]) == head + b".leading dot\r\n..two dots\r\n"
    assert joined(pop.top(1, 1000)[1]) == DOTTED
    for bad in ("1 -1", "1 x", "1", "0 1", "9 1"):
        with pytest.raises(poplib.error_proto):
            pop._longcmd(f"TOP {bad}")
    pop.quit()


def test_dele_then_quit_deletes_from_the_lab_and_only_then(pop3):
    lab = pop3()
    keep, gone = lab.put(message(subject="keep")), lab.put(message(subject="gone"))
    other = lab.put(message(subject="carol's"), "carol@example.org")
    pop = lab.client()
    assert pop.dele(2).startswith(b"+OK")
    assert pop.stat() == (1, octets(lab.store.raw(keep)))
    assert [line.split()[0] for line in pop.list()[1]] == [b"1"]
    for command in ("RETR 2", "DELE 2", "LIST 2", "UIDL 2", "TOP 2 0"):
        with pytest.raises(poplib.error_proto, match="deleted"):
            pop._shortcmd(command)
    assert lab.store.raw(gone) is not None, "DELE alone must not delete"
    assert b"1 message deleted" in pop.quit()
    assert lab.store.raw(gone) is None
    assert lab.store.raw(keep) is not None and lab.store.raw(other) is not None
    assert lab.deleted == [gone]
    pop = lab.client("*")
    assert pop.stat()[0] == 2
    pop.quit()


def test_rset_undeletes_and_a_session_without_quit_deletes_nothing(pop3):
    lab = pop3()
    first, second = lab.put(message(subject="a")), lab.put(message(subject="b"))
    pop = lab.client()
    pop.dele(1)
    pop.dele(2)
    assert pop.stat()[0] == 0
    assert pop.rset().startswith(b"+OK maildrop has 2 messages")
    assert pop.stat()[0] == 2
    pop.dele(1)
    pop.quit()
    assert lab.store.raw(first) is None and lab.store.raw(second) is not None
    raw = Raw(lab.port)
    raw.cmd("USER bob@example.net")
    raw.cmd("PASS pw")
    assert raw.cmd("DELE 1").startswith(b"+OK")
    raw.close()  # the connection drops: no UPDATE state (RFC 1939 section 6)
    assert sessions_end(lab)
    assert lab.store.raw(second) is not None and lab.deleted == [first]


def test_the_snapshot_is_taken_at_pass(pop3):
    lab = pop3()
    lab.put(message(subject="before"))
    pop = lab.client()
    later = lab.put(message(subject="after"))
    assert pop.stat()[0] == 1
    with pytest.raises(poplib.error_proto, match="no such message"):
        pop.retr(2)
    pop.quit()
    pop = lab.client()
    assert pop.stat()[0] == 2 and joined(pop.retr(2)[1]) == lab.store.raw(later)
    pop.quit()


def test_a_message_deleted_in_the_lab_during_a_session_is_an_error_not_a_crash(pop3):
    lab = pop3()
    mid = lab.put(message())
    lab.put(message(subject="stays"))
    pop = lab.client()
    lab.store.delete(mid)
    with pytest.raises(poplib.error_proto, match="deleted from the lab"):
        pop.retr(1)
    assert pop.retr(2)[0].startswith(b"+OK")
    pop.dele(1)
    assert pop.quit().startswith(b"+OK")


def test_catch_all_reads_every_recipient(pop3):
    lab = pop3()
    ids = [lab.put(message(), "bob@example.net"), lab.put(message(), "carol@example.org"),
           lab.put(message(), "x@example.com", "y@example.com")]
    for user in ("*", "catchall", "CATCHALL"):
        pop = lab.client(user)
        assert pop.stat()[0] == 3
        assert [joined(pop.retr(n)[1]) for n in (1, 2, 3)] == [lab.store.raw(i) for i in ids]
        pop.quit()


# TLS ----------------------------------------------------------------------------------------------------

def test_stls_then_login_and_retr(pop3):
    lab = pop3()
    lab.put(DOTTED)
    pop = lab.client(user=None)
    pop.stls(client_tls())
    assert pop.sock.version() in ("TLSv1.2", "TLSv1.3")
    pop.user("bob@example.net")
    pop.pass_("pw")
    assert joined(pop.retr(1)[1]) == DOTTED
    pop.quit()
    assert sessions_end(lab)  # the TLS session closes cleanly, without waiting out a timeout


def test_stls_discards_plaintext_sent_before_the_handshake(pop3):
    """CVE-2011-0411 style injection: a command pipelined after STLS must not run inside TLS."""
    lab = pop3()
    raw = Raw(lab.port)
    raw.send(b"STLS\r\nUSER injected@example.net\r\n")
    assert raw.line() == b"+OK begin TLS negotiation"
    tls = client_tls().wrap_socket(raw.sock)
    tls.sendall(b"PASS pw\r\n")
    assert tls.recv(1000) == b"-ERR send USER first\r\n"
    tls.sendall(b"NOOP\r\n")
    assert tls.recv(1000).startswith(b"-ERR log in first")
    tls.close()


def test_stls_discards_plaintext_beyond_what_the_session_had_read(pop3):
    """More than one read's worth (64 KiB) after STLS: the rest waits in the stream's own buffer, and must go too.
    Either the handshake fails on the junk, or it succeeds and none of the junk is answered."""
    lab = pop3()
    raw = Raw(lab.port)
    raw.send(b"STLS\r\n" + b"NOOP\r\n" * 20_000)
    assert raw.line() == b"+OK begin TLS negotiation"
    time.sleep(0.2)
    try:
        tls = client_tls().wrap_socket(raw.sock)
    except (ssl.SSLError, OSError):
        return  # the junk reached the handshake: it was not run as commands either
    tls.sendall(b"CAPA\r\n")
    assert tls.recv(100).startswith(b"+OK capability list follows")
    tls.close()


def test_stls_forgets_a_user_name_given_before_it(pop3):
    lab = pop3()
    pop = lab.client(user=None)
    assert pop.user("bob@example.net") == b"+OK send PASS"
    pop.stls(client_tls())
    with pytest.raises(poplib.error_proto, match="send USER first"):
        pop.pass_("pw")
    pop.quit()


def test_a_failed_tls_handshake_closes_only_that_session(pop3):
    lab = pop3()
    raw = Raw(lab.port)
    assert raw.cmd("STLS") == b"+OK begin TLS negotiation"
    raw.send(b"this is not a TLS ClientHello\r\n" * 10)
    assert raw.closed()
    raw.close()
    assert sessions_end(lab)
    pop = lab.client(user=None)
    pop.stls(client_tls())
    pop.quit()


# AUTH and credentials -----------------------------------------------------------------------------------

def test_any_password_is_accepted_by_default_and_auth_plain_works(pop3):
    lab = pop3()
    lab.put(message())
    raw = Raw(lab.port)
    assert raw.cmd("AUTH") == b"+OK mechanisms follow"
    assert raw.body() == b"PLAIN\r\n.\r\n"
    assert raw.cmd("AUTH LOGIN").startswith(b"-ERR unsupported")
    assert raw.cmd("AUTH PLAIN") == b"+ "
    assert raw.cmd("*") == b"-ERR authentication cancelled"
    assert raw.cmd("AUTH PLAIN not-base64!").startswith(b"-ERR [AUTH]")
    assert raw.cmd("AUTH PLAIN " + base64.b64encode(b"only-one-part").decode()).startswith(b"-ERR [AUTH]")
    assert raw.cmd("AUTH PLAIN") == b"+ "
    assert raw.cmd(base64.b64encode(b"\x00bob@example.net\x00whatever").decode()) == \
        b"+OK bob@example.net has 1 message (%d octets)" % pop3_size(lab)
    assert raw.cmd("STAT").startswith(b"+OK 1 ")
    raw.close()


def pop3_size(lab: Pop3Lab) -> int:
    return sum(octets(lab.store.raw(i)) for i in lab.store.ids())


def test_a_credentials_file_is_enforced_and_passwords_are_never_logged(pop3, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="maillab.pop3")
    users = tmp_path / "users.txt"
    users.write_text("bob@example.net:Sekr1t-Zq9\nadmin:Adm1n-Pw-77\n", encoding="utf-8")
    lab = pop3(credentials=Credentials.from_file(users))
    lab.put(message(), "bob@example.net")
    lab.put(message(), "carol@example.org")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        lab.client("bob@example.net", "wrong-Pw-31")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        lab.client("carol@example.org", "Sekr1t-Zq9")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        lab.client("*", "anything-Pw-55")
    pop = lab.client("bob@example.net", "Sekr1t-Zq9")
    assert pop.stat()[0] == 1
    pop.quit()
    # AUTH PLAIN: a user of the file may open another mailbox by naming it as the authorization identity
    raw = Raw(lab.port)
    token = base64.b64encode(b"carol@example.org\x00admin\x00Adm1n-Pw-77").decode()
    assert raw.cmd("AUTH PLAIN " + token).startswith(b"+OK carol@example.org has 1 message")
    raw.close()
    raw = Raw(lab.port)
    token = base64.b64encode(b"carol@example.org\x00admin\x00wrong-Pw-31").decode()
    assert raw.cmd("AUTH PLAIN " + token).startswith(b"-ERR [AUTH]")
    raw.close()
    for secret in ("Sekr1t-Zq9", "Adm1n-Pw-77", "wrong-Pw-31", "anything-Pw-55", token):
        assert secret not in caplog.text
    assert "logged in" in caplog.text  # the log does say who logged in
    for path in lab.db_path.parent.glob("maillab.db*"):
        assert b"Sekr1t-Zq9" not in path.read_bytes()


def test_too_many_failed_logins_close_the_connection(pop3, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("bob@example.net:right\n", encoding="utf-8")
    lab = pop3(credentials=Credentials.from_file(users))
    raw = Raw(lab.port)
    replies = []
    for _ in range(5):
        raw.cmd("USER bob@example.net")
        replies.append(raw.cmd("PASS wrong"))
    assert replies[:4] == [b"-ERR [AUTH] invalid user name or password"] * 4
    assert replies[4].startswith(b"-ERR [AUTH] too many failed logins")
    assert raw.closed()
    raw.close()


# hostile input and limits -------------------------------------------------------------------------------

def test_hostile_input_gets_clear_errors_and_the_session_survives(pop3):
    lab = pop3()
    lab.put(message())
    raw = Raw(lab.port)
    assert raw.cmd("RETR 1") == b"-ERR log in first (USER and PASS, or AUTH PLAIN)"
    assert raw.cmd("PASS x") == b"-ERR send USER first"
    assert raw.cmd("APOP bob 0123456789abcdef").startswith(b"-ERR APOP is not supported")
    assert raw.cmd("USER").startswith(b"-ERR USER needs a mailbox name")
    assert raw.cmd("USER bad\x01name").startswith(b"-ERR")
    assert raw.cmd("") == b"-ERR unknown command"
    assert raw.cmd(b"\xff\xfe\x00\x01 binary") == b"-ERR unknown command"
    assert raw.cmd("X" * (MAX_LINE + 10)) == f"-ERR line too long (at most {MAX_LINE} octets)".encode()
    raw.send(b"Y" * 200_000)  # one line in many reads, then its end
    assert raw.cmd("") == f"-ERR line too long (at most {MAX_LINE} octets)".encode()
    assert raw.cmd("user bob@example.net") == b"+OK send PASS"  # keywords are case-insensitive
    assert raw.cmd("pass a password with spaces").startswith(b"+OK bob@example.net has 1 message")
    for bad in ("0", "2", "-1", "+1", "1x", "0x1", "1.0", "\uff11", "99999999999", "1 2"):
        assert raw.cmd(f"RETR {bad}").startswith(b"-ERR"), bad
        assert raw.cmd(f"LIST {bad}").startswith(b"-ERR"), bad
    assert raw.cmd("STAT extra").startswith(b"-ERR")
    assert raw.cmd("USER again") == b"-ERR already logged in"
    assert raw.cmd("NOOP") == b"+OK"
    assert raw.cmd("LIST 1").startswith(b"+OK 1 ")
    assert raw.cmd("QUIT") == b"+OK maillab POP3 signing off"
    assert raw.closed()
    raw.close()


def test_an_endless_line_is_cut_off(pop3):
    lab = pop3()
    raw = Raw(lab.port)
    try:
        raw.send(b"Z" * (3 << 20))
    except OSError:
        pass  # the server may close while we are still sending
    assert raw.line() == b"-ERR line too long; closing"
    assert raw.closed()
    raw.close()


def test_pipelined_commands_are_answered_in_order(pop3):
    lab = pop3()
    lab.put(DOTTED)
    raw = Raw(lab.port)
    raw.send(b"CAPA\r\nUSER bob@example.net\r\nPASS pw\r\nSTAT\r\nRETR 1\r\nUIDL 1\r\nQUIT\r\n")
    assert raw.line() == b"+OK capability list follows" and b"PIPELINING\r\n" in raw.body()
    assert raw.line() == b"+OK send PASS"
    assert raw.line().startswith(b"+OK bob@example.net has 1 message")
    assert raw.line() == f"+OK 1 {len(DOTTED)}".encode()
    assert raw.line() == f"+OK {len(DOTTED)} octets".encode()
    assert raw.body() == multiline(DOTTED)
    assert raw.line().startswith(b"+OK 1 maillab-1-")
    assert raw.line() == b"+OK maillab POP3 signing off"
    raw.close()


def test_an_idle_session_is_logged_out_without_deleting(pop3):
    lab = pop3(idle_timeout=0.5)
    mid = lab.put(message())
    raw = Raw(lab.port)
    raw.cmd("USER bob@example.net")
    raw.cmd("PASS pw")
    assert raw.cmd("DELE 1").startswith(b"+OK")
    assert raw.line().startswith(b"-ERR [SYS/TEMP] autologout")
    assert raw.closed()
    raw.close()
    assert lab.store.raw(mid) is not None


def test_sessions_beyond_the_limit_are_refused(pop3):
    lab = pop3(max_sessions=1)
    first = Raw(lab.port)
    second = socket.create_connection((HOST, lab.port), timeout=10)
    assert second.recv(1000).startswith(b"-ERR [SYS/TEMP] too many POP3 sessions")
    second.close()
    assert first.cmd("NOOP").startswith(b"-ERR log in first")
    first.close()


def test_closing_the_server_ends_idle_sessions_promptly_and_deletes_nothing(pop3):
    lab = pop3()
    mid = lab.put(message())
    raw = Raw(lab.port)
    raw.cmd("USER bob@example.net")
    raw.cmd("PASS pw")
    raw.cmd("DELE 1")
    assert lab.close_server() < 5
    assert raw.closed()
    raw.close()
    assert lab.store.raw(mid) is not None
    lab.start()  # so the fixture's stop() has a server to close


def test_a_busy_port_is_an_oserror(pop3):
    lab = pop3()
    with pytest.raises(OSError):
        asyncio.run_coroutine_threadsafe(
            start_pop3(HOST, lab.port, lab.db_path, None, None, "maillab.localhost"), lab.loop).result(10)


def test_a_free_port_from_the_support_helper_works(pop3):
    lab = pop3()
    lab.close_server()
    lab.start(free_ports(1)[0])
    pop = lab.client(user=None)
    assert pop.getwelcome().startswith(b"+OK")
    pop.quit()


# fetchmail -------------------------------------------------------------------------------------------------

FETCHMAIL = shutil.which("fetchmail")
needs_fetchmail = pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail is not installed (apt-get install fetchmail)")


def fetchmail(lab: Pop3Lab, home: Path, user: str, keep: bool, tls: bool = True) -> subprocess.CompletedProcess:
    """One fetchmail poll delivering to `home/out` through an MDA that appends the exact bytes."""
    home.mkdir(exist_ok=True)
    rc = home / "fetchmailrc"
    options = ["keep" if keep else "fetchall", "no stripcr", "no sslcertck"]  # the lab's certificate is self-signed
    if not tls:
        options.append("sslproto ''")
    rc.write_text(
        "set no syslog\nset invisible\n"  # invisible: no Received header of its own, so bytes compare exactly
        f"poll {HOST} with proto POP3 port {lab.port} uidl\n"
        f'  user "{user}" there with password "fetch-Pw-1" is "{getpass.getuser()}" here\n'
        f"  options {' '.join(options)}\n"
        f'  mda "cat >> {home / "out"}"\n', encoding="utf-8")
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home), "LC_ALL": "C"}
    return subprocess.run([FETCHMAIL, "-v", "-f", str(rc), "--idfile", str(home / "ids"),
                           "--pidfile", str(home / "pid")], env=env, capture_output=True, text=True, timeout=60)


@needs_fetchmail
def test_fetchmail_over_stls_keeps_mail_and_remembers_uids(pop3, tmp_path):
    lab = pop3()
    mid = lab.put(DOTTED)
    lab.put(message(subject="for carol"), "carol@example.org")
    home = tmp_path / "fetch"
    run = fetchmail(lab, home, "bob@example.net", keep=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "upgrade to TLS succeeded" in log
    assert (home / "out").read_bytes() == DOTTED
    assert "maillab-1-" in (home / "ids").read_text()
    again = fetchmail(lab, home, "bob@example.net", keep=True)
    assert again.returncode == 1, again.stdout + again.stderr  # 1: no new mail, since the UID was seen
    assert "1 seen" in again.stdout + again.stderr
    assert (home / "out").read_bytes() == DOTTED
    assert lab.store.raw(mid) == DOTTED


@needs_fetchmail
def test_fetchmail_without_keep_deletes_what_it_fetched(pop3, tmp_path):
    lab = pop3()
    first, second = lab.put(DOTTED), lab.put(b"Subject: lf\n\nbare lf body\n")
    other = lab.put(message(subject="for carol"), "carol@example.org")
    home = tmp_path / "fetch"
    run = fetchmail(lab, home, "bob@example.net", keep=False, tls=False)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "POP3> STLS" not in log and "POP3> PASS" in log  # cleartext, as asked
    assert (home / "out").read_bytes() == DOTTED + b"Subject: lf\r\n\r\nbare lf body\r\n"
    assert lab.store.raw(first) is None and lab.store.raw(second) is None
    assert lab.store.raw(other) is not None
    assert sorted(lab.deleted) == [first, second]

