"""Benchmark: messages per second into `maillab serve` (durable capture + full analysis) against a bare
aiosmtpd sink and, where installed, Postfix's smtp-sink, all in one run, driven by Postfix's smtp-source.

Scenarios: 5 KB over 10 sessions, 5 KB with a new connection per message, 100 KB over 10 sessions.
For the lab it also checks every message was stored and analysed, and reports verdict latency (time from
the commit to the verdict) and peak RSS. Run: `make bench` or `.venv/bin/python bench/ingest.py`;
MAILLAB_SERVE_ARGS adds options to `maillab serve` (e.g. "--analysis-workers 1").
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = (("5 KB, 10 sessions", 5 * 1024, 10, False, 4000),
             ("5 KB, new connection each", 5 * 1024, 10, True, 2000),
             ("100 KB, 10 sessions", 100 * 1024, 10, False, 1000))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.args}") from None
            time.sleep(0.05)
    raise RuntimeError("server did not listen")


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def drive(port: int, size: int, sessions: int, reconnect: bool, count: int) -> float:
    """Seconds smtp-source takes to deliver `count` messages."""
    args = ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size), "-f", "load@example.com",
            "-t", "sink@example.net"]
    if not reconnect:
        args.append("-d")  # smtp-source's -d means "don't disconnect": keep the session for the next message
    started = time.perf_counter()
    subprocess.run([*args, f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def start(kind: str, port: int, data: Path) -> subprocess.Popen:
    if kind == "bare aiosmtpd":
        cmd = [sys.executable, str(HERE / "bare_sink.py"), str(port)]
    elif kind == "postfix smtp-sink":
        cmd = ["smtp-sink", *(["-u", "nobody"] if os.geteuid() == 0 else []), f"127.0.0.1:{port}", "1024"]
    else:
        cmd = [sys.executable, "-m", "lab", "serve", "--data-dir", str(data), "--offline", "--relay-port", str(port),
               "--submission-port", str(free_port()), "--smtps-port", str(free_port()), "--pop3-port", "0",
               *os.environ.get("MAILLAB_SERVE_ARGS", "").split()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MAILLAB_CONFIG": os.devnull})
    wait_listening(port, proc)
    return proc


def lab_report(db: Path, expected: int, timeout: float = 120) -> tuple[int, list[float]]:
    con = sqlite3.connect(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        analysed = con.execute("SELECT count(*) FROM verdicts").fetchone()[0]
        if analysed >= expected:
            break
        time.sleep(0.2)
    stored = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    lat = [(datetime.fromisoformat(a) - datetime.fromisoformat(r)).total_seconds() * 1000
           for r, a in con.execute("SELECT m.received_at, v.analysed_at FROM messages m JOIN verdicts v "
                                   "ON v.message_id = m.id")]
    con.close()
    return stored, sorted(lat)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def main() -> None:
    if shutil.which("smtp-source") is None:
        sys.exit("bench/ingest.py needs Postfix's smtp-source (Debian package postfix)")
    kinds = ["bare aiosmtpd", "maillab serve"] + (["postfix smtp-sink"] if shutil.which("smtp-sink") else [])
    rows = []
    for name, size, sessions, reconnect, count in SCENARIOS:
        rates = {}
        for kind in kinds:
            with tempfile.TemporaryDirectory() as tmp:
                port = free_port()
                proc = start(kind, port, Path(tmp))
                try:
                    drive(port, size, sessions, reconnect, min(200, count))  # warm up
                    seconds = drive(port, size, sessions, reconnect, count)
                    rates[kind] = count / seconds
                    extra = ""
                    if kind == "maillab serve":
                        stored, lat = lab_report(Path(tmp) / "maillab.db", count + min(200, count))
                        extra = (f"stored {stored}/{count + min(200, count)}; verdict latency p50 {pct(lat, .5):.0f} ms"
                                 f" p99 {pct(lat, .99):.0f} ms; peak RSS {peak_rss_mb(proc.pid):.0f} MB")
                    rows.append((name, kind, rates[kind], extra))
                finally:
                    proc.terminate()
                    proc.wait(20)
        base = rates["bare aiosmtpd"]
        rows[-len(kinds):] = [(n, k, r, e, r / base) for n, k, r, e in rows[-len(kinds):]]
    print(f"{'scenario':28} {'server':20} {'msg/s':>8} {'vs bare':>8}  notes")
    for name, kind, rate, extra, ratio in rows:
        print(f"{name:28} {kind:20} {rate:8.0f} {ratio:7.2f}x  {extra}")


if __name__ == "__main__":
    main()
