"""Provides the sender checks: whether From, MAIL FROM, HELO, Reply-To, Message-ID and Date look trustworthy.

Receivers judge a message by more than SPF and DKIM: one clear From mailbox, identities in the same
organisation, a display name that does not impersonate, and a sane Message-ID and Date. Each rule here
returns a result with the evidence it used; nothing in the mail can make it raise.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from lab.core.checks.dmarc import org_domain
from lab.core.context import Context
from lab.core.message import Mailbox, parse_mailboxes
from lab.core.results import CheckResult, Level, check
from lab.textsafe import shown as _shown

ROLE_LOCAL_PARTS = frozenset({
    "postmaster", "abuse", "root", "hostmaster", "webmaster", "admin", "administrator", "mailer-daemon",
    "mailerdaemon", "security", "noc", "daemon", "nobody", "sysadmin", "www", "www-data", "operator",
    "usenet", "uucp", "ftp", "system", "listmaster",
})
NOREPLY_LOCAL_PARTS = frozenset({"noreply", "donotreply", "noreplies"})

FUTURE_SKEW = timedelta(minutes=15)
MAX_AGE = timedelta(days=3)

# Characters that reorder or hide text: bidi embeddings/overrides/isolates, zero-width, BOM, soft hyphen.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Parts are bounded (a local part is at most 64 octets, a label 63, RFC 5321 §4.5.3.1): unbounded runs made
# a 100 KB display name without an address cost minutes of regex backtracking.
_EMAIL = re.compile(r"[\w.%+'!#$&*/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_DOMAIN = re.compile(r"(?<![\w@.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))(?![\w-])")
# Display names like "Node.js Team" are common, so only tokens ending in a TLD people recognise count.
_COMMON_TLDS = frozenset({
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "io", "co", "me", "app", "dev",
    "ai", "us", "uk", "de", "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "dk", "fi", "pl",
    "ru", "cn", "jp", "kr", "in", "br", "au", "ca", "mx", "eu", "xyz", "online", "site", "shop",
    "store", "top", "club", "live", "email", "cloud",
})
_MSGID = re.compile(r'<((?:[^\s<>@"]+|"[^"\r\n]*"))@([^\s<>@\[\]]+|\[[^\s\[\]\\]*\])>')
_HOSTNAME = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*)(?:\.[a-z0-9_-]+)+")
_LOCALHOSTS = frozenset({"localhost", "localhost.localdomain", "localdomain", "local"})

_REF_FROM = "RFC 5322 §3.6.2; RFC 7489 §6.6.1"


def check_sender(ctx: Context) -> list[CheckResult]:
    """Every sender rule, in the order the UI shows them."""
    box = ctx.message.from_mailbox
    if box is not None and not _valid_address(box.address):
        box = None  # sender.from already failed; the other rules need an address to reason about
    return [
        *_from(ctx),
        *_role(ctx, box),
        *_alignment(ctx, box),
        *_display_name(box),
        *_reply_to(ctx, box),
        *_message_id(ctx),
        *_date(ctx),
        *_history(ctx, box),
    ]


def _from(ctx: Context) -> list[CheckResult]:
    """DMARC needs exactly one author domain; anything else is rejected or ignored by receivers."""
    msg = ctx.message
    fields = msg.get_all("from")
    fix = 'Send exactly one From field holding one mailbox: "Name <you@your-domain>".'
    if not fields:
        return [check("sender.from", Level.FAIL, "The message has no From field", fix=fix, ref=_REF_FROM)]
    shown = _listed(f.raw for f in fields)
    if len(fields) > 1:
        return [check("sender.from", Level.FAIL, f"The message has {len(fields)} From fields",
                      fix=fix, ref=_REF_FROM, from_fields=shown)]
    boxes = msg.from_mailboxes
    if len(boxes) > 1:
        return [check("sender.from", Level.FAIL, f"From holds {len(boxes)} mailboxes; DMARC receivers "
                      "reject or cannot judge such mail", fix=fix, ref=_REF_FROM, from_field=shown[0],
                      mailboxes=_listed(b.address for b in boxes))]
    if not boxes or not _valid_address(boxes[0].address):
        return [check("sender.from", Level.FAIL, "From holds no parseable mailbox", fix=fix, ref=_REF_FROM,
                      from_field=shown[0] or "(empty)")]
    return [check("sender.from", Level.PASS, f"From is one mailbox: {_shown(boxes[0].address)}",
                  ref=_REF_FROM, address=_shown(boxes[0].address), domain=boxes[0].domain)]


def _role(ctx: Context, box: Mailbox | None) -> list[CheckResult]:
    """Role and no-reply senders look automated or compromised to both filters and people."""
    out: list[CheckResult] = []
    if box is not None:
        kind = _local_kind(box.local_part)
        addr = _shown(box.address)
        if kind == "role":
            out.append(check("sender.role-address", Level.WARN,
                             f"From is a role address ({addr}): receivers and users distrust mail from it",
                             ref="RFC 2142", address=addr,
                             fix="Send from a dedicated address such as notifications@ or hello@ your domain; "
                                 "keep role mailboxes for receiving."))
        elif kind == "noreply":
            out.append(check("sender.role-address", Level.INFO,
                             f"From is a no-reply address ({addr}): replies are lost",
                             ref="RFC 2142", address=addr,
                             fix="Fine for transactional mail; for anything a person may answer, use a "
                                 "monitored address or set Reply-To to one."))
        else:
            out.append(check("sender.role-address", Level.PASS, f"From ({addr}) is not a role address",
                             ref="RFC 2142", address=addr))
    mail_from = ctx.capture.envelope.mail_from
    if mail_from and "@" in mail_from and _local_kind(mail_from.rpartition("@")[0]) == "role":
        out.append(check("sender.envelope-role", Level.INFO,
                         f"The envelope sender (MAIL FROM) is a role address: {_shown(mail_from)}",
                         ref="RFC 2142", mail_from=_shown(mail_from),
                         fix="Bounces will land in that role mailbox; a dedicated bounce address (e.g. "
                             "bounces@) keeps them apart from abuse reports and postmaster mail."))
    return out


def _alignment(ctx: Context, box: Mailbox | None) -> list[CheckResult]:
    """SPF only counts for DMARC when MAIL FROM is in the From domain's organisation (RFC 7489 §3.1.2)."""
    env = ctx.capture.envelope
    from_dom = box.domain if box else None
    env_dom = env.mail_from_domain
    helo_dom = _helo_domain(env.helo)
    ref = "RFC 7489 §3.1.2"
    shown = {"from_domain": _shown(from_dom or ""), "mail_from_domain": _shown(env_dom or "")}
    out: list[CheckResult] = []
    if not env.mail_from:
        out.append(check("sender.alignment", Level.INFO,
                         "MAIL FROM is null (<>): a bounce or auto-reply, so SPF is checked for HELO and "
                         "cannot align with From", ref=ref, from_domain=shown["from_domain"],
                         helo=_shown(env.helo or "")))
    elif not env_dom:
        out.append(check("sender.alignment", Level.WARN,
                         f"MAIL FROM {_shown(env.mail_from)} has no domain, so nothing can align with From",
                         ref=ref, mail_from=_shown(env.mail_from),
                         fix="Send with a MAIL FROM (return-path) address under your From domain."))
    elif from_dom:
        if _org(from_dom) == _org(env_dom):
            how = "the same domain" if from_dom == env_dom else f"the same organisation ({_org(from_dom)})"
            out.append(check("sender.alignment", Level.PASS, f"From and MAIL FROM are in {_shown(how)}: SPF "
                             "can align for DMARC", ref=ref, **shown))
        else:
            out.append(check(
                "sender.alignment", Level.WARN,
                f"From ({shown['from_domain']}) and MAIL FROM ({shown['mail_from_domain']}) are in different "
                "organisations: SPF cannot align, so DMARC rests on DKIM alone", ref=ref, **shown,
                fix=f"Use a return-path (bounce) domain under {shown['from_domain']}, e.g. "
                    f"bounces.{_shown(_org(from_dom))}; sending services call this a custom MAIL FROM or "
                    "return-path domain."))
    orgs = {_org(d) for d in (from_dom, env_dom) if d}
    if helo_dom and orgs and _org(helo_dom) not in orgs:
        out.append(check("sender.helo", Level.INFO,
                         f"HELO name {helo_dom} is unrelated to the sender's domain(s)",
                         ref="RFC 5321 §4.1.1.1", helo=helo_dom, **shown,
                         fix="Normal for shared sending services; for your own server, give it a name "
                             "under your domain with matching forward and reverse DNS."))
    return out


def _display_name(box: Mailbox | None) -> list[CheckResult]:
    """Display names are what people read; an address or domain in them is the classic impersonation."""
    if box is None:
        return []
    ref = "RFC 5322 §3.4; RFC 7489 §10.4"
    name = box.display_name
    if not name.strip():
        return [check("sender.display-name", Level.PASS, "From has no display name", ref=ref)]
    out: list[CheckResult] = []
    shown = _shown(name)
    if _INVISIBLE.search(name) or any(unicodedata.category(c) == "Cc" for c in name):
        out.append(check("sender.display-name-chars", Level.WARN,
                         "The display name contains invisible, bidi-override or control characters",
                         ref=ref, display_name=shown,
                         fix="Remove them: they reorder or hide text and are a known spoofing trick."))
    plain = unicodedata.normalize("NFKC", _INVISIBLE.sub("", name)).lower()
    addr = box.address.lower()
    others = sorted({e for e in _EMAIL.findall(plain) if e != addr})
    if others:
        out.append(check("sender.display-name", Level.FAIL,
                         f"The display name shows the address {_shown(others[0])} but the mail is from "
                         f"{_shown(box.address)}", ref=ref, display_name=shown, address=_shown(box.address),
                         fix="Put only a name in the display name, or exactly the sending address."))
    from_org = _org(box.domain) if box.domain else None
    domains = sorted({m.group(1) for m in _DOMAIN.finditer(_EMAIL.sub(" ", plain))
                      if m.group(2) in _COMMON_TLDS and _org(m.group(1)) != from_org})
    if domains:
        out.append(check("sender.display-name-domain", Level.WARN,
                         f"The display name names {_shown(domains[0])}, which is not the From domain "
                         f"{box.domain}", ref=ref, display_name=shown, domain=box.domain,
                         fix="Name the brand in words, or send from that domain."))
    if not any(c.id == "sender.display-name" for c in out):
        out.append(check("sender.display-name", Level.PASS, f"Display name {shown!r} shows no other address",
                         ref=ref, display_name=shown))
    return out


def _reply_to(ctx: Context, box: Mailbox | None) -> list[CheckResult]:
    """A Reply-To in another organisation sends the conversation elsewhere, a common phishing shape."""
    fields = ctx.message.get_all("reply-to")
    ref = "RFC 5322 §3.6.2"
    if not fields:
        return [check("sender.reply-to", Level.INFO, "No Reply-To: replies go to the From address", ref=ref)]
    boxes = [b for f in fields for b in parse_mailboxes(f.raw)]
    raw = _shown(fields[0].raw)
    if not boxes:
        return [check("sender.reply-to", Level.WARN, "Reply-To holds no parseable address", ref=ref,
                      reply_to=raw or "(empty)", fix="Fix the Reply-To field or remove it.")]
    if box is None or not box.domain:
        return [check("sender.reply-to", Level.INFO, "Reply-To cannot be compared: From has no single mailbox",
                      ref=ref, reply_to=raw)]
    from_org = _org(box.domain)
    foreign = sorted({b.domain or "(none)" for b in boxes if not b.domain or _org(b.domain) != from_org})
    if foreign:
        return [check("sender.reply-to", Level.WARN,
                      f"Reply-To points to {_shown(foreign[0])}, outside the From domain {box.domain}: replies "
                      "go elsewhere and spam filters weigh this", ref=ref, reply_to=raw, from_domain=box.domain,
                      fix=f"Use a Reply-To under {from_org}, or drop it if replies should reach the sender.")]
    return [check("sender.reply-to", Level.PASS, "Reply-To is in the From domain's organisation", ref=ref,
                  reply_to=raw)]


def _message_id(ctx: Context) -> list[CheckResult]:
    """Threading, deduplication and spam scoring all lean on one well-formed, globally unique Message-ID."""
    fields = ctx.message.get_all("message-id")
    ref = "RFC 5322 §3.6.4"
    gen = "Let your mail library generate it, e.g. email.utils.make_msgid(domain='your-domain.example')."
    if not fields:
        return [check("sender.message-id", Level.WARN, "The message has no Message-ID", ref=ref, fix=gen)]
    raw = fields[0].raw.strip()
    if len(fields) > 1:
        return [check("sender.message-id", Level.WARN, f"The message has {len(fields)} Message-ID fields",
                      ref=ref, fix="Send exactly one Message-ID.", message_id=_listed(f.raw for f in fields))]
    m = _MSGID.fullmatch(raw)
    if not m:
        return [check("sender.message-id", Level.WARN, "The Message-ID is not of the form <left@domain>",
                      ref=ref, fix=gen, message_id=_shown(raw) or "(empty)")]
    domain = m.group(2).lower().rstrip(".")
    if domain in _LOCALHOSTS or domain.endswith((".localdomain", ".local", ".localhost")):
        return [check("sender.message-id", Level.WARN, f"The Message-ID names {_shown(domain)}: the sending host "
                      "does not know its own name", ref=ref, message_id=_shown(raw), fix=gen)]
    if domain.startswith("[") or "." not in domain:
        return [check("sender.message-id", Level.INFO, f"The Message-ID ends in {_shown(domain)}, not a "
                      "domain name, so it may not be globally unique", ref=ref, message_id=_shown(raw), fix=gen)]
    return [check("sender.message-id", Level.PASS, "The Message-ID is well formed", ref=ref,
                  message_id=_shown(raw))]


def _date(ctx: Context) -> list[CheckResult]:
    """A missing or wrong Date is a spam signal and misorders the message in every mailbox."""
    fields = ctx.message.get_all("date")
    ref = "RFC 5322 §3.6.1"
    fmt = "Set Date when the message is composed: email.utils.format_datetime(datetime.now(timezone.utc))."
    if not fields:
        return [check("sender.date", Level.WARN, "The message has no Date field", ref=ref, fix=fmt)]
    raw = fields[0].raw.strip()
    if len(fields) > 1:
        return [check("sender.date", Level.WARN, f"The message has {len(fields)} Date fields", ref=ref,
                      fix="Send exactly one Date field.", date=_listed(f.raw for f in fields))]
    sent = _parse_date(raw)
    if sent is None:
        return [check("sender.date", Level.WARN, "The Date field cannot be parsed", ref=ref, fix=fmt,
                      date=_shown(raw) or "(empty)")]
    received = ctx.capture.received_at
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    skew = sent - received
    ev = {"date": _shown(raw), "received": received.isoformat(timespec="seconds")}
    if skew > FUTURE_SKEW:
        return [check("sender.date", Level.WARN, f"Date is {_span(skew)} in the future", ref=ref, **ev,
                      fix="The sending host's clock or time zone is wrong: run NTP and check the UTC offset "
                          "written in Date.")]
    if -skew > MAX_AGE:
        return [check("sender.date", Level.WARN, f"Date is {_span(-skew)} older than the arrival", ref=ref,
                      **ev, fix="The mail sat in a queue, was resent with its old Date, or the sender's clock is "
                                "wrong: set Date when the message is actually sent, and run NTP.")]
    return [check("sender.date", Level.PASS, "Date is present and plausible", ref=ref, **ev)]


def _history(ctx: Context, box: Mailbox | None) -> list[CheckResult]:
    """Reputation follows the From domain and the sending IP: providers trust a sender that keeps both steady
    from one campaign to the next, and hold back a new or suddenly different one until it earns trust."""
    h = ctx.options.history
    if h is None or box is None:
        return []
    ref = "Gmail sender guidelines; M3AAWG Sending Domains BCP"
    address, domain = box.address.lower(), (box.domain or "")
    ip = ctx.capture.client.ip
    ev = dict(sender=h.sender, earlier_messages=h.earlier, earlier_from=_listed(h.from_addresses, 5),
              earlier_ips=_listed(h.ips, 5))
    if h.earlier == 0:
        return [check("sender.history", Level.INFO, f"The first message seen from this sender ({_shown(h.sender)})",
                      fix="Providers are wary of senders they have not seen: start a new domain or IP with low "
                          "volume and raise it over weeks (warm-up).", ref=ref, **ev)]
    domains = {a.rpartition("@")[2] for a in h.from_addresses}
    out = []
    if h.from_addresses and domain not in domains:
        before = _shown(", ".join(sorted(domains)[:3]))
        out.append(check("sender.history", Level.WARN, f"This sender changed its From domain: {_shown(domain)} "
                         f"now, {before} before", ref=ref, **ev,
                         fix="Keep sending from the same From domain: its reputation does not move with you, and "
                             "a sudden new domain from a known sender looks like a hijacked account."))
    elif h.from_addresses and address not in h.from_addresses:
        out.append(check("sender.history", Level.INFO, f"A new From address for this sender: {_shown(address)} "
                         f"(before: {_shown(h.from_addresses[0])})", ref=ref, **ev,
                         fix="Use one dedicated From address per kind of mail (receipts@, news@) and keep it."))
    if h.ips and ip not in h.ips:
        out.append(check("sender.history-ip", Level.WARN, f"{_shown(address)} came from a new sending IP {ip} "
                         f"(before: {_shown(', '.join(h.ips[:3]))})", ref=ref, **ev,
                         fix="Keep mail for one domain on stable IPs; warm up a new IP with low volume, and make "
                             "sure SPF covers it."))
    return out or [check("sender.history", Level.PASS, f"Consistent with {h.earlier} earlier message"
                         f"{'s' if h.earlier != 1 else ''} from this sender: same From address and sending IP",
                         ref=ref, **ev)]


def _listed(values: Iterable[str], limit: int = 10) -> list[str]:
    """Evidence naming repeated fields: the first `limit`, then how many more (10,000 From fields must not
    become a 400 KB evidence string in every pane and JSON document)."""
    out: list[str] = []
    more = 0
    for value in values:
        if len(out) < limit:
            out.append(_shown(value))
        else:
            more += 1
    return out + [f"… and {more:,} more"] if more else out


def _parse_date(raw: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(raw)
    except Exception:  # noqa: BLE001 - any odd Date is "unparseable", never an exception
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)  # "-0000": UTC, zone unknown


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    return f"{seconds // 60} minutes"


def _org(domain: str) -> str:
    return org_domain(domain)


def _local_kind(local: str) -> str | None:
    """'role', 'noreply' or None for a local part; subaddresses (+tag) and quotes are ignored."""
    base = local.strip('"').lower().partition("+")[0]
    if base in ROLE_LOCAL_PARTS:
        return "role"
    if re.sub(r"[-_.]", "", base) in NOREPLY_LOCAL_PARTS:
        return "noreply"
    return None


def _valid_address(address: str) -> bool:
    local, _, domain = address.rpartition("@")
    if not local or not domain or domain.startswith(".") or ".." in domain:
        return False
    return not any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Cs") or c in '<>()[],;:\\"'
                   for c in domain)


def _helo_domain(helo: str | None) -> str | None:
    """The HELO name when it is a dotted host name (not an address literal, not localhost)."""
    name = (helo or "").strip().rstrip(".").lower()
    if not _HOSTNAME.fullmatch(name) or name in _LOCALHOSTS or name.endswith(".localdomain"):
        return None
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        return name

