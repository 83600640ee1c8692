"""Provides ListSource: the rows of the message list, fetched from the store a page at a time.

The list may hold 100,000 messages; only the pages around what is on screen are ever loaded.
"""

from __future__ import annotations

from lab.store import Filter, Store, Summary

PAGE = 200


class ListSource:
    def __init__(self, store: Store):
        self.store = store
        self.filter = Filter()
        self._pages: dict[int, list[Summary]] = {}
        self._count: int | None = None

    def invalidate(self) -> None:
        self._pages.clear()
        self._count = None

    def set_filter(self, query: str) -> None:
        self.filter = Filter.parse(query)
        self.invalidate()

    def count(self) -> int:
        if self._count is None:
            self._count = self.store.count(self.filter)
        return self._count

    def row(self, index: int) -> Summary | None:
        if index < 0 or index >= self.count():
            return None
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

    def index_of(self, message_id: int) -> int | None:
        return self.store.position(message_id, self.filter)
