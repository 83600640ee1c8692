"""Provides LabSMTP: aiosmtpd's SMTP with XCLIENT, CRAM-MD5, a session transcript and a fast DATA reader.

aiosmtpd reads DATA a line at a time and rejects lines over 1,000 octets. The lab must capture whatever
a client sends, so DATA is read in large chunks and the end-of-data mark `<CRLF>.<CRLF>` and dot-stuffing
are handled with bytes operations. Only `<CRLF>.<CRLF>` ends the data: `<LF>.<LF>` and `<CR>.<CR>` do
not (SMTP smuggling).
"""

from __future__ import annotations

import binascii
import ipaddress
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

from lab.core.model import Listener, is_loopback
from lab.smtp.auth import Credentials, Identity

CHUNK = 1 << 16
END = b"\r\n.\r\n"
MAX_TRANSCRIPT = 400
XCLIENT_ATTRS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")

# aiosmtpd's own replies, with the RFC 3463 enhanced status codes clients log and tests match on
_ENHANCED = {
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Error: message size exceeds fixed maximum message size",
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "503 Error: send HELO first": "503 5.5.1 Error: send HELO first",
    "503 Error: send EHLO first": "503 5.5.1 Error: send EHLO first",
    "250 OK": "250 2.0.0 OK",
    "221 Bye": "221 2.0.0 Bye",
    "553 5.1.3 Error: malformed address": "553 5.1.3 Error: malformed address",
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "500 Command line too long": "500 5.5.2 Command line too long",
}


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
        self.xclient: dict[str, str | None] = {}
        self.transcript: list[list] = []
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
        async def wrapper(arg):
            shown = name if arg is None else f"{name} {arg}"
            if name == "AUTH" and arg:
                shown = f"AUTH {arg.split()[0]} [credentials hidden]"
            self.note(">", shown)
            return await method(arg)
        return wrapper

    async def push(self, status):
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        text = _ENHANCED.get(text, text)
        self.note("<", text)
        await super().push(text)

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
        status = await self._call_handler_hook("DATA")
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
                    if dropped:
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
