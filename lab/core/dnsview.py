"""Provides the DNS view the checks read through: a protocol, typed answers, and zone data as a view.

A check never talks to the network. It asks a `DnsView`; production passes overlay zones layered over
the system resolver (lab.resolver), tests pass zone files alone. Values are typed per record type:
A/AAAA/PTR/CNAME/NS give `str`, MX gives `(preference, exchange)`, TXT/SPF give a tuple of the
record's character-strings as `bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

_DIRECTIVES = {"$ORIGIN", "$TTL", "$GENERATE"}  # no $INCLUDE: the core reads no files


class DnsTempError(Exception):
    """The lookup could not be answered now (timeout, SERVFAIL): the RFC 'temperror' case."""


class ZoneSyntaxError(ValueError):
    """A zone overlay file that cannot be parsed; the message names the file and the line."""


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    rtype: str
    records: tuple = ()
    exists: bool = True  # False means NXDOMAIN
    source: str = "overlay"  # "overlay" or "system"


class DnsView(Protocol):
    def lookup(self, name: str, rtype: str) -> Answer:
        """Answer one question; raise DnsTempError when no answer can be had now."""
        ...


def normalise(name: str) -> str:
    return name.strip().rstrip(".").lower()


def txt_records(view: DnsView, name: str) -> list[str]:
    """Each TXT record at `name` with its strings joined, as text."""
    answer = view.lookup(name, "TXT")
    return [b"".join(parts).decode("utf-8", "replace") for parts in answer.records]


def rdata_value(rdtype: str, rdata) -> object:
    """The typed value the views hand out for one dnspython rdata."""
    if rdtype in ("A", "AAAA"):
        return rdata.address
    if rdtype == "MX":
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True).lower())
    if rdtype in ("TXT", "SPF"):
        return tuple(rdata.strings)
    if rdtype in ("PTR", "CNAME", "NS"):
        return rdata.target.to_text(omit_final_dot=True).lower()
    return rdata.to_text()


class ZoneView:
    """Answers from zone data alone: exact names, CNAME chains, wildcards, NXDOMAIN vs NODATA."""

    def __init__(
        self,
        records: dict[tuple[str, str], tuple] | None = None,
        timeouts: Iterable[str] = (),
        label: str = "overlay",
    ):
        self.records: dict[tuple[str, str], tuple] = dict(records or {})
        self.timeouts = frozenset(normalise(n) for n in timeouts)
        self.label = label
        self._names = {name for name, _ in self.records} | self.timeouts
        self._ancestors = {a for n in self._names for a in _ancestors(n)}

    @classmethod
    def from_text(cls, text: str, origin: str = ".", label: str = "overlay") -> ZoneView:
        """Parse RFC 1035 master-file text; SOA and NS are not required, `$ORIGIN` and `$TTL` work."""
        import dns.name  # here: 30 ms of imports that a check reading its zones from lab.resolver's cache skips
        import dns.rdataclass
        import dns.rdatatype
        import dns.tokenizer
        import dns.zonefile

        try:
            manager = dns.zonefile.RRSetsReaderManager(dns.name.from_text(origin), False, dns.rdataclass.IN)
            with manager.writer(True) as txn:
                tok = dns.tokenizer.Tokenizer(text, label)
                dns.zonefile.Reader(
                    tok, dns.rdataclass.IN, txn, allow_directives=_DIRECTIVES, default_ttl=300
                ).read()
            rrsets = manager.rrsets
        except Exception as exc:  # dnspython raises several types for bad zone text
            raise ZoneSyntaxError(str(exc) if label in str(exc) else f"{label}: {exc}") from exc
        records: dict[tuple[str, str], list] = {}
        for rrset in rrsets:
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            key = (normalise(rrset.name.to_text()), rtype)
            records.setdefault(key, []).extend(rdata_value(rtype, rd) for rd in rrset)
        return cls({k: tuple(v) for k, v in records.items()}, label=label)

    @classmethod
    def merge(cls, views: Iterable[ZoneView]) -> ZoneView:
        records: dict[tuple[str, str], tuple] = {}
        timeouts: set[str] = set()
        for v in views:
            for key, values in v.records.items():
                records[key] = records.get(key, ()) + values
            timeouts |= v.timeouts
        return cls(records, timeouts, "overlay")

    def __len__(self) -> int:
        return len(self.records)

    def knows(self, name: str, rtype: str) -> bool:
        """Whether this view, not a fallback, should answer the question."""
        name = normalise(name)
        if name in self.timeouts:
            return True
        if (name, rtype) in self.records or (name, "CNAME") in self.records:
            return True
        wild = self._wildcard(name)
        return wild is not None and ((wild, rtype) in self.records or (wild, "CNAME") in self.records)

    def lookup(self, name: str, rtype: str) -> Answer:
        return self._lookup(normalise(name), rtype.upper(), depth=0, asked=normalise(name))

    def cname(self, name: str) -> str | None:
        """The CNAME target at `name` (exact or by wildcard), if the overlay has one."""
        name = normalise(name)
        owner = name if name in self._names else self._wildcard(name)
        values = self.records.get((owner, "CNAME")) if owner else None
        return values[0] if values else None

    def _lookup(self, name: str, rtype: str, depth: int, asked: str) -> Answer:
        if name in self.timeouts:
            raise DnsTempError(f"{name} {rtype}: lookup timed out ({self.label})")
        owner = name
        if name not in self._names:
            wild = self._wildcard(name)
            if wild is None:
                return Answer(asked, rtype, (), exists=name in self._ancestors, source=self.label)
            owner = wild
        if rtype != "CNAME" and (owner, "CNAME") in self.records and depth < 8:
            target = self.records[(owner, "CNAME")][0]
            return self._lookup(target, rtype, depth + 1, asked)
        return Answer(asked, rtype, self.records.get((owner, rtype), ()), True, self.label)

    def _wildcard(self, name: str) -> str | None:
        """The wildcard owner that synthesises `name` (RFC 4592): `*.` + the closest encloser."""
        if name in self._names or name in self._ancestors:  # existing names, empty non-terminals too
            return None
        for ancestor in _ancestors(name):
            if ancestor in self._names or ancestor in self._ancestors:
                wild = f"*.{ancestor}" if ancestor else "*"
                return wild if wild in self._names else None
        return None


class LayeredView:
    """Overlay zones answered first, per name and type; everything else from `fallback`.

    With no fallback the overlay alone answers (offline mode): unknown names are NXDOMAIN.
    """

    def __init__(self, overlay: ZoneView, fallback: DnsView | None = None):
        self.overlay = overlay
        self.fallback = fallback

    @property
    def offline(self) -> bool:
        return self.fallback is None

    def lookup(self, name: str, rtype: str) -> Answer:
        if self.fallback is None:
            return self.overlay.lookup(name, rtype)
        asked = name
        for _ in range(8):  # follow overlay CNAMEs; a target the overlay does not know is asked of the fallback
            if not self.overlay.knows(name, rtype):
                answer = self.fallback.lookup(name, rtype)
                return answer if name == asked else Answer(asked, rtype, answer.records, answer.exists, answer.source)
            target = self.overlay.cname(name) if rtype != "CNAME" else None
            if target is None:
                answer = self.overlay.lookup(name, rtype)
                return answer if name == asked else Answer(asked, rtype, answer.records, answer.exists, answer.source)
            name = target
        return Answer(asked, rtype, (), True, self.overlay.label)


def _ancestors(name: str) -> list[str]:
    """Proper ancestors, nearest first, ending with the root ("")."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels))] + [""]
