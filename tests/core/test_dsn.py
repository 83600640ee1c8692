"""Tests for the DSNs and auto-replies the lab writes back: parsed again with the email package, checked
field by field and against RFC 3464's grammar, and fed hostile originals."""

from __future__ import annotations

import email
import email.policy
import quopri
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest

from lab.core import dsn
from lab.core.dsn import Recipient, autoreply, autoreply_suppressed, bounce

NOW = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
ARRIVAL = NOW - timedelta(seconds=30)
ORIGINAL = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Your order #1001\r\n"
    b"Date: Fri, 01 May 2026 12:00:00 +0000\r\n"
    b"Message-ID: <order-1001@example.com>\r\n"
    b"References: <root@example.com> <prev@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Thank you for your order.\r\n"
)
HEADERS = ORIGINAL.partition(b"\r\n\r\n")[0] + b"\r\n"


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def addr(msg, name: str) -> str:
    """The one address in an address field (the email package shows `<a@b>` as `a@b`)."""
    (address,) = msg[name].addresses
    return address.addr_spec


def parts(raw: bytes) -> list:
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    return list(msg.iter_parts())


def raw_part(raw: bytes, index: int) -> tuple[bytes, bytes]:
    """The `index`th body part's header block and body, exactly as written (the email package parses
    message/* parts into objects)."""
    boundary = parse(raw).get_boundary().encode()
    chunks = raw.split(b"\r\n--" + boundary)
    head, _, body = chunks[index + 1].removeprefix(b"\r\n").partition(b"\r\n\r\n")
    return head, body


# RFC 3464 §2.1-§2.3, as a checker: the per-message fields, then one block per recipient, in grammar order
_PER_MESSAGE = ("original-envelope-id", "reporting-mta", "dsn-gateway", "received-from-mta", "arrival-date")
_PER_RECIPIENT = ("original-recipient", "final-recipient", "action", "status", "remote-mta", "diagnostic-code",
                  "last-attempt-date", "final-log-id", "will-retry-until")
_TYPED = re.compile(r"[A-Za-z0-9-]+ ?; ?\S.*")  # address-type ";" address, mta-name-type ";" mta-name


def check_grammar(body: bytes) -> list[dict[str, str]]:
    """Check a message/delivery-status body against RFC 3464's grammar; returns its blocks as dicts."""
    text = body.decode("utf-8")
    assert "\n" not in text.replace("\r\n", ""), "bare LF"
    assert text.endswith("\r\n")
    blocks = [b for b in text.rstrip("\r\n").split("\r\n\r\n")]
    assert len(blocks) >= 2, "per-message fields and at least one recipient block"
    parsed = []
    for n, block in enumerate(blocks):
        order = _PER_MESSAGE if n == 0 else _PER_RECIPIENT
        fields: dict[str, str] = {}
        last = -1
        for line in block.split("\r\n"):
            assert len(line) <= 998
            name, sep, value = line.partition(": ")
            assert sep and re.fullmatch(r"[A-Za-z-]+", name), line
            key = name.lower()
            assert key in order, f"{name} does not belong in block {n}"
            assert order.index(key) > last, f"{name} out of order"
            last = order.index(key)
            fields[key] = value
        if n == 0:
            assert "reporting-mta" in fields
            assert _TYPED.fullmatch(fields["reporting-mta"])
            if "arrival-date" in fields:
                assert parsedate_to_datetime(fields["arrival-date"]).tzinfo is not None
        else:
            for required in ("final-recipient", "action", "status"):
                assert required in fields, f"{required} missing"
            assert _TYPED.fullmatch(fields["final-recipient"])
            assert fields["action"] in ("failed", "delayed", "delivered", "relayed", "expanded")
            assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", fields["status"])
            if "diagnostic-code" in fields:
                assert _TYPED.fullmatch(fields["diagnostic-code"])
            if "last-attempt-date" in fields:
                parsedate_to_datetime(fields["last-attempt-date"])
        parsed.append(fields)
    return parsed


def lines_ok(raw: bytes) -> None:
    """CRLF only, no line over 998 octets (RFC 5322 §2.1.1, §2.3)."""
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


# bounce ---------------------------------------------------------------------------------------------------


def test_bounce_is_an_rfc3464_report_with_every_field():
    raw = bounce(ORIGINAL, "alice@example.com", "bob@example.net", arrival=ARRIVAL, now=NOW)
    lines_ok(raw)
    msg = parse(raw)
    assert not msg.defects
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@maillab.localhost>"
    assert addr(msg, "To") == "alice@example.com"
    assert b"\r\nTo: <alice@example.com>\r\n" in raw
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert re.fullmatch(r"<dsn\.[0-9a-f]{32}@maillab\.localhost>", msg["Message-ID"])
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"

    human, status, headers = parts(raw)
    assert human.get_content_type() == "text/plain"
    text = human.get_content()
    assert "<bob@example.net> (failed): 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown" in text
    assert "maillab" in text

    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()  # the email package parses the blocks
    assert per_message["Reporting-MTA"] == "dns; maillab.localhost"
    assert parsedate_to_datetime(per_message["Arrival-Date"]) == ARRIVAL
    assert per_recipient["Final-Recipient"] == "rfc822; bob@example.net"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"] == ("smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: "
                                                "User unknown")
    assert parsedate_to_datetime(per_recipient["Last-Attempt-Date"]) == NOW
    check_grammar(raw_part(raw, 1)[1])

    assert headers.get_content_type() == "text/rfc822-headers"  # RFC 6522
    assert headers.get_payload(decode=True) == HEADERS  # the original header section, exactly


def test_bounce_to_a_null_sender_is_never_made():
    assert bounce(ORIGINAL, "", "bob@example.net", now=NOW) is None
    assert bounce(ORIGINAL, "<>", "bob@example.net", now=NOW) is None


def test_delayed_dsn_for_a_temporary_status():
    raw = bounce(ORIGINAL, "alice@example.com", "bob@example.net", status="4.2.2",
                 diagnostic="smtp; 452 4.2.2 Mailbox full", now=NOW)
    msg = parse(raw)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    blocks = check_grammar(raw_part(raw, 1)[1])
    assert blocks[1]["action"] == "delayed"
    assert blocks[1]["status"] == "4.2.2"
    assert blocks[1]["diagnostic-code"] == "smtp; 452 4.2.2 Mailbox full"
    assert "will be retried" in parts(raw)[0].get_content()


def test_several_recipients_each_with_their_status():
    raw = bounce(ORIGINAL, "alice@example.com",
                 [Recipient("a@example.net", "4.2.2"), Recipient("b@example.net", "5.1.1", original="B@Example.NET"),
                  "c@example.net"],
                 status="5.7.1", now=NOW, envid="QQ314159", received_from="mail.example.com")
    blocks = check_grammar(raw_part(raw, 1)[1])
    assert blocks[0]["original-envelope-id"] == "QQ314159"
    assert blocks[0]["received-from-mta"] == "dns; mail.example.com"
    assert [(b["final-recipient"], b["action"], b["status"]) for b in blocks[1:]] == [
        ("rfc822; a@example.net", "delayed", "4.2.2"),
        ("rfc822; b@example.net", "failed", "5.1.1"),
        ("rfc822; c@example.net", "failed", "5.7.1"),
    ]
    assert blocks[2]["original-recipient"] == "rfc822; B@Example.NET"
    assert blocks[3]["diagnostic-code"].startswith("smtp; 550 5.7.1 <c@example.net>")
    assert parse(raw)["Subject"] == "Undelivered Mail Returned to Sender"  # the worst outcome names it


def test_diagnostic_without_a_type_is_smtp_and_cannot_inject_lines():
    raw = bounce(ORIGINAL, "alice@example.com", "bob@example.net",
                 diagnostic="550 5.1.1 nope\r\nBcc: victim@example.org", now=NOW)
    blocks = check_grammar(raw_part(raw, 1)[1])
    assert blocks[1]["diagnostic-code"] == "smtp; 550 5.1.1 nope Bcc: victim@example.org"
    assert b"\r\nBcc:" not in raw


def test_bad_status_or_action_is_a_programming_error():
    with pytest.raises(ValueError, match="status"):
        bounce(ORIGINAL, "alice@example.com", "bob@example.net", status="5.1")
    with pytest.raises(ValueError, match="status"):
        bounce(ORIGINAL, "alice@example.com", "bob@example.net", status="3.1.1")
    with pytest.raises(ValueError, match="action"):
        bounce(ORIGINAL, "alice@example.com", "bob@example.net", action="bounced")
    with pytest.raises(ValueError, match="recipient"):
        bounce(ORIGINAL, "alice@example.com", [])


def test_bounce_is_deterministic_for_a_given_time():
    one = bounce(ORIGINAL, "alice@example.com", "bob@example.net", arrival=ARRIVAL, now=NOW)
    assert one == bounce(ORIGINAL, "alice@example.com", "bob@example.net", arrival=ARRIVAL, now=NOW)
    later = bounce(ORIGINAL, "alice@example.com", "bob@example.net", arrival=ARRIVAL, now=NOW + timedelta(seconds=1))
    assert parse(one)["Message-ID"] != parse(later)["Message-ID"]


def test_utf8_addresses_make_a_global_delivery_status():
    raw = bounce(ORIGINAL, "jörg@example.com", "bjørn@example.net", now=NOW)
    assert "\r\nTo: <jörg@example.com>\r\n".encode() in raw  # RFC 6532: UTF-8 in the header as it is
    head, body = raw_part(raw, 1)
    assert b"Content-Type: message/global-delivery-status" in head  # RFC 6533 §6.1
    blocks = check_grammar(body)
    assert blocks[1]["final-recipient"] == "utf-8; bjørn@example.net"


def test_8bit_long_line_and_bare_cr_headers_are_encoded_and_kept():
    head = (b"From: J\xc3\xb6rg <j@example.com>\r\nX-Long: " + b"x" * 3000 + b"\r\nX-CR: a\rb\r\n"
            b"Subject: s\n")  # and a bare LF line end
    raw = bounce(head + b"\r\nbody\r\n", "j@example.com", "bob@example.net", now=NOW)
    lines_ok(raw)
    part_head, body = raw_part(raw, 2)
    assert b"Content-Type: message/global-headers" in part_head  # RFC 6533 §6.3: UTF-8 header fields
    assert b"Content-Transfer-Encoding: quoted-printable" in part_head
    decoded = quopri.decodestring(body)
    assert decoded == head.replace(b"s\n", b"s\r\n")  # exactly, line ends made CRLF


def test_long_ascii_lines_alone_keep_text_rfc822_headers():
    head = b"From: a@example.com\r\nX-Long: " + b"y" * 1200 + b"\r\n"
    raw = bounce(head + b"\r\n", "a@example.com", "bob@example.net", now=NOW)
    lines_ok(raw)
    headers = parts(raw)[2]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert headers["Content-Transfer-Encoding"] == "quoted-printable"
    assert headers.get_payload(decode=True) == head


def test_huge_header_sections_are_cut_at_a_field_boundary():
    head = b"".join(b"X-H%05d: v\r\n\tcontinued\r\n" % i for i in range(20_000))  # 10,000s of headers, 500 KB
    raw = bounce(head + b"\r\nbody\r\n", "a@example.com", "bob@example.net", now=NOW)
    lines_ok(raw)
    human, _, headers = parts(raw)
    kept = headers.get_payload(decode=True)
    assert len(kept) <= dsn.MAX_HEADERS
    assert head.startswith(kept) and kept.endswith(b"\tcontinued\r\n")  # whole fields only
    assert "cut short" in human.get_content()


def test_messages_without_headers_or_with_lf_endings():
    raw = bounce(b"\r\njust a body\r\n", "a@example.com", "bob@example.net", now=NOW)
    assert parts(raw)[2].get_payload(decode=True) == b""
    raw = bounce(b"From: a@example.com\nSubject: x\n\nbody\n", "a@example.com", "bob@example.net", now=NOW)
    lines_ok(raw)
    assert parts(raw)[2].get_payload(decode=True) == b"From: a@example.com\r\nSubject: x\r\n"


def test_the_boundary_never_occurs_in_the_parts():
    content = [[b"Content-Type: text/plain\r\n", b""]]
    first = dsn._multipart([], "multipart/report", content, b"seed")
    boundary = parse(first).get_boundary().encode()
    clash = [[b"Content-Type: text/plain\r\n", b"--" + boundary + b"\r\n"]]
    again = dsn._multipart([], "multipart/report", clash, b"seed")
    assert parse(again).get_boundary().encode() != boundary


# auto-reply -----------------------------------------------------------------------------------------------


def test_autoreply_follows_rfc3834():
    raw = autoreply(ORIGINAL, "alice@example.com", "ooo@example.net", now=NOW)
    lines_ok(raw)
    msg = parse(raw)
    assert not msg.defects
    assert addr(msg, "From") == "ooo@example.net"
    assert addr(msg, "To") == "alice@example.com"  # the envelope sender (§3.1.1)
    assert msg["Subject"] == "Auto: Your order #1001"  # §3.1.5
    assert msg["In-Reply-To"] == "<order-1001@example.com>"  # §3.1.3
    assert msg["References"].split() == ["<root@example.com>", "<prev@example.com>", "<order-1001@example.com>"]
    assert msg["Auto-Submitted"] == "auto-replied"  # §5
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert re.fullmatch(r"<auto\.[0-9a-f]{32}@example\.net>", msg["Message-ID"])
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == dsn.DEFAULT_AUTOREPLY


def test_autoreply_to_the_envelope_sender_not_from():
    raw = autoreply(ORIGINAL, "bounces+123@mailer.example.com", "ooo@example.net", now=NOW)
    assert addr(parse(raw), "To") == "bounces+123@mailer.example.com"


@pytest.mark.parametrize("envelope_from, extra, reason", [
    ("", b"", "null"),
    ("<>", b"", "null"),
    ("alice@example.com", b"Auto-Submitted: auto-generated\r\n", "Auto-Submitted: auto-generated"),
    ("alice@example.com", b"Auto-Submitted: auto-replied\r\n", "Auto-Submitted: auto-replied"),
    ("alice@example.com", b"Auto-Submitted: Auto-Notified; owner-email=x@y\r\n", "Auto-Submitted: auto-notified"),
    ("alice@example.com", b"Precedence: bulk\r\n", "Precedence: bulk"),
    ("alice@example.com", b"Precedence: List\r\n", "Precedence: list"),
    ("alice@example.com", b"Precedence: junk\r\n", "Precedence: junk"),
    ("alice@example.com", b"List-Id: Shop news <news.example.com>\r\n", "List-Id"),
    ("alice@example.com", b"List-Unsubscribe: <mailto:u@example.com>\r\n", "List-Unsubscribe"),
    ("alice@example.com", b"X-Auto-Response-Suppress: OOF, DR\r\n", "X-Auto-Response-Suppress"),
    ("alice@example.com", b"X-Auto-Response-Suppress: All\r\n", "X-Auto-Response-Suppress"),
    ("MAILER-DAEMON@example.com", b"", "list or mailer"),
    ("owner-news@example.com", b"", "list or mailer"),
    ("news-request@example.com", b"", "list or mailer"),
    ("ooo@example.net", b"", "loop"),
])
def test_no_autoreply_where_rfc3834_forbids_one(envelope_from, extra, reason):
    original = ORIGINAL.replace(b"MIME-Version", extra + b"MIME-Version", 1)
    why = autoreply_suppressed(original, envelope_from, "ooo@example.net")
    assert why is not None and reason in why
    assert autoreply(original, envelope_from, "ooo@example.net", now=NOW) is None


@pytest.mark.parametrize("extra", [
    b"Auto-Submitted: no\r\n",
    b"Precedence: first-class\r\n",
    b"X-Auto-Response-Suppress: DR, RN\r\n",
    b"X-List: not a list field\r\n",
])
def test_autoreply_still_made_for_lookalikes(extra):
    original = ORIGINAL.replace(b"MIME-Version", extra + b"MIME-Version", 1)
    assert autoreply_suppressed(original, "alice@example.com", "ooo@example.net") is None
    assert autoreply(original, "alice@example.com", "ooo@example.net", now=NOW) is not None


def test_autoreply_subjects_utf8_missing_and_huge():
    orig = ORIGINAL.replace(b"Subject: Your order #1001", b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=")
    raw = autoreply(orig, "alice@example.com", "ooo@example.net", now=NOW)
    assert raw.isascii()  # RFC 2047 encoded again
    assert parse(raw)["Subject"] == "Auto: Grüße"

    orig = ORIGINAL.replace(b"Subject: Your order #1001\r\n", b"")
    assert parse(autoreply(orig, "alice@example.com", "ooo@example.net", now=NOW))["Subject"] == \
        "Auto: your message"

    orig = ORIGINAL.replace(b"Your order #1001", b"\x1b[31m" + b"spam " * 20_000)
    raw = autoreply(orig, "alice@example.com", "ooo@example.net", now=NOW)
    lines_ok(raw)
    subject = parse(raw)["Subject"]
    assert subject.startswith("Auto: ") and len(subject) <= 6 + dsn.MAX_SUBJECT
    assert "\x1b" not in subject


def test_autoreply_threading_without_references_or_message_id():
    orig = ORIGINAL.replace(b"References: <root@example.com> <prev@example.com>\r\n",
                            b"In-Reply-To: <parent@example.com>\r\n")
    msg = parse(autoreply(orig, "alice@example.com", "ooo@example.net", now=NOW))
    assert msg["References"].split() == ["<parent@example.com>", "<order-1001@example.com>"]

    orig = ORIGINAL.replace(b"Message-ID: <order-1001@example.com>\r\n", b"")
    msg = parse(autoreply(orig, "alice@example.com", "ooo@example.net", now=NOW))
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_autoreply_trims_a_huge_references_field():
    refs = b" ".join(b"<r%d@example.com>" % i for i in range(5000))
    orig = ORIGINAL.replace(b"<root@example.com> <prev@example.com>", refs)
    raw = autoreply(orig, "alice@example.com", "ooo@example.net", now=NOW)
    lines_ok(raw)
    ids = parse(raw)["References"].split()
    assert len(ids) <= dsn.MAX_REFERENCES
    assert ids[0] == "<r0@example.com>" and ids[-2] == "<r4999@example.com>" and ids[-1] == "<order-1001@example.com>"


def test_autoreply_custom_text_in_utf8():
    raw = autoreply(ORIGINAL, "alice@example.com", "ooo@example.net", text="Zurück am Montag.\n", now=NOW)
    lines_ok(raw)
    msg = parse(raw)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content().replace("\r\n", "\n") == "Zurück am Montag.\n"


def test_hostile_originals_never_raise_and_stay_bounded():
    many = b"".join(b"X-%d: v\r\n" % i for i in range(10_000))
    for original in (many + b"\r\n", b"\x00\xff" * 50_000, b"", b"Subject: " + b"a" * 100_000 + b"\r\n\r\n"):
        for made in (bounce(original, "a@example.com", "b@example.net", now=NOW),
                     autoreply(original, "a@example.com", "b@example.net", now=NOW)):
            assert made is not None
            lines_ok(made)
            assert not parse(made).defects


def test_a_real_bounce_parser_reads_the_dsn():
    """flufl.bounce (GNU Mailman's bounce detector) is not a dependency; where it is installed, it must find
    the failed recipient as permanent and the delayed one as temporary."""
    flufl = pytest.importorskip("flufl.bounce")
    raw = bounce(ORIGINAL, "alice@example.com", [Recipient("a@example.net", "4.2.2"), Recipient("b@example.net")],
                 now=NOW)
    temporary, permanent = flufl.all_failures(email.message_from_bytes(raw))
    assert temporary == {b"a@example.net"} and permanent == {b"b@example.net"}
