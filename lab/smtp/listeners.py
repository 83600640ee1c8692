"""Provides the capture handler and the three listeners (relay, submission, smtps) on one event loop."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from lab.core.dsn import Recipient, autoreply, autoreply_suppressed, bounce
from lab.core.model import DSN_STAGE, Attempt, Capture, Client, Envelope, Listener, Transport, is_loopback
from lab.rules import Action, Facts, RuleSet, RulesFile
from lab.smtp.auth import Credentials
from lab.smtp.server import ROLES, XCLIENT_ATTRS, LabSMTP, Role

log = logging.getLogger("maillab.smtp")
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every command, and deprecations
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

Sink = Callable[[Capture | Attempt, list], Awaitable[int]]


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
    """aiosmtpd handler hooks: what to advertise, how many recipients, and how to hand over a message; and the
    rules (lab.rules) asked at MAIL, RCPT and end-of-data, with the attempts they refuse recorded.

    `rules` is a RuleSet, or a RulesFile whose current `rules` are taken up by `refresh()` (the engine polls
    the file in a thread and calls it on the loop: nothing here touches the disk; call it after assigning
    `rules` too). `sink` stores a Capture (awaiting the commit) and also takes Attempt records
    (lab.store.flat tells them apart).
    """

    def __init__(self, sink: Sink, client_ip: str | None = None, max_recipients: int = 100, *,
                 rules: RuleSet | RulesFile | None = None, hostname: str = "maillab.localhost",
                 rng: random.Random | None = None):
        self.sink = sink
        self.client_ip = client_ip
        self.max_recipients = max_recipients
        self.rules = rules if rules is not None else RuleSet.default()
        self.hostname = hostname
        self.rng = rng or random.Random()
        self._tasks: set[asyncio.Task] = set()
        self.refresh()

    # rules ---------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Take up the rules file's current rules (the engine calls this on its loop after each poll). What the
        SMTP path needs to know about them is worked out here, once, so that a stage without rules costs one
        set lookup per command."""
        rules = self.rules
        current = rules.rules if isinstance(rules, RulesFile) else rules
        if current is getattr(self, "_ruleset", None):
            return
        plan = _Plan.of(current)
        self._ruleset = current
        self.stages = plan.stages  # stages that have rules
        self.rcpt_prefixes = plan.rcpt_prefixes  # what a recipient must start with for a RCPT rule to match
        self.per_rcpt = plan.per_rcpt

    def ruleset(self) -> RuleSet:
        return self._ruleset

    def decide(self, server: LabSMTP, stage: str, *, helo: str | None = None, mail_from: str | None = None,
               rcpt: str | None = None, size: int | None = None) -> Action | None:
        """The rules' Action for this stage, or None to behave normally. A rule that fails is logged and ignored:
        scripted behaviour must never break the lab's plain capture."""
        if stage not in self.stages:
            return None
        try:
            return self._ruleset.decide(self.facts(server, stage, helo=helo, mail_from=mail_from, rcpt=rcpt,
                                                   size=size), rng=self.rng)
        except Exception:
            log.exception("rules: no decision at the %s stage; answering normally", stage)
            return None

    def decide_all(self, server: LabSMTP, stage: str, rcpts: list[str],
                   size: int | None = None) -> list[tuple[str, Action]]:
        """A stage after RCPT (data, end-of-data) is asked once per recipient when its rules look at recipients,
        else once; asking stops at the first Action with a reply or a disconnect, which decides for all."""
        if stage not in self.stages or not rcpts:
            return []
        out = []
        for rcpt in (rcpts if stage in self.per_rcpt else rcpts[:1]):
            action = self.decide(server, stage, rcpt=rcpt, size=size)
            if action is not None:
                out.append((rcpt, action))
                if action.reply is not None or action.disconnect:
                    break
        return out

    def decide_each(self, server: LabSMTP, stage: str, rcpts: list[str], size: int | None = None) -> Action | None:
        return _deciding(self.decide_all(server, stage, rcpts, size))

    def facts(self, server: LabSMTP, stage: str, *, helo: str | None = None, mail_from: str | None = None,
              rcpt: str | None = None, size: int | None = None) -> Facts:
        session, envelope = server.session, server.envelope
        if mail_from is None and envelope is not None and stage not in ("connect", "helo"):
            mail_from = envelope.mail_from
        if size is None and envelope is not None and stage in ("rcpt", "data"):
            size = _size_param(envelope.mail_options)  # MAIL SIZE= until the data has arrived
        if helo is None:
            helo = server.xclient.get("HELO") or (session.host_name if session is not None else None)
        return Facts(stage=stage, listener=server.role.listener.value, client_ip=self.client_of(server)[0],
                     helo=_text(helo), mail_from=None if mail_from is None else _null(_text(mail_from)),
                     rcpt=_text(rcpt), auth_user=_auth_user(server), size=size)

    # attempts ------------------------------------------------------------------------------------

    def attempt(self, server: LabSMTP, stage: str, reply: str, action: Action | None, *, rcpt: str | None = None,
                mail_from: str | None = None, raw: bytes = b"", size: int | None = None) -> Attempt:
        """A refusal as the store keeps it: the envelope so far, who the client was, the reply and the rule."""
        session, envelope = server.session, server.envelope
        if mail_from is None and envelope is not None and stage not in ("connect", "helo"):
            mail_from = envelope.mail_from
        ip, source = self.client_of(server)
        return Attempt(
            at=datetime.now(UTC), stage=stage, reply=reply, mail_from=_text(mail_from), rcpt=_text(rcpt),
            listener=server.role.listener, port=server.port, peer_ip=server.peer_ip, client_ip=ip,
            client_source=source,
            helo=_text(server.xclient.get("HELO") or (session.host_name if session is not None else None)),
            tls_version=server.tls_facts()[0], auth_user=_auth_user(server),
            rule=action.rule if action is not None else "lab", delay=action.delay if action is not None else 0.0,
            disconnect=bool(action is not None and action.disconnect) or reply.startswith("421"), size=size,
            raw=raw, message_id=_message_id(raw) if raw else None,
            txn=server.attempt_txn(loose=stage in ("connect", "helo", "mail")),
        )

    def refused(self, server: LabSMTP, stage: str, reply: str, action: Action | None, *, rcpts=(),
                mail_from: str | None = None, raw: bytes = b"", size: int | None = None) -> None:
        """Record a refusal at any stage but RCPT (whose refusals wait for the end of their transaction): one
        attempt per recipient it refused, the message bytes kept once."""
        transcript = list(server.transcript)
        if reply and not (transcript and transcript[-1][1:] == ["<", reply]):  # the reply about to be sent
            transcript.append([transcript[-1][0] if transcript else 0.0, "<", reply])
        rcpts = list(rcpts)[:MAX_RECORDED_RCPTS]
        if not rcpts:
            self.submit(self.attempt(server, stage, reply, action, mail_from=mail_from, size=size), transcript)
        recipients = tuple((_text(r), reply) for r in rcpts)
        message_id = _message_id(raw) if raw else None
        for i, rcpt in enumerate(rcpts):  # the bytes and the transcript are kept once, with the first
            attempt = self.attempt(server, stage, reply, action, rcpt=rcpt, mail_from=mail_from,
                                   raw=raw if i == 0 else b"", size=size)
            self.submit(replace(attempt, recipients=recipients, message_id=message_id), transcript if i == 0 else [])
        if stage in ("mail", "data", "end-of-data"):
            server.refusal_done = True

    def submit(self, record: Attempt | Capture, session: list) -> None:
        """Store without waiting for the commit. Used for refused attempts, whose record need not be on disk
        before the reply: the client has been told "no" either way, and a crash loses a record, never mail
        the lab acknowledged (contrast handle_DATA, where the 250 waits for the commit)."""
        if self.sink is not None:
            self._spawn(self.sink(record, session))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not store an attempt or a generated message: %s", task.exception())

    async def drain(self, timeout: float = 10) -> None:
        """Wait for records and generated mail still on their way to the writer (the engine stops after this)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    # hooks ---------------------------------------------------------------------------------------

    async def handle_EHLO(self, server: LabSMTP, session, envelope, hostname: str, responses: list[str]):
        session.host_name = hostname
        out = [r for r in responses if server.role.auth or not r.startswith("250-AUTH")]
        extra = ["250-PIPELINING"]
        if is_loopback(server.peer_ip):
            extra.append("250-XCLIENT " + " ".join(XCLIENT_ATTRS))
        out = out[:-1] + extra + out[-1:]
        reply, server._helo_reply = server._helo_reply, None
        if reply:  # a rule's own 250 text
            out[0] = "250-" + reply[4:]
        return out

    async def handle_MAIL(self, server: LabSMTP, session, envelope, address: str, mail_options: list[str]):
        reply = None
        if "mail" in self.stages:
            size = _size_param(mail_options)
            action = self.decide(server, "mail", mail_from=address, size=size)
            if action is not None:
                reply = await server.enact(action)
                if server.refusing(action, reply):
                    self.refused(server, "mail", reply or "", action, mail_from=address, size=size)
                    return reply or _CLOSED
                if server.hung_up:
                    return _CLOSED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        server.transactions += 1
        return reply or "250 2.1.0 OK"  # X.1.0: the sender address (RFC 3463), as Postfix

    async def handle_RCPT(self, server: LabSMTP, session, envelope, address: str, rcpt_options: list[str]):
        if len(envelope.rcpt_tos) >= self.max_recipients:
            reply = f"452 4.5.3 Error: too many recipients (at most {self.max_recipients} per message)"
            server.note_refused_recipient(self.attempt(server, "rcpt", reply, None, rcpt=address))
            return reply
        reply = action = None
        if "rcpt" in self.stages and (self.rcpt_prefixes is None or address.lower().startswith(self.rcpt_prefixes)):
            action = self.decide(server, "rcpt", rcpt=address)  # (only the built-in local parts can match if not)
        if action is not None:
            reply = await server.enact(action)
            if server.refusing(action, reply):
                server.note_refused_recipient(self.attempt(server, "rcpt", reply or "", action, rcpt=address))
                return reply or _CLOSED
            if server.hung_up:
                return _CLOSED
            if action.dsn or action.autoreply:  # carried out once the message is stored
                actions = getattr(envelope, "rule_actions", None)
                if actions is None:
                    actions = envelope.rule_actions = {}
                actions[address] = action
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: LabSMTP, session, envelope) -> str:
        content = envelope.original_content or b""
        actions = self.decide_all(server, "end-of-data", envelope.rcpt_tos, len(content))
        decision = _deciding(actions)
        if decision is not None and server.refusing(decision, decision.reply):
            reply = await server.enact(decision)  # refused: nothing is stored
            self.refused(server, "end-of-data", reply or "", decision, rcpts=envelope.rcpt_tos, raw=content,
                         size=len(content))
            return reply or _CLOSED
        for _, action in actions:
            server.note_rule(action)
        responses = dict(getattr(envelope, "rule_actions", None) or {})
        for rcpt, action in actions:
            if action.dsn or action.autoreply:
                responses.setdefault(rcpt, action)
        capture = self.capture(server, session, envelope)
        if responses:
            responses = await self._screen(server, capture, responses)
        transcript = [*server.transcript, [server.transcript[-1][0] if server.transcript else 0, "<",
                                           "250 2.0.0 OK: queued as (this message), after the commit"]]
        try:
            message_id = await self.sink(capture, transcript)
        except Exception:
            log.exception("could not store a message")
            reply = "451 4.3.0 The lab could not store the message; try again later"
            self.refused(server, "end-of-data", reply, None, rcpts=envelope.rcpt_tos, raw=content, size=len(content))
            return reply
        server.delivered(message_id)
        if decision is not None:  # stored first: a client that gives up during the delay has its mail stored
            await server.hold(decision.delay)  # (the classic duplicate after a timeout, on purpose)
            if decision.disconnect:
                server.close_after_reply()
        if responses:
            self._spawn(self._respond(replace(capture, id=message_id), responses))
        if decision is not None and decision.reply:
            return decision.reply
        return f"250 2.0.0 OK: queued as {message_id} (captured by maillab, never delivered)"

    # bounces and auto-replies --------------------------------------------------------------------

    async def _screen(self, server: LabSMTP, capture: Capture, responses: dict[str, Action]) -> dict[str, Action]:
        """The responses that may be sent: none to a null sender, no auto-reply to automatic or list mail. Each
        one left out is noted in the message's transcript with the reason (RFC 3834 §2, RFC 5321 §4.5.5)."""
        sender = capture.envelope.mail_from
        wanted = [r for r, a in responses.items() if a.autoreply]
        reasons = await asyncio.to_thread(lambda: {r: autoreply_suppressed(capture.raw, sender, r) for r in wanted})
        out = {}
        for rcpt, action in responses.items():
            if action.dsn:
                why = "the envelope sender is null (<>): a bounce is never bounced (RFC 5321 §4.5.5)" \
                    if _null(sender) == "" else None
            else:
                why = reasons.get(rcpt)
            if why:
                server.note("!", f"no {'DSN' if action.dsn else 'auto-reply'} for {_text(rcpt)}: {why}")
            else:
                out[rcpt] = action
        return out

    async def _respond(self, original: Capture, responses: dict[str, Action]) -> None:
        """After the 250, off the reply path: one DSN for the message's bounced recipients and one auto-reply per
        out-of-office recipient, each stored as mail to the envelope sender (its POP3 mailbox)."""
        sender = original.envelope.mail_from
        bounced = [(r, a) for r, a in responses.items() if a.dsn]
        if bounced:
            recipients = [Recipient(_text(r), a.dsn_status or "5.0.0", f"smtp; {a.dsn_reply}") for r, a in bounced]
            body = await asyncio.to_thread(bounce, original.raw, sender, recipients, reporting_mta=self.hostname,
                                           arrival=original.received_at, received_from=original.envelope.helo)
            if body is None:
                log.warning("no DSN for message %s: the builder declined", original.id)
            else:
                dsn_id = await self.sink(self._generated(body, sender), [[0.0, "!", (
                    f"written by the lab: an RFC 3464 bounce (DSN) for message #{original.id}, "
                    f"{', '.join(a.rule for _, a in bounced[:3])}")]])
                msgid = _message_id(original.raw)
                for rcpt, action in bounced:
                    self.submit(Attempt(
                        at=datetime.now(UTC), stage=DSN_STAGE, reply=action.dsn_reply or "", mail_from=sender,
                        rcpt=_text(rcpt), listener=original.transport.listener, port=original.transport.port,
                        peer_ip=original.client.peer_ip, client_ip=original.client.ip,
                        client_source=original.client.source, helo=original.envelope.helo,
                        tls_version=original.transport.tls_version, auth_user=original.transport.auth_user,
                        rule=action.rule, message_id=msgid, message=original.id, dsn=dsn_id), [])
        for rcpt, action in responses.items():
            if not action.autoreply:
                continue
            body = await asyncio.to_thread(autoreply, original.raw, sender, _text(rcpt), action.autoreply_text,
                                           hostname=self.hostname)
            if body is None:
                log.warning("no auto-reply for message %s: the builder declined", original.id)
                continue
            await self.sink(self._generated(body, sender), [[0.0, "!", (
                f"written by the lab: an RFC 3834 auto-reply from {_text(rcpt)} to message #{original.id}, "
                f"{action.rule}")]])

    def _generated(self, raw: bytes, sender: str) -> Capture:
        """Mail the lab writes: from the null sender to the original envelope sender, on the `lab` listener."""
        return Capture(raw=raw, envelope=Envelope(mail_from="", rcpt_to=(_text(sender),), helo=self.hostname),
                       transport=Transport(Listener.LAB), client=Client(ip="127.0.0.1", peer_ip=None, source="lab"),
                       received_at=datetime.now(UTC))

    # the capture ---------------------------------------------------------------------------------

    def client_of(self, server: LabSMTP) -> tuple[str, str]:
        """The effective client IP and where it came from: XCLIENT ADDR, else --client-ip for loopback peers,
        else the peer."""
        peer = server.peer_ip
        x = server.xclient
        if x.get("ADDR"):
            return x["ADDR"], "xclient"
        if self.client_ip and is_loopback(peer):
            return self.client_ip, "configured"
        return peer or "127.0.0.1", "peer"

    def capture(self, server: LabSMTP, session, envelope) -> Capture:
        peer = server.peer_ip
        x = server.xclient
        ip, source = self.client_of(server)
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


_CLOSED = "421 4.7.0 Error: connection closed"  # returned where a rule closed the connection: never sent
MAX_RECORDED_RCPTS = 100
_MSGID_FIELD = re.compile(rb"(?:^|\n)message-id[ \t]*:[ \t]*([^\r\n]{1,300})", re.I)
_SIZE = re.compile(r"SIZE=(\d{1,15})\Z", re.I)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a RuleSet asks of the SMTP path, worked out once per RuleSet: the stages that have rules, the
    literal prefixes every RCPT rule needs (only the built-in local parts: a startswith() rules out all other
    recipients), and the stages whose rules look at each recipient."""

    stages: frozenset[str]
    rcpt_prefixes: tuple[str, ...] | None
    per_rcpt: frozenset[str]

    @classmethod
    def of(cls, rules: RuleSet) -> _Plan:
        prefixes: list[str] | None = []
        for rule in (r for r in rules.rules if r.stage == "rcpt"):
            patterns = dict(rule.matchers).get("rcpt") if rule.source == "built-in" else None
            if not patterns or len(rule.matchers) != 1 or rule.size_min is not None or rule.size_max is not None \
                    or any(p.kind != "glob" for p in patterns):
                prefixes = None
                break
            for p in patterns:
                literal = re.split(r"[*?\[]", p.text, maxsplit=1)[0].lower()
                if not literal:
                    prefixes = None
                    break
                prefixes.append(literal)
            if prefixes is None:
                break
        per_rcpt = frozenset(r.stage for r in rules.rules
                             if any(k == "rcpt" for k, _ in r.matchers) or r.dsn or r.autoreply
                             or "{rcpt}" in (r.reply or ""))
        return cls(rules.stages, tuple(prefixes) if prefixes is not None else None, per_rcpt)


def _deciding(actions: list[tuple[str, Action]]) -> Action | None:
    """Of the Actions for the recipients, the one that decides: the first with a reply or a disconnect, else
    the first with a delay."""
    for _, action in actions:
        if action.reply is not None or action.disconnect:
            return action
    return next((a for _, a in actions if a.delay), None)


def _size_param(options: list[str]) -> int | None:
    for option in options:
        m = _SIZE.match(option)
        if m:
            return int(m.group(1))
    return None


def _message_id(raw: bytes) -> str | None:
    """The Message-ID field of a message, read from its header section with a bounded search."""
    head = raw[:1 << 18]
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    m = _MSGID_FIELD.search(head if end < 0 else head[:end + 2])
    if m is None:
        return None
    return m.group(1).decode("utf-8", "replace").strip() or None


def _auth_user(server: LabSMTP) -> str | None:
    session = server.session
    if session is None or not session.authenticated or server.identity is None:
        return None
    return _text(server.identity.login)


def _null(address: str) -> str:
    """The null reverse-path as the rules see it: "" (aiosmtpd hands it over as "<>")."""
    return "" if address.strip() in ("", "<>") else address


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
