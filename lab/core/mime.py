"""Provides the MIME view of a message for display: the part tree with sizes, and readable text.

HTML is turned into text with its links listed; nothing is fetched, no image is loaded. Parsing uses the
tolerant compat32 policy, and every failure becomes a note, never an exception.

Hostile mail must not stall the UI, so the work is bounded: parts nested deeper than MAX_DEPTH keep their
body as one opaque part (the stdlib parser recurses per level, and 1,000 levels raised RecursionError after
seconds of quadratic work), only charsets that decode in linear time are used, and HTML is converted in one
linear pass (html.parser takes minutes on 20,000 unclosed "<a ").
"""

from __future__ import annotations

import email.policy
import email.utils
import html
import re
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.message import Message

from lab.core.message import usable_charset

MAX_PARTS = 2000
MAX_DEPTH = 100  # Postfix's mime_nesting_limit: deeper mail is refused by it, and shown here as one part
MAX_LINKS = 500
MAX_TAG = 4096  # attributes are read from the first 4 KB of a tag


@dataclass
class Part:
    path: str  # "1.2.1", as IMAP numbers parts
    content_type: str
    size: int  # decoded octets
    filename: str | None = None
    charset: str | None = None
    encoding: str | None = None
    disposition: str | None = None
    children: list[Part] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _BoundedParser(BytesFeedParser):
    """The stdlib parser, except that a part nested deeper than MAX_DEPTH is read headers-only: its whole
    body (up to its parent's boundary) becomes its payload instead of a parsed subtree."""

    def __init__(self):
        self._depth = 0
        self.too_deep = False
        super().__init__(policy=email.policy.compat32)

    def _parsegen(self):
        self._depth += 1
        deep = self._depth > MAX_DEPTH
        if deep:
            self.too_deep = True
            self._headersonly = True  # read once the part's headers are parsed; nothing nests inside it
        try:
            yield from super()._parsegen()
        finally:
            self._depth -= 1
            if deep:
                self._headersonly = False


def parse(raw: bytes) -> Message:
    quick = _single_part(raw)
    if quick is not None:
        return quick
    parser = _BoundedParser()
    for start in range(0, len(raw), 1 << 16):
        parser.feed(raw[start:start + (1 << 16)])
    return parser.close()


_MULTI = re.compile(rb"(?im)^content-type:[ \t]*(?:\r\n[ \t]+)*(?:multipart|message)/")
_HEAD_LINE = re.compile(rb"[!-9;-~]+:|[ \t]")  # a field name and colon, or a folded continuation


def _single_part(raw: bytes) -> Message | None:
    """A one-part message the way the stdlib parser reads it, without its line-at-a-time loop over the body
    (0.5 ms for 12 KB, and most mail is one text part). Only plain cases: CRLF throughout the header
    section, every line a field or a continuation, and no multipart or message/* type; anything else goes
    to the full parser. tests/core/test_mime.py compares the two on every corpus message."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = raw[:end + 2]
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n") or _MULTI.search(head):
        return None
    if not all(_HEAD_LINE.match(line) for line in head[:-2].split(b"\r\n")):
        return None
    msg = email.message_from_bytes(head + b"\r\n", policy=email.policy.compat32)
    msg.set_payload(raw[end + 4:].decode("ascii", "surrogateescape"))
    return msg


def tree(raw: bytes) -> Part:
    msg = parse(raw)
    count = [0]
    return _part(msg, "", count)


def _part(msg: Message, path: str, count: list[int]) -> Part:
    count[0] += 1
    ctype = _safe(lambda: msg.get_content_type(), "text/plain")
    part = Part(
        path=path or "message",
        content_type=ctype,
        size=0,
        filename=filename(msg),
        charset=charset(msg),
        encoding=_safe(lambda: str(msg.get("Content-Transfer-Encoding", "") or "").lower() or None, None),
        disposition=_safe(lambda: msg.get_content_disposition(), None),
    )
    for defect in getattr(msg, "defects", [])[:5]:
        part.notes.append(type(defect).__name__)
    if path.count(".") + 1 >= MAX_DEPTH and ctype.partition("/")[0] in ("multipart", "message") and \
            not msg.is_multipart():
        part.notes.append(f"nested deeper than {MAX_DEPTH} levels: the rest is shown as one part")
    if msg.is_multipart():
        payload = msg.get_payload()
        if isinstance(payload, list):
            for i, child in enumerate(payload, 1):
                if count[0] >= MAX_PARTS:
                    part.notes.append(f"more than {MAX_PARTS} parts: the rest are not shown")
                    break
                part.children.append(_part(child, f"{path}.{i}" if path else str(i), count))
                part.size += part.children[-1].size
    else:
        data = decoded(msg)
        part.size = len(data)
    return part


def decoded(msg: Message) -> bytes:
    """The part's payload with its transfer encoding undone (broken base64 decodes what it can)."""
    try:
        data = msg.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        data = None
    if data is None:
        payload = raw_payload(msg)
        return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return data


def raw_payload(msg: Message):
    """The payload as parsed (str, or a list of parts). Message.get_payload() without decode=True re-decodes a
    str payload with the part's charset and raises for names like "\x00" (found by fuzzing), so not that."""
    return msg._payload


def walk(msg: Message):
    """Leaf parts in order, bounded."""
    for i, part in enumerate(msg.walk()):
        if i > MAX_PARTS:
            return
        if not part.is_multipart():
            yield part


def filename(msg: Message) -> str | None:
    """The part's file name (RFC 2231 and quoted forms), decoded only with a charset that is safe to use.

    Message.get_filename() hands the charset named in `filename*=` to bytes.decode: idna raises
    UnicodeError, punycode takes quadratic time.
    """
    for header, name in (("content-disposition", "filename"), ("content-type", "name")):
        value = _safe(lambda h=header, n=name: msg.get_param(n, None, h), None)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = (usable_charset(value[0]) or "latin-1", value[1], value[2])
        return _safe(lambda v=value: str(email.utils.collapse_rfc2231_value(v)).strip(), None)
    return None


def charset(msg: Message) -> str | None:
    """The charset parameter, lower-cased; an RFC 2231 form is read as written, not decoded by itself."""
    value = _safe(lambda: msg.get_param("charset"), None)
    if isinstance(value, tuple):
        value = value[2]
    if not isinstance(value, str):
        return None
    return value.strip().lower() or None


def find(raw: bytes, path: str) -> Message | None:
    """The part at an IMAP-style path such as "2.1"."""
    msg = parse(raw)
    if path in ("", "message"):
        return msg
    for index in path.split("."):
        payload = msg.get_payload() if msg.is_multipart() else None
        if not isinstance(payload, list) or not index.isdigit() or not 0 < int(index) <= len(payload):
            return None
        msg = payload[int(index) - 1]
    return msg


def text_of(msg: Message) -> str:
    """The part as text; an unknown or unusable charset (idna, punycode, base64 ...) reads as UTF-8."""
    data = decoded(msg)
    codec = usable_charset(charset(msg)) or "utf-8"
    try:
        return data.decode(codec, "replace")
    except Exception:  # noqa: BLE001 - a codec that still fails on this data
        return data.decode("utf-8", "replace")


@dataclass
class Readable:
    text: str
    source: str  # "text/plain", "text/html (converted)" or "none"
    links: list[str] = field(default_factory=list)


def readable(raw: bytes) -> Readable:
    """The text a person would read: text/plain if there is one, else the HTML as text with links listed."""
    msg = parse(raw)
    plain = html_part = None
    for part in walk(msg):
        if _safe(lambda p=part: p.get_content_disposition(), None) == "attachment":
            continue
        ctype = _safe(lambda p=part: p.get_content_type(), "text/plain")
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and html_part is None:
            html_part = part
    if plain is not None:
        text = text_of(plain)
        return Readable(text, "text/plain", links=_urls(text))
    if html_part is not None:
        converter = _HtmlText()
        try:
            converter.feed(text_of(html_part))
            converter.close()
        except Exception:  # noqa: BLE001
            pass
        return Readable(converter.text(), "text/html (converted; nothing fetched)", converter.links)
    return Readable("", "none")


_URL = re.compile(r"https?://[^\s<>\"')]+")


def _urls(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for m in _URL.finditer(text):
        seen.setdefault(m.group())
        if len(seen) >= 200:
            break
    return list(seen)


_TAG_NAME = re.compile(r"(/?)([a-zA-Z][a-zA-Z0-9:-]*)")
_ATTR = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_SKIP_END = {tag: re.compile(f"</{tag}", re.I) for tag in ("script", "style", "head", "title")}


class _HtmlText:
    """HTML as text in one linear pass over the string: find() only, each position read a bounded number of
    times, so no input can make it slow. A preview, not a browser: '>' inside a quoted attribute ends the tag."""

    _BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "hr"}

    def __init__(self):
        self.parts: list[str] = []
        self.links: list[str] = []
        self._numbers: dict[str, int] = {}
        self._href: str | None = None

    def feed(self, s: str) -> None:
        i, n, gt = 0, len(s), -1
        while i < n:
            lt = s.find("<", i)
            if lt < 0:
                self.parts.append(s[i:])
                return
            self.parts.append(s[i:lt])
            if s.startswith("<!--", lt):
                end = s.find("-->", lt + 4)
                if end < 0:
                    return  # an unclosed comment hides the rest, as in a browser
                i = end + 3
                continue
            if gt <= lt:  # the next '>' is searched for only once per position: linear overall
                gt = s.find(">", lt + 1)
            if gt < 0:
                self.parts.append(s[lt:])
                return
            m = _TAG_NAME.match(s, lt + 1, gt)
            if m is None:
                if s[lt + 1:lt + 2] in ("!", "?", "/"):  # doctype, processing instruction, bogus comment
                    i = gt + 1
                else:  # "a < b": text
                    self.parts.append("<")
                    i = lt + 1
                continue
            name = m.group(2).lower()
            i = gt + 1
            if m.group(1):
                self._end(name)
                continue
            self._start(name, s[m.end():min(gt, m.end() + MAX_TAG)])
            if name in _SKIP_END:
                close = _SKIP_END[name].search(s, i)
                if close is None:
                    return
                end = s.find(">", close.end())
                i = n if end < 0 else end + 1

    def close(self) -> None:
        pass

    def _start(self, tag: str, attr_text: str) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")
        if tag not in ("a", "img"):
            return
        attrs: dict[str, str] = {}
        for name, double, single, bare in _ATTR.findall(attr_text):
            attrs.setdefault(name.lower(), html.unescape(double or single or bare))
        if tag == "a":
            self._href = attrs.get("href")
        else:
            src, alt = attrs.get("src") or "", attrs.get("alt") or ""
            self.parts.append(f"[image: {alt or 'no alt text'}]")
            if src.startswith("http"):
                self._add_link(f"{src} (image, not loaded)")

    def _end(self, tag: str) -> None:
        if tag == "a" and self._href:
            if self._href.startswith(("http:", "https:", "mailto:")):
                n = self._add_link(self._href)
                if n:
                    self.parts.append(f" [{n}]")
            self._href = None
        if tag in self._BLOCK:
            self.parts.append("\n")

    def _add_link(self, url: str) -> int | None:
        if url not in self._numbers and len(self.links) < MAX_LINKS:
            self.links.append(url)
            self._numbers[url] = len(self.links)
        return self._numbers.get(url)

    def text(self) -> str:
        text = html.unescape("".join(self.parts))
        text = re.sub(r"[ \t\r\f\v]+", " ", text)
        return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def _safe(fn, default):
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default
