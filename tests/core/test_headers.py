"""Tests for the header and wire-format checks: each rule both ways, hostile bytes, and a real-mail corpus."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab.core.checks.headers import check_headers
from lab.core.context import Context
from lab.core.dnsview import ZoneView
from lab.core.model import Capture, Envelope, Listener, Transport
from lab.core.results import CheckResult, Level

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
IDS = {"headers.parse", "headers.duplicates", "headers.subject", "headers.line-length", "headers.line-endings",
       "headers.nul", "headers.8bit", "headers.mime", "headers.size"}
BASE = {
    "From": "Alice <alice@example.com>",
    "To": "bob@example.net",
    "Subject": "Hello",
    "Date": "Fri, 01 May 2026 11:59:00 +0000",
    "Message-ID": "<abc123@example.com>",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=utf-8",
}
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "eml"


def make(over: dict[str, str | None] | None = None, extra: tuple[tuple[str, str], ...] = (),
         body: bytes = b"Hello.\r\n") -> bytes:
    """A CRLF message: BASE with `over` replacing fields (None drops one) and `extra` fields appended."""
    fields = {**BASE, **(over or {})}
    lines = [f"{k}: {v}" for k, v in fields.items() if v is not None] + [f"{k}: {v}" for k, v in extra]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body


def run(raw: bytes, smtputf8: bool = False, listener: Listener = Listener.RELAY) -> list[CheckResult]:
    capture = Capture(raw, Envelope(mail_from="bounce@example.com", helo="mail.example.com", smtputf8=smtputf8),
                      Transport(listener=listener), received_at=NOW)
    return check_headers(Context(capture, dns=ZoneView()))


def of(results: list[CheckResult], cid: str) -> list[CheckResult]:
    return [r for r in results if r.id == cid]


def levels(results: list[CheckResult], cid: str) -> list[Level]:
    return [r.level for r in of(results, cid)]


def test_a_clean_message_passes_every_rule():
    results = run(make())
    assert {r.id for r in results} == IDS
    assert len(results) == len(IDS)  # each id once
    assert [r.level for r in results] == [Level.PASS] * len(IDS)
    assert all(r.ref and r.summary for r in results)


@pytest.mark.parametrize(("raw", "expected"), [
    (make(), Level.PASS),
    (b"From: a@example.com\r\nthis line has no colon\r\n\r\nbody", Level.WARN),
    (b"From: a@example.com\r\nBad Name: x\r\n\r\nbody", Level.WARN),
    (b" starts folded\r\nFrom: a@example.com\r\n\r\n", Level.WARN),
    (b"\r\nonly a body", Level.WARN),
    (b"", Level.WARN),
])
def test_parse(raw, expected):
    found = of(run(raw), "headers.parse")
    assert [r.level for r in found] == [expected]
    if expected is Level.WARN:
        assert found[0].fix


def test_parse_lists_the_first_problems():
    raw = b"".join(b"broken line %d\r\n" % i for i in range(10)) + b"From: a@example.com\r\n\r\n"
    (found,) = of(run(raw), "headers.parse")
    assert found.summary.startswith("10 problem")
    assert set(found.evidence) == {"problem-1", "problem-2", "problem-3", "rfc"}
    assert found.evidence["rfc"].startswith("RFC 5322")
    assert "broken line 0" in found.evidence["problem-1"]


@pytest.mark.parametrize(("extra", "expected", "fields"), [
    ((), [Level.PASS], None),
    ((("Received", "from a by b"), ("Received", "from c by d")), [Level.PASS], None),  # may repeat
    ((("Comments", "one"), ("Comments", "two")), [Level.PASS], None),
    ((("From", "mallory@evil.test"),), [Level.FAIL], "From"),
    ((("from", "mallory@evil.test"),), [Level.FAIL], "From"),  # names are case-insensitive
    ((("Subject", "Other"),), [Level.WARN], "Subject"),
    ((("SUBJECT", "Other"),), [Level.WARN], "Subject"),
    ((("Date", "Fri, 01 May 2026 11:00:00 +0000"),), [Level.WARN], "Date"),
    ((("Message-ID", "<x@example.com>"),), [Level.WARN], "Message-ID"),
    ((("To", "eve@example.net"),), [Level.WARN], "To"),
    ((("Reply-To", "a@x.test"), ("Reply-To", "b@x.test")), [Level.WARN], "Reply-To"),
    ((("Subject", "Other"), ("From", "m@evil.test")), [Level.FAIL], "From, Subject"),  # one result, From rules
])
def test_duplicates(extra, expected, fields):
    found = of(run(make(extra=extra)), "headers.duplicates")
    assert [r.level for r in found] == expected
    assert all(r.fix for r in found if r.level is not Level.PASS)
    assert found[0].evidence.get("fields") == fields


def test_duplicates_names_the_field_and_count():
    (found,) = of(run(make(extra=(("Message-ID", "<a@x.test>"), ("Message-ID", "<b@x.test>")))),
                  "headers.duplicates")
    assert found.evidence["fields"] == "Message-ID"
    assert found.summary == "Fields that may appear once are repeated: Message-ID (3 times)"


def test_duplicates_lists_every_repeated_field_in_one_result():
    (found,) = of(run(make(extra=(("Subject", "Other"), ("To", "eve@example.net"), ("To", "mallory@x.test")))),
                  "headers.duplicates")
    assert found.level is Level.WARN  # From is not among them
    assert found.evidence["fields"] == "To, Subject"  # in the order of SINGLETONS (RFC 5322 §3.6)
    assert found.summary == "Fields that may appear once are repeated: To (3 times), Subject (2 times)"
    assert "To, Subject" in found.fix


@pytest.mark.parametrize(("subject", "expected"), [
    ("Hello", Level.PASS),
    ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", Level.PASS),
    (None, Level.WARN),
    ("", Level.WARN),
    ("   ", Level.WARN),
])
def test_subject(subject, expected):
    assert levels(run(make({"Subject": subject})), "headers.subject") == [expected]


@pytest.mark.parametrize(("raw", "expected"), [
    (make(body=b"x" * 998 + b"\r\n"), Level.PASS),  # exactly the limit, CRLF not counted
    (make(body=b"x" * 998 + b"\n"), Level.PASS),
    (make(body=b"x" * 998), Level.PASS),
    (make({"Subject": "s" * 200}), Level.PASS),  # over 78 in a header is fine
    (make(body=b"x" * 999 + b"\r\n"), Level.WARN),
    (make(body=b"x" * 999), Level.WARN),
    (make(body=b"short\r\n" + b"y" * 5000 + b"\r\n"), Level.WARN),
])
def test_line_length(raw, expected):
    assert levels(run(raw), "headers.line-length") == [expected]


def test_line_length_reports_the_longest_line_and_where():
    raw = make({"Subject": "s" * 1200}, body=b"a\r\n" + b"b" * 1000 + b"\r\n")
    (found,) = of(run(raw), "headers.line-length")
    assert found.level is Level.WARN
    assert found.evidence["longest"] == str(len("Subject: ") + 1200)
    assert found.evidence["line"] == "3" and found.evidence["section"] == "header"
    assert found.evidence["count"] == "2"
    (body_only,) = of(run(make(body=b"a\r\n" + b"b" * 1000 + b"\r\n")), "headers.line-length")
    assert body_only.evidence["section"] == "body" and body_only.evidence["line"] == str(len(BASE) + 3)


@pytest.mark.parametrize(("raw", "listener", "expected"), [
    (make(), Listener.RELAY, [Level.PASS]),
    (make(), Listener.CLI, [Level.PASS]),
    (make(body=b"line one\nline two\r\n"), Listener.RELAY, [Level.WARN]),  # one bare LF
    (make(body=b"line one\rline two\r\n"), Listener.RELAY, [Level.WARN]),  # one bare CR
    (make(body=b"smuggled\n.\r\nMAIL FROM:<x@y>\r\n"), Listener.SUBMISSION, [Level.WARN]),
    (make().replace(b"\r\n", b"\n"), Listener.RELAY, [Level.WARN]),  # all LF, over SMTP
    (make().replace(b"\r\n", b"\n"), Listener.CLI, [Level.INFO]),  # all LF, a file on disk
    (make(body=b"a\nb\r\n"), Listener.CLI, [Level.WARN]),  # mixed endings are wrong even in a file
    (make(body=b"nul\x00here\r\n"), Listener.RELAY, [Level.PASS]),  # NUL is headers.nul's to judge
    (make(body=b"nul\x00\nhere\r\n"), Listener.RELAY, [Level.WARN]),
])
def test_line_endings(raw, listener, expected):
    found = of(run(raw, listener=listener), "headers.line-endings")
    assert [r.level for r in found] == expected
    assert all(r.fix for r in found if r.level is not Level.PASS)


@pytest.mark.parametrize(("raw", "expected"), [
    (make(), [Level.PASS]),
    (make(body=b"line one\nline two\r\n"), [Level.PASS]),  # a bare LF is not a NUL
    (make(body=b"nul\x00here\r\n"), [Level.FAIL]),
    (make(body=b"nul\x00\nhere\r\n"), [Level.FAIL]),
    (b"\x00" * 200, [Level.FAIL]),
])
def test_nul_bytes(raw, expected):
    found = of(run(raw), "headers.nul")
    assert [r.level for r in found] == expected
    assert all(r.fix for r in found if r.level is Level.FAIL)


def test_nul_bytes_are_counted_and_located():
    (found,) = of(run(make(body=b"a\x00b\x00\r\n")), "headers.nul")
    assert found.summary == "The message contains 2 NUL byte(s)"
    assert found.evidence["first-offset"] == str(len(make(body=b"")) + 1)


def test_line_endings_point_at_the_first_bare_lf():
    (found,) = of(run(make(body=b"ok\r\nbad\nok\r\n")), "headers.line-endings")
    assert found.evidence["bare-lf"] == "1" and found.evidence["line"] == str(len(BASE) + 3)
    assert "bare-cr" not in found.evidence or found.evidence["bare-cr"] == "0"


@pytest.mark.parametrize(("raw", "smtputf8", "expected"), [
    (make(), False, Level.PASS),
    (make(body="Grüße\r\n".encode()), False, Level.PASS),  # 8-bit in the body is another matter
    (make({"Subject": "=?utf-8?q?Gr=C3=BC=C3=9Fe?="}), False, Level.PASS),
    (make({"Subject": "Grüße"}), False, Level.WARN),
    (make({"Subject": "Grüße"}), True, Level.PASS),
    (make({"From": "Jörg <jörg@bücher.example>"}), True, Level.PASS),
    (make({"Subject": "Gr\xfc\xdfe"}).replace("Grüße".encode(), b"Gr\xfc\xdfe"), True, Level.WARN),  # Latin-1
    (b"Subject: \xff\xfe\r\n\r\n", False, Level.WARN),
])
def test_eight_bit_headers(raw, smtputf8, expected):
    found = of(run(raw, smtputf8=smtputf8), "headers.8bit")
    assert [r.level for r in found] == [expected]
    if expected is Level.WARN:
        assert found[0].fix and found[0].evidence["first-field"] in ("Subject", "From")


MULTI_OK = (b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhi\r\n"
            b"--b1\r\nContent-Type: image/png\r\ncontent-transfer-encoding: base64\r\n\r\naGk=\r\n--b1--\r\n")
MULTIPART = {"Content-Type": 'multipart/mixed; boundary="b1"'}


@pytest.mark.parametrize(("over", "body", "expected"), [
    ({}, b"Hello.\r\n", [Level.PASS]),
    ({"MIME-Version": None}, b"Hello.\r\n", [Level.PASS]),  # plain text needs no MIME
    ({"MIME-Version": None, "Content-Type": None}, b"Hello.\r\n", [Level.PASS]),
    (MULTIPART, MULTI_OK, [Level.PASS]),
    ({"Content-Type": "multipart/mixed; boundary=b1"}, MULTI_OK, [Level.PASS]),
    ({"MIME-Version": "1.0 (produced by Mailer 2)"}, b"Hello.\r\n", [Level.PASS]),
    ({"Content-Transfer-Encoding": "Base64"}, b"aGk=\r\n", [Level.PASS]),
    (MULTIPART, MULTI_OK.replace(b"encoding: base64", b"encoding:\r\n base64"), [Level.PASS]),  # folded
    # no MIME-Version on MIME content: content.mime-version's finding, not repeated here
    ({**MULTIPART, "MIME-Version": None}, MULTI_OK, [Level.PASS]),
    ({"Content-Type": "image/png", "MIME-Version": None}, b"aGk=\r\n", [Level.PASS]),
    ({"Content-Transfer-Encoding": "base64", "MIME-Version": None}, b"aGk=\r\n", [Level.PASS]),
    ({"MIME-Version": "2.0"}, b"Hello.\r\n", [Level.WARN]),
    ({"Content-Type": "multipart/mixed"}, MULTI_OK, [Level.WARN]),  # no boundary
    ({"Content-Type": 'multipart/mixed; boundary=""'}, MULTI_OK, [Level.WARN]),
    ({"Content-Type": f"multipart/mixed; boundary={'b' * 71}"}, b"--" + b"b" * 71 + b"\r\n--" + b"b" * 71
     + b"--\r\n", [Level.WARN]),
    ({"Content-Type": "multipart/mixed; boundary=zz"}, MULTI_OK, [Level.WARN]),  # never appears
    (MULTIPART, MULTI_OK.replace(b"--b1--\r\n", b""), [Level.WARN]),  # truncated: no closing delimiter
    (MULTIPART, b"preamble mentions --b1 and --b1-- mid-line\r\n", [Level.WARN]),  # not at a line start
    (MULTIPART, MULTI_OK + b"X-Content-Transfer-Encoding: weird\r\n", [Level.PASS]),  # another field
    ({"Content-Transfer-Encoding": "x-uuencode"}, b"begin 644 x\r\n", [Level.WARN]),
    ({"Content-Transfer-Encoding": ""}, b"x\r\n", [Level.WARN]),
    (MULTIPART, MULTI_OK.replace(b"encoding: base64", b"encoding: base-64"), [Level.WARN]),
    (MULTIPART, MULTI_OK.replace(b"Encoding: quoted-printable", b"Encoding: 7-bit"), [Level.WARN]),
    ({**MULTIPART, "MIME-Version": "2.0"}, MULTI_OK.replace(b"--b1--", b""), [Level.WARN]),  # two problems, one result
])
def test_mime(over, body, expected):
    found = of(run(make(over, body=body)), "headers.mime")
    assert [r.level for r in found] == expected, [r.summary for r in found]
    assert all(r.fix for r in found if r.level is not Level.PASS)


def test_several_mime_problems_are_one_result_naming_each():
    (two,) = of(run(make({**MULTIPART, "MIME-Version": "2.0"}, body=MULTI_OK.replace(b"--b1--", b""))),
                "headers.mime")
    assert two.level is Level.WARN
    assert two.summary == ("2 MIME problems: MIME-Version is '2.0'; the only version is 1.0; The multipart body "
                           "has no closing boundary (--boundary--): it may be truncated")
    assert "MIME-Version: 1.0" in two.fix and "add_attachment" in two.fix
    assert two.evidence["boundary"] == "b1"
    over = {"MIME-Version": "2.0", "Content-Type": "multipart/mixed", "Content-Transfer-Encoding": "x-uue"}
    (three,) = of(run(make(over, body=b"x\r\n")), "headers.mime")
    assert three.level is Level.WARN
    assert three.summary == ("3 MIME problems: MIME-Version is '2.0'; the only version is 1.0; The multipart "
                             "Content-Type has no boundary parameter; Unknown Content-Transfer-Encoding: x-uue")
    (one,) = of(run(make({"MIME-Version": "2.0"})), "headers.mime")
    assert one.summary == "MIME-Version is '2.0'; the only version is 1.0"  # a single problem is not wrapped


def test_mime_names_the_unknown_encodings():
    body = MULTI_OK.replace(b"encoding: base64", b"encoding: uuencode")
    (found,) = of(run(make(MULTIPART, body=body)), "headers.mime")
    assert found.evidence["encodings"] == "uuencode"


def _rfc822_chain(depth: int) -> bytes:
    inner = b"Subject: bottom\r\n\r\nthe bottom\r\n"
    for _ in range(depth - 1):
        inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    return make({"Content-Type": "message/rfc822"}, body=inner)


def _mixed_chain(depth: int) -> bytes:
    """multipart > message/rfc822 > multipart > ...: each wrapper is one level, as Postfix counts."""
    inner = b"Content-Type: text/plain\r\n\r\nthe bottom\r\n"
    for i in range(depth - 1, 0, -1):
        if i % 2:
            inner = (f'Content-Type: multipart/mixed; boundary="m{i}"\r\n\r\n--m{i}\r\n'.encode() + inner
                     + f"\r\n--m{i}--\r\n".encode())
        else:
            inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
    return make({"Content-Type": 'multipart/mixed; boundary="top"'}, body=b"--top\r\n" + inner + b"\r\n--top--\r\n")


@pytest.mark.parametrize(("build", "depth", "expected"), [
    (_rfc822_chain, 100, Level.PASS),
    (_rfc822_chain, 101, Level.WARN),
    (_mixed_chain, 100, Level.PASS),
    (_mixed_chain, 101, Level.WARN),
])
def test_nesting_counts_multipart_and_message_levels(build, depth, expected):
    (found,) = of(run(build(depth)), "headers.mime")
    assert found.level is expected, found.summary
    if expected is Level.WARN:
        assert found.evidence["nesting"] == str(depth)


@pytest.mark.parametrize(("raw", "expected"), [
    (make(), Level.PASS),
    (make(extra=tuple((f"X-H-{i}", "v") for i in range(990))), Level.PASS),
    (make(extra=tuple((f"X-H-{i}", "v") for i in range(1000))), Level.WARN),  # 1,007 fields
    (make(extra=(("X-Big", "v" * 60_000),)), Level.PASS),
    (make(extra=(("X-Big", "\r\n ".join(["v" * 70] * 1000)),)), Level.WARN),  # ~73 KB, folded
])
def test_size(raw, expected):
    assert levels(run(raw), "headers.size") == [expected]


HOSTILE = {
    "empty": b"",
    "nul bytes": b"\x00" * 200,
    "only a blank line": b"\r\n\r\n",
    "no headers": b"\r\nJust a body\r\n",
    "body only, no blank line": b"Just some words without a colon\r\n",
    "invalid utf-8": b"From: \xff\xfe <a@\xff.example>\r\nSubject: \xc3\x28\r\nContent-Type: multipart/\xff; "
                     b"boundary=\"\xff\xfe\"\r\nContent-Transfer-Encoding: \xff\r\n\r\n--\xff\xfe\r\n\xff",
    "escape sequences": b"Subject: \x1b[2J\x1b]0;owned\x07\r\nBad\x1b Name: x\r\n\x1b[31m\r\n\r\n",
    "bare cr only": b"From: a@example.com\rSubject: x\r\rbody",
    "10,000 headers": b"".join(b"X-H-%d: v\r\n" % i for i in range(10_000)) + b"\r\nbody",
    "10,000 subjects": b"Subject: s\r\n" * 10_000 + b"\r\n",
    "multipart, empty boundary": b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
    "multipart, no body": b"Content-Type: multipart/mixed; boundary=\"x\"\r\n",
    "cte at the very start of the body": b"Subject: x\r\n\r\nContent-Transfer-Encoding: \xff\r\n",
    "cte needle at the end": b"Subject: x\r\n\r\nContent-Transfer-Encoding:",
    "one 2 MB line": b"Subject: x\r\n\r\n" + b"y" * 2_000_000,
    "header of a million bytes": b"Subject: " + b"z" * 1_000_000 + b"\r\n\r\n",
}
HOSTILE.update({f"random {seed}": random.Random(seed).randbytes(4_000) for seed in range(5)})


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("smtputf8", [False, True])
def test_hostile_input_yields_every_rule_not_exceptions(raw, smtputf8):
    results = run(raw, smtputf8=smtputf8)
    ids = [r.id for r in results]
    assert set(ids) >= IDS
    assert len(ids) == len(set(ids)), ids  # scripts key results by id
    nul = next(r for r in results if r.id == "headers.nul")
    assert (nul.level is Level.FAIL) is (b"\x00" in raw)
    for r in results:
        assert isinstance(r, CheckResult) and r.family == "headers" and isinstance(r.level, Level)
        for text in (r.summary, *r.evidence.values()):
            assert "\x1b" not in text and "\x00" not in text, (r.id, text)


def test_hostile_input_is_judged_not_just_survived():
    results = run(HOSTILE["10,000 headers"])
    assert levels(results, "headers.size") == [Level.WARN]
    assert levels(results, "headers.subject") == [Level.WARN]
    (dup,) = of(run(HOSTILE["10,000 subjects"]), "headers.duplicates")
    assert dup.level is Level.WARN and dup.evidence["fields"] == "Subject"
    assert "Subject (10000 times)" in dup.summary
    assert levels(run(HOSTILE["nul bytes"]), "headers.nul") == [Level.FAIL]
    assert levels(run(HOSTILE["header of a million bytes"]), "headers.line-length") == [Level.WARN]


@pytest.mark.parametrize(("subject", "shown"), [
    ("Hello", "Hello"),
    ("\x1b[2J\x1b]0;owned\x07", "␛[2J␛]0;owned^G"),
    ("Pay\u202ePal\u200b", "Pay<U+202E>Pal<U+200B>"),
    ("s" * 300, "s" * 200 + "…"),
])
def test_mail_text_in_evidence_is_escaped_and_capped(subject, shown):
    (found,) = of(run(make({"Subject": subject})), "headers.subject")
    assert found.level is Level.PASS and found.evidence["subject"] == shown


def _corpus() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".eml", ".msg", ".txt", ""))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/data/eml is not present")
def test_real_and_broken_mail_from_the_corpus_never_raises():
    files = _corpus()
    assert len(files) > 50
    for path in files:
        for listener in (Listener.CLI, Listener.RELAY):
            results = run(path.read_bytes(), listener=listener)
            assert {r.id for r in results} >= IDS, path


def test_a_missing_mime_version_is_reported_once_by_the_content_rule():
    from lab.core.analyse import analyse

    raw = make({**MULTIPART, "MIME-Version": None}, body=MULTI_OK)
    verdict = analyse(Capture(raw, Envelope(mail_from="bounce@example.com", helo="mail.example.com"),
                              Transport(listener=Listener.RELAY), received_at=NOW), ZoneView())
    about = [c for c in verdict.checks if "MIME-Version" in c.summary and c.level is not Level.PASS]
    assert [c.id for c in about] == ["content.mime-version"]
