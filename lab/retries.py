"""Provides the refused-attempt groups with their retry verdicts, as `maillab list --attempts` and the TUI list
show them.

A group that ended in an accepted message is judged again in that message's verdict (family `retry`); a
group that never got through has no message to carry a verdict, so its retry checks are made here, from the
stored attempts, by the same core function. Both front ends read them from this one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.core.checks.retry import check_retries
from lab.core.model import DSN_STAGE, Attempt
from lab.core.results import CheckResult, Level, Verdict
from lab.store import AttemptGroup, Store


@dataclass(frozen=True, slots=True)
class JudgedGroup:
    group: AttemptGroup
    checks: tuple[CheckResult, ...]

    @property
    def key(self) -> int:
        """A list key that cannot collide with a message id: minus the id of the group's first attempt."""
        return -(self.group.attempts[0].id or 0)

    @property
    def level(self) -> Level:
        return Verdict.overall(list(self.checks)) if self.checks else Level.INFO

    @property
    def refusals(self) -> list[Attempt]:
        return [a for a in self.group.attempts if a.stage != DSN_STAGE]

    @property
    def tries(self) -> int:
        """SMTP transactions refused: several recipients refused in one transaction are one try."""
        return len({a.txn or a.id for a in self.refusals})

    @property
    def last_reply(self) -> str:
        """What the sender was told last: the reply that decides what it should do next."""
        refusals = self.refusals
        return refusals[-1].reply if refusals else self.group.attempts[-1].reply


def judged_groups(store: Store, limit: int | None = None) -> list[JudgedGroup]:
    """The latest attempt groups, most recent activity first, each with its retry checks."""
    return [JudgedGroup(g, tuple(check_retries(g.attempts, g.accepted_at, [g.rcpt] if g.rcpt else ())))
            for g in store.attempt_groups(limit=limit)]
