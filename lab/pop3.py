"""Provides the POP3 listener: captured mail read back by real clients (fetchmail, Thunderbird, mutt, a
bounce processor) exactly as a production mailbox would serve it.

RFC 1939 (USER/PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL), RFC 2449 (CAPA, response
codes), RFC 2595 (STLS) and RFC 5034 (AUTH PLAIN). The user name selects the mailbox (lab.mailboxes):
an envelope recipient address, or `*` / `catchall` for every message. Passwords follow the SMTP policy
(lab.smtp.auth): anything is accepted unless a credentials file is configured; they are never logged
or stored.

Cleartext USER/PASS is accepted, because the listener is meant for loopback and the lab's passwords are
test passwords, but STLS is advertised so a client that insists on TLS gets it. DELE followed by QUIT
deletes the message from the lab, from every mailbox at once: a bounce processor expects mail it deleted
to be gone. Every store access runs in a small thread pool, so a large RETR never stalls an SMTP client
on the same event loop. Timeouts use asyncio.timeout(), never wait_for(): on Python 3.11 wait_for() can
swallow a cancellation that lands as its inner future completes, and a stopping lab would then wait for
an idle client's autologout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import ssl
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path

from lab.mailboxes import Entry, delete, mailbox, wire
from lab.smtp.auth import Credentials
from lab.store import Store

log = logging.getLogger("maillab.pop3")

IDLE_TIMEOUT = 600.0  # RFC 1939 section 3: an autologout timer of at least 10 minutes
MAX_LINE = 8192  # RFC 2449 allows 255 octets per command; AUTH PLAIN responses can be longer
MAX_JUNK = 1 << 20  # an over-long line is skipped; a client that keeps sending one that long is cut off
MAX_SESSIONS = 64
MAX_FAILURES = 5  # failed logins before the connection is closed
_NUMBER = re.compile(r"[0-9]{1,9}")
_LF = re.compile(rb"\n")
_DOT = re.compile(rb"^\.", re.M)
TOO_LONG = b"\x00too long"  # what line() returns for a line it skipped

Deleted = Callable[[list[int]], None]


class _Close(Exception):
    """End the session after sending `reply` (None: send nothing more)."""

    def __init__(self, reply: str | None = None):
        super().__init__(reply)
        self.reply = reply


def multiline(body: bytes) -> bytes:
    """A multi-line response body: dot-stuffed (RFC 1939 section 3) and terminated. `body` comes from wire(),
    so every line, the last included, already ends with CRLF."""
    return _DOT.sub(b"..", body) + b".\r\n"


def top(raw: bytes, lines: int) -> bytes:
    """The header, the blank line and the first `lines` lines of the body, as TOP sends them (unstuffed).
    A message without a blank line is all header."""
    data = wire(raw)
    if data.startswith(b"\r\n"):
        cut = 2
    else:
        blank = data.find(b"\r\n\r\n")
        cut = len(data) if blank < 0 else blank + 4
    body = data[cut:]
    if lines >= body.count(b"\n"):
        return data
    if lines <= 0:
        return data[:cut]
    end = next(islice(_LF.finditer(body), lines - 1, None)).end()
    return data[:cut] + body[:end]


class Pop3Server(asyncio.AbstractServer):
    """The listening socket plus its sessions: close() also ends the sessions (without UPDATE, so a client
    cut off by a stopping lab deletes nothing), and wait_closed() waits for them."""

    def __init__(self, db_path: Path, tls: ssl.SSLContext | None, credentials: Credentials, hostname: str,
                 idle_timeout: float, on_delete: Deleted | None, max_sessions: int):
        self.db_path = Path(db_path)
        self.tls = tls
        self.credentials = credentials
        self.hostname = hostname
        self.idle_timeout = idle_timeout
        self.on_delete = on_delete
        self.max_sessions = max_sessions
        self.sizes: dict[int, int] = {}  # octet counts by store id, shared by sessions: bytes never change
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="maillab-pop3")
        self.sessions: set[asyncio.Task] = set()
        self.server: asyncio.Server | None = None

    # asyncio.AbstractServer -------------------------------------------------------------------------

    @property
    def sockets(self):
        return self.server.sockets if self.server is not None else ()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.sessions):
            task.cancel()

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()
        if self.sessions:
            await asyncio.wait(list(self.sessions), timeout=10)
        self.executor.shutdown(wait=False)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.server.get_loop()

    def is_serving(self) -> bool:
        return self.server is not None and self.server.is_serving()

    async def start_serving(self) -> None:
        await self.server.start_serving()

    async def serve_forever(self) -> None:
        await self.server.serve_forever()

    # sessions ---------------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.sessions.add(task)
        graceful = False
        try:
            if len(self.sessions) > self.max_sessions:
                writer.write(b"-ERR [SYS/TEMP] too many POP3 sessions; try again later\r\n")
                async with asyncio.timeout(5):
                    await writer.drain()
            else:
                await _Session(self, reader, writer).run()
            graceful = True
        except (asyncio.CancelledError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except Exception:
            log.exception("POP3 session failed")
        finally:
            self.sessions.discard(task)
            await _hang_up(writer, graceful)


async def _hang_up(writer: asyncio.StreamWriter, graceful: bool) -> None:
    """Close so the last reply still reaches the client (flushed, TLS close_notify sent), or at once when the
    session was cut off or the client is not reading."""
    if graceful:
        writer.close()
        try:
            async with asyncio.timeout(5):
                await writer.wait_closed()
            return
        except (Exception, asyncio.CancelledError):
            pass
    writer.transport.abort()


async def start_pop3(host: str, port: int, db_path: str | Path, tls_context: ssl.SSLContext | None,
                     credentials: Credentials | None, hostname: str, *, idle_timeout: float = IDLE_TIMEOUT,
                     on_delete: Deleted | None = None, max_sessions: int = MAX_SESSIONS) -> Pop3Server:
    """Listen for POP3 on host:port (0 picks a free port: read it from `.sockets[0]`). Raises OSError when the
    port cannot be bound. `tls_context` None: no STLS. `on_delete` is called on the loop with the ids a QUIT
    deleted, so a UI can drop them from its list."""
    pop3 = Pop3Server(db_path, tls_context, credentials or Credentials(), hostname, idle_timeout, on_delete,
                      max_sessions)
    pop3.server = await asyncio.start_server(pop3.handle, host, port, limit=MAX_LINE * 2, backlog=128)
    return pop3


class _Session:
    def __init__(self, server: Pop3Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.tls = False
        self.user: str | None = None  # USER given, PASS awaited
        self.mailbox: str | None = None  # set once authenticated: TRANSACTION state
        self.entries: list[Entry] = []
        self.deleted: set[int] = set()  # indexes into entries
        self.failures = 0
        self.store: Store | None = None
        self.busy: Future | None = None
        peer = writer.get_extra_info("peername")
        self.peer = peer[0] if peer else "?"

    # plumbing ---------------------------------------------------------------------------------------

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() + b"\r\n" if isinstance(data, str) else data)
        async with asyncio.timeout(self.server.idle_timeout):
            await self.writer.drain()

    async def line(self) -> bytes | None:
        """The next command line without its line end; TOO_LONG for one over MAX_LINE (skipped); None at EOF.
        Raises _Close when the client is idle too long or keeps sending one endless line."""
        skipped = 0
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 1]
                if skipped or end > MAX_LINE:
                    return TOO_LONG
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > MAX_LINE:
                skipped += len(self.buf)
                self.buf.clear()
                if skipped > MAX_JUNK:
                    raise _Close("-ERR line too long; closing")
            try:
                async with asyncio.timeout(self.server.idle_timeout):
                    chunk = await self.reader.read(65536)
            except TimeoutError:
                raise _Close("-ERR [SYS/TEMP] autologout: idle for too long; nothing was deleted") from None
            if not chunk:
                return None
            self.buf += chunk

    async def db(self, fn, *args):
        """Run fn(store, *args) in the pool. A session never has two calls in flight; the store is opened by the
        first and closed after the last one finishes, even when the session was cancelled meanwhile."""
        self.busy = self.server.executor.submit(self._call, fn, args)
        return await asyncio.wrap_future(self.busy)

    def _call(self, fn, args):
        if self.store is None:
            self.store = Store(self.server.db_path)
        return fn(self.store, *args)

    def close_store(self) -> None:
        if self.busy is not None and not self.busy.done():
            self.busy.add_done_callback(lambda _: self._close_now())  # in the worker thread, once it is done
        else:
            self._close_now()

    def _close_now(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            store.close()

    # the session ------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.send(f"+OK {self.server.hostname} maillab POP3 ready (captured mail; never delivered)")
            while True:
                raw = await self.line()
                if raw is None:
                    return  # EOF without QUIT: no UPDATE state, nothing is deleted (RFC 1939 section 6)
                if raw is TOO_LONG:
                    await self.send(f"-ERR line too long (at most {MAX_LINE} octets)")
                    continue
                reply = await self.command(raw)
                if reply is not None:
                    await self.send(reply)
        except _Close as stop:
            if stop.reply:
                try:
                    await self.send(stop.reply)
                except (ConnectionError, TimeoutError, ssl.SSLError):
                    pass
        finally:
            self.close_store()

    async def command(self, raw: bytes) -> bytes | str | None:
        text = raw.decode("utf-8", "replace")
        keyword, _, arg = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "PASS":
            return await self.pass_(arg)  # the password may contain spaces (RFC 1939 section 7)
        args = arg.split()
        if keyword == "QUIT":
            return await self.quit()
        if keyword == "CAPA":
            return self.capa()
        if keyword == "NOOP" and self.mailbox is not None:
            return "+OK"
        if self.mailbox is None:
            if keyword == "USER":
                return self.user_(arg.strip())
            if keyword == "AUTH":
                return await self.auth(args)
            if keyword == "STLS":
                return await self.stls()
            if keyword in ("STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL", "NOOP", "APOP"):
                if keyword == "APOP":
                    return "-ERR APOP is not supported; use USER/PASS or AUTH PLAIN"
                return "-ERR log in first (USER and PASS, or AUTH PLAIN)"
            return "-ERR unknown command"
        handler = {"STAT": self.stat, "LIST": self.list_, "RETR": self.retr, "DELE": self.dele, "RSET": self.rset,
                   "TOP": self.top, "UIDL": self.uidl}.get(keyword)
        if handler is not None:
            return await handler(args)
        if keyword in ("USER", "PASS", "AUTH", "APOP", "STLS"):
            return "-ERR already logged in"
        return "-ERR unknown command"

    # AUTHORIZATION ----------------------------------------------------------------------------------

    def capa(self) -> bytes:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.mailbox is None:
            caps += ["USER", "SASL PLAIN"]
            if self.server.tls is not None and not self.tls:
                caps.append("STLS")
        caps.append("IMPLEMENTATION maillab")
        return ("+OK capability list follows\r\n" + "".join(c + "\r\n" for c in caps) + ".\r\n").encode()

    def user_(self, name: str) -> str:
        if not _valid_name(name):
            return "-ERR USER needs a mailbox name: a recipient address, or * for every message"
        self.user = name
        return "+OK send PASS"

    async def pass_(self, password: str) -> str:
        if self.mailbox is not None:
            return "-ERR already logged in"
        if self.user is None:
            return "-ERR send USER first"
        user, self.user = self.user, None
        return await self.login(user, user, password)

    async def auth(self, args: list[str]) -> str | bytes:
        if not args:
            return b"+OK mechanisms follow\r\nPLAIN\r\n.\r\n"  # RFC 1734 style listing, as clients probe it
        if args[0].upper() != "PLAIN":
            return "-ERR unsupported SASL mechanism: PLAIN only"
        if len(args) > 2:
            return "-ERR AUTH PLAIN takes one initial response"
        if len(args) == 2:
            response = args[1]
        else:
            await self.send("+ ")
            line = await self.line()
            if line is None:
                raise _Close()
            if line is TOO_LONG:
                return "-ERR [AUTH] the PLAIN response is too long"
            response = line.decode("ascii", "replace").strip()
        if response == "*":
            return "-ERR authentication cancelled"
        try:
            decoded = b"" if response == "=" else base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            return "-ERR [AUTH] the PLAIN response is not valid base64"
        parts = decoded.split(b"\x00")
        if len(parts) != 3:
            return "-ERR [AUTH] the PLAIN response is not authzid NUL authcid NUL password"
        authzid, authcid, password = (p.decode("utf-8", "replace") for p in parts)
        mailbox_name = authzid or authcid
        if not _valid_name(authcid) or not _valid_name(mailbox_name):
            return "-ERR [AUTH] empty or invalid user name"
        return await self.login(authcid, mailbox_name, password)

    async def login(self, user: str, mailbox_name: str, password: str) -> str:
        """Check the password for `user`, then open `mailbox_name` (the same unless AUTH PLAIN's authzid
        asked for another one: a user of the credentials file may read any mailbox)."""
        if not self.server.credentials.check_password(user, password):
            self.failures += 1
            log.info("POP3 login failed for %r from %s", user[:100], self.peer)
            if self.failures >= MAX_FAILURES:
                raise _Close("-ERR [AUTH] too many failed logins; closing")
            return "-ERR [AUTH] invalid user name or password"
        try:
            self.entries = await self.db(mailbox, mailbox_name, self.server.sizes)
        except Exception:
            log.exception("POP3 could not read the store")
            return "-ERR [SYS/TEMP] the lab could not read its store; try again"
        self.mailbox = mailbox_name
        self.deleted.clear()
        log.info("POP3 %r logged in from %s: %d messages", mailbox_name[:100], self.peer, len(self.entries))
        return f"+OK {_shown(mailbox_name)} has {_count(len(self.entries))} ({self._octets()} octets)"

    async def stls(self) -> str | None:
        if self.tls:
            return "-ERR already using TLS"
        if self.server.tls is None:
            return "-ERR STLS is not available"
        # RFC 2595 section 4: forget what the client said in cleartext, and anything it sent after STLS
        # before the handshake (plaintext injected there must not be read as if it came through TLS).
        # No await between the reply and the switch: start_tls stops reading before it first yields, so a
        # fast client's ClientHello cannot land in the plaintext buffer meanwhile.
        self.user = None
        self.buf.clear()
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        self.writer.write(b"+OK begin TLS negotiation\r\n")
        try:
            await self.writer.start_tls(self.server.tls, ssl_handshake_timeout=30)
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as exc:
            log.info("POP3 TLS handshake with %s failed: %s", self.peer, exc)
            raise ConnectionAbortedError("TLS handshake failed") from None  # hang up at once, not gracefully
        self.tls = True
        return None

    # TRANSACTION ------------------------------------------------------------------------------------

    def _octets(self) -> int:
        return sum(e.size for i, e in enumerate(self.entries) if i not in self.deleted)

    def _pick(self, arg: str) -> int | str:
        """The index for a message-number argument, or the -ERR reply."""
        if not _NUMBER.fullmatch(arg):
            return "-ERR invalid message number"
        n = int(arg)
        if not 1 <= n <= len(self.entries):
            return f"-ERR no such message: the maildrop has {len(self.entries)}"
        if n - 1 in self.deleted:
            return f"-ERR message {n} is deleted"
        return n - 1

    async def stat(self, args: list[str]) -> str:
        if args:
            return "-ERR STAT takes no argument"
        return f"+OK {len(self.entries) - len(self.deleted)} {self._octets()}"

    async def list_(self, args: list[str]) -> str | bytes:
        return self._scan(args, "LIST", lambda e: str(e.size))

    async def uidl(self, args: list[str]) -> str | bytes:
        return self._scan(args, "UIDL", lambda e: e.uid)

    def _scan(self, args: list[str], name: str, value) -> str | bytes:
        if len(args) > 1:
            return f"-ERR {name} takes at most one message number"
        if args:
            index = self._pick(args[0])
            if isinstance(index, str):
                return index
            return f"+OK {index + 1} {value(self.entries[index])}"
        rows = "".join(f"{i + 1} {value(e)}\r\n" for i, e in enumerate(self.entries) if i not in self.deleted)
        count = len(self.entries) - len(self.deleted)
        return f"+OK {_count(count)} ({self._octets()} octets)\r\n{rows}.\r\n".encode()

    async def retr(self, args: list[str]) -> str | bytes | None:
        if len(args) != 1:
            return "-ERR RETR takes one message number"
        return await self._send_message(args[0], None)

    async def top(self, args: list[str]) -> str | bytes | None:
        if len(args) != 2:
            return "-ERR TOP takes a message number and a number of lines"
        if not _NUMBER.fullmatch(args[1]):
            return "-ERR invalid number of lines"
        return await self._send_message(args[0], int(args[1]))

    async def _send_message(self, arg: str, lines: int | None) -> str | None:
        index = self._pick(arg)
        if isinstance(index, str):
            return index
        entry = self.entries[index]
        try:
            body = await self.db(_payload, entry.id, lines)
        except Exception:
            log.exception("POP3 could not read message %d", entry.id)
            return "-ERR [SYS/TEMP] the lab could not read the message; try again"
        if body is None:
            return f"-ERR message {index + 1} was deleted from the lab during this session"
        await self.send((f"+OK {entry.size} octets\r\n" if lines is None else "+OK\r\n").encode() + body)
        return None

    async def dele(self, args: list[str]) -> str:
        if len(args) != 1:
            return "-ERR DELE takes one message number"
        index = self._pick(args[0])
        if isinstance(index, str):
            return index
        self.deleted.add(index)
        return f"+OK message {index + 1} deleted (removed from the lab at QUIT)"

    async def rset(self, args: list[str]) -> str:
        if args:
            return "-ERR RSET takes no argument"
        self.deleted.clear()
        return f"+OK maildrop has {_count(len(self.entries))} ({self._octets()} octets)"

    async def quit(self) -> str:
        """QUIT in TRANSACTION enters UPDATE: the messages marked with DELE leave the lab."""
        if self.mailbox is None or not self.deleted:
            raise _Close("+OK maillab POP3 signing off")
        ids = [self.entries[i].id for i in sorted(self.deleted)]
        try:
            gone = await self.db(delete, ids)
        except Exception:
            log.exception("POP3 could not delete messages")
            raise _Close("-ERR [SYS/TEMP] some deleted messages not removed; the lab kept them all") from None
        log.info("POP3 %r deleted %d messages", self.mailbox[:100], gone)
        if self.server.on_delete is not None:
            try:
                self.server.on_delete(ids)
            except Exception:
                log.exception("a POP3 delete subscriber failed")
        raise _Close(f"+OK maillab POP3 signing off ({_count(len(ids))} deleted from the lab)")


def _payload(store: Store, message_id: int, lines: int | None) -> bytes | None:
    raw = store.raw(message_id)
    if raw is None:
        return None
    return multiline(wire(raw) if lines is None else top(raw, lines))


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 320 and name.isprintable() and not any(c.isspace() for c in name)


def _shown(name: str) -> str:
    return name if len(name) <= 80 else name[:77] + "..."


def _count(n: int) -> str:
    return f"{n} message" if n == 1 else f"{n} messages"
