"""Provides the mail the lab writes back: RFC 3464 delivery status notifications and RFC 3834 auto-replies.

An application that sends mail must cope with what comes back: bounces for unknown users, "delayed"
notices for full mailboxes, and out-of-office replies. These functions build those messages exactly as a
receiving system would, so the lab can store them in the envelope sender's mailbox and the application's
bounce and reply handling can be tested deterministically.

Both are pure functions of their arguments (pass `now` for byte-identical output). Everything they copy
from a message or an envelope is hostile input: it is bounded, stripped of line breaks and control
characters, and never makes them raise. The output is always CRLF, 7-bit where the input allows it, with
no line longer than 998 octets (RFC 5322 §2.1.1).

The envelope of what they return is the caller's to set: MAIL FROM is the null reverse-path `<>` (RFC 3464
§2 for DSNs, RFC 3834 §3.3 for auto-replies), so nothing ever answers them in turn, and RCPT TO is the
original envelope sender. A message whose own reverse-path is null gets neither (RFC 5321 §4.5.5,
RFC 3834 §2): both functions return None for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime

from lab.core.message import ParsedMessage

MAX_HEADERS = 256 * 1024  # the original header section copied into a DSN; Postfix copies it whole, this bounds it
MAX_RECIPIENTS = 1000
MAX_REFERENCES = 20  # message ids kept in References (RFC 5322 §3.6.4 lets a responder trim the middle)
MAX_FIELD = 900  # octets of copied text in one field: a line stays under 998 with its name
MAX_SUBJECT = 200

_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MSGID = re.compile(r"<[^<>\s@\x00-\x1f\x7f]{1,250}@[^<>\s@\x00-\x1f\x7f]{1,250}>")
_DIAG_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,30}\s*;")
_REPLY = re.compile(r"([245])\d\d[ -]")
_PRECEDENCE_BULK = frozenset({"bulk", "list", "junk"})
# RFC 2919 List-Id and the RFC 2369 fields: any of them says the message came through a list
_LIST_FIELDS = ("list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post", "list-owner",
                "list-archive")
_SUPPRESS = frozenset({"all", "oof", "autoreply"})  # X-Auto-Response-Suppress values that stop an OOO reply
_LIST_SENDERS = re.compile(r"(mailer-daemon|listserv|majordomo|owner-.*|.*-request)", re.I)

DEFAULT_AUTOREPLY = (
    "I am out of the office and will read your message when I return.\r\n"
    "\r\n"
    "(This is an automatic reply from maillab, a test lab: nothing was delivered to anyone.)\r\n"
)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient a DSN reports on, when recipients differ in status or diagnostic."""

    address: str
    status: str = "5.1.1"
    diagnostic: str | None = None  # "smtp; 550 5.1.1 ..."; None derives one from the status
    original: str | None = None  # ORCPT (RFC 3461), reported as Original-Recipient


def bounce(
    original: bytes,
    envelope_from: str,
    rcpt: str | Recipient | Iterable[str | Recipient],
    status: str = "5.1.1",
    diagnostic: str | None = None,
    reporting_mta: str = "maillab.localhost",
    arrival: datetime | None = None,
    now: datetime | None = None,
    *,
    action: str | None = None,
    envid: str | None = None,
    received_from: str | None = None,
) -> bytes | None:
    """An RFC 3464 delivery status notification for `original`, addressed to `envelope_from`.

    `rcpt` is one recipient or several; plain addresses take `status` and `diagnostic`, a Recipient carries
    its own. The Action is `failed` for a 5.x.x status and `delayed` for 4.x.x unless `action` says
    otherwise. `diagnostic` is the remote reply with its type, "smtp; 550 5.1.1 <bob@example.net>: User
    unknown"; without a type "smtp;" is assumed. Returns None for a null `envelope_from`: a bounce is never
    bounced (RFC 5321 §4.5.5). Raises ValueError only for a malformed `status` or `action`, which come from
    the lab's own rules, never from a message.
    """
    if _null(envelope_from):
        return None
    now = _aware(now)
    arrival = _aware(arrival or now)
    reporting_mta = _clean(reporting_mta, 253) or "maillab.localhost"
    recipients = _recipients(rcpt, status, diagnostic)
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    if action is not None and action not in _ACTIONS:
        raise ValueError(f"DSN action must be one of {sorted(_ACTIONS)}, not {action!r}")
    actions = [action or _action_for(r.status) for r in recipients]
    worst = "failed" if "failed" in actions else actions[0]

    head = ParsedMessage(original).header_bytes
    headers_part, truncated = _headers_part(head)
    to = _clean(envelope_from, MAX_FIELD)
    utf8 = not (to.isascii() and all(r.address.isascii() and (r.original or "").isascii() for r in recipients))

    report = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        report.insert(0, f"Original-Envelope-Id: {_clean(envid, 100)}")
    if received_from:
        report.append(f"Received-From-MTA: dns; {_clean(received_from, 253)}")
    report.append(f"Arrival-Date: {format_datetime(arrival)}")
    for r, act in zip(recipients, actions, strict=True):
        report.append("")
        kind = "utf-8" if utf8 else "rfc822"
        if r.original:
            report.append(f"Original-Recipient: {kind}; {r.original}")
        report += [f"Final-Recipient: {kind}; {r.address}", f"Action: {act}", f"Status: {r.status}"]
        if r.diagnostic:
            report.append(f"Diagnostic-Code: {r.diagnostic}")
        report.append(f"Last-Attempt-Date: {format_datetime(now)}")
    status_body = ("\r\n".join(report) + "\r\n").encode("utf-8")

    human = _human(worst, recipients, actions, reporting_mta, truncated)
    subject = {"failed": "Undelivered Mail Returned to Sender", "delayed": "Delayed Mail (still being retried)",
               "delivered": "Successful Mail Delivery Report"}.get(worst, "Delivery Status Notification")
    seed = b"\0".join([original[:4096], to.encode("utf-8", "replace"), status_body, subject.encode()])
    parts = [
        _part(["Content-Description: Notification"], "text/plain", human),
        _part(["Content-Description: Delivery report"],
              "message/global-delivery-status" if utf8 else "message/delivery-status", status_body,
              encode=False),
        headers_part,
    ]
    head_fields = [
        f"Date: {format_datetime(now)}",
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Message-ID: {_message_id('dsn', seed, reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
    ]
    return _multipart(head_fields, "multipart/report; report-type=delivery-status", parts, seed)


def autoreply_suppressed(original: bytes, envelope_from: str, rcpt: str | None = None) -> str | None:
    """Why no automatic reply may be sent to this message (with the RFC that says so), or None if one may."""
    return _suppressed(ParsedMessage(original), envelope_from, rcpt)


def _suppressed(msg: ParsedMessage, envelope_from: str, rcpt: str | None) -> str | None:
    if _null(envelope_from):
        return "the envelope sender is null (<>): a response would go nowhere (RFC 3834 §2)"
    present = {h.key for h in msg.headers}
    for h in msg.get_all("auto-submitted"):
        value = h.value.split(";")[0].strip().lower()
        if value != "no":
            return f"the message is itself automatic (Auto-Submitted: {_clean(value, 60)}) (RFC 3834 §2, §5)"
    for h in msg.get_all("precedence"):
        if h.value.strip().lower() in _PRECEDENCE_BULK:
            return f"Precedence: {h.value.strip().lower()} marks bulk or list mail (RFC 3834 §2)"
    for name in _LIST_FIELDS:
        if name in present:
            field = next(h.name for h in msg.headers if h.key == name)
            return f"the message came through a mailing list ({field} is present) (RFC 3834 §2)"
    for h in msg.get_all("x-auto-response-suppress"):
        asked = {v.strip().lower() for v in h.value.split(",")}
        if asked & _SUPPRESS:
            return f"the sender asked for no auto-replies (X-Auto-Response-Suppress: {_clean(h.value, 80)})"
    local = envelope_from.rpartition("@")[0] if "@" in envelope_from else envelope_from
    if _LIST_SENDERS.fullmatch(local[:64]):
        return f"the envelope sender {_clean(envelope_from, 100)} is a list or mailer address (RFC 3834 §2)"
    if rcpt is not None and envelope_from.strip("<>").lower() == rcpt.strip("<>").lower():
        return "the message is from the responding address itself: replying would loop"
    return None


def autoreply(
    original: bytes,
    envelope_from: str,
    rcpt: str,
    text: str | None = None,
    now: datetime | None = None,
    *,
    hostname: str = "maillab.localhost",
) -> bytes | None:
    """An RFC 3834 automatic reply from `rcpt` to `envelope_from`, or None when RFC 3834 says not to send one.

    The reply carries `Auto-Submitted: auto-replied` (§5), `In-Reply-To` and `References` from the original
    (§3.1.3, §3.1.4) and the Subject "Auto: " followed by the original subject (§3.1.5); it goes to the
    envelope sender, not to From or Reply-To (§3.1.1). No reply is made to an automatic, list or bulk
    message or to a null sender; `autoreply_suppressed` says why. `text` is the body (plain text).
    """
    msg = ParsedMessage(original)
    if _suppressed(msg, envelope_from, rcpt) is not None:
        return None
    now = _aware(now)
    sender = _clean(envelope_from, MAX_FIELD)
    me = _clean(rcpt, MAX_FIELD)
    domain = me.rpartition("@")[2] or _clean(hostname, 253)
    subject = _clean(msg.first("subject") or "", MAX_SUBJECT * 4)[:MAX_SUBJECT].strip()
    fields = [
        f"Date: {format_datetime(now)}",
        f"From: <{me}>",
        f"To: <{sender}>",
        _subject("Auto: " + (subject or "your message")),
    ]
    original_id = _first_id(msg.first("message-id") or "")
    seed = b"\0".join([original[:4096], sender.encode("utf-8", "replace"), me.encode("utf-8", "replace")])
    fields.append(f"Message-ID: {_message_id('auto', seed + str(now).encode(), domain)}")
    if original_id:  # RFC 5322 §3.6.4: the parent's References (else its one In-Reply-To), then its id
        refs = _ids(msg.first("references") or "") or _ids(msg.first("in-reply-to") or "")[:1]
        refs = [i for i in refs if i != original_id]
        if len(refs) > MAX_REFERENCES - 1:  # keep the thread's root and the most recent ones
            refs = refs[:1] + refs[-(MAX_REFERENCES - 2):]
        fields.append(f"In-Reply-To: {original_id}")
        fields.append(_fold("References:", [*refs, original_id]))
    fields += ["Auto-Submitted: auto-replied", "MIME-Version: 1.0"]
    body = _crlf((text if text is not None else DEFAULT_AUTOREPLY).encode("utf-8", "replace"))
    if body.isascii() and max(map(len, body.split(b"\r\n"))) <= 998:
        fields += ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"]
    else:
        fields += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"]
        body = _qp(body)
    return ("\r\n".join(fields) + "\r\n\r\n").encode("utf-8") + body


# helpers ---------------------------------------------------------------------------------------------


def _null(address: str | None) -> bool:
    return not address or address.strip() in ("", "<>")


def _aware(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(UTC)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _clean(text: str, limit: int) -> str:
    """Client text fit for one header line: no controls or line breaks, no lone surrogates, bounded."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL.sub(" ", text[: limit * 2])[:limit].strip()


def _action_for(status: str) -> str:
    return {"2": "delivered", "4": "delayed"}.get(status[0], "failed")


def _recipients(rcpt, status: str, diagnostic: str | None) -> list[Recipient]:
    items = [rcpt] if isinstance(rcpt, str | Recipient) else list(rcpt)[:MAX_RECIPIENTS]
    out = []
    for item in items:
        r = item if isinstance(item, Recipient) else Recipient(item, status, diagnostic)
        if not _STATUS.fullmatch(r.status):
            raise ValueError(f"DSN status must be class.subject.detail with class 2, 4 or 5, not {r.status!r}")
        address = _clean(r.address, 320)
        diag = _clean(r.diagnostic, MAX_FIELD) if r.diagnostic else _default_diagnostic(address, r.status)
        if not _DIAG_TYPE.match(diag):
            diag = f"smtp; {diag}"
        out.append(Recipient(address, r.status, diag, _clean(r.original, 320) if r.original else None))
    return out


_DIAG_TEXT = {
    "5.1.1": "Recipient address rejected: User unknown",
    "5.2.2": "Recipient address rejected: Mailbox full",
    "4.2.2": "Recipient address rejected: Mailbox full",
    "5.7.1": "Recipient address rejected: Message rejected for policy reasons",
}


def _default_diagnostic(address: str, status: str) -> str:
    code = {"2": "250", "4": "450", "5": "550"}[status[0]]
    text = _DIAG_TEXT.get(status, "Delivered" if code == "250" else "Delivery failed")
    return f"smtp; {code} {status} <{address}>: {text}"


def _human(worst: str, recipients: list[Recipient], actions: list[str], mta: str, truncated: bool) -> bytes:
    intro = {
        "failed": "I'm sorry to have to inform you that your message could not be delivered to one or more\r\n"
                  "recipients. Its headers are attached below.",
        "delayed": "Your message could not be delivered for some time. It will be retried until it is\r\n"
                   "delivered or expires; you do not have to send it again.",
    }.get(worst, "This is a delivery status report for your message.")
    lines = [f"This is the mail system at host {mta}.", "", intro, ""]
    for r, act in zip(recipients, actions, strict=True):
        said = r.diagnostic.partition(";")[2].strip() if r.diagnostic else r.status
        lines.append(f"<{r.address}> ({act}): {said}")
    lines += ["", "This report was generated by maillab, a mail testing lab: nothing was delivered anywhere."]
    if truncated:
        lines.append(f"The original header section was longer than {MAX_HEADERS} octets and is cut short.")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _headers_part(head: bytes) -> tuple[list[bytes], bool]:
    """The original header section as text/rfc822-headers (RFC 6522), or message/global-headers when it
    holds UTF-8 (RFC 6533 §6.3); quoted-printable when it has 8-bit bytes, bare CRs or over-long lines."""
    head = re.sub(rb"\r*\n", b"\r\n", head).rstrip(b"\r\n")
    truncated = len(head) > MAX_HEADERS
    if truncated:  # cut at a field boundary: a line that starts a field, not a continuation
        cut = max(head.rfind(b"\r\n", 0, MAX_HEADERS), 0)
        while cut > 0 and head[cut + 2: cut + 3] in (b" ", b"\t"):
            cut = max(head.rfind(b"\r\n", 0, cut), 0)
        head = head[:cut]
    head += b"\r\n" if head else b""
    needs_qp = (not head.isascii() or b"\r" in head.replace(b"\r\n", b"") or b"\0" in head
                or any(len(line) > 998 for line in head.split(b"\r\n")))
    ctype = "text/rfc822-headers"
    if not head.isascii():
        ctype = "message/global-headers"
    return _part(["Content-Description: Undelivered Message Headers"], ctype, head, encode=needs_qp), truncated


def _part(fields: list[str], ctype: str, body: bytes, encode: bool | None = None) -> list[bytes]:
    """One body part as [header bytes, body bytes]. `encode` None picks quoted-printable only when needed."""
    if encode is None:
        encode = not body.isascii() or any(len(line) > 998 for line in body.split(b"\r\n"))
    if ctype.startswith("text/plain"):
        ctype += "; charset=utf-8" if not body.isascii() else "; charset=us-ascii"
    fields = [*fields, f"Content-Type: {ctype}"]
    if encode:
        fields.append("Content-Transfer-Encoding: quoted-printable")
        body = _qp(body)
    elif not body.isascii():
        fields.append("Content-Transfer-Encoding: 8bit")
    return [("\r\n".join(fields) + "\r\n").encode("utf-8"), body]


def _multipart(fields: list[str], ctype: str, parts: list[list[bytes]], seed: bytes) -> bytes:
    content = b"".join(b for p in parts for b in p)
    n = 0
    while True:  # a boundary that occurs nowhere in the parts (the headers part is the sender's text)
        boundary = "=_maillab_" + hashlib.sha256(seed + n.to_bytes(4, "big")).hexdigest()[:24]
        if boundary.encode() not in content:
            break
        n += 1
    out = [("\r\n".join([*fields, f'Content-Type: {ctype};\r\n\tboundary="{boundary}"']) + "\r\n\r\n").encode(),
           b"This is a MIME-encapsulated message.\r\n"]
    for head, body in parts:
        out += [b"\r\n--", boundary.encode(), b"\r\n", head, b"\r\n", body]
    out += [b"\r\n--", boundary.encode(), b"--\r\n"]
    return b"".join(out)


def _qp(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) that also encodes bare CR and LF, which binascii.b2a_qp passes through."""
    out = []
    for line in data.split(b"\r\n"):
        enc = bytearray()
        width = 0
        for i, byte in enumerate(line):
            last = i == len(line) - 1
            if (33 <= byte <= 126 and byte != 61) or (byte in (9, 32) and not last):
                piece = bytes((byte,))
            else:
                piece = b"=%02X" % byte
            if width + len(piece) > 75:
                enc += b"=\r\n"
                width = 0
            enc += piece
            width += len(piece)
        out.append(bytes(enc))
    return b"\r\n".join(out)


def _crlf(data: bytes) -> bytes:
    data = re.sub(rb"\r*\n", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _message_id(kind: str, seed: bytes, domain: str) -> str:
    domain = re.sub(r"[^A-Za-z0-9.-]", "", domain)[:200].strip(".") or "maillab.localhost"
    return f"<{kind}.{hashlib.sha256(seed).hexdigest()[:32]}@{domain}>"


def _first_id(value: str) -> str | None:
    ids = _ids(value)
    return ids[0] if ids else None


def _ids(value: str) -> list[str]:
    """The msg-ids in a field value, in order, at most a bounded number (first and last ones kept)."""
    found = _MSGID.findall(value[:100_000])
    if len(found) > MAX_REFERENCES * 4:
        found = found[:1] + found[-MAX_REFERENCES * 2:]
    return [_clean(i, 510) for i in found if i.isascii()]


def _fold(name: str, items: list[str]) -> str:
    lines, line = [], name
    for item in items:
        if len(line) + 1 + len(item) > 76 and line != name:
            lines.append(line)
            line = "\t" + item
        else:
            line += " " + item
    lines.append(line)
    return "\r\n".join(lines)


def _subject(value: str) -> str:
    if value.isascii() and len(value) < 70:
        return f"Subject: {value}"
    return "Subject: " + Header(value, "utf-8" if not value.isascii() else "us-ascii",
                                header_name="Subject").encode(linesep="\r\n")
