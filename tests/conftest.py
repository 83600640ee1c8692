"""Shared fixtures: offline DNS from fixtures/zones and a guard that fails any real DNS lookup.

Every test runs offline. Any attempt to use the system resolver fails loudly, because this sandbox
answers NXDOMAIN for unknown names, which would silently turn checks into "none".
"""

from __future__ import annotations

import dns.resolver
import pytest
from support import BAD_IP, GOOD_IP, ZONES, b64, capture, key, message, sign  # noqa: F401 - re-exported
from support.lab import RunningLab

from lab.core.dnsview import LayeredView
from lab.resolver import load_zones


class _NoRealDNS(dns.resolver.Resolver):
    def __init__(self, *args, **kwargs):
        super().__init__(configure=False)

    def resolve(self, *args, **kwargs):
        raise AssertionError(f"a test tried real DNS: {args[:2]}")


@pytest.fixture(autouse=True, scope="session")
def _no_real_dns():
    dns.resolver.default_resolver = _NoRealDNS()
    yield


@pytest.fixture(scope="session")
def view() -> LayeredView:
    return LayeredView(load_zones(ZONES))


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
