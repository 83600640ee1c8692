"""Provides the CLI's renderings of messages and verdicts: JSON documents and terminal-safe text."""

from __future__ import annotations

from collections.abc import Iterable

from lab.core.model import DSN_STAGE, Attempt, Capture
from lab.core.results import CheckResult, Level, Verdict
from lab.textsafe import visible

SYMBOL = {Level.PASS: "✓", Level.INFO: "·", Level.WARN: "!", Level.FAIL: "✗"}
FAMILY_ORDER = ("bulk", "retry", "transport", "client", "blocklist", "spf", "dkim", "dmarc", "arc", "sender",
                "headers", "content")


def message_json(capture: Capture, verdict: Verdict | None, analysed_at: str | None = None) -> dict:
    e, t, c = capture.envelope, capture.transport, capture.client
    headers = dict(verdict.headers) if verdict else {}
    return {
        "id": capture.id,
        "received_at": capture.received_at.isoformat(),
        "size": len(capture.raw),
        "envelope": {
            "mail_from": e.mail_from, "rcpt_to": list(e.rcpt_to), "helo": e.helo,
            "client_ip": c.ip, "peer_ip": c.peer_ip, "client_name": c.name, "client_source": c.source,
            "mail_options": list(e.mail_options), "rcpt_options": list(e.rcpt_options), "smtputf8": e.smtputf8,
        },
        "transport": {
            "listener": t.listener.value, "port": t.port,
            "tls": {"version": t.tls_version, "cipher": t.tls_cipher} if t.tls else None,
            "auth": {"mechanism": t.auth_mechanism, "user": t.auth_user} if t.authenticated else None,
        },
        "headers": {k: headers.get(k, "") for k in ("from", "to", "subject", "message_id", "date")},
        "verdict": verdict.level.value if verdict else None,
        "disposition": verdict.disposition if verdict else None,
        "score": verdict.score if verdict else None,
        "profile": verdict.profile if verdict else None,
        "analysed_at": analysed_at,
        "checks": [ch.to_dict() for ch in verdict.checks] if verdict else [],
        "authentication_results": verdict.authentication_results if verdict else None,
    }


def one_line(capture: Capture, verdict: Verdict) -> str:
    """`#12 FAIL relay from -> to "subject" spf=… dkim=… dmarc=…` for `serve`."""
    words = []
    for prefix in ("spf.mailfrom", "dkim", "dmarc"):
        results = [c.result for c in verdict.checks if c.id == prefix or (prefix == "dkim" and c.family == "dkim")]
        results = [r for r in results if r]
        words.append(f"{prefix.split('.')[0]}={'/'.join(results) if results else '-'}")
    subject = verdict.headers.get("subject", "")
    rcpt = ",".join(capture.envelope.rcpt_to[:3]) + ("…" if len(capture.envelope.rcpt_to) > 3 else "")
    return visible(
        f"#{capture.id} {SYMBOL[verdict.level]} {verdict.level.value.upper():4} {capture.transport.listener.value:10} "
        f"{capture.envelope.mail_from or '<>'} -> {rcpt} \"{subject[:60]}\" " + " ".join(words)
    )


def verdict_text(capture: Capture, verdict: Verdict | None, color: bool = False) -> str:
    e, t, c = capture.envelope, capture.transport, capture.client
    lines = []
    head = f"Message #{capture.id}" if capture.id is not None else "Message"
    lines.append(f"{head}  received {capture.received_at:%Y-%m-%d %H:%M:%S %Z}  {len(capture.raw)} bytes")
    lines.append(f"  listener  {t.listener.value}" + (f" port {t.port}" if t.port else "")
                 + (f"  TLS {t.tls_version}" if t.tls else "  no TLS")
                 + (f"  AUTH {t.auth_mechanism} as {t.auth_user}" if t.authenticated else ""))
    lines.append(f"  client    {c.ip} ({c.source})" + (f" peer {c.peer_ip}" if c.peer_ip and c.peer_ip != c.ip else "")
                 + (f" name {c.name}" if c.name else ""))
    lines.append(f"  envelope  MAIL FROM:<{e.mail_from}>  RCPT TO: {', '.join(e.rcpt_to) or '-'}  HELO {e.helo or '-'}")
    if verdict is None:
        lines.append("  (not analysed yet)")
        return visible("\n".join(lines), keep_newlines=True)
    h = verdict.headers
    for key in ("from", "to", "subject"):
        lines.append(f"  {key:9} {h.get(key, '')}")
    lines.append("")
    lines.append(f"Verdict: {SYMBOL[verdict.level]} {verdict.level.value.upper()} — {verdict.disposition}")
    if verdict.score is not None:
        lost = [c for c in verdict.checks if c.points]
        lines.append(f"Score: {verdict.score:g}/10" + (f" (profile {verdict.profile})" if verdict.profile != "none"
                                                       else "") + ("; points lost: " + ", ".join(
            f"{c.id} -{c.points:g}" for c in sorted(lost, key=lambda c: -c.points)[:8]) if lost else ""))
    for family in FAMILY_ORDER + tuple(sorted(set(verdict.by_family()) - set(FAMILY_ORDER))):
        checks = verdict.by_family().get(family)
        if not checks:
            continue
        lines.append(f"\n[{family}]")
        for ch in checks:
            result = f" ({ch.result})" if ch.result else ""
            points = f" [-{ch.points:g}]" if ch.points else ""
            lines.append(f"  {SYMBOL[ch.level]} {ch.level.value:4} {ch.id}{result}{points}: {ch.summary}")
            for k, v in ch.evidence.items():
                lines.append(f"        {k}: {v}")
            if ch.fix and ch.level in (Level.WARN, Level.FAIL, Level.INFO):
                lines.append(f"      fix: {ch.fix}")
    lines.append("")
    lines.append(f"Authentication-Results: {verdict.authentication_results}")
    text = visible("\n".join(lines), keep_newlines=True)
    return _colorise(text) if color else text


def attempt_json(a: Attempt, session: list | None = None) -> dict:
    """One refused attempt (or a bounce the lab sent) as `show --json` and `list --attempts --json` print it."""
    doc = {
        "id": a.id,
        "at": a.at.isoformat(),
        "kind": "bounce" if a.stage == DSN_STAGE else "refused",
        "stage": a.stage,
        "reply": a.reply,
        "code": a.code,
        "status": a.status,
        "rule": a.rule,
        "delay": a.delay,
        "disconnect": a.disconnect,
        "envelope": {"mail_from": a.mail_from, "rcpt": a.rcpt, "recipients": [list(r) for r in a.recipients],
                     "helo": a.helo, "client_ip": a.client_ip, "peer_ip": a.peer_ip, "client_source": a.client_source},
        "transport": {"listener": a.listener.value, "port": a.port, "tls_version": a.tls_version,
                      "auth_user": a.auth_user},
        "size": a.size,
        "message_id": a.message_id,
        "transaction": a.txn,
        "message": a.message,  # the message stored in the same transaction, or (a bounce) the one it reports on
        "dsn": a.dsn,  # a bounce: the DSN message the lab stored for the envelope sender
    }
    if session is not None:
        doc["session"] = session
    return doc


def attempt_line(a: Attempt) -> str:
    """`a12  2026-01-02 10:11:12.345  rcpt  bob@example.net  451 4.7.1 ...  [rule]`, terminal-safe."""
    when = a.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    if a.stage == DSN_STAGE:
        what = f"bounce sent (DSN #{a.dsn}) for message #{a.message}: {a.reply}"
    else:
        what = a.reply or "connection closed without a reply"
        if a.delay:
            what += f" (after {a.delay:g} s)"
        if a.disconnect and a.reply:
            what += ", then disconnected"
        if a.message is not None:
            what += f"; the other recipients went into message #{a.message}"
    whom = a.rcpt or (f"MAIL FROM:<{a.mail_from}>" if a.mail_from is not None else f"client {a.client_ip}")
    ident = f"a{a.id}" if a.id is not None else "a?"
    return visible(f"{ident:<7} {when}  {a.stage:11} {whom}  {what}  [{a.rule}]")


def attempts_text(attempts: Iterable[Attempt], checks: Iterable[CheckResult] = ()) -> str:
    """The Attempts section of `show`: what the lab refused or bounced for this message, then its retry verdict."""
    attempts = list(attempts)
    if not attempts:
        return ""
    lines = ["", f"Attempts ({len(attempts)}): refusals before this message and in its transaction, and bounces"]
    lines += ["  " + attempt_line(a) for a in attempts]
    for ch in checks:
        lines.append(visible(f"  {SYMBOL[ch.level]} {ch.level.value:4} {ch.id}: {ch.summary}"))
    return "\n".join(lines)


def group_json(group, checks: Iterable[CheckResult]) -> dict:
    """One group of `maillab list --attempts --json`: a sender and recipient, its attempts and retry verdict."""
    return {
        "mail_from": group.mail_from,
        "rcpt": group.rcpt,
        "client_ip": group.client_ip,
        "message": group.message,
        "accepted_at": group.accepted_at.isoformat() if group.accepted_at else None,
        "attempts": [attempt_json(a) for a in group.attempts],
        "checks": [c.to_dict() for c in checks],
    }


def group_text(group, checks: Iterable[CheckResult]) -> str:
    who = (f"MAIL FROM:<{group.mail_from}> -> {group.rcpt or '(before RCPT)'}" if group.mail_from is not None
           else f"client {group.client_ip} (before MAIL)")
    n = len(group.attempts)
    end = f", then accepted as message #{group.message}" if group.message is not None else ", not delivered"
    lines = [f"{who}: {n} attempt{'s' if n > 1 else ''}{end}"]
    lines += ["  " + attempt_line(a) for a in group.attempts]
    for ch in checks:
        lines.append(f"  {SYMBOL[ch.level]} {ch.level.value:4} {ch.id}: {ch.summary}")
        if ch.fix and ch.level in (Level.WARN, Level.FAIL):
            lines.append(f"      fix: {ch.fix}")
    return visible("\n".join(lines), keep_newlines=True)


def _colorise(text: str) -> str:
    colors = {"✓ pass": "\x1b[32m✓ pass\x1b[0m", "! warn": "\x1b[33m! warn\x1b[0m", "✗ fail": "\x1b[31m✗ fail\x1b[0m"}
    for k, v in colors.items():
        text = text.replace(k, v)
    return text
