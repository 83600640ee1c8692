"""Provides LabSMTP: aiosmtpd's SMTP with XCLIENT, CRAM-MD5, a session transcript and a fast DATA reader.

aiosmtpd reads DATA a line at a time and rejects lines over 1,000 octets. The lab must capture whatever
a client sends, so DATA is read in large chunks and the end-of-data mark `<CRLF>.<CRLF>` and dot-stuffing
are handled with bytes operations. Only `<CRLF>.<CRLF>` ends the data: `<LF>.<LF>` and `<CR>.<CR>` do
not (SMTP smuggling).

Protocol abuse is answered as Postfix smtpd answers it: every reply carries an RFC 3463 enhanced status
code, an idle client gets `421 4.4.2 <host> Error: timeout exceeded` before the connection is closed, and
a client that keeps sending bad commands gets `421 4.7.0` and is disconnected. Nothing sent after a 421 is
acted on.

Scripted behaviour (lab.rules) is asked at each stage: the greeting (connect, again after XCLIENT), HELO/EHLO
and DATA here, MAIL, RCPT and end-of-data in the handler (lab.smtp.listeners). `enact()` carries out an
Action: it notes the rule in the transcript, holds the reply for the rule's delay (with the idle timer
paused) and arranges the disconnect. Refusals become Attempt records; a refused recipient's record waits
for the end of its transaction, so it can name the message the other recipients went into.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import functools
import inspect
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, _AuthMechAttr, syntax

from lab.core.model import Attempt, Listener, is_loopback
from lab.smtp.auth import Credentials, Identity

CHUNK = 1 << 16
END = b"\r\n.\r\n"
MAX_TRANSCRIPT = 400
XCLIENT_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
ERROR_LIMIT = 20  # 500 replies before `421 4.7.0 ... too many errors`, as Postfix's smtpd_hard_error_limit
AUTH_SYNTAX = "501 5.5.4 Syntax: AUTH mechanism [initial-response]"

# aiosmtpd's own replies, with the RFC 3463 enhanced status codes clients log and tests match on
_ENHANCED = {
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Error: message size exceeds fixed maximum message size",
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "503 Error: send HELO first": "503 5.5.1 Error: send HELO/EHLO first",
    "503 Error: send EHLO first": "503 5.5.1 Error: send EHLO first",
    "500 Error: command 'AUTH' not recognized": "503 5.5.1 Error: send EHLO first (AUTH needs ESMTP, not HELO)",
    "503 Already authenticated": "503 5.5.1 Error: already authenticated",
    "501 Not enough value": AUTH_SYNTAX,
    "501 Too many values": AUTH_SYNTAX,
    "250 OK": "250 2.0.0 OK",
    "221 Bye": "221 2.0.0 Bye",
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
    "454 TLS not available": "454 4.7.0 TLS not available",
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "500 Command line too long": "500 5.5.2 Error: command line too long",
    "252 Cannot VRFY user, but will accept message and attempt delivery":
        "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
    "502 EXPN not implemented": "502 5.5.1 Error: EXPN is not implemented",
    "555 MAIL FROM parameters not recognized or not implemented":
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented",
    "555 RCPT TO parameters not recognized or not implemented":
        "555 5.5.4 RCPT TO parameters not recognized or not implemented",
    "501 Error: BODY can only be one of 7BIT, 8BITMIME": "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME",
    "501 Error: SMTPUTF8 takes no arguments": "501 5.5.4 Error: SMTPUTF8 takes no arguments",
}
# replies aiosmtpd builds from parts: (prefix, replacement for the prefix)
_ENHANCED_PREFIX = (
    ("501 Syntax: ", "501 5.5.4 Syntax: "),
    ("250 Supported commands: ", "214 2.0.0 Supported commands: "),  # HELP is a 214 (RFC 5321 4.1.1.8)
    ("250 Syntax: ", "214 2.0.0 Syntax: "),
    ("501 Supported commands: ", "501 5.5.4 HELP: unknown command; supported commands: "),
)
_UNRECOGNIZED = re.compile(r'500 Error: command "(.*)" not recognized', re.S)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # C0 controls, DEL, surrogate-escaped bytes
# A dot-atom path in angle brackets, and the parameters after it: what aiosmtpd's get_angle_addr returns
# for it (tests/smtp/test_server_units.py compares the two); anything else goes to aiosmtpd's parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>((?: .*)?)\Z", re.S)
_BOGUS_GOODBYE = "502 5.5.1 Too many unrecognized commands, goodbye."
_MAIL_TOO_BIG = "552 Error: message size exceeds fixed maximum message size"
BAD_SEQUENCE = "503 5.5.1 Error: bad sequence of commands"  # every command but QUIT after a 554 greeting
MAX_PENDING = 100  # refused recipients of one transaction recorded as attempts


def _enhanced(text: str) -> str:
    """aiosmtpd's reply `text` with an enhanced status code and Postfix's wording."""
    if text in _ENHANCED:
        return _ENHANCED[text]
    m = _UNRECOGNIZED.fullmatch(text)
    if m:  # the verb is the client's: printable ASCII only, and short
        return f'500 5.5.2 Error: command "{re.sub(r"[^!-~]", "?", m.group(1))[:40]}" not recognized'
    if text.startswith("502 Could not VRFY "):
        return "501 5.1.3 Bad recipient address syntax"
    for prefix, replacement in _ENHANCED_PREFIX:
        if text.startswith(prefix):
            return replacement + text[len(prefix):]
    return text


@dataclass(frozen=True, slots=True)
class Role:
    """How one listener behaves: the three real ports differ only in these switches."""

    listener: Listener
    starttls: bool  # STARTTLS offered
    require_tls: bool  # 530 until STARTTLS
    implicit_tls: bool  # TLS from the first byte
    auth: bool  # AUTH offered
    require_auth: bool  # 530 until AUTH


ROLES = {
    Listener.RELAY: Role(Listener.RELAY, starttls=True, require_tls=False, implicit_tls=False, auth=False,
                         require_auth=False),
    Listener.SUBMISSION: Role(Listener.SUBMISSION, starttls=True, require_tls=True, implicit_tls=False,
                              auth=True, require_auth=True),
    Listener.SMTPS: Role(Listener.SMTPS, starttls=False, require_tls=False, implicit_tls=True, auth=True,
                         require_auth=True),
}


class LabSMTP(SMTP):
    """One connection. State that must survive STARTTLS (XCLIENT, transcript) lives here, not on the session."""

    line_length_limit = 8192  # also the StreamReader limit; command lengths are checked separately

    def __init__(self, handler: Any, role: Role, credentials: Credentials, port: int, *, loop,
                 hostname: str, ident: str, tls_context, enable_SMTPUTF8: bool, data_size_limit: int,
                 timeout: float):
        """What aiosmtpd 1.4's SMTP.__init__ sets up, with its per-connection introspection done once per class.

        aiosmtpd runs inspect.getmembers() over the connection and the handler for every connection: a
        measured 8.5% of the lab's SMTP time with a new connection per message. tests/smtp/test_server_units.py
        checks this sets up everything SMTP.__init__ does.
        """
        self.role = role
        self.credentials = credentials
        self.port = port
        # aiosmtpd keeps these on the class, shared by every connection, and adds to them on every EHLO
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.errors = 0
        self.hung_up = False  # a 421 was sent: nothing more is read, acted on or answered
        self.xclient: dict[str, str | None] = {}
        self.transcript: list[list] = []
        self._preamble: int | None = None  # transcript entries before the first MAIL: kept for every message
        self._summarised = 0  # 1 once the line after the preamble counts earlier transactions
        self._delivered = 0  # messages accepted earlier in this session
        self._held: list[str] = []  # continuation lines of a multi-line reply, sent with its last line
        self.identity: Identity | None = None
        self._t0 = time.monotonic()
        # rules (lab.rules): the greeting is decided when it is sent; a refused one leaves only QUIT
        self._greeting_pending = True
        self.refused_greeting = False
        self._close_after = False  # a rule's disconnect: close once the next reply is written
        self._helo_reply: str | None = None  # a rule's 2xx for EHLO, replacing its first line
        self._verb: str | None = None  # the command being handled
        self._token: str | None = None  # names this connection in attempt records; made when first needed
        self.transactions = 0  # MAIL commands accepted: the transaction number in attempt records
        self._loose = 0  # attempts outside a transaction (connect, HELO, MAIL)
        self._pending: list[Attempt] = []  # refused recipients of this transaction (at most MAX_PENDING)
        self._unrecorded = 0  # refused recipients beyond MAX_PENDING in this transaction
        self._txn_message: int | None = None  # the message this transaction stored
        self._refused = 0  # transactions refused in this session, for the transcript
        self.refusal_done = False  # a transaction was refused: trim its lines once the reply is written
        self._mail_arg: str | None = None
        # SMTP.__init__, attribute for attribute
        self.__ident__ = ident
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
                                              client_connected_cb=self._cb_client_connected, loop=loop)
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = False
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and role.require_tls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = not role.implicit_tls
        self._proxy_timeout = None
        self._authenticator = self._authenticate_with_credentials
        self._auth_callback = None
        self._auth_required = role.require_auth
        self._auth_methods = {mech: _AuthMechAttr(getattr(self, attr), True) for mech, attr in _AUTH_METHODS}
        self._handle_hooks, self._ehlo_hook_ver = _hooks(handler)
        self._smtp_methods = {verb: getattr(self, attr) for verb, attr in _SMTP_METHODS}
        self._enforce_call_limit = False

    # transcript ----------------------------------------------------------------------------------

    def note(self, direction: str, text: str) -> None:
        if len(self.transcript) >= MAX_TRANSCRIPT:
            if len(self.transcript) == MAX_TRANSCRIPT:
                self.transcript.append([round(time.monotonic() - self._t0, 4), "!", "(transcript truncated)"])
            return
        self.transcript.append([round(time.monotonic() - self._t0, 4), direction, text[:1000]])

    def end_transaction(self) -> None:
        """After a message is accepted, forget its lines: each message's transcript is the session's preamble
        (greeting, EHLO, STARTTLS, AUTH), one line counting what came before, and its own transaction, so a
        long session stays cheap to record (it was one more line per earlier message: 26 KB of transcript for
        the 400th message of a kept session, JSON-encoded by the writer on the way to the 250)."""
        self._delivered += 1
        self._summarise()

    def end_refused(self) -> None:
        """After a refused transaction, forget its lines as end_transaction does: its attempt record has them."""
        if self._preamble is None or len(self.transcript) <= self._preamble + self._summarised:
            return
        self._refused += 1
        self._summarise()

    def _summarise(self) -> None:
        if self._preamble is None:  # no MAIL seen (cannot happen after a transaction): all is preamble
            self._preamble = len(self.transcript)
        del self.transcript[self._preamble:]
        parts = []
        if self._delivered:
            parts.append(f"{self._delivered} earlier message{'s' if self._delivered > 1 else ''}")
        if self._refused:
            parts.append(f"{self._refused} refused transaction{'s' if self._refused > 1 else ''}")
        see = ": see the attempts" if self._refused else ""
        self.transcript.append([round(time.monotonic() - self._t0, 4), "!",
                                f"({' and '.join(parts)} in this session not shown{see})"])
        self._summarised = 1

    async def push(self, status):
        if self.hung_up:
            return
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if self._greeting_pending:  # the first reply is the greeting: rules at the connect stage decide it
            self._greeting_pending = False
            text = await self._greeting(text)
            if text is None or self.hung_up:
                return
        if text == _BOGUS_GOODBYE:  # aiosmtpd closes after its 5th unknown verb: say so with a 421, as Postfix
            self.hang_up(f"421 4.7.0 {self.hostname} Error: too many unrecognized commands")
            return
        size_refused = text == _MAIL_TOO_BIG and self._verb == "MAIL"
        text = _UNSAFE.sub("?", _enhanced(text))  # replies echo client bytes: no controls, no undecodable bytes
        if self.refused_greeting and text.startswith("530 "):  # aiosmtpd's STARTTLS gate comes before ours
            text = BAD_SEQUENCE
        self.note("<", text)
        if size_refused:  # MAIL ... SIZE= over the limit: the lab's own refusal, recorded as one
            self.event_handler.refused(self, "mail", text, None, mail_from=self._mail_address())
        if len(text) > 3 and text[3] == "-":  # a multi-line reply (EHLO): one write for all its lines
            self._held.append(text)
            return
        if self._held:
            text = "\r\n".join([*self._held, text])
            self._held.clear()
        await super().push(text)
        if self.refusal_done:  # the refused transaction's lines are in its attempt record now
            self.refusal_done = False
            self.end_refused()
        if self._close_after and self.transport is not None:
            self._close_after = False
            self.hung_up = True
            self.transport.close()  # flushes the reply first
            return
        if text.startswith("500 "):
            self.errors += 1
            if self.errors >= ERROR_LIMIT:
                self.hang_up(f"421 4.7.0 {self.hostname} Error: too many errors")

    def hang_up(self, text: str) -> None:
        """Send a 421 and close: what Postfix does on a timeout or too many errors (RFC 5321 3.8)."""
        if self.hung_up or self.transport is None:
            return
        self.hung_up = True
        self.note("<", text)
        self.transport.write(text.encode() + b"\r\n")
        self.transport.close()  # flushes the 421 first

    def drop(self) -> None:
        """Close without a reply: a rule's disconnect with no reply given."""
        if self.hung_up or self.transport is None:
            return
        self.hung_up = True
        self.note("!", "connection closed without a reply")
        self.transport.close()

    def _timeout_cb(self) -> None:  # aiosmtpd just closes
        self.hang_up(f"421 4.4.2 {self.hostname} Error: timeout exceeded")

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.session is not None and self.session.ssl is not None:
            self.note("!", f"TLS established ({self.tls_facts()[0]})")

    def connection_lost(self, error) -> None:
        try:
            self._flush_refused()
        finally:
            super().connection_lost(error)

    # rules ---------------------------------------------------------------------------------------

    async def hold(self, seconds: float) -> None:
        """Wait before replying, with the idle timer paused: a rule's delay may be longer than the timeout."""
        if seconds <= 0:
            return
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            await asyncio.sleep(seconds)
        finally:
            if self.transport is not None and not self.hung_up:
                self._reset_timeout()

    def note_rule(self, action) -> None:
        what = [action.reply] if action.reply else []
        if action.delay:
            what.append(f"after {action.delay:g} s")
        if action.disconnect:
            what.append("then disconnect" if action.reply else "disconnect without a reply")
        if action.dsn:
            what.append("accept, then bounce (DSN)")
        if action.autoreply:
            what.append("accept, then auto-reply")
        self.note("!", f"{action.rule}: {', '.join(what)}")

    async def enact(self, action) -> str | None:
        """Carry out a rule's Action up to its reply: note it, hold for its delay, arrange its disconnect (a
        reply first, or none at all). Returns the reply to send, or None for the lab's own."""
        self.note_rule(action)
        await self.hold(action.delay)
        if action.disconnect:
            if action.reply is None:
                self.drop()
            else:
                self._close_after = True
        return action.reply

    @staticmethod
    def refusing(action, reply: str | None) -> bool:
        """Whether the Action refuses: a 4xx/5xx reply, or a disconnect without one."""
        return (reply is not None and reply[:1] in ("4", "5")) or (reply is None and action.disconnect)

    async def _greeting(self, text: str) -> str | None:
        """The connect stage: the greeting as the rules have it, or None when nothing is to be sent."""
        action = self.event_handler.decide(self, "connect")
        if action is None:
            return text
        reply = await self.enact(action)
        if self.refusing(action, reply):
            self.event_handler.refused(self, "connect", reply or "", action)
            if reply is None or self.transport is None:
                return None
            if not self._close_after:  # RFC 5321 §3.1: after a 554 greeting, only QUIT gets more than a 503
                self.refused_greeting = True
            return reply
        if self.transport is None or self.hung_up:
            return None
        return reply or text

    async def _helo_refused(self, hostname: str) -> bool:
        """The HELO stage: True when a rule answered (a refusal, or a closed connection)."""
        action = self.event_handler.decide(self, "helo", helo=hostname)
        if action is None:
            return False
        reply = await self.enact(action)
        if self.refusing(action, reply):
            self.event_handler.refused(self, "helo", reply or "", action)
            if reply is not None:
                await self.push(reply)
            return True
        if self.hung_up or self.transport is None:
            return True
        self._helo_reply = reply
        return False

    def _mail_address(self) -> str | None:
        arg = self._strip_command_keyword("FROM:", self._mail_arg or "")
        return self._getaddr(arg)[0] if arg is not None else None

    def attempt_txn(self, loose: bool = False) -> str:
        """Names the try an attempt belongs to: this transaction, or (`loose`) an attempt of its own."""
        if self._token is None:
            self._token = secrets.token_hex(6)
        if loose:
            self._loose += 1
            return f"{self._token}.x{self._loose}"
        return f"{self._token}.{self.transactions}"

    def note_refused_recipient(self, attempt: Attempt) -> None:
        """A refused RCPT: recorded when the transaction ends, to name the message its other recipients went into.
        At most MAX_PENDING per transaction (a client may send RCPT a million times)."""
        if len(self._pending) < MAX_PENDING:
            self._pending.append(attempt)
        else:
            self._unrecorded += 1

    def delivered(self, message_id: int) -> None:
        self._txn_message = message_id

    def close_after_reply(self) -> None:
        self._close_after = True

    def _flush_refused(self) -> None:
        """Record this transaction's refused recipients, with every recipient's reply and the message the
        accepted ones went into (if any). The transcript, up to the end of the transaction, is kept once, with
        the first of them."""
        pending, self._pending = self._pending, []
        message, self._txn_message = self._txn_message, None
        unrecorded, self._unrecorded = self._unrecorded, 0
        if not pending:
            return
        transcript = list(self.transcript)
        if unrecorded:
            transcript.append([transcript[-1][0] if transcript else 0, "!",
                               f"({unrecorded} more refused recipients in this transaction were not recorded)"])
        accepted = list(self.envelope.rcpt_tos)[:MAX_PENDING] if self.envelope is not None else []
        recipients = tuple([(_valid(r), "250") for r in accepted] + [(a.rcpt or "", a.reply) for a in pending])
        for i, attempt in enumerate(pending):
            self.event_handler.submit(replace(attempt, recipients=recipients, message=message),
                                      transcript if i == 0 else [])
        if message is None:
            self.refusal_done = True

    def _set_post_data_state(self) -> None:  # the transaction is over (DATA, RSET, HELO, STARTTLS, XCLIENT)
        if self._pending:
            self._flush_refused()
        self._txn_message = None
        super()._set_post_data_state()

    # facts ---------------------------------------------------------------------------------------

    @property
    def peer_ip(self) -> str | None:
        peer = self.session.peer if self.session else None
        return peer[0] if isinstance(peer, tuple) else None

    def tls_facts(self) -> tuple[str | None, str | None]:
        obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if obj is None:
            return None, None
        cipher = obj.cipher()
        return obj.version(), cipher[0] if cipher else None

    # commands ------------------------------------------------------------------------------------

    def _syntax_available(self, method) -> bool:  # HELP lists AUTH only where it is offered
        if getattr(method, "__name__", "") == "smtp_AUTH" and not self.role.auth:
            return False
        return super()._syntax_available(method)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _PLAIN_PATH.match(arg)
        if m is not None:  # the common `<local@domain.example> PARAMS`: aiosmtpd's parser costs ~0.1 ms
            return m.group(1), m.group(2)
        try:
            return super()._getaddr(arg)
        except (IndexError, ValueError):  # the stdlib parser raises on "<", "<a@": 553 malformed, not a 500 crash
            return None, None

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()  # aiosmtpd adds the SIZE and SMTPUTF8 allowances again on every EHLO
        if hostname and await self._helo_refused(hostname):
            return
        await super().smtp_EHLO(hostname)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if hostname and await self._helo_refused(hostname):
            return
        reply, self._helo_reply = self._helo_reply, None
        if reply is None:
            await super().smtp_HELO(hostname)
            return
        self._set_rset_state()  # what aiosmtpd's smtp_HELO does, with the rule's 250 text
        self.session.extended_smtp = False
        self.session.host_name = hostname
        await self.push(reply)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None or self.role.implicit_tls:  # aiosmtpd would start TLS inside TLS
            await self.push("554 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_BDAT(self, arg: str | None) -> None:
        """CHUNKING is not offered, so BDAT is a known verb refused with a clear reply (not "unrecognized").

        A client that sends BDAT anyway sends its chunk right behind it: those octets are read and dropped,
        never taken as commands (a chunk could otherwise smuggle SMTP commands into the session)."""
        size = (arg or "").split()[0] if (arg or "").split() else ""
        if size.isdigit() and len(size) <= 12:
            remaining = int(size)
            limit = self.data_size_limit or 0
            if limit and remaining > limit:  # more than DATA would accept: do not read it, end the session
                self.hang_up(f"421 4.7.0 {self.hostname} Error: BDAT chunk larger than the size limit")
                return
            reader = self._reader
            try:
                while remaining > 0:
                    chunk = await reader.read(min(remaining, CHUNK))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    self._reset_timeout()
            except ConnectionError:
                return
            self.note("!", f"[{size} octets of a BDAT chunk discarded]")
        await self.push("502 5.5.1 Error: BDAT is not offered (no CHUNKING); use DATA")

    # AUTH ----------------------------------------------------------------------------------------

    def _authenticate_with_credentials(self, server, session, envelope, mechanism: str, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            ok = self.credentials.check_password(user, auth_data.password.decode("utf-8", "replace"))
        else:  # CRAM-MD5: (user, challenge, digest)
            user, challenge, digest = auth_data
            ok = self.credentials.check_cram(user, challenge, digest)
        if not ok:
            return AuthResult(success=False, handled=False)
        self.identity = Identity(mechanism, user)
        return AuthResult(success=True, auth_data=self.identity)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.role.auth:
            await self.push("502 5.5.1 AUTH is not offered on the relay listener (port 25 role); "
                            "submit on the submission or smtps listener")
            return
        await super().smtp_AUTH(arg)

    async def auth_CRAM__MD5(self, _, args: list[str]) -> AuthResult:
        challenge = f"<{secrets.randbelow(10**12)}.{int(time.time())}@{self.hostname}>".encode()
        response = await self.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = response.decode("utf-8", "replace").rpartition(" ")
        if not user or len(digest) != 32:
            await self.push("501 5.5.2 Malformed CRAM-MD5 response")
            return AuthResult(success=False, handled=True)
        return self._authenticate("CRAM-MD5", (user, challenge, digest))

    # XCLIENT -------------------------------------------------------------------------------------

    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Postfix XCLIENT: a loopback client may say which client IP, name and HELO to pretend."""
        if not is_loopback(self.peer_ip):
            await self.push("550 5.7.0 Insufficient authorization: XCLIENT is accepted from loopback only")
            return
        if self.envelope is not None and self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        if not arg:
            await self.push("501 5.5.4 Syntax: XCLIENT attribute=value [attribute=value ...]")
            return
        updates: dict[str, str | None] = {}
        for item in arg.split():
            key, sep, value = item.partition("=")
            key = key.upper()
            if not sep or key not in XCLIENT_ATTRS:
                await self.push(f"501 5.5.4 Bad XCLIENT attribute name: {key[:40]}")
                return
            value = _xtext_decode(value)
            if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                updates[key] = None
                continue
            if key == "ADDR":
                addr = value[5:] if value.upper().startswith("IPV6:") else value
                try:
                    value = str(ipaddress.ip_address(addr))
                except ValueError:
                    await self.push(f"501 5.5.4 Bad XCLIENT ADDR syntax: {value[:60]}")
                    return
            updates[key] = value
        self.xclient.update(updates)
        self._set_rset_state()
        self._greeting_pending = True  # the rules see the new client, as for a new connection
        await self.push(f"220 {self.hostname} {self.__ident__}")

    # DATA ----------------------------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        action = self.event_handler.decide_each(self, "data", self.envelope.rcpt_tos) \
            if "data" in self.event_handler.stages else None
        if action is not None:
            reply = await self.enact(action)
            if self.refusing(action, reply):
                self.event_handler.refused(self, "data", reply or "", action, rcpts=self.envelope.rcpt_tos)
                self._set_rset_state()
                if reply is not None:
                    await self.push(reply)
                return
            if self.hung_up or self.transport is None:
                return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, too_big = await self._read_data()
        self.note(">", f"[{len(content) if content is not None else 'over-limit'} octets of message data]")
        if too_big:
            reply = f"552 5.3.4 Message size exceeds fixed maximum message size ({self.data_size_limit} octets)"
            self.event_handler.refused(self, "end-of-data", reply, None, rcpts=self.envelope.rcpt_tos)
            self._set_post_data_state()
            await self.push(reply)
            return
        self.envelope.original_content = content
        self.envelope.content = content
        if self._timeout_handle is not None:  # the idle timer is for the client, not for the commit
            self._timeout_handle.cancel()
        status = await self._call_handler_hook("DATA")
        self._reset_timeout()
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
        if isinstance(status, str) and status.startswith("250"):
            self.end_transaction()

    async def _read_data(self) -> tuple[bytes | None, bool]:
        """Read to `<CRLF>.<CRLF>`; returns (unstuffed content, too_big). Surplus bytes go back to the reader."""
        reader = self._reader
        limit = self.data_size_limit or 0
        buf = bytearray(b"\r\n")  # sentinel: a lone "." on the first line ends empty data
        start = 0
        dropped = 0
        old_limit = reader._limit  # type: ignore[attr-defined]
        reader._limit = max(old_limit, 1 << 20)  # type: ignore[attr-defined]
        try:
            while True:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    raise ConnectionResetError("connection closed during DATA")
                self._reset_timeout()
                buf += chunk
                idx = buf.find(END, start)
                if idx >= 0:
                    surplus = bytes(buf[idx + len(END):])
                    if surplus:
                        reader._buffer[0:0] = surplus  # type: ignore[attr-defined]
                    if dropped or (limit and idx > limit):  # over the limit, even on the read that ended it
                        return None, True
                    del buf[idx + 2:]
                    return bytes(buf).replace(b"\r\n.", b"\r\n")[2:], False
                if limit and len(buf) + dropped > limit + 2:
                    dropped += len(buf) - 4
                    del buf[:-4]  # the tail is all a mark split across reads can need
                start = max(0, len(buf) - len(END) + 1)
        finally:
            reader._limit = old_limit  # type: ignore[attr-defined]


def _recording(verb: str, method):
    """An smtp_* method that first notes the command in the transcript (AUTH without its credentials), and does
    nothing once a 421 has been sent. Applied once to the class, not per connection."""
    @functools.wraps(method)  # keeps the @syntax attributes HELP lists commands by
    async def recorded(self: LabSMTP, arg):
        if self.hung_up:
            return None
        if verb == "MAIL" and self._preamble is None:
            self._preamble = len(self.transcript)
        shown = verb if arg is None else f"{verb} {arg}"
        if verb == "AUTH" and arg:
            shown = f"AUTH {arg.split()[0]} [credentials hidden]"
        self.note(">", shown)
        if self.refused_greeting and verb != "QUIT":
            await self.push(BAD_SEQUENCE)
            return None
        self._verb = verb
        self._mail_arg = arg if verb == "MAIL" else None  # never AUTH's credentials
        return await method(self, arg)
    return recorded


for _attr in [a for a in dir(LabSMTP) if a.startswith("smtp_")]:
    setattr(LabSMTP, _attr, _recording(_attr[5:], getattr(LabSMTP, _attr)))

_SMTP_METHODS = tuple((a[5:], a) for a in dir(LabSMTP) if a.startswith("smtp_"))
_AUTH_METHODS = tuple((getattr(getattr(LabSMTP, a), "__auth_mechanism_name__", a[5:].replace("__", "-")), a)
                      for a in dir(LabSMTP) if a.startswith("auth_"))
_HOOKS: dict[int, tuple[Any, dict, str | None]] = {}


def _hooks(handler: Any) -> tuple[dict, str | None]:
    """The handler's handle_* hooks (bound), and aiosmtpd's EHLO hook style; worked out once per handler."""
    cached = _HOOKS.get(id(handler))
    if cached is not None and cached[0] is handler:
        return dict(cached[1]), cached[2]
    hooks = {m[7:]: getattr(handler, m) for m in dir(handler) if m.startswith("handle_")}
    ehlo = hooks.get("EHLO")
    version = None if ehlo is None else {4: "old", 5: "new"}[len(inspect.signature(ehlo).parameters)]
    _HOOKS[id(handler)] = (handler, hooks, version)
    return dict(hooks), version


def _valid(text: str) -> str:
    """Client text as valid Unicode (8-bit bytes arrive as lone surrogates): U+FFFD for what does not decode."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _xtext_decode(value: str) -> str:
    """RFC 3461 xtext: `+XX` is a hex-encoded octet."""
    if "+" not in value:
        return value
    out = bytearray()
    i = 0
    raw = value.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i : i + 1] == b"+" and i + 2 < len(raw) + 1:
            try:
                out += binascii.unhexlify(raw[i + 1 : i + 3])
                i += 3
                continue
            except (binascii.Error, ValueError):
                pass
        out += raw[i : i + 1]
        i += 1
    return out.decode("utf-8", "replace")
