"""Provides the provider profiles: which mailbox provider's published sender requirements a message is judged by.

A profile names a provider and whether the sender counts as a bulk (high-volume) sender there, because
Gmail, Yahoo and Outlook.com ask more of bulk senders (SPF *and* DKIM, DMARC, one-click unsubscribe).
Which rules apply to which profile, and the reply codes each provider documents, live in
lab.core.checks.bulk; this module only names the profiles, so the CLI and config can list and validate them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str  # what users type: --profile gmail-bulk
    provider: str  # "Gmail", "Yahoo", "Outlook.com"; "" for the none profile
    bulk: bool  # judged as a bulk / high-volume sender
    description: str
    doc_url: str  # the provider's own page for the requirements

    @property
    def label(self) -> str:
        """How results and the disposition name the profile: "Gmail (bulk)", "Gmail", "Outlook.com (bulk)"."""
        return f"{self.provider} (bulk)" if self.bulk else self.provider


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("gmail-bulk", "Gmail", True,
                "Gmail's requirements for senders of 5,000 or more messages a day to personal Gmail accounts "
                "(enforced since February 2024): SPF and DKIM, DMARC, From alignment, PTR, TLS, RFC 5322 "
                "format, one-click unsubscribe",
                "https://support.google.com/a/answer/81126"),
        Profile("gmail", "Gmail", False,
                "Gmail's requirements for all senders to personal Gmail accounts: SPF or DKIM, PTR, TLS, "
                "RFC 5322 format, DKIM keys of 1024 bits or more",
                "https://support.google.com/a/answer/81126"),
        Profile("yahoo", "Yahoo", True,
                "Yahoo (and AOL) sender requirements, February 2024, bulk rules included: SPF and DKIM, "
                "DMARC that passes, forward and reverse DNS, RFC 5321/5322, one-click unsubscribe and a "
                "visible unsubscribe link",
                "https://senders.yahooinc.com/best-practices/"),
        Profile("outlook", "Outlook.com", True,
                "Outlook.com (Hotmail, Live, MSN) requirements for senders of more than 5,000 messages a day, "
                "enforced with rejections since 5 May 2025: SPF and DKIM pass, DMARC at least p=none and "
                "aligned; unsubscribe links and clean headers recommended",
                "https://techcommunity.microsoft.com/blog/microsoftdefenderforoffice365blog/"
                "strengthening-email-ecosystem-outlook%E2%80%99s-new-requirements-for-high%E2%80%90volume-senders/"
                "4399730"),
        Profile("none", "", False, "No provider profile: only the lab's own checks run", ""),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called `name` (case and surrounding spaces ignored); ValueError names the valid ones."""
    key = (name or "").strip().lower()
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None
