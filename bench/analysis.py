"""Benchmark: verdicts per second from the analysis core with overlay DNS, for 5 KB unsigned mail and a
realistic 12 KB message signed with RSA-2048 and ed25519, in one process and across two processes.

Run: `.venv/bin/python bench/analysis.py`.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import GOOD_IP, ZONES, capture, message, sign  # noqa: E402

from lab.core.analyse import analyse  # noqa: E402
from lab.core.dnsview import LayeredView  # noqa: E402
from lab.resolver import load_zones  # noqa: E402


def samples() -> dict[str, bytes]:
    plain = message(body="Hello,\r\n" + ("lorem ipsum dolor sit amet " * 3 + "\r\n") * 60)
    body = ("Hello Bob,\r\n" + ("Your order has shipped; tracking at https://example.com/t/1001 " + "\r\n") * 180)
    signed = sign(sign(message(body=body)), "ed", keyfile="example.com.ed.ed25519")
    return {"5 KB unsigned": plain, "12 KB signed (RSA-2048 + ed25519)": signed}


def rate(raw: bytes, n: int) -> float:
    view = LayeredView(load_zones(ZONES))
    cap = capture(raw, ip=GOOD_IP)
    analyse(cap, view)  # warm caches (PSL, imports)
    started = time.perf_counter()
    for _ in range(n):
        analyse(cap, view)
    return n / (time.perf_counter() - started)


def _worker(args) -> float:
    raw, n = args
    return rate(raw, n)


def main() -> None:
    print(f"{'message':38} {'size':>7} {'1 process':>11} {'2 processes':>12}")
    for name, raw in samples().items():
        n = 1500 if "unsigned" in name else 600
        one = rate(raw, n)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            started = time.perf_counter()
            pool.map(_worker, [(raw, n)] * 2)
            two = 2 * n / (time.perf_counter() - started)
        print(f"{name:38} {len(raw):6,}B {one:9.0f}/s {two:10.0f}/s")


if __name__ == "__main__":
    main()
