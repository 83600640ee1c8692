"""Test support: paths, fixture keys, message builders and DKIM signing with dkimpy."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path

import dkim

from lab.core.model import Capture, Client, Envelope, Listener, Transport

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
ZONES = sorted((FIXTURES / "zones").glob("*.zone"))
SHARED = ROOT.parent / "shared" / "data"
GOOD_IP = "192.0.2.10"
BAD_IP = "203.0.113.5"
def key(name: str) -> bytes:
    return (FIXTURES / "keys" / name).read_bytes()


def message(
    from_: str = "Alice <alice@example.com>",
    to: str = "bob@example.net",
    subject: str = "Hello",
    body: str = "Hi Bob,\r\nthis is a test.\r\n",
    extra: str = "",
    date: datetime | None = None,
) -> bytes:
    """A well-formed CRLF message; `extra` is inserted as more header lines."""
    domain = from_.rpartition("@")[2].rstrip(">") or "example.com"
    head = (
        f"From: {from_}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(date or datetime.now(UTC))}\r\nMessage-ID: {make_msgid(domain=domain)}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}"
    )
    return (head + "\r\n" + body).encode()


def sign(raw: bytes, selector: str = "rsa2048", domain: str = "example.com", keyfile: str | None = None,
         **kwargs) -> bytes:
    """DKIM-sign with dkimpy using a fixture key; ed25519 when the key file ends in .ed25519."""
    keyfile = keyfile or f"{domain}.{selector}.pem"
    priv = key(keyfile)
    if keyfile.endswith(".ed25519"):
        kwargs.setdefault("signature_algorithm", b"ed25519-sha256")
        priv = priv.strip()
    headers = kwargs.pop("include_headers", [b"from", b"to", b"subject", b"date", b"message-id"])
    sig = dkim.sign(raw, selector.encode(), domain.encode(), priv, include_headers=headers, **kwargs)
    return sig + raw


def capture(
    raw: bytes,
    mail_from: str = "alice@example.com",
    ip: str = GOOD_IP,
    helo: str | None = "mail.example.com",
    listener: Listener = Listener.SUBMISSION,
    tls: bool = True,
    auth: str | None = "alice",
    received_at: datetime | None = None,
) -> Capture:
    return Capture(
        raw=raw,
        envelope=Envelope(mail_from=mail_from, rcpt_to=("bob@example.net",), helo=helo),
        transport=Transport(listener, 2587, "TLSv1.3" if tls else None, "TLS_AES_256_GCM_SHA384" if tls else None,
                            "PLAIN" if auth else None, auth),
        client=Client(ip=ip, peer_ip="127.0.0.1", source="xclient"),
        received_at=received_at or datetime.now(UTC),
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def free_ports(n: int) -> list[int]:
    """n TCP ports free on loopback right now (bound together, so they differ)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def psl_rule_names(label: str) -> list[str]:
    """`label` under every rule of the Public Suffix List bundled with publicsuffixlist (wildcards filled in),
    as written and, for internationalised rules, in punycode too: for comparing lookups with the library's."""
    from publicsuffixlist import PSLFILE

    text = Path(PSLFILE).read_text(encoding="utf-8")
    rules = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("//")]
    names = []
    for rule in rules:
        name = f"{label}." + rule.lstrip("!").replace("*", "w")
        names.append(name)
        if not name.isascii():
            names.append(name.encode("idna").decode("ascii"))
    return names
