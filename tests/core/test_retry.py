"""The retry checks (sans-IO): each rule fires and does not fire, on attempt groups built by hand, and the
store's grouping of attempts with messages (real SQLite, no SMTP)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from support import capture, message

from lab.core.analyse import analyse
from lab.core.checks.retry import MAX_SHOWN, check_retries, check_retry
from lab.core.context import Context, Options
from lab.core.dnsview import ZoneView
from lab.core.model import DSN_STAGE, Attempt, Capture, Client, Envelope, Listener, Transport
from lab.core.results import Level
from lab.store import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
BOB = "bob@example.net"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def attempt(seconds: float, reply: str = "451 4.7.1 Greylisted", rcpt: str | None = BOB, stage: str = "rcpt",
            txn: str | None = None, **kw) -> Attempt:
    return Attempt(at=at(seconds), stage=stage, reply=reply, mail_from="alice@example.com", rcpt=rcpt,
                   txn=txn if txn is not None else f"t{seconds}", rule="rule #1 (test)", **kw)


def by_id(results) -> dict:
    return {r.id: r for r in results}


# the Attempt record ------------------------------------------------------------------------------------


def test_attempt_reply_parts():
    a = attempt(0, "451 4.7.1 <bob@example.net>: Greylisted")
    assert (a.code, a.status, a.temporary, a.permanent) == (451, "4.7.1", True, False)
    b = attempt(0, "550 5.1.1 User unknown")
    assert (b.code, b.status, b.temporary, b.permanent) == (550, "5.1.1", False, True)
    c = attempt(0, "554 Rejected")
    assert (c.code, c.status) == (554, None)
    dropped = attempt(0, "", disconnect=True)
    assert (dropped.code, dropped.temporary, dropped.permanent) == (None, True, False)
    assert not attempt(0, "").temporary  # no reply and no disconnect: nothing to retry


# retry.after_temporary ---------------------------------------------------------------------------------


def test_no_attempts_no_results():
    assert check_retries([]) == []
    assert check_retries([], accepted_at=at(0)) == []
    ctx = Context(capture(message()), ZoneView({}))
    assert check_retry(ctx) == []


def test_a_4xx_retried_after_a_pause_and_accepted_passes():
    r = by_id(check_retries([attempt(0)], accepted_at=at(90), accepted_rcpts=[BOB]))["retry.after_temporary"]
    assert (r.level, r.result) == (Level.PASS, "retried")
    assert r.evidence["gaps"] == "90.0 s" and "+0.0s 451 4.7.1 at rcpt" in r.evidence["timeline"]
    assert "+90.0s accepted" in r.evidence["timeline"] and r.ref == "RFC 5321 §4.5.4.1"


def test_a_4xx_not_retried_yet_is_information():
    r = by_id(check_retries([attempt(0)]))["retry.after_temporary"]
    assert (r.level, r.result) == (Level.INFO, "not-retried") and "not been retried" in r.summary


def test_a_retry_within_a_second_is_hammering():
    r = by_id(check_retries([attempt(0), attempt(0.3)], accepted_at=at(70)))["retry.after_temporary"]
    assert (r.level, r.result) == (Level.FAIL, "hammering") and "less than 1 s" in r.summary
    assert r.fix and "growing interval" in r.fix


def test_more_than_ten_tries_in_five_minutes_is_hammering_even_with_gaps_over_a_second():
    tries = [attempt(i * 20) for i in range(12)]
    r = by_id(check_retries(tries))["retry.after_temporary"]
    assert (r.level, r.result) == (Level.FAIL, "hammering") and "12 tries within 5 minutes" in r.summary
    spread = [attempt(i * 40) for i in range(9)]  # 9 tries over 320 s: at most 8 in any 5 minutes
    assert by_id(check_retries(spread))["retry.after_temporary"].result != "hammering"


def test_retries_at_a_fixed_interval_warn_and_growing_intervals_pass():
    fixed = [attempt(0), attempt(60), attempt(120), attempt(180)]
    r = by_id(check_retries(fixed, accepted_at=at(240)))["retry.after_temporary"]
    assert (r.level, r.result) == (Level.WARN, "no-backoff") and "no back-off" in r.summary
    growing = [attempt(0), attempt(60), attempt(180), attempt(420)]
    r = by_id(check_retries(growing, accepted_at=at(900)))["retry.after_temporary"]
    assert (r.level, r.result) == (Level.PASS, "retried")
    two = [attempt(0), attempt(60)]  # too few retries to call it "no back-off"
    assert by_id(check_retries(two, accepted_at=at(120)))["retry.after_temporary"].level is Level.PASS


def test_recipients_refused_in_one_transaction_are_one_try():
    same = [attempt(0, rcpt=BOB, txn="c1.1"), attempt(0.001, rcpt="carol@example.net", txn="c1.1")]
    r = by_id(check_retries(same, accepted_at=at(120)))["retry.after_temporary"]
    assert r.level is Level.PASS and "(+1 recipients)" in r.evidence["timeline"]
    apart = [attempt(0, rcpt=BOB, txn="c1.1"), attempt(0.001, rcpt="carol@example.net", txn="c2.1")]
    assert by_id(check_retries(apart, accepted_at=at(120)))["retry.after_temporary"].level is Level.FAIL


def test_a_dropped_connection_counts_as_a_temporary_failure():
    r = by_id(check_retries([attempt(0, "", stage="data", disconnect=True)], accepted_at=at(60)))
    assert r["retry.after_temporary"].level is Level.PASS and "a dropped connection" in r[
        "retry.after_temporary"].summary


def test_only_permanent_refusals_give_no_temporary_result():
    assert "retry.after_temporary" not in by_id(check_retries([attempt(0, "550 5.1.1 no")]))


# retry.after_permanent ---------------------------------------------------------------------------------


def test_tried_again_after_a_5xx_fails():
    r = by_id(check_retries([attempt(0, "550 5.1.1 User unknown"), attempt(300, "550 5.1.1 User unknown")]))
    f = r["retry.after_permanent"]
    assert (f.level, f.result, f.ref) == (Level.FAIL, "retried", "RFC 5321 §4.2.1")
    assert "550 5.1.1" in f.summary and "1 more try" in f.summary and "suppress" in f.fix
    accepted = by_id(check_retries([attempt(0, "550 5.1.1 no")], accepted_at=at(60), accepted_rcpts=[BOB]))
    assert accepted["retry.after_permanent"].level is Level.FAIL


def test_a_5xx_not_retried_passes_and_another_recipient_is_not_a_retry():
    r = by_id(check_retries([attempt(0, "550 5.1.1 no")]))["retry.after_permanent"]
    assert (r.level, r.result) == (Level.PASS, "stopped")
    other = [attempt(0, "550 5.1.1 no", rcpt=BOB), attempt(60, "451 4.7.1 later", rcpt="carol@example.net")]
    assert by_id(check_retries(other))["retry.after_permanent"].level is Level.PASS


def test_a_5xx_before_rcpt_covers_every_recipient():
    mail = attempt(0, "554 5.7.1 Sender rejected", rcpt=None, stage="mail")
    r = by_id(check_retries([mail], accepted_at=at(60), accepted_rcpts=["carol@example.net"]))
    assert r["retry.after_permanent"].level is Level.FAIL


# retry.after_bounce --------------------------------------------------------------------------------------


def bounce(seconds: float, rcpt: str = BOB) -> Attempt:
    return Attempt(at=at(seconds), stage=DSN_STAGE, reply="550 5.1.1 <bob@example.net>: User unknown",
                   mail_from="alice@example.com", rcpt=rcpt, message=7, dsn=8, rule="built-in")


def test_mailing_a_recipient_again_after_a_dsn_warns():
    r = by_id(check_retries([bounce(0)], accepted_at=at(3600), accepted_rcpts=[BOB]))["retry.after_bounce"]
    assert (r.level, r.result) == (Level.WARN, "mailed-again")
    assert r.evidence["dsn-status"] == "5.1.1" and r.evidence["dsn-message"] == "8" and "Final-Recipient" in r.fix


def test_a_dsn_without_a_later_try_or_for_another_recipient_passes():
    assert by_id(check_retries([bounce(0)]))["retry.after_bounce"].level is Level.PASS
    other = by_id(check_retries([bounce(0, "carol@example.net")], accepted_at=at(60), accepted_rcpts=[BOB]))
    assert other["retry.after_bounce"].level is Level.PASS


# through analyse() ---------------------------------------------------------------------------------------


def test_analyse_judges_the_attempts_in_the_options(view):
    cap = capture(message(), received_at=at(120))
    verdict = analyse(cap, view, options=Options(attempts=(attempt(0),)))
    assert {c.id: c.level for c in verdict.checks}["retry.after_temporary"] is Level.PASS
    assert not [c for c in analyse(cap, view).checks if c.family == "retry"]


def test_mail_the_lab_wrote_is_not_judged_as_if_a_client_sent_it(view):
    raw = message(from_="Mail Delivery System <MAILER-DAEMON@maillab.localhost>", to="alice@example.com")
    cap = Capture(raw, Envelope(mail_from="", rcpt_to=("alice@example.com",), helo="maillab.localhost"),
                  Transport(Listener.LAB), Client(ip="127.0.0.1", source="lab"))
    verdict = analyse(cap, view, options=Options(attempts=(attempt(0),)))
    families = {c.family for c in verdict.checks}
    assert not families & {"transport", "spf", "client", "blocklist", "retry"} - {"transport"}
    assert [c.id for c in verdict.checks if c.family == "transport"] == ["transport.generated"]
    normal = analyse(capture(raw), view)
    assert {"spf", "client"} <= {c.family for c in normal.checks}


def test_a_hostile_group_is_bounded():
    many = [attempt(i * 0.01, txn=f"x{i}") for i in range(20_000)]
    t = time.perf_counter()
    results = check_retries(many, accepted_at=at(1000))
    assert time.perf_counter() - t < 2
    timeline = by_id(results)["retry.after_temporary"].evidence["timeline"]
    assert timeline.count(";") <= MAX_SHOWN and "more" in timeline


# the store groups attempts with messages ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "m.db")
    yield s
    s.close()


def stored(store: Store, seconds: float, rcpt: str = BOB, mail_from: str = "alice@example.com",
           raw: bytes | None = None) -> Capture:
    cap = Capture(raw or message(), Envelope(mail_from=mail_from, rcpt_to=(rcpt,)), Transport(Listener.RELAY),
                  received_at=at(seconds))
    mid = store.add(cap)
    return store.get(mid).capture


def test_a_message_groups_earlier_refusals_for_its_sender_and_recipient(store):
    store.add_attempt(attempt(0))
    store.add_attempt(attempt(10, rcpt="carol@example.net"))  # another recipient
    store.add_attempt(Attempt(at=at(20), stage="rcpt", reply="451 4.7.1 x", mail_from="mallory@example.com",
                              rcpt=BOB))  # another sender
    store.add_attempt(attempt(30, rcpt="BOB@Example.NET"))  # the same pair, in another case
    cap = stored(store, 100, mail_from="Alice@Example.com")
    group = store.attempt_group(cap)
    assert [a.at for a in group] == [at(0), at(30)]
    assert store.attempt_group(stored(store, 200)) == ()  # the delivery ended the previous group


def test_older_than_five_days_and_later_attempts_are_not_in_the_group(store):
    store.add_attempt(attempt(-6 * 86400))
    store.add_attempt(attempt(-4 * 86400))
    store.add_attempt(attempt(500))  # after the message
    assert [a.at for a in store.attempt_group(stored(store, 100))] == [at(-4 * 86400)]


def test_same_message_id_groups_across_senders(store):
    raw = message()
    msgid = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    store.add_attempt(attempt(0, "451 4.3.0 later", stage="end-of-data", message_id=msgid, rcpt="x@example.org"))
    cap = stored(store, 60, raw=raw, mail_from="other@example.com")
    assert store.attempt_group(cap) == ()
    (a,) = store.attempt_group(cap, msgid)
    assert a.message_id == msgid


def test_bounces_survive_the_delivery_that_caused_them_and_lab_mail_has_no_group(store):
    first = stored(store, 0)
    store.add_attempt(bounce(1))
    again = stored(store, 60)
    (b,) = store.attempt_group(again)
    assert b.stage == DSN_STAGE and b.message == 7 and b.dsn == 8
    assert store.attempt_group(first) == ()
    lab = Capture(b"x", Envelope(rcpt_to=("alice@example.com",)), Transport(Listener.LAB), received_at=at(70))
    assert store.attempt_group(Capture(lab.raw, lab.envelope, lab.transport, received_at=at(70), id=99)) == ()


def test_attempt_groups_split_at_deliveries(store):
    store.add_attempt(attempt(0))
    store.add_attempt(attempt(60))
    delivered = stored(store, 120)
    store.add_attempt(attempt(200, "550 5.1.1 gone"))
    store.add_attempt(Attempt(at=at(300), stage="connect", reply="421 4.7.0 busy", client_ip="192.0.2.9"))
    groups = store.attempt_groups()
    by_end = {(g.rcpt, g.message): g for g in groups}
    assert [a.at for a in by_end[(BOB, delivered.id)].attempts] == [at(0), at(60)]
    assert [a.code for a in by_end[(BOB, None)].attempts] == [550]
    assert by_end[(None, None)].client_ip == "192.0.2.9"
    assert groups[0].client_ip == "192.0.2.9"  # the most recent activity first
    assert len(store.attempt_groups(limit=1)) == 1


def test_clear_removes_attempts_and_pruning_bounds_them(store):
    store.add_attempt(attempt(0), [[0, ">", "RCPT TO:<bob@example.net>"]])
    (a,) = store.attempts()
    assert store.attempt(a.id)[1] == [[0, ">", "RCPT TO:<bob@example.net>"]]
    store.clear()
    assert store.count_attempts() == 0
    from lab.store import flat

    store.add_flat([flat(attempt(i), []) for i in range(5)], keep=3)
    assert store.count_attempts() == 3


def test_a_provider_profile_does_not_judge_the_lab_s_own_bounces(view):
    """Found trying the lab with --profile gmail: its DSN was "rejected by Gmail" and marked FAIL."""
    from lab.core.profiles import get_profile

    raw = message(from_="Mail Delivery System <MAILER-DAEMON@maillab.localhost>", to="alice@example.com")
    lab_mail = Capture(raw, Envelope(mail_from="", rcpt_to=("alice@example.com",), helo="maillab.localhost"),
                       Transport(Listener.LAB), Client(ip="127.0.0.1", source="lab"))
    verdict = analyse(lab_mail, view, options=Options(profile=get_profile("gmail")))
    assert verdict.profile == "none" and not [c for c in verdict.checks if c.family == "bulk"]
    sent = analyse(capture(raw), view, options=Options(profile=get_profile("gmail")))
    assert sent.profile == "gmail" and [c for c in sent.checks if c.family == "bulk"]
