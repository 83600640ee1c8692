"""Provides target_of(): which domain the DNS tab inspects for a message (its From domain) and which DKIM
selectors to look up (the s= of the message's own signatures for that domain).

Headers are hostile input: at most MAX_SIGNATURES DKIM-Signature fields are read, each cut to
MAX_TAG_CHARS, and nothing here raises for a malformed field.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.core.dnsreport import MAX_SELECTORS, normalise_domain
from lab.core.message import ParsedMessage
from lab.textsafe import shown

MAX_SIGNATURES = 20  # DKIM-Signature fields read for selectors, as the dkim family verifies at most 20
MAX_TAG_CHARS = 8192  # of one DKIM-Signature value: d= and s= come early in any real one


def _s(text: object, limit: int = 300) -> str:
    return shown(str(text), limit)


@dataclass(frozen=True)
class Target:
    """What the DNS tab inspects for one message: the From domain and the selectors its signatures name."""

    domain: str | None  # normalised (lower case, IDNA); None when the message has no usable From domain
    address: str = ""
    selectors: tuple[str, ...] = ()
    problem: str | None = None  # why there is no domain, for the user

    @property
    def key(self) -> tuple[str, tuple[str, ...]] | None:
        """The cache key: one report per domain and set of selectors."""
        return (self.domain, tuple(sorted(self.selectors))) if self.domain else None


def dkim_tags(value: str) -> dict[str, str]:
    """The tags of a DKIM-Signature value (whitespace removed, names lower case); bounded, never raises."""
    tags: dict[str, str] = {}
    for part in value[:MAX_TAG_CHARS].split(";", 64)[:64]:
        name, sep, val = part.partition("=")
        name = "".join(name.split()).lower()
        if sep and name and name not in tags:
            tags[name] = "".join(val.split())
    return tags


def target_of(raw: bytes) -> Target:
    """The From domain of a message and the DKIM selectors its signatures use for that domain (d= equal)."""
    msg = ParsedMessage(raw)
    boxes = msg.from_mailboxes
    if not boxes:
        return Target(None, problem="The message has no From address, so there is no domain to inspect.")
    box = boxes[0]
    if not box.domain:
        return Target(None, box.address, problem=f"The From address {_s(box.address, 120)} has no domain.")
    try:
        domain = normalise_domain(box.domain)
    except ValueError as exc:
        return Target(None, box.address, problem=f"The From domain cannot be looked up: {_s(exc, 200)}")
    selectors: list[str] = []
    signatures = 0
    for h in msg.headers:
        if h.key != "dkim-signature":
            continue
        signatures += 1
        if signatures > MAX_SIGNATURES:
            break
        tags = dkim_tags(h.raw)
        if tags.get("d", "").lower().rstrip(".") == domain and tags.get("s"):
            s = tags["s"].lower()
            if s not in selectors:
                selectors.append(s)
        if len(selectors) >= MAX_SELECTORS:
            break
    return Target(domain, box.address, tuple(selectors))
