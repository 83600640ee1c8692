"""`maillab wait`: polling the store for a matching, judged message, from a real lab and from a bare store."""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import subprocess
import sys
import threading
import time

import pytest
from support import GOOD_IP, ZONES, capture, free_ports, message, sign
from support.client import client_tls, send, wait_listening

from lab import cli, waiting
from lab.core.analyse import analyse
from lab.store import Store
from lab.waiting import Match, Progress, wait_for


def later(delay: float, fn) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), fn()), daemon=True)
    t.start()
    return t


@pytest.fixture
def db(tmp_path):
    return tmp_path / "data" / "maillab.db"


def add(db, raw: bytes, view=None, **kw) -> int:
    s = Store(db)
    try:
        c = capture(raw, **kw)
        mid = s.add(c)
        if view is not None:
            s.save_verdict(mid, analyse(c, view))
        return mid
    finally:
        s.close()


def judge(db, mid: int, view) -> None:
    s = Store(db)
    try:
        s.save_verdict(mid, analyse(s.get(mid).capture, view))
    finally:
        s.close()


def test_waits_for_mail_sent_to_a_running_lab_and_returns_it_judged(lab):
    def deliver():
        with smtplib.SMTP("127.0.0.1", lab.port("submission")) as s:
            s.starttls(context=client_tls())
            s.login("app", "x")
            send(s, sign(message(subject="Welcome aboard")), rcpt=("new.user@example.net",))

    later(0.3, deliver)
    start = time.monotonic()
    found = wait_for(lab.config.db_path, to="new.user@example.net", subject="^Welcome", timeout=10)
    assert found is not None and time.monotonic() - start < 5
    assert found.verdict is not None and found.verdict.headers["subject"] == "Welcome aboard"
    assert found.capture.envelope.rcpt_to == ("new.user@example.net",)


def test_by_default_only_mail_arriving_after_the_wait_counts(db, view):
    old = add(db, message(subject="old"), view)
    assert wait_for(db, timeout=0.3) is None
    assert wait_for(db, since_id=0, timeout=0.3).capture.id == old  # --any
    assert wait_for(db, since_id=old, timeout=0.3) is None           # --since ID
    later(0.2, lambda: add(db, message(subject="new"), view))
    assert wait_for(db, timeout=5).verdict.headers["subject"] == "new"


def test_a_match_waits_for_its_verdict_unless_told_not_to(db, view):
    mid = add(db, message(subject="slow"))  # stored, not judged yet
    assert wait_for(db, since_id=0, timeout=0.3) is None
    stored = wait_for(db, since_id=0, timeout=0.3, analysed=False)
    assert stored.capture.id == mid and stored.verdict is None
    later(0.3, lambda: judge(db, mid, view))
    start = time.monotonic()
    stored = wait_for(db, since_id=0, timeout=5)
    assert stored.verdict is not None and time.monotonic() - start >= 0.25


def test_a_wait_may_start_before_the_lab_has_created_its_store(db, view):
    assert not db.exists()
    later(0.3, lambda: add(db, message(subject="first ever"), view))
    assert wait_for(db, timeout=5).verdict.headers["subject"] == "first ever"


def test_criteria_envelope_recipient_sender_subject_and_patterns(db, view):
    a = add(db, message(from_="Shop <orders@example.com>", to="x@example.net", subject="Order 17"), view,
            mail_from="bounce@example.com")
    b = add(db, message(from_="Alice <alice@example.com>", subject="Hello"), view)
    assert wait_for(db, to="bob@example.net", since_id=0, timeout=0.2).capture.id == a  # RCPT TO, not To:
    assert wait_for(db, to="x@example.net", since_id=0, timeout=0.2) is None
    assert wait_for(db, to="BOB@Example.NET", since_id=a, timeout=0.2).capture.id == b
    assert wait_for(db, to="*@example.net", since_id=a, timeout=0.2).capture.id == b
    assert wait_for(db, from_="orders@example.com", since_id=0, timeout=0.2).capture.id == a  # From header
    assert wait_for(db, from_="bounce@example.com", since_id=0, timeout=0.2).capture.id == a  # MAIL FROM
    assert wait_for(db, from_="alice@example.com", since_id=0, timeout=0.2).capture.id == b
    assert wait_for(db, subject=r"Order \d+$", since_id=0, timeout=0.2).capture.id == a
    assert wait_for(db, subject="order", since_id=0, timeout=0.2) is None  # case matters unless (?i)
    assert wait_for(db, subject="(?i)order", since_id=0, timeout=0.2).capture.id == a
    assert wait_for(db, to="bob@example.net", subject="Hello", since_id=0, timeout=0.2).capture.id == b
    assert wait_for(db, since_id=0, skip={a}, timeout=0.2).capture.id == b
    assert wait_for(db, to="b?b@*.net", since_id=a, timeout=0.2).capture.id == b
    assert wait_for(db, to="*@example", since_id=0, timeout=0.2) is None  # a pattern matches whole addresses


def test_square_brackets_in_an_address_are_literal(db, view):
    s = Store(db)
    try:
        c = capture(message())
        c = type(c)(raw=c.raw, envelope=type(c.envelope)(rcpt_to=("postmaster@[192.0.2.1]",)))
        s.save_verdict(s.add(c), analyse(c, view))
    finally:
        s.close()
    assert wait_for(db, to="postmaster@[192.0.2.1]", since_id=0, timeout=0.2) is not None
    assert wait_for(db, to="postmaster@[192.0.2.1]*", since_id=0, timeout=0.2) is not None
    assert wait_for(db, to="postmaster@1", since_id=0, timeout=0.2) is None


def test_imported_mail_without_an_envelope_matches_on_to_and_cc(db, view):
    raw = message(to="Carol <carol@example.net>", extra="Cc: dave@example.net\r\n")
    s = Store(db)
    try:
        c = capture(raw)
        c = type(c)(raw=raw, envelope=type(c.envelope)(mail_from=""), received_at=c.received_at)
        s.save_verdict(s.add(c), analyse(c, view))
    finally:
        s.close()
    assert wait_for(db, to="dave@example.net", since_id=0, timeout=0.2) is not None
    assert wait_for(db, to="erin@example.net", since_id=0, timeout=0.2) is None


def test_progress_names_what_arrived_and_did_not_match(db, view):
    add(db, message(subject="not it"), view)
    progress = Progress()
    assert wait_for(db, to="nobody@example.net", since_id=0, timeout=0.2, progress=progress) is None
    assert progress.seen == 1 and progress.missed[0].subject == "not it"


def test_a_hostile_subject_is_matched_on_a_bounded_prefix(db, view):
    add(db, message(subject="a" * 50_000 + "TAIL"), view)
    start = time.monotonic()
    assert wait_for(db, subject="TAIL", since_id=0, timeout=0.2) is None  # beyond the first 10,000 characters
    assert wait_for(db, subject="^a{100}", since_id=0, timeout=0.2) is not None
    assert time.monotonic() - start < 2


def test_a_bad_regular_expression_is_a_usage_error():
    with pytest.raises(ValueError, match="is not a regular expression"):
        Match.of(subject="(unclosed")


# ------------------------------------------------------------------------------------------------ the command


def parse(argv: list[str]):
    p = argparse.ArgumentParser(prog="maillab")
    sub = p.add_subparsers(dest="command")
    waiting.add_parser(sub, cli._common)
    args = p.parse_args(argv)
    return args, cli.config_from(args)


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch):
    monkeypatch.setenv("MAILLAB_CONFIG", os.devnull)


def test_wait_command_prints_json_and_exits_0(db, view, capsys):
    add(db, sign(message(subject="ci mail")), view, ip=GOOD_IP)
    args, config = parse(["wait", "--any", "--subject", "ci", "--json", "--data-dir", str(db.parent)])
    assert waiting.run(args, config) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["headers"]["subject"] == "ci mail" and doc["verdict"] in ("pass", "warn") and doc["checks"]


def test_wait_command_prints_one_line_by_default(db, view, capsys):
    mid = add(db, message(subject="line"), view)
    args, config = parse(["wait", "--since", str(mid - 1), "--data-dir", str(db.parent)])
    assert waiting.run(args, config) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"#{mid} ") and '"line"' in out and out.count("\n") == 1


def test_wait_command_times_out_with_exit_1_and_says_what_came(db, view, capsys):
    add(db, message(subject="wrong \x1b[31m one"), view)
    args, config = parse(["wait", "--any", "--to", "right@example.net", "--timeout", "0.3",
                          "--data-dir", str(db.parent)])
    assert waiting.run(args, config) == 1
    err = capsys.readouterr().err
    assert "no message to right@example.net within 0.3s" in err
    assert "1 other message(s) arrived" in err and "wrong ␛[31m one" in err and "\x1b" not in err


def test_wait_command_without_a_store_says_so(tmp_path, capsys):
    args, config = parse(["wait", "--timeout", "0.1", "--data-dir", str(tmp_path / "none")])
    assert waiting.run(args, config) == 1
    assert "is the lab running?" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "needle"), [
    (["--subject", "(oops"], "is not a regular expression"),
    (["--timeout", "-1"], "is negative"),
])
def test_wait_command_usage_errors_exit_2(tmp_path, capsys, argv, needle):
    args, config = parse(["wait", *argv, "--data-dir", str(tmp_path)])
    assert waiting.run(args, config) == 2
    assert needle in capsys.readouterr().err


def test_since_and_any_exclude_each_other():
    with pytest.raises(SystemExit):
        parse(["wait", "--since", "3", "--any"])


# ------------------------------------------------------------------------------------------------ end to end


def _maillab(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MAILLAB_CONFIG": os.devnull}, **kw)


@pytest.mark.slow
def test_shell_ci_flow_serve_then_wait_in_another_process(tmp_path):
    """What a CI script in any language does: `maillab serve &`, `maillab wait --to ... --json`, then send."""
    wired = subprocess.run([sys.executable, "-m", "lab", "wait", "--help"], capture_output=True, timeout=60)
    if wired.returncode != 0:
        pytest.skip("`maillab wait` is not wired into lab.cli yet")
    relay, submission, smtps = free_ports(3)
    common = ["--data-dir", str(tmp_path / "data"), *[a for z in ZONES for a in ("--zone", str(z))], "--offline"]
    serve = _maillab("serve", *common, "--client-ip", GOOD_IP, "--relay-port", str(relay),
                     "--submission-port", str(submission), "--smtps-port", str(smtps), "--pop3-port", "0")
    try:
        waiter = _maillab("wait", "--to", "ci@example.net", "--subject", "^Build", "--timeout", "30", "--json",
                          *common)
        wait_listening(relay, serve)
        with smtplib.SMTP("127.0.0.1", relay, local_hostname="mail.example.com") as s:
            send(s, message(subject="Unrelated"), rcpt=("other@example.net",))
            mid = send(s, sign(message(subject="Build 42 passed")), rcpt=("ci@example.net",))
        out, err = waiter.communicate(timeout=40)
        assert waiter.returncode == 0, err.decode()
        doc = json.loads(out)
        assert doc["id"] == mid and doc["verdict"] is not None and doc["analysed_at"]
        late = _maillab("wait", "--to", "ci@example.net", "--timeout", "0.5", *common)
        _, err = late.communicate(timeout=30)
        assert late.returncode == 1 and b"no message to ci@example.net within 0.5s" in err
    finally:
        serve.terminate()
        serve.wait(10)
