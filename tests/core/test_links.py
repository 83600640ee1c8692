"""Tests for lab.core.links: which links a message holds, as a browser and a URI filter would read them."""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest

from lab.core.links import MAX_DOMAINS, MAX_LINKS, MAX_TEXT, Link, host, html_links, link_domains, links, text_links


def html_mail(html: str, plain: str | None = None) -> bytes:
    """A real multipart message built by the standard library: text/plain (optional) and text/html."""
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "Links"
    if plain is None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(plain)
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


@pytest.mark.parametrize(("href", "expected"), [
    ("https://www.Example.COM/path", "www.example.com"),
    ("http://example.com:8080/x", "example.com"),
    ("http://user:pass@bank.example@evil.example/login", "evil.example"),  # the last @ ends userinfo
    ("https://example.com./", "example.com"),
    ("https://example.com?q=1", "example.com"),
    ("https://example.com#top", "example.com"),
    ("https://example.com\\@evil.example/", "example.com"),  # a backslash ends the host as a slash does
    ("http:\\\\evil.example\\x", "evil.example"),
    ("http:evil.example/x", "evil.example"),  # a browser reads a special scheme without slashes too
    ("//cdn.example/x.js", "cdn.example"),
    ("  https://ex\tam\nple.com/ ", "example.com"),  # tabs and newlines are removed, the ends trimmed
    ("https://[2001:DB8::1]:443/", "2001:db8::1"),
    ("https://192.0.2.1/", "192.0.2.1"),
    ("HTTPS://EXAMPLE.COM", "example.com"),
    ("mailto:a@example.com", None),
    ("javascript:alert(1)", None),
    ("cid:part1@example.com", None),
    ("/relative/path", None),
    ("https://", None),
    ("https://[2001:db8::1/", None),  # an unclosed literal is no host
    ("https://exa mple.com/", None),
    ("https://evil%2eexample/", None),
])
def test_host(href, expected):
    assert host(href) == expected


def test_anchors_keep_their_visible_text():
    raw = html_mail('<p>Pay <a href="https://evil.example/login">www.paypal.com</a> now, or '
                    '<a href="https://example.com/a?x=1&amp;y=2"><b>View</b>   your\n order</a></p>')
    assert links(raw) == [
        Link("https://evil.example/login", "www.paypal.com", "evil.example", "html"),
        Link("https://example.com/a?x=1&y=2", "View your order", "example.com", "html"),
    ]


def test_image_stand_ins_and_link_numbers_are_not_anchor_text():
    found = html_links('<a href="https://a.example/"><img src="https://img.example/logo.png" alt="Logo"></a>'
                       '<a href="https://b.example/">next</a><a href="https://a.example/">again</a>')
    assert [(f.source, f.href, f.text) for f in found] == [
        ("image", "https://img.example/logo.png", "Logo"),
        ("html", "https://a.example/", ""),  # the image is not text: "[image: Logo]" must not appear
        ("html", "https://b.example/", "next"),  # and neither may the " [1]" the text preview adds
        ("html", "https://a.example/", "again"),
    ]


def test_images_from_elsewhere_than_the_web_are_not_links():
    found = html_links('<img src="cid:logo"><img src="data:image/png;base64,AAAA"><img src="//cdn.example/p.gif">')
    assert found == [Link("//cdn.example/p.gif", "", "cdn.example", "image")]


def test_non_web_anchors_are_skipped():
    found = html_links('<a href="mailto:a@example.com">mail</a><a href="javascript:x()">js</a>'
                       '<a href="#top">top</a><a>no href</a><a href="/rel">rel</a>')
    assert found == []


def test_a_nested_anchor_ends_the_first_and_an_unclosed_one_runs_to_the_end():
    found = html_links('<a href="https://one.example/">one <a href="https://two.example/">two')
    assert [(f.domain, f.text) for f in found] == [("one.example", "one"), ("two.example", "two")]


def test_head_style_and_script_are_not_read():
    found = html_links('<head><title><a href="https://t.example/">x</a></title></head>'
                       '<style>a{}</style><script>"<a href=https://s.example/>y</a>"</script>'
                       '<a href="https://body.example/">z</a>')
    assert [f.domain for f in found] == ["body.example"]


def test_plain_text_urls():
    found = text_links("See https://example.com/x. Or (HTTP://Foo.Example:8080/y), and https://bit.ly/abc!\n"
                       "not a link: example.org, ftp://files.example/")
    assert [(f.href, f.domain, f.source, f.text) for f in found] == [
        ("https://example.com/x", "example.com", "text", ""),
        ("HTTP://Foo.Example:8080/y", "foo.example", "text", ""),
        ("https://bit.ly/abc", "bit.ly", "text", ""),
    ]


def test_both_alternatives_are_read_and_repeats_dropped():
    raw = html_mail('<a href="https://shop.example/sale">Sale</a>',
                    plain="Sale: https://shop.example/sale\nAgain: https://shop.example/sale\n")
    assert links(raw) == [
        Link("https://shop.example/sale", "", "shop.example", "text"),
        Link("https://shop.example/sale", "Sale", "shop.example", "html"),
    ]
    assert link_domains(raw) == ["shop.example"]


def test_attachments_are_not_read():
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg.set_content("Body https://body.example/\n")
    msg.add_attachment("<a href='https://attached.example/'>x</a>", subtype="html", filename="page.html")
    msg.add_attachment(b"https://binary.example/", maintype="application", subtype="octet-stream",
                       filename="data.bin")
    assert link_domains(msg.as_bytes()) == ["body.example"]


def test_a_message_without_links():
    assert links(b"From: a@example.com\r\n\r\nNo links here.\r\n") == []
    assert links(b"") == []
    assert link_domains(b"\r\n") == []


def test_link_domains_are_unique_in_order_and_capped():
    body = "".join(f'<a href="https://d{i}.example/">x</a><a href="https://d{i}.example/other">y</a>'
                   for i in range(80))
    found = link_domains(html_mail(body))
    assert found[:3] == ["d0.example", "d1.example", "d2.example"]
    assert len(found) == MAX_DOMAINS == len(set(found))


def test_links_are_capped():
    body = "".join(f'<a href="https://x.example/{i}">{i}</a>' for i in range(1000))
    found = links(html_mail(body, plain="\n".join(f"https://t.example/{i}" for i in range(1000))))
    assert len(found) == MAX_LINKS
    assert len(html_links(body)) == MAX_LINKS


def test_anchor_text_is_capped():
    (found,) = html_links('<a href="https://x.example/">' + "word " * 100_000 + "</a>")
    assert len(found.text) == MAX_TEXT


HOSTILE = {
    "unclosed tags": "<a " * 20_000,  # html.parser takes minutes on this
    "20,000 anchors": '<a href="https://x.example/">' * 20_000,  # each ends the one before
    "one anchor over 50,000 images": "<a href='https://x.example/'>" + "<img src=x>" * 50_000,
    "100 KB text and href": "x" * 100_000 + '<a href="https://' + "a" * 100_000 + '">',
    "100 KB of <": "<" * 100_000,
    "50,000 tags in an anchor": '<a href="https://x.example/">' + "<b>" * 50_000 + "text",
    "a 100 KB attribute": '<a href="https://x.example/" title="' + "x" * 100_000 + '">t</a>',
}


@pytest.mark.parametrize("html", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_html_is_linear(html):
    start = time.perf_counter()
    html_links(html)
    links(html_mail(html))
    assert time.perf_counter() - start < 3.0


def test_hostile_text_is_linear():
    start = time.perf_counter()
    text_links("https://" * 50_000)
    text_links("http://" + "a" * 200_000)
    text_links("https://x.example/ " * 20_000)
    assert time.perf_counter() - start < 1.0


def test_deep_mime_is_bounded():
    depth = 1000
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth))
    raw = ("From: a@example.com\r\nMIME-Version: 1.0\r\n" + head +
           "Content-Type: text/plain\r\n\r\nhttps://deep.example/\r\n").encode()
    start = time.perf_counter()
    links(raw)
    assert time.perf_counter() - start < 5.0


def test_text_links_agree_with_a_word_boundary_regex_on_random_text():
    """text_links tests the word boundary itself (twice as fast as \\b in the pattern): same links, same order."""
    import random
    import re

    reference = re.compile(r"(?i)\bhttps?://[^\s<>\"'`{}|\\^\[\]]{1,2048}")
    rng = random.Random(5321)
    pieces = ["http://", "HTTPS://", "hTtP://", "x", "_", "é", "/", " ", "a.example", ".", ")", "\n", "ß", "9",
              "://", "ftp://", "tps://", "h", "http", "s", ":", "İ"]
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 20)))
        want = list(dict.fromkeys(m.group().rstrip(".,;:!?)'\"") for m in reference.finditer(text)))
        assert [link.href for link in text_links(text)] == want, text
