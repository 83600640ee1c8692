"""Provides the retry checks: what the sending application did after the lab refused or bounced its mail.

A 4xx reply says "try again later", a 5xx "do not try again" (RFC 5321 §4.2.1), and applications get both
wrong: a 4xx treated as final loses the mail (greylisting works because spamware never retries), a 4xx
retried at once in a loop hammers the receiver until it rate-limits the sender, and a 5xx retried, or an
address mailed again after it bounced, is what burns a sender's reputation. The lab records every refusal
and every bounce (DSN) it sends; the adapter hands over the ones that belong to this message (same MAIL
FROM and recipient within 5 days since the previous delivery, or the same Message-ID), oldest first.

Refusals of several recipients in one SMTP transaction count as one try. A message accepted at the first
try has no retry results at all.

Result words (read by scripts, keep them stable):
  retry.after_temporary  retried | no-backoff | hammering | not-retried
  retry.after_permanent  stopped | retried
  retry.after_bounce     stopped | mailed-again
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from lab.core.context import Context
from lab.core.model import DSN_STAGE, Attempt, Listener, address_key
from lab.core.results import CheckResult, Level, check

MIN_GAP = 1.0  # seconds: a retry sooner than this is a loop, not a retry
BURST_WINDOW = 300.0  # seconds (postgrey's default greylisting delay) ...
BURST_TRIES = 10  # ... in which more tries than this are hammering, whatever the gaps
BACKOFF_RETRIES = 3  # from this many retries on, gaps that do not grow are "no back-off"
GROWTH = 1.5  # the last gap must be this much longer than the first to count as backing off
MAX_ATTEMPTS = 1000  # attempts looked at: the adapter bounds the group too, this bounds a hostile caller
MAX_SHOWN = 12  # tries listed in the timeline evidence

REF_TEMPORARY = "RFC 5321 §4.5.4.1"
REF_PERMANENT = "RFC 5321 §4.2.1"
REF_BOUNCE = "RFC 3464 §2.3.3; RFC 5321 §4.2.1"


@dataclass
class _Try:
    """One try: the refusals of one SMTP transaction, or the acceptance of the message being judged."""

    at: datetime
    rows: list[Attempt] = field(default_factory=list)
    accepted: bool = False
    rcpts: frozenset[str] | None = None  # recipient keys it covered; None: every recipient (refused before RCPT)

    def covers(self, rcpt_key: str) -> bool:
        return self.rcpts is None or not rcpt_key or rcpt_key in self.rcpts

    def describe(self, t0: datetime) -> str:
        offset = f"+{(self.at - t0).total_seconds():.1f}s"
        if self.accepted:
            return f"{offset} accepted"
        first = self.rows[0]
        reply = first.reply.split(" ", 2)
        said = " ".join(reply[:2]) if first.reply else "closed without a reply"
        more = f" (+{len(self.rows) - 1} recipients)" if len(self.rows) > 1 else ""
        return f"{offset} {said} at {first.stage}{more}"


def check_retry(ctx: Context) -> list[CheckResult]:
    """The retry checks for a stored message, from the attempt group the adapter loaded into the options."""
    if ctx.capture.transport.listener is Listener.LAB or not ctx.options.attempts:
        return []
    return check_retries(ctx.options.attempts, ctx.capture.received_at, ctx.capture.envelope.rcpt_to)


def check_retries(attempts: Sequence[Attempt], accepted_at: datetime | None = None,
                  accepted_rcpts: Iterable[str] = ()) -> list[CheckResult]:
    """Judge a group of attempts: refusals and bounces, then (when `accepted_at` is given) the delivery that
    was finally accepted for `accepted_rcpts`. Works for a group that never got through, too."""
    attempts = list(attempts)[:MAX_ATTEMPTS]
    bounces = sorted((a for a in attempts if a.stage == DSN_STAGE), key=lambda a: a.at)
    tries = _tries([a for a in attempts if a.stage != DSN_STAGE])
    if accepted_at is not None:
        keys = frozenset(address_key(r) for r in accepted_rcpts)
        tries.append(_Try(accepted_at, accepted=True, rcpts=keys or None))
        tries.sort(key=lambda t: t.at)
    if not tries and not bounces:
        return []
    t0 = min([t.at for t in tries] + [b.at for b in bounces])
    return [*_temporary(tries, t0), *_permanent(tries, t0), *_bounced(bounces, tries, t0)]


def _tries(refusals: list[Attempt]) -> list[_Try]:
    by_txn: dict[object, _Try] = {}
    for i, a in enumerate(sorted(refusals, key=lambda a: a.at)):
        key = a.txn or ("#", i)
        t = by_txn.get(key)
        if t is None:
            t = by_txn[key] = _Try(a.at, rcpts=frozenset())
        t.rows.append(a)
        t.rcpts = None if t.rcpts is None or a.rcpt is None else t.rcpts | {address_key(a.rcpt)}
    return sorted(by_txn.values(), key=lambda t: t.at)


def _timeline(tries: list[_Try], t0: datetime) -> str:
    shown = [t.describe(t0) for t in tries]
    if len(shown) > MAX_SHOWN:
        shown = [*shown[:MAX_SHOWN - 2], f"… {len(shown) - MAX_SHOWN + 1} more …", shown[-1]]
    return "; ".join(shown)


def _what(a: Attempt) -> str:
    if not a.reply:
        return "a dropped connection"
    return f"{a.code} {a.status}" if a.status else a.reply[:3]


def _most_in_window(times: list[datetime], window: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while (times[end] - times[start]).total_seconds() > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _temporary(tries: list[_Try], t0: datetime) -> list[CheckResult]:
    """RFC 5321 §4.5.4.1: after a 4xx the client MUST delay before retrying, and should back off."""
    first = next((i for i, t in enumerate(tries) if any(a.temporary for a in t.rows)), None)
    if first is None:
        return []
    seq = tries[first:]
    refusal = next(a for a in seq[0].rows if a.temporary)
    what = _what(refusal)
    times = [t.at for t in seq]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    ev = dict(timeline=_timeline(seq, t0), gaps=", ".join(f"{g:.1f} s" for g in gaps[:MAX_SHOWN]),
              first_reply=refusal.reply or "(connection closed)", rule=refusal.rule)
    fix_backoff = ("Retry a 4xx later with a growing interval (for example 1, 2, 4, 8 … minutes, as an MTA queue "
                   "does), and give up only after days; never retry in a tight loop.")
    if not gaps:
        return [check("retry.after_temporary", Level.INFO, f"The temporary failure ({what} at {refusal.stage}) has "
                      "not been retried (yet)", result="not-retried", ref=REF_TEMPORARY,
                      fix="A 4xx is not a bounce: keep the message and try again later. If the application "
                          "dropped it, it loses mail at every greylisting receiver.", **ev)]
    outcome = "then it was accepted" if seq[-1].accepted else "still refused at the last try"
    short = sum(g < MIN_GAP for g in gaps)
    burst = _most_in_window(times, BURST_WINDOW)
    if short:
        return [check("retry.after_temporary", Level.FAIL,
                      f"Retried {short} time{'s' if short > 1 else ''} less than {MIN_GAP:g} s after a temporary "
                      f"failure ({what}): that is hammering, not retrying", result="hammering",
                      ref=REF_TEMPORARY, fix=fix_backoff, **ev)]
    if burst > BURST_TRIES:
        return [check("retry.after_temporary", Level.FAIL,
                      f"{burst} tries within {BURST_WINDOW / 60:g} minutes after a temporary failure ({what}): "
                      "receivers rate-limit or block a client that does this", result="hammering",
                      ref=REF_TEMPORARY, fix=fix_backoff, **ev)]
    if len(gaps) >= BACKOFF_RETRIES and gaps[-1] < GROWTH * gaps[0]:
        return [check("retry.after_temporary", Level.WARN,
                      f"Retried {len(gaps)} times at about the same interval ({gaps[0]:.1f} s, then "
                      f"{gaps[-1]:.1f} s) after a temporary failure ({what}): no back-off; {outcome}",
                      result="no-backoff", ref=REF_TEMPORARY, fix=fix_backoff, **ev)]
    return [check("retry.after_temporary", Level.PASS,
                  f"Retried after a temporary failure ({what}), {len(gaps)} time{'s' if len(gaps) > 1 else ''}, "
                  f"waiting {', '.join(f'{g:.1f}' for g in gaps[:4])}{', …' if len(gaps) > 4 else ''} s; {outcome}",
                  result="retried", ref=REF_TEMPORARY, **ev)]


def _permanent(tries: list[_Try], t0: datetime) -> list[CheckResult]:
    """RFC 5321 §4.2.1: a 5xx means the same request must not be repeated."""
    refused = [(i, a) for i, t in enumerate(tries) for a in t.rows if a.permanent]
    if not refused:
        return []
    for i, a in refused:
        key = address_key(a.rcpt)
        later = [t for t in tries[i + 1:] if t.covers(key)]
        if later:
            whom = f" to {a.rcpt}" if a.rcpt else ""
            return [check("retry.after_permanent", Level.FAIL,
                          f"Tried again{whom} after a permanent failure ({_what(a)} at {a.stage}): "
                          f"{len(later)} more tr{'ies' if len(later) > 1 else 'y'}",
                          result="retried", ref=REF_PERMANENT,
                          fix="Treat a 5xx as final: do not retry it, mark the recipient as bouncing and stop "
                              "mailing it (suppress the address), and tell whoever asked for the mail.",
                          first_reply=a.reply, rule=a.rule, timeline=_timeline([tries[i], *later], t0))]
    i, a = refused[0]
    return [check("retry.after_permanent", Level.PASS,
                  f"Not tried again after the permanent failure ({_what(a)} at {a.stage})", result="stopped",
                  ref=REF_PERMANENT, first_reply=a.reply, rule=a.rule)]


def _bounced(bounces: list[Attempt], tries: list[_Try], t0: datetime) -> list[CheckResult]:
    """A DSN the lab sent says the recipient did not get the mail; mailing it again ignores the bounce."""
    if not bounces:
        return []
    for b in bounces:
        key = address_key(b.rcpt)
        later = [t for t in tries if t.at > b.at and t.covers(key)]
        if later:
            return [check("retry.after_bounce", Level.WARN,
                          f"Mailed {b.rcpt} again after the lab bounced mail to it (DSN status {b.status or '?'} "
                          f"sent {(later[0].at - b.at).total_seconds():.1f} s before)", result="mailed-again",
                          ref=REF_BOUNCE,
                          fix="Read the bounces that arrive at the envelope sender (the Return-Path mailbox): on "
                              "a DSN with Action: failed (5.x.x) stop mailing the Final-Recipient; on Action: "
                              "delayed (4.x.x) do not send a second copy.",
                          dsn_status=b.status, dsn_reply=b.reply, dsn_message=b.dsn, bounced_message=b.message,
                          timeline=_timeline(later, t0))]
    b = bounces[0]
    return [check("retry.after_bounce", Level.PASS, f"Not mailed again after the lab bounced mail to {b.rcpt} "
                  f"(DSN status {b.status or '?'})", result="stopped", ref=REF_BOUNCE, dsn_message=b.dsn)]
