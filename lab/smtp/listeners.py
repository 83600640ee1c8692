"""Provides the capture handler and the three listeners (relay, submission, smtps) on one event loop."""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lab.core.model import Capture, Client, Envelope, Listener, Transport, is_loopback
from lab.smtp.auth import Credentials
from lab.smtp.server import ROLES, XCLIENT_ATTRS, LabSMTP, Role

log = logging.getLogger("maillab.smtp")
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every command, and deprecations
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

Sink = Callable[[Capture, list], Awaitable[int]]


@dataclass
class ListenerSpec:
    role: Role
    host: str
    port: int  # 0 picks a free port; replaced by the bound port on start
    server: asyncio.AbstractServer | None = field(default=None, repr=False)
    error: str | None = None  # why it could not listen, when it could not

    @property
    def listener(self) -> Listener:
        return self.role.listener

    def describe(self) -> str:
        r = self.role
        tls = "implicit TLS" if r.implicit_tls else ("STARTTLS required" if r.require_tls else "STARTTLS optional")
        auth = "AUTH required" if r.require_auth else "no AUTH"
        return f"{r.listener.value} {self.host}:{self.port} ({r.listener.real_port} role: {tls}, {auth})"


class CaptureHandler:
    """aiosmtpd handler hooks: what to advertise, how many recipients, and how to hand over a message."""

    def __init__(self, sink: Sink, client_ip: str | None = None, max_recipients: int = 100):
        self.sink = sink
        self.client_ip = client_ip
        self.max_recipients = max_recipients

    async def handle_EHLO(self, server: LabSMTP, session, envelope, hostname: str, responses: list[str]):
        session.host_name = hostname
        out = [r for r in responses if server.role.auth or not r.startswith("250-AUTH")]
        extra = ["250-PIPELINING"]
        if is_loopback(server.peer_ip):
            extra.append("250-XCLIENT " + " ".join(XCLIENT_ATTRS))
        return out[:-1] + extra + out[-1:]

    async def handle_MAIL(self, server: LabSMTP, session, envelope, address: str, mail_options: list[str]):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"  # X.1.0: the sender address (RFC 3463), as Postfix

    async def handle_RCPT(self, server: LabSMTP, session, envelope, address: str, rcpt_options: list[str]):
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return f"452 4.5.3 Error: too many recipients (at most {self.max_recipients} per message)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: LabSMTP, session, envelope) -> str:
        capture = self.capture(server, session, envelope)
        transcript = [*server.transcript, [server.transcript[-1][0] if server.transcript else 0, "<",
                                           "250 2.0.0 OK: queued as (this message), after the commit"]]
        try:
            message_id = await self.sink(capture, transcript)
        except Exception:
            log.exception("could not store a message")
            return "451 4.3.0 The lab could not store the message; try again later"
        return f"250 2.0.0 OK: queued as {message_id} (captured by maillab, never delivered)"

    def capture(self, server: LabSMTP, session, envelope) -> Capture:
        peer = server.peer_ip
        x = server.xclient
        if x.get("ADDR"):
            ip, source = x["ADDR"], "xclient"
        elif self.client_ip and is_loopback(peer):
            ip, source = self.client_ip, "configured"
        else:
            ip, source = peer or "127.0.0.1", "peer"
        tls_version, cipher = server.tls_facts()
        identity = server.identity if session.authenticated else None
        return Capture(
            raw=envelope.original_content or b"",
            envelope=Envelope(
                mail_from=_text(envelope.mail_from or ""),
                rcpt_to=tuple(map(_text, envelope.rcpt_tos)),
                helo=_text(x.get("HELO") or session.host_name),
                mail_options=tuple(map(_text, envelope.mail_options)),
                rcpt_options=tuple(map(_text, envelope.rcpt_options)),
                smtputf8=bool(envelope.smtp_utf8),
            ),
            transport=Transport(server.role.listener, server.port, tls_version, cipher,
                                identity.mechanism if identity else None, _text(identity.login) if identity else None),
            client=Client(ip=ip, peer_ip=peer, name=_text(x.get("NAME")), source=source),
            received_at=datetime.now(UTC),
        )


def _text(value):
    """Envelope text as valid Unicode: 8-bit bytes a client sent without SMTPUTF8 arrive as lone surrogates,
    which the store cannot hold, so they become U+FFFD (the message bytes themselves are kept exactly)."""
    if not isinstance(value, str):
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def default_specs(host: str, relay: int, submission: int, smtps: int) -> list[ListenerSpec]:
    return [ListenerSpec(ROLES[Listener.RELAY], host, relay),
            ListenerSpec(ROLES[Listener.SUBMISSION], host, submission),
            ListenerSpec(ROLES[Listener.SMTPS], host, smtps)]


async def start_listeners(
    specs: list[ListenerSpec],
    handler: CaptureHandler,
    tls: ssl.SSLContext,
    *,
    hostname: str,
    credentials: Credentials,
    max_size: int,
    idle_timeout: float = 300,
) -> list[ListenerSpec]:
    """Bind every listener that can be bound; returns those that could not, each with `error` set."""
    loop = asyncio.get_running_loop()
    failed = []
    for spec in specs:
        def factory(spec=spec) -> LabSMTP:
            return LabSMTP(
                handler, spec.role, credentials, spec.port, hostname=hostname, ident="maillab ESMTP",
                tls_context=tls if spec.role.starttls else None, enable_SMTPUTF8=True,
                data_size_limit=max_size, timeout=idle_timeout, loop=loop,
            )
        try:
            spec.server = await loop.create_server(factory, spec.host, spec.port, backlog=1024,
                                                   ssl=tls if spec.role.implicit_tls else None)
        except OSError as exc:
            flag = f"--{spec.listener.value}-port"
            spec.error = (f"cannot listen on {spec.host}:{spec.port} for {spec.listener.value}: "
                          f"{exc.strerror or exc} (choose another port with {flag})")
            failed.append(spec)
            continue
        spec.error = None
        spec.port = spec.server.sockets[0].getsockname()[1]
    return failed


async def stop_listeners(specs: list[ListenerSpec]) -> None:
    for spec in specs:
        if spec.server is not None:
            spec.server.close()
            await spec.server.wait_closed()
            spec.server = None
