"""swaks, the SMTP swiss-army knife from Debian, against each of the three listeners."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from support import GOOD_IP

pytestmark = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (.ci/run installs it)")


def swaks(*args: str) -> str:
    out = subprocess.run(["swaks", "--timeout", "10", *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def queued(output: str) -> int:
    return int(re.search(r"queued as (\d+)", output).group(1))


def test_swaks_relay_with_xclient(lab):
    out = swaks("--server", f"127.0.0.1:{lab.port('relay')}", "--from", "alice@example.com", "--to",
                "bob@example.net", "--helo", "mail.example.com", "--xclient-addr", GOOD_IP,
                "--xclient-name", "mail.example.com")
    stored = lab.wait(queued(out))
    assert stored.capture.client.ip == GOOD_IP
    results = {c.id: c.result for c in stored.verdict.checks}
    assert results["spf.mailfrom"] == "pass"
    assert results["dmarc"] == "pass"  # SPF aligned; swaks does not sign


def test_swaks_submission_starttls_auth_login(lab):
    out = swaks("--server", f"127.0.0.1:{lab.port('submission')}", "-tls", "--auth", "LOGIN", "--auth-user",
                "app@example.com", "--auth-password", "app-password", "--from", "app@example.com",
                "--to", "user@example.net")
    t = lab.wait(queued(out)).capture.transport
    assert (t.listener.value, t.auth_mechanism, t.auth_user) == ("submission", "LOGIN", "app@example.com")
    assert t.tls_version is not None


def test_swaks_smtps_tls_on_connect_cram_md5(lab):
    out = swaks("--server", f"127.0.0.1:{lab.port('smtps')}", "--tls-on-connect", "--auth", "CRAM-MD5",
                "--auth-user", "app", "--auth-password", "pw", "--from", "app@example.com", "--to", "u@example.net")
    t = lab.wait(queued(out)).capture.transport
    assert (t.listener.value, t.auth_mechanism) == ("smtps", "CRAM-MD5")


def test_swaks_submission_without_tls_is_refused(lab):
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{lab.port('submission')}", "--from", "a@example.com",
                          "--to", "b@example.net", "--timeout", "10"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "530" in out.stdout
