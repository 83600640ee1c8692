"""Benchmark: `maillab check` on a 5 KB message from a cold start (a new process each time), against a bare
interpreter started the same way in the same run.

Bytecode is what an installed maillab runs from: one priming run writes it (this script clears
PYTHONDONTWRITEBYTECODE for its children), then each figure is the median of RUNS fresh processes. The
message is the signed 5 KB one of bench/analysis.py, judged offline through the fixture zones; what the
zones parse to is cached in the data directory after the first run, and the last row shows a run without
that cache (a first run ever, or right after the zone files changed).

Run: `.venv/bin/python bench/cold_start.py`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import ZONES, message, sign  # noqa: E402

RUNS = 15


def wall(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def median(argv: list[str], env: dict, fresh_data: bool = False) -> float:
    """`fresh_data`: each run gets an empty data directory, so the zone cache (lab.resolver) is empty too."""
    wall(argv, env)  # priming: bytecode written, files in the page cache, zones parsed into the cache
    if not fresh_data:
        return statistics.median(wall(argv, env) for _ in range(RUNS))
    times = []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as data:
            times.append(wall(argv, {**env, "MAILLAB_DATA_DIR": data}))
    return statistics.median(times)


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MAILLAB_CONFIG"] = os.devnull
    body = "Hello,\r\n" + ("lorem ipsum dolor sit amet " * 3 + "\r\n") * 60
    with tempfile.TemporaryDirectory() as tmp:
        eml = Path(tmp) / "5k.eml"
        eml.write_bytes(sign(message(body=body)))
        plain = Path(tmp) / "5k-unsigned.eml"
        plain.write_bytes(message(body=body))
        env["MAILLAB_DATA_DIR"] = tmp
        zones = [arg for z in ZONES for arg in ("--zone", str(z))]
        check = [sys.executable, "-m", "lab", "check", "--offline", "--spam-filters", "off", *zones]
        rows = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
            ("python -c 'import email.policy'", [sys.executable, "-c", "import email.policy"]),
            ("maillab check, 5 KB DKIM-signed", [*check, str(eml)]),
            ("maillab check, 5 KB unsigned", [*check, str(plain)]),
            ("maillab check --json, 5 KB signed", [*check, "--json", str(eml)]),
            ("  the same, zone cache empty", [*check, "--json", str(eml)], True),
        ]
        base = None
        print(f"{'command':38} {'median wall':>12} {'x baseline':>11}   ({RUNS} runs each)")
        for name, argv, *fresh in rows:
            t = median(argv, env, *fresh)
            base = base or t
            print(f"{name:38} {t * 1000:9.0f} ms {t / base:10.1f}x")


if __name__ == "__main__":
    main()
