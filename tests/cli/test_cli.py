"""The `maillab` command as a user runs it: exit codes, JSON shape, terminal safety, serve/list/show."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys

import pytest
from support import BAD_IP, GOOD_IP, ZONES, free_ports, message, sign
from support.client import send, wait_listening

ZONE_ARGS = [arg for z in ZONES for arg in ("--zone", str(z))]


def maillab(*args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, input=input, timeout=60,
                          env={**os.environ, "MAILLAB_CONFIG": os.devnull, **(env or {})})


@pytest.fixture
def signed_eml(tmp_path):
    path = tmp_path / "good.eml"
    path.write_bytes(sign(message(subject="cli check")))
    return path


def test_check_passing_message_exits_0_with_json(signed_eml):
    out = maillab("check", str(signed_eml), *ZONE_ARGS, "--offline", "--client-ip", GOOD_IP,
                  "--helo", "mail.example.com", "--listener", "submission", "--tls", "--auth-user", "app", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= {"id", "received_at", "envelope", "transport", "headers", "verdict", "checks",
                        "authentication_results"}
    assert doc["envelope"]["mail_from"] == "alice@example.com"  # from the From header by default
    assert doc["envelope"]["client_ip"] == GOOD_IP
    assert doc["transport"]["auth"]["user"] == "app"
    assert doc["headers"]["subject"] == "cli check"
    by_id = {c["id"]: c for c in doc["checks"]}
    assert by_id["dkim.example.com.rsa2048"]["result"] == "pass"
    assert by_id["dmarc"]["result"] == "pass"
    assert {"id", "result", "level", "summary", "fix", "evidence"} <= set(by_id["spf.mailfrom"])
    assert doc["verdict"] in ("pass", "warn")
    assert "dmarc=pass" in doc["authentication_results"]


def test_check_spoofed_message_exits_1_and_explains(tmp_path):
    path = tmp_path / "spoof.eml"
    path.write_bytes(message(from_="CEO <ceo@example.com>"))
    out = maillab("check", str(path), *ZONE_ARGS, "--offline", "--client-ip", BAD_IP)
    assert out.returncode == 1
    text = out.stdout.decode()
    assert "DMARC fail under p=reject" in text and "Reject: 550 5.7.1" in text
    assert "fix:" in text


def test_check_reads_stdin(signed_eml):
    out = maillab("check", "-", *ZONE_ARGS, "--offline", "--client-ip", GOOD_IP, "--json",
                  input=signed_eml.read_bytes())
    assert out.returncode == 0 and json.loads(out.stdout)["headers"]["subject"] == "cli check"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["check", "/nonexistent/x.eml", "--offline"], "cannot read /nonexistent/x.eml"),
        (["check", "{eml}", "--offline", "--client-ip", "not-an-ip"], "is not an IP address"),
        (["check", "{eml}", "--offline", "--zone", "{badzone}"], "bad.zone:2"),
        (["check", "{eml}", "--offline", "--zone", "/nonexistent.zone"], "zone file /nonexistent.zone"),
        (["check"], "the following arguments are required"),
        (["show", "1", "--data-dir", "{empty}"], "no store at"),
        (["check", "{eml}", "--nameserver", "bad:port:x"], "is not IP[:PORT]"),
        (["serve", "--relay-port", "70000", "--data-dir", "{empty}"], "--relay-port 70000 is not a port number"),
        (["check", "{eml}", "--config", "{empty}/none.toml"], "none.toml does not exist"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, signed_eml, args, needle):
    bad = tmp_path / "bad.zone"
    bad.write_text("$ORIGIN example.com.\n@ NOSUCHTYPE x\n")
    args = [a.format(eml=signed_eml, badzone=bad, empty=tmp_path / "empty") for a in args]
    out = maillab(*args)
    assert out.returncode == 2
    err = out.stderr.decode().strip()
    assert needle in err, err
    assert "Traceback" not in err


def test_check_escapes_terminal_control_sequences(tmp_path):
    path = tmp_path / "hostile.eml"
    path.write_bytes(message(subject="\x1b]52;c;aGVsbG8=\x07 \x1b[2J owned \u202etxt.exe"))
    out = maillab("check", str(path), "--offline")
    assert b"\x1b" not in out.stdout and b"\x07" not in out.stdout
    assert "\u202e".encode() not in out.stdout
    assert "owned" in out.stdout.decode()




def test_serve_list_show_round_trip(tmp_path):
    relay, submission, smtps = free_ports(3)
    data = tmp_path / "data"
    common = ["--data-dir", str(data), *ZONE_ARGS, "--offline"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--json", *common, "--client-ip", GOOD_IP, "--relay-port", str(relay),
         "--submission-port", str(submission), "--smtps-port", str(smtps), "--pop3-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "MAILLAB_CONFIG": os.devnull})
    try:
        wait_listening(relay, proc)
        raw = sign(message(subject="round trip"))
        with smtplib.SMTP("127.0.0.1", relay, local_hostname="mail.example.com") as s:
            first = send(s, raw)
            second = send(s, message(subject="second"))
        lines = {line["id"]: line for line in (json.loads(proc.stdout.readline()) for _ in range(2))}
        assert set(lines) == {first, second}  # in the order the analysis workers finish, each with its id
        assert lines[first]["verdict"] in ("pass", "warn")
    finally:
        proc.terminate()
        proc.wait(10)
    assert b"listening relay 127.0.0.1" in proc.stderr.read()

    listed = json.loads(maillab("list", "--json", *common).stdout)
    assert [m["id"] for m in listed] == [second, first]  # newest first
    assert json.loads(maillab("list", "--json", "--limit", "1", *common).stdout)[0]["id"] == second
    assert maillab("show", str(first), "--raw", *common).stdout == raw
    shown = json.loads(maillab("show", str(first), "--json", *common).stdout)
    assert shown["transport"]["listener"] == "relay" and shown["envelope"]["client_ip"] == GOOD_IP
    assert any(entry[1] == ">" and entry[2].startswith("EHLO") for entry in shown["session"])
    text = maillab("show", str(first), *common).stdout.decode()
    assert "dkim.example.com.rsa2048" in text and "Authentication-Results:" in text
    missing = maillab("show", "999", *common)
    assert missing.returncode == 1 and b"no message 999" in missing.stderr


def test_serve_on_a_busy_port_exits_2_naming_the_port(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        out = maillab("serve", "--data-dir", str(tmp_path), "--offline", "--relay-port", str(port),
                      "--submission-port", "0", "--smtps-port", "0", "--pop3-port", "0")
    finally:
        busy.close()
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} for relay" in out.stderr.decode()


def test_check_uses_the_configured_hostname_as_authserv_id(tmp_path, signed_eml):
    cfg = tmp_path / "config.toml"
    cfg.write_text('hostname = "lab.myapp.test"\noffline = true\n')
    out = maillab("check", str(signed_eml), "--config", str(cfg), "--json")
    assert json.loads(out.stdout)["authentication_results"].startswith("lab.myapp.test; ")


def test_spf_fail_under_a_dmarc_pass_is_a_warning_so_check_exits_0(signed_eml):
    out = maillab("check", str(signed_eml), *ZONE_ARGS, "--offline", "--client-ip", BAD_IP, "--json")
    doc = json.loads(out.stdout)
    by_id = {c["id"]: c for c in doc["checks"]}
    assert (by_id["spf.mailfrom"]["result"], by_id["spf.mailfrom"]["level"]) == ("fail", "warn")
    assert "DMARC still passes" in by_id["spf.mailfrom"]["summary"]
    assert by_id["dmarc"]["result"] == "pass"
    assert out.returncode == 0


def test_check_judges_several_files_in_one_run_and_exits_with_the_worst(tmp_path, signed_eml):
    spoof = tmp_path / "spoof.eml"
    spoof.write_bytes(message(from_="CEO <ceo@example.com>", subject="spoof"))
    out = maillab("check", str(signed_eml), str(spoof), *ZONE_ARGS, "--offline", "--client-ip", BAD_IP, "--json")
    assert out.returncode == 1, out.stderr  # one of them fails (the spoof: no DKIM, SPF fails for BAD_IP)
    docs = json.loads(out.stdout)
    assert [d["file"] for d in docs] == [str(signed_eml), str(spoof)]
    assert [d["headers"]["subject"] for d in docs] == ["cli check", "spoof"]
    assert docs[0]["verdict"] != "fail" and docs[1]["verdict"] == "fail"

    out = maillab("check", str(signed_eml), str(tmp_path / "missing.eml"), *ZONE_ARGS, "--offline",
                  "--client-ip", GOOD_IP)
    assert out.returncode == 2  # unreadable: a usage problem, and the readable one is still judged
    assert b"cannot read" in out.stderr and b"missing.eml" in out.stderr
    assert f"== {signed_eml}".encode() in out.stdout and b"DMARC" in out.stdout

    assert maillab("check", "-", "-", "--offline").returncode == 2  # stdin can be read once
