"""Export to Maildir and mbox, import from .eml, directories, Maildir and mbox: exact bytes both ways.

The subcommands are driven through a parser built from lab.cli's common options plus lab.mailio's
own `add_parsers`, which is how lab.cli wires them.
"""

from __future__ import annotations

import argparse
import io
import json
import mailbox
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from support import BAD_IP, GOOD_IP, ZONES, capture, message, sign

from lab import cli, mailio
from lab.analyser import build_lab_view
from lab.config import Config
from lab.core.analyse import analyse
from lab.core.model import Listener
from lab.mailio import MailIOError, export_maildir, export_mbox, import_paths, read_mbox, read_sources
from lab.store import Store

ZONE_ARGS = [arg for z in ZONES for arg in ("--zone", str(z))]

# Bytes an exporter must not touch: From_ lines (quoted and not), bare LF and CR, NUL, 8-bit, no final newline.
TRICKY = [
    message(subject="plain"),
    message(subject="from lines", body="Hi,\r\nFrom here on\r\n>From quoted\r\n>>From twice\r\n\r\nFrom x\r\n"),
    b"From: a@example.com\nSubject: LF only\n\nFrom the LF world\n\n\n",
    b"From: a@example.com\r\nSubject: mixed\r\n\r\nbare\nlf and bare\rcr and \x00 nul and \xff\xfe 8-bit\r\n",
    b"Subject: ends without newline\r\n\r\nlast line",
    b"Subject: blank lines at the end\r\n\r\nbody\r\n\r\n\r\n",
]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data" / "maillab.db")
    yield s
    s.close()


def fill(store: Store, raws: list[bytes]) -> list[int]:
    return [store.add(capture(raw)) for raw in raws]


def regular_files(path):
    return sorted(p for p in path.iterdir() if p.is_file())


# ------------------------------------------------------------------------------------------------ Maildir


def test_maildir_export_is_byte_exact_owner_only_and_names_carry_the_id(store, tmp_path):
    ids = fill(store, TRICKY)
    dest = tmp_path / "out" / "Maildir"
    assert export_maildir(store, dest) == len(TRICKY)
    assert {p.name for p in dest.iterdir()} == {"cur", "new", "tmp"}
    assert list((dest / "tmp").iterdir()) == [] and list((dest / "cur").iterdir()) == []
    files = regular_files(dest / "new")
    by_id = {int(f.name.split("_maillab-")[1].split(".")[0]): f for f in files}
    assert sorted(by_id) == ids
    for mid, raw in zip(ids, TRICKY, strict=True):
        assert by_id[mid].read_bytes() == raw
        assert stat.S_IMODE(by_id[mid].stat().st_mode) == 0o600
        assert ":" not in by_id[mid].name and "/" not in by_id[mid].name


def test_maildir_export_of_chosen_ids_twice_gives_unique_names_and_stdlib_reads_it(store, tmp_path):
    ids = fill(store, TRICKY[:3])
    dest = tmp_path / "md"
    assert export_maildir(store, dest, ids=[ids[2], 999]) == 1  # a missing id is skipped
    assert export_maildir(store, dest, ids=[ids[2]]) == 1
    files = regular_files(dest / "new")
    assert len(files) == 2 and files[0].name != files[1].name
    assert all(f.read_bytes() == TRICKY[2] for f in files)
    assert len(mailbox.Maildir(dest, create=False)) == 2


def test_maildir_export_refuses_a_directory_that_is_not_a_maildir(store, tmp_path):
    fill(store, TRICKY[:1])
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(MailIOError, match="neither empty nor a Maildir"):
        export_maildir(store, home)
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(MailIOError, match="not a directory"):
        export_maildir(store, afile)


def test_maildir_export_never_follows_a_symlinked_subdirectory(store, tmp_path):
    fill(store, TRICKY[:1])
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "md"
    for sub in ("cur", "tmp"):
        (dest / sub).mkdir(parents=True)
    (dest / "new").symlink_to(outside)
    with pytest.raises(MailIOError, match="symlink"):
        export_maildir(store, dest)
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------------------------------ mbox


def test_mbox_export_quotes_from_lines_mboxrd_and_import_gives_the_same_bytes(store, tmp_path):
    fill(store, TRICKY)
    path = tmp_path / "out.mbox"
    assert export_mbox(store, path) == len(TRICKY)
    data = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data.startswith(b"From alice@example.com ")
    assert b"\r\n>From here on\r\n>>From quoted\r\n>>>From twice\r\n" in data
    assert b"\n>From the LF world\n" in data
    with path.open("rb") as f:
        back = [found.raw for found in read_mbox(f, "out.mbox")]
    expected = [raw if raw.endswith(b"\n") else raw + b"\n" for raw in TRICKY]  # an mbox line always ends
    assert back == expected
    # other mbox readers agree on where messages start and who sent them
    box = mailbox.mbox(path, create=False)
    assert len(box) == len(TRICKY)
    assert box[0].get_from().startswith("alice@example.com ")
    assert box[1].get_payload().count("From") == 4


def test_mbox_separator_survives_a_hostile_envelope_sender(store, tmp_path):
    raw = message(subject="odd sender")
    store.add(capture(raw, mail_from="evil\r\nFrom injected@x \x1b[31m@example.com"))
    store.add(capture(raw, mail_from=""))
    path = tmp_path / "out.mbox"
    export_mbox(store, path)
    lines = [line for line in path.read_bytes().split(b"\n") if line.startswith(b"From ")]
    assert len(lines) == 2
    assert lines[0].split(b" ")[1] == b"evil??From?injected@x??[31m@example.com"
    assert lines[1].startswith(b"From MAILER-DAEMON ")
    assert time.strptime(lines[1][len(b"From MAILER-DAEMON "):].decode(), "%a %b %d %H:%M:%S %Y")


def test_mbox_export_appends_to_an_mbox_and_refuses_other_files_and_symlinks(store, tmp_path):
    fill(store, TRICKY[:2])
    path = tmp_path / "out.mbox"
    path.write_bytes(b"From old@example.com Thu Jan  1 00:00:00 2026\nSubject: old\n\nold body\n")  # no blank line
    assert export_mbox(store, path) == 2
    with path.open("rb") as f:
        back = [found.raw for found in read_mbox(f, "out.mbox")]
    assert back == [b"Subject: old\n\nold body\n", *TRICKY[:2]]
    other = tmp_path / "notes.txt"
    other.write_bytes(b"my notes\n")
    with pytest.raises(MailIOError, match="not an mbox"):
        export_mbox(store, other)
    assert other.read_bytes() == b"my notes\n"
    link = tmp_path / "link.mbox"
    link.symlink_to(other)
    with pytest.raises(MailIOError, match="symlink"):
        export_mbox(store, link)
    assert other.read_bytes() == b"my notes\n"


def test_mboxo_and_mboxrd_unquoting_differ_only_on_deeper_quotes():
    mbox = b"From a Thu Jan  1 00:00:00 2026\nSubject: q\n\n>From one\n>>From two\nFrom-less >From\n\n"
    rd = next(read_mbox(io.BytesIO(mbox), "x")).raw
    o = next(read_mbox(io.BytesIO(mbox), "x", style="mboxo")).raw
    assert rd == b"Subject: q\n\nFrom one\n>From two\nFrom-less >From\n"
    assert o == b"Subject: q\n\nFrom one\n>>From two\nFrom-less >From\n"


def test_a_from_line_only_separates_messages_after_a_blank_line():
    mbox = (b"From a Thu Jan  1 00:00:00 2026\r\nSubject: one\r\n\r\nbody\r\nFrom unquoted, not after a blank\r\n\r\n"
            b"From b Thu Jan  1 00:00:01 2026\r\nSubject: two\r\n\r\nbody two\r\n")
    found = list(read_mbox(io.BytesIO(mbox), "x"))
    assert [f.raw for f in found] == [b"Subject: one\r\n\r\nbody\r\nFrom unquoted, not after a blank\r\n",
                                      b"Subject: two\r\n\r\nbody two\r\n"]
    assert [f.origin for f in found] == ["x#1", "x#2"]


def test_mbox_reading_is_bounded_on_hostile_input():
    line = b">" * 100_000 + b"no from here\n"
    mbox = b"From a Thu Jan  1 00:00:00 2026\n" + b"Subject: big\n\n" + line * 20 + b">From \n" * 10_000
    start = time.perf_counter()
    (found,) = read_mbox(io.BytesIO(mbox), "x")
    assert time.perf_counter() - start < 2
    assert found.raw.endswith(b"\n" + b"From \n" * 10_000) and b">From" not in found.raw
    big = b"From a Thu Jan  1 00:00:00 2026\nSubject: big\n\n" + b"x" * 5000 + b"\n\nFrom b Thu\nSubject: ok\n\nok\n"
    found = list(read_mbox(io.BytesIO(big), "x", max_size=1000))
    assert found[0].raw is None and "max-size" in found[0].skipped
    assert found[1].raw == b"Subject: ok\n\nok\n"


# ------------------------------------------------------------------------------------------------ import


def test_import_reads_eml_files_directories_maildirs_and_mboxes_in_order(store, tmp_path):
    single = tmp_path / "one.eml"
    single.write_bytes(TRICKY[0])
    emls = tmp_path / "emls"
    emls.mkdir()
    (emls / "b.eml").write_bytes(TRICKY[2])
    (emls / "a.EML").write_bytes(TRICKY[1])
    (emls / "ignored.txt").write_bytes(b"Subject: no\r\n\r\n")
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "cur" / "1700000100.x.host:2,S").write_bytes(TRICKY[3])
    (md / "new" / "1700000200.y.host").write_bytes(TRICKY[4])
    (md / "tmp" / "1700000300.z.host").write_bytes(b"Subject: half-delivered\r\n\r\n")
    (md / "cur" / ".hidden").write_bytes(b"Subject: hidden\r\n\r\n")
    box = tmp_path / "in.mbox"
    box.write_bytes(b"From x Thu Jan  1 00:00:00 2026\nSubject: from mbox\n\n>From quoted\n\n")
    report = import_paths(store, [single, emls, md, box])
    assert report.skipped == [] and report.verdicts == {}
    stored = [store.get(i).capture for i in report.ids]
    assert [c.raw for c in stored] == [TRICKY[0], TRICKY[1], TRICKY[2], TRICKY[4], TRICKY[3],
                                       b"Subject: from mbox\n\nFrom quoted\n"]
    assert all(c.transport.listener is Listener.CLI for c in stored)
    # a Maildir file's delivery time (its name) is when it arrived, when it has no Received field
    assert stored[3].received_at == datetime.fromtimestamp(1700000200, UTC)


def lab_config(tmp_path):
    return Config(data_dir=tmp_path / "data", zones=[str(z) for z in ZONES], offline=True, client_ip=GOOD_IP,
                  spam_filters="off")


def test_import_derives_the_envelope_as_check_does_and_stores_verdicts(store, tmp_path, capsys):
    with_return_path = b"Return-Path: <bounce@example.com>\r\n" + sign(message(subject="rp"))
    received = (b"Received: from mail.example.com by mx.example.net; Mon, 2 Nov 2026 10:00:00 +0000\r\n"
                + message(from_="Bob <bob@example.org>", subject="received"))
    (tmp_path / "a.eml").write_bytes(with_return_path)
    (tmp_path / "b.eml").write_bytes(received)
    seen = []
    config = lab_config(tmp_path)
    judging = mailio.lab_judging(config, build_lab_view(config))
    report = import_paths(store, [tmp_path / "a.eml", tmp_path / "b.eml"], judging=judging, client_ip=GOOD_IP,
                          rcpt=["bob@example.net"], helo="mail.example.com",
                          on_stored=lambda c, v: seen.append((c.id, v.level)))
    a, b = (store.get(i) for i in report.ids)
    assert a.capture.envelope.mail_from == "bounce@example.com"  # Return-Path first, as `maillab check`
    assert b.capture.envelope.mail_from == "bob@example.org"      # else the From address
    assert a.capture.envelope.rcpt_to == ("bob@example.net",) and a.capture.envelope.helo == "mail.example.com"
    assert a.capture.client.ip == GOOD_IP and a.capture.client.source == "cli"
    assert b.capture.received_at == datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    assert a.verdict == report.verdicts[a.capture.id]
    assert seen == [(a.capture.id, a.verdict.level), (b.capture.id, b.verdict.level)]
    # the stored verdict is the one `maillab check` gives for the same file and envelope (sender.history
    # is the one difference: `check` has no store to remember senders in)
    args = ["check", str(tmp_path / "a.eml"), "--offline", "--client-ip", GOOD_IP, "--rcpt", "bob@example.net",
            "--helo", "mail.example.com", "--json", *ZONE_ARGS]
    cli.main(args + (["--spam-filters", "off"] if "--spam-filters" in cli.parser().format_help() else []))
    checked = json.loads(capsys.readouterr().out)
    assert checked["envelope"]["mail_from"] == "bounce@example.com"
    def without_history(checks):
        return [(c["id"], c["level"], c["summary"]) for c in checks if c["id"] != "sender.history"]
    assert without_history(c.to_dict() for c in a.verdict.checks) == without_history(checked["checks"])
    assert a.verdict.level.value == checked["verdict"]
    # the store remembers the sender, as the lab does: the same file imported again is a known sender
    (again,) = import_paths(store, [tmp_path / "a.eml"], judging=judging, client_ip=GOOD_IP).verdicts.values()
    history = {c.id: c for c in again.checks}["sender.history"]
    assert history.summary.startswith("Consistent with 2 earlier messages"), history.summary
    assert store.unanalysed() == []  # nothing left for a running lab to judge again


def test_import_refuses_missing_paths_before_storing_anything_and_skips_empty_and_oversize(store, tmp_path):
    good = tmp_path / "good.eml"
    good.write_bytes(TRICKY[0])
    with pytest.raises(MailIOError, match="nope.eml: no such file"):
        import_paths(store, [good, tmp_path / "nope.eml"])
    assert store.count() == 0
    (tmp_path / "empty.eml").write_bytes(b"\r\n")
    (tmp_path / "huge.eml").write_bytes(b"Subject: huge\r\n\r\n" + b"x" * 5000)
    report = import_paths(store, [good, tmp_path / "empty.eml", tmp_path / "huge.eml"], max_size=4000)
    assert len(report.ids) == 1
    assert [(f.origin.rsplit("/", 1)[1], f.skipped) for f in report.skipped] == [
        ("empty.eml", "empty file"), ("huge.eml", "larger than max-size (4000 bytes)")]


def test_export_then_import_round_trips_exact_bytes(store, tmp_path):
    fill(store, TRICKY)
    export_maildir(store, tmp_path / "md")
    export_mbox(store, tmp_path / "out.mbox")
    other = Store(tmp_path / "other.db")
    try:
        via_maildir = [other.get(i).capture.raw for i in import_paths(other, [tmp_path / "md"]).ids]
        via_mbox = [other.get(i).capture.raw for i in import_paths(other, [tmp_path / "out.mbox"]).ids]
    finally:
        other.close()
    assert sorted(via_maildir) == sorted(TRICKY)
    assert via_mbox == [raw if raw.endswith(b"\n") else raw + b"\n" for raw in TRICKY]


def test_stdin_can_be_an_mbox_or_one_message():
    mbox = b"From x Thu Jan  1 00:00:00 2026\nSubject: one\n\n\nFrom y Thu Jan  1 00:00:00 2026\nSubject: two\n\n"
    found = list(read_sources(["-"], stdin=io.BytesIO(mbox)))
    assert [f.raw for f in found] == [b"Subject: one\n\n", b"Subject: two\n"]
    (single,) = read_sources(["-"], stdin=io.BytesIO(TRICKY[1]))
    assert single.raw == TRICKY[1]


# ------------------------------------------------------------------------------------------------ the commands


def parse(argv: list[str]) -> tuple[argparse.Namespace, object]:
    p = argparse.ArgumentParser(prog="maillab")
    sub = p.add_subparsers(dest="command")
    mailio.add_parsers(sub, cli._common)
    args = p.parse_args(argv)
    return args, cli.config_from(args)


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch):
    monkeypatch.setenv("MAILLAB_CONFIG", os.devnull)



def test_import_command_prints_verdicts_and_exits_1_when_one_fails(tmp_path, capsys):
    (tmp_path / "good.eml").write_bytes(sign(message(subject="good")))
    (tmp_path / "spoof.eml").write_bytes(message(from_="CEO <ceo@example.com>", subject="spoof"))
    data = tmp_path / "data"
    args, config = parse(["import", str(tmp_path / "good.eml"), "--data-dir", str(data), *ZONE_ARGS, "--offline",
                          "--client-ip", GOOD_IP, "--json"])
    assert mailio.run_import(args, config) == 0
    out, err = capsys.readouterr()
    (doc,) = json.loads(out)
    assert doc["headers"]["subject"] == "good" and doc["verdict"] in ("pass", "warn")
    assert doc["transport"]["listener"] == "cli" and doc["id"] == 1
    assert "imported 1 message (#1–#1)" in err
    args, config = parse(["import", str(tmp_path / "spoof.eml"), "--data-dir", str(data), *ZONE_ARGS,
                          "--offline", "--client-ip", BAD_IP])
    assert mailio.run_import(args, config) == 1
    out, err = capsys.readouterr()
    assert out.startswith("#2 ✗ FAIL cli") and '"spoof"' in out and "1 fail" in err


def test_import_command_without_analysis_leaves_the_backlog_to_the_lab(tmp_path, capsys):
    (tmp_path / "a.eml").write_bytes(message())
    args, config = parse(["import", str(tmp_path / "a.eml"), "--data-dir", str(tmp_path / "d"), "--no-analyse",
                          "--zone", "/nonexistent.zone"])  # no DNS is built, so a bad zone does not matter
    assert mailio.run_import(args, config) == 0
    assert capsys.readouterr().out == "#1 stored (not analysed)\n"
    s = Store(config.db_path)
    try:
        assert [c.id for c in s.unanalysed()] == [1]
    finally:
        s.close()


@pytest.mark.parametrize(("argv", "needle"), [
    (["import", "{tmp}/missing.eml", "--offline"], "missing.eml: no such file"),
    (["import", "{tmp}/a.eml", "--zone", "/nonexistent.zone"], "zone file /nonexistent.zone"),
    (["import", "{tmp}/empty.eml", "--offline"], "skipped"),
])
def test_import_command_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    (tmp_path / "a.eml").write_bytes(message())
    (tmp_path / "empty.eml").write_bytes(b"")
    args, config = parse([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--data-dir", str(tmp_path / "d")])
    assert mailio.run_import(args, config) == 2
    assert needle in capsys.readouterr().err


def test_export_command_filters_reports_missing_ids_and_needs_a_store(tmp_path, capsys, view):
    data = tmp_path / "data"
    s = Store(data / "maillab.db")
    try:
        good = capture(sign(message(subject="good")))
        bad = capture(message(from_="CEO <ceo@example.com>", subject="bad"), ip=BAD_IP)
        for c in (good, bad):
            s.save_verdict(s.add(c), analyse(c, view))
    finally:
        s.close()
    args, config = parse(["export", "--mbox", str(tmp_path / "fails.mbox"), "--filter", "verdict:fail",
                          "--data-dir", str(data)])
    assert mailio.run_export(args, config) == 0
    assert "exported 1 message to" in capsys.readouterr().err
    assert [m["Subject"] for m in mailbox.mbox(tmp_path / "fails.mbox")] == ["bad"]
    args, config = parse(["export", "--maildir", str(tmp_path / "md"), "1", "7", "--data-dir", str(data)])
    assert mailio.run_export(args, config) == 1
    assert "no message 7" in capsys.readouterr().err
    assert len(regular_files(tmp_path / "md" / "new")) == 1
    args, config = parse(["export", "--maildir", str(tmp_path / "md2"), "--data-dir", str(tmp_path / "none")])
    assert mailio.run_export(args, config) == 2
    assert "no store at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["export", "--data-dir", str(data)])  # --maildir or --mbox is required


def test_the_maillab_command_imports_and_exports(tmp_path):
    """Through `python -m lab`, once lab.cli wires the subcommands."""
    def maillab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, timeout=60,
                              env={**os.environ, "MAILLAB_CONFIG": os.devnull})

    if maillab("import", "--help").returncode != 0:
        pytest.skip("`maillab import` is not wired into lab.cli yet")
    box = tmp_path / "in.mbox"
    box.write_bytes(b"".join(b"From x Thu Jan  1 00:00:00 2026\n" + raw.replace(b"\r\n", b"\n") + b"\n"
                             for raw in (message(subject="one"), message(subject="two"))))
    common = ["--data-dir", str(tmp_path / "data"), *ZONE_ARGS, "--offline", "--client-ip", GOOD_IP]
    out = maillab("import", str(box), "--json", *common)
    assert out.returncode == 0, out.stderr
    assert [d["headers"]["subject"] for d in json.loads(out.stdout)] == ["one", "two"]
    assert b"imported 2 messages" in out.stderr
    out = maillab("export", "--maildir", str(tmp_path / "md"), *common)
    assert out.returncode == 0, out.stderr
    assert len(regular_files(tmp_path / "md" / "new")) == 2
    listed = json.loads(maillab("list", "--json", *common).stdout)
    assert [m["transport"]["listener"] for m in listed] == ["cli", "cli"] and all(m["verdict"] for m in listed)
