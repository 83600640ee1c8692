"""Provides the deliverability score: 10 points, minus what each finding costs, the way mail-tester counts.

The score answers "how much does this message look like mail a filter trusts", separately from hard
gates (a provider rule that would reject it, in the `bulk` family): a message can score 9/10 and still be
refused by Gmail for having no PTR. Content rules carry their own points, as SpamAssassin rules do;
every other finding costs what its family and level say below, so the points are the same whichever
check found the problem. Provider (`bulk`) rules cost nothing: they restate the other families' findings
as one provider would judge them, and counting them again would punish the same fault twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from lab.core.results import CheckResult, Level

MAX_SCORE = 10.0

# (family, level) -> points lost; a check that sets its own points keeps them
FAMILY_POINTS: dict[tuple[str, Level], float] = {
    ("transport", Level.WARN): 0.3, ("transport", Level.FAIL): 1.0,
    ("spf", Level.WARN): 0.5, ("spf", Level.FAIL): 1.5,
    ("dkim", Level.WARN): 0.5, ("dkim", Level.FAIL): 1.5,
    ("dmarc", Level.WARN): 0.5, ("dmarc", Level.FAIL): 2.5,
    ("arc", Level.WARN): 0.1, ("arc", Level.FAIL): 0.3,
    ("sender", Level.WARN): 0.3, ("sender", Level.FAIL): 1.0,
    ("headers", Level.WARN): 0.3, ("headers", Level.FAIL): 1.0,
    ("client", Level.WARN): 0.3, ("client", Level.FAIL): 1.0,
    ("blocklist", Level.WARN): 0.2, ("blocklist", Level.FAIL): 3.0,
}
# Results whose word matters more than their level: no authentication at all is what filters punish most.
RESULT_POINTS: dict[tuple[str, str], float] = {
    ("spf.mailfrom", "none"): 1.0,
    ("dkim.none", "none"): 1.0,
    ("dmarc", "none"): 1.0,
}


def priced(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The results with their points filled in (a result that already has points keeps them)."""
    out = []
    for r in results:
        if r.points or r.level in (Level.PASS, Level.INFO) and (r.id, r.result) not in RESULT_POINTS:
            out.append(r)
            continue
        points = RESULT_POINTS.get((r.id, r.result or ""), FAMILY_POINTS.get((r.family, r.level), 0.0))
        out.append(replace(r, points=points) if points else r)
    return out


def score(results: Iterable[CheckResult]) -> float:
    """10 minus every finding's points, never below 0, to one decimal."""
    lost = sum(r.points for r in results)
    return max(0.0, round(MAX_SCORE - lost, 1))
