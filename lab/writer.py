"""Provides group commit: captures from many SMTP sessions share one SQLite transaction.

The SMTP side awaits `submit()`, which resolves only after the transaction holding its capture has
committed with synchronous=FULL. Batching is what lets durable capture keep up with the network: one
fsync serves every message that arrived while the previous one ran.

Two writers share that contract. `ProcessWriter` (what `serve` and the TUI use) commits in a child
process: SQLite's Python-side work then never competes with the SMTP loop for the GIL, which measured
as half of the SMTP process's time. Captures cross as flat tuples over a pipe, written without
blocking the loop; ids come back over another pipe the loop watches. `GroupWriter` does the same in a
thread, for tests and embedding.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import queue
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from lab.commit import MAX_BATCH, commit_loop
from lab.core.model import Capture
from lab.store import Store, flat

log = logging.getLogger("maillab.writer")
_LEN = struct.Struct("!i")  # multiprocessing.Connection's framing, so the child can use recv_bytes()



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

    async def close(self) -> None:
        await asyncio.to_thread(self.stop)

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


class ProcessWriter:
    """Group commit in a child process; `submit()` is called on the event loop that `start()` ran on."""

    def __init__(self, db_path: Path, on_commit: Callable[[list[int]], None] | None = None, keep: int = 0,
                 on_judged: Callable[[list[int]], None] | None = None, on_respawn: Callable[[], None] | None = None):
        """`on_judged(ids)`: verdicts handed to `forward()` were committed; `on_respawn()`: the child died and
        a new one runs (verdict frames it had not committed are gone: whoever made them should look again)."""
        self.db_path = db_path
        self.on_commit = on_commit
        self.on_judged = on_judged
        self.on_respawn = on_respawn
        self.keep = keep
        self._ctx = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc = None
        self._out = bytearray()  # frames the pipe would not take yet
        self._in = bytearray()
        self._pending: dict[int, asyncio.Future] = {}
        self._seq = 0
        self._closing = False
        self._exited: asyncio.Future | None = None

    def start(self) -> None:
        """Fork when nothing else runs yet (`serve`: the child is committing within milliseconds, which is what
        a lab restarted after a crash needs); spawn a fresh interpreter when other threads exist (the TUI), as
        forking a threaded process can copy a lock some other thread held."""
        self._loop = asyncio.get_running_loop()
        self._spawn()

    def _spawn(self) -> None:
        safe = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        self._ctx = multiprocessing.get_context("fork" if safe else "spawn")
        req_r, req_w = self._ctx.Pipe(duplex=False)
        res_r, res_w = self._ctx.Pipe(duplex=False)
        # the parent's ends go along so a forked child can close its copies: else it never sees EOF on close
        self._proc = self._ctx.Process(target=commit_loop, args=(self.db_path, self.keep, req_r, res_w, (req_w, res_r)),
                                       name="maillab-writer", daemon=True)
        self._proc.start()
        req_r.close()
        res_w.close()
        self._req, self._res = req_w, res_r
        os.set_blocking(req_w.fileno(), False)
        os.set_blocking(res_r.fileno(), False)
        self._out.clear()
        self._in.clear()
        self._exited = self._loop.create_future()
        self._loop.add_reader(res_r.fileno(), self._readable)

    async def submit(self, capture: Capture, session: list) -> int:
        if self._closing:
            raise RuntimeError("the lab is shutting down")
        self._seq += 1
        fut = self._loop.create_future()
        self._pending[self._seq] = fut
        payload = pickle.dumps((self._seq, flat(capture, session)), protocol=pickle.HIGHEST_PROTOCOL)
        self._send(_LEN.pack(len(payload)) + payload)
        return await fut

    def forward(self, payload: bytes) -> None:
        """Pass on a frame of verdict rows, pickled by an analysis process as `(VERDICTS, rows)`; on the loop."""
        if not self._closing and self._proc is not None:
            self._send(_LEN.pack(len(payload)) + payload)

    def _send(self, frame: bytes) -> None:
        if self._out:
            self._out += frame
            return
        try:
            n = os.write(self._req.fileno(), frame)
        except BlockingIOError:
            n = 0
        except OSError:  # the child is gone; _readable hears the EOF and fails the waiters
            return
        if n < len(frame):
            self._out += frame[n:]
            self._loop.add_writer(self._req.fileno(), self._flush)

    def _flush(self) -> None:
        try:
            n = os.write(self._req.fileno(), self._out)
        except BlockingIOError:
            return
        except OSError:
            n = len(self._out)
        del self._out[:n]
        if not self._out:
            self._loop.remove_writer(self._req.fileno())
            if self._closing:
                self._req.close()

    def _readable(self) -> None:
        try:
            chunk = os.read(self._res.fileno(), 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self._child_gone()
            return
        self._in += chunk
        while len(self._in) >= 4:
            (size,) = _LEN.unpack_from(self._in)
            if len(self._in) < 4 + size:
                break
            kind, seqs, value, judged = pickle.loads(self._in[4:4 + size])
            del self._in[:4 + size]
            self._resolve(kind, seqs, value)
            if judged and self.on_judged:
                self.on_judged(judged)

    def _resolve(self, kind: str, seqs: list[int], value) -> None:
        if kind == "ok":
            if not seqs:
                return
            for seq, mid in zip(seqs, value, strict=True):
                fut = self._pending.pop(seq, None)
                if fut is not None and not fut.done():
                    fut.set_result(mid)
            if self.on_commit:
                self.on_commit(value)
        else:
            for seq in seqs:
                fut = self._pending.pop(seq, None)
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError(value))

    def _child_gone(self) -> None:
        """EOF from the child: it finished (closing) or died. Nobody waiting is left hanging; a death respawns."""
        fd = self._res.fileno()
        self._loop.remove_reader(fd)
        if self._out:
            self._loop.remove_writer(self._req.fileno())
        self._res.close()
        waiting, self._pending = self._pending, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the writer process stopped before committing"))
        if not self._exited.done():
            self._exited.set_result(None)
        if not self._closing:
            log.error("the writer process died (exit code %s); starting a new one", self._proc.exitcode)
            self._proc.join(1)
            if not self._req.closed:
                self._req.close()
            self._spawn()
            if self.on_respawn:
                self.on_respawn()

    async def close(self) -> None:
        """Let the child commit what it has, then stop it."""
        if self._proc is None or self._closing:
            return
        self._closing = True
        if not self._out:
            self._req.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), 15)
        except TimeoutError:
            self._proc.kill()
        await asyncio.to_thread(self._proc.join, 10)
