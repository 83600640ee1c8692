"""Provides the content checks: rule-based scoring of what the message says and carries, as content filters do.

SpamAssassin and rspamd add up small penalties for the way a message is built: HTML with no text version,
a picture instead of words, a link whose text names another site, a shouted subject, text hidden from the
reader, a program attached. No single rule condemns a message; together they decide the spam folder. Each
rule here is one result `content.<rule>` carrying its penalty as `points` (what it costs in the lab's
deliverability score), the evidence it rests on, and what to change. When no rule fires there is one
`content.rules` PASS result.

| rule                   | level | points | fires when                                                          |
|------------------------|-------|--------|---------------------------------------------------------------------|
| content.html-only      | warn  | 0.5    | an HTML body and no text/plain part                                 |
| content.image-only     | warn  | 1.5    | HTML images, and under 400 characters of text (0.7 under 1,200)     |
| content.link-mismatch  | warn  | 2.5    | a link's text shows a domain in another organisation than its href  |
| content.shortener      | warn  | 1.0    | a link goes through a public URL shortener (SHORTENERS)             |
| content.subject-caps   | warn  | 1.0    | the Subject has 10+ letters and at least 80% of them are capitals   |
| content.subject-phrase | warn  | 1.0    | the Subject holds a phrase from SPAM_PHRASES                        |
| content.exclamation    | warn  | 0.5    | 3+ '!' in the Subject, or 3+ runs of '!!' in the text               |
| content.hidden-text    | warn  | 1.0    | HTML text hidden by display:none, visibility:hidden, opacity:0,     |
|                        |       |        | font-size 0-1px, the hidden attribute or color = background         |
|                        |       |        | (one preheader of <= 150 characters before any text is allowed)     |
| content.charset        | warn  | 0.5    | 8-bit text declared (or defaulting to) us-ascii, bytes that are not |
|                        |       |        | the declared UTF-8, or an HTML meta charset that contradicts MIME   |
| content.executable     | FAIL  | 5.0    | an attachment named .exe .scr .js .vbs .bat .cmd .jar .msi ...,     |
|                        |       |        | typed as a program, or whose bytes are one (MZ), whatever its name  |
| content.macro          | warn  | 2.0    | an Office attachment with macros: .docm .xlsm .pptm ...             |
| content.size           | warn  | 1.0    | the message is larger than 10 MB                                    |
| content.mime-version   | warn  | 1.0    | MIME fields (Content-Type, Content-Transfer-Encoding) and no        |
|                        |       |        | MIME-Version                                                        |

The points were chosen for the lab's 0-10 score with the default weights of the matching rules as a guide
(on rspamd's 15-point reject scale: PHISHING 4, MIME_BAD_EXTENSION 2-4, SUBJ_ALL_CAPS 3, MISSING_MIME_VERSION
2, ZERO_FONT up to 1, MIME_HTML_ONLY 0.2).

Archive contents are not opened, remote content is never fetched, hiding is read from inline styles only (a
class in a <style> sheet is not followed), and the work is bounded (mime.MAX_PARTS parts, links.MAX_LINKS
links, one linear pass over each HTML part), so hostile mail cannot make a rule raise or run long.

`external_results()` turns the opinion of a real filter (rspamd, SpamAssassin's spamd, asked by the
lab.filters adapter) into `content.rspamd` / `content.spamassassin` results shown beside the lab's own
rules; they carry no points.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lab.core import mime, psl
from lab.core.checks.dmarc import org_domain
from lab.core.context import Context
from lab.core.links import MAX_LINKS, HtmlLinks, Link, attributes, host, text_links
from lab.core.message import usable_charset
from lab.core.results import CheckResult, Level, check
from lab.textsafe import shown as _shown

MAX_SIZE = 10 * 1024 * 1024
IMAGE_ONLY_TEXT = 400  # characters of text under which a message with images is "image-only"
MOSTLY_IMAGE_TEXT = 1200
MAX_TEXT = 100_000  # characters of each text part read for exclamation marks
MAX_SUBJECT = 1000
MAX_LISTED = 5  # examples named in evidence

# Public, general-purpose shorteners: the destination is hidden from the reader and from URI blocklists, and
# spammers use them for exactly that. Brand shorteners of one company's own links (youtu.be, amzn.to) are not.
SHORTENERS = frozenset({
    "bit.ly", "bitly.com", "j.mp", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "v.gd", "buff.ly",
    "rebrand.ly", "cutt.ly", "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "s.id", "bl.ink", "soo.gd", "clck.ru",
    "shorte.st", "adf.ly", "ouo.io", "bc.vc", "qr.ae", "x.co", "tr.im", "lnkd.in", "shorturl.com", "urlz.fr",
})
# Phrases with almost no use outside unsolicited mail, matched as whole words, case- and width-insensitive.
SPAM_PHRASES = (
    "free money", "act now", "100% free", "winner", "you have won", "you've won", "you won", "cash prize",
    "claim your prize", "risk-free", "risk free", "no credit check", "limited time offer", "make money fast",
    "earn extra cash", "double your income", "million dollars", "lowest price", "click here", "dear friend",
    "100% guaranteed", "once in a lifetime", "viagra", "casino",
)
EXECUTABLE_EXTENSIONS = frozenset({
    "exe", "scr", "js", "jse", "vbs", "vbe", "bat", "cmd", "com", "pif", "cpl", "jar", "msi", "msp", "ps1",
    "hta", "lnk", "wsf", "wsh", "sct", "reg", "dll", "appx", "msix", "iso", "img", "vhd",
})
EXECUTABLE_TYPES = frozenset({
    "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec", "application/x-ms-installer",
    "application/vnd.microsoft.portable-executable", "application/hta", "application/x-ms-shortcut",
})
MACRO_EXTENSIONS = frozenset({"docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppsm", "ppam", "sldm"})

_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_PHRASE = re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" for p in SPAM_PHRASES))
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_META_CHARSET = re.compile(r"""(?i)<meta\b[^<>]{0,500}?charset\s*=\s*["']?\s*([\w.:-]{1,40})""")
_SHOWN_URL = re.compile(r"(?i)(https?://)?(www\.)?((?:[\w-]{1,63}\.){1,10}[a-z]{2,24})(?::\d{1,5})?(?:[/?#]\S*)?")


@dataclass
class ExternalScore:
    """What a real spam filter said about the message (lab.filters asks it); shown, never added to the score."""

    tool: str  # "rspamd" or "spamassassin"
    score: float
    threshold: float | None  # rspamd's reject score (required_score); spamd's spam threshold
    action: str | None  # rspamd's action ("no action", "add header", "reject" ...); "spam"/"no action" from spamd
    rules: list[tuple[str, float, str]] = field(default_factory=list)  # (symbol, score, description)
    version: str | None = None  # "3.4" when the tool says so


@dataclass
class _Facts:
    """Everything the rules look at, gathered in one bounded walk over the message."""

    size: int = 0
    subject: str = ""
    has_mime_version: bool = False
    mime_fields: list[str] = field(default_factory=list)
    html_parts: int = 0
    plain_parts: int = 0
    images: int = 0  # <img> elements in HTML parts
    image_parts: int = 0  # image/* parts that are not attachments
    text_chars: int = 0  # the longest readable text of one text part
    texts: list[str] = field(default_factory=list)  # readable text of each text part, capped
    links: list[Link] = field(default_factory=list)
    hidden: list[tuple[str, str]] = field(default_factory=list)  # (why it is hidden, the hidden text)
    preheader: str | None = None  # a short hidden text before any visible text, as newsletters use
    charset_problems: list[str] = field(default_factory=list)
    attachments: list[tuple[str, str, bool]] = field(default_factory=list)  # (file name or "", type, MZ bytes)


@dataclass(frozen=True)
class Hit:
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    points: float | None = None  # a lower tier of the rule's points


@dataclass(frozen=True)
class Rule:
    name: str
    level: Level
    points: float
    ref: str
    fix: str
    test: Callable[[_Facts], Hit | None]


def check_content(ctx: Context) -> list[CheckResult]:
    """Every content rule; one `content.rules` PASS when none fires."""
    facts = _gather(ctx)
    out: list[CheckResult] = []
    for rule in RULES:
        hit = rule.test(facts)
        if hit is None:
            continue
        points = rule.points if hit.points is None else hit.points
        unit = "point" if points == 1 else "points"
        out.append(check(f"content.{rule.name}", rule.level, f"{hit.summary} ({rule.name}, {points:g} {unit})",
                         ref=rule.ref, fix=rule.fix, points=points, **hit.evidence))
    if not out:
        out.append(check("content.rules", Level.PASS, f"None of the {len(RULES)} content rules fired",
                         ref="SpamAssassin and rspamd content rules", points=0.0,
                         rules=[r.name for r in RULES]))
    return out


# --- gathering ---------------------------------------------------------------------------------------------


class _HtmlScan(HtmlLinks):
    """Links and images (HtmlLinks), plus elements whose style hides their text from the reader."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: list[tuple[str, str]] = []
        self.preheader: str | None = None
        self._open: tuple[str, str, int, int] | None = None  # (tag, why, start in parts, depth)

    def _start(self, tag: str, attr_text: str) -> None:
        super()._start(tag, attr_text)
        if self._open is not None:
            name, why, start, depth = self._open
            if tag == name:
                self._open = (name, why, start, depth + 1)
            return
        if tag in _VOID or len(self.hidden) >= 50:
            return
        low = attr_text[:mime.MAX_TAG].lower()
        if "style" not in low and "hidden" not in low:
            return
        why = _hiding(attributes(attr_text))
        if why:
            self._open = (tag, why, len(self.parts), 1)

    def _end(self, tag: str) -> None:
        super()._end(tag)
        if self._open is not None and tag == self._open[0]:
            name, why, start, depth = self._open
            self._open = (name, why, start, depth - 1) if depth > 1 else None
            if depth == 1:
                self._record(why, start)

    def close(self) -> None:
        super().close()
        if self._open is not None:  # never closed: hidden to the end, as in a browser
            self._record(self._open[1], self._open[2])
            self._open = None

    def _record(self, why: str, start: int) -> None:
        text = self.visible_text(start, 200)
        if not text:
            return  # an empty spacer hides nothing
        if not self.hidden and self.preheader is None and len(text) <= 150 and \
                not self.visible_text(0, 1, end=start):
            self.preheader = text  # the newsletter preheader: the inbox preview line, hidden in the body
            return
        self.hidden.append((why, text))


_VOID = frozenset({"img", "br", "hr", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"})
_NAMED = {"white": "#ffffff", "black": "#000000", "red": "#ff0000", "blue": "#0000ff", "green": "#008000",
          "yellow": "#ffff00", "gray": "#808080", "grey": "#808080", "silver": "#c0c0c0"}
_TINY = re.compile(r"(\d{1,4}(?:\.\d{1,4})?|\.\d{1,4})(px|pt|em|rem|%)?")
_TINY_LIMIT = {None: 1.0, "px": 1.0, "pt": 1.0, "em": 0.1, "rem": 0.1, "%": 10.0}


def _hiding(attrs: dict[str, str]) -> str | None:
    """Why an element's own attributes hide its text, or None."""
    if "hidden" in attrs:
        return "the hidden attribute"
    style: dict[str, str] = {}
    for decl in attrs.get("style", "").split(";")[:50]:
        prop, sep, value = decl.partition(":")
        if sep:
            style[prop.strip().lower()] = "".join(value.lower().replace("!important", "").split())
    if style.get("display") == "none":
        return "display:none"
    if style.get("visibility") in ("hidden", "collapse"):
        return "visibility:hidden"
    if style.get("opacity") in ("0", "0.0", ".0", "0%"):
        return "opacity:0"
    size = _TINY.fullmatch(style.get("font-size", ""))
    if size and float(size.group(1)) <= _TINY_LIMIT[size.group(2)]:
        return f"font-size:{style['font-size']}"
    color = _colour(style.get("color", ""))
    if color and color == _colour(style.get("background-color", "") or style.get("background", "")):
        return f"color {style['color']} on the same background"
    return None


def _colour(value: str) -> str | None:
    value = _NAMED.get(value, value)
    if re.fullmatch(r"#[0-9a-f]{3}", value):
        return "#" + "".join(c * 2 for c in value[1:])
    return value if re.fullmatch(r"#[0-9a-f]{6}|rgba?\([\d.,%]{1,40}\)", value) else None


def _gather(ctx: Context) -> _Facts:
    raw = ctx.capture.raw
    msg = ctx.message
    facts = _Facts(size=len(raw), subject=(msg.first("subject") or "")[:MAX_SUBJECT])
    facts.has_mime_version = msg.count("mime-version") > 0
    facts.mime_fields = [h.name for h in msg.headers if h.key in ("content-type", "content-transfer-encoding")]
    for part in mime.walk(mime.parse(raw)):
        ctype = mime._safe(lambda p=part: p.get_content_type(), "text/plain")
        disposition = mime._safe(lambda p=part: p.get_content_disposition(), None)
        name = mime.filename(part)
        if name or disposition == "attachment":
            facts.attachments.append((name or "", ctype, _is_program(part)))
            if disposition == "attachment":
                continue
        if ctype.startswith("image/"):
            facts.image_parts += 1
        elif ctype == "text/html":
            facts.html_parts += 1
            _html_part(part, facts)
        elif ctype == "text/plain":
            facts.plain_parts += 1
            text = mime.text_of(part)
            _charset_part(part, ctype, text, facts)
            _add_text(" ".join(text[:MAX_TEXT].split()), facts)
            _add_links(text_links(text[:MAX_TEXT * 10]), facts)
    return facts


def _html_part(part, facts: _Facts) -> None:
    text = mime.text_of(part)
    scan = _HtmlScan()
    try:
        scan.feed(text)
        scan.close()
    except Exception:  # noqa: BLE001 - a preview parser bug must not hide the other rules
        pass
    facts.images += scan.images
    facts.hidden.extend(scan.hidden[:50 - len(facts.hidden)])
    facts.preheader = facts.preheader or scan.preheader
    _charset_part(part, "text/html", text, facts)
    _add_text(scan.visible_text(0, MAX_TEXT), facts)
    _add_links(scan.found, facts)


def _add_text(text: str, facts: _Facts) -> None:
    facts.text_chars = max(facts.text_chars, len(text))
    if len(facts.texts) < 20:
        facts.texts.append(text)


def _add_links(found: list[Link], facts: _Facts) -> None:
    facts.links.extend(found[:MAX_LINKS - len(facts.links)])


def _charset_part(part, ctype: str, text: str, facts: _Facts) -> None:
    """Text whose bytes and declared charset disagree shows as mojibake, and filters read it as evasion."""
    if len(facts.charset_problems) >= MAX_LISTED:
        return
    declared = mime.charset(part)
    data = mime.decoded(part)
    eight_bit = _EIGHT_BIT.search(data) is not None
    codec = usable_charset(declared)
    if eight_bit and (declared is None or codec == "ascii"):
        said = f"charset={declared}" if declared else "no charset (so us-ascii)"
        facts.charset_problems.append(f"{ctype} declares {said} but has 8-bit bytes")
        return
    if eight_bit and codec == "utf-8" and not _valid_utf8(data):
        facts.charset_problems.append(f"{ctype} declares charset={declared} but its bytes are not UTF-8")
        return
    if ctype == "text/html":
        m = _META_CHARSET.search(text, 0, 4096)  # browsers read the meta charset from the start only
        if m and declared and eight_bit and _codec_name(m.group(1)) != _codec_name(declared):
            facts.charset_problems.append(f"text/html declares charset={declared} in MIME but "
                                          f"<meta charset={m.group(1)}> in the HTML")


def _is_program(part) -> bool:
    """Whether an attachment's bytes begin with "MZ", the header of every Windows program (DOS/PE), whatever
    its name says. Only the first bytes are decoded, so a large attachment costs nothing."""
    payload = mime.raw_payload(part)
    if not isinstance(payload, str):
        return False
    head = payload.lstrip()[:8]
    cte = str(part.get("content-transfer-encoding", "") or "").strip().lower()
    if cte == "base64":
        try:
            return base64.b64decode(head, validate=False)[:2] == b"MZ"
        except (ValueError, binascii.Error):
            return False
    return head.startswith("MZ")


def _valid_utf8(data: bytes) -> bool:
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _codec_name(name: str) -> str:
    return usable_charset(name) or name.strip().lower()


# --- rules -------------------------------------------------------------------------------------------------


def _html_only(f: _Facts) -> Hit | None:
    """Filters score HTML-only mail higher: legitimate senders nearly always include a text version."""
    if f.html_parts and not f.plain_parts:
        return Hit("HTML body without a text/plain alternative", {"html_parts": f.html_parts})
    return None


def _image_only(f: _Facts) -> Hit | None:
    """A picture with few words is how spam hides its text from content filters.

    Images are counted as SpamAssassin does, in the HTML (<img>, whether remote, cid: or data:); inline image
    parts count only in a message with no text part at all (a photo under "Sent from my phone" is not spam).
    """
    images = f.images or (f.image_parts if not f.html_parts and not f.plain_parts else 0)
    if not images or f.text_chars >= MOSTLY_IMAGE_TEXT:
        return None
    ev = {"images": images, "text_characters": f.text_chars}
    if f.text_chars < IMAGE_ONLY_TEXT:
        return Hit(f"{images} image(s) and only {f.text_chars} characters of text", ev)
    return Hit(f"Mostly images: {images} image(s) and {f.text_chars} characters of text", ev, points=0.7)


def _link_mismatch(f: _Facts) -> Hit | None:
    """Anchor text that shows one site while the link goes to another is the classic phishing shape."""
    pairs: list[str] = []
    count = 0
    for link in f.links:
        if link.source != "html" or not link.text:
            continue
        shown = _shown_domain(link.text)
        if shown and not _same_site(shown, link.domain):
            count += 1
            if len(pairs) < MAX_LISTED:
                pairs.append(f"{_shown(link.text, 80)} -> {_shown(link.domain or link.href, 80)}")
    if not count:
        return None
    return Hit(f"{count} link(s) show one domain and go to another: {pairs[0]}", {"links": pairs})


def _shortener(f: _Facts) -> Hit | None:
    """Shortened links hide their destination from the reader and from URI blocklists."""
    found = list(dict.fromkeys(link.href for link in f.links if link.domain and _is_shortener(link.domain)))
    if not found:
        return None
    return Hit(f"{len(found)} link(s) through a URL shortener: {_shown(found[0], 80)}",
               {"links": [_shown(h, 120) for h in found[:MAX_LISTED]]})


def _subject_caps(f: _Facts) -> Hit | None:
    """A shouted subject is one of the oldest spam signs."""
    cased = [c for c in f.subject if c.isupper() or c.islower()]
    upper = sum(c.isupper() for c in cased)
    if len(cased) < 10 or upper < 0.8 * len(cased):
        return None
    return Hit(f"The Subject is {100 * upper // len(cased)}% capital letters",
               {"subject": _shown(f.subject), "capitals": f"{upper} of {len(cased)} letters"})


def _subject_phrase(f: _Facts) -> Hit | None:
    """Some phrases appear almost only in unsolicited mail; filters weigh them in the subject most."""
    found = list(dict.fromkeys(m.group() for m in _PHRASE.finditer(_normal(f.subject))))
    if not found:
        return None
    return Hit(f"The Subject uses spam phrasing: {', '.join(repr(p) for p in found[:3])}",
               {"subject": _shown(f.subject), "phrases": found[:MAX_LISTED]})


def _exclamation(f: _Facts) -> Hit | None:
    """Runs of exclamation marks read as pressure selling."""
    in_subject = f.subject.count("!")
    runs = sum(len(re.findall(r"!{2,}", t)) for t in f.texts)
    if in_subject < 3 and runs < 3:
        return None
    where = f"{in_subject} in the Subject" if in_subject >= 3 else f"{runs} runs of '!!' in the text"
    return Hit(f"Excessive exclamation marks: {where}", {"subject": _shown(f.subject), "subject_marks": in_subject,
                                                         "text_runs": runs})


def _hidden_text(f: _Facts) -> Hit | None:
    """Text the reader cannot see is written for the filter: keyword stuffing or bayes poison."""
    if not f.hidden:
        return None
    why, text = f.hidden[0]
    shown = [f"{w}: {_shown(t, 80)}" for w, t in f.hidden[:MAX_LISTED]]
    return Hit(f"{len(f.hidden)} HTML element(s) hide text from the reader ({why}: {_shown(text, 60)!r})",
               {"hidden": shown, "preheader": _shown(f.preheader or "", 80)})


def _charset(f: _Facts) -> Hit | None:
    if not f.charset_problems:
        return None
    return Hit(f"Charset declarations do not match the text: {f.charset_problems[0]}",
               {"problems": f.charset_problems})


def _executable(f: _Facts) -> Hit | None:
    """Programs and scripts by mail are how malware spreads; Gmail and most providers refuse them outright."""
    found = [_attachment(n, t, program) for n, t, program in f.attachments
             if program or _extension(n) in EXECUTABLE_EXTENSIONS or t in EXECUTABLE_TYPES]
    if not found:
        return None
    return Hit(f"Executable attachment: {found[0]}", {"attachments": found[:MAX_LISTED]})


def _macro(f: _Facts) -> Hit | None:
    """Macro-enabled Office files are the most common malware carrier; Office blocks their macros from mail."""
    found = [_attachment(n, t) for n, t, _ in f.attachments if _extension(n) in MACRO_EXTENSIONS]
    if not found:
        return None
    return Hit(f"Macro-enabled Office attachment: {found[0]}", {"attachments": found[:MAX_LISTED]})


def _size(f: _Facts) -> Hit | None:
    if f.size <= MAX_SIZE:
        return None
    return Hit(f"The message is {f.size / 1048576:.1f} MB", {"bytes": f"{f.size:,}", "limit": f"{MAX_SIZE:,}"})


def _mime_version(f: _Facts) -> Hit | None:
    """Without MIME-Version a receiver may treat the body as plain text and show the raw MIME source."""
    if f.has_mime_version or not f.mime_fields:
        return None
    return Hit(f"{f.mime_fields[0]} without MIME-Version", {"mime_fields": list(dict.fromkeys(f.mime_fields))})


RULES: tuple[Rule, ...] = (
    Rule("html-only", Level.WARN, 0.5, "SpamAssassin MIME_HTML_ONLY; rspamd MIME_HTML_ONLY",
         "Send multipart/alternative with a text/plain version of the same content before the HTML part; "
         "most mail libraries do it for you (e.g. EmailMessage.set_content(text) then add_alternative(html, "
         "subtype='html')).", _html_only),
    Rule("image-only", Level.WARN, 1.5, "SpamAssassin HTML_IMAGE_ONLY_04 ... HTML_IMAGE_ONLY_32",
         "Put the message in text, with images as decoration: a few sentences of real text (SpamAssassin counts "
         "up to 3,200 characters) and alt text on every image.", _image_only),
    Rule("link-mismatch", Level.WARN, 2.5, "rspamd PHISHING; SpamAssassin HTTPS_HTTP_MISMATCH",
         "Make each link's visible text either words (\"View your order\") or the exact address it opens. With "
         "click tracking, show words rather than a URL, or use a tracking domain under your own domain.",
         _link_mismatch),
    Rule("shortener", Level.WARN, 1.0, "SpamAssassin SHORT_URL (DecodeShortURLs)",
         "Link to the full address on your own domain; if you need short links, use a branded short domain of "
         "your own.", _shortener),
    Rule("subject-caps", Level.WARN, 1.0, "SpamAssassin SUBJ_ALL_CAPS; rspamd SUBJ_ALL_CAPS",
         "Write the Subject in sentence case.", _subject_caps),
    Rule("subject-phrase", Level.WARN, 1.0, "SpamAssassin subject and body phrase rules",
         "Say plainly what the message is about (\"Your March invoice\", \"New features in v2\") instead of "
         "sales phrases.", _subject_phrase),
    Rule("exclamation", Level.WARN, 0.5, "rspamd SUBJECT_ENDS_EXCLAIM; SpamAssassin subject punctuation rules",
         "Use at most one exclamation mark, and none in the Subject.", _exclamation),
    Rule("hidden-text", Level.WARN, 1.0, "rspamd ZERO_FONT, R_WHITE_ON_WHITE; SpamAssassin HTML_FONT_LOW_CONTRAST",
         "Remove text the reader cannot see. A short hidden preheader (under 150 characters, before the "
         "visible content) is fine; hidden paragraphs, keywords or tiny text are penalised.", _hidden_text),
    Rule("charset", Level.WARN, 0.5, "RFC 2046 §4.1.2; RFC 2045 §5.2",
         "Declare the charset the text is actually in (charset=utf-8 and UTF-8 bytes), and make an HTML "
         "<meta charset> say the same as the MIME Content-Type.", _charset),
    Rule("executable", Level.FAIL, 5.0, "rspamd MIME_BAD_EXTENSION; Gmail blocked file types",
         "Do not attach programs or scripts: link to a download page on your site instead. Gmail rejects such "
         "mail even inside archives.", _executable),
    Rule("macro", Level.WARN, 2.0, "rspamd MIME_BAD_EXTENSION; Microsoft: macros from the internet are blocked",
         "Send the document without macros (.docx, .xlsx, .pptx) or as PDF.", _macro),
    Rule("size", Level.WARN, 1.0, "RFC 1870",
         "Keep mail under 10 MB: link to large files instead of attaching them (many receivers refuse more "
         "than 10-25 MB, and base64 adds a third).", _size),
    Rule("mime-version", Level.WARN, 1.0, "RFC 2045 §4; rspamd MISSING_MIME_VERSION",
         "Add the header field 'MIME-Version: 1.0' (mail libraries do when they build MIME).", _mime_version),
)


# --- helpers -----------------------------------------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).lower().split())


def _shown_domain(text: str) -> str | None:
    """The domain a link's text shows, when the whole text reads as an address (a URL, www.…, or a name
    under a public suffix), else None: "Click here" and "index.html" show no domain."""
    text = text.strip().strip("<>[]()\"'").strip()
    m = _SHOWN_URL.fullmatch(text[:300])
    if m is None:
        return None
    name = m.group(3).lower()
    if m.group(1) or m.group(2):
        return host(text if m.group(1) else "http://" + text)
    try:
        return name if psl.has_listed_suffix(name) else None
    except Exception:  # noqa: BLE001 - odd labels are not a domain
        return None


def _same_site(shown: str, target: str | None) -> bool:
    if target is None:
        return False
    if _is_ip(shown) or _is_ip(target):
        return shown == target
    return org_domain(shown) == org_domain(target)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_shortener(domain: str) -> bool:
    labels = domain.split(".")[-4:]  # every shortener is two or three labels long
    return any(".".join(labels[i:]) in SHORTENERS for i in range(len(labels) - 1))


def _extension(name: str) -> str:
    """The last extension as Windows reads it: trailing dots and spaces do not count."""
    base = name.strip().rstrip(". ").lower()
    return base.rpartition(".")[2] if "." in base else ""


def _attachment(name: str, ctype: str, program: bool = False) -> str:
    what = f"{ctype}; its bytes are a Windows program" if program else ctype
    return f"{_shown(name, 80)} ({what})" if name else what


# --- external filters --------------------------------------------------------------------------------------

_TOOLS = {"rspamd": ("rspamd", "rspamd /checkv2 protocol (docs.rspamd.com/developers/protocol)"),
          "spamassassin": ("SpamAssassin", "SpamAssassin spamd protocol (SPAMC/1.5)")}
_SPAM_ACTIONS = frozenset({"reject", "soft reject", "rewrite subject", "add header", "spam"})


def external_results(scores: Iterable[Any]) -> list[CheckResult]:
    """One INFO (or WARN, when the tool would act on the message) result per external filter's opinion.

    `scores` are ExternalScore objects, or anything with the same attributes. The result says whose opinion
    it is; its points are 0 because it is shown beside the lab's score, not added to it.
    """
    out: list[CheckResult] = []
    for s in scores:
        tool = str(getattr(s, "tool", "") or "filter").lower()
        name, ref = _TOOLS.get(tool, (tool, None))
        version = getattr(s, "version", None)
        label = f"{name} {version}" if version else name
        score = float(getattr(s, "score", 0.0) or 0.0)
        threshold = getattr(s, "threshold", None)
        action = getattr(s, "action", None)
        rules = sorted(getattr(s, "rules", None) or [], key=lambda r: -abs(float(r[1])))
        spam = (threshold is not None and score >= float(threshold)) or (action or "").lower() in _SPAM_ACTIONS
        of = f", threshold {float(threshold):g}" if threshold is not None else ""
        acts = f", action: {action}" if action else ""
        top = [f"{_shown(str(r[0]), 60)} ({float(r[1]):+.2f}) {_shown(str(r[2]), 100)}".rstrip()
               for r in rules[:10] if float(r[1])]
        summary = f"From {label}: score {score:.2f}{of}{acts}"
        fix = None
        if spam:
            summary += f": {name} would treat it as spam"
            fix = (f"Work through the rules {name} lists, highest score first; they are its own names, "
                   "searchable in its documentation.")
        out.append(check(f"content.{re.sub(r'[^a-z0-9-]', '', tool) or 'filter'}",
                         Level.WARN if spam else Level.INFO, summary, ref=ref, fix=fix, points=0.0,
                         tool=label, score=f"{score:.2f}",
                         threshold=f"{float(threshold):g}" if threshold is not None else None,
                         action=action, rules=top, rule_count=len(rules)))
    return out
