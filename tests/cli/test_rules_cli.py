"""`--rules` and `list --attempts` as a user runs them: `maillab serve` in a real process (its writer and
analysis in child processes), a reload reported on stderr, and usage errors that exit 2."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import time

import pytest
from support import ZONES, free_ports, message
from support.client import wait_listening

from lab.cli import UsageError, config_from, main, parser
from lab.config import load

ZONE_ARGS = [arg for z in ZONES for arg in ("--zone", str(z))]
ENV = {**os.environ, "MAILLAB_CONFIG": os.devnull}


def maillab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, timeout=60, env=ENV)


def test_serve_with_a_broken_rules_file_exits_2_naming_the_rule_and_key(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "typo"\nrcpt = "x@example.net"\nrepyl = "550 5.1.1 no"\n')
    out = maillab("serve", "--rules", str(rules), "--data-dir", str(tmp_path / "d"), "--offline",
                  "--relay-port", "0", "--submission-port", "0", "--smtps-port", "0", "--pop3-port", "0")
    assert out.returncode == 2
    err = out.stderr.decode()
    assert f"{rules}: [[rule]] #1 ('typo'): repyl: unknown key (did you mean 'reply'?)" in err
    assert err.count("\n") == 1


def test_rules_in_the_config_file_are_relative_to_it_and_the_flag_wins(tmp_path):
    cfg = tmp_path / "conf" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text('rules = "my-rules.toml"\nrules_seed = 7\ngreylist_delay = 2\n')
    c = load(cfg)
    assert (c.rules, c.rules_seed, c.greylist_delay) == (str(tmp_path / "conf" / "my-rules.toml"), 7, 2)
    c = config_from(parser().parse_args(["list", "--config", str(cfg), "--rules", "other.toml"]))
    assert c.rules == "other.toml"
    cfg.write_text('greylist_delay = "soon"\n')
    with pytest.raises(UsageError, match="greylist_delay"):
        config_from(parser().parse_args(["list", "--config", str(cfg)]))


def test_list_attempts_with_none_recorded(tmp_path, capsys):
    from lab.store import Store

    Store(tmp_path / "maillab.db").close()
    assert main(["list", "--attempts", "--data-dir", str(tmp_path)]) == 0
    assert "no refused attempts recorded" in capsys.readouterr().err
    assert main(["list", "--attempts", "--json", "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_serve_applies_rules_records_attempts_through_the_writer_process_and_reports_a_broken_reload(tmp_path):
    relay, submission, smtps = free_ports(3)
    data = tmp_path / "data"
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "gone"\nrcpt = "gone@example.net"\nreply = "550 5.1.1 <{rcpt}>: gone"\n')
    common = ["--data-dir", str(data), *ZONE_ARGS, "--offline"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", *common, "--rules", str(rules), "--relay-port", str(relay),
         "--submission-port", str(submission), "--smtps-port", str(smtps), "--pop3-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        wait_listening(relay, proc)
        with smtplib.SMTP("127.0.0.1", relay, local_hostname="mail.example.com") as s:
            s.ehlo()
            s.mail("app@example.com")
            assert s.rcpt("gone@example.net") == (550, b"5.1.1 <gone@example.net>: gone")
            assert s.rcpt("bounce-soft@example.net")[0] == 452  # the built-in local parts come after the file's
            assert s.rcpt("bob@example.net")[0] == 250
            assert s.rcpt("bounce-hard+dsn@example.net")[0] == 250
            assert s.data(message())[0] == 250
        rules.write_text("[[rule]\n")  # a broken edit: reported, and the old rules stay
        time.sleep(2.5)
        with smtplib.SMTP("127.0.0.1", relay, local_hostname="mail.example.com") as s:
            s.ehlo()
            s.mail("app@example.com")
            assert s.rcpt("gone@example.net")[0] == 550
    finally:
        proc.terminate()
        proc.wait(15)
    err = proc.stderr.read().decode()
    assert f"maillab: rules {rules} (re-read when it changes)" in err
    assert f"maillab: ERROR: rules: {rules}: not valid TOML" in err and "still using the rules loaded before" in err

    groups = json.loads(maillab("list", "--attempts", "--json", *common).stdout)
    assert sorted((g["rcpt"], len(g["attempts"])) for g in groups) == [
        ("bounce-hard+dsn@example.net", 1), ("bounce-soft@example.net", 1), ("gone@example.net", 2)]
    gone = next(g for g in groups if g["rcpt"] == "gone@example.net")
    assert {c["id"]: c["level"] for c in gone["checks"]}["retry.after_permanent"] == "fail"
    first = gone["attempts"][0]
    assert first["rule"] == f"rule #1 'gone' ({rules})" and first["message"] is not None
    assert ["gone@example.net", "550 5.1.1 <gone@example.net>: gone"] in first["envelope"]["recipients"]
    listed = json.loads(maillab("list", "--json", *common).stdout)
    (dsn,) = [m for m in listed if m["transport"]["listener"] == "lab"]  # the bounce, stored by the writer process
    assert dsn["envelope"]["rcpt_to"] == ["app@example.com"] and dsn["envelope"]["mail_from"] == ""
    assert dsn["headers"]["subject"] == "Undelivered Mail Returned to Sender"
    text = maillab("list", "--attempts", *common).stdout.decode()
    assert "MAIL FROM:<app@example.com> -> gone@example.net: 2 attempts, not delivered" in text
    assert "retry.after_permanent: Tried again to gone@example.net after a permanent failure" in text
