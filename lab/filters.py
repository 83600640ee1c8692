"""Asks real spam filters on this machine what they think of a message: rspamd over HTTP, SpamAssassin's spamd.

An adapter (network IO), so it lives outside lab.core; lab.core.checks.content.external_results() turns what
it returns into results shown beside the lab's own content score. Each filter is asked once with short
timeouts (1 s to connect, and the whole exchange bounded by a deadline) and a filter that is not running,
answers garbage or is slow gives None: a missing filter is normal and never an error.

    rspamd   POST /checkv2 on the normal worker (127.0.0.1:11333), envelope in the IP/Helo/From/Rcpt headers,
             JSON answer (docs.rspamd.com/developers/protocol)
    spamd    REPORT SPAMC/1.5 on 127.0.0.1:783, score in the "Spam:" header, the rules in the report table
             (SpamAssassin spamd/PROTOCOL)
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from lab.core.checks.content import ExternalScore
from lab.core.model import Capture

if TYPE_CHECKING:
    import http.client

RSPAMD_PORT = 11333
SPAMD_PORT = 783
TIMEOUT = 1.0  # seconds to connect, and between any two reads
DEADLINE = 10.0  # seconds for the whole exchange: a filter that drips its answer is given up on
MAX_REPLY = 4 * 1024 * 1024
_SERVER = re.compile(r"rspamd/([\w.+-]{1,20})", re.I)
_SPAM_HEADER = re.compile(r"(?i)^spam:\s*(true|false|yes|no)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)", re.M)
_REPORT_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_]+)\s*(.*)$")


def external_scores(capture: Capture, host: str = "127.0.0.1", rspamd_port: int | None = RSPAMD_PORT,
                    spamd_port: int | None = SPAMD_PORT, timeout: float = TIMEOUT) -> list[ExternalScore]:
    """The opinion of every filter that answers, for a captured message and its envelope (None port: skip)."""
    env, ip = capture.envelope, capture.client.ip
    out = []
    if rspamd_port:
        out.append(rspamd(capture.raw, ip=ip, helo=env.helo, mail_from=env.mail_from, rcpt=env.rcpt_to,
                          host=host, port=rspamd_port, timeout=timeout))
    if spamd_port:
        out.append(spamassassin(capture.raw, ip=ip, helo=env.helo, mail_from=env.mail_from, host=host,
                                port=spamd_port, timeout=timeout))
    return [s for s in out if s is not None]


def rspamd(raw: bytes, ip: str | None = None, helo: str | None = None, mail_from: str | None = None,
           rcpt: Iterable[str] = (), host: str = "127.0.0.1", port: int = RSPAMD_PORT,
           timeout: float = TIMEOUT, deadline: float = DEADLINE) -> ExternalScore | None:
    """rspamd's verdict from POST /checkv2, or None when rspamd does not answer usefully."""
    headers = {"Content-Length": str(len(raw))}
    if ip:
        headers["IP"] = ip
    if helo:
        headers["Helo"] = _header(helo)
    if mail_from is not None:
        headers["From"] = _header(mail_from) or "<>"
    import http.client  # only when rspamd listens: `maillab check` starts faster without it

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest("POST", "/checkv2", skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value.encode("utf-8", "replace"))
        for address in list(rcpt)[:100]:
            conn.putheader("Rcpt", _header(address).encode("utf-8", "replace"))
        conn.endheaders(raw)
        response = conn.getresponse()
        body = _read(response, time.monotonic() + deadline)
        if response.status != 200 or body is None:
            return None
        return parse_rspamd(body, response.getheader("Server"))
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def parse_rspamd(body: bytes, server: str | None = None) -> ExternalScore | None:
    """An ExternalScore from rspamd's JSON reply (and its Server header, for the version)."""
    try:
        data = json.loads(body)
        score = float(data["score"])
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(data, dict):
        return None
    rules: list[tuple[str, float, str]] = []
    symbols = data.get("symbols")
    if isinstance(symbols, dict):
        for name, sym in list(symbols.items())[:500]:
            if isinstance(sym, dict):
                rules.append((str(name), _float(sym.get("score")), str(sym.get("description") or "")))
    threshold = data.get("required_score")
    version = _SERVER.search(server or "")
    return ExternalScore("rspamd", score, _float(threshold) if threshold is not None else None,
                         str(data["action"]) if data.get("action") is not None else None, rules,
                         version.group(1) if version else None)


def spamassassin(raw: bytes, ip: str | None = None, helo: str | None = None, mail_from: str | None = None,
                 host: str = "127.0.0.1", port: int = SPAMD_PORT, timeout: float = TIMEOUT,
                 deadline: float = DEADLINE, user: str | None = None) -> ExternalScore | None:
    """SpamAssassin's verdict from spamd (REPORT), or None when spamd does not answer usefully.

    spamd takes no envelope, so the Return-Path and Received fields an MTA adds on delivery are put in
    front of the message: they are what SpamAssassin's SPF and relay rules read.
    """
    message = _trace(ip, helo, mail_from) + raw
    request = [b"REPORT SPAMC/1.5", b"Content-length: %d" % len(message)]
    if user:
        request.append(b"User: " + _header(user).encode("ascii", "replace"))
    end = time.monotonic() + deadline
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"\r\n".join(request) + b"\r\n\r\n" + message)
            sock.shutdown(socket.SHUT_WR)
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > end:
                    return None
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPLY:
                    return None
    except OSError:
        return None
    return parse_spamd(b"".join(chunks))


def parse_spamd(reply: bytes) -> ExternalScore | None:
    """An ExternalScore from a spamd reply to CHECK, SYMBOLS or REPORT."""
    text = reply.decode("utf-8", "replace")
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    status = head.split("\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith("SPAMD/") or status[1] != "0":
        return None
    m = _SPAM_HEADER.search(head)
    if m is None:
        return None
    spam = m.group(1).lower() in ("true", "yes")
    try:
        score, threshold = float(m.group(2)), float(m.group(3))
    except ValueError:
        return None
    return ExternalScore("spamassassin", score, threshold, "spam" if spam else "no action", _report_rules(body))


def _report_rules(body: str) -> list[tuple[str, float, str]]:
    """The rule table of a REPORT body (after the '---- ----' line); SYMBOLS gives names only, scored 0."""
    lines = body.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("----")), None)
    if start is None:
        names = [n.strip() for n in body.strip().split(",") if re.fullmatch(r"[A-Za-z0-9_]{1,60}", n.strip())]
        return [(n, 0.0, "") for n in names[:500]]
    rules: list[list] = []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        m = _REPORT_LINE.match(line)
        if m:
            rules.append([m.group(2), float(m.group(1)), m.group(3).strip()])
        elif line[:1].isspace() and rules:
            rules[-1][2] = f"{rules[-1][2]} {line.strip()}".strip()
        if len(rules) >= 500:
            break
    return [(name, pts, desc) for name, pts, desc in rules]


def _trace(ip: str | None, helo: str | None, mail_from: str | None) -> bytes:
    lines = []
    if mail_from is not None:
        lines.append(f"Return-Path: <{_header(mail_from)}>\r\n")
    if ip:
        when = format_datetime(datetime.now().astimezone())
        lines.append(f"Received: from {_header(helo or 'unknown')} ([{ip}])\r\n\tby maillab with ESMTP; {when}\r\n")
    return "".join(lines).encode("utf-8", "replace")


def _read(response: http.client.HTTPResponse, end: float) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > end:
            return None
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY:
            return None


def _header(value: str) -> str:
    """A value safe on one header line: no CR, LF or other controls (envelope text is client-supplied)."""
    return re.sub(r"[\x00-\x1f\x7f]", "", value)[:1000]


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
