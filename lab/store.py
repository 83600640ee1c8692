"""Provides the message store: SQLite in WAL mode, raw bytes kept exactly, verdicts beside them.

Every thread opens its own Store. Writes from the SMTP path go through lab.writer, which commits many
captures in one transaction (group commit) with synchronous=FULL, so a `250` is only ever sent for
bytes that are on disk.

Refused delivery attempts (and the bounces the lab sent) are kept in the `attempts` table. They reach it
through the same writer: `flat()` turns an Attempt into a tagged row that `add_flat()` inserts there, so
neither writer needs to know about them. Attempts are grouped with messages when read, never linked when
written: an attempt belongs to a message with the same MAIL FROM and recipient (compared in lower case)
that arrived within 5 days after it (RFC 5321 §4.5.4.1: senders give up after 4-5 days) and after the
previous delivery for that pair, or to the message with the same Message-ID.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lab.core.model import (
    DSN_STAGE,
    Attempt,
    Capture,
    Client,
    Envelope,
    Listener,
    SenderHistory,
    Transport,
    address_key,
)
from lab.core.results import Level, Verdict

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    raw BLOB NOT NULL,
    size INTEGER NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,
    helo TEXT,
    mail_options TEXT NOT NULL DEFAULT '[]',
    rcpt_options TEXT NOT NULL DEFAULT '[]',
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    listener TEXT NOT NULL,
    port INTEGER,
    tls_version TEXT,
    tls_cipher TEXT,
    auth_mechanism TEXT,
    auth_user TEXT,
    peer_ip TEXT,
    client_ip TEXT NOT NULL,
    client_name TEXT,
    client_source TEXT NOT NULL DEFAULT 'peer',
    session TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    stage TEXT NOT NULL,
    reply TEXT NOT NULL,
    code INTEGER,
    status TEXT,
    mail_from TEXT,
    mail_from_key TEXT NOT NULL,
    rcpt TEXT,
    rcpt_key TEXT NOT NULL,
    recipients TEXT NOT NULL DEFAULT '[]',
    listener TEXT NOT NULL,
    port INTEGER,
    peer_ip TEXT,
    client_ip TEXT NOT NULL,
    client_source TEXT NOT NULL DEFAULT 'peer',
    helo TEXT,
    tls_version TEXT,
    auth_user TEXT,
    rule TEXT NOT NULL DEFAULT '',
    delay REAL NOT NULL DEFAULT 0,
    disconnect INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    raw BLOB,
    msgid TEXT,
    txn TEXT NOT NULL DEFAULT '',
    message INTEGER,
    dsn INTEGER,
    session TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS verdicts (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    level TEXT NOT NULL,
    analysed_at TEXT NOT NULL,
    from_header TEXT NOT NULL DEFAULT '',
    to_header TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    failed TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL
);
"""

# Added after the first release: sender history (issue 7). Applied to older stores on open.
_MIGRATIONS = (
    ("verdicts", "from_addr", "ALTER TABLE verdicts ADD COLUMN from_addr TEXT NOT NULL DEFAULT ''"),
    ("verdicts", "sender_key", "ALTER TABLE verdicts ADD COLUMN sender_key TEXT NOT NULL DEFAULT ''"),
    ("verdicts", "sender_ip", "ALTER TABLE verdicts ADD COLUMN sender_ip TEXT NOT NULL DEFAULT ''"),
)
_INDEXES = """
DROP INDEX IF EXISTS verdicts_sender;
DROP INDEX IF EXISTS verdicts_from;
CREATE INDEX IF NOT EXISTS verdicts_sender_from ON verdicts (sender_key, message_id, from_addr);
CREATE INDEX IF NOT EXISTS verdicts_from_ip ON verdicts (from_addr, message_id, sender_ip);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts (mail_from_key, rcpt_key, at);
CREATE INDEX IF NOT EXISTS attempts_msgid ON attempts (msgid) WHERE msgid IS NOT NULL;
CREATE INDEX IF NOT EXISTS attempts_message ON attempts (message) WHERE message IS NOT NULL;
"""
# The history is read from these covering indexes alone: a verdict row holds its JSON and a message row its
# bytes, and reading a column past them walks their overflow pages (that made history 40% of analysis).

_COLUMNS = (
    "received_at, raw, size, mail_from, rcpt_to, helo, mail_options, rcpt_options, smtputf8, listener, port, "
    "tls_version, tls_cipher, auth_mechanism, auth_user, peer_ip, client_ip, client_name, client_source, session"
)


_NCOLS = len(_COLUMNS.split(","))
_INSERT = f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join('?' * _NCOLS)})"
_PRUNE = "DELETE FROM messages WHERE id <= (SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?)"

_ATTEMPT_COLUMNS = (
    "at, stage, reply, code, status, mail_from, mail_from_key, rcpt, rcpt_key, recipients, listener, port, peer_ip, "
    "client_ip, client_source, helo, tls_version, auth_user, rule, delay, disconnect, size, raw, msgid, txn, message, "
    "dsn, session"
)
_ATTEMPT_TAG = "\0attempt"  # first item of a flat() row that is an Attempt, not a Capture
_NACOLS = len(_ATTEMPT_COLUMNS.split(","))
_INSERT_ATTEMPT = f"INSERT INTO attempts ({_ATTEMPT_COLUMNS}) VALUES ({', '.join('?' * _NACOLS)})"
_PRUNE_ATTEMPTS = "DELETE FROM attempts WHERE id <= (SELECT id FROM attempts ORDER BY id DESC LIMIT 1 OFFSET ?)"
_SELECT_ATTEMPTS = f"SELECT id, {_ATTEMPT_COLUMNS} FROM attempts"

GROUP_WINDOW = timedelta(days=5)  # RFC 5321 §4.5.4.1: a sender gives up after 4-5 days
MAX_GROUP = 500  # attempts per (sender, recipient) looked at for one message
MAX_GROUP_RCPTS = 50  # recipients of one message whose attempts are looked up
MAX_SCAN = 5000  # messages scanned to find the previous delivery for a sender


@dataclass(frozen=True, slots=True)
class Summary:
    """One row of a message list: enough to draw it without loading the raw bytes."""

    id: int
    received_at: str
    listener: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    size: int
    level: Level | None
    from_header: str
    to_header: str
    subject: str
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Filter:
    """What a message list shows. Parsed from text like `verdict:fail listener:relay failed:dkim invoice`."""

    text: str = ""
    level: str | None = None
    listener: str | None = None
    family: str | None = None

    @classmethod
    def parse(cls, query: str) -> Filter:
        words, fields = [], {}
        for token in query.split():
            key, sep, value = token.partition(":")
            key = {"v": "level", "verdict": "level", "level": "level", "l": "listener", "listener": "listener",
                   "f": "family", "failed": "family", "family": "family"}.get(key.lower()) if sep else None
            if key and value:
                fields[key] = value.lower()
            else:
                words.append(token)
        return cls(" ".join(words), **fields)

    @property
    def empty(self) -> bool:
        return not (self.text or self.level or self.listener or self.family)

    def sql(self) -> tuple[str, list]:
        where, args = [], []
        if self.text:
            like = f"%{self.text}%"
            where.append("(v.subject LIKE ? OR v.from_header LIKE ? OR v.to_header LIKE ? OR m.mail_from LIKE ? "
                         "OR m.rcpt_to LIKE ?)")
            args += [like] * 5
        if self.level:
            where.append("v.level = ?")
            args.append(self.level)
        if self.listener:
            where.append("m.listener = ?")
            args.append(self.listener)
        if self.family:
            where.append("(' ' || v.failed || ' ') LIKE ?")
            args.append(f"% {self.family} %")
        return (" WHERE " + " AND ".join(where)) if where else "", args


@dataclass(frozen=True, slots=True)
class AttemptGroup:
    """Attempts for one sender and recipient (or one client, before MAIL), oldest first, and the message that
    was finally accepted for them, if one was."""

    mail_from: str | None
    rcpt: str | None
    client_ip: str
    attempts: tuple[Attempt, ...]
    message: int | None = None
    accepted_at: datetime | None = None

    @property
    def last(self) -> datetime:
        return self.accepted_at or self.attempts[-1].at


@dataclass(frozen=True, slots=True)
class Stored:
    capture: Capture
    verdict: Verdict | None
    session: list
    analysed_at: str | None


class Store:
    def __init__(self, path: str | Path, durable: bool = True):
        """`durable=False` is for writers of derived data (verdicts): their commits skip the fsync, which WAL
        allows (synchronous=NORMAL); a verdict lost to a crash is made again, as the message has none."""
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():  # captured mail is private: the owner only (SQLite copies this to -wal/-shm)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        if not durable:  # a checkpoint (an fsync of the database) would land on whichever verdict commit crossed
            self.db.execute("PRAGMA wal_autocheckpoint=0")  # the limit (p99 59 -> 37 ms): checkpoint() instead
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(SCHEMA)
        for table, column, sql in _MIGRATIONS:
            if column not in {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}:
                try:
                    self.db.execute(sql)
                except sqlite3.OperationalError:  # another process added it first
                    pass
        self.db.executescript(_INDEXES)

    def close(self) -> None:
        self.db.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database without waiting for readers or writers (a PASSIVE checkpoint): what a
        store opened with `durable=False` does at moments of its choosing instead of on a commit."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # writes --------------------------------------------------------------------------------------

    def add_many(self, items: list[tuple[Capture, list]], keep: int = 0) -> list[int]:
        """Insert captures in one transaction; returns their ids in order. Raises if nothing was stored.

        `keep` > 0 prunes to the newest `keep` messages in the same transaction.
        """
        return self.add_flat([flat(c, s) for c, s in items], keep)

    def add_flat(self, rows: list[tuple], keep: int = 0, verdicts: list[tuple] = ()) -> list[int]:
        """add_many for captures already turned into `flat()` tuples (how the writer process receives them);
        `verdicts` (rows from `verdict_rows`) share the transaction, so the writer process commits both."""
        ids = []
        attempts = False
        with self._write() as cur:
            if verdicts:
                cur.executemany(_INSERT_VERDICT, verdicts)
            for row in rows:
                if row[0] == _ATTEMPT_TAG:
                    cur.execute(_INSERT_ATTEMPT, row[1:])
                    attempts = True
                else:
                    cur.execute(_INSERT, _encoded(row))
                ids.append(cur.lastrowid)
            if keep > 0:
                cur.execute(_PRUNE, (keep,))
                if attempts:
                    cur.execute(_PRUNE_ATTEMPTS, (keep,))
        return ids

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) and rolled back on any error."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def add(self, capture: Capture, session: list | None = None) -> int:
        return self.add_many([(capture, session or [])])[0]

    def save_verdict(self, message_id: int, verdict: Verdict, capture: Capture | None = None) -> None:
        if capture is not None:
            self.save_judged([(replace(capture, id=message_id), verdict)])
        else:
            self.save_verdicts([(message_id, verdict)])

    def save_judged(self, judged: list[tuple[Capture, Verdict]]) -> None:
        """save_verdicts for stored captures: their sender key and client IP go along, for the sender history."""
        self._save_rows(judged_rows(judged))

    def save_verdicts(self, items: list[tuple[int, Verdict]]) -> None:
        """Store verdicts by message id (without the sender history save_judged keeps)."""
        self._save_rows(verdict_rows(items))

    def _save_rows(self, rows: list[tuple]) -> None:
        """Verdict rows (`verdict_rows`) in one transaction; a message deleted meanwhile gets none."""
        with self._write() as cur:
            cur.executemany(_INSERT_VERDICT, rows)

    def history(self, capture: Capture, from_address: str) -> SenderHistory:
        """What earlier judged messages say about this capture's sender (the application, by AUTH user or IP)."""
        key = sender_key(capture)
        before = capture.id if capture.id is not None else 1 << 62
        earlier = self.db.execute("SELECT count(*) FROM verdicts WHERE sender_key = ? AND message_id < ?",
                                  (key, before)).fetchone()[0]
        addresses = [r[0] for r in self.db.execute(
            "SELECT from_addr FROM verdicts WHERE sender_key = ? AND message_id < ? AND from_addr != '' "
            "ORDER BY message_id DESC LIMIT 50", (key, before))]
        ips = [r[0] for r in self.db.execute(
            "SELECT sender_ip FROM verdicts WHERE from_addr = ? AND message_id < ? AND sender_ip != '' "
            "ORDER BY message_id DESC LIMIT 50", (from_address.lower(), before))] if from_address else []
        label = f"AUTH user {capture.transport.auth_user}" if capture.transport.auth_user else \
            f"client {capture.client.ip}"
        return SenderHistory(label, earlier, tuple(dict.fromkeys(addresses)), tuple(dict.fromkeys(ips)))

    def delete(self, message_id: int) -> bool:
        return self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount > 0

    def clear(self) -> int:
        """Delete every message, and every recorded attempt with them; returns how many messages there were."""
        with self._write() as cur:
            gone = cur.execute("DELETE FROM messages").rowcount
            cur.execute("DELETE FROM attempts")
        return gone

    def add_attempt(self, attempt: Attempt, session: list | None = None) -> int:
        """Store one attempt directly (tests, imports); the SMTP path goes through the writer instead."""
        return self.add_flat([flat(attempt, session or [])])[0]

    # attempts ------------------------------------------------------------------------------------

    def count_attempts(self) -> int:
        return self.db.execute("SELECT count(*) FROM attempts").fetchone()[0]

    def attempts(self, limit: int | None = None, with_raw: bool = False) -> list[Attempt]:
        """Every attempt, newest first."""
        sql = f"{_SELECT_ATTEMPTS} ORDER BY id DESC" + (" LIMIT ?" if limit is not None else "")
        return [_attempt(r, with_raw) for r in self.db.execute(sql, (limit,) if limit is not None else ())]

    def attempt(self, attempt_id: int) -> tuple[Attempt, list] | None:
        """One attempt with its raw bytes and its session transcript."""
        row = self.db.execute(f"{_SELECT_ATTEMPTS} WHERE id = ?", (attempt_id,)).fetchone()
        return (_attempt(row, True), json.loads(row[-1] or "[]")) if row else None

    def attempt_group(self, capture: Capture, message_id: str | None = None) -> tuple[Attempt, ...]:
        """The refusals and bounces that came before this message for its sender and recipients, oldest first:
        what the retry checks judge. Refusals count from the previous delivery for the same pair on; bounces
        (which follow a delivery) and refusals of the same Message-ID count within the 5-day window."""
        if capture.transport.listener is Listener.LAB or capture.id is None:
            return ()
        mail_from = address_key(capture.envelope.mail_from)
        at = capture.received_at.astimezone(UTC)
        lo, hi = _iso(at - GROUP_WINDOW), _iso(at)
        rcpts = list(dict.fromkeys(address_key(r) for r in capture.envelope.rcpt_to[:MAX_GROUP_RCPTS]))
        found: dict[int, Attempt] = {}
        for rcpt in [*rcpts, ""]:  # "" holds refusals before RCPT: a MAIL-stage 450 was for every recipient
            for row in self.db.execute(
                    f"{_SELECT_ATTEMPTS} WHERE mail_from_key = ? AND rcpt_key = ? AND at >= ? AND at <= ? "
                    "ORDER BY at DESC LIMIT ?", (mail_from, rcpt, lo, hi, MAX_GROUP)):
                found[row[0]] = _attempt(row)
        same_id: set[int] = set()
        if message_id:
            for row in self.db.execute(f"{_SELECT_ATTEMPTS} WHERE msgid = ? AND at >= ? AND at <= ? LIMIT ?",
                                       (_msgid(message_id), lo, hi, MAX_GROUP)):
                found[row[0]] = _attempt(row)
                same_id.add(row[0])
        found = {k: a for k, a in found.items() if a.message != capture.id}
        refusals = [a for a in found.values() if a.stage != DSN_STAGE and a.id not in same_id]
        if refusals:
            since = min(a.at for a in refusals)
            previous = self._previous_deliveries(mail_from, set(rcpts), capture.id, since)
            found = {k: a for k, a in found.items()
                     if a.stage == DSN_STAGE or k in same_id
                     or a.at > previous.get(address_key(a.rcpt), _EPOCH)}
        return tuple(sorted(found.values(), key=lambda a: (a.at, a.id or 0)))

    def _previous_deliveries(self, mail_from: str, rcpts: set[str], before_id: int,
                             since: datetime) -> dict[str, datetime]:
        """When the latest message before `before_id` from this sender reached each recipient ("" for any
        recipient), looking back to `since` and at most MAX_SCAN messages (ids grow with arrival time)."""
        floor = _iso(since)
        out: dict[str, datetime] = {}
        rows = self.db.execute("SELECT received_at, mail_from, rcpt_to, listener FROM messages WHERE id < ? "
                               "ORDER BY id DESC LIMIT ?", (before_id, MAX_SCAN))
        for received_at, mail_from_, rcpt_to, listener in rows:
            if received_at < floor:
                break
            if listener == Listener.LAB.value or address_key(mail_from_) != mail_from:
                continue
            when = datetime.fromisoformat(received_at)
            out.setdefault("", when)
            for r in json.loads(rcpt_to):
                key = address_key(r)
                if key in rcpts:
                    out.setdefault(key, when)
            if len(out) > len(rcpts):
                break
        return out

    def attempts_for(self, capture: Capture, message_id: str | None = None) -> tuple[Attempt, ...]:
        """What `show` lists for a message: its retry group, recipients refused in its own transaction, and
        the bounces the lab sent for it; oldest first."""
        group = {a.id: a for a in self.attempt_group(capture, message_id)}
        if capture.id is not None:
            for row in self.db.execute(f"{_SELECT_ATTEMPTS} WHERE message = ? LIMIT ?", (capture.id, MAX_GROUP)):
                group[row[0]] = _attempt(row)
        return tuple(sorted(group.values(), key=lambda a: (a.at, a.id or 0)))

    def attempt_groups(self, limit: int | None = None, scan: int = 5000) -> list[AttemptGroup]:
        """The latest `scan` attempts grouped for `maillab list --attempts`, most recent activity first: one group
        per (sender, recipient) and delivery, each with the message that ended it, if any; refusals before MAIL
        are grouped by client IP."""
        by_key: dict[tuple, list[Attempt]] = {}
        for a in reversed(self.attempts(limit=scan)):
            key = (address_key(a.mail_from), address_key(a.rcpt), a.client_ip if a.mail_from is None else "")
            by_key.setdefault(key, []).append(a)
        groups: list[AttemptGroup] = []
        recent_first = sorted(by_key.items(), key=lambda item: item[1][-1].at, reverse=True)
        for (mail_from, rcpt, _), attempts in recent_first:
            if limit is not None and len(groups) >= limit:
                break  # each key adds at least one group; later keys' activity is older than the groups so far
            first = attempts[0]
            deliveries = self._deliveries(mail_from, rcpt, first.at) if mail_from else []
            segment: list[Attempt] = []
            pending = list(attempts)
            for mid, received in deliveries:
                while pending and pending[0].at <= received:
                    segment.append(pending.pop(0))
                if segment:
                    ended = received - segment[-1].at <= GROUP_WINDOW  # else the sender had given up long before
                    groups.append(AttemptGroup(first.mail_from, first.rcpt, first.client_ip, tuple(segment),
                                               mid if ended else None, received if ended else None))
                segment = []
            segment += pending
            if segment:
                groups.append(AttemptGroup(first.mail_from, first.rcpt, first.client_ip, tuple(segment)))
        groups.sort(key=lambda g: g.last, reverse=True)
        return groups[:limit] if limit is not None else groups

    def _deliveries(self, mail_from: str, rcpt: str, since: datetime) -> list[tuple[int, datetime]]:
        """Messages from `mail_from` to `rcpt` ("" for any recipient) that arrived from `since` on, oldest
        first, looking at most MAX_SCAN messages forward from that time."""
        floor = _iso(since)
        start = self._first_id_at(floor)
        out = []
        rows = self.db.execute("SELECT id, received_at, mail_from, rcpt_to, listener FROM messages WHERE id >= ? "
                               "ORDER BY id LIMIT ?", (start, MAX_SCAN))
        for mid, received_at, mail_from_, rcpt_to, listener in rows:
            if listener == Listener.LAB.value or address_key(mail_from_) != mail_from:
                continue
            if rcpt and rcpt not in {address_key(r) for r in json.loads(rcpt_to)}:
                continue
            out.append((mid, datetime.fromisoformat(received_at)))
        return out

    def _first_id_at(self, floor: str) -> int:
        """The lowest message id received at or after `floor`, found by bisection on the id (ids grow with time)."""
        bounds = self.db.execute("SELECT min(id), max(id) FROM messages").fetchone()
        if bounds[0] is None:
            return 0
        lo, hi = bounds[0], bounds[1] + 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = self.db.execute("SELECT received_at FROM messages WHERE id >= ? ORDER BY id LIMIT 1",
                                  (mid,)).fetchone()
            if row is None or row[0] >= floor:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def newer_counts(self, times: list[datetime], where: Filter | None = None) -> list[int]:
        """For each time (newest first), how many listed messages arrived after it: where a refused-attempt
        group goes in the newest-first list. The ranges between the times are counted once each, so asking
        about many times costs one pass over the messages newer than the oldest of them."""
        clause, args = where.sql() if where else ("", [])
        sql = (f"SELECT count(*) FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id{clause}"
               f"{' AND ' if clause else ' WHERE '}m.id >= ? AND m.id < ?")
        upper = (self.db.execute("SELECT max(id) FROM messages").fetchone()[0] or 0) + 1
        out, total = [], 0
        for t in times:
            first = min(upper, self._first_id_at(_iso(t + timedelta(microseconds=1))))
            if first < upper:
                total += self.db.execute(sql, [*args, first, upper]).fetchone()[0]
                upper = first
            out.append(total)
        return out

    # reads ---------------------------------------------------------------------------------------

    def count(self, where: Filter | None = None) -> int:
        if where is None or where.empty:
            return self.db.execute("SELECT count(*) FROM messages").fetchone()[0]
        clause, args = where.sql()
        sql = f"SELECT count(*) FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id{clause}"
        return self.db.execute(sql, args).fetchone()[0]

    def get(self, message_id: int) -> Stored | None:
        row = self.db.execute(
            f"SELECT m.id, {_COLUMNS}, v.data, v.analysed_at FROM messages m "
            "LEFT JOIN verdicts v ON v.message_id = m.id WHERE m.id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        capture = _capture(row)
        data, analysed_at = row[_NCOLS + 1], row[_NCOLS + 2]
        verdict = Verdict.from_dict(json.loads(data)) if data else None
        return Stored(capture, verdict, json.loads(row[_NCOLS] or "[]"), analysed_at)

    def raw(self, message_id: int) -> bytes | None:
        row = self.db.execute("SELECT raw FROM messages WHERE id = ?", (message_id,)).fetchone()
        return bytes(row[0]) if row else None

    def summaries(self, limit: int | None = None, offset: int = 0, where: Filter | None = None,
                  below_id: int | None = None, above_id: int | None = None) -> list[Summary]:
        """Newest first, one page at a time: a list never loads the whole store.

        `below_id` / `above_id` page from a known neighbour by key (no OFFSET scan at all); otherwise
        an unfiltered OFFSET is applied to the primary key alone, before any join.
        """
        clause, args = where.sql() if where else ("", [])
        cols = ("SELECT m.id, m.received_at, m.listener, m.mail_from, m.rcpt_to, m.size, v.level, "
                "v.from_header, v.to_header, v.subject, v.failed FROM ")
        join = "messages m LEFT JOIN verdicts v ON v.message_id = m.id"
        order = "DESC"
        if below_id is not None or above_id is not None:
            key = "m.id < ?" if below_id is not None else "m.id > ?"
            clause = clause + (" AND " if clause else " WHERE ") + key
            args = [*args, below_id if below_id is not None else above_id]
            order = "DESC" if below_id is not None else "ASC"
            sql = f"{cols}{join}{clause} ORDER BY m.id {order}"
        elif not clause and limit is not None:
            sql = (f"{cols}(SELECT id FROM messages ORDER BY id DESC LIMIT ? OFFSET ?) AS page "
                   "JOIN messages m ON m.id = page.id LEFT JOIN verdicts v ON v.message_id = m.id "
                   "ORDER BY m.id DESC")
            args, limit = [limit, offset], None
        else:
            sql = f"{cols}{join}{clause} ORDER BY m.id DESC"
        if limit is not None:
            sql += " LIMIT ?" + (" OFFSET ?" if below_id is None and above_id is None else "")
            args += [limit] + ([offset] if below_id is None and above_id is None else [])
        rows = [
            Summary(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], Level(r[6]) if r[6] else None,
                    r[7] or "", r[8] or "", r[9] or "", tuple((r[10] or "").split()))
            for r in self.db.execute(sql, args)
        ]
        return rows[::-1] if order == "ASC" else rows

    def unanalysed(self, limit: int = 100, after: int = 0, share: tuple[int, int] = (0, 1)) -> list[Capture]:
        """Messages without a verdict, oldest first, with ids above `after` (a worker's cursor) and in this
        worker's `share` (k, n): ids where id % n == k, so n workers split the backlog without talking."""
        k, n = share
        rows = self.db.execute(
            f"SELECT m.id, {_COLUMNS} FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id "
            "WHERE m.id > ? AND m.id % ? = ? AND v.message_id IS NULL ORDER BY m.id LIMIT ?",
            (after, n, k, limit)).fetchall()
        return [_capture(r) for r in rows]

    def oldest_unjudged(self, after: int = 0) -> tuple[int, datetime | None]:
        """(an id up to which every message has a verdict, when the oldest message without one arrived), looking
        only above `after`: called once a second with what it returned, it reads only the newest rows."""
        top = self.db.execute("SELECT max(id) FROM messages").fetchone()[0] or 0
        row = self.db.execute("SELECT m.id, m.received_at FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id "
                              "WHERE m.id > ? AND m.id <= ? AND v.message_id IS NULL ORDER BY m.id LIMIT 1",
                              (after, top)).fetchone()
        return (row[0] - 1, datetime.fromisoformat(row[1])) if row else (top, None)

    def position(self, message_id: int, where: Filter | None = None) -> int | None:
        """Index of a message in the newest-first list, or None when the filter hides it."""
        clause, args = where.sql() if where else ("", [])
        extra = " AND " if clause else " WHERE "
        sql = (f"SELECT count(*) FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id{clause}{extra}m.id > ?")
        before = self.db.execute(sql, [*args, message_id]).fetchone()[0]
        clause2 = clause + (" AND " if clause else " WHERE ") + "m.id = ?"
        shown = self.db.execute(f"SELECT count(*) FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id{clause2}",
                                [*args, message_id]).fetchone()[0]
        return before if shown else None

    def ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT id FROM messages ORDER BY id")]


_INSERT_VERDICT = ("INSERT OR REPLACE INTO verdicts (message_id, level, analysed_at, from_header, to_header, subject, "
                   "failed, data, from_addr, sender_key, sender_ip) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                   "WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?)")


def verdict_rows(items: list[tuple[int, Verdict]], senders: dict[int, str] | None = None,
                 ips: dict[int, str] | None = None) -> list[tuple]:
    """Verdicts as the verdicts table's rows: made where the verdict is, committed by whoever holds the store."""
    now = _now()
    senders, ips = senders or {}, ips or {}
    rows = []
    for message_id, verdict in items:
        h = verdict.headers
        rows.append((message_id, verdict.level.value, now, h.get("from", ""), h.get("to", ""),
                     h.get("subject", ""), " ".join(verdict.failed_families()), json.dumps(verdict.to_dict()),
                     h.get("from_address", ""), senders.get(message_id, ""), ips.get(message_id, ""), message_id))
    return rows


def judged_rows(judged: list[tuple[Capture, Verdict]]) -> list[tuple]:
    """verdict_rows for stored captures: their sender key and client IP go along, for the sender history."""
    return verdict_rows([(c.id, v) for c, v in judged], {c.id: sender_key(c) for c, _ in judged},
                        {c.id: c.client.ip for c, _ in judged})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(when: datetime) -> str:
    """Times as stored: UTC, to the microsecond, so that text order is time order."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _msgid(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:255] or None


def sender_key(c: Capture) -> str:
    """The sending application: its AUTH user, else its (effective) client IP. Mail the lab wrote (bounces,
    auto-replies) is its own sender, so it never counts in an application's history."""
    if c.transport.listener is Listener.LAB:
        return "lab"
    return f"auth:{c.transport.auth_user}" if c.transport.auth_user else f"ip:{c.client.ip}"


def flat(c: Capture | Attempt, session: list) -> tuple:
    """A capture as a tuple of plain values in _COLUMNS order: cheap to pickle to the writer process.
    An Attempt becomes a row tagged for the attempts table, ready to insert."""
    if isinstance(c, Attempt):
        return _flat_attempt(c, session)
    e, t, cl = c.envelope, c.transport, c.client
    return (
        c.received_at.isoformat(timespec="microseconds"), c.raw, len(c.raw), e.mail_from, e.rcpt_to, e.helo,
        e.mail_options, e.rcpt_options, int(e.smtputf8), t.listener.value, t.port, t.tls_version, t.tls_cipher,
        t.auth_mechanism, t.auth_user, cl.peer_ip, cl.ip, cl.name, cl.source, session,
    )


_JSON_COLUMNS = (4, 6, 7, 19)  # rcpt_to, mail_options, rcpt_options, session


def _encoded(row: tuple) -> list:
    out = list(row)
    for i in _JSON_COLUMNS:
        out[i] = json.dumps(out[i])
    return out


def _capture(r: tuple) -> Capture:
    """A Capture from `id` followed by the _COLUMNS, in order."""
    return Capture(
        raw=bytes(r[2]),
        envelope=Envelope(mail_from=r[4], rcpt_to=tuple(json.loads(r[5])), helo=r[6],
                          mail_options=tuple(json.loads(r[7])), rcpt_options=tuple(json.loads(r[8])),
                          smtputf8=bool(r[9])),
        transport=Transport(Listener(r[10]), r[11], r[12], r[13], r[14], r[15]),
        client=Client(ip=r[17], peer_ip=r[16], name=r[18], source=r[19]),
        received_at=datetime.fromisoformat(r[1]),
        id=r[0],
    )


def _flat_attempt(a: Attempt, session: list) -> tuple:
    return (
        _ATTEMPT_TAG, _iso(a.at), a.stage, a.reply, a.code, a.status, a.mail_from, address_key(a.mail_from), a.rcpt,
        address_key(a.rcpt), json.dumps([list(r) for r in a.recipients]), a.listener.value, a.port, a.peer_ip,
        a.client_ip, a.client_source, a.helo, a.tls_version, a.auth_user, a.rule, float(a.delay), int(a.disconnect),
        a.size, a.raw or None, _msgid(a.message_id), a.txn, a.message, a.dsn, json.dumps(session),
    )


def _attempt(r: tuple, with_raw: bool = False) -> Attempt:
    """An Attempt from `id` followed by the _ATTEMPT_COLUMNS, in order."""
    try:
        listener = Listener(r[11])
    except ValueError:
        listener = Listener.RELAY
    return Attempt(
        at=datetime.fromisoformat(r[1]), stage=r[2], reply=r[3], mail_from=r[6], rcpt=r[8],
        recipients=tuple(tuple(x) for x in json.loads(r[10] or "[]")), listener=listener, port=r[12],
        peer_ip=r[13], client_ip=r[14], client_source=r[15], helo=r[16], tls_version=r[17], auth_user=r[18],
        rule=r[19], delay=r[20], disconnect=bool(r[21]), size=r[22], raw=bytes(r[23]) if with_raw and r[23] else b"",
        message_id=r[24], txn=r[25], message=r[26], dsn=r[27], id=r[0],
    )
