"""Secure defaults: loopback binding (loud when not), private data files, no outbound connections while
judging or showing mail, exports only under the data directory, pruning with --max-messages."""

from __future__ import annotations

import os
import smtplib
import socket
import stat
import subprocess
import sys

import pytest
from support import GOOD_IP, capture, message
from support.client import send

from lab.config import Config, exposed_warning
from lab.core.analyse import analyse
from lab.core.mime import readable, tree


def test_default_bind_is_loopback_and_other_addresses_warn():
    assert Config().bind == "127.0.0.1"
    assert exposed_warning("127.0.0.1") is None and exposed_warning("::1") is None
    assert exposed_warning("localhost") is None
    assert "not loopback" in exposed_warning("0.0.0.0")


def test_serve_warns_loudly_on_a_public_bind(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--data-dir", str(tmp_path), "--offline",
                             "--bind", "0.0.0.0", "--relay-port", "0", "--submission-port", "0", "--smtps-port", "0",
                             "--pop3-port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env={**os.environ, "MAILLAB_CONFIG": os.devnull})
    try:
        line = b""
        while b"WARNING" not in line and b"listening" not in line:
            line = proc.stderr.readline()
            assert line, "serve exited early"
        assert b"WARNING: listening on 0.0.0.0, not loopback" in line
    finally:
        proc.terminate()
        proc.wait(10)


def test_data_files_are_private(lab):
    with smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="x.example.com") as s:
        send(s, message())
    data = lab.config.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in [*data.glob("maillab.db*"), data / "tls" / "key.pem"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert stat.S_IMODE((data / "tls").stat().st_mode) == 0o700


def test_judging_and_showing_mail_opens_no_connection(view):
    """Remote images and links in HTML are listed, never fetched; DNS goes through the view, offline here."""
    html = ('<p>Hi <img src="http://tracker.example.net/pixel.gif"> <a href="https://evil.example/x">x</a>'
            '<link rel="stylesheet" href="https://cdn.example/x.css"></p>')
    raw = message(body=html).replace(b"text/plain", b"text/html")
    attempts = []
    armed = [True]

    def hook(event, args):
        if armed[0] and event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
            attempts.append((event, args))

    sys.addaudithook(hook)
    verdict = analyse(capture(raw), view)
    shown = readable(raw)
    tree(raw)
    armed[0] = False  # audit hooks cannot be removed; disarm it
    assert attempts == []
    assert verdict.checks
    assert "https://evil.example/x" in shown.links
    assert any("tracker.example.net/pixel.gif (image, not loaded)" in link for link in shown.links)


def test_max_messages_prunes_the_oldest(make_lab):
    lab = make_lab(max_messages=3)
    with smtplib.SMTP("127.0.0.1", lab.port("relay"), local_hostname="x.example.com") as s:
        ids = [send(s, message(subject=f"n{i}")) for i in range(5)]
    store = lab.store()
    assert store.ids() == ids[-3:]
    store.close()


@pytest.mark.parametrize("filename", ["../../../../etc/passwd", "/etc/shadow", "..", "a/b\\c.txt", "\x1b[2J.pdf"])
async def test_attachment_names_never_choose_the_path(tmp_path, filename):
    from email.message import EmailMessage

    from support.ui import make_app, smtp_send, until

    from lab.ui.app import MaillabApp
    from lab.ui.widgets.detail_views import PartsView

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.net", "attachment"
    msg.set_content("see attached")
    msg.add_attachment(b"secret", maintype="application", subtype="octet-stream", filename=filename)
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    app: MaillabApp = make_app(tmp_path)
    async with app.run_test(size=(140, 44)) as pilot:
        await smtp_send(app, raw, ip=GOOD_IP)
        await until(pilot, lambda: app._shown is not None)
        await pilot.press("4")
        await pilot.pause(0.3)
        tree_widget = app.query_one(PartsView)
        leaf = next(n for n in tree_widget.root.children[-1:])
        tree_widget.move_cursor(leaf)
        await pilot.press("s")
        await pilot.pause(0.3)
    exports = tmp_path / "data" / "exports"
    saved = [p for p in exports.iterdir() if p.name != f"maillab-{app._shown.capture.id}.eml"]
    assert len(saved) == 1 and saved[0].parent == exports
    assert saved[0].read_bytes() == b"secret"
    assert "\x1b" not in saved[0].name and "/" not in saved[0].name[1:]
    assert not (tmp_path / "etc").exists()


def test_xclient_is_refused_from_a_non_loopback_peer(make_lab):
    addresses = [a for a in _local_addresses() if not a.startswith("127.")]
    if not addresses:
        pytest.skip("this machine has no non-loopback address to connect from")
    lab = make_lab(bind="0.0.0.0")
    with socket.create_connection((addresses[0], lab.port("relay")), timeout=5) as sock:
        sock.recv(1024)
        sock.sendall(b"EHLO x.example.com\r\n")
        ehlo = b""
        while b"250 " not in ehlo:
            ehlo += sock.recv(4096)
        assert b"XCLIENT" not in ehlo
        sock.sendall(b"XCLIENT ADDR=192.0.2.10\r\n")
        assert sock.recv(1024).startswith(b"550 5.7.0")


def _local_addresses() -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [a for a in out.split() if ":" not in a]
