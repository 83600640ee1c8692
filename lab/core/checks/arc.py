"""Provides ARC (RFC 8617) chain validation: whether the forwarders that sealed the message vouch for it.

Forwarders and mailing lists break SPF (they send from their own IP) and often DKIM (subject tags,
footers). ARC lets each such intermediary seal what it saw: its Authentication-Results (the AAR), a
signature over the message (the AMS) and a seal over the chain so far (the AS). A receiver that trusts
the sealer can then accept the verdict the forwarder reached before the message was changed. dkimpy does
the cryptography; as in the DKIM check, each verification gets its own logger and a DNS function over
the lab's DNS view, so the result carries dkimpy's reason and the chain's sealers as evidence.
"""

from __future__ import annotations

import logging
import re

import dkim

from lab.core.checks.dkim import Collector, key_lookup
from lab.core.context import Context
from lab.core.results import AuthResult, CheckResult, Level, check

MIN_KEY_BITS = 1024
ARC_FIELDS = ("arc-seal", "arc-message-signature", "arc-authentication-results")
REF = "RFC 8617 §5.2"

_FIX = ("Receivers ignore a failed chain and judge SPF, DKIM and DMARC alone. If you run the forwarder or list, "
        "seal after your last change to the message (footers, subject tags, re-encoding), publish the sealing "
        "key at <s>._domainkey.<d>, and add a new ARC set only on top of the sets already there.")


MAX_INSTANCES = 50


def check_arc(ctx: Context) -> list[CheckResult]:
    if not any(ctx.message.get_all(name) for name in ARC_FIELDS):
        return [check("arc", Level.INFO, "No ARC chain (the message was not forwarded through an ARC sealer)",
                      result=AuthResult.NONE, ref="RFC 8617")]
    seals = len(ctx.message.get_all("arc-seal"))
    if seals > MAX_INSTANCES:  # RFC 8617 §4.2.1: i= never exceeds 50; verifying more would be unbounded work
        return [check("arc", Level.WARN, f"The message has {seals} ARC sets; at most {MAX_INSTANCES} are allowed, "
                      "so the chain fails", result=AuthResult.FAIL, ref="RFC 8617 §4.2.1", sets=seals,
                      fix="Something is looping the message through ARC sealers; find the loop.")]
    collector = Collector(logging.ERROR)
    logger = logging.Logger("maillab.arc", logging.ERROR)
    logger.addHandler(collector)
    lookup: dict[str, object] = {}
    dnsfunc = key_lookup(ctx.dns, lookup)

    try:
        cv, sets, reason = dkim.ARC(ctx.capture.raw, logger=logger, minkey=MIN_KEY_BITS).verify(dnsfunc=dnsfunc)
    except Exception as exc:  # noqa: BLE001 - dkimpy raises a zoo of types for malformed ARC fields; each is a fail
        cv, sets, reason = dkim.CV_Fail, [], _clean(str(exc)) or type(exc).__name__
    sets = sorted(sets, key=lambda s: s.get("instance", 0))  # dkimpy lists the newest first
    if cv == dkim.CV_Pass:
        return [_passed(sets)]
    if cv == dkim.CV_None:  # ARC fields are present, but none carries an instance tag dkimpy can read
        reason = "ARC header fields without a valid i= instance tag"
    return [_failed(sets, reason, lookup, collector.messages)]


def _passed(sets: list[dict]) -> CheckResult:
    newest = sets[-1]
    d, s = _text(newest.get("as-domain")), _text(newest.get("as-selector"))
    n = len(sets)
    seals = {f"seal_{x['instance']}": f"d={_text(x.get('as-domain'))} s={_text(x.get('as-selector'))}" for x in sets}
    return check("arc", Level.PASS, f"The ARC chain of {n} set{'s' if n > 1 else ''} validates; "
                 f"newest seal by {d} (selector {s})", result=AuthResult.PASS, ref=REF, instances=n, **seals,
                 oldest_authserv_id=_authserv_id(sets[0].get("aar-value")),
                 newest_authserv_id=_authserv_id(newest.get("aar-value")))


def _failed(sets: list[dict], reason: str, lookup: dict[str, str], logged: list[str]) -> CheckResult:
    detail = "; ".join(dict.fromkeys(_clean(m) for m in logged if _clean(m) != reason)) or None
    seals = {f"seal_{x['instance']}": _describe(x) for x in sets if "instance" in x}
    evidence = dict(instances=len(sets) or None, **seals, detail=detail)
    if "temperror" in lookup:
        return check("arc", Level.WARN, "An ARC key lookup failed temporarily; the chain cannot be judged now",
                     result=AuthResult.TEMPERROR, ref=REF, reason=lookup["temperror"], **evidence,
                     fix="Check that the sealing domain's name servers answer; receivers will retry later.")
    return check("arc", Level.WARN, f"The ARC chain fails: {reason}", result=AuthResult.FAIL, ref=REF, fix=_FIX,
                 reason=reason, **evidence)


def _describe(result: dict) -> str:
    """One set as `d=... s=... cv=...` with what did not validate."""
    parts = [f"d={_text(result.get('as-domain') or result.get('ams-domain'))}",
             f"s={_text(result.get('as-selector') or result.get('ams-selector'))}"]
    if "cv" in result:
        parts.append(f"cv={_text(result['cv'])}")
    if result.get("ams-valid") is False:
        parts.append("message signature invalid")
    if result.get("as-valid") is False:
        parts.append("seal invalid")
    return " ".join(parts)


def _authserv_id(aar: bytes | None) -> str | None:
    """The authserv-id of an ARC-Authentication-Results value (`i=1; lists.example.org; ...`)."""
    if not aar:
        return None
    text = re.sub(r"\([^)]*\)", " ", aar.decode("utf-8", "replace"))
    fields = text.split(";")
    words = fields[1].split() if len(fields) > 1 else []
    return words[0] if words else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "?" if value is None else str(value)


def _clean(text: str) -> str:
    return re.sub(r"b'([^']*)'", r"\1", text).strip()  # dkimpy prints bytes reprs
