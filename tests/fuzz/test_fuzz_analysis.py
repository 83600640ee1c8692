"""Fuzz target: message analysis (analyse, ParsedMessage, the MIME view) on hostile and broken mail.

Two kinds of input: raw bytes, and structured messages built from header fields with random names and
values (CR/LF/NUL, 8-bit, RFC 2047 words, very long values), MIME trees with random, missing or duplicate
boundaries, random transfer encodings and charsets, DKIM-Signature and ARC fields with random tag lists,
real DKIM signatures over mutated messages, and random envelopes. The analysis must never raise, every
check must complete (a `<family>.error` result is a crashed check), and the verdict must be storable.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime

import dkim
import pytest
from fuzzsupport import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from support import key

from lab.core import mime
from lab.core.analyse import analyse
from lab.core.message import ParsedMessage, decode_words, parse_mailboxes
from lab.core.model import Capture, Client, Envelope, Listener, Transport
from lab.core.results import Verdict

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(900)]  # shrinking a failure can outlast the default 120 s


# names the zone fixtures give meaning to, so SPF/DKIM/DMARC get past "none"
DOMAINS = ("example.com", "example.org", "mail.example.com", "strict.example.com", "news.example.com",
           "bounce.example.com", "neutral.test", "permerror.test", "badmech.test", "twospf.test", "lookups.test",
           "quarantine.test", "twodmarc.test", "baddmarc.test", "npdomain.test", "exists.npdomain.test",
           "none.test", "sub.example.com", "example.net", "xn--bcher-kva.example", "EXAMPLE.COM.", "localhost",
           "", "[192.0.2.10]", "[IPv6:2001:db8::1]", "a..b", "-bad-.example")
SELECTORS = ("rsa2048", "ed", "short", "revoked", "s1", "missing", "", "a.b", "rsa2048.", "_x")
FIELD_NAMES = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "Sender", "Return-Path",
               "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
               "DKIM-Signature", "ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results",
               "Authentication-Results", "Received", "Received-SPF", "List-Unsubscribe", "List-Unsubscribe-Post",
               "List-Id", "Precedence", "Auto-Submitted", "X-Mailer", "In-Reply-To", "References", "Bcc",
               "Resent-From", "Delivered-To", "Feedback-ID", "X-Spam", "from", "FROM", "subject")
COMMON_CHARSETS = ("utf-8", "UTF-8", "us-ascii", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "euc-jp",
                   "gb2312", "utf-16", "utf-32", "iso-2022-jp", "cp1252", "utf_8_sig")
# names Python's codec registry resolves to something that is not a plain text charset, or cannot resolve
ODD_CHARSETS = ("utf-7", "unicode_escape", "raw_unicode_escape", "rot13", "idna", "punycode", "base64", "hex", "hz",
                "zlib", "uu", "quopri", "bogus", "", "utf-8*en", "x-unknown", "mbcs", "undefined", "charmap",
                "utf-8\x00", "\x00", "utf-16-be", "cp65001", "unknown-8bit", "x-user-defined")
CHARSET = st.one_of(st.sampled_from(COMMON_CHARSETS), st.sampled_from(ODD_CHARSETS), st.text(max_size=10))
ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64", "x-uuencode", "uuencode", "BASE64", "", "bogus",
             "base64; x=y", " quoted-printable ", "7bit (comment)")
CONTENT_TYPES = ("text/plain", "text/html", "application/octet-stream", "image/png", "message/rfc822",
                 "message/delivery-status", "text/calendar", "application/pdf", "text", "/", "multipart/mixed",
                 "TEXT/PLAIN", "text/plain/extra", "x-weird/thing")
MULTIPART = ("multipart/mixed", "multipart/alternative", "multipart/related", "multipart/signed",
             "multipart/report", "multipart/digest", "MULTIPART/MIXED", "multipart/")

# -- text pieces ------------------------------------------------------------------------------------------

CONTROLS = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\t", " ", "\r\n ", "\r\n\t", "\n ", "\x0b", "\x0c",
                            "\x1b[31m", "\u202e", "\u200b", "\x85", "\u2028", "\ufeff", ";", ":", "<", ">", "\"",
                            "\\", "(", ")", ",", "@", "=?", "?=", "\r\n\r\n", "\r\r\n", "\n.\n", "\r\n.\r\n"])
WORDS = st.text(alphabet=string.ascii_letters + string.digits + "-._+", min_size=0, max_size=12)
UNICODE = st.text(max_size=20)


@st.composite
def encoded_word(draw) -> str:
    charset = draw(CHARSET)
    enc = draw(st.sampled_from(["B", "Q", "b", "q", "X", ""]))
    payload = draw(st.one_of(
        UNICODE.map(lambda t: base64.b64encode(t.encode("utf-8", "surrogatepass")).decode()),
        st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=24).map(lambda b: "".join(f"={c:02X}" if c > 126 or c < 33 else chr(c) for c in b)),
        st.text(alphabet=string.printable, max_size=20),
        st.sampled_from(["=5Cud800", "=5CU0010ffff", "=5Cx", "===", "=", "=ZZ", "_", "?", "AAAA", "A", "=FF"]),
    ))
    lang = draw(st.sampled_from(["", "", "*en", "*"]))
    return f"=?{charset}{lang}?{enc}?{payload}?="


TOKEN = st.one_of(WORDS, UNICODE, CONTROLS, encoded_word(), st.sampled_from(DOMAINS),
                  st.integers(0, 3000).map(lambda n: "x" * n))


@st.composite
def address(draw) -> str:
    local = draw(st.one_of(WORDS, st.sampled_from(["postmaster", "noreply", "no-reply", "alice", "bob", "", "\"a b\"",
                                                   "a.", ".a", "a..b", "admin", "mailer-daemon", "ünïcode"]),
                           UNICODE))
    domain = draw(st.sampled_from(DOMAINS) | WORDS)
    shape = draw(st.integers(0, 3))
    if shape == 0:
        return f"{local}@{domain}"
    if shape == 1:
        return local
    if shape == 2:
        return f"{local}@{domain}@{draw(st.sampled_from(DOMAINS))}"
    return draw(TOKEN)


@st.composite
def mailbox_list(draw) -> str:
    boxes = []
    for _ in range(draw(st.integers(0, 3))):
        addr = draw(address())
        shape = draw(st.integers(0, 4))
        name = draw(st.one_of(WORDS, UNICODE, encoded_word(), st.sampled_from(["\"Bank, Inc\"", "paypal.com",
                                                                                "alice@example.org", "\"\\\"\""])))
        boxes.append([addr, f"<{addr}>", f"{name} <{addr}>", f"{addr} ({name})", f"grp: {addr}, {name};"][shape])
    sep = draw(st.sampled_from([", ", ",", "; ", " ", "\r\n , "]))
    return sep.join(boxes) or draw(st.sampled_from(["", "undisclosed-recipients:;", "<>", "@", "<@>"]))


@st.composite
def date_value(draw) -> str:
    when = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    sign = draw(st.sampled_from("+-"))
    offset = draw(st.sampled_from(["0000", "2359", "9999", "0530", "-000", "UT", "GMT", "EST", "Z", "XYZ", ""]))
    day = draw(st.sampled_from(["Mon, ", "", "Xyz, "]))
    formats = [
        f"{day}{when:%d %b %Y %H:%M:%S} {sign}{offset}",
        f"{when:%d %b %y %H:%M} {offset}",
        when.isoformat(),
        f"{day}{when.day} {when:%b} {draw(st.integers(-10, 100000))} 25:61:61 {sign}{offset}",
    ]
    return draw(st.sampled_from(formats) | TOKEN)


@st.composite
def tag_list(draw, tags: dict) -> str:
    """A `tag=value; ...` list: known tags with plausible or random values, some dropped, some repeated."""
    parts = []
    for name, values in tags.items():
        if draw(st.integers(0, 9)) == 0:
            continue
        value = draw(st.sampled_from(values) | TOKEN)
        parts.append(f"{name}={value}")
    parts += [f"{draw(WORDS)}={draw(TOKEN)}" for _ in range(draw(st.integers(0, 2)))]
    parts = draw(st.permutations(parts))
    if parts and draw(st.booleans()):
        parts.append(draw(st.sampled_from(parts)))  # a repeated tag
    sep = draw(st.sampled_from(["; ", ";", ";\r\n\t", " ; ", ";;"]))
    return sep.join(parts)


B64 = ("", "AAAA", "=", "not base64!", base64.b64encode(b"\0" * 256).decode(), "dGVzdA==", "a" * 999)
DKIM_TAGS = {
    "v": ("1", "2", ""),
    "a": ("rsa-sha256", "ed25519-sha256", "rsa-sha1", "hmac-sha256", "rsa-", "-sha256", ""),
    "b": B64,
    "bh": B64 + ("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",),
    "c": ("relaxed/relaxed", "simple/simple", "relaxed", "simple", "relaxed/", "/simple", "bogus/x"),
    "d": DOMAINS,
    "s": SELECTORS,
    "h": ("from:to:subject", "From", "to", "from:from:from", "", ":", "from : subject : date", "dkim-signature:from"),
    "i": ("@example.com", "alice@example.com", "@other.example", "@", "x"),
    "l": ("0", "1", "-1", "99999999999999999999", "abc", "10", ""),
    "q": ("dns/txt", "dns", "http", ""),
    "t": ("0", "1", "99999999999", "-5", "1e3", "9" * 40, ""),
    "x": ("0", "1", "99999999999", "-5", "9" * 40, ""),
    "z": ("From:a|To:b", "||", ""),
}
ARC_TAGS = {
    "i": ("1", "2", "0", "51", "-1", "x", ""),
    "cv": ("none", "pass", "fail", "bogus", ""),
    "a": DKIM_TAGS["a"], "b": B64, "bh": DKIM_TAGS["bh"], "d": DOMAINS, "s": SELECTORS, "h": DKIM_TAGS["h"],
    "c": DKIM_TAGS["c"], "t": DKIM_TAGS["t"],
}


@st.composite
def header_value(draw, name: str) -> str:
    lname = name.lower()
    if lname in ("from", "to", "cc", "reply-to", "sender", "bcc", "resent-from") and draw(st.integers(0, 3)):
        return draw(mailbox_list())
    if lname == "date" and draw(st.integers(0, 3)):
        return draw(date_value())
    if lname == "dkim-signature" and draw(st.integers(0, 4)):
        return draw(tag_list(DKIM_TAGS))
    if lname in ("arc-seal", "arc-message-signature") and draw(st.integers(0, 3)):
        return draw(tag_list(ARC_TAGS))
    if lname in ("arc-authentication-results", "authentication-results") and draw(st.booleans()):
        instance, domain = draw(st.sampled_from(ARC_TAGS["i"])), draw(st.sampled_from(DOMAINS))
        return f"i={instance}; {domain}; spf=pass; dkim={draw(TOKEN)}"
    if lname == "return-path" and draw(st.booleans()):
        return f"<{draw(address())}>"
    if lname == "message-id" and draw(st.booleans()):
        return f"<{draw(WORDS)}@{draw(st.sampled_from(DOMAINS))}>"
    if lname == "list-unsubscribe" and draw(st.booleans()):
        return draw(st.sampled_from(["<mailto:u@example.com>", "<https://example.com/u>", "<http://x>, <mailto:>",
                                     "https://no-brackets", "<>"]))
    return "".join(draw(st.lists(TOKEN, max_size=6)))


@st.composite
def header_field(draw) -> bytes:
    name = draw(st.one_of(
        st.sampled_from(FIELD_NAMES),
        st.tuples(st.sampled_from(FIELD_NAMES), st.sampled_from([" ", "\t", "x", ""])).map("".join),
        st.text(alphabet=string.ascii_letters + "-_", min_size=1, max_size=20),
        st.text(max_size=8),
    ))
    value = draw(header_value(name))
    sep = draw(st.sampled_from([": ", ":", " : ", ":\r\n ", ":\t"]))
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""]))
    line = (name + sep + value).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 6)) == 0:
        line = _insert(line, draw(st.binary(min_size=1, max_size=6)), draw(st.integers(0, 10_000)))
    return line + end


def _insert(data: bytes, piece: bytes, at: int) -> bytes:
    at = at % (len(data) + 1)
    return data[:at] + piece + data[at:]


def content_headers(draw, ctype: str, boundary: str | None) -> list[bytes]:
    params = ""
    if boundary is not None:
        quoted = draw(st.booleans())
        params += f'; boundary="{boundary}"' if quoted else f"; boundary={boundary}"
        if draw(st.integers(0, 5)) == 0:  # a second, different boundary parameter
            params += f"; boundary={draw(WORDS)}"
    if draw(st.booleans()):
        params += f"; charset={draw(CHARSET)}"
    if draw(st.integers(0, 4)) == 0:
        params += f'; name="{draw(TOKEN)}"'
    out = [f"Content-Type: {ctype}{params}\r\n".encode("utf-8", "surrogatepass")]
    if draw(st.booleans()):
        out.append(f"Content-Transfer-Encoding: {draw(st.sampled_from(ENCODINGS))}\r\n".encode())
    if draw(st.integers(0, 3)) == 0:
        disp = draw(st.sampled_from(["attachment", "inline", "bogus", ""]))
        out.append(f'Content-Disposition: {disp}; filename="{draw(TOKEN)}"\r\n'.encode("utf-8", "surrogatepass"))
    return out


@st.composite
def leaf_body(draw) -> bytes:
    text = draw(st.one_of(
        st.binary(max_size=300),
        UNICODE.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"<html><body><a href='https://x.example/'>x</a><img src=http://t/p.gif></body></html>",
                         b"<p>unclosed <script>alert(1)", b"=3D=\r\n=ZZ=", b"AAAA====\r\n!!!!",
                         b"begin 644 x\r\n`\r\nend",
                         b"https://example.com/a https://example.com/a", b"\r\n.\r\n", b".\r\n..\r\n"]),
        st.binary(max_size=120).map(lambda b: base64.encodebytes(b)),
        st.integers(0, 20_000).map(lambda n: b"y" * n),
    ))
    if draw(st.booleans()):
        text = text.replace(b"\n", b"\r\n")
    return text


@st.composite
def mime_part(draw, depth: int) -> bytes:
    if depth > 0 and draw(st.integers(0, 2)) == 0:
        ctype = draw(st.sampled_from(MULTIPART))
        boundary = draw(st.one_of(WORDS, st.text(max_size=80), st.sampled_from(["", "=_b", "a" * 71, "--", " x "])))
        children = draw(st.lists(mime_part(depth - 1), max_size=4))
        headers = content_headers(draw, ctype, draw(st.sampled_from([boundary, boundary, None])))
        used = draw(st.sampled_from([boundary, boundary, boundary, draw(WORDS)])).encode("utf-8", "surrogatepass")
        body = draw(st.sampled_from([b"", b"preamble\r\n"]))
        for child in children:
            body += b"--" + used + draw(st.sampled_from([b"\r\n", b"\n", b" \r\n", b"--\r\n"])) + child + b"\r\n"
        if draw(st.integers(0, 3)):  # sometimes never closed
            body += b"--" + used + b"--\r\n"
        if draw(st.integers(0, 4)) == 0:
            body += b"epilogue --" + used + b"--\r\n"
        return b"".join(headers) + b"\r\n" + body
    ctype = draw(st.sampled_from(CONTENT_TYPES))
    headers = content_headers(draw, ctype, None)
    if ctype == "message/rfc822" and depth > 0:
        return b"".join(headers) + b"\r\n" + draw(structured_message(depth - 1))
    return b"".join(headers) + b"\r\n" + draw(leaf_body())


@st.composite
def structured_message(draw, depth: int = 3) -> bytes:
    fields = draw(st.lists(header_field(), max_size=14))
    if draw(st.integers(0, 3)):
        fields.append(b"MIME-Version: 1.0\r\n")
    body = draw(mime_part(depth))  # carries its own Content-* fields, then the blank line
    raw = b"".join(fields) + body
    if draw(st.integers(0, 5)) == 0:
        raw = raw.replace(b"\r\n", draw(st.sampled_from([b"\n", b"\r", b"\n\r"])))
    return raw


@st.composite
def signed_message(draw) -> bytes:
    """A real dkimpy signature over a message, often mutated afterwards: deep verification paths."""
    domain, selector, keyfile = draw(st.sampled_from([
        ("example.com", "rsa2048", "example.com.rsa2048.pem"), ("example.com", "ed", "example.com.ed.ed25519"),
        ("example.com", "short", "example.com.short.pem"), ("example.org", "s1", "example.org.s1.pem"),
        ("example.com", "revoked", "example.com.rsa2048.pem"), ("example.com", "s1", "example.org.s1.pem"),
    ]))
    base = draw(structured_message(2))
    base = b"From: a@" + domain.encode() + b"\r\n" + base if draw(st.booleans()) else base
    priv = key(keyfile)
    kwargs = {}
    if keyfile.endswith(".ed25519"):
        priv, kwargs["signature_algorithm"] = priv.strip(), b"ed25519-sha256"
    canon = draw(st.sampled_from([(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")]))
    try:
        sig = dkim.sign(base, selector.encode(), domain.encode(), priv, canonicalize=canon,
                        include_headers=draw(st.sampled_from([None, [b"from"], [b"from", b"subject", b"x-none"]])),
                        length=draw(st.booleans()), **kwargs)
    except Exception:  # noqa: BLE001 - dkimpy refuses some inputs; then the raw input is still fuzz
        sig = b""
    raw = sig + base
    mutation = draw(st.integers(0, 5))
    if mutation == 1:
        raw = raw + draw(st.binary(min_size=1, max_size=40))
    elif mutation == 2:
        raw = _insert(raw, draw(st.binary(min_size=1, max_size=8)), draw(st.integers(0, 100_000)))
    elif mutation == 3:
        raw = draw(header_field()) + raw
    elif mutation == 4:
        raw = raw.replace(b"\r\n", b"\n")
    return raw


@st.composite
def capture(draw, raw_strategy) -> Capture:
    raw = draw(raw_strategy)
    ip = draw(st.one_of(
        st.ip_addresses().map(str),
        st.sampled_from(["192.0.2.10", "192.0.2.20", "203.0.113.5", "2001:db8::1", "127.0.0.1", "::1",
                         "::ffff:192.0.2.10", "fe80::1%eth0", "0.0.0.0", "not-an-ip", ""]),
    ))
    helo = draw(st.one_of(st.none(), st.sampled_from(DOMAINS), TOKEN, st.ip_addresses().map(lambda a: f"[{a}]")))
    mail_from = draw(st.one_of(address(), st.just(""), TOKEN))
    listener = draw(st.sampled_from(list(Listener)))
    tls = draw(st.booleans())
    auth = draw(st.one_of(st.none(), TOKEN))
    when = draw(st.one_of(st.just(datetime.now(UTC)),
                          st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1),
                                       timezones=st.just(UTC)),
                          st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))))
    return Capture(
        raw=raw,
        envelope=Envelope(mail_from=mail_from, rcpt_to=tuple(draw(st.lists(address(), max_size=3))), helo=helo,
                          mail_options=tuple(draw(st.lists(TOKEN, max_size=2))), smtputf8=draw(st.booleans())),
        transport=Transport(listener, draw(st.sampled_from([None, 25, 587, 465, 2525, 0])),
                            "TLSv1.3" if tls else None, "TLS_AES_256_GCM_SHA384" if tls else None,
                            draw(st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5"])) if auth is not None else None, auth),
        client=Client(ip=ip, peer_ip=draw(st.sampled_from([None, "127.0.0.1", ip])),
                      name=draw(st.one_of(st.none(), st.sampled_from(DOMAINS), TOKEN)),
                      source=draw(st.sampled_from(["peer", "xclient", "configured", "cli"]))),
        received_at=when,
    )


RAW_BYTES = st.binary(max_size=4000)
MESSAGES = st.one_of(RAW_BYTES, structured_message(), signed_message())

# -- properties -------------------------------------------------------------------------------------------


def assert_sound(verdict: Verdict) -> None:
    assert isinstance(verdict, Verdict)
    ids = [c.id for c in verdict.checks]
    assert len(ids) == len(set(ids)), f"repeated check ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    crashed = [(c.id, c.summary, c.evidence.get("location")) for c in verdict.checks
               if c.id.partition("#")[0].endswith(".error")]
    assert not crashed, f"a check crashed: {crashed}"
    for c in verdict.checks:
        assert isinstance(c.summary, str), (c.id, c.summary)
        for k, v in c.evidence.items():
            assert isinstance(k, str) and isinstance(v, str), (c.id, k, v)
    ar = verdict.authentication_results
    assert isinstance(ar, str) and "\r" not in ar and "\n" not in ar, ar
    assert all(isinstance(v, str) for v in verdict.headers.values()), verdict.headers
    # the store keeps the verdict as JSON and the list fields as SQLite TEXT (UTF-8): every string must encode
    text = json.dumps(verdict.to_dict(), ensure_ascii=False)
    text.encode("utf-8")
    assert Verdict.from_dict(json.loads(text)) == verdict


@fuzz_settings("analysis", 500)
@given(capture(MESSAGES))
def test_analyse_never_raises_and_every_check_completes(view, cap):
    assert_sound(analyse(cap, view))


@fuzz_settings("mime", 300)
@given(MESSAGES)
def test_parsed_message_and_mime_view_never_raise(raw):
    msg = ParsedMessage(raw)
    assert isinstance(msg.problems, list)
    for h in msg.headers:
        assert isinstance(h.name, str) and isinstance(h.value, str)
    msg.from_mailboxes, msg.from_mailbox, msg.summary()  # noqa: B018 - evaluated for exceptions
    for name in ("from", "to", "subject", "date", "dkim-signature"):
        msg.first(name), msg.get_all(name), msg.count(name)  # noqa: B018
    part = mime.tree(raw)
    assert part.path == "message"
    stack = [part]
    while stack:
        p = stack.pop()
        assert p.size >= 0
        stack.extend(p.children)
    readable = mime.readable(raw)
    assert isinstance(readable.text, str) and all(isinstance(u, str) for u in readable.links)
    for path in ("1", "2.1", "x"):
        found = mime.find(raw, path)
        if found is not None:
            assert isinstance(mime.text_of(found), str)


@fuzz_settings("decode", 400)
@given(st.one_of(TOKEN, st.lists(TOKEN, max_size=8).map("".join), mailbox_list()))
def test_header_decoding_never_raises(text):
    assert isinstance(decode_words(text), str)
    for box in parse_mailboxes(text):
        assert "@" in box.address
        box.domain, box.local_part  # noqa: B018

