"""Provides the hostile corpus: generated broken and malicious messages, and the real ones in ../shared/data/eml.

`generated()` builds every variant from scratch (name -> bytes), so it always runs; `shared()` loads every file
under the shared eml folder (name -> bytes) and is empty when that folder is absent. Nothing here is fixed to
a clock or a random seed that changes, so a failure names a message that can be rebuilt exactly.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

SHARED_EML = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eml"

OSC52 = "\x1b]52;c;cHduZWQ=\x07"  # a clipboard write: "pwned"
OSC52_ST = "\x1b]52;c;cHduZWQ=\x1b\\"  # the same, terminated by ST instead of BEL
CSI_MOVES = "\x1b[2J\x1b[H\x1b[10A\x1b[999;1H\x1b[?1049h"  # clear, home, up, jump, alternate screen
C1_CSI = "\u009b31m"  # the 8-bit CSI, as UTF-8
BIDI = "\u202egnp.exe\u202c \u2066iso\u2069 \u200bzero\u200dwidth\ufeff"
TITLE = "\x1b]0;owned title\x07"

_DATE = "Thu, 26 Nov 2026 19:51:04 +0000"


def _msg(headers: str = "", body: str | bytes = "Hello.\r\n", *, from_: str | None = "Alice <alice@example.com>",
         subject: str | None = "test", date: str | None = _DATE, msgid: str | None = "<1@example.com>",
         to: str | None = "bob@example.net", mime: str | None = "MIME-Version: 1.0\r\n") -> bytes:
    """A CRLF message; None leaves a field out; `headers` are extra lines (CRLF-terminated)."""
    head = ""
    for name, value in (("From", from_), ("To", to), ("Subject", subject), ("Date", date), ("Message-ID", msgid)):
        if value is not None:
            head += f"{name}: {value}\r\n"
    head += (mime or "") + headers
    raw_body = body if isinstance(body, bytes) else body.encode("utf-8", "surrogateescape")
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + raw_body


def _multipart(parts: list[bytes], boundary: str = "b0", close: bool = True, ctype: str = "mixed") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    if close:
        body += b"--" + boundary.encode() + b"--\r\n"
    return _msg(f'Content-Type: multipart/{ctype}; boundary="{boundary}"\r\n', body)


def _text_part(text: str, extra: str = "", ctype: str = "text/plain; charset=utf-8") -> bytes:
    return f"Content-Type: {ctype}\r\n{extra}\r\n{text}".encode("utf-8", "surrogateescape")


# ---- the variants -----------------------------------------------------------------------------------------


def _nul() -> dict[str, bytes]:
    return {
        "nul-in-header-and-body": _msg(subject="before\x00after", body="line\x00one\r\n\x00\r\n"),
        "nul-in-header-name": b"Sub\x00ject: x\r\n" + _msg(),
        "nul-only": b"\x00" * 4096,
        "nul-terminated-lines": _msg().replace(b"\r\n", b"\x00\r\n"),
    }


def _line_endings() -> dict[str, bytes]:
    body = "one\r\n.\r\ndot line above\r\n..two dots\r\n.\r\n\r\nend\r\n"
    crlf = _msg(body=body, subject="line endings")
    return {
        "bare-lf": crlf.replace(b"\r\n", b"\n"),
        "bare-cr": crlf.replace(b"\r\n", b"\r"),
        "mixed-endings": _msg(subject="mixed\rstill subject", body="a\nb\rc\r\n\n.\n\r.\r\n\r\r\nend\n"),
        "smuggling-lf-dot-lf": _msg(body="x\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<v@example.net>\r\nDATA\r\n"
                                         "From: evil@example.org\r\n\r\nsmuggled\r\n"),
        "header-ends-lf-lf": b"From: a@example.com\r\nSubject: x\n\nbody\r\n",
        "only-cr": b"\r" * 5000,
        "only-lf": b"\n" * 5000,
        "no-final-newline": _msg(body="no newline at the end"),
    }


def _long_lines() -> dict[str, bytes]:
    k100 = 100 * 1024
    return {
        "long-subject-100k": _msg(subject="S" * k100),
        "long-body-line-100k": _msg(body="B" * k100 + "\r\n"),
        "long-header-name-100k": _msg(headers="X" * k100 + ": value\r\n"),
        "long-from-name-100k": _msg(from_='"' + "a" * k100 + '" <alice@example.com>'),
        "long-from-unquoted-100k": _msg(from_="a" * k100 + " <alice@example.com>"),
        "long-from-dotted-100k": _msg(from_="a." * (k100 // 2) + "com <alice@example.com>"),
        "long-from-atsigns-100k": _msg(from_="a@" * (k100 // 2) + " <alice@example.com>"),
        "long-from-angles-100k": _msg(from_="<" * k100 + "alice@example.com"),
        "long-from-quotes-100k": _msg(from_='"' * k100 + " <alice@example.com>"),
        "long-from-parens-100k": _msg(from_="(" * k100 + "alice@example.com"),
        "long-msgid-100k": _msg(msgid="<" + "m" * k100 + "@example.com>"),
        "long-date-100k": _msg(date="Thu, 26 Nov 2026 " + "1" * k100),
        "long-to-10000-addresses": _msg(to=", ".join(f"u{i}@example.net" for i in range(10_000))),
        "no-line-ending-100k": b"X" * k100,
        "long-whitespace-line-100k": _msg(body=" \t" * (k100 // 2) + "\r\n"),
        "long-fold-10000-continuations": _msg(headers="X-Fold: start\r\n" + " x\r\n" * 10_000),
        "long-fold-100k-blank-continuations": _msg(headers="X-Fold: start\r\n" + " \r\n" * 50_000),
    }


def _many_headers() -> dict[str, bytes]:
    many = "".join(f"X-Header-{i}: value {i}\r\n" for i in range(10_000))
    return {
        "headers-10000": _msg(headers=many),
        "headers-10000-received": _msg(headers="".join(f"Received: from h{i}.example.com by mx.example.net; {_DATE}\r\n"
                                                       for i in range(10_000))),
        "headers-10000-from": _msg(from_=None, headers="From: Alice <alice@example.com>\r\n" * 10_000),
        "headers-10000-date-msgid": _msg(date=None, msgid=None,
                                         headers=f"Date: {_DATE}\r\nMessage-ID: <x@example.com>\r\n" * 5_000),
        "headers-10000-reply-to": _msg(headers="Reply-To: Eve <eve@evil.example>\r\n" * 10_000),
        "headers-10000-subject-encoded": _msg(headers="Subject: =?utf-8?q?hi?=\r\n" * 10_000),
        "headers-10000-no-colon": _msg(headers="this is not a header\r\n" * 10_000),
        "headers-10000-content-type": _msg(headers="Content-Type: text/plain; charset=x\r\n" * 10_000),
        "headers-1000-dkim-signature": _msg(headers="".join(
            f"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=nokey{i}; h=from:to; bh=AAAA; b=AAAA\r\n"
            for i in range(1000))),
        "headers-1000-arc": _msg(headers="".join(
            f"ARC-Seal: i={i}; a=rsa-sha256; cv=none; d=example.com; s=x; b=AAAA\r\n"
            f"ARC-Message-Signature: i={i}; a=rsa-sha256; d=example.com; s=x; h=from; bh=AAAA; b=AAAA\r\n"
            f"ARC-Authentication-Results: i={i}; mx.example.net; spf=pass\r\n" for i in range(1, 334))),
    }


def _nested_multipart(depth: int) -> bytes:
    inner = _text_part("the bottom\r\n")
    for i in range(depth, 1, -1):
        inner = (f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n'.encode() + inner
                 + f"\r\n--n{i}--\r\n".encode())
    return _msg('Content-Type: multipart/mixed; boundary="n1"\r\n', b"--n1\r\n" + inner + b"\r\n--n1--\r\n")


def _nested_rfc822(depth: int) -> bytes:
    inner = _msg(body="the bottom\r\n")
    for _ in range(depth):
        inner = _msg("Content-Type: message/rfc822\r\n", inner)
    return inner


def _nesting() -> dict[str, bytes]:
    depth = 1000
    unclosed = b"".join(f'--u{i}\r\nContent-Type: multipart/mixed; boundary="u{i + 1}"\r\n\r\n'.encode()
                        for i in range(depth))
    deep = _nested_multipart(depth)
    rfc822 = _nested_rfc822(depth)
    return {
        "nesting-1000-multipart": deep,
        "nesting-1000-rfc822": rfc822,
        "nesting-1000-unclosed": _msg('Content-Type: multipart/mixed; boundary="u0"\r\n', unclosed),
        "nesting-5000-multipart-unclosed": _msg('Content-Type: multipart/mixed; boundary="u0"\r\n', b"".join(
            f'--u{i}\r\nContent-Type: multipart/mixed; boundary="u{i + 1}"\r\n\r\n'.encode() for i in range(5000))),
        "wide-5000-parts": _multipart([_text_part(f"part {i}\r\n") for i in range(5000)]),
        "html-10000-nested-divs": _msg("Content-Type: text/html\r\n", "<div>" * 10_000 + "x" + "</div>" * 10_000),
        "html-5000-links": _msg("Content-Type: text/html\r\n",
                                "".join(f'<a href="https://e{i}.example/">l{i}</a>\r\n' for i in range(5000))),
        "text-5000-urls": _msg(body="".join(f"https://e{i}.example/\r\n" for i in range(5000))),
    }


def _html() -> dict[str, bytes]:
    """Shapes that take html.parser quadratic time (the first took over 20 s for 50 KB before the fix)."""
    def page(body: str) -> bytes:
        return _msg("Content-Type: text/html; charset=utf-8\r\n", body)

    return {
        "html-unclosed-a-60k": page("<a " * 20_000),
        "html-unclosed-comments-100k": page("<!--" * 25_000),
        "html-lt-x-100k": page("<x" * 50_000),
        "html-end-tags-100k": page("</" * 50_000),
        "html-processing-instructions-100k": page("<?" * 50_000),
        "html-script-unclosed": page("<p>shown</p><script>" + "<" * 100_000),
        "html-attributes-unclosed-quote": page("<a href='https://x.example/" + "x" * 100_000),
    }


def _charsets() -> dict[str, bytes]:
    return {
        "invalid-utf8-headers": _msg(subject="bad \xff\xfe bytes".encode("latin-1").decode("utf-8", "surrogateescape"),
                                     from_=b"\xc3\x28 \xa0\xa1 <alice@example.com>".decode("utf-8", "surrogateescape")),
        "invalid-utf8-body": _msg("Content-Type: text/plain; charset=utf-8\r\n",
                                  b"\xc3\x28\xa0\xa1\xff\xfe\xed\xa0\x80"),
        "overlong-utf8": _msg(subject=b"\xc0\xaf\xe0\x80\xaf\xf8\x88\x80\x80\x80".decode("utf-8", "surrogateescape")),
        "unknown-charset": _msg("Content-Type: text/plain; charset=x-no-such-charset\r\n", "body\r\n"),
        "charset-utf7": _msg("Content-Type: text/plain; charset=utf-7\r\n", "+ADw-script+AD4-\r\n+\xff-\r\n"),
        "charset-escape-in-name": _msg(f"Content-Type: text/plain; charset=\"{OSC52}\"\r\n", "body\r\n"),
        "charset-empty": _msg("Content-Type: text/plain; charset=\r\n", "body\r\n"),
        "charset-utf16-odd": _msg("Content-Type: text/plain; charset=utf-16\r\n", b"\xff\xfeA"),
        "charset-idna": _msg("Content-Type: text/plain; charset=idna\r\n", b"\xff\xfe" * 100),
        "charset-rot13": _msg("Content-Type: text/plain; charset=rot13\r\n", "body\r\n"),
        "charset-base64-codec": _msg("Content-Type: text/plain; charset=base64\r\n", "!!!!\r\n"),
        "raw-8bit-headers": _msg(subject="Grüße \u202e évil", from_="Jürgen <j@example.com>"),
        "charset-punycode-120k": _msg("Content-Type: text/plain; charset=punycode\r\n",
                                      ("üa€" * 40_000).encode("punycode")),
        "random-bytes-64k": random.Random(1).randbytes(64 * 1024),
        "random-bytes-after-headers": _msg(body=random.Random(2).randbytes(64 * 1024)),
    }


def _encodings() -> dict[str, bytes]:
    return {
        "broken-base64": _msg("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
                              "SGVsbG8!!!@@@###\r\nnot base64 at all\r\nSGVsbG8=garbage==\r\nQQ\r\n"),
        "broken-base64-attachment": _multipart([
            b"Content-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=a.bin\r\n\r\n" + b"A" * 10001 + b"=\r\n"]),
        "base64-huge-line": _msg("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
                                 base64.b64encode(b"x" * 300_000) + b"\r\n"),
        "broken-qp": _msg("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n",
                          "=ZZ =4 =\r\n=\r\nsoft break at end=\r\n=E9=\r\n=FF=FE" + "=" * 5000 + "\r\n=3"),
        "qp-long-soft-breaks": _msg("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n",
                                    "=\r\n" * 20_000 + "end\r\n"),
        "unknown-cte": _msg("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode-" + OSC52 + "\r\n",
                            "begin 644 x\r\n`\r\nend\r\n"),
        "cte-on-multipart": _msg('Content-Type: multipart/mixed; boundary="q"\r\nContent-Transfer-Encoding: base64\r\n',
                                 "--q\r\n\r\nx\r\n--q--\r\n"),
    }


def _fields() -> dict[str, bytes]:
    return {
        "missing-from": _msg(from_=None),
        "missing-date": _msg(date=None),
        "missing-message-id": _msg(msgid=None),
        "missing-all-identity": _msg(from_=None, date=None, msgid=None, to=None, subject=None),
        "duplicate-from": _msg(headers="From: Mallory <mallory@evil.example>\r\n"),
        "duplicate-date": _msg(headers="Date: Mon, 1 Jan 1990 00:00:00 +0000\r\n"),
        "duplicate-message-id": _msg(headers="Message-ID: <2@example.com>\r\n"),
        "empty-from": _msg(from_=""),
        "from-group-only": _msg(from_="undisclosed-recipients:;"),
        "from-two-mailboxes": _msg(from_="a@example.com, b@evil.example"),
        "from-no-domain": _msg(from_="alice@"),
        "to-unlisted-recipients": _msg(to="unlisted-recipients:; (no To-header on input)"),
        "date-garbage": _msg(date="yesterday-ish \x1b[31m"),
        "date-year-0": _msg(date="Thu, 26 Nov 0000 19:51:04 +9999"),
        "date-huge-year": _msg(date="Thu, 26 Nov 99999999999999999999 19:51:04 +0000"),
        "msgid-garbage": _msg(msgid="<<<@@@>>>"),
        "no-headers": b"\r\njust a body\r\n",
        "no-blank-line": b"From: a@example.com\r\nSubject: x",
        "empty": b"",
        "single-crlf": b"\r\n",
        "header-only-colon": b": value\r\n\r\nbody\r\n",
        "space-before-colon": _msg(headers="From : Mallory <mallory@evil.example>\r\n"),
        "leading-continuation": b" folded first line\r\n" + _msg(),
        "mbox-from-line": b"From alice@example.com Thu Nov 26 19:51:04 2026\r\n" + _msg(),
    }


def _rfc2047() -> dict[str, bytes]:
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    escapes = OSC52 + CSI_MOVES + "subject"
    puny = base64.b64encode(("üa€" * 40_000).encode("punycode")).decode()  # decodes in quadratic time
    return {
        "rfc2047-escapes": _msg(subject=f"=?utf-8?b?{b64(escapes)}?=", from_=f"=?utf-8?b?{b64(TITLE + 'Eve')}?= "
                                "<eve@example.com>"),
        "rfc2047-bad-base64": _msg(subject="=?utf-8?b?!!!not-base64?= =?utf-8?b?QQ?= =?utf-8?b?QQ=?="),
        "rfc2047-unknown-charset": _msg(subject="=?x-no-such?q?hi?= =?utf-7?q?+ADw-?= =?idna?q?=FF?="),
        "rfc2047-bad-encoding": _msg(subject="=?utf-8?x?hi?= =?utf-8??hi?= =??q?hi?= =?utf-8*?q?hi?="),
        "rfc2047-5000-words": _msg(subject=" ".join(f"=?utf-8?q?w{i}?=" for i in range(5000))),
        "rfc2047-long-word-100k": _msg(subject=f"=?utf-8?b?{b64('x' * 75_000)}?="),
        "rfc2047-address-in-word": _msg(from_="=?utf-8?q?ceo=40bank=2Eexample_=3Cceo=40bank=2Eexample=3E?= "
                                              "<mallory@evil.example>"),
        "rfc2047-encoded-crlf": _msg(subject="=?utf-8?q?line1=0D=0ABcc:_victim=40example.net?="),
        "rfc2047-nested": _msg(subject="=?utf-8?q?=3D=3Futf-8=3Fq=3Finner=3F=3D?= =?=?utf-8?q?x?=?="),
        "rfc2047-bidi": _msg(subject=f"=?utf-8?b?{b64(BIDI)}?=", from_=f"=?utf-8?b?{b64(BIDI)}?= <a@example.com>"),
        "rfc2047-punycode-120k": _msg(subject=f"=?punycode?b?{puny}?="),
        "rfc2047-invalid-utf8": _msg(subject="=?utf-8?b?wyigoQ==?= =?utf-8?q?=C3=28=FF?="),
        "rfc2047-filename": _multipart([_text_part("x\r\n"), (
            f"Content-Type: application/octet-stream; name=\"=?utf-8?b?{b64(OSC52 + '.exe')}?=\"\r\n"
            f"Content-Disposition: attachment; filename*=utf-8''%1B%5D52%3Bc%3BcHduZWQ%3D%07.pdf\r\n\r\nAAAA"
        ).encode()]),
        "rfc2231-idna-filename": _multipart([_text_part("x\r\n"), b"Content-Type: application/pdf\r\n"
                                             b"Content-Disposition: attachment; filename*=idna''%FF%FE.pdf\r\n"
                                             b"\r\nAAAA"]),
        "rfc2231-punycode-filename": _multipart([_text_part("x\r\n"), b"Content-Type: application/pdf\r\n"
                                                 b"Content-Disposition: attachment; filename*=punycode''"
                                                 + ("üa€" * 20_000).encode("punycode") + b"\r\n\r\nAAAA"]),
        "rfc2231-broken": _msg("Content-Type: text/plain; charset*=x''%ZZ; name*0*=''%FF; name*1=\"a\"; "
                               "name*99=b; title*=utf-8'en'%E2%80%AE\r\n", "x\r\n"),
    }


def _boundaries() -> dict[str, bytes]:
    return {
        "missing-final-boundary": _multipart([_text_part("one\r\n"), _text_part("two\r\n")], close=False),
        "boundary-never-used": _msg('Content-Type: multipart/mixed; boundary="nothere"\r\n', "just text\r\n"),
        "boundary-missing-param": _msg("Content-Type: multipart/mixed\r\n", "--x\r\n\r\ny\r\n--x--\r\n"),
        "boundary-empty": _msg('Content-Type: multipart/mixed; boundary=""\r\n', "--\r\n\r\ny\r\n----\r\n"),
        "boundary-200-chars": _multipart([_text_part("x\r\n")], boundary="b" * 200),
        "boundary-escape": _multipart([_text_part("x\r\n")], boundary="\x1b[2J"),
        "boundary-prefix-of-another": _msg('Content-Type: multipart/mixed; boundary="a"\r\n',
                                           "--a\r\nContent-Type: multipart/mixed; boundary=\"ab\"\r\n\r\n--ab\r\n\r\n"
                                           "inner\r\n--ab--\r\n--a--\r\n"),
        "ctype-10000-params": _msg("Content-Type: text/plain" + "; a=\"\\\"x\"" * 10_000 + "\r\n", "x\r\n"),
        "ctype-quotes-50k": _msg('Content-Type: multipart/mixed; boundary="' + '"' * 50_000 + "\r\n", "x\r\n"),
        "ctype-garbage": _msg("Content-Type: ;;;///\x1b[2J;=;=\r\n", "x\r\n"),
        "epilogue-huge": _multipart([_text_part("x\r\n")])[:-2] + b"\r\n" + b"epilogue\r\n" * 10_000,
    }


def _terminal() -> dict[str, bytes]:
    html = (f"<html><body><p>{OSC52} hi {CSI_MOVES}</p><a href=\"https://e.example/{OSC52}\">click {BIDI}</a>"
            f"<img src=\"https://t.example/{TITLE}.png\" alt=\"{OSC52}\"></body></html>")
    return {
        "escapes-subject": _msg(subject=f"{OSC52}{CSI_MOVES} pwned {OSC52_ST}{TITLE}{C1_CSI}\x07\x08\x7f end"),
        "escapes-from": _msg(from_=f"\"{OSC52}{CSI_MOVES}CEO\u202e\" <ceo@example.com>",
                             to=f"{CSI_MOVES}<bob@example.net>"),
        "escapes-body-text": _msg(body=f"{OSC52}\r\n{CSI_MOVES}\r\n{TITLE}{C1_CSI}\x07\r\n{BIDI}\r\n"),
        "escapes-body-html": _msg("Content-Type: text/html; charset=utf-8\r\n", html),
        "escapes-everywhere": _multipart([
            _text_part(f"{OSC52} body {BIDI}\r\n"),
            f"Content-Type: application/x-{CSI_MOVES}; name=\"{OSC52}.pdf\"\r\n"
            f"Content-Disposition: attachment; filename=\"{TITLE}\u202efdp.exe\"\r\n"
            f"Content-Transfer-Encoding: {OSC52}\r\n\r\nAAAA".encode(),
        ], boundary="e"),
        "escapes-header-names": _msg(headers=f"X-{OSC52}: a\r\nX-\x1b[2J: b\r\n"),
        "bidi-zero-width": _msg(subject=BIDI, from_="\"Pay\u200bPal \u202eevil\" <a@example.com>",
                                body=f"{BIDI}\r\n"),
        "c1-controls-raw": _msg(subject="\x9b31m raw C1 byte", body=b"\x9b2J\x90\x9d0;t\x9c\r\n"),
        "escapes-msgid-date": _msg(msgid=f"<{OSC52}@example.com>", date=f"{CSI_MOVES}Thu, 26 Nov 2026"),
        "escapes-dkim-tags": _msg(headers=f"DKIM-Signature: v=1; d={OSC52}.example; s={CSI_MOVES}; h=from; bh=; "
                                          "b=\r\n"),
    }


VARIANTS: tuple[Callable[[], dict[str, bytes]], ...] = (
    _nul, _line_endings, _long_lines, _many_headers, _nesting, _charsets, _encodings, _fields, _rfc2047,
    _boundaries, _terminal, _html,
)

# the inputs the TUI and the list/show commands get (the slower paths, so only the nastiest)
NASTIEST = ("escapes-subject", "escapes-from", "escapes-everywhere", "escapes-body-html", "bidi-zero-width",
            "headers-10000", "nesting-1000-multipart", "nul-in-header-and-body", "rfc2047-escapes")


@cache
def generated() -> dict[str, bytes]:
    """Every generated variant, name -> bytes."""
    out: dict[str, bytes] = {}
    for make in VARIANTS:
        for name, raw in make().items():
            assert name not in out, name
            out[name] = raw
    return out


def shared() -> dict[str, bytes]:
    """Every file under ../shared/data/eml (licence files included: they are broken mail too)."""
    if not SHARED_EML.is_dir():
        return {}
    return {str(p.relative_to(SHARED_EML)): p.read_bytes() for p in sorted(SHARED_EML.rglob("*")) if p.is_file()}


SHARED_SKIP = f"the shared eml corpus is not present at {SHARED_EML}"


# ---- what must never reach a terminal ------------------------------------------------------------------------

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069"
                     "\ufeff\ud800-\udfff]")


def unsafe_characters(text: str) -> list[str]:
    """Every character in `text` a terminal would act on or hide (escape, controls, bidi, zero-width): none
    may survive escaping. Tab and newline are layout, not control; a CR is only allowed before a newline."""
    found = [repr(m.group()) for m in _UNSAFE.finditer(text.replace("\r\n", "\n"))]
    return sorted(set(found))
