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
    LAB = "lab"  # written by the lab itself: a DSN or an auto-reply put in the envelope sender's mailbox

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


DSN_STAGE = "dsn"  # an Attempt recording a bounce the lab sent after accepting, not a refusal in the session


@dataclass(frozen=True, slots=True)
class Attempt:
    """A delivery attempt the lab refused, or a bounce (DSN) it sent after accepting: what the sending
    application was told, and when. Retries are judged from these (lab.core.checks.retry).

    One row per recipient it concerns: `rcpt` is None for a refusal before RCPT (connect, HELO, MAIL) and
    `mail_from` None before MAIL ("" is the null sender). `txn` names the SMTP transaction, so refusals of
    several recipients in one transaction count as one try. For `stage == DSN_STAGE` the row is the bounce
    the lab sent for `rcpt` of message `message`; `dsn` is the stored DSN's id.
    """

    at: datetime
    stage: str  # connect, helo, mail, rcpt, data, end-of-data, or DSN_STAGE
    reply: str = ""  # the whole reply; "" when the connection was closed without one
    mail_from: str | None = None
    rcpt: str | None = None
    recipients: tuple[tuple[str, str], ...] = ()  # the transaction's recipients and what each was answered
    listener: Listener = Listener.RELAY
    port: int | None = None
    peer_ip: str | None = None
    client_ip: str = "127.0.0.1"  # the effective client, as for a Capture
    client_source: str = "peer"
    helo: str | None = None
    tls_version: str | None = None
    auth_user: str | None = None
    rule: str = ""  # the rule that refused ("rule #2 'x' (rules.toml)"), or "lab" for the lab's own limits
    delay: float = 0.0  # seconds the reply was held
    disconnect: bool = False  # the lab closed the connection after (or instead of) the reply
    size: int | None = None  # MAIL SIZE=, or the octets received at end-of-data
    raw: bytes = b""  # the message, for refusals at end-of-data
    message_id: str | None = None  # its Message-ID field (end-of-data refusals; a DSN's original)
    txn: str = ""  # "<connection>.<transaction>": one try, however many recipients it refused
    message: int | None = None  # the message accepted in the same transaction, or the one a DSN reports on
    dsn: int | None = None  # DSN_STAGE only: the stored bounce message
    id: int | None = None

    @property
    def code(self) -> int | None:
        head = self.reply[:3]
        return int(head) if len(head) == 3 and head.isdigit() else None

    @property
    def status(self) -> str | None:
        """The RFC 3463 enhanced status code of the reply ("4.7.1"), when it has one."""
        parts = self.reply[4:].split(" ", 1)[0].split(".") if len(self.reply) > 4 else []
        if len(parts) == 3 and all(p.isdigit() and 0 < len(p) <= 3 for p in parts) and parts[0] in "245":
            return ".".join(parts)
        return None

    @property
    def temporary(self) -> bool:
        """A 4xx, or a connection closed without a reply: the client should try again later."""
        code = self.code
        return (code is not None and 400 <= code < 500) or (code is None and self.disconnect)

    @property
    def permanent(self) -> bool:
        code = self.code
        return code is not None and code >= 500


def address_key(address: str | None) -> str:
    """How attempts and messages are matched by address: lower case; "<>" for the null sender, "" for unknown."""
    if address is None:
        return ""
    return address.strip().lower() or "<>"


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
