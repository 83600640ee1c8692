"""Shared test fixtures: offline DNS from fixtures/zones, the test keys, message builders and a DNS guard.

Every test runs offline. Any attempt to use the system resolver fails loudly, because this sandbox
answers NXDOMAIN for unknown names, which would silently turn checks into "none".
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path

import dkim
import dns.resolver
import pytest

from lab.core.dnsview import LayeredView
from lab.core.model import Capture, Client, Envelope, Listener, Transport
from lab.resolver import load_zones

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ZONES = sorted((FIXTURES / "zones").glob("*.zone"))
SHARED = ROOT.parent / "shared" / "data"
GOOD_IP = "192.0.2.10"
BAD_IP = "203.0.113.5"


class _NoRealDNS(dns.resolver.Resolver):
    def __init__(self, *args, **kwargs):
        super().__init__(configure=False)

    def resolve(self, *args, **kwargs):
        raise AssertionError(f"a test tried real DNS: {args[:2]}")


@pytest.fixture(autouse=True, scope="session")
def _no_real_dns():
    dns.resolver.default_resolver = _NoRealDNS()
    yield


@pytest.fixture(scope="session")
def view() -> LayeredView:
    return LayeredView(load_zones(ZONES))


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
