"""Provides LabSMTP: aiosmtpd's SMTP with XCLIENT, CRAM-MD5, a session transcript and a fast DATA reader.

aiosmtpd reads DATA a line at a time and rejects lines over 1,000 octets. The lab must capture whatever
a client sends, so DATA is read in large chunks and the end-of-data mark `<CRLF>.<CRLF>` and dot-stuffing
are handled with bytes operations. Only `<CRLF>.<CRLF>` ends the data: `<LF>.<LF>` and `<CR>.<CR>` do
not (SMTP smuggling).

Protocol abuse is answered as Postfix smtpd answers it: every reply carries an RFC 3463 enhanced status
code, an idle client gets `421 4.4.2 <host> Error: timeout exceeded` before the connection is closed, and
a client that keeps sending bad commands gets `421 4.7.0` and is disconnected. Nothing sent after a 421 is
acted on.
"""

from __future__ import annotations

import binascii
import collections
import functools
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, syntax

from lab.core.model import Listener, is_loopback
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
_BOGUS_GOODBYE = "502 5.5.1 Too many unrecognized commands, goodbye."


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

    def __init__(self, handler: Any, role: Role, credentials: Credentials, port: int, **kwargs):
        self.role = role
        self.credentials = credentials
        self.port = port
        # aiosmtpd keeps these on the class, shared by every connection, and adds to them on every EHLO
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.errors = 0
        self.hung_up = False  # a 421 was sent: nothing more is read, acted on or answered
        self.xclient: dict[str, str | None] = {}
        self.transcript: list[list] = []
        self._held: list[str] = []  # continuation lines of a multi-line reply, sent with its last line
        self.identity: Identity | None = None
        self._t0 = time.monotonic()
        super().__init__(
            handler,
            auth_required=role.require_auth,
            auth_require_tls=not role.implicit_tls,
            require_starttls=role.require_tls,
            authenticator=self._authenticator,
            **kwargs,
        )
        self._smtp_methods = {name: self._recorded(name, m) for name, m in self._smtp_methods.items()}

    # transcript ----------------------------------------------------------------------------------

    def note(self, direction: str, text: str) -> None:
        if len(self.transcript) >= MAX_TRANSCRIPT:
            if len(self.transcript) == MAX_TRANSCRIPT:
                self.transcript.append([round(time.monotonic() - self._t0, 4), "!", "(transcript truncated)"])
            return
        self.transcript.append([round(time.monotonic() - self._t0, 4), direction, text[:1000]])

    def _recorded(self, name: str, method):
        @functools.wraps(method)  # keeps the @syntax attributes HELP lists commands by
        async def wrapper(arg):
            if self.hung_up:
                return None
            shown = name if arg is None else f"{name} {arg}"
            if name == "AUTH" and arg:
                shown = f"AUTH {arg.split()[0]} [credentials hidden]"
            self.note(">", shown)
            return await method(arg)
        return wrapper

    async def push(self, status):
        if self.hung_up:
            return
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if text == _BOGUS_GOODBYE:  # aiosmtpd closes after its 5th unknown verb: say so with a 421, as Postfix
            self.hang_up(f"421 4.7.0 {self.hostname} Error: too many unrecognized commands")
            return
        text = _UNSAFE.sub("?", _enhanced(text))  # replies echo client bytes: no controls, no undecodable bytes
        self.note("<", text)
        if len(text) > 3 and text[3] == "-":  # a multi-line reply (EHLO): one write for all its lines
            self._held.append(text)
            return
        if self._held:
            text = "\r\n".join([*self._held, text])
            self._held.clear()
        await super().push(text)
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

    def _timeout_cb(self) -> None:  # aiosmtpd just closes
        self.hang_up(f"421 4.4.2 {self.hostname} Error: timeout exceeded")

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.session is not None and self.session.ssl is not None:
            self.note("!", f"TLS established ({self.tls_facts()[0]})")

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
        try:
            return super()._getaddr(arg)
        except (IndexError, ValueError):  # the stdlib parser raises on "<", "<a@": 553 malformed, not a 500 crash
            return None, None

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()  # aiosmtpd adds the SIZE and SMTPUTF8 allowances again on every EHLO
        await super().smtp_EHLO(hostname)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None or self.role.implicit_tls:  # aiosmtpd would start TLS inside TLS
            await self.push("554 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_BDAT(self, arg: str | None) -> None:
        """CHUNKING is not offered, so BDAT is a known verb refused with a clear reply (not "unrecognized")."""
        await self.push("502 5.5.1 Error: BDAT is not offered (no CHUNKING); use DATA")

    # AUTH ----------------------------------------------------------------------------------------

    def _authenticator(self, server, session, envelope, mechanism: str, auth_data) -> AuthResult:
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
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, too_big = await self._read_data()
        self.note(">", f"[{len(content) if content is not None else 'over-limit'} octets of message data]")
        if too_big:
            self._set_post_data_state()
            await self.push(f"552 5.3.4 Message size exceeds fixed maximum message size ({self.data_size_limit} "
                            "octets)")
            return
        self.envelope.original_content = content
        self.envelope.content = content
        if self._timeout_handle is not None:  # the idle timer is for the client, not for the commit
            self._timeout_handle.cancel()
        status = await self._call_handler_hook("DATA")
        self._reset_timeout()
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

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
