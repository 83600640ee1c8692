"""Provides the Authentication-Results header (RFC 8601) rendered from check results."""

from __future__ import annotations

from collections.abc import Iterable

from lab.core.model import Capture
from lab.core.results import CheckResult


def render(authserv_id: str, capture: Capture, checks: Iterable[CheckResult]) -> str:
    """`Authentication-Results: <id>; spf=...; dkim=...; dmarc=...; arc=...` as one unfolded line."""
    parts: list[str] = []
    for c in checks:
        if c.result is None:
            continue
        if c.id == "spf.mailfrom":
            domain = c.evidence.get("domain")
            ident = capture.envelope.mail_from or (f"postmaster@{domain}" if domain else "")
            prop = f"smtp.mailfrom={_value(ident)}" if ident else ""
            parts.append(f"spf={c.result} {_comment(c)}{prop}".rstrip())
        elif c.id == "spf.helo":
            parts.append(f"spf={c.result} smtp.helo={_value(capture.envelope.helo or '')}")
        elif c.family == "dkim":
            props = ""
            if "d" in c.evidence:
                props = f" header.d={_value(c.evidence['d'])} header.s={_value(c.evidence.get('s', ''))}"
                if c.evidence.get("b"):
                    props += f" header.b={_value(c.evidence['b'][:8])}"
            reason = c.evidence.get("reason")
            comment = f" ({_clean(reason)})" if reason and c.result != "pass" else ""
            parts.append(f"dkim={c.result}{comment}{props}")
        elif c.family == "dmarc":
            policy = c.evidence.get("policy", "").split(" ")[0]
            props = f" header.from={_value(c.evidence['from-domain'])}" if "from-domain" in c.evidence else ""
            comment = f" (p={policy})" if policy else ""
            parts.append(f"dmarc={c.result}{comment}{props}")
        elif c.family == "arc":
            parts.append(f"arc={c.result}")
    if not parts:
        return f"{authserv_id}; none"
    return f"{authserv_id}; " + "; ".join(parts)


def _comment(c: CheckResult) -> str:
    ip = c.evidence.get("client-ip")
    return f"({_clean(c.evidence.get('domain', ''))}: {ip}) " if ip else ""


def _clean(text: str) -> str:
    return text.replace("(", "[").replace(")", "]").replace("\r", " ").replace("\n", " ")[:120]


def _value(text: str) -> str:
    """A property value: a token when possible, otherwise a quoted string (RFC 8601 §2.2)."""
    text = text.replace("\r", "").replace("\n", "")
    if text and all(ch.isalnum() or ch in "@.-_+=/" for ch in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
