"""Fixtures that start real labs on free loopback ports."""

from __future__ import annotations

import pytest
from support.lab import RunningLab


@pytest.fixture
def lab(tmp_path):
    running = RunningLab(tmp_path / "data")
    yield running
    running.stop()


@pytest.fixture
def make_lab(tmp_path):
    """Start labs with settings; all are stopped at the end."""
    labs: list[RunningLab] = []

    def start(**settings) -> RunningLab:
        running = RunningLab(settings.pop("data_dir", tmp_path / "data"), **settings)
        labs.append(running)
        return running

    yield start
    for running in labs:
        try:
            running.stop()
        except Exception:
            pass
