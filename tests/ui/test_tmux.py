"""End to end: the real `maillab` command in tmux, a real terminal, while swaks sends it mail."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from support import ZONES, free_ports

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("swaks") is None,
                                reason="needs tmux and swaks (.ci/run installs both)")




def screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def wait_for(session: str, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen(session)
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; the screen was:\n{screen(session)}")


def test_the_lab_in_a_real_terminal(tmp_path):
    relay, submission, smtps = free_ports(3)
    session = f"maillab-test-{relay}"
    zones = " ".join(f"--zone {z}" for z in ZONES)
    command = (f"{sys.executable} -m lab --data-dir {tmp_path} --offline {zones} --client-ip 192.0.2.10 "
               f"--relay-port {relay} --submission-port {submission} --smtps-port {smtps} --pop3-port 0 "
               "--profile gmail-bulk")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "44",
                    f"env -u COLUMNS -u LINES MAILLAB_CONFIG=/dev/null TERM=xterm-256color {command}"], check=True)
    subprocess.run(["tmux", "set-option", "-t", session, "window-size", "manual"], capture_output=True)
    subprocess.run(["tmux", "resize-window", "-t", session, "-x", "140", "-y", "44"], capture_output=True)
    try:
        wait_for(session, "No mail yet")
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{submission}", "--tls", "--auth", "LOGIN",
                              "--auth-user", "app", "--auth-password", "pw", "--from", "alice@example.com",
                              "--to", "bob@example.net", "--header", "Subject: hello from swaks"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout
        text = wait_for(session, "hello from swaks")
        assert "submission" in text
        text = wait_for(session, "Would be rejected by Gmail (bulk): 550 5.7.30")  # bulk mail must be DKIM-signed
        assert "REJECTED" in text and "score" in text
        wait_for(session, "Provider rules: Gmail (bulk)")
        subprocess.run(["tmux", "send-keys", "-t", session, "7"], check=True)
        wait_for(session, "DNS records of example.com")
        subprocess.run(["tmux", "send-keys", "-t", session, "6"], check=True)
        wait_for(session, "C: STARTTLS")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("q did not quit the lab")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
