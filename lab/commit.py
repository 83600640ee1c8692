"""Provides the writer process's loop: read captures from a pipe, commit what has queued up, report the ids.

Kept apart from lab.writer so the child process imports only SQLite and the store, not asyncio: a lab
restarted after a crash is committing mail again sooner.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
from pathlib import Path

from lab.children import die_with_parent
from lab.store import Store

log = logging.getLogger("maillab.writer")
MAX_BATCH = 256
VERDICTS = 0  # the sequence number of a frame of verdict rows (captures are numbered from 1)


def commit_loop(db_path: Path, keep: int, requests, results, parent_ends=()) -> None:
    """The child: read frames on a thread, commit whatever has queued up in one transaction, report ids.

    Frames are captures `(seq, flat row)` from SMTP sessions, or `(VERDICTS, rows)` from the analysis
    processes (forwarded by the lab): those run at idle priority, and one of them holding SQLite's write
    lock while preempted would hold up every capture behind it, so they never write; their verdicts ride
    along in the captures' transactions here."""
    die_with_parent()
    for end in parent_ends:  # copies a fork left here: the lab closing its end must reach us as EOF
        end.close()
    store = Store(db_path)
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                inbox.put(requests.recv_bytes())
        except (EOFError, OSError):
            inbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        done = False
        while not done:
            frames = [inbox.get()]
            while len(frames) < MAX_BATCH:
                try:
                    frames.append(inbox.get_nowait())
                except queue.Empty:
                    break
            if None in frames:
                frames = frames[:frames.index(None)]
                done = True
            if not frames:
                continue
            batch = [pickle.loads(f) for f in frames]
            seqs = [seq for seq, _ in batch if seq != VERDICTS]
            rows = [row for seq, row in batch if seq != VERDICTS]
            verdicts = [v for seq, part in batch if seq == VERDICTS for v in part]
            results.send_bytes(pickle.dumps(_commit(store, seqs, rows, verdicts, keep)))
    finally:
        store.close()


def _commit(store: Store, seqs: list[int], rows: list[tuple], verdicts: list[tuple], keep: int) -> tuple:
    """One transaction for a batch; a verdict that cannot be stored never costs a capture its commit."""
    judged = [v[0] for v in verdicts]
    try:
        return ("ok", seqs, store.add_flat(rows, keep, verdicts), judged)
    except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
        if verdicts:
            log.error("could not store %d verdicts: %s", len(verdicts), exc)
            return _commit(store, seqs, rows, [], keep) if rows else ("ok", [], [], [])
        return ("error", seqs, f"could not store the message: {exc}", [])
