"""Benchmark: the TUI while mail arrives at 500 msg/s (issue 6: "while 500 msg/s arrive the UI stays responsive").

The app runs headless with its real listeners (the SMTP engine is a thread of the app's process, the writer
and the analysis are processes, as with `make run`). A load generator in another process sends 5 KB messages
over 10 kept sessions at RATE msg/s for SECONDS (bench/latency.py's sessions). In the same run it measures
the time from a keypress (down or up a row) to the list redrawn, first with no mail arriving, then during
the load; then how long after the load ends the list shows every acknowledged message.
Run: `.venv/bin/python bench/tui_load.py [RATE] [SECONDS]` (default 500 msg/s for 10 s).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ingest  # noqa: E402

from lab.config import Config  # noqa: E402
from lab.ui.app import MaillabApp  # noqa: E402
from lab.ui.widgets.message_list import MessageList  # noqa: E402

PACE = 0.15  # seconds between keypresses: a person reading the list, so the detail pane loads between presses
LOAD = """
import asyncio, sys
sys.path.insert(0, {here!r})
import latency
acked = asyncio.run(latency.drive({port}, {rate}, {seconds}))
print(len(acked))
"""


async def presses(app, painted: list[float], handled: list[float], until: float | None,
                  count: int = 40) -> list[float]:
    """From a keypress (down or up a row, alternating) to the first redraw after the list has handled it; until
    `until` (monotonic) or `count` presses. Keys are posted as a terminal would send them: the test harness's
    own press() waits for the app to be idle, which an app receiving mail never quite is."""
    from textual import events

    out = []
    n = 0
    while (until is None and n < count) or (until is not None and time.monotonic() < until):
        key = "j" if n % 2 == 0 else "k"
        handled.clear()
        t = time.perf_counter()
        app.post_message(events.Key(key, key))
        while time.perf_counter() - t < 5:
            if handled and any(p >= handled[0] for p in painted):
                break
            await asyncio.sleep(0.0005)
        after = [p for p in painted if handled and p >= handled[0]]
        out.append((after[0] if after else time.perf_counter()) - t)
        n += 1
        await asyncio.sleep(PACE)
    return sorted(out)


async def run(rate: float, seconds: float, data_dir: Path) -> dict:
    port = ingest.free_port()
    config = Config(data_dir=data_dir, offline=True, relay_port=port, submission_port=0, smtps_port=0, pop3_port=0,
                    spam_filters="off")
    app = MaillabApp(config)
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause(1.0)
        ingest.drive(port, 5 * 1024, 10, False, 200)  # some rows to move over, and warm processes
        await pilot.pause(2.0)
        screen = app.screen
        refresh = screen._compositor_refresh
        painted: list[float] = []

        def timed_refresh():
            refresh()
            painted.append(time.perf_counter())

        screen._compositor_refresh = timed_refresh
        listed = app.query_one(MessageList)
        handled: list[float] = []
        action = listed.action_cursor

        def timed_action(delta: int) -> None:
            action(delta)
            handled.append(time.perf_counter())

        listed.action_cursor = timed_action
        idle = await presses(app, painted, handled, None)
        load = subprocess.Popen([sys.executable, "-c", LOAD.format(here=str(HERE), port=port, rate=rate,
                                                                    seconds=seconds)],
                                stdout=subprocess.PIPE, text=True, env={**os.environ})
        await asyncio.sleep(0.5)
        loaded = await presses(app, painted, handled, time.monotonic() + seconds - 1.0)
        while load.poll() is None:
            await asyncio.sleep(0.05)
        ended = time.perf_counter()
        acked = int(load.stdout.read().strip() or 0)
        expected = 200 + acked
        while listed.count < expected and time.perf_counter() - ended < 30:
            await asyncio.sleep(0.02)
        caught_up = time.perf_counter() - ended
        screen._compositor_refresh = refresh
        return {"idle": idle, "loaded": loaded, "acked": acked, "listed": listed.count, "expected": expected,
                "caught_up": caught_up}


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 500
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(run(rate, seconds, Path(tmp)))
    pct = ingest.pct
    print(f"mail: {r['acked']} messages acknowledged in {seconds:.0f} s ({r['acked'] / seconds:.0f} msg/s, "
          f"{rate:.0f} asked); the list showed all {r['expected']} {r['caught_up']:.2f} s after the load ended"
          + ("" if r["listed"] >= r["expected"] else f" (only {r['listed']} listed)"))
    for name in ("idle", "loaded"):
        v = r[name]
        print(f"keypress to list redrawn, {name:6}: p50 {pct(v, .5) * 1000:5.1f} ms, p95 {pct(v, .95) * 1000:5.1f} ms,"
              f" max {v[-1] * 1000:5.1f} ms over {len(v)} presses (target < 50 ms)")


if __name__ == "__main__":
    main()
