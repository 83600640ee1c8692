"""Provides the links in a message: every web link with its anchor text, host and where it was found.

Filters judge mail by where its links go (URI blocklists, shorteners, anchor text that names another site),
so the lab needs the same list. Links come from HTML anchors (`<a href>`, with the text a person sees),
HTML images (`<img src>`, which a mail client may load) and URLs written in text/plain parts. Only web
links count (http, https and protocol-relative `//host`); mailto:, javascript: and cid: are not places a
click takes you on the web. Attachments are not read.

Hostile mail must not make this slow: HTML goes through the one linear pass of mime._HtmlText, at most
MAX_LINKS links are kept, anchor text is cut at MAX_TEXT characters, and nothing is fetched.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.message import Message

from lab.core.mime import _ATTR, MAX_TAG, _HtmlText, _safe, parse, text_of, walk

MAX_LINKS = 200
MAX_DOMAINS = 50
MAX_TEXT = 300  # characters of anchor text kept per link
MAX_HREF = 2048  # characters of an href kept (browsers and filters stop caring long before 100 KB)

# A URL in text: scheme, then anything up to white space or a character that cannot end a URL in prose.
# One character class with a bounded length, so the scan is linear.
_TEXT_URL = re.compile(r"(?i)https?://[^\s<>\"'`{}|\\^\[\]]{1,2048}")  # a word boundary before: text_links
_TRAILING = ".,;:!?)'\""
# A browser reads "http:example.com", "http:\\\\example.com" and "//example.com" (protocol-relative) as a host too.
_WEB = re.compile(r"(?i)(?:https?:[/\\]*|[/\\]{2})")
_HOST_OK = re.compile(r"[a-z0-9_.\-\u0080-\uffff]{1,253}")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_EDGES = "".join(map(chr, range(0x21)))  # C0 controls and space, stripped from both ends


@dataclass(frozen=True, slots=True)
class Link:
    href: str  # as written, HTML entities decoded, ends trimmed and tabs/newlines removed as a browser does
    text: str  # the anchor text a person sees ('' for plain-text URLs and images; an image's alt text)
    domain: str | None  # lower-case host of href: no userinfo, no port, no trailing dot
    source: str  # "html" (an <a href>), "text" (a URL in text/plain) or "image" (an <img src>)


def links(raw: bytes) -> list[Link]:
    """The web links in a raw message, in order, without repeats, at most MAX_LINKS."""
    return message_links(parse(raw))


def link_domains(raw: bytes) -> list[str]:
    """The unique link hosts in a raw message, in order of first appearance, at most MAX_DOMAINS."""
    return domains(links(raw))


def domains(found: list[Link]) -> list[str]:
    seen: dict[str, None] = {}
    for link in found:
        if link.domain and link.domain not in seen:
            seen[link.domain] = None
            if len(seen) >= MAX_DOMAINS:
                break
    return list(seen)


def message_links(msg: Message) -> list[Link]:
    """The web links of a parsed message (mime.parse), reading every text part that is not an attachment."""
    found: dict[Link, None] = {}
    for part in walk(msg):
        if len(found) >= MAX_LINKS:
            break
        if _safe(lambda p=part: p.get_content_disposition(), None) == "attachment":
            continue
        ctype = _safe(lambda p=part: p.get_content_type(), "text/plain")
        if ctype == "text/html":
            new = html_links(text_of(part))
        elif ctype == "text/plain":
            new = text_links(text_of(part))
        else:
            continue
        for link in new:
            found.setdefault(link)
            if len(found) >= MAX_LINKS:
                break
    return list(found)


def html_links(text: str) -> list[Link]:
    """The anchors and images of one HTML document."""
    scan = HtmlLinks()
    scan.feed(text)
    scan.close()
    return scan.found


def text_links(text: str) -> list[Link]:
    """The http and https URLs written in plain text; trailing prose punctuation is not part of them."""
    out: dict[str, Link] = {}
    if "://" not in text:  # every match has one: most text has no link, and the scan is the slow part
        return []
    pos = 0
    while (m := _TEXT_URL.search(text, pos)) is not None:
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] == "_"):  # \b, tested here: twice as fast
            pos = start + 1
            continue
        pos = m.end()
        href = m.group().rstrip(_TRAILING)
        if href not in out:  # a newsletter repeats its links: parse each once
            out[href] = Link(href, "", host(href), "text")
            if len(out) >= MAX_LINKS:
                break
    return list(out.values())


def host(href: str) -> str | None:
    """The lower-case host of a web URL, or None when href is not one or has no usable host.

    Read as a browser reads it: userinfo before '@' is dropped (http://bank.example@evil.example/ goes to
    evil.example), a backslash ends the host like a slash, and the port and a trailing dot are removed.
    """
    href = _browser(href)
    m = _WEB.match(href)
    if m is None:
        return None
    rest = href[m.end():]
    end = len(rest)
    for stop in "/?#\\":
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    authority = rest[:end].rpartition("@")[2]
    if authority.startswith("["):  # an IPv6 literal
        literal, close, _ = authority[1:].partition("]")
        return literal.lower() if close and literal else None
    name = authority.partition(":")[0].rstrip(".").lower()
    return name if _HOST_OK.fullmatch(name) and name.strip(".") else None


def web_href(href: str) -> str | None:
    """href as a browser would follow it (ends trimmed, tabs and newlines removed), if it is a web link."""
    cleaned = _browser(href)
    return cleaned if _WEB.match(cleaned) else None


def _browser(href: str) -> str:
    """The URL parser's first steps (WHATWG URL): trim C0 controls and spaces, drop tabs and newlines."""
    return _TAB_NEWLINE.sub("", href[:MAX_HREF].strip(_EDGES))


class HtmlLinks(_HtmlText):
    """mime._HtmlText (one linear pass) that also keeps each anchor's text and each image's source.

    `found` holds the links; `images` counts every <img>, wherever its source points (cid:, data:, web).
    Subclasses may extend `_start` to look at other tags; it receives the tag name and up to MAX_TAG
    characters of its attributes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[Link] = []
        self.images = 0
        self._seen: set[Link] = set()
        self._anchor: tuple[str, int] | None = None  # (href, index into parts where its text starts)
        self._placeholders: set[int] = set()  # parts that are "[image: …]" stand-ins, not text

    def _start(self, tag: str, attr_text: str) -> None:
        if tag == "a" and self._anchor is not None:
            self._close_anchor()  # <a> inside <a>: the first one ends, as in a browser
        before = len(self.parts)
        super()._start(tag, attr_text)
        if tag == "a":
            href = web_href(self._href or "")
            self._anchor = (href, len(self.parts)) if href else None
        elif tag == "img":
            self.images += 1
            self._placeholders.update(range(before, len(self.parts)))
            attrs = attributes(attr_text)
            src = web_href(attrs.get("src", ""))
            if src:
                self._add(Link(src, " ".join(attrs.get("alt", "")[:MAX_TEXT].split()), host(src), "image"))

    def _end(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            self._close_anchor()
        before = len(self.parts)
        super()._end(tag)
        if tag == "a":
            self._placeholders.update(range(before, len(self.parts)))  # the " [n]" link number

    def visible_text(self, start: int = 0, limit: int | None = None, end: int | None = None) -> str:
        """The text of parts[start:end] as a person reads it (no image or link-number stand-ins), white space
        collapsed; reading stops once about `limit` characters are gathered."""
        pieces: list[str] = []
        size = 0
        for i in range(start, len(self.parts) if end is None else min(end, len(self.parts))):
            if i in self._placeholders:
                continue
            pieces.append(self.parts[i])
            size += len(self.parts[i])
            if limit is not None and size > 4 * limit:  # entities and white space shrink: a margin, then stop
                break
        text = " ".join(html.unescape("".join(pieces)).split())
        return text if limit is None else text[:limit]

    def _close_anchor(self) -> None:
        href, start = self._anchor  # type: ignore[misc]
        self._anchor = None
        if len(self.found) < MAX_LINKS:
            self._add(Link(href, self.visible_text(start, MAX_TEXT), host(href), "html"))

    def _add(self, link: Link) -> None:
        if link not in self._seen and len(self.found) < MAX_LINKS:
            self._seen.add(link)
            self.found.append(link)

    def close(self) -> None:
        if self._anchor is not None:  # an anchor never closed runs to the end of the document
            self._close_anchor()
        super().close()


def attributes(attr_text: str) -> dict[str, str]:
    """A start tag's attributes (first of each name wins, entities decoded), from its first MAX_TAG characters."""
    attrs: dict[str, str] = {}
    for name, double, single, bare in _ATTR.findall(attr_text[:MAX_TAG]):
        attrs.setdefault(name.lower(), html.unescape(double or single or bare))
    return attrs

