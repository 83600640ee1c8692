"""Provides the facts a message arrives with: envelope, transport and the capture that joins them to the bytes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Listener(StrEnum):
    """The role a listener plays; each mirrors one of the three real SMTP ports."""

    RELAY = "relay"  # port 25: MTA to MTA, no AUTH
    SUBMISSION = "submission"  # port 587: STARTTLS, then AUTH
    SMTPS = "smtps"  # port 465: implicit TLS, then AUTH
    CLI = "cli"  # `maillab check FILE`: no SMTP session at all

    @property
    def real_port(self) -> int | None:
        return {"relay": 25, "submission": 587, "smtps": 465}.get(self.value)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the client said in MAIL and RCPT, and how it introduced itself."""

    mail_from: str = ""  # "" is the null reverse-path <>
    rcpt_to: tuple[str, ...] = ()
    helo: str | None = None
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    smtputf8: bool = False

    @property
    def mail_from_domain(self) -> str | None:
        return domain_of(self.mail_from)


@dataclass(frozen=True, slots=True)
class Transport:
    """How the message travelled: which listener, whether TLS protected it and who authenticated."""

    listener: Listener = Listener.CLI
    port: int | None = None
    tls_version: str | None = None  # "TLSv1.3"; None when the session was cleartext
    tls_cipher: str | None = None
    auth_mechanism: str | None = None  # "PLAIN", "LOGIN", "CRAM-MD5"
    auth_user: str | None = None  # never a password

    @property
    def tls(self) -> bool:
        return self.tls_version is not None

    @property
    def authenticated(self) -> bool:
        return self.auth_mechanism is not None


@dataclass(frozen=True, slots=True)
class Client:
    """Who connected, and who the checks should pretend connected.

    `peer_ip` is the real socket peer. `ip` is the effective client: XCLIENT ADDR, else the configured
    client IP for loopback peers, else the peer. SPF and friends are evaluated against `ip`.
    """

    ip: str = "127.0.0.1"
    peer_ip: str | None = None
    name: str | None = None  # XCLIENT NAME: the client's reverse-DNS name as the test claims it
    source: str = "peer"  # "peer", "xclient", "configured" or "cli"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.ip)


@dataclass(frozen=True, slots=True)
class Capture:
    """One received message: the exact bytes plus every fact the analysis may use."""

    raw: bytes
    envelope: Envelope = field(default_factory=Envelope)
    transport: Transport = field(default_factory=Transport)
    client: Client = field(default_factory=Client)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: int | None = None


@dataclass(frozen=True)
class SenderHistory:
    """What the store knew about the sending application before this message (the adapter looks it up).

    The sender is the application, recognised by its AUTH user or else its client IP; `from_addresses` are
    the From addresses it used before, newest first, and `ips` the client IPs this From address came from.
    """

    sender: str  # "auth user alice" or "client 192.0.2.10"
    earlier: int = 0  # messages from this sender before this one
    from_addresses: tuple[str, ...] = ()  # newest first, distinct
    ips: tuple[str, ...] = ()  # client IPs the same From address used before, newest first


def domain_of(address: str | None) -> str | None:
    """The domain of an address, lower-cased, or None when there is none."""
    if not address or "@" not in address:
        return None
    domain = address.rpartition("@")[2].strip().strip(">").rstrip(".").lower()
    return domain or None


def is_loopback(ip: str | None) -> bool:
    try:
        return ip is not None and ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False
