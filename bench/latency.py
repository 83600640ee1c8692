"""Benchmark: how soon a verdict is visible after the `250`, with mail arriving at a steady rate.

Issue 6 asks for p99 < 50 ms at 300 msg/s. Starts `maillab serve`, sends 5 KB messages over 10 kept
sessions at RATE msg/s in total for SECONDS, notes the wall-clock time of each `250` (and the queue id in
it), then reads when each verdict was stored. Run: `.venv/bin/python bench/latency.py [RATE] [SECONDS]`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ingest  # noqa: E402

BODY = b"".join(f"line {i} of a realistic body, with some words in it\r\n".encode() for i in range(90))
SESSIONS = 10
ROUNDS = int(os.environ.get("ROUNDS", "5"))


async def session(port: int, rate: float, until: float, acked: dict[int, float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO load.example.com\r\n")
    await reply()
    n = 0
    start = time.monotonic()
    while time.monotonic() < until:
        n += 1
        msg = (f"From: load@example.com\r\nTo: sink@example.net\r\nSubject: latency {n}\r\n"
               f"Message-ID: <{n}.{id(writer)}@example.com>\r\n\r\n").encode() + BODY
        writer.write(b"MAIL FROM:<load@example.com>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\n")
        for _ in range(3):
            await reply()
        writer.write(msg + b".\r\n")
        line = await reply()
        if line.startswith(b"250"):
            acked[int(line.split(b"queued as ")[1].split()[0])] = time.time()
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def drive(port: int, rate: float, seconds: float) -> dict[int, float]:
    acked: dict[int, float] = {}
    until = time.monotonic() + seconds
    await asyncio.gather(*(session(port, rate / SESSIONS, until, acked) for _ in range(SESSIONS)))
    return acked


def one_round(rate: float, seconds: float) -> tuple[int, int, list[float]]:
    """(acknowledged, without a verdict, sorted latencies in ms) from a fresh `maillab serve`."""
    with tempfile.TemporaryDirectory() as tmp:
        port = ingest.free_port()
        proc = ingest.start("maillab serve", port, Path(tmp))
        try:
            ingest.drive(port, 5 * 1024, 10, False, 200)  # warm up, as the ingest benchmark does
            time.sleep(2)
            acked = asyncio.run(drive(port, rate, seconds))
            time.sleep(2)
            con = sqlite3.connect(Path(tmp) / "maillab.db")
            analysed = dict(con.execute("SELECT message_id, analysed_at FROM verdicts"))
            con.close()
        finally:
            proc.terminate()
            proc.wait(20)
    lat = sorted((datetime.fromisoformat(analysed[i]).timestamp() - t) * 1000 for i, t in acked.items()
                 if i in analysed)
    return len(acked), sum(1 for i in acked if i not in analysed), lat


def main() -> None:
    """ROUNDS rounds, each on a fresh lab: one round's p99 swings 2-4x on these shared machines."""
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 300
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    pct = ingest.pct
    p99s = []
    for n in range(ROUNDS):
        acked, missing, lat = one_round(rate, seconds)
        p99s.append(pct(lat, .99))
        print(f"round {n + 1}: {acked} messages acknowledged at {acked / seconds:.0f} msg/s ({rate:.0f} asked), "
              f"{missing} without a verdict 2 s later; verdict visible after the 250: p50 {pct(lat, .5):.0f} ms, "
              f"p90 {pct(lat, .9):.0f} ms, p99 {pct(lat, .99):.0f} ms, max {lat[-1] if lat else float('nan'):.0f} ms")
    print(f"median p99 over {ROUNDS} rounds: {statistics.median(p99s):.0f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
