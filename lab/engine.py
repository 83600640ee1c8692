"""Provides Engine: the listeners, the group writer and the analysis worker, wired in one direction.

listener -> writer (commit, then 250) -> analysis worker (analyse) -> writer (save verdict) -> subscribers.
The analysis worker runs in its own thread so a slow DNS answer never holds up an SMTP session, and it
analyses whatever was stored but not yet judged when the lab starts (after a crash, say).

The rules (lab.rules) come from `--rules FILE` or are the built-in local parts. A rules file is re-read
by a background task that stats it once a second in a thread, so the SMTP path never touches the disk; a
reload, or an edit that does not load (the old rules stay), is told to the `rules` subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab.analyser import AnalysisWorker, build_lab_view
from lab.config import Config
from lab.core.dnsview import DnsView
from lab.core.model import Capture
from lab.core.results import Verdict
from lab.pop3 import start_pop3
from lab.resolver import describe
from lab.rules import RELOAD_INTERVAL, RulesError, RuleSet, RulesFile
from lab.smtp.auth import Credentials
from lab.smtp.certs import ensure_certificate, server_context
from lab.smtp.listeners import CaptureHandler, ListenerSpec, default_specs, start_listeners, stop_listeners
from lab.store import Store
from lab.writer import GroupWriter, ProcessWriter

log = logging.getLogger("maillab.engine")

Subscriber = Callable[[list[int]], None]  # called with the ids of freshly judged messages
RulesSubscriber = Callable[[str, bool], None]  # called with what happened to the rules file, and whether it is an error


class Engine:
    def __init__(self, config: Config, view: DnsView | None = None, tolerant: bool = False):
        """`tolerant`: a broken zone file is left out and reported in `dns_errors` instead of raising."""
        self.config = config
        config.ensure_data_dir()
        self.dns_errors: list[str] | None = [] if tolerant else None
        self.view = view if view is not None else self.build_view()
        self.specs: list[ListenerSpec] = default_specs(config.bind, config.relay_port, config.submission_port,
                                                       config.smtps_port)
        self.subscribers: list[Subscriber] = []
        self.rules_subscribers: list[RulesSubscriber] = []
        self.rules_error: str | None = None  # why the rules file is not (or no longer) in use
        self.rules = self.build_rules(tolerant)
        self.handler: CaptureHandler | None = None
        self._rules_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pop3: asyncio.AbstractServer | None = None
        self.pop3_error: str | None = None  # why POP3 is not listening, when it could not
        self._judge = None  # built on the first re-check: the SMTP process does not analyse otherwise
        if config.analysis == "process":  # verdicts travel to the writer process (see lab.commit)
            self.writer = ProcessWriter(config.db_path, on_commit=self._committed, keep=config.max_messages,
                                        on_judged=self._analysed, on_respawn=self._writer_respawned)
            self.worker = AnalysisWorker(config, self._analysed, forward=self._forward_verdicts)
        else:
            self.writer = GroupWriter(config.db_path, on_commit=self._committed, keep=config.max_messages)
            self.worker = AnalysisWorker(config, self._analysed, mode=config.analysis, view=view)

    def build_rules(self, tolerant: bool = False) -> RuleSet | RulesFile:
        """The rules file, or the built-in local parts. A file that does not load raises RulesError, unless
        `tolerant`: then the built-in rules are used and `rules_error` says why."""
        cfg = self.config
        if cfg.rules:
            try:
                return RulesFile(cfg.rules, interval=0, on_change=self._rules_changed_elsewhere)
            except RulesError as exc:
                if not tolerant:
                    raise
                self.rules_error = f"{exc} (using the built-in rules)"
        rules = RuleSet.default()
        if cfg.greylist_delay is not None:
            rules.greylist.delay = float(cfg.greylist_delay)
            rules.greylist.expire = max(rules.greylist.expire, rules.greylist.delay)
        return rules

    def subscribe_rules(self, fn: RulesSubscriber) -> None:
        self.rules_subscribers.append(fn)

    def _rules_changed_elsewhere(self, rules: RuleSet, error: str | None) -> None:
        """RulesFile's on_change, called in the polling thread: tell the subscribers on the engine's loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._rules_changed, rules, error)

    def _rules_changed(self, rules: RuleSet, error: str | None) -> None:
        self.rules_error = error
        if error:
            text, bad = f"rules: {error}", True
            log.warning("%s", text)
        else:
            text, bad = f"rules: reloaded {rules.source} ({len(rules.rules)} rules)", False
            log.info("%s", text)
        for fn in self.rules_subscribers:
            try:
                fn(text, bad)
            except Exception:
                log.exception("a rules subscriber failed")

    async def _poll_rules(self, rules: RulesFile) -> None:
        """Re-read the rules file when it changes; the stat and the parse run in a thread, off the SMTP loop."""
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                await asyncio.to_thread(rules.poll)
            except Exception:
                log.exception("rules: could not re-read %s", rules.path)
            if self.handler is not None:
                self.handler.refresh()  # back on the loop: the SMTP path sees the new rules from its next command

    def _committed(self, ids: list[int]) -> None:
        self.worker.committed_at = time.monotonic()
        self.worker.ensure_alive()
        self.worker.wake.set()

    def _forward_verdicts(self, payload: bytes) -> None:
        """Called in the analysis worker's reader thread: the writer is the event loop's."""
        self._loop.call_soon_threadsafe(self.writer.forward, payload)

    def _writer_respawned(self) -> None:
        """Verdicts the dead writer held are gone: the analysis looks for unjudged mail from the oldest again."""
        self.worker.reload.set()
        self.worker.wake.set()

    def build_view(self) -> DnsView:
        if self.dns_errors is not None:
            self.dns_errors.clear()
        return build_lab_view(self.config, self.dns_errors)

    def reload_dns(self) -> None:
        """Re-read the overlay files, here and in the analysis worker, so a fixed record takes effect."""
        self.view = self.build_view()
        self.worker.reload.set()
        self.worker.wake.set()

    def reanalyse(self, ids: list[int]) -> int:
        """Judge stored messages again against the current DNS; called from a worker thread."""
        store = Store(self.config.db_path)
        done = 0
        try:
            for mid in ids:
                stored = store.get(mid)
                if stored is not None:
                    self.analyse_stored(store, stored.capture)
                    done += 1
        finally:
            store.close()
        return done

    @property
    def ports(self) -> dict[str, int]:
        return {s.listener.value: s.port for s in self.specs if s.server is not None}

    @property
    def pop3_port(self) -> int | None:
        return self.pop3.sockets[0].getsockname()[1] if self.pop3 is not None else None

    @property
    def db_path(self) -> Path:
        return self.config.db_path

    @property
    def dns_mode(self) -> str:
        return describe(self.view) if hasattr(self.view, "overlay") else "custom"

    def subscribe(self, fn: Subscriber) -> None:
        self.subscribers.append(fn)

    async def start(self, partial: bool = False) -> list[str]:
        """Start everything. A listener that cannot bind is fatal unless `partial`; returns its errors."""
        cfg = self.config
        Store(cfg.db_path).close()  # create the schema before anything races for it
        cert, key = ensure_certificate(cfg.tls_dir, cfg.hostname)
        credentials = Credentials.from_file(cfg.credentials) if cfg.credentials else Credentials()
        self._loop = asyncio.get_running_loop()
        handler = self.handler = CaptureHandler(self.writer.submit, cfg.client_ip, cfg.max_recipients,
                                                rules=self.rules, hostname=cfg.hostname,
                                                rng=random.Random(cfg.rules_seed))
        if isinstance(self.rules, RulesFile):
            self._rules_task = self._loop.create_task(self._poll_rules(self.rules))
        self.writer.start()
        self.worker.start()
        tls = server_context(cert, key)
        try:
            failed = await start_listeners(self.specs, handler, tls, hostname=cfg.hostname,
                                           credentials=credentials, max_size=cfg.max_size,
                                           idle_timeout=cfg.idle_timeout)
            if cfg.pop3_port:
                try:
                    # on_delete: a POP3 QUIT that deleted mail makes the UI re-read its list, as a verdict does
                    self.pop3 = await start_pop3(cfg.bind, cfg.pop3_port, cfg.db_path, tls, credentials,
                                                 cfg.hostname, on_delete=self._analysed)
                    self.pop3_error = None
                except OSError as exc:
                    self.pop3_error = (f"cannot listen on {cfg.bind}:{cfg.pop3_port} for pop3: {exc.strerror or exc} "
                                       "(choose another port with --pop3-port, or 0 to turn POP3 off)")
        except BaseException:
            await self.stop()
            raise
        errors = [spec.error for spec in failed if spec.error] + ([self.pop3_error] if self.pop3_error else [])
        if errors and not partial:
            await self.stop()
            raise OSError("; ".join(errors))
        return errors

    async def stop(self) -> None:
        if self._rules_task is not None:
            self._rules_task.cancel()
            self._rules_task = None
        if self.pop3 is not None:
            self.pop3.close()  # also ends its sessions, without UPDATE: nothing is deleted by a stopping lab
            await self.pop3.wait_closed()
            self.pop3 = None
        await stop_listeners(self.specs)
        if self.handler is not None:
            await self.handler.drain(5)  # attempt records and generated bounces on their way to the writer
        await self.writer.close()
        await asyncio.to_thread(self.worker.stop)

    def analyse_stored(self, store: Store, capture: Capture) -> Verdict:
        from lab.judging import Judge

        if self._judge is None:
            self._judge = Judge(self.config)
        verdict = self._judge.judge(capture, self.view, store)
        store.save_judged([(capture, verdict)])
        self._analysed([capture.id])
        return verdict

    def _analysed(self, ids: list[int]) -> None:
        """Ids the worker judged: tell the subscribers (the UI reads what it shows from the store)."""
        self.worker.judged_at = time.monotonic()
        for fn in self.subscribers:
            try:
                fn(ids)
            except Exception:
                log.exception("a verdict subscriber failed")


class EngineThread:
    """The engine on its own event loop in a daemon thread.

    A UI that is busy painting must never stall an SMTP client, so the TUI (and tests with blocking
    clients) run the listeners here rather than on their own loop.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="maillab-smtp", daemon=True)

    def start(self, partial: bool = True, timeout: float = 30) -> list[str]:
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self.engine.start(partial), self.loop).result(timeout)
        except BaseException:
            self._halt()
            raise

    def stop(self, timeout: float = 30) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.engine.stop(), self.loop).result(timeout)
        finally:
            self._halt()

    def _halt(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
