"""Benchmark: the message list with N stored messages, against Textual's DataTable holding the same rows.

Measures time to first paint (the first time the screen is drawn, list included), until the screen has
settled (for the lab: the selected message's detail drawn too), to jump to the last message (G) and to page
through 50 pages, with the lab's MessageList (line API, paged from SQLite) and, as the baseline in the same
run, a DataTable loaded with every row. Run: `.venv/bin/python bench/tui_list.py [N]` (default 100,000).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from textual.app import App
from textual.screen import Screen
from textual.widgets import DataTable

from lab.config import Config
from lab.store import Store
from lab.ui.app import MaillabApp
from lab.ui.widgets.message_list import MessageList

RAW = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: load test\r\n\r\nbody\r\n"


def fill(db: Path, n: int) -> None:
    Store(db).close()
    con = sqlite3.connect(db)
    verdict = json.dumps({"verdict": "warn", "disposition": "", "checks": [], "authentication_results": "x",
                          "headers": {}})
    with con:
        con.executemany(
            "INSERT INTO messages (received_at, raw, size, mail_from, rcpt_to, helo, listener, client_ip) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((f"2026-11-26T12:{i // 60 % 60:02d}:{i % 60:02d}+00:00", RAW, len(RAW), f"user{i}@example.com",
              '["b@example.net"]', "h", "relay", "192.0.2.10") for i in range(n)))
        con.execute("INSERT INTO verdicts (message_id, level, analysed_at, from_header, to_header, subject, failed,"
                    " data) SELECT id, 'warn', received_at, mail_from, 'b@example.net', 'load test ' || id, '', ? "
                    "FROM messages", (verdict,))
    con.close()


async def timings(app: App, end_key: str, started: float) -> dict[str, float]:
    """First paint and settled (from `started`), a jump to the last row, and 50 page-ups, for either list."""
    painted: list[float] = []
    refresh = Screen._compositor_refresh

    def timed(screen) -> None:  # the compositor has drawn the screen's changes
        refresh(screen)
        painted.append(time.perf_counter())

    Screen._compositor_refresh = timed
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            await pilot.pause()
            settled = time.perf_counter() - started
            first = painted[0] - started
            Screen._compositor_refresh = refresh
            return {"first_paint": first, "settled": settled, **await _moves(pilot, end_key)}
    finally:
        Screen._compositor_refresh = refresh


async def _moves(pilot, end_key: str) -> dict[str, float]:
    """A jump to the last row, then 50 page-ups, each until the screen has settled."""
    t1 = time.perf_counter()
    await pilot.press(end_key)
    await pilot.pause()
    end = time.perf_counter() - t1
    t2 = time.perf_counter()
    for _ in range(50):
        await pilot.press("pageup")
    await pilot.pause()
    pages = time.perf_counter() - t2
    return {"jump_to_end": end, "50_pages": pages}


async def lab_timings(data_dir: Path) -> dict[str, float]:
    config = Config(data_dir=data_dir, offline=True, relay_port=0, submission_port=0, smtps_port=0, pop3_port=0,
                    spam_filters="off")
    return await timings(MaillabApp(config), "G", time.perf_counter())


async def lab_interaction(data_dir: Path) -> dict[str, float]:
    """What issue 6 asks of the lab alone: one keypress (down a row, detail pane included) and a filter over
    every stored message, each until the screen has settled; and the process's peak RSS."""
    config = Config(data_dir=data_dir, offline=True, relay_port=0, submission_port=0, smtps_port=0, pop3_port=0,
                    spam_filters="off")
    app = MaillabApp(config)
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause()
        painted: list[float] = []
        screen = app.screen
        refresh = screen._compositor_refresh

        def timed_refresh():  # when the screen's changes have been drawn (the test harness adds its own waits)
            refresh()
            painted.append(time.perf_counter())

        screen._compositor_refresh = timed_refresh
        presses, settled = [], []
        for _ in range(40):
            painted.clear()
            t = time.perf_counter()
            await pilot.press("j")
            presses.append((painted[0] if painted else time.perf_counter()) - t)  # key to the list redrawn
            await pilot.pause(0.1)  # the detail pane loads once the cursor rests (60 ms), in a thread
            await pilot.pause()
            settled.append(time.perf_counter() - t)
        presses.sort()
        settled.sort()
        filters = []
        for query in ("verdict:fail", "subject:load", "user4242", ""):
            await pilot.pause()
            painted.clear()
            t = time.perf_counter()
            app._apply_filter(query)  # what Enter in the filter box does: count, first page, redraw
            while not painted:
                await asyncio.sleep(0.001)
            filters.append(painted[0] - t)
            assert app.query_one(MessageList).count == app.source.count()
    return {"keypress_p50": presses[len(presses) // 2], "keypress_p95": presses[int(len(presses) * .95)],
            "detail_p50": settled[len(settled) // 2],
            "filter_max": max(filters),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class TableApp(App):
    def __init__(self, rows):
        super().__init__()
        self.rows = rows

    def compose(self):
        yield DataTable()

    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("", "time", "listener", "from", "to", "subject")
        table.add_rows(self.rows)


async def table_timings(db: Path) -> dict[str, float]:
    con = sqlite3.connect(db)
    t0 = time.perf_counter()
    rows = [("! warn", r[0][11:19], r[1], r[2], "b@example.net", r[3]) for r in con.execute(
        "SELECT m.received_at, m.listener, m.mail_from, v.subject FROM messages m JOIN verdicts v "
        "ON v.message_id = m.id ORDER BY m.id DESC")]
    return await timings(TableApp(rows), "end", t0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        fill(data / "maillab.db", n)
        print(f"stored {n:,} messages in {time.perf_counter() - t:.1f} s")
        lab = asyncio.run(lab_timings(data))
        alone = asyncio.run(lab_interaction(data))  # before the DataTable inflates this process's RSS
        table = asyncio.run(table_timings(data / "maillab.db"))
    print(f"{'':14} {'MessageList':>12} {'DataTable':>12} {'ratio':>8}")
    for key in lab:
        print(f"{key:14} {lab[key]:11.3f}s {table[key]:11.3f}s {table[key] / lab[key]:7.1f}x")
    print(f"lab alone: keypress to list repaint p50 {alone['keypress_p50'] * 1000:.0f} ms, "
          f"p95 {alone['keypress_p95'] * 1000:.0f} ms (target < 50 ms); detail pane settled (incl. 100 ms wait) "
          f"p50 {alone['detail_p50'] * 1000:.0f} ms")
    print(f"lab alone: filter over {n:,} messages, slowest of 4: {alone['filter_max'] * 1000:.0f} ms "
          f"(target < 300 ms); peak RSS {alone['peak_rss_mb']:.0f} MB (target < 250 MB)")


if __name__ == "__main__":
    main()
