"""Provides the client checks: reverse DNS of the connecting IP, forward confirmation, generic names and HELO.

Before a receiver reads a byte of the message it knows two things about the sender: the IP address and
the name given in HELO/EHLO. Gmail requires a PTR record whose name resolves back to the IP (421 4.7.23
defers, 550 5.7.25 rejects), filters score PTR names that look like a consumer line (`1-2-3-4.dsl.…`),
and a HELO of `localhost` or a bare word breaks RFC 5321. These checks look at the effective client
(`--client-ip` or XCLIENT ADDR), so they say nothing useful for a loopback sender and are skipped then.

Result words (read by other checks, keep them stable):
  client.ptr          pass | none | temperror
  client.fcrdns       pass | fail | none | temperror
  client.generic-ptr  pass | generic | none | temperror
  client.helo         pass | invalid | literal | unresolvable | unrelated | none | temperror
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from lab.core.checks.dmarc import org_domain
from lab.core.context import Context
from lab.core.dnsview import DnsTempError, DnsView
from lab.core.results import CheckResult, Level, check
from lab.textsafe import shown

MAX_PTR_NAMES = 10  # a PTR set is one or two names; a hostile zone must not turn into 1,000 forward lookups
MAX_NAME = 255  # the longest DNS name (RFC 1035 §2.3.4); longer claimed names are cut before matching

GMAIL_PTR = ("421 4.7.23 (deferred and rate-limited) / 550 5.7.25 (rejected): the sending IP has no PTR record, "
             "or the PTR name does not resolve back to the IP")
GMAIL_REF = "Gmail sender guidelines (support.google.com/a/answer/81126)"
REF_PTR = f"RFC 1912 §2.1; {GMAIL_REF}"
REF_FCRDNS = f"RFC 8601 §3 (iprev); {GMAIL_REF}"
REF_GENERIC = "M3AAWG Sender Best Common Practices (rDNS); Spamhaus PBL"
REF_HELO = "RFC 5321 §4.1.1.1, §2.3.5"

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "localdomain", "local"})
_LOCAL_SUFFIXES = (".localhost", ".localdomain", ".local", ".lan", ".home.arpa", ".internal")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# Words ISPs put in the PTR names of consumer and pooled lines. Alone they prove nothing ("pool" is a fine
# word for a mail host); next to the address's octets they mark a generic name.
_GENERIC_WORDS = ("dyn", "dhcp", "pool", "cable", "dsl", "ppp", "static", "dial", "broadband", "client",
                  "cust", "fiber", "fibre", "ftth", "cpe", "wireless", "mobile", "dip", "nat", "user")
_GENERIC_TOKENS = frozenset({"ip", "host", "res", "bb", "cm", "h", "ip4", "ipv4", "ip6", "ipv6", "adsl", "vdsl"})


@dataclass(frozen=True, slots=True)
class Reverse:
    """What reverse DNS said for the client IP."""

    status: str  # "pass" (PTR names found), "none" (NXDOMAIN or no PTR records) or "temperror"
    query: str  # the in-addr.arpa / ip6.arpa name asked
    names: tuple[str, ...] = ()
    detail: str = ""  # "NXDOMAIN", "no PTR records", or the temporary error


def check_client(ctx: Context) -> list[CheckResult]:
    """client.ptr, client.fcrdns, client.generic-ptr and client.helo; one INFO result for a loopback client."""
    c = ctx.capture.client
    if c.is_loopback:
        return [check("client.ip", Level.INFO,
                      f"Sent from {c.ip} (loopback): reverse DNS and HELO are not checked",
                      result="none", client_ip=c.ip, source=c.source,
                      fix="Tell the lab the production sending IP: `--client-ip IP`, or XCLIENT ADDR=IP "
                          "(and NAME=, HELO=) from the test.")]
    ip = _ip(c.ip)
    if ip is None:
        return [check("client.ip", Level.INFO, f"The client address {shown(c.ip)} is not an IP address: "
                      "reverse DNS and HELO are not checked", result="none", client_ip=shown(c.ip))]
    rev = reverse(ctx.dns, ip)
    claimed = _claimed(c.name)
    fwd = confirm(ctx.dns, ip, rev)
    return [
        _ptr(ctx, ip, rev, claimed),
        _fcrdns(ctx, ip, rev, fwd, claimed),
        _generic(ip, rev, claimed),
        _helo(ctx, ip, rev, fwd),
    ]


# --- reverse DNS -------------------------------------------------------------------------------------------


def reverse(dns: DnsView, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Reverse:
    """The PTR names of `ip` (at most MAX_PTR_NAMES, lower-case, without the final dot)."""
    query = ip.reverse_pointer
    try:
        answer = dns.lookup(query, "PTR")
    except DnsTempError as exc:
        return Reverse("temperror", query, detail=str(exc))
    names: list[str] = []
    for record in answer.records:
        name = str(record).rstrip(".").lower()
        if name and name not in names:
            names.append(name)
        if len(names) >= MAX_PTR_NAMES:
            break
    if names:
        return Reverse("pass", query, tuple(names))
    return Reverse("none", query, detail="NXDOMAIN" if not answer.exists else "no PTR records")


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The forward lookups of each PTR name: which resolve back to the client IP."""

    lines: tuple[str, ...] = ()  # "name → addresses", for evidence
    confirmed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def confirm(dns: DnsView, ip, rev: Reverse) -> Confirmation:
    """Forward-confirm the PTR names of `ip` (RFC 8601 §3 iprev): A for IPv4, AAAA for IPv6."""
    lines: list[str] = []
    confirmed: list[str] = []
    errors: list[str] = []
    for name in rev.names:
        addrs, err = forward(dns, name, ip.version)
        if err:
            errors.append(err)
            lines.append(f"{shown(name)} → temporary error")
            continue
        lines.append(f"{shown(name)} → {', '.join(addrs) or '(no ' + _rtype(ip) + ' records)'}")
        if any(_ip(a) == ip for a in addrs):
            confirmed.append(name)
    return Confirmation(tuple(lines), tuple(confirmed), tuple(errors))


def forward(dns: DnsView, name: str, version: int) -> tuple[list[str], str | None]:
    """The A (IPv4) or AAAA (IPv6) addresses of `name`, and the temporary error if the lookup failed."""
    try:
        answer = dns.lookup(name, "A" if version == 4 else "AAAA")
    except DnsTempError as exc:
        return [], str(exc)
    return [str(a) for a in answer.records][:20], None


def _ptr(ctx: Context, ip, rev: Reverse, claimed: str | None) -> CheckResult:
    """Receivers look the IP up before anything else; Gmail refuses mail from IPs with no PTR record."""
    ev = dict(client_ip=str(ip), query=rev.query, ptr=rev.names, **_claimed_evidence(claimed, rev))
    if rev.status == "pass":
        names = ", ".join(shown(n) for n in rev.names)
        return check("client.ptr", Level.PASS, f"{ip} has reverse DNS: {names}", result="pass",
                     ref=REF_PTR, **ev)
    if rev.status == "temperror":
        return check("client.ptr", Level.WARN, f"The reverse DNS lookup for {ip} failed temporarily",
                     result="temperror", ref=REF_PTR, error=rev.detail, **ev,
                     fix="Check the lab's DNS (--nameserver, or a PTR record in a zone overlay) and judge the "
                         "message again; a receiver whose lookup fails defers the mail.")
    host = _suggest_host(ctx)
    return check("client.ptr", Level.FAIL, f"{ip} has no reverse DNS (PTR record): {rev.detail}",
                 result="none", ref=REF_PTR, answer=rev.detail, gmail=GMAIL_PTR, **ev,
                 fix=f"Ask whoever controls {ip} (your hosting or cloud provider, or your ESP for its shared "
                     f"IPs) to set its PTR record to the mail host's name, e.g. {host}, and publish "
                     f"`{host}. A {ip}` (AAAA for IPv6) so the name resolves back. To try it here first, add "
                     f"`{rev.query}. PTR {host}.` to a zone overlay.")


def _fcrdns(ctx: Context, ip, rev: Reverse, fwd: Confirmation, claimed: str | None) -> CheckResult:
    """A PTR name only identifies the sender when that name resolves back to the IP (forward-confirmed)."""
    ev: dict[str, object] = dict(client_ip=str(ip), ptr=rev.names)
    if rev.status != "pass":
        if claimed:  # no PTR to confirm, but say what the claimed name resolves to
            addrs, err = forward(ctx.dns, claimed, ip.version)
            ev["claimed-name"] = f"{shown(claimed)} (from XCLIENT NAME)"
            ev["claimed-name-resolves-to"] = err or ", ".join(addrs) or "(nothing)"
        if rev.status == "temperror":
            return check("client.fcrdns", Level.WARN, "Forward-confirmed reverse DNS cannot be checked: the PTR "
                         "lookup failed temporarily", result="temperror", ref=REF_FCRDNS, error=rev.detail, **ev)
        return check("client.fcrdns", Level.INFO, f"No PTR name to confirm for {ip} (see client.ptr)",
                     result="none", ref=REF_FCRDNS, **ev)
    ev["forward"] = "; ".join(fwd.lines)
    if claimed:
        ev["claimed-name"] = f"{shown(claimed)} (from XCLIENT NAME)"
    if fwd.confirmed:
        return check("client.fcrdns", Level.PASS,
                     f"Forward-confirmed: {shown(fwd.confirmed[0])} resolves back to {ip}", result="pass",
                     ref=REF_FCRDNS, confirmed=[shown(n) for n in fwd.confirmed], **ev)
    if fwd.errors:
        return check("client.fcrdns", Level.WARN, "Forward confirmation failed temporarily: a PTR name could not "
                     "be resolved", result="temperror", ref=REF_FCRDNS, error=fwd.errors[0], **ev,
                     fix="Check the lab's DNS and judge the message again.")
    name = rev.names[0]
    return check("client.fcrdns", Level.FAIL,
                 f"Not forward-confirmed: no PTR name of {ip} resolves back to it", result="fail",
                 ref=REF_FCRDNS, gmail=GMAIL_PTR, **ev,
                 fix=f"Publish `{shown(name)}. {_rtype(ip)} {ip}` so the PTR name resolves to the sending IP, or "
                     f"ask the IP's provider for a PTR naming a host whose {_rtype(ip)} record is {ip}.")


def _generic(ip, rev: Reverse, claimed: str | None) -> CheckResult:
    """Names like 1-2-3-4.dsl.isp.example say "consumer line": filters score them, Spamhaus PBL lists them."""
    names: tuple[str, ...] = rev.names
    source = "PTR"
    if not names and claimed:
        names, source = (claimed,), "XCLIENT NAME"
    if not names:
        if rev.status == "temperror":
            return check("client.generic-ptr", Level.INFO, "No PTR name to judge (the lookup failed temporarily)",
                         result="temperror", ref=REF_GENERIC, client_ip=str(ip))
        return check("client.generic-ptr", Level.INFO, "No PTR name to judge", result="none", ref=REF_GENERIC,
                     client_ip=str(ip))
    for name in names:
        why = looks_generic(name, str(ip))
        if why:
            return check("client.generic-ptr", Level.WARN,
                         f"The {source} name {shown(name)} looks generic (an ISP's name for a dynamic or "
                         "consumer address), which filters treat as a spam sign", result="generic",
                         ref=REF_GENERIC, client_ip=str(ip), name=shown(name), source=source, why=why,
                         fix=f"Ask the IP's provider for a PTR record naming your mail host, e.g. mail.your-domain "
                             f"(with an {_rtype(ip)} record back to {ip}); if the provider will not, send through "
                             "a relay or ESP whose IPs have proper names.")
    return check("client.generic-ptr", Level.PASS, f"The {source} name {shown(names[0])} names a host, not an "
                 "address", result="pass", ref=REF_GENERIC, client_ip=str(ip), names=[shown(n) for n in names],
                 source=source)


def looks_generic(name: str, ip: str) -> str | None:
    """Why `name` looks like a generic (ISP-assigned) name for `ip`, or None when it names a host.

    Generic means the host part (the name without its organisational domain) holds the whole address in a
    common spelling (dashed, dotted, reversed, zero-padded, hex, decimal), or a word such as dsl, dyn,
    pool or static next to at least two of the address's octets.
    """
    addr = _ip(ip)
    name = name[:MAX_NAME].rstrip(".").lower()
    if addr is None or not name:
        return None
    org = org_domain(name)
    host = name[: -len(org)].rstrip(".") if name.endswith(org) and name != org else ""
    if not host:
        return None
    for form, digits in _full_forms(addr):
        if _contains(host, form, digits):
            return f"contains the address as {form}"
    if addr.version == 4:
        word = _generic_word(host)
        if word:
            for form in _partial_forms(addr):
                if _contains(host, form, "0123456789"):
                    return f"'{word}' next to the octets {form}"
    return None


def _full_forms(addr) -> list[tuple[str, str]]:
    """Spellings of the whole address, each with the characters that must not touch it (its alphabet)."""
    dec, hexd = "0123456789", "0123456789abcdef"
    if addr.version == 4:
        octets = str(addr).split(".")
        forms: list[tuple[str, str]] = []
        for seq in (octets, octets[::-1]):
            padded = [o.zfill(3) for o in seq]
            for sep in "-._":
                forms += [(sep.join(seq), dec), (sep.join(padded), dec)]
            forms.append(("".join(padded), dec))
        forms += [(f"{int(addr):08x}", hexd), (str(int(addr)), dec)]
        return forms
    groups = addr.exploded.split(":")
    nibbles = "".join(groups)
    return [("-".join(groups), hexd), (nibbles, hexd), (addr.compressed.replace(":", "-"), hexd),
            (nibbles[16:], hexd), (".".join(nibbles[::-1]), hexd)]


def _partial_forms(addr) -> list[str]:
    """The last two or three octets, dashed, dotted or underscored, forwards or reversed."""
    o = str(addr).split(".")
    out: list[str] = []
    for seq in (o[1:], o[2:], o[1:][::-1], o[2:][::-1]):
        for sep in "-._":
            out.append(sep.join(seq))
    return out


def _contains(host: str, form: str, alphabet: str) -> bool:
    """`form` occurs in `host` with no character of `alphabet` right before or after it."""
    start = host.find(form)
    while start != -1:
        end = start + len(form)
        if (start == 0 or host[start - 1] not in alphabet) and (end == len(host) or host[end] not in alphabet):
            return True
        start = host.find(form, start + 1)
    return False


def _generic_word(host: str) -> str | None:
    for token in re.split(r"[^a-z0-9]+", host):
        letters = token.strip("0123456789")
        if letters in _GENERIC_TOKENS:
            return letters
        for word in _GENERIC_WORDS:
            if word in token:
                return word
    return None


# --- HELO --------------------------------------------------------------------------------------------------


def _helo(ctx: Context, ip, rev: Reverse, fwd: Confirmation) -> CheckResult:
    """The HELO/EHLO name must be the client's FQDN, or an address literal when it has none.

    RFC 5321 §2.3.5 says the EHLO name MUST be a primary host name (one with an address record) or an
    address literal, and §4.1.1.1 asks for the FQDN. Levels follow what receivers do with a bad one:
    - `localhost`, a bare word, an unbracketed IP or a malformed name breaks that MUST; Postfix sites
      reject it outright (reject_non_fqdn_helo_hostname / reject_invalid_helo_hostname, 504 5.5.2) and
      Gmail and Outlook score it: FAIL.
    - An address literal is allowed but looks like a host that does not know its name, a spam sign in
      every filter (none rejects on it): WARN.
    - A name that does not resolve, or resolves but is unrelated to both the PTR name and the From domain:
      §4.1.4 forbids refusing mail because the HELO does not verify, so receivers only score it: WARN.
    """
    helo = ctx.capture.envelope.helo
    from_domain = _from_domain(ctx)
    ev: dict[str, object] = dict(helo=shown(helo or ""), client_ip=str(ip), ptr=rev.names, from_domain=from_domain)
    good = [n for n in fwd.confirmed if looks_generic(n, str(ip)) is None]  # a name worth greeting with
    fix_name = good[0] if good else _suggest_host(ctx)
    fix = (f"Configure the sending host to greet with its fully-qualified name, the one its PTR record gives "
           f"(e.g. EHLO {shown(fix_name)}); in Python: smtplib.SMTP(host, port, local_hostname='{shown(fix_name)}')."
           + ("" if good else " The PTR record of the IP should give that name too (see client.ptr)."))
    text = (helo or "").strip()
    if not text:
        return check("client.helo", Level.INFO, "No HELO/EHLO name was recorded", result="none", ref=REF_HELO, **ev)
    if len(text) > MAX_NAME:
        return check("client.helo", Level.FAIL, f"The HELO name is {len(text):,} characters long: not a host name",
                     result="invalid", ref=REF_HELO, fix=fix, **ev)
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        literal = _ip(inner[5:] if inner.lower().startswith("ipv6:") else inner)
        if literal is None:
            return check("client.helo", Level.FAIL, f"HELO {shown(text)} is not a valid address literal",
                         result="invalid", ref=REF_HELO, fix=fix, **ev)
        same = literal == ip
        summary = (f"HELO is the address literal {shown(text)}: allowed for a host without a name, but filters "
                   "read it as a spam sign" if same else
                   f"HELO is the address literal {shown(text)}, which is not the client's address {ip}")
        return check("client.helo", Level.WARN, summary, result="literal", ref=REF_HELO, fix=fix,
                     literal_is_client_ip="yes" if same else "no", **ev)
    if _ip(text) is not None:
        return check("client.helo", Level.FAIL, f"HELO {shown(text)} is an IP address without brackets: neither a "
                     "host name nor an address literal ([addr])", result="invalid", ref=REF_HELO, fix=fix, **ev)
    name = _ascii_name(text)
    if name is None:
        return check("client.helo", Level.FAIL, f"HELO {shown(text)} is not a valid host name", result="invalid",
                     ref=REF_HELO, fix=fix, **ev)
    if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
        return check("client.helo", Level.FAIL, f"HELO {shown(name)} is a local name nobody else can resolve",
                     result="invalid", ref=REF_HELO, fix=fix, **ev)
    if "." not in name:
        return check("client.helo", Level.FAIL, f"HELO {shown(name)} is a bare word, not a fully-qualified name",
                     result="invalid", ref=REF_HELO, fix=fix, **ev)
    if name.rpartition(".")[2].isdigit():
        return check("client.helo", Level.FAIL, f"HELO {shown(name)} has an all-numeric top-level label",
                     result="invalid", ref=REF_HELO, fix=fix, **ev)
    addrs, errors = _addresses(ctx.dns, name)
    ev["resolves_to"] = addrs
    if not addrs:
        if errors:
            return check("client.helo", Level.WARN, f"HELO {shown(name)} could not be resolved now",
                         result="temperror", ref=REF_HELO, error=errors[0], **ev,
                         fix="Check the lab's DNS and judge the message again.")
        return check("client.helo", Level.WARN, f"HELO {shown(name)} does not resolve (no A or AAAA record)",
                     result="unresolvable", ref=REF_HELO, **ev,
                     fix=f"Publish an A record for {shown(name)} pointing to {ip} (AAAA for IPv6), or greet with a "
                         f"name that has one, e.g. {shown(fix_name)}.")
    ev["matches_client_ip"] = "yes" if any(_ip(a) == ip for a in addrs) else "no"
    relation = _relation(name, rev.names, from_domain)
    if relation:
        return check("client.helo", Level.PASS, f"HELO {shown(name)} resolves and {relation}", result="pass",
                     ref=REF_HELO, relation=relation, **ev)
    if rev.status == "temperror":
        return check("client.helo", Level.WARN, f"HELO {shown(name)} resolves; whether it matches the PTR name is "
                     "unknown (the PTR lookup failed temporarily)", result="temperror", ref=REF_HELO, **ev)
    return check("client.helo", Level.WARN,
                 f"HELO {shown(name)} resolves but belongs with neither the PTR name nor the From domain",
                 result="unrelated", ref=REF_HELO, fix=fix, **ev)


def _addresses(dns: DnsView, name: str) -> tuple[list[str], list[str]]:
    addrs: list[str] = []
    errors: list[str] = []
    for version in (4, 6):
        found, err = forward(dns, name, version)
        addrs += found
        if err:
            errors.append(err)
    return addrs, errors


def _relation(name: str, ptr_names: tuple[str, ...], from_domain: str | None) -> str | None:
    if name in ptr_names:
        return "is the PTR name"
    org = org_domain(name)
    for ptr in ptr_names:
        if org_domain(ptr) == org:
            return f"is in the same organisation as the PTR name {shown(ptr)} ({org})"
    if from_domain and org_domain(from_domain) == org:
        return f"is in the From domain's organisation ({org})"
    return None


def _ascii_name(text: str) -> str | None:
    """The HELO as a lower-case A-label host name, or None when it is not a syntactically valid one."""
    name = text.rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            return None
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name


# --- helpers -----------------------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _ip(text: str | None):
    """The address in `text` (IPv4-mapped IPv6 as IPv4), or None; cached, as a message asks about a handful
    of addresses a dozen times (the objects are immutable)."""
    try:
        addr = ipaddress.ip_address((text or "").strip().partition("%")[0])  # a zone index (fe80::1%eth0) is local
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _rtype(ip) -> str:
    return "A" if ip.version == 4 else "AAAA"


def _claimed(name: str | None) -> str | None:
    name = (name or "").strip().rstrip(".").lower()[:MAX_NAME]
    return name or None


def _claimed_evidence(claimed: str | None, rev: Reverse) -> dict[str, str]:
    if not claimed:
        return {}
    if rev.status == "temperror":
        agrees = "unknown: the PTR lookup failed"
    elif claimed in rev.names:
        agrees = "yes"
    elif rev.names:
        agrees = "no: DNS gives " + ", ".join(shown(n) for n in rev.names)
    else:
        agrees = "no: DNS has no PTR record"
    return {"claimed-name": f"{shown(claimed)} (from XCLIENT NAME)", "claimed-name-in-dns": agrees}


def _from_domain(ctx: Context) -> str | None:
    box = ctx.message.from_mailbox
    domain = box.domain if box else None
    return shown(domain, 253) if domain else None


def _suggest_host(ctx: Context) -> str:
    domain = _from_domain(ctx)
    name = _ascii_name(domain) if domain else None
    return f"mail.{org_domain(name)}" if name and "." in name else "mail.example.com"
