"""Provides the analysis worker: judges stored captures off the SMTP path, in its own process by default.

The SMTP side only commits bytes. Analysis (parsing, DKIM arithmetic, SPF) is CPU-bound Python; in the
same process it would compete with the listeners for the GIL, so it runs in separate processes, at idle
priority, that read captures from the store and send their verdicts back to the lab, whose writer process
commits them (lab.commit). The same loop runs in a thread, writing verdicts itself, when a process is not
wanted (`analysis = "thread"`).
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import sys
import threading
import time
from collections.abc import Callable

from lab.children import die_with_parent, lower_priority
from lab.commit import VERDICTS
from lab.config import Config
from lab.core.dnsview import DnsView
from lab.store import Store, judged_rows

log = logging.getLogger("maillab.analysis")
SAVE_EVERY = 0.01  # seconds of analysis between verdict commits
CHECKPOINT_EVERY = 2000  # verdicts between WAL checkpoints while a backlog keeps the worker busy
WATCH_EVERY = 1.0  # seconds between looks for starved verdicts (AnalysisWorker.watch)
STARVED_AFTER = 2.0  # seconds a message may wait for its verdict before a rescue is considered
RESCUE_ANYWAY = 10.0  # ... and after which it is rescued even while mail keeps arriving
RESCUER_LINGERS = 60.0  # seconds a rescuer with nothing to do waits to be needed again before it ends


def build_lab_view(config: Config, errors: list[str] | None = None) -> DnsView:
    """Overlay files (read now), the built-in sample zone, then system DNS unless offline."""
    from lab import samples
    from lab.resolver import build_view

    return build_view(config.zones, config.offline, config.nameserver, extra=[samples.zone(config.data_dir)],
                      errors=errors)


def backlog_loop(config: Config, stopping, wake, reload, done: Callable[[list[int]], None],
                 view: DnsView | None = None, output: str | None = None, share: tuple[int, int] = (0, 1),
                 output_lock=None, send: Callable[[bytes], None] | None = None, needed=None) -> None:
    """Analyse whatever has no verdict, oldest first, until `stopping`; `done(ids)` after each batch.

    `share` (k, n): this worker judges the ids where id % n == k. After the first pass over the store it
    only looks above the highest id it has seen (new mail always gets a higher id), so an idle poll costs
    one index probe however many messages are stored. Verdicts are committed every SAVE_EVERY seconds.
    `output` ("line" or "json") prints each verdict to stdout here, where it is made, so `serve` costs the
    SMTP process nothing per message. With `send`, verdicts are not written here but sent, pickled, to
    the lab's writer process (see lab.commit), which calls `done` for them; a `reload` (new DNS, or a writer
    that died with verdicts in hand) also starts the search for unjudged mail over from the oldest.
    With `needed` (an Event) it is a rescuer's loop: it judges only while `needed` is set, and ends when
    it has not been set for RESCUER_LINGERS seconds.
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
            if needed is not None and not needed.is_set() and not needed.wait(RESCUER_LINGERS):
                break  # a rescuer stays a while: busy machines starve verdicts again and again
            wake.clear()
            if reload.is_set():
                reload.clear()
                view = build_lab_view(config, errors=[])
                cursor = 0
            batch = store.unanalysed(64, after=cursor, share=share)
            if unchecked >= CHECKPOINT_EVERY or (unchecked and idle):
                store.checkpoint()  # after a second with no mail, or a long backlog: not on a verdict's way
                unchecked = 0
            if not batch:
                idle = not wake.wait(1.0 if needed is None else 0.2)
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
                called_off = needed is not None and not needed.is_set()
                if judged and (i == len(batch) - 1 or called_off or time.monotonic() - started >= SAVE_EVERY):
                    _publish(store, judged, done, output, output_lock, send)
                    unchecked += len(judged)
                    judged, started = [], time.monotonic()
                if called_off:
                    break
    finally:
        store.close()


def _publish(store: Store, judged: list, done, output: str | None, output_lock, send) -> None:
    if send is not None:  # the writer process commits them and tells the lab
        send(pickle.dumps((VERDICTS, judged_rows(judged)), protocol=pickle.HIGHEST_PROTOCOL))
    else:
        store.save_judged(judged)
    if output:
        _print(output, judged, output_lock)
    if send is None:
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


def _process_main(config: Config, stopping, wake, reload, results, output, share, output_lock, relay,
                  needed=None) -> None:
    """An analysis process. With `relay` its verdicts go to the writer process through the lab, and it runs at
    idle priority: it gets only CPU that nothing else wants, and gives it up the moment an SMTP session or
    the writer wakes (at nice 10 Linux let it finish its slice first: 0.79x of bare aiosmtpd instead of
    0.93x over 10 kept sessions). Idle priority is safe only because such a process holds no lock the
    capture path needs: it never writes to the store. A rescuer (`needed`) keeps normal priority: it runs only
    while verdicts are starved and mail is not arriving, and then competes fairly with whatever starves them."""
    die_with_parent()
    if needed is None:
        lower_priority(idle=relay)
    backlog_loop(config, _ParentWatch(stopping), wake, reload, results.put, output=output, share=share,
                 output_lock=output_lock, send=results.put if relay else None, needed=needed)


def starved(waited: float, since_verdict: float, since_mail: float, rescuing: bool) -> bool:
    """Whether verdicts need a rescuer: the oldest unjudged message has waited STARVED_AFTER seconds, no verdict
    came for a second (while rescuing, the verdicts that come are the rescuer's own), and either no mail came
    for half a second (the lab's own burst is not starvation: verdicts drain after it) or it has waited
    RESCUE_ANYWAY seconds."""
    return (waited > STARVED_AFTER and (rescuing or since_verdict > 1.0)
            and (since_mail > 0.5 or waited > RESCUE_ANYWAY))


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
                 view: DnsView | None = None, forward: Callable[[bytes], None] | None = None):
        """`forward` (process mode): the processes send their verdicts, pickled, to it instead of writing them
        (the lab hands them to its writer process, whose commit then calls `on_done`), and run at idle priority."""
        self.config = config
        self.forward = forward
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
        # the rescue of verdicts starved of CPU (see watch()); the lab updates these two clocks
        self.committed_at = self.judged_at = time.monotonic()
        # the rescuer's own events: kept here, as an Event the parent drops is gone before the child unpickles it
        self._needed, self._rescue_wake, self._rescue_reload = (ctx.Event(), ctx.Event(), ctx.Event()) if ctx else \
            (None, None, None)
        self._rescuer = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        if self._ctx is None:
            self._runners = [threading.Thread(target=backlog_loop, daemon=True, name="maillab-analysis", args=(
                self.config, self.stopping, self._wakes[0], self._reloads[0], self.on_done, self.view,
                self.output))]
        else:
            self._runners = [self._share(k) for k in range(self.count)]
            self._reader = threading.Thread(target=self._read_results, daemon=True, name="maillab-verdicts")
            self._reader.start()
            if self.forward is not None:
                self._watcher = threading.Thread(target=self.watch, daemon=True, name="maillab-rescue")
                self._watcher.start()
        for runner in self._runners:
            runner.start()

    def watch(self) -> None:
        """Rescue verdicts starved of CPU. Idle priority means a machine kept busy by something else (a test
        suite on every core) could leave mail unjudged for as long as it stays busy: 20 verdicts took 34 s
        beside two busy loops on two cores. Once a second this looks at the oldest unjudged message; when
        `starved()` says so, a rescuer at normal priority judges the oldest mail until verdicts flow again."""
        from datetime import UTC, datetime

        store = None
        low = 0  # every message up to here has a verdict
        while not self.stopping.wait(WATCH_EVERY):
            try:
                store = store or Store(self.config.db_path, durable=False)
                low, oldest = store.oldest_unjudged(after=low)
            except Exception:  # noqa: BLE001 - a busy or vanished store: look again in a second
                log.debug("rescue: could not read the store", exc_info=True)
                continue
            now = time.monotonic()
            waited = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            self.rescue(starved(waited, now - self.judged_at, now - self.committed_at, self._needed.is_set()))
        if store is not None:
            store.close()

    def rescue(self, needed: bool) -> None:
        if not needed:
            self._needed.clear()
            return
        self._needed.set()
        if self._rescuer is None or self._rescuer.exitcode is not None:
            log.warning("verdicts are starved of CPU (the machine is busy): judging at normal priority until "
                        "they catch up")
            self._rescuer = self._process("rescue", self._rescue_wake, self._rescue_reload, (0, 1), self._needed)
            self._rescuer.start()

    def ensure_alive(self) -> None:
        """Start a new process for any share whose process died (a bug in the lab must not stop analysis for
        good); called when mail is committed, so an idle lab costs nothing."""
        if self._ctx is None or self.stopping.is_set():
            return
        for k, runner in enumerate(self._runners):
            if runner.exitcode is not None:
                log.error("analysis process %s exited (%s); starting another", k, runner.exitcode)
                self._runners[k] = self._share(k)
                self._runners[k].start()

    def _share(self, k: int):
        return self._process(str(k), self._wakes[k], self._reloads[k], (k, self.count))

    def _process(self, name: str, wake, reload, share: tuple[int, int], needed=None):
        return self._ctx.Process(target=_process_main, daemon=True, name=f"maillab-analysis-{name}", args=(
            self.config, self.stopping, wake, reload, self._results, self.output, share, self._output_lock,
            self.forward is not None, needed))

    def _read_results(self) -> None:
        while True:
            item = self._results.get()
            if item is None:
                return
            try:
                if isinstance(item, bytes):
                    self.forward(item)
                else:
                    self.on_done(item)
            except Exception:
                log.exception("a verdict subscriber failed")

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.wake.set()
        if self._watcher is not None:
            self._watcher.join(timeout)
            self._watcher = None
        for runner in self._runners + ([self._rescuer] if self._rescuer is not None else []):
            runner.join(timeout)
            if self._ctx is not None and runner.is_alive():
                runner.terminate()
        self._runners, self._rescuer = [], None
        if self._reader is not None:
            self._results.put(None)
            self._reader.join(timeout)
            self._reader = None
