"""Benchmark: the memory of `maillab serve` with 100,000 messages already stored, while more arrive.

Fills a store with N judged 5 KB messages (default 100,000), starts `maillab serve` on it, sends 1,000
more with Postfix's smtp-source, waits for their verdicts, and prints the peak RSS of the SMTP process
and of each child (writer, analysis). Run: `.venv/bin/python bench/serve_rss.py [N]`.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ingest  # noqa: E402  (the same start/drive helpers as the ingest benchmark)

from lab.store import Store  # noqa: E402


def fill(db: Path, n: int) -> None:
    Store(db).close()
    body = b"".join(f"line {i} of a realistic body, with some words in it\r\n".encode() for i in range(90))
    verdict = json.dumps({"verdict": "pass", "disposition": "", "checks": [], "authentication_results": "x",
                          "headers": {}})
    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO messages (received_at, raw, size, mail_from, rcpt_to, helo, listener, client_ip) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (("2026-11-26T12:00:00+00:00", raw, len(raw), f"user{i}@example.com", '["b@example.net"]', "h",
              "relay", "192.0.2.10")
             for i in range(n)
             for raw in [f"From: user{i}@example.com\r\nSubject: stored {i}\r\n\r\n".encode() + body]))
        con.execute("INSERT INTO verdicts (message_id, level, analysed_at, from_header, subject, data) "
                    "SELECT id, 'pass', received_at, mail_from, 'stored', ? FROM messages", (verdict,))
    con.close()


def rss_tree(pid: int) -> dict[str, float]:
    out = {"serve": ingest.peak_rss_mb(pid)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                child = int(stat.parent.name)
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]
                out[f"child {child} ({cmd.strip()})"] = ingest.peak_rss_mb(child)
        except OSError:
            continue
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        fill(data / "maillab.db", n)
        print(f"filled {n:,} messages in {time.perf_counter() - started:.1f} s "
              f"({(data / 'maillab.db').stat().st_size / 2**20:.0f} MB on disk)")
        port = ingest.free_port()
        proc = ingest.start("maillab serve", port, data)
        try:
            ingest.drive(port, 5 * 1024, 10, False, 1000)
            stored, _ = ingest.lab_report(data / "maillab.db", n + 1000)
            print(f"stored {stored:,}; peak RSS in MB:")
            for name, mb in rss_tree(proc.pid).items():
                print(f"  {mb:6.1f}  {name}")
        finally:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
