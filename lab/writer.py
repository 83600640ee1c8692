"""Provides group commit: captures from many SMTP sessions share one SQLite transaction.

The SMTP side awaits `submit()`, which resolves only after the transaction holding its capture has
committed with synchronous=FULL. Batching is what lets durable capture keep up with the network: one
fsync serves every message that arrived while the previous one ran.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from lab.core.model import Capture
from lab.store import Store

MAX_BATCH = 256


class GroupWriter:
    def __init__(self, db_path: Path, on_commit: Callable[[list[int]], None] | None = None, keep: int = 0):
        self.db_path = db_path
        self.on_commit = on_commit
        self.keep = keep  # prune to the newest `keep` messages in each commit; 0 keeps everything
        self._queue: queue.Queue[tuple[Capture, list, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="maillab-writer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._started = False

    def submit_future(self, capture: Capture, session: list) -> Future:
        fut: Future[int] = Future()
        self._queue.put((capture, session, fut))
        return fut

    async def submit(self, capture: Capture, session: list) -> int:
        return await asyncio.wrap_future(self.submit_future(capture, session))

    def _run(self) -> None:
        store = Store(self.db_path)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                stop = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._commit(store, batch)
                if stop:
                    return
        finally:
            store.close()

    def _commit(self, store: Store, batch: list[tuple[Capture, list, Future]]) -> None:
        try:
            ids = store.add_many([(c, s) for c, s, _ in batch], keep=self.keep)
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
            for _, _, fut in batch:
                fut.set_exception(exc)
            return
        for (_, _, fut), mid in zip(batch, ids, strict=True):
            fut.set_result(mid)
        if self.on_commit:
            self.on_commit(ids)
