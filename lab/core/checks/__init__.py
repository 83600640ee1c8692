"""Provides the check families; each module exposes functions of (Context) -> list[CheckResult]."""
