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
