"""Client helpers for talking to a running lab."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess
import time


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def queued_id(reply: bytes | str) -> int:
    text = reply.decode() if isinstance(reply, bytes) else reply
    m = re.search(r"queued as (\d+)", text)
    assert m, f"no queue id in {text!r}"
    return int(m.group(1))


def send(smtp: smtplib.SMTP, raw: bytes, mail_from: str = "alice@example.com",
         rcpt: tuple[str, ...] = ("bob@example.net",)) -> int:
    """MAIL, RCPT, DATA by hand so the 250 reply (with its queue id) is visible."""
    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(mail_from)
    assert code == 250, reply
    for r in rcpt:
        code, reply = smtp.rcpt(r)
        assert code == 250, reply
    code, reply = smtp.data(raw)
    assert code == 250, reply
    return queued_id(reply)


class LineClient:
    """A socket read a CRLF line at a time, for exact bytes; the SMTP and POP3 raw clients build on it."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; buffered {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def close(self) -> None:
        self.sock.close()


class RawClient(LineClient):
    """A line-level SMTP client for exact bytes: pipelining, smuggling, protocol abuse."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        super().__init__(port, host)
        self.greeting = self.reply()

    def reply(self) -> bytes:
        """One whole (possibly multi-line) reply."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"\r\n".join(lines)

    def cmd(self, text: str | bytes) -> bytes:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.reply()



def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Until a `maillab serve` started as `proc` accepts connections on `port`; fails with its stderr if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
