"""Tests for the sender checks: each rule both ways, and hostile input that must yield results, not errors."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from lab.core.checks.sender import check_sender
from lab.core.context import Context
from lab.core.dnsview import ZoneView
from lab.core.model import Capture, Envelope
from lab.core.results import CheckResult, Level

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BASE = {
    "From": "Alice <alice@example.com>",
    "To": "bob@example.net",
    "Subject": "Hello",
    "Date": "Fri, 01 May 2026 11:59:00 +0000",
    "Message-ID": "<abc123@example.com>",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=utf-8",
}


def make(over: dict[str, str | None] | None = None, extra: tuple[tuple[str, str], ...] = (),
         body: bytes = b"Hello.\r\n") -> bytes:
    """A CRLF message: BASE with `over` replacing fields (None drops one) and `extra` fields appended."""
    fields = {**BASE, **(over or {})}
    lines = [f"{k}: {v}" for k, v in fields.items() if v is not None] + [f"{k}: {v}" for k, v in extra]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body


def run(raw: bytes, mail_from: str = "bounce@example.com", helo: str | None = "mail.example.com",
        received_at: datetime = NOW) -> list[CheckResult]:
    capture = Capture(raw, Envelope(mail_from=mail_from, helo=helo), received_at=received_at)
    return check_sender(Context(capture, dns=ZoneView()))


def of(results: list[CheckResult], cid: str) -> list[CheckResult]:
    return [r for r in results if r.id == cid]


def level(results: list[CheckResult], cid: str) -> Level:
    """The one level of `cid`; fails the test if the id is missing or emitted more than once."""
    found = of(results, cid)
    assert len(found) == 1, (cid, found)
    return found[0].level


def test_a_clean_message_passes_every_rule():
    results = run(make())
    assert {r.id for r in results} == {
        "sender.from", "sender.role-address", "sender.alignment", "sender.display-name", "sender.reply-to",
        "sender.message-id", "sender.date"}
    assert [r.id for r in results if r.level not in (Level.PASS, Level.INFO)] == []
    assert level(results, "sender.reply-to") is Level.INFO  # absent Reply-To is reported, not judged
    assert len(results) == len({r.id for r in results})  # each id at most once
    assert all(r.ref and r.summary for r in results)


@pytest.mark.parametrize(("over", "extra", "expected"), [
    ({}, (), Level.PASS),
    ({"From": "alice@example.com"}, (), Level.PASS),
    ({"From": None}, (), Level.FAIL),
    ({}, (("From", "mallory@example.com"),), Level.FAIL),
    ({"From": "a@example.com, b@example.com"}, (), Level.FAIL),
    ({"From": "a@example.com <b@evil.test>"}, (), Level.FAIL),  # two mailboxes to a lax parser
    ({"From": "not an address"}, (), Level.FAIL),
    ({"From": ""}, (), Level.FAIL),
    ({"From": "Alice <@example.com>"}, (), Level.FAIL),
    ({"From": "Alice <alice@>"}, (), Level.FAIL),
    ({"From": "undisclosed-recipients:;"}, (), Level.FAIL),
])
def test_from_wants_exactly_one_mailbox(over, extra, expected):
    results = run(make(over, extra))
    assert level(results, "sender.from") is expected
    if expected is Level.FAIL:
        assert of(results, "sender.from")[0].fix


def test_several_from_fields_are_named_as_such():
    (found,) = of(run(make(extra=(("From", "mallory@example.com"),))), "sender.from")
    assert found.summary == "The message has 2 From fields"
    assert found.evidence["from-fields"] == "Alice <alice@example.com>, mallory@example.com"


@pytest.mark.parametrize(("address", "expected"), [
    ("alice@example.com", Level.PASS),
    ("administrators-team@example.com", Level.PASS),
    ("postmaster@example.com", Level.WARN),
    ("Abuse@example.com", Level.WARN),
    ("root+cron@example.com", Level.WARN),
    ("MAILER-DAEMON@example.com", Level.WARN),
    ("noc@example.com", Level.WARN),
    ("noreply@example.com", Level.INFO),
    ("no-reply@example.com", Level.INFO),
    ("do_not_reply@example.com", Level.INFO),
])
def test_role_address_in_from(address, expected):
    assert level(run(make({"From": f"Team <{address}>"})), "sender.role-address") is expected


def test_role_address_in_mail_from_is_info():
    results = run(make(), mail_from="postmaster@example.com")
    assert level(results, "sender.role-address") is Level.PASS  # From is judged on its own
    (found,) = of(results, "sender.envelope-role")
    assert found.level is Level.INFO and found.fix
    assert found.evidence["mail-from"] == "postmaster@example.com"
    clean = run(make(), mail_from="bounces@example.com")
    assert level(clean, "sender.role-address") is Level.PASS
    assert of(clean, "sender.envelope-role") == []


@pytest.mark.parametrize(("from_", "mail_from", "expected"), [
    ("alice@example.com", "bounce@example.com", Level.PASS),
    ("alice@example.com", "bounce@mail.example.com", Level.PASS),  # relaxed: same organisation
    ("alice@news.example.com", "bounce@example.com", Level.PASS),
    ("alice@example.com", "bounce@esp.test", Level.WARN),
    ("alice@shop.example.co.uk", "bounce@other.co.uk", Level.WARN),  # the PSL, not "last two labels"
    ("alice@shop.example.co.uk", "bounce@mail.example.co.uk", Level.PASS),
    ("alice@example.com", "", Level.INFO),  # null sender: a bounce
    ("alice@example.com", "bounce", Level.WARN),  # no domain at all
])
def test_alignment_of_from_and_mail_from(from_, mail_from, expected):
    found = of(run(make({"From": from_}), mail_from=mail_from, helo=None), "sender.alignment")
    assert [r.level for r in found] == [expected]
    if expected is Level.WARN:
        assert found[0].fix


@pytest.mark.parametrize(("helo", "extra_info"), [
    ("mail.example.com", False),
    ("smtp.bounce.example.com", False),
    ("mx.unrelated.test", True),
    ("[192.0.2.1]", False),
    ("192.0.2.1", False),
    ("localhost", False),
    ("host.localdomain", False),
    (None, False),
])
def test_alignment_mentions_an_unrelated_helo(helo, extra_info):
    results = run(make(), helo=helo)
    assert level(results, "sender.alignment") is Level.PASS  # HELO does not change the alignment verdict
    found = of(results, "sender.helo")
    infos = [r for r in found if r.level is Level.INFO and "HELO" in r.summary]
    assert bool(infos) is extra_info
    assert len(found) == extra_info
    if extra_info:
        assert found[0].evidence["helo"] == helo and found[0].fix


DN, CHARS, DOMAIN = "sender.display-name", "sender.display-name-chars", "sender.display-name-domain"


def display_name_results(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.id in (DN, CHARS, DOMAIN)]


@pytest.mark.parametrize(("from_", "expected"), [
    ("alice@example.com", [(DN, Level.PASS)]),
    ("Alice Liddell <alice@example.com>", [(DN, Level.PASS)]),
    ('"alice@example.com" <alice@example.com>', [(DN, Level.PASS)]),
    ('"Example.com Support" <alice@example.com>', [(DN, Level.PASS)]),
    ('"Node.js Team" <team@example.com>', [(DN, Level.PASS)]),
    ('"John Q. Public" <john@example.com>', [(DN, Level.PASS)]),
    ('"support@paypal.com" <x@evil.test>', [(DN, Level.FAIL)]),
    ('"PayPal <service@paypal.com>" <x@evil.test>', [(DN, Level.FAIL)]),
    ('"support\uff20paypal.com" <x@evil.test>', [(DN, Level.FAIL)]),  # fullwidth at sign
    ('"PayPal.com Support" <x@evil.test>', [(DOMAIN, Level.WARN), (DN, Level.PASS)]),
    ('"www.amazon.co.uk" <x@evil.test>', [(DOMAIN, Level.WARN), (DN, Level.PASS)]),
    ("Pay\u200bPal <x@evil.test>", [(CHARS, Level.WARN), (DN, Level.PASS)]),  # zero-width space
    ("Alice \u202eevil\u202c <alice@example.com>", [(CHARS, Level.WARN), (DN, Level.PASS)]),  # RTL override
    ('"support@pay\u200bpal.com" <x@evil.test>', [(CHARS, Level.WARN), (DN, Level.FAIL)]),
    ("=?utf-8?q?support=40paypal=2Ecom?= <x@evil.test>", [(DN, Level.FAIL)]),  # hidden in an encoded-word
    ("=?utf-8?b?UGF54oCuUGFs?= <x@evil.test>", [(CHARS, Level.WARN), (DN, Level.PASS)]),  # "Pay\u202ePal"
])
def test_display_name(from_, expected):
    found = display_name_results(run(make({"From": from_})))
    assert sorted(r.level.rank for r in found) == sorted(lv.rank for _, lv in expected)
    assert [(r.id, r.level) for r in found] == expected
    assert all(r.fix for r in found if r.level is not Level.PASS)


@pytest.mark.parametrize("from_", [
    '"Alice \x1b[2J\x1b]0;owned\x07" <alice@example.com>',
    "=?utf-8?q?Alice_=1B=5B2J=1B=5D0=3Bowned=07?= <alice@example.com>",
])
def test_display_name_with_escape_sequences_is_flagged_and_escaped(from_):
    found = display_name_results(run(make({"From": from_})))
    assert [(r.id, r.level) for r in found] == [(CHARS, Level.WARN), (DN, Level.PASS)]
    shown = found[0].evidence["display-name"]
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown == "Alice ␛[2J␛]0;owned^G"


def test_display_name_evidence_shows_bidi_as_code_points_and_is_capped():
    (found,) = of(run(make({"From": "Alice \u202eevil\u202c <alice@example.com>"})), CHARS)
    assert found.evidence["display-name"] == "Alice <U+202E>evil<U+202C>"
    (plain,) = of(run(make({"From": "Alice Liddell <alice@example.com>"})), DN)
    assert plain.evidence["display-name"] == "Alice Liddell"  # printable text is shown as is
    (long,) = of(run(make({"From": f'"{"x" * 300} support@paypal.com" <x@evil.test>'})), DN)
    assert long.level is Level.FAIL
    assert long.evidence["display-name"] == "x" * 200 + "…"


@pytest.mark.parametrize(("reply_to", "expected"), [
    (None, Level.INFO),
    ("alice@example.com", Level.PASS),
    ("Support <help@support.example.com>", Level.PASS),
    ("collector@evil.test", Level.WARN),
    ("alice@example.com, collector@evil.test", Level.WARN),
    ("nothing useful", Level.WARN),
])
def test_reply_to(reply_to, expected):
    assert level(run(make({"Reply-To": reply_to})), "sender.reply-to") is expected


def test_reply_to_without_a_from_mailbox_is_not_judged():
    assert level(run(make({"From": None, "Reply-To": "x@evil.test"})), "sender.reply-to") is Level.INFO


@pytest.mark.parametrize(("message_id", "expected"), [
    ("<abc123@example.com>", Level.PASS),
    ('<"odd id"@example.com>', Level.PASS),
    ("  <a.b.c@mail.example.com>  ", Level.PASS),
    (None, Level.WARN),
    ("", Level.WARN),
    ("abc123@example.com", Level.WARN),
    ("<abc123>", Level.WARN),
    ("<a b@example.com>", Level.WARN),
    ("<a@b@example.com>", Level.WARN),
    ("<<a@example.com>>", Level.WARN),
    ("<abc@localhost>", Level.WARN),
    ("<abc@localhost.localdomain>", Level.WARN),
    ("<abc@myhost>", Level.INFO),
    ("<abc@[192.0.2.1]>", Level.INFO),
])
def test_message_id(message_id, expected):
    found = of(run(make({"Message-ID": message_id})), "sender.message-id")
    assert [r.level for r in found] == [expected]
    if expected is not Level.PASS:
        assert found[0].fix


def test_two_message_ids_warn():
    assert level(run(make(extra=(("Message-ID", "<other@example.com>"),))), "sender.message-id") is Level.WARN


def _date(delta: timedelta) -> str:
    return (NOW + delta).strftime("%a, %d %b %Y %H:%M:%S +0000")


@pytest.mark.parametrize(("date", "expected"), [
    (_date(timedelta(minutes=-1)), Level.PASS),
    (_date(timedelta(minutes=10)), Level.PASS),
    (_date(timedelta(days=-2)), Level.PASS),
    ("Fri, 01 May 2026 14:00:00 +0200", Level.PASS),  # 12:00 UTC, written in another zone
    ("Fri, 01 May 2026 12:00:00 -0000", Level.PASS),  # -0000: UTC, zone unknown
    ("1 May 26 12:00 GMT", Level.PASS),  # obsolete two-digit year
    (_date(timedelta(minutes=20)), Level.WARN),
    ("Fri, 01 May 2026 12:00:00 -0200", Level.WARN),  # the offset sign is wrong: 2 hours ahead
    (_date(timedelta(days=-4)), Level.WARN),
    (None, Level.WARN),
    ("", Level.WARN),
    ("yesterday", Level.WARN),
    ("Mon, 99 Foo 99999 99:99:99 +9999", Level.WARN),
    ("Fri, 31 Dec 9999 23:59:59 -2359", Level.WARN),
    ("Mon, 01 Jan 0001 00:00:00 +2359", Level.WARN),
])
def test_date(date, expected):
    found = of(run(make({"Date": date})), "sender.date")
    assert [r.level for r in found] == [expected]
    if expected is Level.WARN:
        assert found[0].fix


def test_date_is_judged_against_the_arrival_not_the_clock():
    old = make({"Date": "Tue, 01 Jan 2019 10:00:00 +0000"})
    assert level(run(old), "sender.date") is Level.WARN
    arrived = datetime(2019, 1, 1, 10, 5, tzinfo=UTC)
    assert level(run(old, received_at=arrived), "sender.date") is Level.PASS


def test_a_naive_arrival_time_is_taken_as_utc():
    results = run(make(), received_at=NOW.replace(tzinfo=None))
    assert level(results, "sender.date") is Level.PASS


def test_two_dates_warn():
    assert level(run(make(extra=(("Date", _date(timedelta())),))), "sender.date") is Level.WARN


HOSTILE = {
    "empty": b"",
    "nul bytes": b"\x00" * 200,
    "only a blank line": b"\r\n\r\n",
    "no headers": b"\r\nJust a body\r\n",
    "body only, no blank line": b"Just some words without a colon\r\n",
    "invalid utf-8": b"From: \xff\xfe <a@\xff.example>\r\nReply-To: \xc3\x28@\xa0\r\nDate: \xff\r\n"
                     b"Message-ID: <\xff@\xfe>\r\nSubject: \xc3\x28\r\n\r\n\xff\xfe",
    "escape sequences": b"From: \x1b[31mRed\x1b[0m \x1b]0;title\x07 <a@example.com>\r\n\r\n",
    "nul in from": b"From: a\x00b <a@exa\x00mple.com>\r\nDate: \x00\r\n\r\n",
    "broken encoded words": b"From: =?x-unknown?b?!!!?= =?utf-8?q?=ZZ?= <a@example.com>\r\n\r\n",
    "unterminated quote": b'From: "unterminated <a@example.com>\r\nReply-To: <<<@>>>\r\n\r\n',
    "empty angle brackets": b"From: <>\r\nReply-To: <>\r\nMessage-ID: <>\r\n\r\n",
    "continuations only": b" folded\r\n\tmore\r\n\r\nbody",
    "bare cr": b"From: a@example.com\rSubject: x\r\rbody",
    "10,000 headers": b"".join(b"X-H-%d: v\r\n" % i for i in range(10_000)) + b"From: a@example.com\r\n\r\n",
    "10,000 from fields": b"From: a@example.com\r\n" * 10_000 + b"\r\n",
    "huge from": b"From: " + b"a" * 100_000 + b"@example.com\r\n\r\n",
    "huge display name": b'From: "' + b"x@y.com " * 20_000 + b'" <a@example.com>\r\n\r\n',
}
HOSTILE.update({f"random {seed}": random.Random(seed).randbytes(2_000) for seed in range(5)})


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("mail_from", ["", "postmaster@\x00", "a@b@c", "\x1b[0m@evil.test"])
def test_hostile_input_yields_results_not_exceptions(raw, mail_from):
    results = run(raw, mail_from=mail_from, helo="\x00\xff")
    assert of(results, "sender.from"), "sender.from is always judged"
    ids = [r.id for r in results]
    assert len(ids) == len(set(ids)), ids  # scripts key results by id
    for r in results:
        assert isinstance(r, CheckResult) and r.family == "sender" and r.summary
        assert isinstance(r.level, Level)
        for text in (r.summary, *r.evidence.values()):
            assert "\x1b" not in text and "\x00" not in text, (r.id, text)


def test_messages_without_a_from_fail_but_judge_the_rest():
    results = run(b"Subject: hi\r\n\r\nbody")
    assert level(results, "sender.from") is Level.FAIL
    assert level(results, "sender.message-id") is Level.WARN
    assert level(results, "sender.date") is Level.WARN
    assert not display_name_results(results)


def test_news_is_a_dedicated_address_not_a_role_address():
    """ESPs advise a dedicated From address such as news@ for newsletters; only admin roles are flagged."""
    (found,) = of(run(make({"From": "Shop News <news@example.com>"})), "sender.role-address")
    assert found.level is Level.PASS


# --- sender history (the store supplies it; the rule is judged from it alone) ---------------------------------

def _with_history(raw: bytes, history, ip: str = "192.0.2.10") -> list[CheckResult]:
    from lab.core.context import Options
    from lab.core.model import Client

    capture = Capture(raw, Envelope(mail_from="bounce@example.com", helo="mail.example.com"), received_at=NOW,
                      client=Client(ip=ip))
    return check_sender(Context(capture, dns=ZoneView(), options=Options(history=history)))


@pytest.mark.parametrize(("history", "ip", "expected"), [
    (None, "192.0.2.10", {}),  # no store (maillab check): no history results
    (("client 192.0.2.10", 0, (), ()), "192.0.2.10", {"sender.history": Level.INFO}),  # first sighting
    (("client 192.0.2.10", 5, ("alice@example.com",), ("192.0.2.10",)), "192.0.2.10",
     {"sender.history": Level.PASS}),
    (("client 192.0.2.10", 5, ("news@other.example",), ()), "192.0.2.10", {"sender.history": Level.WARN}),
    (("client 192.0.2.10", 5, ("bob@example.com",), ()), "192.0.2.10", {"sender.history": Level.INFO}),
    (("client 192.0.2.10", 5, ("alice@example.com",), ("192.0.2.10",)), "198.51.100.7",
     {"sender.history-ip": Level.WARN}),
])
def test_history_first_sighting_changed_domain_address_and_ip(history, ip, expected):
    from lab.core.model import SenderHistory

    h = SenderHistory(*history) if history else None
    found = {r.id: r.level for r in _with_history(make(), h, ip) if r.id.startswith("sender.history")}
    assert found == expected
    for r in _with_history(make(), h, ip):
        if r.id.startswith("sender.history") and r.level is not Level.PASS:
            assert r.fix


def test_the_store_remembers_senders_from_earlier_verdicts(tmp_path):
    from lab.core.analyse import analyse
    from lab.core.model import Client
    from lab.store import Store

    store = Store(tmp_path / "db")
    try:
        def judge(from_: str, ip: str):
            capture = Capture(make({"From": from_}), Envelope(mail_from="bounce@example.com"),
                              client=Client(ip=ip), received_at=NOW)
            mid = store.add(capture)
            capture = store.get(mid).capture
            message_history = store.history(capture, from_.split("<")[-1].rstrip(">"))
            store.save_verdict(mid, analyse(capture, ZoneView()), capture)
            return message_history

        first = judge("A <alice@example.com>", "192.0.2.10")
        assert first.earlier == 0
        second = judge("A <alice@example.com>", "192.0.2.10")
        assert (second.earlier, second.from_addresses, second.ips) == (1, ("alice@example.com",), ("192.0.2.10",))
        third = judge("N <news@other.example>", "192.0.2.10")
        assert third.from_addresses == ("alice@example.com",) and third.ips == ()
        assert judge("A <alice@example.com>", "198.51.100.7").ips == ("192.0.2.10",)
    finally:
        store.close()
