"""Provides the writer process's loop: read captures from a pipe, commit what has queued up, report the ids.

Kept apart from lab.writer so the child process imports only SQLite and the store, not asyncio: a lab
restarted after a crash is committing mail again sooner.
"""

from __future__ import annotations

import pickle
import queue
import threading
from pathlib import Path

from lab.children import die_with_parent
from lab.store import Store

MAX_BATCH = 256


def commit_loop(db_path: Path, keep: int, requests, results, parent_ends=()) -> None:
    """The child: read frames on a thread, commit whatever has queued up in one transaction, report ids."""
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
            seqs = [seq for seq, _ in batch]
            try:
                reply = ("ok", seqs, store.add_flat([row for _, row in batch], keep))
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                reply = ("error", seqs, f"could not store the message: {exc}")
            results.send_bytes(pickle.dumps(reply))
    finally:
        store.close()
