"""Benchmark: verdicts per second from the analysis core with overlay DNS, for 5 KB unsigned mail and a
realistic 12 KB message signed with RSA-2048 and ed25519, in one process and across two processes.

The baseline, measured in the same run because these machines' speed swings by a third from one minute to
the next: what the issue's naive prototype did per message besides SMTP and SQLite, in a fresh process (stock
dkimpy, none of lab.core.dkimfast): parse with `email.policy.default`, read the usual header fields, and verify
every DKIM signature with dkimpy, keys from the same overlay zones. The lab does all of that and every other
check family too.

Run: `.venv/bin/python bench/analysis.py`.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import GOOD_IP, ZONES, capture, message, sign  # noqa: E402

from lab.core.dnsview import LayeredView  # noqa: E402
from lab.resolver import load_zones  # noqa: E402


def samples() -> dict[str, bytes]:
    plain = message(body="Hello,\r\n" + ("lorem ipsum dolor sit amet " * 3 + "\r\n") * 60)
    body = ("Hello Bob,\r\n" + ("Your order has shipped; tracking at https://example.com/t/1001 " + "\r\n") * 180)
    signed = sign(sign(message(body=body)), "ed", keyfile="example.com.ed.ed25519")
    return {"5 KB unsigned": plain, "12 KB signed (RSA-2048 + ed25519)": signed}


def rate(raw: bytes, n: int, barrier=None) -> tuple[float, float, float]:
    """Analyse `raw` n times after a warm-up; (verdicts/s, start, end) with perf_counter times.

    With a barrier, every process starts timing together, after its imports, zone loading and warm-up: the
    lab's analysis processes are long-lived, so their start-up is not a per-message cost."""
    # imported here: it installs lab.core.dkimfast, which the baseline's process must not have
    from lab.core.analyse import analyse

    view = LayeredView(load_zones(ZONES))
    cap = capture(raw, ip=GOOD_IP)
    for _ in range(20):
        analyse(cap, view)  # warm caches (PSL, imports, regexes)
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    for _ in range(n):
        analyse(cap, view)
    ended = time.perf_counter()
    return n / (ended - started), started, ended


def naive_rate(raw: bytes, n: int) -> float:
    """The baseline, in this process: run it in a fresh one (dkimpy must be stock)."""
    import email
    import email.policy

    import dkim

    view = LayeredView(load_zones(ZONES))

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        records = view.lookup(name.decode().rstrip("."), "TXT").records
        return b"".join(records[0]) if records else None

    def once() -> None:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        for field in ("from", "to", "subject", "date", "message-id"):
            msg.get(field)
        d = dkim.DKIM(raw)
        for idx in range(len(msg.get_all("dkim-signature") or [])):
            d.verify(idx=idx, dnsfunc=dnsfunc)

    for _ in range(20):
        once()
    started = time.perf_counter()
    for _ in range(n):
        once()
    return n / (time.perf_counter() - started)


def _naive_worker(raw: bytes, n: int, out) -> None:
    assert "lab.core.dkimfast" not in sys.modules
    out.put(naive_rate(raw, n))


def baseline(raw: bytes, n: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_naive_worker, args=(raw, n, out))
    proc.start()
    value = out.get()
    proc.join()
    return value


def _worker(raw: bytes, n: int, barrier, out) -> None:
    out.put(rate(raw, n, barrier))


def together(raw: bytes, n: int, processes: int = 2) -> float:
    """Verdicts/s of `processes` analysing at once: all verdicts over the span from the first start to the
    last end (perf_counter is system-wide on Linux, so the processes' times compare)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(raw, n, barrier, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return processes * n / (max(r[2] for r in results) - min(r[1] for r in results))


ROUNDS = 3  # baseline and lab alternate, each round a third of the work: a drift in machine speed hits both


def main() -> None:
    print(f"{'message':38} {'size':>7} {'baseline':>9} {'1 process':>10} {'x base':>7} {'2 processes':>12}"
          f"   (medians of {ROUNDS} alternating rounds)")
    for name, raw in samples().items():
        n = (3000 if "unsigned" in name else 1200) // ROUNDS
        bases, ones, twos = [], [], []
        for _ in range(ROUNDS):
            bases.append(baseline(raw, n))
            ones.append(rate(raw, n)[0])
            twos.append(together(raw, n))
        base, one, two = (statistics.median(x) for x in (bases, ones, twos))
        print(f"{name:38} {len(raw):6,}B {base:7.0f}/s {one:8.0f}/s {one / base:6.2f}x {two:10.0f}/s")


if __name__ == "__main__":
    main()
