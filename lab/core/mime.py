"""Provides the MIME view of a message for display: the part tree with sizes, and readable text.

HTML is turned into text with its links listed; nothing is fetched, no image is loaded. Parsing uses the
tolerant compat32 policy, and every failure becomes a note, never an exception.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser

MAX_PARTS = 2000


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

    @property
    def is_attachment(self) -> bool:
        return bool(self.filename) or self.disposition == "attachment"


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


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
        filename=_safe(lambda: msg.get_filename(), None),
        charset=_safe(lambda: msg.get_content_charset(), None),
        encoding=_safe(lambda: str(msg.get("Content-Transfer-Encoding", "") or "").lower() or None, None),
        disposition=_safe(lambda: msg.get_content_disposition(), None),
    )
    for defect in getattr(msg, "defects", [])[:5]:
        part.notes.append(type(defect).__name__)
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
        payload = msg.get_payload()
        return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return data


def walk(msg: Message):
    """Leaf parts in order, bounded."""
    for i, part in enumerate(msg.walk()):
        if i > MAX_PARTS:
            return
        if not part.is_multipart():
            yield part


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
    data = decoded(msg)
    charset = _safe(lambda: msg.get_content_charset(), None) or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
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
        if part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
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
    seen: list[str] = []
    for url in _URL.findall(text):
        if url not in seen:
            seen.append(url)
    return seen[:200]


class _HtmlText(HTMLParser):
    _BLOCK = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "hr"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self._skip = 0
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        if tag == "a":
            self._href = dict(attrs).get("href")
        if tag == "img":
            src = dict(attrs).get("src") or ""
            alt = dict(attrs).get("alt") or ""
            self.parts.append(f"[image: {alt or 'no alt text'}]")
            if src.startswith("http"):
                self._add_link(f"{src} (image, not loaded)")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        if tag == "a" and self._href:
            if self._href.startswith(("http:", "https:", "mailto:")):
                n = self._add_link(self._href)
                self.parts.append(f" [{n}]")
            self._href = None
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)

    def _add_link(self, url: str) -> int:
        if url not in self.links:
            self.links.append(url)
        return self.links.index(url) + 1

    def text(self) -> str:
        text = html.unescape("".join(self.parts))
        text = re.sub(r"[ \t\r\f\v]+", " ", text)
        return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def _safe(fn, default):
    try:
        return fn()
    except Exception:  # noqa: BLE001
        return default
