"""Provides the blocklist checks: the client IP, the sender's domains and the linked domains on DNS blocklists.

A listing on Spamhaus ZEN or SpamCop gets mail refused at connect time by many receivers, and a link to
a domain on Spamhaus DBL, URIBL or SURBL is one of the strongest content signals filters have. Every
list answers in DNS (RFC 5782): an A record under the list's zone means "listed", and its 127.x.y.z
value says why. The values differ per list, and some are not listings at all: Spamhaus answers
127.255.255.254 to queries relayed by public resolvers, URIBL and SURBL answer 127.0.0.1 to refused
queries. Those mean "unknown", never "listed". The TXT record at the same name carries the list's reason.

Which zones are asked is the caller's decision (`BlocklistZones`); the public ones only make sense when
the lab may use system DNS. Lookups are bounded: at most MAX_LINK_DOMAINS link domains, each zone is
skipped after it timed out or refused once.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from lab.core.checks.dmarc import org_domain
from lab.core.context import Context
from lab.core.dnsview import DnsTempError, DnsView, txt_records
from lab.core.links import link_domains
from lab.core.results import CheckResult, Level, check
from lab.textsafe import shown

MAX_LINK_DOMAINS = 20
MAX_REASON = 200  # characters of a list's TXT reason kept in evidence
REF = "RFC 5782 §2"
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# RFC 5737 / RFC 3849 documentation ranges stand in for public addresses in tests and zone overlays.
_DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in
                       ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


@dataclass(frozen=True, slots=True)
class BlocklistZones:
    """The DNS zones to ask: `ip_zones` list addresses (DNSBL), `domain_zones` list domains (RHSBL/URIBL)."""

    ip_zones: tuple[str, ...] = field(default=())
    domain_zones: tuple[str, ...] = field(default=())


DEFAULT_ZONES = BlocklistZones(
    ip_zones=("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"),
    domain_zones=("dbl.spamhaus.org", "multi.uribl.com", "multi.surbl.org"),
)

# --- what the answers mean ---------------------------------------------------------------------------------

_ZEN = {
    2: "SBL: Spamhaus Blocklist, a verified spam source or spam operation",
    3: "CSS: Spamhaus CSS, low-reputation mail seen from this address (snowshoe spam, bad HELO, hijacked host)",
    4: "XBL: exploited host (malware, botnet or open proxy, from the CBL)",
    5: "XBL: exploited host",
    6: "XBL: exploited host",
    7: "XBL: exploited host",
    9: "DROP: a hijacked netblock or one run by criminals (Spamhaus DROP/EDROP)",
    10: "PBL (ISP maintained): an end-user range that should not send mail straight to MX servers",
    11: "PBL (Spamhaus maintained): an end-user range that should not send mail straight to MX servers",
}
_DBL = {
    2: "spam domain",
    3: "spammed redirector domain",
    4: "phishing domain",
    5: "malware domain",
    6: "botnet command-and-control domain",
    102: "abused legitimate domain, used in spam",
    103: "abused legitimate domain, a spammed redirector",
    104: "abused legitimate domain, used in phishing",
    105: "abused legitimate domain, used for malware",
    106: "abused legitimate domain, used for botnet command and control",
}
_SPAMHAUS_ERRORS = {
    252: "query error: typing error in the DNSBL name",
    254: "query refused: it came through a public/open resolver (e.g. 8.8.8.8, 1.1.1.1)",
    255: "query refused: excessive number of queries",
}
_URIBL_BITS = {2: "black: domain used by spammers", 4: "grey: domain seen in bulk mail, may honour opt-out",
               8: "red: young or privacy-protected domain active in mail flow"}
_SURBL_BITS = {4: "DM list", 8: "PH: phishing", 16: "MW: malware", 32: "CT list", 64: "ABUSE: spam and abuse",
               128: "CR: cracked (compromised) site"}
_SINGLE = {"spamcop.net": "SpamCop: reported as a spam source by SpamCop users",
           "barracudacentral.org": "Barracuda Reputation Block List: poor sending reputation"}


def explain(zone: str, code: str) -> tuple[str, str]:
    """What one A-record answer from `zone` means: ("listed" | "error" | "ignored", words for people).

    "error" answers are the list refusing or failing the query (unknown, not listed); "ignored" answers
    are not blocklist answers at all (an address outside 127/8, e.g. a resolver rewriting NXDOMAIN).
    """
    try:
        addr = ipaddress.IPv4Address(code.strip())
    except ValueError:
        return "ignored", f"{shown(code)} is not an IPv4 address"
    o = addr.packed
    if o[0] != 127:
        return "ignored", f"{addr} is outside 127.0.0.0/8, not a blocklist answer (a resolver rewriting NXDOMAIN?)"
    z = zone.lower().rstrip(".")
    labels = z.split(".")
    if "spamhaus" in z:
        if o[1:3] == b"\xff\xff":
            return "error", "Spamhaus " + _SPAMHAUS_ERRORS.get(o[3], "query error (127.255.255.0/24 is not a listing)")
        if "dbl" in labels:
            if o[1:3] == b"\x00\x01":
                if o[3] == 255:
                    return "error", "Spamhaus DBL: IP address queries are not allowed"
                return "listed", "DBL: " + _DBL.get(o[3], f"listed (code {addr})")
            return "listed", f"DBL: listed (unexpected code {addr})"
        if "zrd" in labels and o[1:3] == b"\x00\x02":
            return "listed", f"ZRD: zero-reputation domain, first seen about {o[3]} hours ago"
        if o[1:3] == b"\x00\x00" and o[3] in _ZEN:
            return "listed", _ZEN[o[3]]
        return "listed", f"Spamhaus: listed (unexpected code {addr})"
    if "uribl" in labels or "surbl" in labels:
        if o[1:3] != b"\x00\x00":
            return "listed", f"listed (unexpected code {addr})"
        if o[3] & 1:
            return "error", "query refused (127.0.0.1: the list blocks this resolver or too many queries)"
        bits = _URIBL_BITS if "uribl" in labels else _SURBL_BITS
        names = [text for bit, text in bits.items() if o[3] & bit]
        other = o[3] & ~sum(bits) & 0xFF
        if other:
            names.append(f"bitmask {other}")
        return "listed", "; ".join(names) or f"listed (code {addr})"
    if addr == ipaddress.IPv4Address("127.0.0.1"):
        return "error", "answered 127.0.0.1, which lists use for 'not listed' tests or to refuse queries"
    for suffix, text in _SINGLE.items():
        if z == suffix or z.endswith("." + suffix):
            return "listed", f"{text} ({addr})"
    return "listed", f"listed ({addr})"


# --- lookups -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Finding:
    """The answer for one subject (an IP or a domain) on one zone."""

    subject: str
    zone: str
    status: str  # "listed", "clean", "error" (the list refused: unknown) or "temperror"
    codes: tuple[str, ...] = ()
    meanings: tuple[str, ...] = ()
    reason: str = ""  # the list's TXT record
    repeated: bool = False  # not asked: the zone already timed out or refused for this message

    def describe(self) -> str:
        if self.status == "temperror":
            text = "lookup timed out"
        elif self.status in ("listed", "error"):
            text = "; ".join(f"{c} {m}" for c, m in zip(self.codes, self.meanings, strict=True))
            text += f"; reason: {self.reason}" if self.reason else ""
        else:
            text = "not listed"
        return text + (" (not asked again)" if self.repeated else "")


class _Asker:
    """Asks zones one name at a time. A zone that timed out or refused is not asked again in this message:
    its first answer stands for the rest (a dead list must not cost 20 timeouts)."""

    def __init__(self, dns: DnsView):
        self.dns = dns
        self.broken: dict[str, Finding] = {}

    def ask(self, subject: str, query: str, zone: str) -> Finding:
        first = self.broken.get(zone)
        if first is not None:
            return Finding(subject, zone, first.status, first.codes, first.meanings, "", repeated=True)
        name = f"{query}.{zone}"
        try:
            answer = self.dns.lookup(name, "A")
        except DnsTempError:
            self.broken[zone] = found = Finding(subject, zone, "temperror")
            return found
        listed: list[tuple[str, str]] = []
        errors: list[tuple[str, str]] = []
        for record in list(answer.records)[:8]:
            kind, meaning = explain(zone, str(record))
            if kind == "listed":
                listed.append((str(record), meaning))
            elif kind == "error":
                errors.append((str(record), meaning))
        if not listed and not errors:
            return Finding(subject, zone, "clean")
        chosen = listed or errors
        found = Finding(subject, zone, "listed" if listed else "error", tuple(c for c, _ in chosen),
                        tuple(m for _, m in chosen), self._reason(name))
        if not listed:
            self.broken[zone] = found
        return found

    def _reason(self, name: str) -> str:
        try:
            texts = txt_records(self.dns, name)
        except DnsTempError:
            return ""
        return shown(texts[0], MAX_REASON) if texts else ""


def check_blocklist(ctx: Context, zones: BlocklistZones) -> list[CheckResult]:
    """blocklist.ip, blocklist.domain and blocklist.links: one result each."""
    asker = _Asker(ctx.dns)
    return [_ip(ctx, zones, asker), _domains(ctx, zones, asker), _links(ctx, zones, asker)]


def _ip(ctx: Context, zones: BlocklistZones, asker: _Asker) -> CheckResult:
    """Receivers ask IP blocklists at connect time; a ZEN or SpamCop listing is usually a 5xx there."""
    c = ctx.capture.client
    addr = _address(c.ip)
    if addr is None or not _public(addr):
        why = "loopback" if c.is_loopback else "not an IP address" if addr is None else "a private address"
        return check("blocklist.ip", Level.INFO, f"The client {shown(c.ip)} is {why}: not looked up on blocklists",
                     result="none", client_ip=shown(c.ip),
                     fix="Tell the lab the production sending IP (`--client-ip IP`, or XCLIENT ADDR=IP) to have "
                         "it looked up.")
    if not zones.ip_zones:
        return check("blocklist.ip", Level.INFO, "No IP blocklists are configured", result="none", client_ip=str(addr))
    query = reversed_ip(addr)
    findings = [asker.ask(str(addr), query, zone) for zone in zones.ip_zones]
    return _verdict("blocklist.ip", findings, [str(addr)], f"the client IP {addr}", _ip_fix,
                    {"client-ip": str(addr), "query": query})


def _domains(ctx: Context, zones: BlocklistZones, asker: _Asker) -> CheckResult:
    """The From domain (and the MAIL FROM domain) on domain lists: a listed sender domain taints every message."""
    box = ctx.message.from_mailbox
    wanted = [(box.domain if box else None, "From"), (ctx.capture.envelope.mail_from_domain, "MAIL FROM")]
    subjects: dict[str, list[str]] = {}
    for domain, role in wanted:
        org = _org(domain)
        if org:
            subjects.setdefault(org, []).append(role)
    labelled = [f"{d} ({' and '.join(r)})" for d, r in subjects.items()]
    if not subjects:
        return check("blocklist.domain", Level.INFO, "No sender domain to look up", result="none")
    if not zones.domain_zones:
        return check("blocklist.domain", Level.INFO, "No domain blocklists are configured", result="none",
                     domains=labelled)
    findings = [asker.ask(d, d, zone) for d in subjects for zone in zones.domain_zones]
    what = f"the sender domain {next(iter(subjects))}" if len(subjects) == 1 else "the sender domains"
    return _verdict("blocklist.domain", findings, list(subjects), what, _domain_fix, {"domains": labelled})


def _links(ctx: Context, zones: BlocklistZones, asker: _Asker) -> CheckResult:
    """Domains linked from the body, each as its organisational domain, on URI lists (DBL, URIBL, SURBL)."""
    hosts = link_domains(ctx.capture.raw)
    subjects: list[str] = []
    skipped: list[str] = []
    more = 0
    for host in hosts:
        org = _org(host)
        if org is None:
            if len(skipped) < 5:
                skipped.append(shown(host, 80))
            continue
        if org in subjects:
            continue
        if len(subjects) >= MAX_LINK_DOMAINS:
            more += 1
            continue
        subjects.append(org)
    ev: dict[str, object] = {"not-looked-up": skipped}
    if more:
        ev["beyond-limit"] = f"{more} more domain(s) not looked up (at most {MAX_LINK_DOMAINS})"
    if not subjects:
        return check("blocklist.links", Level.INFO, "No linked domains to look up", result="none", **ev)
    ev["domains"] = subjects
    if not zones.domain_zones:
        return check("blocklist.links", Level.INFO, "No domain blocklists are configured", result="none", **ev)
    findings = [asker.ask(d, d, zone) for d in subjects for zone in zones.domain_zones]
    return _verdict("blocklist.links", findings, subjects,
                    f"{len(subjects)} linked domain{'s' if len(subjects) != 1 else ''}", _links_fix, ev)


def _verdict(cid: str, findings: list[Finding], subjects: list[str], what: str, fix, ev: dict) -> CheckResult:
    """One result from every finding: listed beats timed out, which beats refused, which beats clean."""
    zones = list(dict.fromkeys(f.zone for f in findings))
    detail = {f"{f.subject} on {f.zone}" if len(subjects) > 1 else f.zone: f.describe()
              for f in findings if f.status != "clean"}
    ev = {**ev, "lists": zones, **detail}
    listed = [f for f in findings if f.status == "listed"]
    if listed:
        who = list(dict.fromkeys(f.subject for f in listed))
        where = list(dict.fromkeys(f.zone for f in listed))
        if len(subjects) == 1:
            head = f"{_cap(what)} is listed"
        else:
            names = ", ".join(who[:3]) + (" and more" if len(who) > 3 else "")
            head = f"{names} {'is' if len(who) == 1 else 'are'} listed"
        return check(cid, Level.FAIL, f"{head} on {', '.join(where)}: {listed[0].meanings[0]}", result="listed",
                     ref=REF, fix=fix(listed), **ev)
    temp = list(dict.fromkeys(f.zone for f in findings if f.status == "temperror"))
    if temp:
        return check(cid, Level.WARN, f"Could not ask {', '.join(temp)} about {what}: the lookup timed out",
                     result="temperror", ref=REF, **ev,
                     fix="Check the lab's DNS (system resolver or --nameserver) and judge the message again.")
    clean = [z for z in zones if all(f.status == "clean" for f in findings if f.zone == z)]
    lists = f"{len(clean)} list{'s' if len(clean) != 1 else ''}"
    refused = list(dict.fromkeys(f.zone for f in findings if f.status == "error"))
    if refused:
        known = f"not listed on {lists}; " if clean else ""
        return check(cid, Level.INFO, f"{_cap(what)}: {known}unknown on {', '.join(refused)}, which refused the "
                     "query", result="unknown", ref=REF, **ev,
                     fix="Blocklists refuse queries relayed by big public resolvers; give the lab a resolver of "
                         "your own (--nameserver) or the list's own query service (e.g. a Spamhaus DQS key).")
    return check(cid, Level.PASS, f"{_cap(what)}: not listed on {lists}", result="pass", ref=REF, **ev)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _ip_fix(listed: list[Finding]) -> str:
    if all(m.startswith("PBL") for f in listed for m in f.meanings):
        return ("The IP is an end-user address that should not deliver to MX servers directly: send through "
                "your provider's or ESP's mail server (port 587 with AUTH). If it is a real mail server, ask "
                "the ISP to remove it from the PBL, or remove it yourself at check.spamhaus.org.")
    return ("Look the IP up on each list's site (check.spamhaus.org, spamcop.net, barracudacentral.org), fix "
            "the cause it names (a compromised host or account, an open relay, unsolicited mail), then request "
            "removal. Until then, send through a relay or ESP with a clean reputation.")


def _domain_fix(listed: list[Finding]) -> str:
    return ("Look the domain up on each list's site (check.spamhaus.org, uribl.com, surbl.org), fix the cause it "
            "names (a compromised site or account, spam sent in its name), then request removal; until then, "
            "send from a domain that is not listed.")


def _links_fix(listed: list[Finding]) -> str:
    names = ", ".join(sorted({f.subject for f in listed})[:5])
    return (f"Remove or replace the links to {names}: a link to a listed domain marks the whole message. If the "
            "domain is your own (or your ESP's click-tracking domain), clean it up and request removal at the "
            "list's site (check.spamhaus.org, uribl.com, surbl.org).")


# --- names -------------------------------------------------------------------------------------------------


def reversed_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The DNSBL query label for an address: reversed octets (IPv4) or reversed nibbles (IPv6), RFC 5782 §2."""
    pointer = addr.reverse_pointer
    return pointer.rsplit(".", 2)[0]


def _address(text: str | None):
    try:
        addr = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _public(addr) -> bool:
    """Worth asking a public list about: a global address, or a documentation one standing in for it."""
    if any(addr in net for net in _DOCUMENTATION if net.version == addr.version):
        return True
    return addr.is_global and not addr.is_multicast


def _org(domain: str | None) -> str | None:
    """The organisational domain of `domain` in ASCII (A-labels), or None when it is not a usable name."""
    name = (domain or "").strip().rstrip(".").lower()[:253]
    if not name or "." not in name or _address(name.strip("[]")) is not None:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            return None
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    org = org_domain(name)
    return org if "." in org else None
