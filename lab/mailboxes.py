"""Provides mailbox views of the store for the POP3 listener: one per envelope recipient, plus a catch-all.

A mailbox is not a separate copy of anything: it is the list of stored messages whose envelope names the
recipient (RCPT TO, exactly as the client sent it), so every reader sees the same bytes the checks saw.
Local parts are compared exactly and domains case-insensitively (RFC 5321 section 2.4); a `+tag`
sub-address is its own mailbox, as it is to the receiving MTA until its local delivery agent folds it.

Sizes are what POP3 sends: the stored bytes with every bare LF counted as CRLF (RFC 1939 section 11),
before dot-stuffing. UIDs carry the store id and the receive time, so they stay the same across sessions
and restarts but are never reused by a new store whose ids start again at 1 (a client that leaves mail on
the server and remembers UIDs would otherwise skip the new message 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from lab.store import Store

CATCH_ALL = frozenset({"*", "catchall"})  # user names that open every message (compared case-insensitively)

_BARE_LF = re.compile(rb"(?<!\r)\n")
_NOT_DIGIT = re.compile(r"[^0-9]")
_BATCH = 500  # ids per IN (...) query: far below SQLite's bound-parameter limit
_CACHE_MAX = 200_000  # remembered sizes; beyond this the cache starts again (sizes never change, ids never repeat)


@dataclass(frozen=True, slots=True)
class Entry:
    """One message as a mailbox lists it."""

    id: int  # the store id (`maillab show ID`)
    size: int  # octets as POP3 transmits it: CRLF line ends, before dot-stuffing
    uid: str  # RFC 1939 unique-id: 1-70 characters in 0x21-0x7E, stable across sessions and restarts


def is_catch_all(user: str) -> bool:
    return user.strip().lower() in CATCH_ALL


def address_key(address: str) -> tuple[str, str | None]:
    """(local part exactly, domain lower-cased); domain None for a bare local part such as `postmaster`."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at:
        return address, None
    return local, domain.lower()


def wire(raw: bytes) -> bytes:
    """The message as POP3 carries it (before dot-stuffing): bare LFs become CRLF, and a last line without a
    line end gets one, since the terminating `.` must stand on a line of its own. CRLF input is unchanged."""
    out = _BARE_LF.sub(b"\r\n", raw)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out


def octets(raw: bytes) -> int:
    """len(wire(raw)) without building it."""
    if not raw:
        return 0
    extra = raw.count(b"\n") - raw.count(b"\r\n")  # bare LFs, each sent as CRLF
    return len(raw) + extra + (0 if raw.endswith(b"\n") else 2)


def uid(message_id: int, received_at: str) -> str:
    stamp = _NOT_DIGIT.sub("", (received_at or "")[:26])  # 2026-01-02T03:04:05.678901: to the microsecond
    return f"maillab-{message_id}-{stamp}" if stamp else f"maillab-{message_id}"


def mailbox(store: Store, user: str, sizes: dict[int, int] | None = None) -> list[Entry]:
    """The messages `user` may read, oldest first (message 1 is the oldest).

    `*` or `catchall` gives every message; anything else is an envelope recipient address (local part
    exact, domain case-insensitive, `<...>` around it ignored). `sizes` is an optional cache of octet counts
    by id, shared between calls (a message's bytes never change, so neither does its size).
    """
    if is_catch_all(user):
        rows = store.db.execute("SELECT id, received_at FROM messages ORDER BY id").fetchall()
    else:
        local, domain = address_key(user)
        if not local:
            return []
        if domain is None:
            clause, args = "r.value = ?", (local,)
        else:
            prefix = local + "@"
            clause, args = "substr(r.value, 1, ?) = ?", (len(prefix), prefix)
        candidates = store.db.execute(
            "SELECT m.id, m.received_at, m.rcpt_to FROM messages m "
            f"WHERE EXISTS (SELECT 1 FROM json_each(m.rcpt_to) r WHERE {clause}) ORDER BY m.id", args).fetchall()
        want = (local, domain)
        rows = [(mid, received) for mid, received, rcpts in candidates
                if any(address_key(r) == want for r in _recipients(rcpts))]
    if sizes is None:
        sizes = {}
    elif len(sizes) > _CACHE_MAX:
        sizes.clear()
    missing = [mid for mid, _ in rows if mid not in sizes]
    for start in range(0, len(missing), _BATCH):
        batch = missing[start:start + _BATCH]
        marks = ", ".join("?" * len(batch))
        for mid, raw in store.db.execute(f"SELECT id, raw FROM messages WHERE id IN ({marks})", batch):
            sizes[mid] = octets(bytes(raw))
    # a message deleted between the two queries has no size: it is simply not in this snapshot
    return [Entry(mid, sizes[mid], uid(mid, received)) for mid, received in rows if mid in sizes]


def _recipients(text: str) -> Iterable[str]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return ()
    return [r for r in value if isinstance(r, str)] if isinstance(value, list) else ()


def delete(store: Store, ids: Iterable[int]) -> int:
    """Delete messages (and, by cascade, their verdicts) from the lab in one transaction; returns how many
    existed. All or nothing: an error leaves every message in place."""
    ids = list(ids)
    if not ids:
        return 0
    cur = store.db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        gone = sum(cur.execute("DELETE FROM messages WHERE id = ?", (mid,)).rowcount for mid in ids)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return gone
