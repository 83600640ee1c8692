"""Provides the Context handed to every check: the capture, its parsed message, the DNS view and the options."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from lab.core.dnsview import DnsView
from lab.core.message import ParsedMessage
from lab.core.model import Attempt, Capture, SenderHistory


@dataclass(frozen=True)
class Options:
    """How to judge: which provider's rules, which blocklists, what the store and outside filters add."""

    profile: object | None = None  # lab.core.profiles.Profile; None or the "none" profile: no provider rules
    blocklists: object | None = None  # lab.core.checks.blocklist.BlocklistZones; None: no blocklist lookups
    history: SenderHistory | None = None  # None: no history kept (maillab check)
    external: tuple = ()  # lab.core.checks.content.ExternalScore from rspamd/spamd, shown beside the score
    attempts: tuple[Attempt, ...] = ()  # refusals and bounces before this message (its retry history), oldest first


@dataclass
class Context:
    capture: Capture
    dns: DnsView
    authserv_id: str = "maillab"
    options: Options = field(default_factory=Options)
    _message: ParsedMessage | None = field(default=None, repr=False)

    @cached_property
    def message(self) -> ParsedMessage:
        return self._message or ParsedMessage(self.capture.raw)

    @property
    def client_ip(self) -> str:
        return self.capture.client.ip

    @property
    def helo(self) -> str | None:
        return self.capture.envelope.helo
