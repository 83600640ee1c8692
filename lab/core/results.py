"""Provides the result vocabulary: levels, RFC result words, one check's result and the overall verdict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Level(StrEnum):
    """How a result is shown: what the user should feel about it."""

    PASS = "pass"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.PASS: 0, Level.INFO: 0, Level.WARN: 1, Level.FAIL: 2}


class AuthResult(StrEnum):
    """RFC 8601 result words shared by SPF (RFC 7208), DKIM and DMARC."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
    POLICY = "policy"


_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One finding. `id` is "family.name"; the family is what the UI groups by.

    `result` is the RFC word where the family has one (SPF, DKIM, DMARC), `level` is how to show it,
    `evidence` holds what the verdict rests on (the record, the mechanism, the selector, ...) and `fix`
    says what to do about it, in words a user can act on.
    """

    id: str
    level: Level
    summary: str
    result: str | None = None
    evidence: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    fix: str | None = None
    ref: str | None = None  # where the rule comes from: "RFC 7208 §2.6"
    points: float = 0.0  # what the finding costs in the 0-10 deliverability score (lab.core.score); 0 = nothing
    family: str = field(init=False, repr=False, compare=False)  # the part of the id before the first dot

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", self.id.partition(".")[0])

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "family": self.family,
            "result": self.result,
            "level": self.level.value,
            "summary": self.summary,
            "fix": self.fix,
            "ref": self.ref,
            "evidence": dict(self.evidence),
            "points": self.points,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> CheckResult:
        return cls(
            id=data["id"],
            level=Level(data["level"]),
            summary=data["summary"],
            result=data.get("result"),
            evidence=MappingProxyType(dict(data.get("evidence") or {})),
            fix=data.get("fix"),
            ref=data.get("ref"),
            points=float(data.get("points") or 0.0),
        )


def check(
    id: str,
    level: Level,
    summary: str,
    *,
    result: str | None = None,
    fix: str | None = None,
    ref: str | None = None,
    points: float = 0.0,
    **evidence: object,
) -> CheckResult:
    """Build a CheckResult, dropping empty evidence and turning values into strings.

    A failing or warning result also carries its rule as `evidence["rfc"]`, so users can look it up.
    """
    ev = {}
    for k, v in evidence.items():  # a plain loop: ~30 results a message, each with several items
        if v is None:
            continue
        cls = v.__class__
        if cls is str:
            if not v:
                continue
        elif cls is list or cls is tuple:
            if not v:
                continue
            v = ", ".join(str(x) for x in v)
        else:
            v = str(v)
        ev[k.replace("_", "-") if "_" in k else k] = v
    if ref and level in (Level.FAIL, Level.WARN) and ref.startswith("RFC"):
        ev.setdefault("rfc", ref)
    return CheckResult(id, level, summary, result, MappingProxyType(ev), fix, ref, points)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Everything the analysis concluded about one message."""

    level: Level
    checks: tuple[CheckResult, ...]
    authentication_results: str
    disposition: str  # what a receiver would do, in one line
    headers: Mapping[str, str] = field(default_factory=dict)  # from, to, subject, message_id for lists
    score: float | None = None  # 0-10, lab.core.score; None for verdicts stored before there was a score
    profile: str = "none"  # the provider profile the message was judged by

    @classmethod
    def overall(cls, checks: Iterable[CheckResult]) -> Level:
        worst = max((c.level.rank for c in checks), default=0)
        return {0: Level.PASS, 1: Level.WARN, 2: Level.FAIL}[worst]

    def by_family(self) -> dict[str, list[CheckResult]]:
        out: dict[str, list[CheckResult]] = {}
        for c in self.checks:
            out.setdefault(c.family, []).append(c)
        return out

    def failed_families(self) -> list[str]:
        return sorted({c.family for c in self.checks if c.level is Level.FAIL})

    def to_dict(self) -> dict:
        return {
            "verdict": self.level.value,
            "disposition": self.disposition,
            "checks": [c.to_dict() for c in self.checks],
            "authentication_results": self.authentication_results,
            "headers": dict(self.headers),
            "score": self.score,
            "profile": self.profile,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Verdict:
        return cls(
            level=Level(data["verdict"]),
            checks=tuple(CheckResult.from_dict(c) for c in data["checks"]),
            authentication_results=data["authentication_results"],
            disposition=data.get("disposition", ""),
            headers=dict(data.get("headers") or {}),
            score=data.get("score"),
            profile=data.get("profile") or "none",
        )
