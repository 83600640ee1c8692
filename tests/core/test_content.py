"""Tests for the content rules: each rule fires and does not fire, the points table, external scores, hostile mail."""

from __future__ import annotations

import re
import time
from email.message import EmailMessage
from types import SimpleNamespace

import pytest
from support import capture

from lab.core.checks import content
from lab.core.checks.content import RULES, ExternalScore, check_content, external_results
from lab.core.context import Context
from lab.core.dnsview import ZoneView
from lab.core.results import CheckResult, Level

TEXT = "Hello Bob,\n\nyour order #1001 has shipped and will arrive on Tuesday.\n\nThanks, the shop\n"
LONG = " ".join(["Here is a full paragraph of ordinary words about the order you placed."] * 20)  # ~1,400 chars


def mail(text: str | None = TEXT, html: str | None = None, subject: str = "Your order has shipped",
         attachments: tuple[tuple[str, str, bytes], ...] = ()) -> bytes:
    """A real message built by the standard library: text/plain and/or text/html, then attachments
    given as (file name, content type, data)."""
    msg = EmailMessage()
    msg["From"] = "Shop <orders@example.com>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    for name, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def raw_mail(body: bytes, headers: str = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
             subject: str = "Your order") -> bytes:
    return (f"From: orders@example.com\r\nTo: bob@example.net\r\nSubject: {subject}\r\n{headers}\r\n").encode() + body


def run(raw: bytes) -> list[CheckResult]:
    return check_content(Context(capture(raw), ZoneView()))


def fired(raw: bytes) -> dict[str, CheckResult]:
    return {r.id: r for r in run(raw) if r.id != "content.rules"}


def ids(raw: bytes) -> set[str]:
    return set(fired(raw))


# --- nothing fires -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    mail(),
    mail(html=f"<p>{TEXT}</p><p>{LONG}</p><img src='cid:logo' alt='Shop'>"),
    mail(attachments=(("invoice.pdf", "application/pdf", b"%PDF-1.7\n"),)),
], ids=["plain text", "text and HTML with a logo", "a PDF invoice"])
def test_a_clean_message_gives_one_pass(raw):
    results = run(raw)
    assert [(r.id, r.level, r.points) for r in results] == [("content.rules", Level.PASS, 0.0)]
    assert f"{len(RULES)} content rules" in results[0].summary


# --- one rule at a time: fires, and does not ---------------------------------------------------------------

CASES = {
    # rule: (a message where it fires, a near miss where it must not)
    "html-only": (mail(text=None, html=f"<p>{LONG}</p>"), mail(html=f"<p>{LONG}</p>")),
    "image-only": (mail(text="See below.", html="<img src='https://cdn.example/offer.png'>"),
                   mail(text=LONG, html=f"<p>{LONG}</p><img src='https://cdn.example/logo.png'>")),
    "link-mismatch": (mail(html=f'<p>{LONG} <a href="https://evil.example.net/login">www.paypal.com</a></p>'),
                      mail(html=f'<p>{LONG} <a href="https://click.paypal.com/t/1">www.paypal.com</a></p>')),
    "shortener": (mail(text=TEXT + "Track it: https://bit.ly/3xYz\n"),
                  mail(text=TEXT + "Track it: https://notbit.ly/3xYz\n")),
    "subject-caps": (mail(subject="YOUR ORDER HAS SHIPPED TODAY"), mail(subject="Your NASA order has shipped")),
    "subject-phrase": (mail(subject="Act now: 100% free upgrade"), mail(subject="Actions now free for all teams")),
    "exclamation": (mail(subject="Shipped!!!"), mail(subject="Shipped!")),
    "hidden-text": (mail(html=f'<p>{LONG}</p><span style="font-size:0px">cheap meds cheap meds</span>'),
                    mail(html=f'<p>{LONG}</p><span style="font-size:12px">cheap meds cheap meds</span>')),
    "charset": (raw_mail("Caf\u00e9 ouvert".encode("latin-1"), "MIME-Version: 1.0\r\nContent-Type: text/plain; "
                         "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"),
                raw_mail("Caf\u00e9 ouvert".encode(), "MIME-Version: 1.0\r\nContent-Type: text/plain; "
                         "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")),
    "executable": (mail(attachments=(("setup.exe", "application/octet-stream", b"MZ\x90\x00"),)),
                   mail(attachments=(("setup.txt", "text/plain", b"how to set up"),))),
    "macro": (mail(attachments=(("budget.xlsm", "application/octet-stream", b"PK\x03\x04"),)),
              mail(attachments=(("budget.xlsx", "application/octet-stream", b"PK\x03\x04"),))),
    "mime-version": (raw_mail(b"<p>Hello</p>\r\n", "Content-Type: text/plain; charset=us-ascii\r\n"),
                     raw_mail(b"<p>Hello</p>\r\n", "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n")),
}


@pytest.mark.parametrize("rule", CASES, ids=CASES.keys())
def test_each_rule_fires_and_does_not(rule):
    hit, miss = CASES[rule]
    assert ids(hit) == {f"content.{rule}"}, "the firing message must trip exactly this rule"
    assert f"content.{rule}" not in ids(miss)


def test_every_rule_has_a_case():
    assert set(CASES) | {"size"} == {r.name for r in RULES}  # size is tested below: it needs 10 MB


def test_a_fired_rule_carries_its_points_ref_fix_and_evidence():
    for rule in RULES:
        if rule.name not in CASES:
            continue
        result = fired(CASES[rule.name][0])[f"content.{rule.name}"]
        assert result.level is rule.level
        assert result.points == rule.points > 0
        assert result.ref == rule.ref and result.fix == rule.fix
        assert f"({rule.name}, {rule.points:g} point" in result.summary
        assert result.evidence, rule.name


def test_the_documented_points_table_is_the_rules_table():
    documented = {m.group(1): (m.group(2).lower(), float(m.group(3)))
                  for m in re.finditer(r"\| content\.([\w-]+)\s*\| (\w+)\s*\| ([\d.]+)", content.__doc__ or "")}
    assert documented == {r.name: (r.level.value, r.points) for r in RULES}


def test_severe_rules_fail_and_the_others_warn():
    assert {r.name for r in RULES if r.level is Level.FAIL} == {"executable"}
    assert {r.level for r in RULES} == {Level.FAIL, Level.WARN}


# --- rule details ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "html", "points"), [
    ("See below.", "<img src='cid:offer'>", 1.5),  # images and almost no text
    ("See below.", "<p>" + "word " * 100 + "</p><img src='cid:offer'>", 0.7),  # about 500 characters: mostly
    ("See below.", "<p>" + "word " * 300 + "</p><img src='cid:offer'>", None),  # 1,500 characters
    ("See below.", "<p>Short note</p>", None),  # no image at all
], ids=["image only", "mostly images", "enough text", "no images"])
def test_image_only_tiers(text, html, points):
    found = fired(mail(text=text, html=html)).get("content.image-only")
    assert (found.points if found else None) == points


def _related(text: str | None, html: str | None) -> bytes:
    """Text and/or HTML with an inline image part (multipart/related), as mail clients send a pasted picture."""
    msg = EmailMessage()
    msg["From"], msg["Subject"] = "orders@example.com", "Photo"
    if html is not None:
        msg.set_content(html, subtype="html")
        msg.add_related(b"\x89PNG\r\n", maintype="image", subtype="png", cid="<shop@example.com>")
    elif text is not None:
        msg.set_content(text)
        msg.add_attachment(b"\x89PNG\r\n", maintype="image", subtype="png", disposition="inline")
    else:
        msg.set_content(b"\x89PNG\r\n", maintype="image", subtype="png", disposition="inline")
    return msg.as_bytes()


@pytest.mark.parametrize(("raw", "images"), [
    (_related(None, "<p>Our new shop.</p><img src='cid:shop@example.com'>"), 1),  # the part and its <img>: one
    (_related(None, None), 1),  # nothing but a picture
    (_related("Sent from my phone", None), None),  # a photo under a line of text
    (mail(text="Here is the photo you asked for.", attachments=(("shop.png", "image/png", b"\x89PNG"),)), None),
], ids=["html with an inline image", "only an image", "a photo under text", "an attached photo"])
def test_which_images_count(raw, images):
    found = fired(raw).get("content.image-only")
    assert (found.evidence["images"] if found else None) == (str(images) if images else None)


@pytest.mark.parametrize(("anchor", "fires"), [
    ('<a href="https://evil.example.net/">www.paypal.com</a>', True),
    ('<a href="https://evil.example.net/">https://paypal.com/signin</a>', True),
    ('<a href="https://www.paypal.com@evil.example.net/">www.paypal.com</a>', True),  # userinfo trick
    ('<a href="http://192.0.2.1/login">paypal.com</a>', True),  # a domain shown, an address linked
    ('<a href="https://paypal.com.evil.example.net/">paypal.com</a>', True),
    ('<a href="https://www.paypal.com/signin">https://paypal.com</a>', False),  # same organisation
    ('<a href="https://click.example.com/t/9">www.example.com</a>', False),  # own tracking subdomain
    ('<a href="https://bbc.co.uk/news">news.bbc.co.uk</a>', False),  # under a two-label public suffix
    ('<a href="https://evil.example.net/">Click here</a>', False),  # words, not an address
    ('<a href="https://evil.example.net/">index.html</a>', False),  # not under a public suffix
    ('<a href="https://evil.example.net/">support@paypal.com</a>', False),  # an address, not a site
    ('<a href="mailto:a@evil.example.net">www.paypal.com</a>', False),  # not a web link
], ids=lambda v: v if isinstance(v, bool) else re.sub(r"<[^>]*>", "", v))
def test_link_mismatch(anchor, fires):
    assert ("content.link-mismatch" in ids(mail(html=f"<p>{LONG}</p><p>{anchor}</p>"))) is fires


def test_link_mismatch_names_what_is_shown_and_where_it_goes():
    html = f"<p>{LONG}</p>" + "".join(f'<a href="https://evil{i}.example.net/">www.paypal.com</a>' for i in range(8))
    found = fired(mail(html=html))["content.link-mismatch"]
    assert found.summary.startswith("8 link(s) show one domain and go to another: www.paypal.com -> evil0.")
    assert found.evidence["links"].count("->") == 5  # the first five are named


@pytest.mark.parametrize(("url", "fires"), [
    ("https://bit.ly/x", True), ("http://www.bit.ly/x", True), ("https://tinyurl.com/y", True),
    ("https://t.co/abc", True), ("https://cutt.ly/q", True), ("https://bit.ly.example.com/x", False),
    ("https://t.com/abc", False), ("https://example.com/bit.ly", False),
])
def test_shortener(url, fires):
    assert ("content.shortener" in ids(mail(text=f"{TEXT}{url}\n"))) is fires


@pytest.mark.parametrize(("subject", "fires"), [
    ("FINAL NOTICE ABOUT YOUR ACCOUNT", True),
    ("URGENT: YOUR ACCOUNT IS LOCKED (2 days)", True),  # 87% capitals
    ("URGENT: Your invoice from March", False),  # half capitals
    ("NEW API", False),  # too few letters to shout
    ("ÜBERWEISUNG FÜR SIE BEREIT", True),
    ("请查看您的订单", False),  # no letter case at all
])
def test_subject_caps(subject, fires):
    assert ("content.subject-caps" in ids(mail(subject=subject))) is fires


@pytest.mark.parametrize(("subject", "phrases"), [
    ("Act now: 100% free upgrade", "act now, 100% free"),
    ("You've WON a cash prize", "you've won, cash prize"),
    ("\uff26\uff32\uff25\uff25 \uff2d\uff2f\uff2e\uff25\uff39 inside", "free money"),  # full-width letters
    ("free\u200b money", "free money"),  # a zero-width space does not hide it
    ("Winners of the design contest", None),  # 'winner' as a whole word only
    ("Cashier prizes", None),
])
def test_subject_phrases(subject, phrases):
    found = fired(mail(subject=subject)).get("content.subject-phrase")
    assert (found.evidence["phrases"] if found else None) == phrases


def test_an_encoded_subject_is_read_decoded():
    raw = raw_mail(b"Hello\r\n", subject="=?utf-8?b?" + __import__("base64").b64encode(b"Act now!").decode() + "?=")
    assert "content.subject-phrase" in ids(raw)


@pytest.mark.parametrize(("subject", "text", "fires"), [
    ("Big sale!!!", TEXT, True),
    ("Big! sale! now!", TEXT, True),
    ("Big sale!!", TEXT, False),
    ("Big sale", TEXT + "Wow!! Great!! Amazing!!\n", True),
    ("Big sale", TEXT + "Wow!! Great!!\n", False),
    ("Big sale", TEXT + "Wow! Great! Amazing! Thanks!\n", False),
])
def test_exclamation(subject, text, fires):
    assert ("content.exclamation" in ids(mail(text=text, subject=subject))) is fires


HIDDEN = {
    "zero font": ('<span style="font-size: 0">buy buy buy</span>', True),
    "1px font": ('<span style="font-size:1px">buy buy buy</span>', True),
    "0.05em font": ('<span style="font-size:.05em">buy buy buy</span>', True),
    "12px font": ('<span style="font-size:12px">buy buy buy</span>', False),
    "display none after text": ('<div style="color:red; DISPLAY: none !important">buy buy buy</div>', True),
    "visibility hidden": ('<p style="visibility:hidden">buy buy buy</p>', True),
    "opacity 0": ('<p style="opacity:0">buy buy buy</p>', True),
    "hidden attribute": ("<p hidden>buy buy buy</p>", True),
    "white on white": ('<p style="color:#FFF;background-color:#ffffff">buy buy buy</p>', True),
    "white on black": ('<p style="color:#fff;background:#000">buy buy buy</p>', False),
    "named colours": ('<font style="color:white; background-color:white">buy</font>', True),
    "empty spacer": ('<div style="display:none"></div>', False),
    "image only": ('<div style="display:none"><img src="cid:x"></div>', False),
    "nested elements": ('<div style="display:none"><div><p>buy</p></div> more</div>', True),
    "text after a nested close": ('<div style="display:none"><div></div>buy buy</div>', True),
}


@pytest.mark.parametrize(("snippet", "fires"), HIDDEN.values(), ids=HIDDEN.keys())
def test_hidden_text(snippet, fires):
    assert ("content.hidden-text" in ids(mail(html=f"<p>{LONG}</p>{snippet}"))) is fires


def test_hidden_text_reports_what_is_hidden():
    found = fired(mail(html=f'<p>{LONG}</p><div style="display:none"><b>secret</b> words</div>'))["content.hidden-text"]
    assert found.evidence["hidden"] == "display:none: secret words"


def test_a_short_preheader_before_the_content_is_allowed():
    preheader = '<div style="display:none;max-height:0;overflow:hidden">Your order ships today</div>'
    assert "content.hidden-text" not in ids(mail(html=f"<body>{preheader}<p>{LONG}</p></body>"))
    long_one = preheader.replace("Your order ships today", "x " * 100)
    assert "content.hidden-text" in ids(mail(html=f"<body>{long_one}<p>{LONG}</p></body>"))
    second = f"<body>{preheader}<p>{LONG}</p>{preheader}</body>"
    found = fired(mail(html=second))["content.hidden-text"]
    assert found.evidence["preheader"] == "Your order ships today"
    assert found.summary.startswith("1 HTML element(s)")


def test_hidden_text_in_a_style_sheet_class_is_not_seen():
    html = f"<style>.h{{display:none}}</style><p>{LONG}</p><p class='h'>buy buy buy</p>"
    assert "content.hidden-text" not in ids(mail(html=html))  # documented limit: inline styles only


PLAIN_8BIT = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\nContent-Type: text/plain"


@pytest.mark.parametrize(("headers", "body", "problem"), [
    (PLAIN_8BIT + "; charset=us-ascii\r\n", "Caf\u00e9".encode(), "declares charset=us-ascii but has 8-bit"),
    (PLAIN_8BIT + "\r\n", "Caf\u00e9".encode(), "no charset (so us-ascii) but has 8-bit"),
    (PLAIN_8BIT + "; charset=UTF-8\r\n", "Caf\u00e9".encode("latin-1"), "bytes are not UTF-8"),
    (PLAIN_8BIT + "; charset=utf-8\r\n", "Caf\u00e9".encode(), None),
    (PLAIN_8BIT + "; charset=iso-8859-1\r\n", "Caf\u00e9".encode("latin-1"), None),
    (PLAIN_8BIT + "; charset=us-ascii\r\n", b"Cafe", None),
    (PLAIN_8BIT.replace("plain", "html") + "; charset=iso-8859-1\r\n",
     '<meta charset="utf-8"><p>Caf\u00e9</p>'.encode("latin-1"), "in MIME but <meta charset=utf-8>"),
    (PLAIN_8BIT.replace("plain", "html") + "; charset=latin1\r\n",
     '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1"><p>Caf\u00e9</p>'.encode("latin-1"),
     None),  # the same charset under another name
    (PLAIN_8BIT.replace("plain", "html") + "; charset=iso-8859-1\r\n", b'<meta charset="utf-8"><p>Cafe</p>',
     None),  # contradicts, but 7-bit text reads the same either way
])
def test_charset(headers, body, problem):
    found = fired(raw_mail(body, headers)).get("content.charset")
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found.summary


@pytest.mark.parametrize(("name", "ctype", "rule"), [
    ("setup.exe", "application/octet-stream", "executable"),
    ("Invoice.PDF.exe", "application/pdf", "executable"),
    ("payload.exe. ", "application/octet-stream", "executable"),  # Windows drops trailing dots and spaces
    ("run.ps1", "text/plain", "executable"),
    ("script.js", "application/javascript", "executable"),
    ("tool", "application/x-msdownload", "executable"),  # by type, without an extension
    ("report.docm", "application/octet-stream", "macro"),
    ("data.json", "application/json", None),
    ("photo.jpg", "image/jpeg", None),
    ("exe", "application/octet-stream", None),
    ("exe.", "application/octet-stream", None),  # read as "exe", a name without an extension
])
def test_attachments(name, ctype, rule):
    found = {i for i in ids(mail(attachments=((name, ctype, b"data"),))) if i in ("content.executable",
                                                                                  "content.macro")}
    assert found == ({f"content.{rule}"} if rule else set())


@pytest.mark.parametrize(("name", "data", "fires"), [
    ("readme.txt", b"MZ\x90\x00\x03\x00", True),  # a program under a harmless name (sent base64)
    ("readme.txt", b"Mostly harmless", False),
    ("notes.txt", "MZ is how this note starts", True),  # the header as text (sent 7bit)
    ("notes.txt", "  The MZ header", False),
])
def test_an_attached_program_is_known_by_its_bytes(name, data, fires):
    if isinstance(data, str):
        msg = EmailMessage()
        msg["From"] = "orders@example.com"
        msg.set_content(TEXT)
        msg.add_attachment(data, filename=name)
        raw = msg.as_bytes()
    else:
        raw = mail(attachments=((name, "application/octet-stream", data),))
    found = fired(raw).get("content.executable")
    assert (found is not None) is fires
    if fires:
        assert found.evidence["attachments"].endswith("; its bytes are a Windows program)")


def test_an_executable_fails_and_names_the_file():
    found = fired(mail(attachments=(("invoice.pdf.scr", "application/octet-stream", b"x"),)))["content.executable"]
    assert found.level is Level.FAIL and found.points == 5.0
    assert found.evidence["attachments"] == "invoice.pdf.scr (application/octet-stream)"


def test_an_attachment_name_is_shown_escaped():
    found = fired(mail(attachments=(("a\x1b[31m.exe", "application/octet-stream", b"MZ"),)))["content.executable"]
    assert "\x1b" not in found.summary and "\x1b" not in found.evidence["attachments"]


@pytest.mark.parametrize(("size", "fires"), [(10 * 1024 * 1024 + 1, True), (9 * 1024 * 1024, False)])
def test_size(size, fires):
    head = raw_mail(b"", "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n")
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    raw = head + body + b"y" * (size - len(head) - len(body))
    assert len(raw) == size
    found = fired(raw).get("content.size")
    assert (found is not None) is fires
    if fires:
        assert found.summary.startswith("The message is 10.0 MB")


@pytest.mark.parametrize(("headers", "fires"), [
    ("Content-Type: multipart/mixed; boundary=x\r\n", True),
    ("Content-Transfer-Encoding: base64\r\n", True),
    ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n", False),
    ("", False),  # RFC 5322 mail with no MIME at all
])
def test_mime_version(headers, fires):
    assert ("content.mime-version" in ids(raw_mail(b"Hello\r\n", headers))) is fires


def test_many_rules_fire_together_and_add_up():
    html = ('<p>Hi <a href="https://evil.example.net/">www.paypal.com</a> <a href="https://bit.ly/x">go</a>'
            '<span style="font-size:0">filler words</span><img src="cid:x"></p>')
    raw = mail(text=None, html=html, subject="FREE MONEY FOR YOU NOW!!!",
               attachments=(("x.exe", "application/octet-stream", b"MZ"),))
    found = fired(raw)
    assert set(found) == {"content.html-only", "content.image-only", "content.link-mismatch", "content.shortener",
                          "content.subject-caps", "content.subject-phrase", "content.exclamation",
                          "content.hidden-text", "content.executable"}
    assert sum(r.points for r in found.values()) == pytest.approx(0.5 + 1.5 + 2.5 + 1 + 1 + 1 + 0.5 + 1 + 5)


# --- external filters --------------------------------------------------------------------------------------


def test_an_external_score_below_its_threshold_is_information():
    score = ExternalScore("rspamd", 1.7, 15.0, "no action",
                          [("R_SPF_ALLOW", -0.2, "SPF verification allows sending"),
                           ("HFILTER_HOSTNAME_UNKNOWN", 2.5, "Unknown client hostname"),
                           ("FROM_HAS_DN", 0.0, "From header has a display name")], version="3.4")
    (result,) = external_results([score])
    assert (result.id, result.level, result.points, result.fix) == ("content.rspamd", Level.INFO, 0.0, None)
    assert result.summary == "From rspamd 3.4: score 1.70, threshold 15, action: no action"
    assert result.evidence["rules"] == ("HFILTER_HOSTNAME_UNKNOWN (+2.50) Unknown client hostname, "
                                        "R_SPF_ALLOW (-0.20) SPF verification allows sending")  # by weight; 0 dropped
    assert result.evidence["rule-count"] == "3"


@pytest.mark.parametrize(("score", "threshold", "action"), [
    (16.0, 15.0, "reject"),  # over the threshold
    (7.0, 15.0, "add header"),  # under reject, but rspamd would still act on it
    (5.2, 5.0, "spam"),
])
def test_an_external_score_that_would_act_is_a_warning(score, threshold, action):
    (result,) = external_results([ExternalScore("spamassassin", score, threshold, action, [])])
    assert result.id == "content.spamassassin" and result.level is Level.WARN and result.points == 0.0
    assert result.summary.startswith("From SpamAssassin: score") and "would treat it as spam" in result.summary
    assert result.fix


def test_external_results_take_any_object_with_the_fields():
    other = SimpleNamespace(tool="rspamd", score=3, threshold=None, action=None, rules=[("X", 3, "")])
    (result,) = external_results([other])
    assert result.level is Level.INFO and result.summary == "From rspamd: score 3.00"
    assert external_results([]) == []


def test_an_external_score_is_shown_escaped():
    hostile = ExternalScore("rspamd", 1.0, 15.0, "no action", [("\x1b]52;c;AAAA\x07", 1.0, "\x1b[2J")])
    (result,) = external_results([hostile])
    assert "\x1b" not in result.evidence["rules"]


# --- hostile mail ------------------------------------------------------------------------------------------


def _deep(depth: int) -> bytes:
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth))
    return raw_mail(b"", "MIME-Version: 1.0\r\n" + head + "Content-Type: text/html\r\n") + b"<b>x</b>\r\n"


HOSTILE = {
    "100 KB line": raw_mail(b"x" * 100_000 + b"\r\n"),
    "100 KB subject": raw_mail(b"Hello\r\n", subject="A" * 100_000),
    "10,000 headers": raw_mail(b"Hello\r\n", "".join(f"X-H{i}: v\r\n" for i in range(10_000))),
    "deep MIME": _deep(1000),
    "20,000 unclosed tags": mail(text=None, html="<a " * 20_000),
    "10,000 hidden spans": mail(text=None, html='<span style="display:none">x</span>' * 10_000),
    "unclosed hidden elements": mail(text=None, html='<div style="display:none">x<div>' * 10_000),
    "2,000 attachments": mail(attachments=tuple((f"f{i}.exe", "application/octet-stream", b"MZ")
                                                for i in range(2000))),
    "20,000 links": mail(html="".join(f'<a href="https://bit.ly/{i}">www.paypal.com</a>' for i in range(20_000))),
    "100 KB anchor text": mail(html='<a href="https://x.example/">' + "www." * 25_000 + "paypal.com</a>"),
    "100 KB style": mail(html='<p style="' + "color:red;" * 10_000 + '">x</p>'),
    "100 KB meta": mail(text=None, html="<meta " + "charset" * 15_000 + "=x>"),
    "binary garbage": bytes(range(256)) * 400,
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_mail_never_raises_or_stalls(raw):
    start = time.perf_counter()
    results = run(raw)
    assert results and all(r.id.startswith("content.") for r in results)
    assert time.perf_counter() - start < 3.0
    assert all(len(str(v)) < 5000 for r in results for v in r.evidence.values())
