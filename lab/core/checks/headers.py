"""Provides the header and wire-format checks: parse problems, duplicates, line rules, 8-bit, MIME and size.

Everything here works on the raw bytes and the tolerant header list with byte searches, never by
building an email tree, so a message costs a fraction of a millisecond and hostile input cannot raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lab.core.context import Context
from lab.core.model import Listener
from lab.core.results import CheckResult, Level, check
from lab.textsafe import shown as _shown

SINGLETONS = ("date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
              "references", "subject")
_SHOWN_NAMES = {"message-id": "Message-ID"}
MAX_LINE = 998
MAX_HEADER_BYTES = 64 * 1024
MAX_FIELDS = 1000
MAX_NESTING = 100  # Postfix's mime_nesting_limit
ENCODINGS = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})

_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_BOUNDARY = re.compile(r'(?i);\s*boundary\s*=\s*(?:"([^"]*)"|([^\s;]+))')
_PART_CTE = re.compile(rb"[ \t]*(?:\r?\n[ \t]+)?([^\s;(]*)")
_PART_LINE = re.compile(rb"(?im)^(?:--([^\r\n]*)|content-type:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*))")


def check_headers(ctx: Context) -> list[CheckResult]:
    """Every header rule; each says `pass` when it found nothing, so the UI shows what was checked."""
    return [*_parse(ctx), *_duplicates(ctx), *_subject(ctx), *_line_length(ctx), *_line_endings(ctx),
            *_eight_bit(ctx), *_mime(ctx), *_size(ctx)]


def _parse(ctx: Context) -> list[CheckResult]:
    """Lines the parser could not read are lines a receiver reads differently: a smuggling surface."""
    msg = ctx.message
    ref = "RFC 5322 §2.2"
    if msg.problems:
        first = {f"problem-{i}": _shown(p) for i, p in enumerate(msg.problems[:3], 1)}
        return [check("headers.parse", Level.WARN, f"{len(msg.problems)} problem(s) splitting the header "
                      "section", ref=ref, **first,
                      fix="Every header line must be 'Name: value' or a continuation starting with a space "
                          "or tab, and the header section must end with one empty line.")]
    if not msg.headers:
        return [check("headers.parse", Level.WARN, "The message has no header fields at all", ref=ref,
                      fix="Send a header section (From, Date, Message-ID, Subject, ...) before the body.")]
    return [check("headers.parse", Level.PASS, f"{len(msg.headers)} header fields, all well formed", ref=ref)]


def _duplicates(ctx: Context) -> list[CheckResult]:
    """Receivers disagree on which copy of a duplicated field counts; attackers rely on that."""
    counts: dict[str, int] = {}
    for h in ctx.message.headers:
        counts[h.key] = counts.get(h.key, 0) + 1
    ref = "RFC 5322 §3.6"
    repeated = [(_SHOWN_NAMES.get(key, key.title()), counts[key]) for key in SINGLETONS if counts.get(key, 0) > 1]
    if not repeated:
        return [check("headers.duplicates", Level.PASS, "No field that must be unique is repeated", ref=ref)]
    level = Level.FAIL if any(name == "From" for name, _ in repeated) else Level.WARN
    listed = ", ".join(f"{name} ({n} times)" for name, n in repeated)
    names = ", ".join(name for name, _ in repeated)
    return [check("headers.duplicates", level, f"Fields that may appear once are repeated: {listed}", ref=ref,
                  fields=names, fix=f"Send exactly one of each ({names}); check that your code or a relay "
                                    "does not add a second one.")]


def _subject(ctx: Context) -> list[CheckResult]:
    """An empty subject is a spam-filter signal and leaves the reader guessing."""
    subject = ctx.message.first("subject")
    ref = "RFC 5322 §3.6.5"
    if subject is None or not subject.strip():
        what = "no Subject field" if subject is None else "an empty Subject"
        return [check("headers.subject", Level.WARN, f"The message has {what}", ref=ref,
                      fix="Give every message a short, specific Subject.")]
    return [check("headers.subject", Level.PASS, "Subject is present", ref=ref, subject=_shown(subject))]


def _line_length(ctx: Context) -> list[CheckResult]:
    """Lines over 998 octets get folded, truncated or rejected in transit, which breaks DKIM."""
    ref = "RFC 5322 §2.1.1"
    long = _long_lines(ctx.capture.raw)
    if not long:
        return [check("headers.line-length", Level.PASS, f"No line exceeds {MAX_LINE} octets", ref=ref)]
    longest, index = max(long, key=lambda li: (li[0], -li[1]))
    where = "header" if index < ctx.message.header_bytes.count(b"\n") else "body"
    return [check("headers.line-length", Level.WARN,
                  f"{len(long)} line(s) exceed {MAX_LINE} octets; the longest is {longest} ({where}, line "
                  f"{index + 1})", ref=ref, longest=longest, line=index + 1, section=where, count=len(long),
                  fix="Fold long header fields, and send long body text as quoted-printable or base64 "
                      "(Content-Transfer-Encoding) so no line exceeds 998 octets.")]


def _long_lines(raw: bytes) -> list[tuple[int, int]]:
    """(length without CRLF, index) of each line over the limit; lines are split at LF."""
    if len(raw) <= MAX_LINE:
        return []
    lines = raw.split(b"\n")
    lengths = list(map(len, lines))
    if max(lengths) <= MAX_LINE:
        return []
    measured = ((n - lines[i].endswith(b"\r"), i) for i, n in enumerate(lengths) if n > MAX_LINE)
    return [(n, i) for n, i in measured if n > MAX_LINE]


def _line_endings(ctx: Context) -> list[CheckResult]:
    """Bare CR and LF are how SMTP smuggling works, so receivers reject them; NUL breaks most software."""
    raw = ctx.capture.raw
    out: list[CheckResult] = []
    nuls = raw.count(b"\x00")
    if nuls:
        out.append(check("headers.nul", Level.FAIL, f"The message contains {nuls} NUL byte(s)",
                         ref="RFC 5322 §2.1; RFC 5321 §4.5.2", first_offset=raw.find(b"\x00"),
                         fix="Remove NUL bytes; send binary content base64-encoded."))
    crlf = raw.count(b"\r\n")
    bare_lf = raw.count(b"\n") - crlf
    bare_cr = raw.count(b"\r") - crlf
    ref = "RFC 5322 §2.3; RFC 5321 §2.3.8"
    if bare_lf or bare_cr:
        first = min(m.start() for m in (_BARE_LF.search(raw), _BARE_CR.search(raw)) if m)
        kinds = ", ".join(k for k, n in ((f"{bare_lf} bare LF", bare_lf), (f"{bare_cr} bare CR", bare_cr)) if n)
        if ctx.capture.transport.listener is Listener.CLI and not crlf and not bare_cr:
            out.append(check("headers.line-endings", Level.INFO, "The file uses LF line endings; on the wire "
                             "every line must end in CRLF", ref=ref, bare_lf=bare_lf,
                             fix="Nothing to do for a file on disk; make sure your sender writes CRLF."))
        else:
            out.append(check("headers.line-endings", Level.WARN, f"Lines end in {kinds} instead of CRLF: some "
                             "receivers reject this as an SMTP smuggling defence", ref=ref,
                             bare_lf=bare_lf, bare_cr=bare_cr, first_offset=first,
                             line=raw.count(b"\n", 0, first) + 1,
                             fix="End every line with CRLF (\\r\\n); most mail libraries do this when you use "
                                 "their SMTP send function rather than writing bytes yourself."))
    if not (bare_lf or bare_cr):
        out.append(check("headers.line-endings", Level.PASS, "Every line ends in CRLF", ref=ref))
    if not nuls:
        out.append(check("headers.nul", Level.PASS, "No NUL bytes", ref="RFC 5322 §2.1"))
    return out


def _eight_bit(ctx: Context) -> list[CheckResult]:
    """Raw 8-bit header bytes are only defined under SMTPUTF8 (RFC 6532); elsewhere receivers guess."""
    head = ctx.message.header_bytes
    smtputf8 = ctx.capture.envelope.smtputf8
    ref = "RFC 6532 §3; RFC 2047"
    m = _EIGHT_BIT.search(head)
    if m is None:
        return [check("headers.8bit", Level.PASS, "The header section is 7-bit ASCII", ref=ref)]
    start = head.rfind(b"\n", 0, m.start()) + 1
    line = head[start:m.start()]
    field = _shown(line.partition(b":")[0][:60].decode("ascii", "replace")) if b":" in line else None
    try:
        head.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    ev = {"first_field": field, "line": head.count(b"\n", 0, m.start()) + 1, "valid_utf8": "yes" if utf8 else "no"}
    if smtputf8 and utf8:
        return [check("headers.8bit", Level.PASS, "UTF-8 headers, sent with SMTPUTF8", ref=ref, **ev)]
    if smtputf8:
        return [check("headers.8bit", Level.WARN, "The header section has 8-bit bytes that are not UTF-8, "
                      "even under SMTPUTF8", ref=ref, **ev, fix="Write header fields in UTF-8.")]
    return [check("headers.8bit", Level.WARN, "The header section has raw 8-bit bytes but the mail was not sent "
                  "with SMTPUTF8", ref=ref, **ev,
                  fix="Encode non-ASCII header text as RFC 2047 encoded-words (email.header.Header, or "
                      "email.policy.SMTP does it), or send with the SMTPUTF8 option.")]


def _mime(ctx: Context) -> list[CheckResult]:
    """A MIME structure receivers cannot walk shows as garbage or hides parts from scanners."""
    msg = ctx.message
    ref = "RFC 2045; RFC 2046 §5.1"
    ct_field = next((h.raw for h in msg.headers if h.key == "content-type"), None)
    ctype = (ct_field or "text/plain").partition(";")[0].strip().lower()
    cte = next((h.raw for h in msg.headers if h.key == "content-transfer-encoding"), None)
    version = next((h.raw for h in msg.headers if h.key == "mime-version"), None)
    out: list[CheckResult] = []

    def warn(summary: str, fix: str, **evidence: object) -> None:
        out.append(check("headers.mime", Level.WARN, summary, ref=ref, fix=fix, **evidence))

    # A missing MIME-Version is content.mime-version's finding (with its points), not reported twice here
    if version is not None and re.sub(r"\([^)]*\)|\s", "", version) != "1.0":
        warn(f"MIME-Version is '{_shown(version)}'; the only version is 1.0", "Send 'MIME-Version: 1.0'.")
    if ctype.startswith("multipart/"):
        _multipart(ct_field or "", msg.body, warn)
    elif ctype.startswith("message/"):
        _deep(_nesting(None, msg.body), warn)
    bad = sorted({v or "(empty)" for v in _encodings(cte, msg.body) if v not in ENCODINGS})
    if bad:
        warn(f"Unknown Content-Transfer-Encoding: {_shown(', '.join(bad[:5]))}",
             "Use one of 7bit, 8bit, binary, quoted-printable or base64.", encodings=[_shown(b) for b in bad[:5]])
    if len(out) > 1:  # one result per id: the problems together, worst first
        summary = "; ".join(c.summary for c in out)
        fix = " ".join(dict.fromkeys(c.fix for c in out if c.fix))
        evidence = {k.replace("-", "_"): v for c in out for k, v in c.evidence.items()}
        return [check("headers.mime", Level.WARN, f"{len(out)} MIME problems: {summary}", ref=ref, fix=fix,
                      **evidence)]
    return out or [check("headers.mime", Level.PASS, f"MIME structure looks sound ({_shown(ctype)})", ref=ref)]


def _multipart(ct_field: str, body: bytes, warn: Callable[..., None]) -> None:
    """Top-level boundary only: present, 1-70 characters, used, and closed."""
    m = _BOUNDARY.search(ct_field)
    fix = "Let your mail library build multipart messages (email.message.EmailMessage.add_attachment)."
    if m is None:
        warn("The multipart Content-Type has no boundary parameter", fix, content_type=_shown(ct_field))
        return
    boundary = m.group(1) if m.group(1) is not None else m.group(2)
    if not 1 <= len(boundary) <= 70:
        warn(f"The boundary is {len(boundary)} characters long; it must be 1 to 70", fix)
        if not boundary:
            return
    delim = b"--" + boundary.encode("utf-8", "surrogateescape")
    if not (body.startswith(delim) or b"\n" + delim in body):
        warn("The multipart boundary never appears in the body", fix, boundary=_shown(boundary))
    elif delim + b"--" not in body:
        warn("The multipart body has no closing boundary (--boundary--): it may be truncated", fix,
             boundary=_shown(boundary))
    _deep(_nesting(delim[2:], body), warn)


def _deep(depth: int, warn: Callable[..., None]) -> None:
    if depth > MAX_NESTING:
        warn(f"MIME parts are nested {depth:,} levels deep: Postfix refuses mail nested deeper than "
             f"{MAX_NESTING} (mime_nesting_limit), and scanners and mail clients stop before the inner parts",
             "Nest parts a few levels deep at most (multipart/mixed > multipart/alternative > text); never "
             "wrap a message in itself.", nesting=depth)


def _nesting(top: bytes | None, body: bytes) -> int:
    """How deep MIME parts nest, from boundary and Content-Type lines alone, in one pass and without a tree.

    A boundary declared by a part's Content-Type opens a level at its first delimiter line; a delimiter of
    an open boundary closes every level inside it, and its closing form (--b--) closes it too. A
    message/rfc822 part is a level of its own (as Postfix counts), closed with the part that holds it.
    `top` is the top-level boundary, or None when the message itself is a message/* entity.
    """
    stack: list[object] = [top if top is not None else object()]
    index: dict[object, int] = {top: 0} if top is not None else {}
    declared: set[bytes] = set()
    deepest = 1
    for m in _PART_LINE.finditer(body):
        if m.group(2) is not None:
            field = m.group(2).decode("utf-8", "surrogateescape")
            lowered = field.lower()
            found = _BOUNDARY.search(field) if "multipart/" in lowered else None
            if found:
                declared.add((found.group(1) if found.group(1) is not None else found.group(2)).encode(
                    "utf-8", "surrogateescape"))
            elif lowered.lstrip().startswith("message/"):
                stack.append(object())
                deepest = max(deepest, len(stack))
            continue
        token = m.group(1).rstrip(b" \t\r")
        closing = token.endswith(b"--") and token[:-2] in index
        name = token[:-2] if closing else token
        if name in index:
            keep = index[name] + (0 if closing else 1)
            for gone in stack[keep:]:
                index.pop(gone, None)
            del stack[keep:]
        elif name in declared:
            index[name] = len(stack)
            stack.append(name)
            deepest = max(deepest, len(stack))
    return deepest


def _encodings(top: str | None, body: bytes) -> list[str]:
    """The top-level Content-Transfer-Encoding and every part's, found with byte searches."""
    found = [top.strip().partition(" ")[0].strip(";").lower()] if top is not None else []
    for needle in (b"ransfer-encoding:", b"RANSFER-ENCODING:", b"ransfer-Encoding:"):
        i = body.find(needle)
        while i >= 0:
            start = i - 9
            if start >= 0 and body[start:i].lower() == b"content-t" and (start == 0 or body[start - 1] == 10):
                m = _PART_CTE.match(body, i + len(needle))
                found.append(m.group(1).decode("ascii", "replace").lower() if m else "")
            i = body.find(needle, i + 1)
    return found


def _size(ctx: Context) -> list[CheckResult]:
    """Huge header sections are rejected outright by many receivers (commonly 64 KB or 1,000 fields)."""
    msg = ctx.message
    size, fields = len(msg.header_bytes), len(msg.headers)
    ref = "RFC 5322 §2.1.1"
    ev = {"header_bytes": size, "fields": fields}
    if size > MAX_HEADER_BYTES or fields > MAX_FIELDS:
        return [check("headers.size", Level.WARN, f"The header section is {size:,} bytes in {fields:,} fields; "
                      "receivers commonly refuse over 64 KB or 1,000 fields", ref=ref, **ev,
                      fix="Drop accumulated or generated headers (X-*, Received copies, long References).")]
    return [check("headers.size", Level.PASS, f"The header section is {size:,} bytes in {fields} fields", ref=ref,
                  **ev)]

