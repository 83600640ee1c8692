"""Provides the analysis worker: judges stored captures off the SMTP path, in its own process by default.

The SMTP side only commits bytes. Analysis (parsing, DKIM arithmetic, SPF) is CPU-bound Python; in the
same process it would compete with the listeners for the GIL, so it runs in a separate process that
reads captures from the store and writes verdicts back. Nothing is pickled but message ids: the store is
the hand-over. The same loop runs in a thread when a process is not wanted (`analysis = "thread"`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable

from lab.children import die_with_parent
from lab.config import Config
from lab.core.dnsview import DnsView
from lab.store import Store

log = logging.getLogger("maillab.analysis")
SAVE_EVERY = 0.01  # seconds of analysis between verdict commits
CHECKPOINT_EVERY = 2000  # verdicts between WAL checkpoints while a backlog keeps the worker busy


def build_lab_view(config: Config, errors: list[str] | None = None) -> DnsView:
    """Overlay files (read now), the built-in sample zone, then system DNS unless offline."""
    from lab import samples
    from lab.resolver import build_view

    return build_view(config.zones, config.offline, config.nameserver, extra=[samples.zone(config.data_dir)],
                      errors=errors)


def backlog_loop(config: Config, stopping, wake, reload, done: Callable[[list[int]], None],
                 view: DnsView | None = None, output: str | None = None, share: tuple[int, int] = (0, 1),
                 output_lock=None) -> None:
    """Analyse whatever has no verdict, oldest first, until `stopping`; `done(ids)` after each batch.

    `share` (k, n): this worker judges the ids where id % n == k. After the first pass over the store it
    only looks above the highest id it has seen (new mail always gets a higher id), so an idle poll costs
    one index probe however many messages are stored. Verdicts are committed every SAVE_EVERY seconds.
    `output` ("line" or "json") prints each verdict to stdout here, where it is made, so `serve` costs the
    SMTP process nothing per message.
    """
    from lab.judging import Judge  # here, not at the top: the lab's SMTP process never analyses

    store = Store(config.db_path, durable=False)  # verdicts can be made again; messages are the writer's
    view = view if view is not None else build_lab_view(config, errors=[])
    judge = Judge(config)
    cursor = 0
    unchecked = 0  # verdicts committed since this worker last checkpointed
    idle = False  # the last wait for mail timed out
    try:
        while not stopping.is_set():
            wake.clear()
            if reload.is_set():
                reload.clear()
                view = build_lab_view(config, errors=[])
            batch = store.unanalysed(64, after=cursor, share=share)
            if unchecked >= CHECKPOINT_EVERY or (unchecked and idle):
                store.checkpoint()  # after a second with no mail, or a long backlog: not on a verdict's way
                unchecked = 0
            if not batch:
                idle = not wake.wait(1.0)
                continue
            idle = False
            cursor = batch[-1].id
            judged: list = []
            started = time.monotonic()
            for i, capture in enumerate(batch):
                try:
                    judged.append((capture, judge.judge(capture, view, store)))
                except Exception:  # never retried in this run: the cursor has passed it
                    log.exception("analysis of message %s failed", capture.id)
                # verdicts go out every SAVE_EVERY seconds, not once per fetched batch: a verdict must not wait
                # for 63 others (at 3 ms each), but one commit per message would cost an fsync each
                if judged and (i == len(batch) - 1 or time.monotonic() - started >= SAVE_EVERY):
                    _publish(store, judged, done, output, output_lock)
                    unchecked += len(judged)
                    judged, started = [], time.monotonic()
    finally:
        store.close()


def _publish(store: Store, judged: list, done, output: str | None, output_lock) -> None:
    store.save_judged(judged)
    if output:
        _print(output, judged, output_lock)
    done([c.id for c, _ in judged])


def _print(output: str, judged: list, lock) -> None:
    """Each verdict as one line; the workers share stdout, so a batch is written whole under their lock."""
    import json

    from lab.render import message_json, one_line

    text = "".join((json.dumps(message_json(c, v)) if output == "json" else one_line(c, v)) + "\n" for c, v in judged)
    if lock is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with lock:
        sys.stdout.write(text)
        sys.stdout.flush()


class _ParentWatch:
    """An Event stand-in that is also set when the parent process has gone."""

    def __init__(self, stopping):
        self.stopping = stopping
        self.parent = multiprocessing.parent_process()

    def is_set(self) -> bool:
        return self.stopping.is_set() or (self.parent is not None and not self.parent.is_alive())


def _process_main(config: Config, stopping, wake, reload, results, output, share, output_lock) -> None:
    die_with_parent()
    try:
        os.nice(10)  # when the CPU is short, the SMTP side (acknowledging mail) goes first; verdicts can wait
    except OSError:
        pass
    backlog_loop(config, _ParentWatch(stopping), wake, reload, results.put, output=output, share=share,
                 output_lock=output_lock)


class _Fanout:
    """One `set()` for the events of every worker: each worker clears only its own."""

    def __init__(self, events: list):
        self.events = events

    def set(self) -> None:
        for e in self.events:
            e.set()

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class AnalysisWorker:
    """Runs backlog_loop in processes (or a thread) and reports finished ids to `on_done` in this process.

    In process mode there are `config.workers` processes, each judging its share of the ids, each at a
    lower CPU priority than the SMTP side.
    """

    def __init__(self, config: Config, on_done: Callable[[list[int]], None], mode: str = "process",
                 view: DnsView | None = None):
        self.config = config
        self.output: str | None = None  # set before start(): "line" or "json" prints each verdict
        self.on_done = on_done
        self.mode = mode
        self.view = view  # thread mode only: a view handed in (tests, custom views)
        ctx = multiprocessing.get_context("spawn") if mode == "process" else None
        self.count = config.workers if ctx else 1
        make = ctx.Event if ctx else threading.Event
        self.stopping = make()
        self._wakes = [make() for _ in range(self.count)]
        self._reloads = [make() for _ in range(self.count)]
        self.wake = _Fanout(self._wakes)
        self.reload = _Fanout(self._reloads)
        self._results = ctx.SimpleQueue() if ctx else None
        self._output_lock = ctx.Lock() if ctx else None
        self._ctx = ctx
        self._runners: list = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        if self._ctx is None:
            self._runners = [threading.Thread(target=backlog_loop, daemon=True, name="maillab-analysis", args=(
                self.config, self.stopping, self._wakes[0], self._reloads[0], self.on_done, self.view,
                self.output))]
        else:
            self._runners = [self._ctx.Process(target=_process_main, daemon=True, name=f"maillab-analysis-{k}", args=(
                self.config, self.stopping, self._wakes[k], self._reloads[k], self._results, self.output,
                (k, self.count), self._output_lock)) for k in range(self.count)]
            self._reader = threading.Thread(target=self._read_results, daemon=True, name="maillab-verdicts")
            self._reader.start()
        for runner in self._runners:
            runner.start()

    def ensure_alive(self) -> None:
        """Start a new process for any share whose process died (a bug in the lab must not stop analysis for
        good); called when mail is committed, so an idle lab costs nothing."""
        if self._ctx is None or self.stopping.is_set():
            return
        for k, runner in enumerate(self._runners):
            if runner.exitcode is not None:
                log.error("analysis process %s exited (%s); starting another", k, runner.exitcode)
                self._runners[k] = self._ctx.Process(
                    target=_process_main, daemon=True, name=f"maillab-analysis-{k}",
                    args=(self.config, self.stopping, self._wakes[k], self._reloads[k], self._results, self.output,
                          (k, self.count), self._output_lock))
                self._runners[k].start()

    def _read_results(self) -> None:
        while True:
            ids = self._results.get()
            if ids is None:
                return
            try:
                self.on_done(ids)
            except Exception:
                log.exception("a verdict subscriber failed")

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.wake.set()
        for runner in self._runners:
            runner.join(timeout)
            if self._ctx is not None and runner.is_alive():
                runner.terminate()
        self._runners = []
        if self._reader is not None:
            self._results.put(None)
            self._reader.join(timeout)
            self._reader = None
