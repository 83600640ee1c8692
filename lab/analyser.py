"""Provides the analysis worker: judges stored captures off the SMTP path, in its own process by default.

The SMTP side only commits bytes. Analysis (parsing, DKIM arithmetic, SPF) is CPU-bound Python; in the
same process it would compete with the listeners for the GIL, so it runs in a separate process that
reads captures from the store and writes verdicts back. Nothing is pickled but message ids: the store is
the hand-over. The same loop runs in a thread when a process is not wanted (`analysis = "thread"`).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable

from lab.config import Config
from lab.core.analyse import analyse
from lab.core.dnsview import DnsView
from lab.store import Store

log = logging.getLogger("maillab.analysis")


def build_lab_view(config: Config, errors: list[str] | None = None) -> DnsView:
    """Overlay files (read now), the built-in sample zone, then system DNS unless offline."""
    from lab import samples
    from lab.resolver import build_view

    return build_view(config.zones, config.offline, config.nameserver, extra=[samples.zone(config.data_dir)],
                      errors=errors)


def backlog_loop(config: Config, stopping, wake, reload, done: Callable[[list[int]], None],
                 view: DnsView | None = None, output: str | None = None) -> None:
    """Analyse whatever has no verdict, oldest first, until `stopping`; `done(ids)` after each batch.

    `output` ("line" or "json") prints each verdict to stdout here, where it is made, so `serve` costs the
    SMTP process nothing per message.
    """
    store = Store(config.db_path)
    view = view if view is not None else build_lab_view(config, errors=[])
    failed: set[int] = set()  # never retried in this run, so one bad message cannot spin the loop
    try:
        while not stopping.is_set():
            wake.clear()
            if reload.is_set():
                reload.clear()
                view = build_lab_view(config, errors=[])
            batch = [c for c in store.unanalysed(64 + len(failed)) if c.id not in failed]
            if not batch:
                wake.wait(1.0)
                continue
            ids = []
            for capture in batch:
                try:
                    verdict = analyse(capture, view, authserv_id=config.hostname)
                    store.save_verdict(capture.id, verdict)
                    ids.append(capture.id)
                    if output:
                        _print(output, capture, verdict)
                except Exception:
                    log.exception("analysis of message %s failed", capture.id)
                    failed.add(capture.id)
            if ids:
                done(ids)
    finally:
        store.close()


def _print(output: str, capture, verdict) -> None:
    import json

    from lab.render import message_json, one_line

    line = json.dumps(message_json(capture, verdict)) if output == "json" else one_line(capture, verdict)
    print(line, flush=True)


def _die_with_parent() -> None:
    """If the lab is killed (SIGKILL leaves no chance to clean up), its analysis process must go too."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent check in the loop below still ends it within a second


class _ParentWatch:
    """An Event stand-in that is also set when the parent process has gone."""

    def __init__(self, stopping):
        self.stopping = stopping
        self.parent = multiprocessing.parent_process()

    def is_set(self) -> bool:
        return self.stopping.is_set() or (self.parent is not None and not self.parent.is_alive())


def _process_main(config: Config, stopping, wake, reload, results, output) -> None:
    _die_with_parent()
    backlog_loop(config, _ParentWatch(stopping), wake, reload, results.put, output=output)


class AnalysisWorker:
    """Runs backlog_loop in a process (or a thread) and reports finished ids to `on_done` in this process."""

    def __init__(self, config: Config, on_done: Callable[[list[int]], None], mode: str = "process",
                 view: DnsView | None = None):
        self.config = config
        self.output: str | None = None  # set before start(): "line" or "json" prints each verdict
        self.on_done = on_done
        self.mode = mode
        self.view = view  # thread mode only: a view handed in (tests, custom views)
        ctx = multiprocessing.get_context("spawn") if mode == "process" else None
        self.stopping = ctx.Event() if ctx else threading.Event()
        self.wake = ctx.Event() if ctx else threading.Event()
        self.reload = ctx.Event() if ctx else threading.Event()
        self._results = ctx.SimpleQueue() if ctx else None
        self._ctx = ctx
        self._runner = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        if self._ctx is None:
            self._runner = threading.Thread(target=backlog_loop, daemon=True, name="maillab-analysis", args=(
                self.config, self.stopping, self.wake, self.reload, self.on_done, self.view, self.output))
        else:
            self._runner = self._ctx.Process(target=_process_main, daemon=True, name="maillab-analysis", args=(
                self.config, self.stopping, self.wake, self.reload, self._results, self.output))
            self._reader = threading.Thread(target=self._read_results, daemon=True, name="maillab-verdicts")
            self._reader.start()
        self._runner.start()

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
        if self._runner is not None:
            self._runner.join(timeout)
            if self._ctx is not None and self._runner.is_alive():
                self._runner.terminate()
            self._runner = None
        if self._reader is not None:
            self._results.put(None)
            self._reader.join(timeout)
            self._reader = None
