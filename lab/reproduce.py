"""Provides the swaks command line that sends a captured message again with the same envelope and transport."""

from __future__ import annotations

import shlex
from pathlib import Path

from lab.core.model import Capture, Listener


def swaks_command(capture: Capture, ports: dict[str, int], eml: Path, host: str = "127.0.0.1") -> str:
    t, e, c = capture.transport, capture.envelope, capture.client
    listener = t.listener.value if t.listener is not Listener.CLI else "relay"
    args = ["swaks", "--server", f"{host}:{ports.get(listener, 2525)}"]
    if listener == "smtps":
        args.append("--tls-on-connect")
    elif t.tls or listener == "submission":
        args.append("--tls")
    if t.authenticated or listener in ("submission", "smtps"):
        args += ["--auth", t.auth_mechanism or "PLAIN", "--auth-user", t.auth_user or "user",
                 "--auth-password", "PASSWORD"]
    if c.source == "xclient":
        args += ["--xclient-addr", c.ip]
        if c.name:
            args += ["--xclient-name", c.name]
    if e.helo:
        args += ["--helo", e.helo]
    args += ["--from", e.mail_from or "<>"]
    for rcpt in e.rcpt_to:
        args += ["--to", rcpt]
    args += ["--data", f"@{eml}"]
    return shlex.join(args)
