"""Fuzz target: the SMTP conversation against a real lab over raw sockets.

Hypothesis drives a conversation step by step (each choice may depend on the replies so far): valid and
invalid verbs, arguments with control characters and 8-bit bytes, huge lines, pipelined batches, STARTTLS
and AUTH, DATA bodies with dot lines, bare LF and CR, data that ends early and carries commands after the
end mark, and early disconnects. Properties:

- every reply line is `^[2-5]\\d\\d[ -]...` and ends in CRLF; no reply reports a server-side exception
  (aiosmtpd's `500 Error: (ExceptionType) ...`) or a store failure (`451 4.3.0`);
- the server closes the connection only after 221 (QUIT), 421, or aiosmtpd's `502 ... goodbye` for too many
  unrecognised commands;
- every message acknowledged with 250 is stored byte-exact (Store.raw) and gets a verdict;
- after each example a fresh connection gets 220 and can deliver a normal message (the lab is alive).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field

import pytest
from fuzzsupport import fuzz_settings
from hypothesis import assume, given, note
from hypothesis import strategies as st
from support import message
from support.client import client_tls, queued_id
from support.lab import RunningLab

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(900)]  # shrinking a failure can outlast the default 120 s

SETTINGS = fuzz_settings("smtp", 350)
MAX_SIZE = 64 * 1024  # the lab's message size limit here, so the 552 path is reachable
TIMEOUT = 10
REPLY = re.compile(rb"^[2-5]\d\d[ -]")
END = b"\r\n.\r\n"
CHUNK = 1 << 16  # lab.smtp.server reads DATA in chunks of this size

# Known lab bugs, each pinned by an xfail(strict=True) test in test_fuzz_regressions.py with its input under
# fixtures/fuzz/. The target tolerates exactly these so it keeps hunting for new ones; when a bug is fixed its
# regression test XPASSes (a failure, being strict): then delete the matching allowance here.


def known_bug(text: bytes, sent_8bit: bool) -> bool:
    """No known bug is tolerated now (the 8-bit envelope 451 was fixed); kept as the place to pin one."""
    return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    running = RunningLab(tmp_path_factory.mktemp("fuzz-smtp") / "data", max_size=MAX_SIZE)
    yield running
    running.stop()


class ServerClosed(AssertionError):
    pass


@dataclass
class Conversation:
    """One raw connection and what was said on it, for the failure report."""

    sock: socket.socket
    log: list[bytes] = field(default_factory=list)
    buf: bytes = b""
    tls: bool = False
    may_close: bool = False  # the server said it would close (221, 421, 502 goodbye)
    in_auth: bool = False  # the last reply was a 334 challenge: the next line is an AUTH response
    sent_8bit: bool = False  # a command line was not valid UTF-8
    queued: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    def open(cls, port: int, implicit_tls: bool) -> Conversation:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        conv = cls(sock)
        if implicit_tls:
            conv.sock = client_tls().wrap_socket(sock)
            conv.tls = True
        return conv

    def send(self, data: bytes, command: bool = True) -> None:
        if command:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.sent_8bit = True
        self.log.append(b"C: " + data[:300] + (b"...[%d bytes]" % len(data) if len(data) > 300 else b""))
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError) as exc:
                raise ServerClosed(f"connection reset: {exc}") from exc
            except TimeoutError as exc:
                raise AssertionError(f"no reply within {TIMEOUT}s; buffered {self.buf!r}") from exc
            if not chunk:
                raise ServerClosed(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def reply(self) -> bytes:
        """One whole reply, each line checked; the closing and AUTH state follow from it."""
        lines = []
        while True:
            line = self._line()
            self.log.append(b"S: " + line[:300])
            assert line.endswith(b"\r\n"), f"reply line not ended by CRLF: {line!r}"
            assert REPLY.match(line), f"malformed reply line: {line!r}"
            assert lines == [] or line[:3] == lines[0][:3], f"multi-line reply changes code: {lines + [line]!r}"
            lines.append(line)
            if line[3:4] == b" ":
                break
        text = b"".join(lines)
        if not known_bug(text, self.sent_8bit):
            assert not text.startswith(b"500 Error: ("), f"the server raised while handling a command: {text!r}"
            assert not text.startswith(b"451 4.3.0"), f"the lab could not store a message: {text!r}"
        code = text[:3]
        if code in (b"221", b"421") or (code == b"502" and b"goodbye" in text):
            self.may_close = True
        self.in_auth = code == b"334"
        return text

    def replies(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            out.append(self.reply())
            if self.may_close:
                break
        return out

    def starttls(self) -> None:
        assert not self.buf, f"bytes after the STARTTLS 220: {self.buf!r}"
        self.sock = client_tls().wrap_socket(self.sock)
        self.tls = True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- strategies -------------------------------------------------------------------------------------------

VERBS = ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH",
         "XCLIENT", "BDAT", "TURN", "ETRN")
SPECIAL = {b"DATA", b"STARTTLS", b"QUIT"}  # change how the bytes after them are read: last in a batch only
CONTROL = st.sampled_from([b"\x00", b"\r", b"\t", b"\x1b[2J", b"\x7f", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b" ",
                           b"<", b">", b":", b"=", b"+", b"\\", b"\"", b"%", b"\x85", b"\xe2\x80\xae"])
ADDRESSES = ("alice@example.com", "bob@example.net", "a@b", "", "postmaster", "\"quoted local\"@example.org",
             "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]", "ünï@exämple.com", "@relay:user@example.com",
             "a" * 300 + "@example.com", "user@" + "d" * 300)
ARG_PIECE = st.one_of(
    st.binary(max_size=20),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([a.encode() for a in ADDRESSES]),
    CONTROL,
    st.sampled_from([b"FROM:", b"TO:", b"FROM:<>", b"<alice@example.com>", b"SIZE=1000", b"SIZE=99999999999",
                     b"BODY=8BITMIME", b"BODY=BINARYMIME", b"SMTPUTF8", b"NOTIFY=SUCCESS", b"RET=HDRS",
                     b"ENVID=x+2Bx", b"ORCPT=rfc822;a@b", b"AUTH=<>", b"PLAIN", b"LOGIN", b"CRAM-MD5", b"XOAUTH2",
                     b"ADDR=192.0.2.10", b"ADDR=IPV6:2001:db8::1", b"ADDR=[UNAVAILABLE]", b"NAME=mail.example.com",
                     b"HELO=x", b"ADDR=+ZZ", b"LOGIN=+41", b"PROTO=ESMTP", b"BAD=1", b"ADDR=", b"=", b"+", b"*",
                     b"AGFsaWNlAHNlY3JldA==", b"YWxpY2U=", b"===="]),
    st.integers(0, 12_000).map(lambda n: b"x" * n),
)


@st.composite
def argument(draw) -> bytes:
    return b"".join(draw(st.lists(ARG_PIECE, max_size=5)))


@st.composite
def verb(draw) -> bytes:
    choice = draw(st.integers(0, 9))
    if choice < 8:
        v = draw(st.sampled_from(VERBS))
        return (v.lower() if draw(st.integers(0, 5)) == 0 else v).encode()
    if choice == 8:
        return draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)).encode()
    return draw(st.binary(max_size=10))


@st.composite
def command(draw, special: bool = True) -> bytes:
    """One command line, without its ending; may contain bare CR, or bare LF (then it is several lines)."""
    v = draw(verb())
    sep = draw(st.sampled_from([b" ", b" ", b"  ", b"\t", b""]))
    arg = draw(argument()) if draw(st.integers(0, 4)) else b""
    line = v + (sep + arg if arg or draw(st.booleans()) else b"")
    if draw(st.integers(0, 8)) == 0:
        line = line.replace(b"x", b"\n", 1)
    if not special:
        assume(all(_verb(part) not in SPECIAL for part in line.split(b"\n")))
    return line


def _verb(line: bytes) -> bytes:
    return line.rstrip(b"\r\n").partition(b" ")[0].upper()


EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])

BODY_PIECE = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b".", b"..", b".\r\n", b"\r\n.\r\n", b"\r\n..\r\n", b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n",
                     b"\r\n.x", b"\r\n", b"\n", b"\r", b"\x00", b"\r\n\r\n", b"\r\n.\r", b".\n", b"\xff\xfe",
                     b"\r\nQUIT\r\n", b"\r\nMAIL FROM:<evil@example.com>\r\n", b"From: x@example.com\r\n"]),
    st.integers(0, 20_000).map(lambda n: b"L" * n),
)


@st.composite
def body(draw) -> bytes:
    if draw(st.integers(0, 3)) == 0:  # a well-formed message (support.message() draws a random Message-ID)
        subject = draw(st.text(max_size=30)).replace("\r", "").replace("\n", "")
        return (f"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
                "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <fuzz@example.com>\r\n"
                f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                f"{draw(st.text(max_size=200))}").encode("utf-8", "surrogatepass")
    data = b"".join(draw(st.lists(BODY_PIECE, max_size=12)))
    if draw(st.integers(0, 10)) == 0:
        data += b"B" * draw(st.integers(MAX_SIZE - 200, MAX_SIZE * 3))
    return data


def stuffed(data: bytes) -> tuple[bytes, bytes]:
    """The wire form of `data` as a correct client sends it, and the bytes the lab must store."""
    content = data if data.endswith(b"\r\n") or not data else data + b"\r\n"
    wire = (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n"
    return wire, content


def unstuffed(wire: bytes) -> tuple[bytes, bytes]:
    """What the server makes of raw DATA bytes: the content up to the first end mark, and what follows."""
    buf = b"\r\n" + wire
    idx = buf.find(END)
    assert idx >= 0
    return buf[: idx + 2].replace(b"\r\n.", b"\r\n")[2:], buf[idx + len(END):]


# -- steps ------------------------------------------------------------------------------------------------


def step_commands(conv: Conversation, data) -> None:
    """A pipelined batch of command lines (one to eight), answered one reply per line."""
    lines = data.draw(st.lists(command(special=False), min_size=1, max_size=8), label="batch")
    last = data.draw(st.one_of(st.none(), st.sampled_from([b"DATA", b"QUIT", b"STARTTLS"])), label="last")
    eols = [data.draw(EOL) for _ in lines]
    wire = b"".join(line + eol for line, eol in zip(lines, eols, strict=True))
    if last is not None:
        wire += last + b"\r\n"
    conv.send(wire)
    got = conv.replies(wire.count(b"\n"))
    if conv.may_close or last is None:
        return
    final = got[-1][:3]
    if last == b"DATA" and final == b"354":
        send_data(conv, data)
    elif last == b"STARTTLS" and final == b"220":
        conv.starttls()


def step_transaction(conv: Conversation, data) -> None:
    """EHLO, MAIL, RCPT, DATA pipelined (arguments sometimes fuzzed), then the message if DATA got 354."""
    def arg(default: bytes) -> bytes:
        return default if data.draw(st.integers(0, 3)) else data.draw(argument())

    lines = []
    if data.draw(st.integers(0, 3)):
        lines.append(b"EHLO " + arg(b"mail.example.com"))
    lines.append(b"MAIL FROM:" + arg(b"<alice@example.com>"))
    for _ in range(data.draw(st.integers(0, 3))):
        lines.append(b"RCPT TO:" + arg(b"<bob@example.net>"))
    assume(all(_verb(part) not in SPECIAL for line in lines for part in line.split(b"\n")))
    wire = b"".join(line + b"\r\n" for line in lines) + b"DATA\r\n"
    conv.send(wire)
    got = conv.replies(wire.count(b"\n"))
    if not conv.may_close and got[-1][:3] == b"354":
        send_data(conv, data)


def send_data(conv: Conversation, data) -> None:
    """After 354: a correct message, one whose bytes end early and carry commands, or a disconnect."""
    content = data.draw(body(), label="body")
    mode = data.draw(st.sampled_from(["stuffed", "stuffed", "stuffed", "early", "partial"]), label="data mode")
    if mode == "partial":  # the client goes away mid-message
        conv.send(stuffed(content)[0][: data.draw(st.integers(0, len(content)))], command=False)
        raise Disconnected
    if mode == "early":
        tail = data.draw(st.lists(command(special=False), min_size=1, max_size=4))
        wire = content + END + b"".join(t + b"\r\n" for t in tail)
        stored, rest = unstuffed(wire)
        assume(all(_verb(line) not in SPECIAL for line in rest.split(b"\n")))
        expect_lines = rest.count(b"\n")
        conv.send(wire[: len(wire) - len(rest)], command=False)
        conv.send(rest)  # read as commands
    else:
        wire, stored = stuffed(content)
        expect_lines = 0
        conv.send(wire, command=False)
    reply = conv.reply()
    size = len(stored)
    if size < MAX_SIZE - 100 and not known_bug(reply, conv.sent_8bit):
        assert reply.startswith(b"250 "), f"{size}-octet message not accepted: {reply!r}"
    elif size > MAX_SIZE + 100:  # the limit counts the unstuffed content, give or take the final CRLF
        assert reply.startswith(b"552 "), f"{size}-octet message over the {MAX_SIZE} limit: {reply!r}"
    if reply.startswith(b"250 "):
        conv.queued.append((queued_id(reply), stored))
    if expect_lines and not conv.may_close:
        conv.replies(expect_lines)


def step_auth(conv: Conversation, data) -> None:
    """AUTH with a mechanism and zero to three challenge responses."""
    mech = data.draw(st.sampled_from([b"PLAIN", b"LOGIN", b"CRAM-MD5", b"plain", b"XOAUTH2", b""]))
    initial = data.draw(st.one_of(st.none(), argument(), st.just(b"AGFsaWNlAHNlY3JldA=="), st.just(b"=")))
    assume(initial is None or b"\n" not in initial)
    conv.send(b"AUTH " + mech + (b" " + initial if initial is not None else b"") + b"\r\n")
    conv.reply()
    for _ in range(3):
        if not conv.in_auth or conv.may_close:
            return
        response = data.draw(st.one_of(argument(), st.sampled_from([b"*", b"YWxpY2U=", b"c2VjcmV0", b"=",
                                                                      b"alice 0123456789abcdef0123456789abcdef"])))
        assume(b"\n" not in response)
        conv.send(response + b"\r\n")
        conv.reply()


def step_huge(conv: Conversation, data) -> None:
    """A line over every limit (512 for commands, 8192 for the reader), possibly split across sends."""
    v = data.draw(st.sampled_from([b"MAIL FROM:<", b"RCPT TO:<", b"HELO ", b"NOOP ", b"XCLIENT NAME=", b"X"]))
    n = data.draw(st.integers(400, 70_000))
    line = v + data.draw(st.sampled_from([b"a", b"\x00", b"\xff", b"\r"])) * n + b"\r\n"
    cut = data.draw(st.integers(0, len(line)))
    conv.send(line[:cut])
    conv.send(line[cut:])
    conv.reply()


def step_partial(conv: Conversation, data) -> None:
    """Half a command line, then the client goes away."""
    conv.send(data.draw(command())[: data.draw(st.integers(0, 40))])
    raise Disconnected


class Disconnected(Exception):
    """The client hung up on purpose."""


STEPS = {"commands": step_commands, "transaction": step_transaction, "auth": step_auth, "huge": step_huge,
         "partial": step_partial}
STEP_NAMES = st.sampled_from(["commands", "commands", "transaction", "transaction", "transaction", "auth", "huge",
                              "partial"])


# -- the property -----------------------------------------------------------------------------------------


def deliver_normal(lab: RunningLab) -> None:
    raw = message(subject="liveness")
    with smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="mail.example.com", timeout=TIMEOUT) as s:
        code, _ = s.ehlo()
        assert code == 250
        s.mail("alice@example.com")
        s.rcpt("bob@example.net")
        code, reply = s.data(raw)
        assert code == 250, reply
    check_stored(lab, [(queued_id(reply), raw)])


def check_stored(lab: RunningLab, queued: list[tuple[int, bytes]]) -> None:
    store = lab.store()
    try:
        for mid, expected in queued:
            got = store.raw(mid)
            assert got == expected, f"message {mid} stored as {got!r:.300}, sent {expected!r:.300}"
    finally:
        store.close()
    for mid, _ in queued:
        lab.wait(mid)  # the analysis worker judged it (it fails the test if the verdict never comes)


@SETTINGS
@given(data=st.data())
def test_smtp_conversation(lab, data):
    listener = data.draw(st.sampled_from(["relay", "relay", "relay", "submission", "smtps"]), label="listener")
    conv = Conversation.open(lab.port(listener), implicit_tls=listener == "smtps")
    try:
        greeting = conv.reply()
        assert greeting.startswith(b"220 "), greeting
        if listener != "relay" and data.draw(st.booleans(), label="authenticate first"):
            if not conv.tls:
                conv.send(b"EHLO client.example.com\r\nSTARTTLS\r\n")
                assert conv.replies(2)[-1].startswith(b"220")
                conv.starttls()
            conv.send(b"EHLO client.example.com\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
            assert conv.replies(2)[-1].startswith(b"235"), conv.log
        try:
            for _ in range(data.draw(st.integers(1, 6), label="steps")):
                STEPS[data.draw(STEP_NAMES, label="step")](conv, data)
                if conv.may_close:
                    break
            else:
                if conv.in_auth:
                    conv.send(b"*\r\n")
                    conv.reply()
                if not conv.may_close:
                    conv.send(b"QUIT\r\n")
                    assert conv.reply().startswith(b"221"), conv.log
        except Disconnected:
            pass
        except ServerClosed as exc:
            if not conv.may_close:
                raise AssertionError(f"the server closed the connection unasked: {exc}") from exc
    finally:
        note(b"\n".join(conv.log).decode("utf-8", "backslashreplace")[-6000:])
        conv.close()
    check_stored(lab, conv.queued)
    deliver_normal(lab)


def test_lab_accepts_a_normal_message_after_the_fuzzing(lab):
    deliver_normal(lab)
