"""Provides Judge: what the analysis adapters tell the core about a message beyond its bytes and DNS.

The core is sans-IO, so everything that needs configuration, the store or the network is gathered here:
the provider profile (a header in the message, else the listener's, else the lab's), the blocklist
zones, the sender's history and the message's earlier refused attempts (its retry history) from the store,
and a second opinion from rspamd or SpamAssassin when one listens on loopback.
"""

from __future__ import annotations

import logging
import socket

from lab import filters
from lab.config import Config
from lab.core.checks.blocklist import DEFAULT_ZONES, BlocklistZones
from lab.core.context import Options
from lab.core.message import ParsedMessage
from lab.core.model import Capture, Listener
from lab.core.profiles import PROFILES, Profile, get_profile

log = logging.getLogger("maillab.judging")

PROFILE_HEADER = "x-maillab-profile"  # a test may choose the profile for one message


def blocklist_zones(setting: str) -> BlocklistZones | None:
    """`default`, `off`, or a comma list of `ip:ZONE` / `domain:ZONE` entries."""
    setting = (setting or "default").strip()
    if setting == "default":
        return DEFAULT_ZONES
    if setting == "off":
        return None
    ip_zones, domain_zones = [], []
    for item in (i.strip() for i in setting.split(",") if i.strip()):
        kind, sep, zone = item.partition(":")
        if not sep or kind not in ("ip", "domain") or not zone:
            raise ValueError(f"blocklists: {item!r} is not ip:ZONE or domain:ZONE (or use default / off)")
        (ip_zones if kind == "ip" else domain_zones).append(zone.strip().rstrip(".").lower())
    return BlocklistZones(tuple(ip_zones), tuple(domain_zones))


def profile_for(config: Config, capture: Capture, message: ParsedMessage) -> Profile:
    chosen = message.first(PROFILE_HEADER)
    if chosen and chosen.strip().lower() in PROFILES:
        return get_profile(chosen)
    return get_profile(config.profiles.get(capture.transport.listener.value, config.profile))


class Judge:
    """Builds the Options for each message; one per analysis worker (it remembers which filters answer)."""

    def __init__(self, config: Config):
        self.config = config
        self.blocklists = blocklist_zones(config.blocklists)
        self._filters: dict[str, int | None] | None = None

    def judge(self, capture: Capture, view, store=None, message: ParsedMessage | None = None):
        """The Verdict the lab gives `capture`: every adapter (analysis worker, re-check, import, check) judges
        through here, so they cannot drift apart. `store` supplies the sender history (None: no history)."""
        from lab.core.analyse import analyse  # here: `serve`'s SMTP process never analyses

        message = message if message is not None else ParsedMessage(capture.raw)
        return analyse(capture, view, self.config.hostname, self.options(capture, message, store), message)

    def options(self, capture: Capture, message: ParsedMessage, store=None) -> Options:
        box = message.from_mailbox
        generated = capture.transport.listener is Listener.LAB  # a bounce or auto-reply the lab wrote
        history = store.history(capture, box.address if box else "") if store is not None and not generated else None
        attempts = store.attempt_group(capture, message.first("message-id")) if store is not None else ()
        external = ()
        if self.config.spam_filters != "off":
            ports = self.filters()
            if any(ports.values()):
                external = tuple(filters.external_scores(capture, rspamd_port=ports["rspamd"],
                                                         spamd_port=ports["spamassassin"]))
        return Options(profile=profile_for(self.config, capture, message), blocklists=self.blocklists,
                       history=history, external=external, attempts=attempts)

    def filters(self) -> dict[str, int | None]:
        """Which spam filters listen on loopback: asked once (a refused connection costs nothing)."""
        if self._filters is None:
            wanted = self.config.spam_filters
            self._filters = {
                "rspamd": filters.RSPAMD_PORT if wanted in ("auto", "rspamd") and _listening(filters.RSPAMD_PORT)
                else None,
                "spamassassin": filters.SPAMD_PORT if wanted in ("auto", "spamassassin")
                and _listening(filters.SPAMD_PORT) else None,
            }
            found = [name for name, port in self._filters.items() if port]
            if found:
                log.info("asking %s for a second opinion on each message", " and ".join(found))
        return self._filters


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
        return True
    except OSError:
        return False
