"""Provides ListSource: the rows of the message list, fetched from the store a page at a time.

The list may hold 100,000 messages; only the pages around what is on screen are ever loaded.

Refused attempts are rows too. Attempts that ended in an accepted message are told on that message's row
(how many tries it took); a sender and recipient the lab refused and never accepted (a hard bounce, a
greylisting the sender has not retried yet) is a row of its own, placed by time among the messages. Those
rows are few, so their places are worked out once per change, and a list index maps to a message index by
subtracting the group rows above it.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right

from lab.retries import JudgedGroup, judged_groups
from lab.store import Filter, Store, Summary

PAGE = 200
MAX_GROUP_ROWS = 500  # refused sender/recipient pairs listed; `maillab list --attempts` has them all
REFUSED = "refused"  # `verdict:refused` lists only what the lab refused and never accepted
REJUDGE_EVERY = 1.0  # seconds between re-reading the groups because mail arrived (new attempts: at once)
_UNSEEN = object()


class ListSource:
    def __init__(self, store: Store):
        self.store = store
        self.filter = Filter()
        self._pages: dict[int, list[Summary]] = {}
        self._count: int | None = None
        self._total: int | None = None  # every stored message, whatever the filter
        self._groups: list[JudgedGroup] = []  # not delivered, newest first
        self._newer: list[int] = []  # how many listed messages are newer than each of them
        self._slots: list[int] = []  # the list index of each of them
        self._ended: dict[int, JudgedGroup] = {}  # message id -> the refusals it came after
        self._by_key: dict[int, JudgedGroup] = {}
        self._judged: list[JudgedGroup] = []
        self._judged_at = 0.0
        self.rejudge_every = REJUDGE_EVERY
        self._seen_attempt: object = _UNSEEN
        self._seen_message: int | None = None
        self._filtered_for: Filter | None = None

    def invalidate(self) -> None:
        self._pages.clear()
        self._count = self._total = None
        self._refresh_groups()

    def set_filter(self, query: str) -> None:
        self.filter = Filter.parse(query)
        self.invalidate()

    # attempt groups -------------------------------------------------------------------------------

    def _marks(self) -> tuple[int | None, int | None]:
        """The newest attempt and the newest message (two rowid probes): what changes the groups."""
        return (self.store.db.execute("SELECT max(id) FROM attempts").fetchone()[0],
                self.store.db.execute("SELECT max(id) FROM messages").fetchone()[0])

    def attempts_changed(self, marks: tuple[int | None, int | None] | None = None) -> bool:
        """Whether groups must be judged again: an attempt was recorded (or all were cleared), or new mail may
        have ended a group not yet delivered. The latter at most once a second: under a load of mail the list
        must not re-read the attempts on every repaint."""
        newest_attempt, newest_message = marks or self._marks()
        if newest_attempt != self._seen_attempt or self._seen_attempt is _UNSEEN:
            return True
        if not any(j.group.message is None for j in self._judged):
            return False
        return newest_message != self._seen_message and time.monotonic() - self._judged_at >= self.rejudge_every

    def _refresh_groups(self) -> None:
        marks = self._marks()
        if self.attempts_changed(marks):
            self._seen_attempt, self._seen_message = marks
            self._judged = judged_groups(self.store) if self._seen_attempt is not None else []
            self._judged_at = time.monotonic()
            self._ended = {j.group.message: j for j in self._judged if j.group.message is not None}
            self._by_key = {j.key: j for j in self._judged}
            self._filtered_for = None
        if self._filtered_for != self.filter:
            self._filtered_for = self.filter
            pending = [j for j in self._judged if j.group.message is None and j.refusals and self._matches(j)]
            self._groups = sorted(pending, key=lambda j: j.group.last, reverse=True)[:MAX_GROUP_ROWS]
        if not self._groups:
            self._slots = self._newer = []
            return
        self._newer = ([0] * len(self._groups) if self._messages_hidden() else
                       self.store.newer_counts([j.group.last for j in self._groups], self.filter))
        self._slots = [n + k for k, n in enumerate(self._newer)]

    def _messages_hidden(self) -> bool:
        return self.filter.level == REFUSED

    def _matches(self, j: JudgedGroup) -> bool:
        f = self.filter
        if f.level not in (None, REFUSED) or f.family not in (None, "retry"):
            return False
        if f.family == "retry" and all(c.level.value in ("pass", "info") for c in j.checks):
            return False
        if f.listener and all(a.listener.value != f.listener for a in j.group.attempts):
            return False
        if f.text:
            hay = " ".join([j.group.mail_from or "", j.group.rcpt or "", *(a.reply for a in j.group.attempts)])
            return f.text.lower() in hay.lower()
        return True

    @property
    def refused_rows(self) -> int:
        """Refused senders and recipients listed that were never accepted."""
        return len(self._groups)

    def forget_groups(self) -> None:
        """Messages were deleted: a group they ended is pending again, so look at every group afresh."""
        self._seen_attempt = _UNSEEN

    def group(self, key: int) -> JudgedGroup | None:
        """A group row by its key (a negative number; see JudgedGroup.key)."""
        return self._by_key.get(key)

    def tries(self, message_id: int) -> JudgedGroup | None:
        """The refusals a message was accepted after, if any."""
        return self._ended.get(message_id)

    # rows -----------------------------------------------------------------------------------------

    def count(self) -> int:
        if self._count is None:
            messages = 0 if self._messages_hidden() else self.store.count(self.filter)
            if self.filter.empty:
                self._total = messages
            self._count = messages + len(self._groups)
        return self._count

    def total(self) -> int:
        """Every stored message, whatever the filter (the status line, the empty lab's welcome): counted once a
        change, and not at all when no filter is set (count() read it)."""
        if self._total is None:
            self.count()
        if self._total is None:
            self._total = self.store.count()
        return self._total

    def row(self, index: int) -> Summary | JudgedGroup | None:
        if index < 0 or index >= self.count():
            return None
        k = bisect_left(self._slots, index)
        if k < len(self._slots) and self._slots[k] == index:
            return self._groups[k]
        return self._message(index - k)

    def _message(self, index: int) -> Summary | None:
        page = index // PAGE
        rows = self._pages.get(page)
        if rows is None:
            rows = self._pages[page] = self._fetch(page)
        offset = index - page * PAGE
        return rows[offset] if offset < len(rows) else None

    def _fetch(self, page: int) -> list[Summary]:
        """A page by key from a cached neighbour when there is one (no scan), else by offset."""
        before, after = self._pages.get(page - 1), self._pages.get(page + 1)
        if len(self._pages) > 50:
            self._pages = {k: v for k, v in self._pages.items() if abs(k - page) <= 1}
        if before and len(before) == PAGE:
            return self.store.summaries(limit=PAGE, where=self.filter, below_id=before[-1].id)
        if after:
            return self.store.summaries(limit=PAGE, where=self.filter, above_id=after[0].id)
        return self.store.summaries(limit=PAGE, offset=page * PAGE, where=self.filter)

    def index_of(self, key: int) -> int | None:
        """Where a message (by id) or a group row (by its negative key) is listed, or None."""
        if key < 0:
            for k, j in enumerate(self._groups):
                if j.key == key:
                    return self._slots[k]
            return None
        if self._messages_hidden():
            return None
        position = self.store.position(key, self.filter)
        if position is None:
            return None
        return position + bisect_right(self._newer, position)  # shifted by the group rows listed above it

