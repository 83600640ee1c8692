"""The writer process: every acknowledged capture is committed, ids come back in order, and a dead writer
fails its waiters (the SMTP side answers 451) and is replaced."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from support import message

from lab.core.model import Capture, Envelope
from lab.store import Store
from lab.writer import ProcessWriter


def _capture(i: int) -> Capture:
    return Capture(message(subject=f"n{i}") + b"x" * (i * 37 % 9000), Envelope(f"s{i}@example.com", ("r@example.net",)))


async def test_concurrent_submissions_are_committed_byte_exact_in_order(tmp_path):
    Store(tmp_path / "db").close()
    committed: list[int] = []
    writer = ProcessWriter(tmp_path / "db", on_commit=committed.extend)
    writer.start()
    try:
        captures = [_capture(i) for i in range(300)]
        ids = await asyncio.gather(*(writer.submit(c, [[0, ">", f"MAIL {i}"]]) for i, c in enumerate(captures)))
    finally:
        await writer.close()
    assert ids == sorted(ids) and len(set(ids)) == 300
    assert sorted(committed) == ids
    store = Store(tmp_path / "db")
    try:
        for mid, c in zip(ids, captures, strict=True):
            stored = store.get(mid)
            assert stored.capture.raw == c.raw and stored.capture.envelope.mail_from == c.envelope.mail_from
        assert store.get(ids[7]).session == [[0, ">", "MAIL 7"]]
    finally:
        store.close()


async def test_a_killed_writer_fails_its_waiters_and_is_replaced(tmp_path):
    Store(tmp_path / "db").close()
    writer = ProcessWriter(tmp_path / "db")
    writer.start()
    try:
        first = await writer.submit(_capture(1), [])
        dead = writer._proc
        os.kill(dead.pid, signal.SIGSTOP)  # hold it so the next submissions are certainly pending
        pending = [asyncio.ensure_future(writer.submit(_capture(i), [])) for i in range(5)]
        await asyncio.sleep(0.1)
        os.kill(dead.pid, signal.SIGKILL)
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results), results
        assert writer._proc is not dead
        after = await asyncio.wait_for(writer.submit(_capture(9), []), 20)
        assert after > first
    finally:
        await writer.close()
    store = Store(tmp_path / "db")
    try:
        assert store.get(after).capture.envelope.mail_from == "s9@example.com"
    finally:
        store.close()


@pytest.mark.parametrize("size", [200_000, 3_000_000])
async def test_large_captures_cross_the_pipe_without_blocking_the_loop(tmp_path, size):
    Store(tmp_path / "db").close()
    writer = ProcessWriter(tmp_path / "db")
    writer.start()
    try:
        raw = message(body="y" * size)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        ids = await asyncio.gather(*(writer.submit(Capture(raw), []) for _ in range(8)))
        t.cancel()
        assert ticks > 0  # the loop kept running while 8 x size bytes were written to a 64 KB pipe
    finally:
        await writer.close()
    store = Store(tmp_path / "db")
    try:
        assert all(store.raw(i) == raw for i in ids)
    finally:
        store.close()


def _verdict_frame(store_path, mid: int, subject: str = "") -> bytes:
    """What an analysis process sends: its verdict rows, pickled under the VERDICTS sequence number."""
    import pickle

    from lab.commit import VERDICTS
    from lab.core.analyse import analyse
    from lab.core.dnsview import LayeredView
    from lab.store import judged_rows

    store = Store(store_path)
    try:
        capture = store.get(mid).capture
    finally:
        store.close()
    return pickle.dumps((VERDICTS, judged_rows([(capture, analyse(capture, LayeredView([])))])))


async def _until(predicate, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


async def test_forwarded_verdicts_are_committed_with_the_captures_and_reported(tmp_path):
    """Analysis processes never write (they run at idle priority and must hold no lock the capture path waits
    for): the writer commits their verdicts, in the same transaction as captures that queued with them."""
    Store(tmp_path / "db").close()
    judged: list[int] = []
    writer = ProcessWriter(tmp_path / "db", on_judged=judged.extend)
    writer.start()
    try:
        first = await writer.submit(_capture(1), [])
        frame = _verdict_frame(tmp_path / "db", first)
        os.kill(writer._proc.pid, signal.SIGSTOP)  # the verdict and the next capture queue up together
        writer.forward(frame)
        second = asyncio.ensure_future(writer.submit(_capture(2), []))
        await asyncio.sleep(0.1)
        os.kill(writer._proc.pid, signal.SIGCONT)
        await asyncio.wait_for(second, 20)
        await _until(lambda: judged == [first])
    finally:
        await writer.close()
    store = Store(tmp_path / "db")
    try:
        assert store.get(first).verdict is not None and store.get(second.result()).verdict is None
    finally:
        store.close()


async def test_a_verdict_that_cannot_be_stored_never_costs_a_capture_its_commit(tmp_path):
    import pickle

    from lab.commit import VERDICTS

    Store(tmp_path / "db").close()
    judged: list[int] = []
    writer = ProcessWriter(tmp_path / "db", on_judged=judged.extend)
    writer.start()
    try:
        os.kill(writer._proc.pid, signal.SIGSTOP)
        writer.forward(pickle.dumps((VERDICTS, [(1, "fail")])))  # two columns where the table wants eleven
        pending = [asyncio.ensure_future(writer.submit(_capture(i), [])) for i in range(3)]
        await asyncio.sleep(0.1)
        os.kill(writer._proc.pid, signal.SIGCONT)
        ids = await asyncio.wait_for(asyncio.gather(*pending), 20)
        assert len(set(ids)) == 3
        later = await writer.submit(_capture(7), [])
        writer.forward(_verdict_frame(tmp_path / "db", later))
        await _until(lambda: judged == [later])  # the writer goes on; the bad frame reported nothing
    finally:
        await writer.close()
