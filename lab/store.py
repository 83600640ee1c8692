"""Provides the message store: SQLite in WAL mode, raw bytes kept exactly, verdicts beside them.

Every thread opens its own Store. Writes from the SMTP path go through lab.writer, which commits many
captures in one transaction (group commit) with synchronous=FULL, so a `250` is only ever sent for
bytes that are on disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab.core.model import Capture, Client, Envelope, Listener, SenderHistory, Transport
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
)
_INDEXES = """
CREATE INDEX IF NOT EXISTS verdicts_sender ON verdicts (sender_key, message_id);
CREATE INDEX IF NOT EXISTS verdicts_from ON verdicts (from_addr, message_id);
"""

_COLUMNS = (
    "received_at, raw, size, mail_from, rcpt_to, helo, mail_options, rcpt_options, smtputf8, listener, port, "
    "tls_version, tls_cipher, auth_mechanism, auth_user, peer_ip, client_ip, client_name, client_source, session"
)


_NCOLS = len(_COLUMNS.split(","))
_INSERT = f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join('?' * _NCOLS)})"
_PRUNE = "DELETE FROM messages WHERE id <= (SELECT id FROM messages ORDER BY id DESC LIMIT 1 OFFSET ?)"


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
class Stored:
    capture: Capture
    verdict: Verdict | None
    session: list
    analysed_at: str | None


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():  # captured mail is private: the owner only (SQLite copies this to -wal/-shm)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
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

    # writes --------------------------------------------------------------------------------------

    def add_many(self, items: list[tuple[Capture, list]], keep: int = 0) -> list[int]:
        """Insert captures in one transaction; returns their ids in order. Raises if nothing was stored.

        `keep` > 0 prunes to the newest `keep` messages in the same transaction.
        """
        return self.add_flat([flat(c, s) for c, s in items], keep)

    def add_flat(self, rows: list[tuple], keep: int = 0) -> list[int]:
        """add_many for captures already turned into `flat()` tuples (how the writer process receives them)."""
        ids = []
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                cur.execute(_INSERT, _encoded(row))
                ids.append(cur.lastrowid)
            if keep > 0:
                cur.execute(_PRUNE, (keep,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return ids

    def add(self, capture: Capture, session: list | None = None) -> int:
        return self.add_many([(capture, session or [])])[0]

    def save_verdict(self, message_id: int, verdict: Verdict, capture: Capture | None = None) -> None:
        self.save_verdicts([(message_id, verdict)], {message_id: sender_key(capture)} if capture else None)

    def save_verdicts(self, items: list[tuple[int, Verdict]], senders: dict[int, str] | None = None) -> None:
        """Store verdicts in one transaction (one fsync for a batch); a message deleted meanwhile gets none.

        `senders` maps a message id to its sender key (see `sender_key`), kept for the sender history."""
        now = _now()
        senders = senders or {}
        rows = []
        for message_id, verdict in items:
            h = verdict.headers
            rows.append((message_id, verdict.level.value, now, h.get("from", ""), h.get("to", ""),
                         h.get("subject", ""), " ".join(verdict.failed_families()), json.dumps(verdict.to_dict()),
                         h.get("from_address", ""), senders.get(message_id, ""), message_id))
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "INSERT OR REPLACE INTO verdicts (message_id, level, analysed_at, from_header, to_header, subject, "
                "failed, data, from_addr, sender_key) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?)", rows)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def history(self, capture: Capture, from_address: str) -> SenderHistory:
        """What earlier judged messages say about this capture's sender (the application, by AUTH user or IP)."""
        key = sender_key(capture)
        before = capture.id if capture.id is not None else 1 << 62
        earlier = self.db.execute("SELECT count(*) FROM verdicts WHERE sender_key = ? AND message_id < ?",
                                  (key, before)).fetchone()[0]
        addresses = [r[0] for r in self.db.execute(
            "SELECT from_addr FROM verdicts WHERE sender_key = ? AND message_id < ? AND from_addr != '' "
            "ORDER BY message_id DESC LIMIT 200", (key, before))]
        ips = [r[0] for r in self.db.execute(
            "SELECT m.client_ip FROM verdicts v JOIN messages m ON m.id = v.message_id "
            "WHERE v.from_addr = ? AND v.message_id < ? ORDER BY v.message_id DESC LIMIT 200",
            (from_address.lower(), before))] if from_address else []
        label = f"AUTH user {capture.transport.auth_user}" if capture.transport.auth_user else \
            f"client {capture.client.ip}"
        return SenderHistory(label, earlier, tuple(dict.fromkeys(addresses)), tuple(dict.fromkeys(ips)))

    def delete(self, message_id: int) -> bool:
        return self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount > 0

    def clear(self) -> int:
        return self.db.execute("DELETE FROM messages").rowcount

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def sender_key(c: Capture) -> str:
    """The sending application: its AUTH user, else its (effective) client IP."""
    return f"auth:{c.transport.auth_user}" if c.transport.auth_user else f"ip:{c.client.ip}"


def flat(c: Capture, session: list) -> tuple:
    """A capture as a tuple of plain values in _COLUMNS order: cheap to pickle to the writer process."""
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
