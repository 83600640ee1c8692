"""Provides a connection flood for load tests; also runnable as a separate process so the clients do not
share the lab's interpreter (`python tests/support/load.py PORT N` prints `ok N` or the errors)."""

from __future__ import annotations

import smtplib
import sys
import threading
import time


def flood(port: int, connections: int) -> tuple[list[tuple[int, float]], list[str]]:
    """Open every connection first, then send one message on each at once."""
    results: list[tuple[int, float]] = []
    errors: list[str] = []
    barrier = threading.Barrier(connections)

    def one(n: int) -> None:
        try:
            smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="load.example.com", timeout=30)
            smtp.ehlo()
            barrier.wait(30)
            started = time.monotonic()
            smtp.mail("load@example.com")
            smtp.rcpt("sink@example.net")
            code, reply = smtp.data(f"Subject: load {n}\r\n\r\nload\r\n".encode())
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
            results.append((int(reply.split(b"queued as ")[1].split()[0]), time.monotonic() - started))
            smtp.quit()
        except Exception as exc:  # noqa: BLE001 - collected for the caller
            errors.append(f"{n}: {type(exc).__name__}: {exc}")
            barrier.abort()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


if __name__ == "__main__":
    done, failed = flood(int(sys.argv[1]), int(sys.argv[2]))
    print("\n".join(failed) if failed else f"ok {len(done)} {max(t for _, t in done):.3f}")
