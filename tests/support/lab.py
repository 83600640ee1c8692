"""Provides RunningLab: a real lab on free loopback ports, on its own event-loop thread, for blocking clients."""

from __future__ import annotations

import time
from pathlib import Path

from lab.config import Config
from lab.core.model import Listener
from lab.engine import Engine, EngineThread
from lab.store import Store, Stored
from support import ZONES


class RunningLab:
    def __init__(self, data_dir: Path, **settings):
        self.config = Config(data_dir=data_dir, zones=[str(z) for z in ZONES], offline=True,
                             relay_port=0, submission_port=0, smtps_port=0, pop3_port=0, spam_filters="off",
                    analysis="thread")  # fast to start; the process mode is tested through `serve`
        self.config.update(settings, "test")
        self.engine = Engine(self.config)
        self.runner = EngineThread(self.engine)
        self.runner.start(partial=False)

    def port(self, listener: Listener | str) -> int:
        return next(s.port for s in self.engine.specs if s.listener == Listener(listener))

    def stop(self) -> None:
        self.runner.stop()

    def store(self) -> Store:
        return Store(self.config.db_path)

    def wait(self, message_id: int, timeout: float = 10) -> Stored:
        """The stored message once its verdict exists."""
        deadline = time.monotonic() + timeout
        store = self.store()
        try:
            while time.monotonic() < deadline:
                stored = store.get(message_id)
                if stored is not None and stored.verdict is not None:
                    return stored
                time.sleep(0.02)
        finally:
            store.close()
        raise AssertionError(f"message {message_id} was not analysed within {timeout}s")
