"""Provides the DNS record inspector: what a domain's SPF, DMARC, DKIM and MX records tell a receiver, in words,
and the concrete changes that would fix what is wrong.

It reads through a DnsView like every check, so a user can draft records in an overlay zone and see the
verdict before publishing them. DNS data is hostile input here: includes are followed at most 10 deep and
30 lookups in all, records are cut at 100 terms, names are validated before they are asked, and a DNS
failure (temperror) is reported in its section, never raised. Text from DNS is kept as it is; whoever
shows it escapes it (lab.textsafe).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from dkim.util import parse_tag_value

from lab.core.checks.dkim import MIN_KEY_BITS, _key_facts
from lab.core.checks.dmarc import DmarcRecord, _policy, discover, org_domain
from lab.core.checks.spf import _SPF_V
from lab.core.dnsview import DnsTempError, DnsView, txt_records
from lab.core.results import Level

SPF_LOOKUP_LIMIT = 10  # RFC 7208 §4.6.4
SPF_VOID_LIMIT = 2  # RFC 7208 §4.6.4
SPF_MX_NAMES = 10  # address lookups per mx mechanism, RFC 7208 §4.6.4
MAX_DEPTH = 10  # include/redirect nesting followed
MAX_FOLLOWED = 30  # DNS-querying SPF terms actually looked up; the rest are counted, not asked
MAX_TERMS = 100  # terms read per SPF record
MAX_SELECTORS = 20  # selectors asked for, besides the common ones
MAX_REPORT_URIS = 5  # rua/ruf destinations whose authorisation is looked up
MAX_MX_HOSTS = 10  # exchanges whose addresses are looked up
COMMON_SELECTORS = ("default", "google", "selector1", "selector2", "k1", "s1", "s2", "mail", "dkim")
SELECTOR_NOTE = ("DNS cannot list DKIM selectors: only the selectors named (seen in captured mail or given with "
                 "--selector) and a few common ones were looked up.")


@dataclass(frozen=True)
class Recommendation:
    """One thing to change. FAIL: it affects delivery now; WARN: receivers trust the domain less; INFO: advice."""

    level: Level
    section: str  # spf, dmarc, dkim, mx
    problem: str
    fix: str | None = None
    ref: str | None = None


# SPF -------------------------------------------------------------------------------------------------

@dataclass
class SpfTerm:
    """One term of an SPF record as a receiver reads it; `child` is the record an include/redirect leads to."""

    text: str
    kind: str  # "mechanism" or "modifier"
    name: str
    qualifier: str = ""  # + - ~ ? for mechanisms
    target: str = ""  # domain-spec or network
    meaning: str = ""
    lookups: int = 0  # DNS-querying terms this term costs, the records it leads to included
    void: bool = False  # its lookup found nothing (NXDOMAIN or no records)
    evaluated: bool = True  # False for mechanisms after `all`, which receivers never reach
    problem: str | None = None
    note: str | None = None
    addresses: list[str] = field(default_factory=list)  # a: the addresses; mx: the exchanges
    child: SpfNode | None = None


@dataclass
class SpfNode:
    """The SPF record of one domain in the include/redirect tree."""

    domain: str
    via: str = ""  # "", "include" or "redirect"
    status: str = "ok"  # ok, none (no record), multiple, syntax, temperror, too-deep
    records: list[str] = field(default_factory=list)
    terms: list[SpfTerm] = field(default_factory=list)
    more_terms: int = 0  # terms past MAX_TERMS, not read
    lookups: int = 0  # DNS-querying terms in this record and below
    ends_with: str | None = None  # "-all", "~all", "?all", "+all", or None (default: neutral)


@dataclass
class SpfSection:
    domain: str
    status: str = "none"  # ok, none, permerror, temperror
    record: str | None = None
    tree: SpfNode | None = None
    lookups: int = 0
    lookup_limit: int = SPF_LOOKUP_LIMIT
    void_lookups: int = 0
    void_limit: int = SPF_VOID_LIMIT
    complete: bool = True  # False when the depth or lookup bound stopped the walk: counts are lower bounds
    ends_with: str | None = None
    error: str | None = None


_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_COUNTED = {"include", "a", "mx", "ptr", "exists", "redirect"}  # RFC 7208 §4.6.4
_QUALIFIER = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_ALL_MEANING = {
    "+": "every other host → pass: anyone at all may send as this domain",
    "-": "every other host → fail: receivers may reject its mail",
    "~": "every other host → softfail: accepted, but marked suspicious",
    "?": "every other host → neutral: no statement, so no protection",
}
_MACRO_LETTERS = set("slodiphv")  # c, r and t belong to explanation text only (RFC 7208 §7.1)
_MACRO_DELIMS = set(".-+,/_=")
_MOD_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class _SpfWalker:
    """Walks the include/redirect tree once, counting what RFC 7208 §4.6.4 counts, within fixed bounds."""

    def __init__(self, dns: DnsView, recs: list[Recommendation]):
        self.dns = dns
        self.recs = recs
        self.lookups = 0
        self.void = 0
        self.followed = 0
        self.complete = True
        self.permerror = False
        self.temperror: str | None = None
        self.void_terms: list[str] = []

    def rec(self, level: Level, problem: str, fix: str | None = None, ref: str | None = None) -> None:
        if level is Level.FAIL:
            self.permerror = True
        self.recs.append(Recommendation(level, "spf", problem, fix, ref))

    def node(self, domain: str, via: str, path: tuple[str, ...]) -> SpfNode:
        node = SpfNode(domain, via)
        if len(path) > MAX_DEPTH:
            node.status = "too-deep"
            self.complete = False
            return node
        try:
            node.records = [t for t in txt_records(self.dns, domain) if _SPF_V.match(t)]
        except DnsTempError as exc:
            node.status = "temperror"
            self.temperror = self.temperror or str(exc)
            return node
        if not node.records:
            node.status = "none"
            return node
        if len(node.records) > 1:
            node.status = "multiple"
            return node
        self._parse(node, node.records[0], (*path, domain))
        return node

    def _parse(self, node: SpfNode, record: str, path: tuple[str, ...]) -> None:
        words = [w for w in record.split(" ")[1:] if w]
        if len(words) > MAX_TERMS:
            node.more_terms = len(words) - MAX_TERMS
            words = words[:MAX_TERMS]
            self.complete = False
        node.terms = [_parse_term(w, node.domain) for w in words]
        for name in ("redirect", "exp"):
            if sum(1 for t in node.terms if t.kind == "modifier" and t.name == name) > 1:
                node.status = "syntax"
                self.rec(Level.FAIL, f"The SPF record of {node.domain} has more than one {name}= modifier, "
                         "which is a permerror", f"Keep one {name}= in the record at {node.domain}.",
                         "RFC 7208 §6")
        for t in node.terms:
            if t.problem:
                node.status = "syntax"
                self.rec(Level.FAIL, f"The SPF record of {node.domain} has a syntax error in `{t.text}`: "
                         f"{t.problem}; receivers treat the whole record as broken (permerror)",
                         f"Correct or remove `{t.text}` in the TXT record at {node.domain}.", "RFC 7208 §4.6.1")
        if node.status == "syntax":  # check_host() stops at the first syntax error: nothing is looked up
            return
        seen_all: SpfTerm | None = None
        for t in node.terms:
            if t.kind != "mechanism":
                continue
            if seen_all is not None:
                t.evaluated = False
                t.note = f"never evaluated: it comes after {seen_all.text}"
                self.rec(Level.WARN, f"`{t.text}` in the SPF record of {node.domain} comes after "
                         f"`{seen_all.text}`, so receivers never evaluate it",
                         f"Move `{t.text}` before `{seen_all.text}` at {node.domain}, or remove it.",
                         "RFC 7208 §4.6.2")
                continue
            if t.name == "all":
                seen_all = t
                node.ends_with = f"{t.qualifier or '+'}all"
            elif t.name in _COUNTED:
                self._follow(t, node.domain, path)
                node.lookups += t.lookups
        redirect = next((t for t in node.terms if t.kind == "modifier" and t.name == "redirect"), None)
        if redirect is not None:
            if seen_all is not None:
                redirect.note = "ignored: the record has an all mechanism"
                self.rec(Level.INFO, f"redirect= in the SPF record of {node.domain} is ignored because the record "
                         f"also has `{seen_all.text}`", "Keep either the all mechanism or the redirect.",
                         "RFC 7208 §6.1")
            else:
                self._follow(redirect, node.domain, path)
                node.lookups += redirect.lookups
                if redirect.child is not None:
                    node.ends_with = redirect.child.ends_with

    def _follow(self, t: SpfTerm, domain: str, path: tuple[str, ...]) -> None:
        t.lookups = 1
        self.lookups += 1
        target = (t.target or domain).rstrip(".").lower()
        if t.name == "ptr":
            t.note = "needs the client's IP, so it is not looked up here"
            return
        if "%" in target:
            t.note = "its name is built from each message (macros), so it is not looked up here"
            return
        if target in path and t.name in ("include", "redirect"):
            t.problem = f"loop: {target} is already being evaluated ({' → '.join(path)})"
            self.rec(Level.FAIL, f"SPF loop: `{t.text}` in {domain} leads back to {target}, so evaluation never "
                     "ends and receivers give permerror", f"Remove `{t.text}` from the record at {domain}.",
                     "RFC 7208 §4.6.4")
            return
        if self.followed >= MAX_FOLLOWED:
            t.note = f"not looked up: the inspector stops after {MAX_FOLLOWED} lookups"
            self.complete = False
            return
        self.followed += 1
        try:
            if t.name in ("include", "redirect"):
                self._child(t, domain, target, path)
            elif t.name == "a":
                t.addresses = [*self.dns.lookup(target, "A").records, *self.dns.lookup(target, "AAAA").records]
                self._void(t, not t.addresses, f"{target} has no A or AAAA record")
            elif t.name == "mx":
                hosts = sorted(self.dns.lookup(target, "MX").records)
                t.addresses = [h for _, h in hosts]
                self._void(t, not hosts, f"{target} has no MX record")
                if len(hosts) > SPF_MX_NAMES:
                    t.problem = f"{target} has {len(hosts)} MX hosts; an mx mechanism may use at most {SPF_MX_NAMES}"
                    self.rec(Level.FAIL, f"`{t.text}` in {domain} makes receivers look up {len(hosts)} MX hosts; "
                             f"more than {SPF_MX_NAMES} is a permerror", f"Replace `{t.text}` with ip4:/ip6: "
                             "ranges of the hosts that really send mail.", "RFC 7208 §4.6.4")
                elif hosts:
                    t.note = f"then up to {len(hosts)} address lookups ({SPF_MX_NAMES} allowed per mx)"
            elif t.name == "exists":
                found = self.dns.lookup(target, "A").records
                self._void(t, not found, f"{target} has no A record")
        except DnsTempError as exc:
            t.problem = f"temperror: {exc}"
            self.temperror = self.temperror or str(exc)

    def _void(self, t: SpfTerm, void: bool, why: str) -> None:
        if not void:
            return
        t.void = True
        t.note = f"void lookup: {why}"
        self.void += 1
        self.void_terms.append(t.text)

    def _child(self, t: SpfTerm, domain: str, target: str, path: tuple[str, ...]) -> None:
        child = self.node(target, t.name, path)
        t.child = child
        t.lookups += child.lookups
        where = f"`{t.text}` in {domain}"
        if child.status == "none":
            t.problem = f"{target} publishes no SPF record"
            self.rec(Level.FAIL, f"{where} points at {target}, which publishes no SPF record: receivers give "
                     "permerror", f"Remove `{t.text}` from {domain}, or publish an SPF record at {target}.",
                     "RFC 7208 §5.2" if t.name == "include" else "RFC 7208 §6.1")
        elif child.status == "multiple":
            t.problem = f"{target} publishes {len(child.records)} SPF records"
            self.rec(Level.FAIL, f"{target} (reached by {where}) publishes {len(child.records)} SPF records: "
                     "permerror", f"Merge the v=spf1 TXT records at {target} into one.", "RFC 7208 §4.5")
        elif child.status == "too-deep":
            t.note = f"not followed: more than {MAX_DEPTH} levels of include"
        elif child.status == "temperror":
            t.problem = f"temperror: the SPF record of {target} could not be fetched"
        if t.name == "include" and child.ends_with == "+all" and t.qualifier in ("", "+"):
            self.rec(Level.FAIL, f"{where} includes a record that ends in +all, so it passes every host on the "
                     "internet, and so does this record", f"Remove `{t.text}` from {domain} or fix {target}.",
                     "RFC 7208 §5.1")


def _parse_term(word: str, domain: str) -> SpfTerm:
    """One term, syntax-checked (RFC 7208 §4.6.1, §12); the meaning is filled in for the user."""
    head, eq, value = word.partition("=")
    if eq and head and head[0].isalpha() and all(c in _MOD_NAME_CHARS for c in head.lower()) and ":" not in head \
            and "/" not in head:
        name = head.lower()
        t = SpfTerm(word, "modifier", name, target=value)
        if name in ("redirect", "exp"):
            t.problem = _spec_problem(value)
            what = f"{value}'s SPF record decides instead" if name == "redirect" else ""
            t.meaning = (f"when nothing above matches, {what}" if name == "redirect"
                         else f"a rejection may quote the explanation published as TXT at {value}")
        else:
            t.meaning = "unknown modifier: receivers ignore it"
        return t
    qualifier = word[0] if word[0] in _QUALIFIER else ""
    rest = word[len(qualifier):]
    cuts = [i for i in (rest.find(":"), rest.find("/")) if i >= 0]
    cut = min(cuts) if cuts else len(rest)
    name, arg = rest[:cut].lower(), rest[cut:]
    t = SpfTerm(word, "mechanism", name, qualifier)
    if name not in _MECHANISMS:
        t.problem = f"unknown mechanism {name!r}" + (" (did you mean ip4:?)" if name in ("ip", "ipv4") else "")
        return t
    verdict = _QUALIFIER[qualifier or "+"]
    if name == "all":
        if arg:
            t.problem = "all takes no argument"
        t.meaning = _ALL_MEANING[qualifier or "+"]
        return t
    if name in ("ip4", "ip6"):
        t.target = arg[1:] if arg.startswith(":") else ""
        t.problem, t.meaning = _network(name, t.target, verdict)
        return t
    cidr4 = cidr6 = None
    if name in ("a", "mx"):
        arg, cidr4, cidr6, problem = _split_cidr(arg)
        if problem:
            t.problem = problem
            return t
    if arg and not arg.startswith(":"):
        t.problem = f"expected {name}:domain"
        return t
    t.target = arg[1:]
    if name in ("include", "exists") and not t.target:
        t.problem = f"{name} needs a domain: {name}:example.com"
        return t
    if t.target:
        t.problem = _spec_problem(t.target)
        if t.problem:
            return t
    target = t.target or domain
    masks = [m for m in (cidr4 is not None and f"/{cidr4}", cidr6 is not None and f"IPv6 /{cidr6}") if m]
    mask = f" (the {' and '.join(masks)} network of each)" if masks else ""
    t.meaning = {
        "include": f"whatever {target}'s SPF record passes → {verdict} (its fail, softfail or neutral only mean "
                   "no match here)",
        "a": f"the addresses of {target}{mask} → {verdict}",
        "mx": f"the addresses of {target}'s mail exchangers{mask} → {verdict}",
        "ptr": f"hosts whose reverse DNS name is under {target} → {verdict}; deprecated (RFC 7208 §5.5): slow, "
               "unreliable, and some receivers skip it",
        "exists": f"if {target} has an A record → {verdict} (usually a per-message macro lookup)",
    }[name]
    return t


def _split_cidr(arg: str) -> tuple[str, int | None, int | None, str | None]:
    """Split a dual-cidr-length off an a/mx argument: `:host/24//64`."""
    cidr4 = cidr6 = None
    if "//" in arg:
        arg, _, six = arg.rpartition("//")
        if not (six.isascii() and six.isdigit()) or int(six) > 128:
            return arg, None, None, f"bad IPv6 prefix length //{six}"
        cidr6 = int(six)
    head, sep, four = arg.rpartition("/")
    if sep:
        if not (four.isascii() and four.isdigit()) or int(four) > 32:
            return arg, None, None, f"bad IPv4 prefix length /{four}"
        arg, cidr4 = head, int(four)
    return arg, cidr4, cidr6, None


def _network(name: str, value: str, verdict: str) -> tuple[str | None, str]:
    addr, _, prefix = value.partition("/")
    if not addr:
        return f"{name} needs an address: {name}:192.0.2.0/24", ""
    if prefix and not (prefix.isascii() and prefix.isdigit()):
        return f"bad prefix length /{prefix}", ""
    try:
        net = (ipaddress.IPv4Network if name == "ip4" else ipaddress.IPv6Network)(value, strict=False)
    except ValueError as exc:
        return f"{value!r} is not an IPv{name[-1]} network ({exc})", ""
    if net.num_addresses == 1:
        return None, f"host {net.network_address} → {verdict}"
    bits = net.max_prefixlen - net.prefixlen
    size = f"{net.num_addresses:,}" if bits < 20 else f"2^{bits}"
    exact = "" if str(net) == value else f" (written {value}, which means {net})"
    return None, f"hosts in {net} ({size} addresses){exact} → {verdict}"


def _spec_problem(spec: str) -> str | None:
    """Syntax of a domain-spec (RFC 7208 §7.1): macros well-formed; without macros, a plausible domain."""
    if not spec:
        return "empty domain"
    if len(spec) > 253:
        return "domain longer than 253 characters"
    i = 0
    while i < len(spec):
        ch = spec[i]
        if ch == "%":
            nxt = spec[i + 1:i + 2]
            if nxt in ("%", "_", "-"):
                i += 2
                continue
            if nxt != "{":
                return "'%' must be followed by {, %, _ or -"
            end = spec.find("}", i + 2)
            if end < 0:
                return "unclosed macro %{"
            body = spec[i + 2:end]
            if not body or body[0].lower() not in _MACRO_LETTERS:
                return f"unknown macro %{{{body}}}"
            j = 1
            while j < len(body) and body[j].isascii() and body[j].isdigit():
                j += 1
            if j < len(body) and body[j] in "rR":
                j += 1
            if any(c not in _MACRO_DELIMS for c in body[j:]):
                return f"bad macro %{{{body}}}"
            i = end + 1
            continue
        if not 0x21 <= ord(ch) <= 0x7E:
            return "a character that is not printable ASCII"
        i += 1
    if "%" in spec:
        return None
    return _name_problem(spec, fqdn=True)


def _name_problem(name: str, fqdn: bool = False) -> str | None:
    """Why `name` cannot be asked of DNS, or None. Underscores are allowed (_spf, _dmarc, _domainkey)."""
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return "not a domain name (empty or longer than 253 characters)"
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63:
            return "a label is empty or longer than 63 characters"
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return f"label {label!r} has characters a host name cannot have"
    if fqdn and len(labels) < 2:
        return f"{name!r} is not a fully qualified domain name"
    if fqdn and labels[-1].isdigit():
        return "it ends in a number: an IP address is not a domain (use ip4:/ip6: for addresses)"
    return None


def _flat(node: SpfNode | None, out: list[str]) -> bool:
    """The ip4:/ip6: terms a subtree amounts to, when it is only addresses; False when it cannot be flattened."""
    if node is None or node.status != "ok":
        return False
    for t in node.terms:
        if t.kind == "modifier":
            if t.name == "redirect" and not _flat(t.child, out):
                return False
            continue
        if t.name == "all" or not t.evaluated:
            continue
        if t.qualifier not in ("", "+"):
            return False
        if t.name in ("ip4", "ip6"):
            out.append(f"{t.name}:{t.target}")
        elif t.name == "a" and t.addresses and "%" not in t.target:
            out.extend(f"ip6:{a}" if ":" in a else f"ip4:{a}" for a in t.addresses)
        elif t.name != "include" or not _flat(t.child, out):
            return False
        if len(out) > 50:
            return False
    return True


def inspect_spf(domain: str, dns: DnsView, recs: list[Recommendation]) -> SpfSection:
    section = SpfSection(domain)
    walker = _SpfWalker(dns, recs)
    tree = walker.node(domain, "", ())
    section.tree = tree
    if tree.status == "temperror":
        section.status, section.error = "temperror", walker.temperror
        recs.append(Recommendation(Level.WARN, "spf", f"The SPF record of {domain} could not be fetched "
                                   f"(temperror: {walker.temperror}); receivers defer mail (4xx) while this lasts",
                                   f"Check that the name servers of {domain} answer TXT queries.", "RFC 7208 §2.6.6"))
        return section
    if tree.status == "none":
        section.status = "none"
        lookalike = _lookalike(dns, domain, "v=spf")
        recs.append(Recommendation(
            Level.FAIL, "spf", f"{domain} publishes no SPF record" + (f" (the TXT record {lookalike!r} looks like "
                                                                       "one but does not start with \"v=spf1 \")"
                                                                       if lookalike else "")
            + ": receivers cannot tell which hosts may send its mail, and Gmail and Yahoo require SPF or DKIM",
            f'Publish `{domain}. TXT "v=spf1 ip4:<your sending IP> -all"`, listing every host and provider '
            "(include:) that sends for the domain.", "RFC 7208 §2.6.1"))
        return section
    if tree.status == "multiple":
        section.status = "permerror"
        section.record = " | ".join(tree.records)
        recs.append(Recommendation(
            Level.FAIL, "spf", f"{domain} publishes {len(tree.records)} SPF records, which is a permerror: "
            "receivers treat the domain as having a broken SPF record",
            f"Merge them into one TXT record at {domain} (one v=spf1, the mechanisms of both, one all).",
            "RFC 7208 §4.5"))
        return section
    section.record = tree.records[0]
    section.lookups, section.void_lookups, section.complete = walker.lookups, walker.void, walker.complete
    section.ends_with = tree.ends_with
    _spf_limits(section, walker, tree, recs)
    _spf_ending(section, tree, recs)
    if walker.temperror and not walker.permerror:
        recs.append(Recommendation(Level.WARN, "spf", f"Part of the SPF tree of {domain} could not be fetched "
                                   f"(temperror: {walker.temperror}); receivers would defer mail (4xx)",
                                   "Check that the name servers of the included domains answer.", "RFC 7208 §2.6.6"))
    section.status = "permerror" if walker.permerror else "temperror" if walker.temperror else "ok"
    if walker.temperror and not walker.permerror:
        section.error = walker.temperror
    return section


def _spf_limits(section: SpfSection, walker: _SpfWalker, tree: SpfNode, recs: list[Recommendation]) -> None:
    at_least = "" if walker.complete else "at least "
    if walker.lookups > SPF_LOOKUP_LIMIT:
        heavy = sorted((t for t in tree.terms if t.lookups > 1 or t.name == "include"),
                       key=lambda t: -t.lookups)[:3]
        fixes = []
        for t in heavy:
            nets: list[str] = []
            cost = f"{t.lookups} lookup{'s' if t.lookups != 1 else ''}"
            if t.child is not None and _flat(t.child, nets):
                fixes.append(f"flatten `{t.text}` ({cost}): replace it with `{' '.join(nets)}` (and keep that list "
                             "up to date)" if nets else f"remove `{t.text}` ({cost}): it authorises no host")
            else:
                fixes.append(f"flatten or remove `{t.text}` ({cost})")
        walker.rec(Level.FAIL, f"SPF uses {at_least}{walker.lookups} lookups of {SPF_LOOKUP_LIMIT}: receivers stop at "
                   f"{SPF_LOOKUP_LIMIT} and give permerror", _sentence("; ".join(fixes)) + ". Remove includes of "
                   "services that no longer send for you; ip4:/ip6: cost no lookups.", "RFC 7208 §4.6.4")
    elif walker.lookups >= SPF_LOOKUP_LIMIT - 1:
        recs.append(Recommendation(Level.INFO, "spf", f"SPF uses {walker.lookups} lookups of {SPF_LOOKUP_LIMIT}: one "
                                   "more include will break it", "Prefer ip4:/ip6: for your own hosts.",
                                   "RFC 7208 §4.6.4"))
    if walker.void > SPF_VOID_LIMIT:
        walker.rec(Level.FAIL, f"SPF makes {walker.void} void lookups (names with no records) of {SPF_VOID_LIMIT} "
                   "allowed: receivers give permerror", "Remove the mechanisms that find nothing: "
                   + ", ".join(f"`{t}`" for t in walker.void_terms[:5]) + ".", "RFC 7208 §4.6.4")
    elif walker.void_terms:
        for t in walker.void_terms:
            recs.append(Recommendation(Level.WARN, "spf", f"`{t}` finds no records (a void lookup, "
                                       f"{walker.void} of {SPF_VOID_LIMIT} allowed): it authorises nothing",
                                       f"Remove `{t}` from the SPF record, or publish the records it names.",
                                       "RFC 7208 §4.6.4"))
    for t in _all_terms(tree):
        if not t.evaluated:
            continue
        if t.name == "ptr" and t.kind == "mechanism" and not t.problem:
            recs.append(Recommendation(Level.WARN, "spf", f"`{t.text}` uses the ptr mechanism, which RFC 7208 "
                                       "deprecates: it is slow and some receivers skip it",
                                       f"Replace `{t.text}` with ip4:/ip6: ranges of the hosts it meant.",
                                       "RFC 7208 §5.5"))
        if t.name in ("ip4", "ip6") and not t.problem and "/" in t.target:
            prefix = int(t.target.rpartition("/")[2])
            if prefix == 0 and t.qualifier in ("", "+"):
                walker.rec(Level.FAIL, f"`{t.text}` authorises every IPv{t.name[-1]} address"
                           ": it is +all in disguise", f"Replace `{t.text}` with your own ranges.",
                           "RFC 7208 §5.6")
            elif 0 < prefix < (8 if t.name == "ip4" else 16) and t.qualifier in ("", "+"):
                recs.append(Recommendation(Level.WARN, "spf", f"`{t.text}` authorises a very large range",
                                           "List only the addresses that send your mail.", "RFC 7208 §5.6"))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _spf_ending(section: SpfSection, tree: SpfNode, recs: list[Recommendation]) -> None:
    domain, ending = section.domain, section.ends_with
    if ending == "+all":
        recs.append(Recommendation(Level.FAIL, "spf", f"The SPF record of {domain} ends in +all: every host on the "
                                   "internet may send as it, so SPF protects nothing and filters distrust the domain",
                                   f"End the record at {domain} with -all (or ~all while you test).",
                                   "RFC 7208 §5.1"))
    elif ending == "?all":
        recs.append(Recommendation(Level.WARN, "spf", f"The SPF record of {domain} ends in ?all (neutral): mail from "
                                   "other hosts is not marked, so it protects nothing",
                                   "End the record with ~all or -all.", "RFC 7208 §2.6.2"))
    elif ending == "~all":
        recs.append(Recommendation(Level.INFO, "spf", f"The SPF record of {domain} ends in ~all (softfail)",
                                   "Once every sending host is listed, -all tells receivers to refuse the rest.",
                                   "RFC 7208 §2.6.5"))
    elif ending is None and tree.status == "ok":
        recs.append(Recommendation(Level.WARN, "spf", f"The SPF record of {domain} has no all mechanism, so mail from "
                                   "unlisted hosts is neutral", "End the record with -all (or ~all).",
                                   "RFC 7208 §4.7"))
    mechanisms = [t for t in tree.terms if t.kind == "mechanism" and t.name != "all"]
    redirect = any(t.kind == "modifier" and t.name == "redirect" for t in tree.terms)
    if ending == "-all" and not mechanisms and not redirect:
        recs.append(Recommendation(Level.INFO, "spf", f"{domain} authorises no host (v=spf1 -all): right for a "
                                   "domain that sends no mail"))


def _all_terms(node: SpfNode | None, depth: int = 0) -> Iterable[SpfTerm]:
    if node is None or depth > MAX_DEPTH:
        return
    for t in node.terms:
        yield t
        yield from _all_terms(t.child, depth + 1)


def _lookalike(dns: DnsView, name: str, prefix: str) -> str | None:
    """A TXT record at `name` that starts like `prefix` (case aside) but was not taken as one."""
    try:
        texts = txt_records(dns, name)
    except DnsTempError:
        return None
    for t in texts[:20]:
        if t.strip().lower().startswith(prefix):
            return t[:120]
    return None


# DMARC -----------------------------------------------------------------------------------------------

@dataclass
class Tag:
    """One tag of a DMARC or DKIM record and what it means."""

    tag: str
    value: str
    meaning: str


@dataclass
class ReportUri:
    """A rua/ruf destination and whether its domain has authorised the reports (RFC 7489 §7.1)."""

    uri: str
    domain: str = ""
    external: bool = False
    authorised: bool | None = None  # None: not external, or not known
    authorisation_name: str | None = None
    problem: str | None = None


@dataclass
class DmarcSection:
    domain: str
    org_domain: str
    status: str = "none"  # ok, none, multiple, invalid, temperror
    location: str | None = None
    at_org: bool = False
    record: str | None = None
    tags: list[Tag] = field(default_factory=list)
    policy: str | None = None  # what applies to `domain`
    policy_source: str | None = None
    rua: list[ReportUri] = field(default_factory=list)
    ruf: list[ReportUri] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None


_POLICY_WORDS = {
    "none": "monitoring only: failing mail is delivered as usual; you get reports",
    "quarantine": "mail that fails DMARC goes to the spam folder",
    "reject": "mail that fails DMARC is refused (550 5.7.1)",
}
_FO_WORDS = {"0": "all mechanisms fail to align (the default)", "1": "any mechanism fails to align",
             "d": "a DKIM signature fails", "s": "SPF fails"}


def _dmarc_meaning(tag: str, value: str, org: str) -> str:
    low = value.lower()
    if tag == "v":
        return "DMARC version 1" if value == "DMARC1" else "must be exactly DMARC1"
    if tag in ("p", "sp", "np"):
        who = {"p": "this domain", "sp": "subdomains", "np": "subdomains that do not exist (RFC 9091)"}[tag]
        return f"{who}: " + _POLICY_WORDS.get(low, "not none, quarantine or reject: invalid")
    if tag == "pct":
        return (f"the policy applies to {value}% of failing mail; the rest gets the next milder treatment"
                if value != "100" else "the policy applies to all failing mail")
    if tag in ("adkim", "aspf"):
        what = "the DKIM d= domain" if tag == "adkim" else "the MAIL FROM (return-path) domain"
        return {"r": f"relaxed: {what} may be any name under {org}",
                "s": f"strict: {what} must equal the From domain exactly"}.get(low, "must be r or s")
    if tag == "rua":
        return "aggregate (daily) reports go to " + value
    if tag == "ruf":
        return "failure (per-message) reports go to " + value + "; few receivers send them"
    if tag == "fo":
        parts = [_FO_WORDS.get(p.strip().lower(), f"{p.strip()!r} (unknown)") for p in value.split(":")[:4]]
        return "ask for a failure report when " + " or ".join(parts)
    if tag == "ri":
        if value.isascii() and value.isdigit():
            return f"aggregate reports every {int(value) / 3600:g} hours requested; most receivers send daily"
        return "must be a number of seconds"
    if tag == "rf":
        return "failure report format" + ("" if low == "afrf" else ": only afrf is defined")
    return "not a DMARC tag: receivers ignore it"


def _report_uris(value: str, policy_domain: str, dns: DnsView) -> list[ReportUri]:
    out = []
    for raw in value.split(",")[:MAX_REPORT_URIS * 2]:
        uri = raw.strip()
        if not uri:
            continue
        r = ReportUri(uri[:200])
        if not uri.lower().startswith("mailto:"):
            r.problem = "only mailto: addresses receive reports"
            out.append(r)
            continue
        address = uri[7:].partition("!")[0]
        local, at, host = address.rpartition("@")
        r.domain = host.rstrip(".").lower()
        if not (local and at) or _name_problem(r.domain):
            r.problem = "not an email address"
        elif org_domain(r.domain) != org_domain(policy_domain) and len(out) < MAX_REPORT_URIS:
            r.external = True
            r.authorisation_name = f"{policy_domain}._report._dmarc.{r.domain}"
            if _name_problem(r.authorisation_name) is None:
                try:
                    r.authorised = any(t.strip().startswith("v=DMARC1")
                                       for t in txt_records(dns, r.authorisation_name))
                except DnsTempError:
                    r.authorised = None
        out.append(r)
        if len(out) >= MAX_REPORT_URIS:
            break
    return out


def inspect_dmarc(domain: str, dns: DnsView, recs: list[Recommendation]) -> DmarcSection:
    org = org_domain(domain)
    section = DmarcSection(domain, org)
    found = discover(dns, domain)
    section.location, section.at_org = found.location, found.at_org
    suggest = f'`_dmarc.{org}. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{org}"`'
    if found.error == "multiple":
        section.status = "multiple"
        recs.append(Recommendation(Level.FAIL, "dmarc", f"{found.location} has more than one DMARC record, so "
                                   "receivers apply none", f"Keep exactly one v=DMARC1 TXT record at {found.location}.",
                                   "RFC 7489 §6.6.3"))
        return section
    if found.error:
        section.status, section.error = "temperror", found.error
        recs.append(Recommendation(Level.WARN, "dmarc", f"The DMARC record at {found.location} could not be fetched "
                                   f"({found.error})", "Check that the domain's name servers answer TXT queries.",
                                   "RFC 7489 §6.6.3"))
        return section
    if found.record is None:
        lookalike = _lookalike(dns, f"_dmarc.{domain}", "v=dmarc")
        if lookalike:
            section.status, section.record, section.location = "invalid", lookalike, f"_dmarc.{domain}"
            recs.append(Recommendation(Level.FAIL, "dmarc", f"The TXT record at _dmarc.{domain} looks like DMARC "
                                       "but does not start with \"v=DMARC1;\", so receivers ignore it",
                                       f'Start it with exactly "v=DMARC1;", e.g. {suggest}.', "RFC 7489 §6.4"))
            return section
        where = f"_dmarc.{domain}" + (f" or _dmarc.{org}" if org != domain else "")
        recs.append(Recommendation(Level.FAIL, "dmarc", f"No DMARC record at {where}: receivers have no policy for "
                                   "mail that fails authentication, and Gmail and Yahoo require one from bulk senders",
                                   f"Publish {suggest}, then move to p=quarantine or p=reject once the reports "
                                   "show all your mail passes.", "RFC 7489 §6.1"))
        return section
    record: DmarcRecord = found.record
    section.record = record.raw
    section.problems = list(record.problems)
    policy_domain = (found.location or "").removeprefix("_dmarc.")
    section.tags = [Tag(k, v, _dmarc_meaning(k, v, org)) for k, v in list(record.tags.items())[:30]]
    section.rua = _report_uris(record.tags.get("rua", ""), policy_domain, dns)
    section.ruf = _report_uris(record.tags.get("ruf", ""), policy_domain, dns)
    if not record.usable:
        section.status = "invalid"
        recs.append(Recommendation(Level.FAIL, "dmarc", f"The DMARC record at {found.location} is invalid, so "
                                   "receivers ignore it: " + "; ".join(record.problems),
                                   f"Correct it, e.g. {suggest}.", "RFC 7489 §6.3"))
        return section
    section.status = "ok"
    section.policy, section.policy_source = _policy(dns, record, found.at_org, domain)
    for problem in record.problems:
        recs.append(Recommendation(Level.WARN, "dmarc", f"The DMARC record at {found.location}: {problem}",
                                   "Correct the tag; receivers may ignore it or the whole record.", "RFC 7489 §6.3"))
    if found.at_org:
        recs.append(Recommendation(Level.INFO, "dmarc", f"{domain} has no DMARC record of its own; the record at "
                                   f"{found.location} applies ({section.policy_source})",
                                   None, "RFC 7489 §6.6.3"))
    if section.policy == "none":
        recs.append(Recommendation(Level.INFO, "dmarc", f"DMARC policy for {domain} is none: monitoring only, so "
                                   "mail spoofing the domain is still delivered",
                                   "Move to p=quarantine, then p=reject, once the aggregate reports show all your "
                                   "mail passes.", "RFC 7489 §6.3"))
    if record.pct < 100 and section.policy != "none":
        recs.append(Recommendation(Level.INFO, "dmarc", f"pct={record.pct}: the policy applies to {record.pct}% of "
                                   "failing mail only", "Raise pct to 100 (or drop it) once reports are clean.",
                                   "RFC 7489 §6.6.4"))
    if not any(r.problem is None for r in section.rua):
        recs.append(Recommendation(Level.WARN, "dmarc", f"The DMARC record at {found.location} has no usable rua=, so "
                                   "nobody sends you reports: you cannot see who sends mail as your domain",
                                   f"Add rua=mailto:dmarc-reports@{org} to the record at {found.location}.",
                                   "RFC 7489 §7.2"))
    for r in section.rua + section.ruf:
        if r.problem:
            recs.append(Recommendation(Level.WARN, "dmarc", f"Report address {r.uri!r}: {r.problem}",
                                       "Use mailto:address@domain.", "RFC 7489 §6.4"))
        elif r.external and r.authorised is False:
            recs.append(Recommendation(Level.WARN, "dmarc", f"Reports to {r.domain} are not authorised, so receivers "
                                       f"will not send them there", f'{r.domain} must publish `{r.authorisation_name}. '
                                       'TXT "v=DMARC1"` (report services do this for their customers).',
                                       "RFC 7489 §7.1"))
    return section


# DKIM ------------------------------------------------------------------------------------------------

@dataclass
class DkimKey:
    selector: str
    name: str
    source: str  # "given" (from mail or --selector) or "common"
    status: str = "missing"  # ok, missing, revoked, malformed, unusable, weak, multiple, temperror, bad-selector
    record: str | None = None
    key_type: str | None = None
    bits: int | None = None
    testing: bool = False
    strict: bool = False
    hashes: list[str] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class DkimSection:
    keys: list[DkimKey] = field(default_factory=list)  # every given selector, and the common ones that exist
    tried: list[str] = field(default_factory=list)  # common selectors with no key
    note: str = SELECTOR_NOTE


_DKIM_TAG_WORDS = {
    "v": "DKIM key record, version 1", "k": "key type", "p": "public key (base64)",
    "t": "flags: y = testing, s = the i= domain must equal d=", "h": "hash algorithms the key may be used with",
    "s": "service types (email or *)", "n": "notes for people", "g": "granularity (obsolete, RFC 4871): ignored",
}


def _selector_problem(selector: str) -> str | None:
    if not selector or len(selector) > 200:
        return "empty or longer than 200 characters"
    return _name_problem(selector)


def inspect_selector(domain: str, selector: str, dns: DnsView, source: str = "given") -> DkimKey:
    """The key record at `<selector>._domainkey.<domain>`, described and judged."""
    key = DkimKey(selector, f"{selector}._domainkey.{domain}", source)
    if problem := _selector_problem(selector):
        key.status = "bad-selector"
        key.problems.append(f"selector {selector[:60]!r} is not a DNS name: {problem}")
        return key
    try:
        records = txt_records(dns, key.name)
    except DnsTempError as exc:
        key.status = "temperror"
        key.problems.append(f"temperror: {exc}")
        return key
    keys = [r for r in records if "p=" in r] or records
    if not keys:
        return key
    key.record = keys[0]
    if len(keys) > 1:
        key.status = "multiple"
        key.problems.append(f"{len(keys)} TXT records: receivers pick one at random, so verification fails "
                            "some of the time")
        return key
    try:
        tags = {k.decode("ascii", "replace"): v.decode("utf-8", "replace")
                for k, v in parse_tag_value(key.record.encode("utf-8", "replace")).items()}
    except Exception as exc:  # noqa: BLE001 - dkimpy raises InvalidTagSpec, DuplicateTag, ...
        key.status = "malformed"
        key.problems.append(f"the record is not tag=value; pairs ({type(exc).__name__})")
        return key
    key.tags = [Tag(k, v[:80] + ("…" if len(v) > 80 else ""), _DKIM_TAG_WORDS.get(k, "unknown tag: ignored"))
                for k, v in list(tags.items())[:20]]
    key.key_type = tags.get("k", "rsa").strip().lower() or "rsa"
    flags = [f.strip().lower() for f in tags.get("t", "").split(":")]
    key.testing, key.strict = "y" in flags, "s" in flags
    key.hashes = [h.strip().lower() for h in tags.get("h", "").split(":") if h.strip()]
    if "v" in tags and tags["v"].strip() != "DKIM1":
        key.problems.append(f"v={tags['v'][:20]!r}: must be DKIM1 (or left out)")
    if key.key_type not in ("rsa", "ed25519"):
        key.problems.append(f"k={key.key_type[:20]!r}: receivers know rsa and ed25519 only")
    if key.hashes and "sha256" not in key.hashes:
        key.problems.append(f"h={':'.join(key.hashes)[:40]}: without sha256 the key can only verify rsa-sha1, "
                            "which receivers no longer accept (RFC 8301)")
    services = [s.strip().lower() for s in tags.get("s", "*").split(":")]
    if "*" not in services and "email" not in services:
        key.problems.append(f"s={tags.get('s', '')[:20]!r}: the key is not for email")
    if "p" not in tags:
        key.status = "malformed"
        key.problems.append("no p= tag (the public key)")
        return key
    if not tags["p"].strip():
        key.status = "revoked"
        return key
    facts = _key_facts(key.record.encode("utf-8", "replace"))
    if not facts.get("key_bits", "").isdigit():  # dkimpy could not load it (or, for s= without email, would not)
        key.status = "unusable" if key.problems else "malformed"
        if not key.problems:
            key.problems.append("p= does not hold a valid public key for k=" + key.key_type[:20])
        return key
    key.key_type, key.bits = facts["key_type"], int(facts["key_bits"])
    if key.key_type == "rsa" and key.bits < MIN_KEY_BITS:
        key.status = "weak"
        key.problems.append(f"{key.bits}-bit RSA: receivers ignore keys under {MIN_KEY_BITS} bits (RFC 8301 §3.2)")
        return key
    key.status = "unusable" if key.problems else "ok"
    return key


def inspect_dkim(domain: str, dns: DnsView, selectors: Iterable[str], recs: list[Recommendation],
                 common: Iterable[str] = COMMON_SELECTORS) -> DkimSection:
    section = DkimSection()
    given: list[str] = []
    for s in selectors:
        s = s.strip().lower()
        if s and s not in given:
            given.append(s)
        if len(given) >= MAX_SELECTORS:
            break
    for s in given:
        key = inspect_selector(domain, s, dns, "given")
        section.keys.append(key)
        _dkim_recs(key, Level.FAIL, recs)
    for s in common:
        if s in given:
            continue
        key = inspect_selector(domain, s, dns, "common")
        if key.status == "missing":
            section.tried.append(s)
            continue
        section.keys.append(key)
        _dkim_recs(key, Level.WARN, recs)
    usable = [k for k in section.keys if k.status == "ok"]
    if not section.keys:
        recs.append(Recommendation(Level.INFO, "dkim", f"No DKIM key found for {domain} at the common selectors "
                                   f"({', '.join(section.tried)})", "Name the selector you sign with "
                                   "(maillab dns DOMAIN --selector NAME); DNS cannot list selectors.",
                                   "RFC 6376 §3.6.2.1"))
    elif usable and all(k.key_type == "ed25519" for k in usable):
        recs.append(Recommendation(Level.INFO, "dkim", f"{domain} publishes only ed25519 DKIM keys; not every "
                                   "receiver verifies them yet", "Sign with an RSA-2048 key as well (two "
                                   "signatures).", "RFC 8463 §5"))
    return section


def _dkim_recs(key: DkimKey, level: Level, recs: list[Recommendation]) -> None:
    """`level` is FAIL for selectors known to be used (seen in mail, or named), WARN for ones merely found."""
    name = key.name
    publish = f'`{name}. TXT "v=DKIM1; k=rsa; p=<base64 public key>"`'
    if key.status == "missing":
        recs.append(Recommendation(level, "dkim", f"No DKIM key at {name}: mail signed with selector {key.selector} "
                                   "fails DKIM", f"Publish {publish} (the public half of the signing key).",
                                   "RFC 6376 §6.1.2"))
    elif key.status == "temperror":
        recs.append(Recommendation(Level.WARN, "dkim", f"The key at {name} could not be fetched "
                                   f"({'; '.join(key.problems)})", "Check that the domain's name servers answer.",
                                   "RFC 6376 §6.1.2"))
    elif key.status == "revoked":
        recs.append(Recommendation(level if key.source == "given" else Level.INFO, "dkim",
                                   f"The key at {name} is revoked (empty p=): signatures with selector "
                                   f"{key.selector} fail", "Sign with a current selector, or publish the key again.",
                                   "RFC 6376 §3.6.1"))
    elif key.status == "weak":
        recs.append(Recommendation(level, "dkim", f"The key at {name} is {key.bits}-bit RSA: receivers ignore keys "
                                   f"under {MIN_KEY_BITS} bits", "Generate a 2048-bit RSA key and publish it under a "
                                   "new selector.", "RFC 8301 §3.2"))
    elif key.status in ("malformed", "unusable", "multiple", "bad-selector"):
        recs.append(Recommendation(level, "dkim", f"The key record at {name} is unusable: " + "; ".join(key.problems),
                                   f'Publish one record: "v=DKIM1; k=rsa|ed25519; p=<base64 key>" at {name}.',
                                   "RFC 6376 §3.6.1"))
    if key.status == "ok" and key.key_type == "rsa" and key.bits is not None and key.bits < 2048:
        recs.append(Recommendation(Level.INFO, "dkim", f"The key at {name} is {key.bits}-bit RSA; 2048 is "
                                   "recommended", "Rotate to a 2048-bit key under a new selector.", "RFC 8301 §3.2"))
    if key.testing and key.status == "ok":
        recs.append(Recommendation(Level.WARN, "dkim", f"The key at {name} is in testing mode (t=y): receivers may "
                                   "treat its signatures as unsigned", f"Remove t=y from {name} once signing works.",
                                   "RFC 6376 §3.6.1"))


# MX --------------------------------------------------------------------------------------------------

@dataclass
class MxHost:
    preference: int
    host: str
    addresses: list[str] = field(default_factory=list)
    problem: str | None = None


@dataclass
class MxSection:
    status: str = "none"  # ok, null, none, nxdomain, temperror
    hosts: list[MxHost] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)  # the A/AAAA mail goes to when there is no MX
    error: str | None = None


def _addresses(dns: DnsView, host: str) -> list[str]:
    return [*dns.lookup(host, "A").records, *dns.lookup(host, "AAAA").records]


def inspect_mx(domain: str, dns: DnsView, recs: list[Recommendation]) -> MxSection:
    section = MxSection()
    try:
        answer = dns.lookup(domain, "MX")
    except DnsTempError as exc:
        section.status, section.error = "temperror", str(exc)
        recs.append(Recommendation(Level.WARN, "mx", f"The MX records of {domain} could not be fetched ({exc})",
                                   "Check that the domain's name servers answer.", "RFC 5321 §5.1"))
        return section
    if not answer.exists:
        section.status = "nxdomain"
        recs.append(Recommendation(Level.FAIL, "mx", f"{domain} does not exist in DNS (NXDOMAIN): receivers reject "
                                   "mail from a domain that does not exist", f"Publish records for {domain} "
                                   "(at least SPF and an MX or A), or send from a domain that exists.",
                                   "RFC 5321 §5.1"))
        return section
    hosts = sorted(answer.records)
    if not hosts:
        try:
            section.fallback = _addresses(dns, domain)
        except DnsTempError as exc:
            section.status, section.error = "temperror", str(exc)
            recs.append(Recommendation(Level.WARN, "mx", f"{domain} has no MX, and its address could not be fetched "
                                       f"({exc})", "Check that the domain's name servers answer.", "RFC 5321 §5.1"))
            return section
        if section.fallback:
            recs.append(Recommendation(Level.INFO, "mx", f"{domain} has no MX record, so mail to it goes to its "
                                       f"address ({', '.join(section.fallback[:3])})",
                                       f"Publish `{domain}. MX 10 <your mail host>.`, or `{domain}. MX 0 .` "
                                       "(null MX) if the domain receives no mail.", "RFC 5321 §5.1"))
        else:
            recs.append(Recommendation(Level.WARN, "mx", f"{domain} has neither MX nor address records: bounces "
                                       "cannot reach it, and receivers that check the sender domain refuse its mail",
                                       f"Publish `{domain}. MX 10 <your mail host>.` so replies and bounces arrive.",
                                       "RFC 5321 §5.1"))
        return section
    section.status = "ok"
    for i, (pref, host) in enumerate(hosts):
        mx = MxHost(int(pref), host)
        section.hosts.append(mx)
        if host in ("", "."):
            continue
        if _is_ip(host):
            mx.problem = "an MX must name a host, not an address"
            recs.append(Recommendation(Level.WARN, "mx", f"MX {host} of {domain} is an IP address; receivers "
                                       "ignore it", f"Point the MX at a host name with an A record for {host}.",
                                       "RFC 5321 §5.1"))
            continue
        if i >= MAX_MX_HOSTS:
            mx.problem = f"not looked up (the inspector stops after {MAX_MX_HOSTS} hosts)"
            continue
        try:
            mx.addresses = _addresses(dns, host)
        except DnsTempError as exc:
            mx.problem = f"temperror: {exc}"
            continue
        if not mx.addresses:
            mx.problem = "has no A or AAAA record"
            recs.append(Recommendation(Level.WARN, "mx", f"MX host {host} of {domain} has no address, so mail to it "
                                       "cannot be delivered", f"Publish an A record for {host}, or remove the MX.",
                                       "RFC 5321 §5.1"))
    null = [h for h in section.hosts if h.host in ("", ".")]
    if null:
        section.status = "null"
        if len(section.hosts) > 1:
            recs.append(Recommendation(Level.WARN, "mx", f"{domain} mixes a null MX with other MX records",
                                       "A null MX (MX 0 .) must be the only MX record.", "RFC 7505 §3"))
        else:
            recs.append(Recommendation(Level.WARN, "mx", f"{domain} publishes a null MX: it receives no mail, so "
                                       "bounces to it are lost and receivers may refuse mail from it (550 5.7.27)",
                                       "Send from a domain that can receive replies and bounces, or publish a "
                                       "real MX.", "RFC 7505 §4.2"))
    return section


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


# the report ------------------------------------------------------------------------------------------

@dataclass
class DomainReport:
    domain: str
    spf: SpfSection
    dmarc: DmarcSection
    dkim: DkimSection
    mx: MxSection
    recommendations: list[Recommendation] = field(default_factory=list)

    @property
    def level(self) -> Level:
        worst = max((r.level.rank for r in self.recommendations), default=0)
        return {0: Level.PASS, 1: Level.WARN, 2: Level.FAIL}[worst]

    @property
    def needs_fixing(self) -> bool:
        """Whether a recommendation is a problem that affects delivery now."""
        return any(r.level is Level.FAIL for r in self.recommendations)


def normalise_domain(domain: str) -> str:
    """The domain as DNS is asked for it (lower case, IDNA, no final dot); ValueError when it is not one."""
    name = domain.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{domain[:80]!r} is not a domain name") from exc
    if problem := _name_problem(name):
        raise ValueError(f"{domain[:80]!r} is not a domain name: {problem}")
    return name


def inspect_domain(domain: str, dns: DnsView, selectors: Iterable[str] = (),
                   common_selectors: Iterable[str] = COMMON_SELECTORS) -> DomainReport:
    """What the DNS of `domain` says to a receiver, section by section, and what to change.

    Raises ValueError only for a `domain` that is not a domain name; DNS failures are reported per section.
    """
    domain = normalise_domain(domain)
    recs: list[Recommendation] = []
    spf = inspect_spf(domain, dns, recs)
    dmarc = inspect_dmarc(domain, dns, recs)
    dkim = inspect_dkim(domain, dns, selectors, recs, common_selectors)
    mx = inspect_mx(domain, dns, recs)
    recs.sort(key=lambda r: -r.level.rank if r.level is not Level.INFO else 1)
    return DomainReport(domain, spf, dmarc, dkim, mx, recs)
