"""Snapshot tests of the lab's screens at a fixed size: the main screen with sample mail, then each tab.

The store is filled before the app starts with fixture messages at fixed times, judged through the
fixture zones, so every run draws the same screen. The listeners use fixed ports because the status
line shows them; if any is taken on this machine the snapshots are skipped (the Pilot tests still run).

The provider-profile snapshots judge one newsletter (tests/ui/fixtures/newsletter-org.eml: SPF softfail
from an unlisted IP, a DKIM signature whose key is not published beside one that verifies, one-click
unsubscribe not covered by DKIM) under each profile, as `--profile` would: Gmail bulk and Outlook.com
reject it, Yahoo sends it to spam, Gmail delivers it, and without a profile the lab's own disposition leads.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import BAD_IP, FIXTURES, GOOD_IP, ZONES

from lab.config import Config
from lab.core.analyse import analyse
from lab.core.context import Options
from lab.core.dnsview import LayeredView
from lab.core.model import Attempt, Capture, Client, Envelope, Listener, Transport
from lab.core.profiles import get_profile
from lab.resolver import load_zones
from lab.store import Store
from lab.ui.app import MaillabApp

PORTS = (47525, 47587, 47465)
SIZE = (130, 42)
TALL = (120, 48)
NARROW = (80, 24)
NEWSLETTER = Path(__file__).parent / "fixtures" / "newsletter-org.eml"
RECEIVED = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)


def _ports_free() -> bool:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


pytestmark = pytest.mark.skipif(not _ports_free(), reason=f"snapshot ports {PORTS} are in use on this machine")


def _fill(data_dir: Path) -> None:
    view = LayeredView(load_zones(ZONES))
    store = Store(data_dir / "maillab.db")
    messages = [
        ("welcome.eml", "orders@example.com", Transport(Listener.SUBMISSION, 587, "TLSv1.3", "TLS_AES_256_GCM_SHA384",
                                                        "PLAIN", "shop-app"), GOOD_IP),
        ("spoof.eml", "ceo@example.com", Transport(Listener.RELAY, 25), "203.0.113.5"),
        ("hostile.eml", "alerts@example.org", Transport(Listener.RELAY, 25), "198.51.100.9"),
    ]
    for n, (name, mail_from, transport, ip) in enumerate(messages):
        capture = Capture((FIXTURES / "messages" / name).read_bytes(),
                          Envelope(mail_from, ("bob@example.net",), "mail.example.com"), transport,
                          Client(ip=ip, peer_ip="127.0.0.1", source="xclient"),
                          received_at=RECEIVED.replace(second=5 + n))
        session = [[0.0, "<", "220 maillab.localhost maillab ESMTP"], [0.001, ">", "EHLO mail.example.com"]]
        mid = store.add(capture, session)
        store.save_verdict(mid, analyse(capture, view, authserv_id="maillab.localhost"))
    store.close()


def _fill_newsletter(data_dir: Path, profile: str) -> None:
    """The newsletter as the submission listener took it (TLS, AUTH) from 203.0.113.5, judged under `profile`."""
    view = LayeredView(load_zones(ZONES))
    store = Store(data_dir / "maillab.db")
    capture = Capture(NEWSLETTER.read_bytes(), Envelope("news@example.org", ("bob@example.net",), "mail.example.com"),
                      Transport(Listener.SUBMISSION, 587, "TLSv1.3", "TLS_AES_256_GCM_SHA384", "PLAIN", "news"),
                      Client(ip=BAD_IP, peer_ip="127.0.0.1", source="xclient"), received_at=RECEIVED)
    mid = store.add(capture, [[0.0, "<", "220 maillab.localhost maillab ESMTP"]])
    store.save_verdict(mid, analyse(capture, view, authserv_id="maillab.localhost",
                                    options=Options(profile=get_profile(profile))))
    store.close()


def _fill_attempts(data_dir: Path) -> None:
    """The three messages, the first after two greylisted tries, then a hard bounce tried twice (wrongly)."""
    store = Store(data_dir / "maillab.db")
    for n, seconds in enumerate((-300, -60)):
        store.add_attempt(Attempt(at=RECEIVED - timedelta(seconds=-seconds), stage="rcpt", listener=Listener.SUBMISSION,
                                  reply="451 4.7.1 <bob@example.net>: Recipient address rejected: Greylisted",
                                  mail_from="orders@example.com", rcpt="bob@example.net", txn=f"g{n}",
                                  rule="rule #3 'greylist@: greylisting' (built-in)"))
    store.close()
    _fill(data_dir)
    store = Store(data_dir / "maillab.db")
    welcome = store.get(1).capture  # judged again with its retry history, as the lab judges mail
    store.save_verdict(1, analyse(welcome, LayeredView(load_zones(ZONES)), authserv_id="maillab.localhost",
                                  options=Options(attempts=store.attempt_group(welcome))))
    for n, seconds in enumerate((30, 30.4)):
        store.add_attempt(Attempt(at=RECEIVED + timedelta(seconds=seconds), stage="rcpt",
                                  reply="550 5.1.1 <bounce-hard@example.net>: Recipient address rejected: User unknown",
                                  mail_from="orders@example.com", rcpt="bounce-hard@example.net", txn=f"b{n}",
                                  rule="rule #2 'bounce-hard@: unknown user' (built-in)"))
    store.close()


def _app(tmp_path: Path, fill=_fill) -> MaillabApp:
    data = tmp_path / "data"
    data.mkdir()
    fill(data)
    config = Config(data_dir=data, zones=[str(z) for z in ZONES], offline=True, relay_port=PORTS[0],
                    submission_port=PORTS[1], smtps_port=PORTS[2],
                    pop3_port=0)  # POP3 is not on the status line; a busy 2110 would be a notification
    return MaillabApp(config)


async def _settle(pilot) -> None:
    await pilot.pause(0.4)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)


@pytest.mark.parametrize(("name", "keys"), [
    ("main_verdict_hostile", []),
    ("verdict_spoof", ["j"]),
    ("verdict_welcome", ["j", "j"]),
    ("headers", ["j", "j", "2"]),
    ("text", ["j", "j", "3"]),
    ("parts", ["j", "j", "4"]),
    ("raw", ["5"]),
    ("session", ["j", "j", "6"]),
    ("filter_fail", ["slash", *"verdict:fail", "enter"]),
])
def test_screens(snap_compare, tmp_path, name, keys):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        for key in keys:
            await pilot.press(key)
            await _settle(pilot)

    assert snap_compare(_app(tmp_path), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize(("profile", "size"), [
    pytest.param("gmail-bulk", TALL, id="gmail-bulk"),
    pytest.param("gmail", TALL, id="gmail"),
    pytest.param("yahoo", TALL, id="yahoo"),
    pytest.param("outlook", TALL, id="outlook"),
    pytest.param("none", TALL, id="none"),
    pytest.param("gmail-bulk", NARROW, id="gmail-bulk-80x24"),
])
def test_verdict_per_profile(snap_compare, tmp_path, profile, size):
    async def run_before(pilot) -> None:
        await _settle(pilot)

    app = _app(tmp_path, lambda data: _fill_newsletter(data, profile))
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [pytest.param(TALL, id="120x48"), pytest.param(NARROW, id="80x24")])
def test_dns_tab(snap_compare, tmp_path, size):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        await pilot.press("7")
        await _settle(pilot)

    app = _app(tmp_path, lambda data: _fill_newsletter(data, "gmail-bulk"))
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize(("keys", "size"), [
    pytest.param([], SIZE, id="group"),
    pytest.param([], NARROW, id="group-80x24"),
    pytest.param(["G"], SIZE, id="accepted-after-tries"),
])
def test_refused_attempts(snap_compare, tmp_path, keys, size):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        for key in keys:
            await pilot.press(key)
            await _settle(pilot)

    assert snap_compare(_app(tmp_path, _fill_attempts), terminal_size=size, run_before=run_before)
