"""Provides what the lab's child processes (analysis, writer) share: they never outlive the lab."""

from __future__ import annotations


def die_with_parent() -> None:
    """If the lab is killed (SIGKILL leaves no chance to clean up), its child processes must go too."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: analysis polls for its parent, the writer sees EOF on its pipe


def lower_priority(idle: bool) -> None:
    """Let the SMTP side (acknowledging mail) go first when the CPU is short: SCHED_IDLE when `idle` (runs only
    on CPU nobody else wants; a process must then never hold a lock that others wait for), else nice 10."""
    import os

    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except (AttributeError, OSError):
            pass  # not Linux
    try:
        os.nice(10)
    except OSError:
        pass
