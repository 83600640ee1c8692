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
            if len(self._pages) > 20:
                self._pages.clear()
            rows = self._pages[page] = self.store.summaries(limit=PAGE, offset=page * PAGE, where=self.filter)
        offset = index - page * PAGE
        return rows[offset] if offset < len(rows) else None

    def index_of(self, message_id: int) -> int | None:
        return self.store.position(message_id, self.filter)
