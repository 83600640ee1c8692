"""Knot DNS and rspamd, started once for the interop session and stopped by their PIDs afterwards."""

from __future__ import annotations

import os

import pytest
from support.rspamd import Knot, Rspamd, available


@pytest.fixture(scope="session")
def knot(tmp_path_factory):
    why = available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the interop suite must run in CI: {why}")
        pytest.skip(why)
    server = Knot.start(tmp_path_factory.mktemp("knot"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rspamd(knot, tmp_path_factory):
    server = Rspamd.start(tmp_path_factory.mktemp("rspamd"), knot.address)
    yield server
    server.stop()
