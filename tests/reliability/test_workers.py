"""A dead analysis process is replaced: mail committed after it died still gets its verdict; verdicts lost on
their way to the writer are made again."""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import free_ports, message


def _analysis_children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) != pid:
                continue
            cmd = Path(stat.parent, "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"multiprocessing.spawn" in cmd:  # the analysis processes (the resource tracker is not spawn_main)
            found.append(int(stat.parent.name))
    return found


def _serve(tmp_path) -> tuple[subprocess.Popen, int]:
    """`maillab serve` with two analysis processes, once both are running; (the process, its relay port)."""
    relay, submission, smtps = free_ports(3)
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", "--data-dir", str(tmp_path), "--offline",
                             "--relay-port", str(relay), "--submission-port", str(submission), "--smtps-port",
                             str(smtps), "--pop3-port", "0", "--analysis-workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "MAILLAB_CONFIG": os.devnull})
    deadline = time.monotonic() + 20
    while len(_analysis_children(proc.pid)) < 2:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("no analysis processes")
        time.sleep(0.1)
    return proc, relay


def _verdicts(db, n: int, why: str) -> None:
    con = sqlite3.connect(db)
    deadline = time.monotonic() + 30
    while con.execute("SELECT count(*) FROM verdicts").fetchone()[0] < n:
        assert time.monotonic() < deadline, why
        time.sleep(0.1)
    con.close()


def test_killed_analysis_processes_are_replaced(tmp_path):
    proc, relay = _serve(tmp_path)
    try:
        deadline = time.monotonic() + 20
        # idle priority (set as each process starts): verdicts get only CPU that acknowledging mail does not want
        while {os.sched_getscheduler(child) for child in _analysis_children(proc.pid)} != {os.SCHED_IDLE}:
            assert time.monotonic() < deadline, "the analysis processes are not at idle priority"
            time.sleep(0.05)
        for child in _analysis_children(proc.pid):
            os.kill(child, signal.SIGKILL)
        time.sleep(0.3)
        with smtplib.SMTP("127.0.0.1", relay) as s:
            for i in range(4):  # ids of both shares
                s.sendmail("a@example.com", ["b@example.net"], message(subject=f"after the crash {i}"))
        _verdicts(tmp_path / "maillab.db", 4, "no verdicts after the analysis processes died")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert b"starting another" in err


def test_verdict_commits_never_checkpoint_and_a_backlog_is_checkpointed_as_it_drains(tmp_path, monkeypatch):
    """A checkpoint (an fsync of the database) on a verdict commit put p99 at 59 ms instead of 37 (bench/latency.py):
    verdict writers leave it to the mail writer, and checkpoint themselves every CHECKPOINT_EVERY verdicts or when
    idle, so a backlog drained while no mail arrives does not grow the WAL without end."""
    import threading

    from support import capture

    from lab import analyser
    from lab.config import Config
    from lab.core.dnsview import LayeredView
    from lab.store import Store

    config = Config(data_dir=tmp_path, offline=True, spam_filters="off", blocklists="off")
    mail = Store(config.db_path)
    assert mail.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    for n in range(150):  # three batches of the analysis loop
        mail.add(capture(message(subject=f"backlog {n}")))
    verdicts = Store(config.db_path, durable=False)
    assert verdicts.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    verdicts.close()

    calls = []
    real = Store.checkpoint
    monkeypatch.setattr(Store, "checkpoint", lambda self: (calls.append(1), real(self)))
    monkeypatch.setattr(analyser, "CHECKPOINT_EVERY", 10)
    monkeypatch.setattr(analyser, "SAVE_EVERY", 0)  # one commit per verdict: the count is exact
    stopping, wake, reload = threading.Event(), threading.Event(), threading.Event()
    done: list[int] = []
    worker = threading.Thread(target=analyser.backlog_loop, args=(config, stopping, wake, reload, done.extend),
                              kwargs={"view": LayeredView([])})
    worker.start()
    deadline = time.monotonic() + 30
    while len(done) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    stopping.set()
    wake.set()
    worker.join(10)
    assert len(done) == 150 and len(calls) >= 3  # after each batch of 64, as more than 10 were written
    mail.close()


def test_verdicts_lost_on_the_way_to_the_writer_are_made_again_after_a_reload(tmp_path):
    """A writer process that dies takes the verdict frames it had not committed with it; the lab then sets
    `reload`, and the analysis looks for unjudged mail from the oldest again instead of from its cursor."""
    import pickle
    import threading

    from support import capture

    from lab import analyser
    from lab.config import Config
    from lab.core.dnsview import LayeredView
    from lab.store import Store

    config = Config(data_dir=tmp_path, offline=True, spam_filters="off", blocklists="off")
    mail = Store(config.db_path)
    ids = [mail.add(capture(message(subject=f"n{n}"))) for n in range(5)]
    sent: list[list[int]] = []
    lost = threading.Event()

    def send(frame: bytes) -> None:  # the first frames are lost, as with a writer killed before its commit
        rows = pickle.loads(frame)[1]
        if lost.is_set():
            mail_rows.extend(rows)
        sent.append([r[0] for r in rows])

    mail_rows: list[tuple] = []
    stopping, wake, reload = threading.Event(), threading.Event(), threading.Event()
    worker = threading.Thread(target=analyser.backlog_loop, args=(config, stopping, wake, reload, lambda ids: None),
                              kwargs={"view": LayeredView([]), "send": send})
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while sum(map(len, sent)) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        lost.set()
        wake.set()
        time.sleep(0.3)
        assert sum(map(len, sent)) == 5  # without a reload the cursor has passed them
        reload.set()
        wake.set()
        while sorted(r[0] for r in mail_rows) != ids:
            assert time.monotonic() < deadline, sent
            time.sleep(0.02)
    finally:
        stopping.set()
        wake.set()
        worker.join(10)
        mail.close()


def test_verdicts_starved_of_cpu_are_rescued_at_normal_priority(tmp_path):
    """The analysis processes run at idle priority, so a machine kept busy by something else could leave mail
    unjudged for as long as it stays busy. Here they are stopped outright (SIGSTOP: the limit of starvation);
    the lab notices verdicts waiting with none arriving and no mail coming in, and judges at normal priority."""
    proc, relay = _serve(tmp_path)
    stopped: list[int] = []
    try:
        stopped = _analysis_children(proc.pid)
        for child in stopped:
            os.kill(child, signal.SIGSTOP)
        with smtplib.SMTP("127.0.0.1", relay) as s:
            for i in range(4):
                s.sendmail("a@example.com", ["b@example.net"], message(subject=f"starved {i}"))
        _verdicts(tmp_path / "maillab.db", 4, "starved verdicts were not rescued")
        rescuers = [pid for pid in _analysis_children(proc.pid) if pid not in stopped]
        assert len(rescuers) == 1 and os.sched_getscheduler(rescuers[0]) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, rescuers[0]) == os.getpriority(os.PRIO_PROCESS, proc.pid)
    finally:
        for child in stopped:
            os.kill(child, signal.SIGCONT)
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert b"verdicts are starved of CPU" in err


@pytest.mark.parametrize(("waited", "since_verdict", "since_mail", "rescuing", "expected"), [
    (0.5, 5.0, 5.0, False, False),  # judged soon enough
    (3.0, 5.0, 5.0, False, True),  # waited, nothing judged, no mail coming: starved
    (3.0, 0.2, 5.0, False, False),  # verdicts are flowing: the backlog is draining
    (3.0, 0.2, 5.0, True, True),  # ... but they are the rescuer's own: keep it going
    (3.0, 5.0, 0.1, False, False),  # mail still pouring in: the lab's own burst, verdicts drain after it
    (11.0, 5.0, 0.1, False, True),  # ... unless a message has waited RESCUE_ANYWAY
    (0.0, 5.0, 5.0, True, False),  # nothing waits: the rescuer is called off
])
def test_when_verdicts_need_a_rescuer(waited, since_verdict, since_mail, rescuing, expected):
    from lab.analyser import starved

    assert starved(waited, since_verdict, since_mail, rescuing) is expected
