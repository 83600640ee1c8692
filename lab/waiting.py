"""Provides `maillab wait`: block until a matching message has been captured and judged, for shell-driven CI.

The store is the hand-over, as everywhere else: `wait_for` polls SQLite by id cursor (one index probe
every 75 ms while nothing arrives), so it works from another process, another language's test runner or
a shell script, against a lab started with `maillab serve` or the TUI. By default only messages that
arrive after the wait starts count; `since_id` (`--since ID`) or `since_id=0` (`--any`) include stored ones.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lab.config import Config
from lab.core.message import ParsedMessage, parse_mailboxes

if TYPE_CHECKING:
    from lab.store import Store, Stored

POLL = 0.075  # seconds between polls while nothing new has arrived
PAGE = 256
_SUBJECT_LIMIT = 10_000  # characters of Subject a pattern is matched against (hostile 100 KB subjects)


@dataclass(frozen=True)
class Match:
    """What a message must look like. Empty criteria match every message.

    `to`: an envelope recipient (RCPT TO) is this address; a message without envelope recipients (an
    imported file) is matched on its To and Cc addresses instead. `from_`: the From header's address or
    the envelope sender. Addresses compare case-insensitively; `*` and `?` make them patterns
    (`*@example.net`). `subject`: a regular expression searched for in the decoded Subject.
    """

    to: str | None = None
    from_: str | None = None
    subject: re.Pattern | None = None

    @classmethod
    def of(cls, to: str | None = None, from_: str | None = None, subject: str | re.Pattern | None = None) -> Match:
        """Raises ValueError (with the reason) for a bad regular expression."""
        if isinstance(subject, str):
            try:
                subject = re.compile(subject)
            except re.error as exc:
                raise ValueError(f"--subject {subject!r} is not a regular expression: {exc}") from exc
        return cls(to.strip().lower() if to else None, from_.strip().lower() if from_ else None, subject)

    def describe(self) -> str:
        words = [f"to {self.to}" if self.to else "", f"from {self.from_}" if self.from_ else "",
                 f"subject /{self.subject.pattern}/" if self.subject else ""]
        return " ".join(w for w in words if w) or "any message"

    def __call__(self, stored: Stored) -> bool:
        capture = stored.capture
        if not (self.to or self.from_ or self.subject):
            return True
        message = ParsedMessage(capture.raw)
        if self.to:
            rcpts = list(capture.envelope.rcpt_to) or [
                m.address for name in ("to", "cc") for h in message.get_all(name)[:50] for m in parse_mailboxes(h.raw)]
            if not any(_address_matches(self.to, a) for a in rcpts):
                return False
        if self.from_:
            senders = [capture.envelope.mail_from] + [m.address for m in message.from_mailboxes[:50]]
            if not any(_address_matches(self.from_, a) for a in senders if a):
                return False
        if self.subject:
            subject = (message.first("subject") or "")[:_SUBJECT_LIMIT]
            if not self.subject.search(subject):
                return False
        return True


def _address_matches(wanted: str, address: str) -> bool:
    """`wanted` is lower-case; only `*` and `?` are wildcards (`[` stays literal: `user@[192.0.2.1]`)."""
    address = address.strip().strip("<>").lower()
    if "*" in wanted or "?" in wanted:
        pattern = re.escape(wanted).replace(r"\*", ".*").replace(r"\?", ".")
        return re.fullmatch(pattern, address[:1000]) is not None
    return address == wanted


@dataclass(frozen=True)
class Missed:
    """A message that arrived during a wait but did not match (for a useful timeout message)."""

    id: int
    mail_from: str
    rcpt_to: tuple[str, ...]
    subject: str


@dataclass
class Progress:
    """What a wait saw: the latest messages that did not match, and how far it read."""

    missed: list[Missed] = field(default_factory=list)
    seen: int = 0
    cursor: int | None = None


def _latest_id(store: Store) -> int:
    return store.db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]


def _has_verdict(store: Store, message_id: int) -> bool | None:
    """True / False, or None when the message has been deleted meanwhile."""
    row = store.db.execute("SELECT m.id, v.message_id FROM messages m LEFT JOIN verdicts v ON v.message_id = m.id "
                           "WHERE m.id = ?", (message_id,)).fetchone()
    return None if row is None else row[1] is not None


def wait_for(db_path: str | Path, to: str | None = None, from_: str | None = None,
             subject: str | re.Pattern | None = None, since_id: int | None = None, timeout: float = 30,
             analysed: bool = True, skip: Collection[int] = (), progress: Progress | None = None,
             poll: float = POLL, match: Callable[[Stored], bool] | None = None) -> Stored | None:
    """The first message after `since_id` that matches, once its verdict exists; None on timeout.

    When several match, the lowest id is returned as soon as it is judged (with several analysis workers a
    later match may be judged first; then that one is returned).
    `since_id` None means "arriving from now on": the cursor starts at the highest id stored when the
    wait begins (or 0 when the store does not exist yet, so a wait may start before the lab). `since_id=0`
    includes everything stored. `analysed=False` returns as soon as the message is stored. Ids in `skip`
    are never returned (the pytest plugin's "each message once"). Raises ValueError for a bad `subject`.
    """
    match = match or Match.of(to, from_, subject)
    progress = progress if progress is not None else Progress()
    deadline = time.monotonic() + max(0.0, timeout)
    db_path = Path(db_path)
    store: Store | None = None
    cursor = since_id if since_id is not None else (None if db_path.exists() else 0)
    pending: list[int] = []  # matched, waiting for a verdict; lowest id first
    try:
        while True:
            if store is None and db_path.exists():
                from lab.store import Store

                store = Store(db_path)
                if cursor is None:
                    cursor = _latest_id(store)
            if store is not None:
                for mid in list(pending):
                    state = _has_verdict(store, mid)
                    if state is None:
                        pending.remove(mid)
                    elif state:
                        found = store.get(mid)
                        if found is not None and found.verdict is not None:
                            return found
                rows = store.db.execute("SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                                        (cursor, PAGE)).fetchall()
                for (mid,) in rows:
                    cursor = mid
                    if mid in skip:
                        continue
                    stored = store.get(mid)
                    if stored is None:
                        continue
                    if not match(stored):
                        c = stored.capture
                        progress.seen += 1
                        progress.missed.append(Missed(mid, c.envelope.mail_from, c.envelope.rcpt_to[:3],
                                                      (ParsedMessage(c.raw).first("subject") or "")[:80]))
                        del progress.missed[:-10]
                        continue
                    if (stored.verdict is not None or not analysed) and not pending:
                        return stored
                    pending.append(mid)
                progress.cursor = cursor
                if len(rows) == PAGE:
                    continue  # a backlog: read on without sleeping
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    finally:
        if store is not None:
            store.close()


# ------------------------------------------------------------------------------------------------ CLI


def add_parser(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    w = sub.add_parser("wait", help="block until a matching message has been captured and judged")
    common(w)
    w.add_argument("--to", metavar="ADDR", help="an envelope recipient (RCPT TO); * and ? are wildcards")
    w.add_argument("--from", dest="from_", metavar="ADDR", help="the From address or MAIL FROM; wildcards too")
    w.add_argument("--subject", metavar="REGEX", help="a regular expression searched for in the Subject")
    w.add_argument("--timeout", type=float, default=30.0, metavar="S", help="give up after S seconds (default 30)")
    since = w.add_mutually_exclusive_group()
    since.add_argument("--since", type=int, metavar="ID", help="also consider stored messages with ids above ID")
    since.add_argument("--any", action="store_true", help="also consider every message already stored")
    w.add_argument("--no-verdict", action="store_true", help="return once the message is stored, not judged")
    w.add_argument("--json", action="store_true", help="print the message as a JSON document")


def run(args: argparse.Namespace, config: Config) -> int:
    """Exit 0 found (printed on stdout), 1 timed out (why on stderr), 2 bad usage."""
    from lab.render import message_json, one_line
    from lab.textsafe import visible

    if args.timeout < 0:
        print(f"maillab: --timeout {args.timeout} is negative", file=sys.stderr)
        return 2
    try:
        match = Match.of(args.to, args.from_, args.subject)
    except ValueError as exc:
        print(f"maillab: {exc}", file=sys.stderr)
        return 2
    since = 0 if args.any else args.since
    progress = Progress()
    try:
        found = wait_for(config.db_path, since_id=since, timeout=args.timeout, analysed=not args.no_verdict,
                         progress=progress, match=match)
    except KeyboardInterrupt:
        return 130
    if found is None:
        where = "" if config.db_path.exists() else f" (no store at {config.db_path}: is the lab running?)"
        print(visible(f"maillab: no message {match.describe()} within {args.timeout:g}s{where}"), file=sys.stderr)
        if progress.seen:
            print(f"maillab: {progress.seen} other message(s) arrived; the latest:", file=sys.stderr)
            for m in progress.missed[-3:]:
                line = f"  #{m.id} {m.mail_from or '<>'} -> {','.join(m.rcpt_to) or '-'} \"{m.subject[:60]}\""
                print(visible(line), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(message_json(found.capture, found.verdict, found.analysed_at), indent=2))
    elif found.verdict is not None:
        print(one_line(found.capture, found.verdict))
    else:
        c = found.capture
        print(visible(f"#{c.id} stored (not analysed yet) {c.envelope.mail_from or '<>'} -> "
                      f"{','.join(c.envelope.rcpt_to[:3])}"))
    return 0
