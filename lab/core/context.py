"""Provides the Context handed to every check: the capture, its parsed message and the DNS view."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from lab.core.dnsview import DnsView
from lab.core.message import ParsedMessage
from lab.core.model import Capture


@dataclass
class Context:
    capture: Capture
    dns: DnsView
    authserv_id: str = "maillab"
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
