"""Provides the CLI's renderings of messages and verdicts: JSON documents and terminal-safe text."""

from __future__ import annotations

from lab.core.model import Capture
from lab.core.results import Level, Verdict
from lab.textsafe import visible

SYMBOL = {Level.PASS: "✓", Level.INFO: "·", Level.WARN: "!", Level.FAIL: "✗"}
FAMILY_ORDER = ("bulk", "transport", "client", "blocklist", "spf", "dkim", "dmarc", "arc", "sender", "headers",
                "content")


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


def _colorise(text: str) -> str:
    colors = {"✓ pass": "\x1b[32m✓ pass\x1b[0m", "! warn": "\x1b[33m! warn\x1b[0m", "✗ fail": "\x1b[31m✗ fail\x1b[0m"}
    for k, v in colors.items():
        text = text.replace(k, v)
    return text
