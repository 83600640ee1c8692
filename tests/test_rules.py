"""Tests for scripted receiver behaviour (lab.rules): every matcher and stage both ways, the built-in local
parts, greylisting and rate limits on a fake clock, probability with a seeded RNG, reloading, and rules
files that are wrong or hostile."""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest
from support import FIXTURES

import lab.rules as rules_module
from lab.rules import (
    DEFAULT_RULES,
    MAX_VALUE,
    STAGES,
    Action,
    Facts,
    Greylist,
    RateLimit,
    RulesError,
    RuleSet,
    RulesFile,
    load_rules,
    load_rules_text,
)


def only(toml: str) -> RuleSet:
    """The rules in `toml` without the built-in ones."""
    return load_rules_text("builtin = false\n" + toml, "test.toml")


def rcpt(address: str, **kw) -> Facts:
    base = {"listener": "relay", "client_ip": "192.0.2.10", "helo": "mail.example.com",
            "mail_from": "alice@example.com"}
    return Facts("rcpt", rcpt=address, **{**base, **kw})


def fires(rs: RuleSet, facts: Facts, now: float = 0.0) -> Action | None:
    return rs.decide(facts, now=now, rng=random.Random(0))


# the built-in local parts ----------------------------------------------------------------------------------


DEFAULTS = RuleSet.default


@pytest.mark.parametrize("address", ["bounce-hard@example.net", "Bounce-Hard@EXAMPLE.NET", "bounce-hard+t1@x.test"])
def test_bounce_hard_is_user_unknown_at_rcpt(address):
    action = fires(DEFAULTS(), rcpt(address))
    assert action.reply == f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    assert not action.dsn and not action.disconnect and action.delay == 0
    assert "built-in" in action.rule


@pytest.mark.parametrize("address", ["bob@example.net", "not-bounce-hard@example.net", "bounce-hardly@example.net",
                                     "bounce-hard.x@example.net"])
def test_ordinary_recipients_are_left_alone(address):
    assert fires(DEFAULTS(), rcpt(address)) is None


def test_bounce_hard_only_as_a_recipient():
    facts = Facts("mail", "relay", "192.0.2.10", "mail.example.com", mail_from="bounce-hard@example.net")
    assert fires(DEFAULTS(), facts) is None


def test_bounce_hard_dsn_variant_accepts_then_bounces():
    action = fires(DEFAULTS(), rcpt("bounce-hard+dsn@example.net"))
    assert action.reply is None and action.dsn and not action.autoreply
    assert action.dsn_reply == "550 5.1.1 <bounce-hard+dsn@example.net>: Recipient address rejected: User unknown"
    assert action.dsn_status == "5.1.1"


def test_bounce_soft_is_mailbox_full_and_its_dsn_is_delayed():
    action = fires(DEFAULTS(), rcpt("bounce-soft@example.net"))
    assert action.reply == "452 4.2.2 <bounce-soft@example.net>: Recipient address rejected: Mailbox full"
    action = fires(DEFAULTS(), rcpt("bounce-soft+dsn@example.net"))
    assert action.reply is None and action.dsn and action.dsn_status == "4.2.2"


def test_ooo_accepts_and_asks_for_an_autoreply():
    action = fires(DEFAULTS(), rcpt("ooo@example.net"))
    assert action.reply is None and action.autoreply and not action.dsn
    assert action.autoreply_text is None  # dsn.DEFAULT_AUTOREPLY


def test_greylist_local_part_without_a_file():
    rs = DEFAULTS()
    first = rs.decide(rcpt("greylist@example.net"), now=1000.0)
    assert first.reply == ("451 4.7.1 <greylist@example.net>: Recipient address rejected: Greylisted, "
                           "try again in 60 seconds")
    assert rs.decide(rcpt("greylist@example.net"), now=1030.0).reply.endswith("try again in 30 seconds")
    assert rs.decide(rcpt("greylist@example.net"), now=1060.0) is None


def test_default_rules_only_ask_at_rcpt():
    assert DEFAULTS().stages == {"rcpt"}
    assert len(DEFAULT_RULES) == 6
    for stage in STAGES:
        if stage != "rcpt":
            assert fires(DEFAULTS(), Facts(stage, "relay", "192.0.2.10", "h", "a@b", "bounce-hard@x")) is None


def test_builtin_false_drops_them_and_file_rules_come_first():
    assert fires(only('[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 no"\n'), rcpt("bounce-hard@example.net")) is None
    rs = load_rules_text('[[rule]]\nrcpt = "bounce-hard@*"\nreply = "250 2.1.5 OK, really"\n', "t.toml")
    assert fires(rs, rcpt("bounce-hard@example.net")).reply == "250 2.1.5 OK, really"
    assert fires(rs, rcpt("bounce-soft@example.net")).reply.startswith("452 4.2.2")


# matchers --------------------------------------------------------------------------------------------------


MATCHERS = [
    # (rule matcher line, stage, facts that match, facts that do not)
    ('listener = "submission"', "connect", {"listener": "submission"}, {"listener": "relay"}),
    ('listener = ["SMTPS", "relay"]', "connect", {"listener": "smtps"}, {"listener": "submission"}),
    ('listener = "s*"', "connect", {"listener": "submission"}, {"listener": "relay"}),
    ('client_ip = "192.0.2.0/24"', "connect", {"client_ip": "192.0.2.200"}, {"client_ip": "192.0.3.1"}),
    ('client_ip = "192.0.2.7"', "connect", {"client_ip": "192.0.2.7"}, {"client_ip": "192.0.2.8"}),
    ('client_ip = "2001:db8::/32"', "connect", {"client_ip": "2001:db8:1::5"}, {"client_ip": "2001:db9::5"}),
    ('client_ip = "::/0"', "connect", {"client_ip": "::1"}, {"client_ip": "127.0.0.1"}),  # versions never mix
    ('client_ip = "0.0.0.0/0"', "connect", {"client_ip": "10.0.0.1"}, {"client_ip": "not-an-ip"}),
    ('helo = "*.example.com"', "helo", {"helo": "MX1.Example.COM"}, {"helo": "example.com"}),
    ('helo = "re:^[0-9.]+$"', "helo", {"helo": "192.0.2.1"}, {"helo": "mail.example.com"}),
    ('helo = "re:^mx\\\\."', "helo", {"helo": "MX.example.com"}, {"helo": "smtp.example.com"}),  # domain: lower
    ('mail_from = "*@example.com"', "mail", {"mail_from": "Alice@EXAMPLE.com"}, {"mail_from": "a@example.org"}),
    ('mail_from = "<>"', "mail", {"mail_from": ""}, {"mail_from": "a@example.com"}),
    ('mail_from = "re:@example\\\\.com$"', "mail", {"mail_from": "a@EXAMPLE.COM"}, {"mail_from": "a@example.co"}),
    ('mail_from = "re:^Alice@"', "mail", {"mail_from": "Alice@x.test"}, {"mail_from": "alice@x.test"}),  # local part
    ('mail_from = "a?c@x.test"', "mail", {"mail_from": "abc@x.test"}, {"mail_from": "abbc@x.test"}),
    ('mail_from = "[ab]*@x.test"', "mail", {"mail_from": "b1@x.test"}, {"mail_from": "c1@x.test"}),
    ('auth_user = "app*"', "mail", {"auth_user": "App-prod"}, {"auth_user": "web"}),
    ('auth_user = "re:^ci-[0-9]+$"', "mail", {"auth_user": "ci-42"}, {"auth_user": None}),  # unauthenticated
    ('rcpt = ["a@x.test", "re:^b[0-9]@"]', "rcpt", {"rcpt": "b7@y.test"}, {"rcpt": "c@x.test"}),
    ('rcpt = "*"', "rcpt", {"rcpt": "anyone@anywhere.test"}, {"rcpt": None}),
    ("size_min = 1000", "mail", {"size": 1000}, {"size": 999}),
    ("size_max = 1000", "mail", {"size": 1000}, {"size": 1001}),
    ("size_min = 10\nsize_max = 20", "end-of-data", {"size": 15}, {"size": None}),  # no SIZE=: not known
]


@pytest.mark.parametrize("line, stage, yes, no", MATCHERS)
def test_each_matcher_both_ways(line, stage, yes, no):
    rs = only(f'[[rule]]\nstage = "{stage}"\n{line}\nreply = "554 5.7.1 matched"\n')
    base = {"listener": "relay", "client_ip": "192.0.2.10", "helo": "h.example", "mail_from": "m@example.com",
            "rcpt": "r@example.net", "auth_user": "someone", "size": 500}
    assert fires(rs, Facts(stage, **{**base, **yes})).reply == "554 5.7.1 matched"
    assert fires(rs, Facts(stage, **{**base, **no})) is None


def test_all_matchers_must_hold():
    rs = only('[[rule]]\nclient_ip = "192.0.2.0/24"\nrcpt = "x@*"\nreply = "550 5.7.1 both"\n')
    assert fires(rs, rcpt("x@y.test")).reply == "550 5.7.1 both"
    assert fires(rs, rcpt("x@y.test", client_ip="198.51.100.1")) is None
    assert fires(rs, rcpt("z@y.test")) is None


def test_long_values_are_matched_on_a_bounded_prefix():
    rs = only('[[rule]]\nrcpt = "re:^a+@"\nreply = "550 5.1.1 x"\n')
    t0 = time.perf_counter()
    assert fires(rs, rcpt("a" * 100_000 + "@x.test")) is None  # the @ lies past MAX_VALUE
    assert fires(rs, rcpt("a" * (MAX_VALUE - 10) + "@x.test")).reply == "550 5.1.1 x"
    assert time.perf_counter() - t0 < 1


# stages ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_a_rule_fires_only_at_its_stage(stage):
    reply = {"connect": "554 5.7.1 go away", "data": "554 5.7.1 no data"}.get(stage, "550 5.7.1 no")
    rs = only(f'[[rule]]\nstage = "{stage}"\nlistener = "relay"\nreply = "{reply}"\n')
    assert rs.stages == {stage}
    for other in STAGES:
        action = fires(rs, Facts(other, "relay", "192.0.2.10", "h", "a@b.test", "c@d.test", None, 10))
        assert (action is not None) == (other == stage), other


@pytest.mark.parametrize("body, stage", [
    ('reply = "554 5.7.1 no"', "connect"),
    ('listener = "relay"\nreply = "554 5.7.1 no"', "connect"),
    ('helo = "x"\nreply = "550 5.7.1 no"', "helo"),
    ('mail_from = "x"\nreply = "550 5.7.1 no"', "mail"),
    ('auth_user = "x"\nreply = "550 5.7.1 no"', "mail"),
    ('size_max = 5\nreply = "552 5.3.4 no"', "mail"),
    ('rcpt = "x"\nhelo = "y"\nreply = "550 5.7.1 no"', "rcpt"),
    ("greylist = true", "rcpt"),
    ("dsn = true", "rcpt"),
    ("autoreply = true", "rcpt"),
])
def test_stage_defaults_to_the_first_that_knows_every_fact(body, stage):
    (rule,) = only(f"[[rule]]\n{body}\n").rules
    assert rule.stage == stage


def test_first_match_wins_in_order():
    rs = only('[[rule]]\nrcpt = "a*"\nreply = "550 5.7.1 first"\n'
              '[[rule]]\nrcpt = "ab*"\nreply = "550 5.7.1 second"\n')
    assert fires(rs, rcpt("abc@x.test")).reply == "550 5.7.1 first"
    assert "#1" in fires(rs, rcpt("abc@x.test")).rule


# actions ---------------------------------------------------------------------------------------------------


def test_reply_placeholders_are_filled_and_made_safe():
    rs = only('[[rule]]\nrcpt = "*"\n'
              'reply = "550 5.7.1 {rcpt} from {mail_from} via {client_ip} {helo} {listener} {auth_user} {{literal}}"\n')
    action = fires(rs, rcpt("bob@x.test", helo="evil\r\n250 OK", auth_user=None))
    assert action.reply == "550 5.7.1 bob@x.test from alice@example.com via 192.0.2.10 evil??250 OK relay  {literal}"
    long = fires(rs, rcpt("b" * 5000 + "@x.test")).reply
    assert len(long) <= rules_module.MAX_REPLY - 2


def test_delay_disconnect_and_421():
    rs = only('[[rule]]\nstage = "connect"\ndelay = 2.5\n'
              '[[rule]]\nstage = "data"\ndisconnect = true\n'
              '[[rule]]\nstage = "helo"\nreply = "421 4.7.0 closing"\n')
    slow = fires(rs, Facts("connect", "relay", "192.0.2.1"))
    assert slow.delay == 2.5 and slow.reply is None and not slow.disconnect
    hang = fires(rs, Facts("data", "relay", "192.0.2.1"))
    assert hang.disconnect and hang.reply is None
    closing = fires(rs, Facts("helo", "relay", "192.0.2.1", "h"))
    assert closing.disconnect  # RFC 5321 §3.8: 421 closes the connection


def test_dsn_and_autoreply_texts():
    rs = only('[[rule]]\nrcpt = "gone@*"\ndsn = "551 5.1.6 <{rcpt}>: moved"\n'
              '[[rule]]\nstage = "end-of-data"\nrcpt = "away@*"\nautoreply = "Back Monday."\n')
    gone = fires(rs, rcpt("gone@x.test"))
    assert gone.dsn and gone.dsn_reply == "551 5.1.6 <gone@x.test>: moved" and gone.dsn_status == "5.1.6"
    away = fires(rs, Facts("end-of-data", "relay", "192.0.2.1", rcpt="away@x.test", size=100))
    assert away.autoreply and away.autoreply_text == "Back Monday."


# greylisting -----------------------------------------------------------------------------------------------


def test_greylist_timeline():
    g = Greylist(delay=300, expire=3600, keep=86400)
    t = ("192.0.2.10", "alice@example.com", "bob@example.net")
    assert g.attempt(*t, now=0) == 300  # first attempt: 451
    assert g.attempt(*t, now=100) == 200  # too early: still refused, the clock is not reset
    assert g.attempt(*t, now=299.5) == 0.5
    assert g.attempt(*t, now=300) is None  # retried after the delay: accepted
    assert g.attempt(*t, now=301) is None  # and from now on
    assert g.attempt(*t, now=300 + 86400) is None  # within `keep` of the last use
    assert g.attempt(*t, now=300 + 86400 * 2 + 1) == 300  # unused for longer than keep: starts over


def test_greylist_retry_window_expires():
    g = Greylist(delay=300, expire=3600)
    t = ("192.0.2.10", "alice@example.com", "bob@example.net")
    assert g.attempt(*t, now=0) == 300
    assert g.attempt(*t, now=3601) == 300  # the retry came too late: a new first attempt
    assert g.attempt(*t, now=3800) == 101
    assert g.attempt(*t, now=3901) is None


def test_greylist_triplet_is_slash24_sender_recipient():
    g = Greylist(delay=60)
    assert g.attempt("192.0.2.10", "a@x.test", "b@y.test", now=0) == 60
    assert g.attempt("192.0.2.99", "A@X.TEST", "B@Y.test", now=60) is None  # same /24, case ignored
    assert g.attempt("192.0.3.10", "a@x.test", "b@y.test", now=60) == 60  # another network
    assert g.attempt("192.0.2.10", "a@x.test", "c@y.test", now=60) == 60  # another recipient
    assert g.attempt("192.0.2.10", "z@x.test", "b@y.test", now=60) == 60  # another sender
    assert g.attempt("2001:db8:0:1::1", "a@x.test", "b@y.test", now=0) == 60
    assert g.attempt("2001:db8:0:1:ffff::2", "a@x.test", "b@y.test", now=60) is None  # same /64


def test_greylist_clock_is_injectable_and_table_bounded():
    now = [0.0]
    g = Greylist(delay=10, clock=lambda: now[0], max_entries=3)
    assert g.attempt("192.0.2.1", "a@x.test", "b@y.test") == 10
    now[0] = 10.0
    assert g.attempt("192.0.2.1", "a@x.test", "b@y.test") is None
    for i in range(10):
        g.attempt("192.0.2.1", f"s{i}@x.test", "b@y.test")
    assert len(g.entries) == 3


def test_greylist_rule_with_settings_and_custom_reply():
    rs = only('[greylist]\ndelay = 120\nexpire = 600\n'
              '[[rule]]\nclient_ip = "198.51.100.0/24"\ngreylist = true\n'
              'reply = "450 4.2.0 <{rcpt}>: Greylisted, {remaining}s"\n'
              '[[rule]]\nrcpt = "*"\nreply = "250 2.1.5 after greylisting"\n')
    facts = rcpt("bob@x.test", client_ip="198.51.100.7")
    assert rs.decide(facts, now=0).reply == "450 4.2.0 <bob@x.test>: Greylisted, 120s"
    assert rs.decide(facts, now=119.2).reply == "450 4.2.0 <bob@x.test>: Greylisted, 1s"
    assert rs.decide(facts, now=120).reply == "250 2.1.5 after greylisting"  # passed: the next rule decides
    assert rs.decide(rcpt("bob@x.test", client_ip="192.0.2.1"), now=0).reply == "250 2.1.5 after greylisting"


# rate limits -----------------------------------------------------------------------------------------------


def test_rate_limit_timeline_counts_every_attempt():
    r = RateLimit(count=3, window=60)
    assert [r.hit("192.0.2.1", t) for t in (0, 1, 2)] == [False, False, False]
    assert r.hit("192.0.2.1", 3) is True  # the 4th within a minute
    assert r.hit("192.0.2.2", 3) is False  # per client IP
    assert r.hit("192.0.2.1", 60.5) is True  # the refused attempt at 3 still counts
    assert r.hit("192.0.2.1", 63.0) is False  # everything but 60.5 is a minute old


def test_rate_limit_memory_is_bounded():
    r = RateLimit(count=2, window=60, max_clients=5)
    for i in range(100):
        r.hit(f"10.0.0.{i}", 0)
    assert len(r.hits) == 5 and all(len(d) <= 2 for d in r.hits.values())


def test_rate_rules_default_replies():
    rs = only('[[rule]]\nstage = "connect"\nrate = { count = 2, window = 60 }\n'
              '[[rule]]\nstage = "mail"\nrate = { count = 1, window = 10 }\n')
    conn = Facts("connect", "relay", "192.0.2.1")
    assert fires(rs, conn, 0) is None and fires(rs, conn, 1) is None
    over = fires(rs, conn, 2)
    assert over.reply == "421 4.7.0 Error: too many connections from 192.0.2.1" and over.disconnect
    mail = Facts("mail", "relay", "192.0.2.1", "h", "a@x.test")
    assert fires(rs, mail, 0) is None
    assert fires(rs, mail, 1).reply == "450 4.7.1 Error: too much mail from 192.0.2.1"
    assert not fires(rs, mail, 2).disconnect


# probability -----------------------------------------------------------------------------------------------


def test_probability_with_a_seeded_rng_is_exact():
    rs = only('[[rule]]\nrcpt = "*"\nprobability = 0.3\nreply = "451 4.3.0 chaos"\n')
    rng = random.Random(42)
    got = [rs.decide(rcpt("b@x.test"), now=0, rng=rng) is not None for _ in range(1000)]
    replay = random.Random(42)
    assert got == [replay.random() < 0.3 for _ in range(1000)]
    assert 250 < sum(got) < 350


def test_probability_zero_never_one_always_and_a_miss_falls_through():
    rs = only('[[rule]]\nrcpt = "*"\nprobability = 0\nreply = "451 4.3.0 never"\n'
              '[[rule]]\nrcpt = "*"\nreply = "550 5.7.1 always"\n')
    rng = random.Random(7)
    state = rng.getstate()
    assert rs.decide(rcpt("b@x.test"), now=0, rng=rng).reply == "550 5.7.1 always"
    rng2 = random.Random(7)
    rng2.random()
    assert rng.getstate() == rng2.getstate()  # only the probability-0 rule drew a number
    sure = only('[[rule]]\nrcpt = "*"\nreply = "550 5.7.1 always"\n')
    rng3 = random.Random(7)
    sure.decide(rcpt("b@x.test"), now=0, rng=rng3)
    assert rng3.getstate() == state  # a rule without a probability draws nothing


def test_probability_skip_touches_no_greylist_state():
    rs = only('[[rule]]\nrcpt = "*"\ngreylist = true\nprobability = 0.5\n')
    assert random.Random(0).random() >= 0.5 > random.Random(1).random()
    assert rs.decide(rcpt("b@x.test"), now=0, rng=random.Random(0)) is None  # not drawn: skipped
    assert len(rs.greylist.entries) == 0
    assert rs.decide(rcpt("b@x.test"), now=0, rng=random.Random(1)).reply.startswith("451 4.7.1")
    assert len(rs.greylist.entries) == 1


# reloading -------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_rules_file_reloads_on_change_at_most_once_a_second(tmp_path):
    path = tmp_path / "rules.toml"
    write(path, '[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 old"\n', 0)
    clock = Clock()
    seen = []
    rf = RulesFile(path, clock=clock, on_change=lambda rs, err: seen.append(err))
    assert rf.decide(rcpt("x@y.test"), now=0).reply == "550 5.1.1 old"
    write(path, '[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 new"\n', 5)
    clock.t += 0.5
    assert rf.decide(rcpt("x@y.test"), now=0).reply == "550 5.1.1 old"  # not looked at yet
    clock.t += 0.6
    assert rf.decide(rcpt("x@y.test"), now=0).reply == "550 5.1.1 new"
    assert rf.reloads == 1 and rf.error is None and seen == [None]
    clock.t += 5
    assert rf.poll() is False  # unchanged: not read again
    assert rf.reloads == 1


def test_broken_reload_keeps_the_old_rules_and_says_why(tmp_path):
    path = tmp_path / "rules.toml"
    write(path, '[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 good"\n', 0)
    clock = Clock()
    seen = []
    rf = RulesFile(path, clock=clock, on_change=lambda rs, err: seen.append(err))
    write(path, '[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 good"\n[[rule]]\nrcpt = "y@*"\nrepyl = "550 x"\n', 5)
    clock.t += 2
    assert rf.poll() is False
    assert rf.decide(rcpt("x@y.test"), now=0).reply == "550 5.1.1 good"
    assert str(path) in rf.error and "[[rule]] #2" in rf.error and "repyl" in rf.error and "'reply'" in rf.error
    assert seen == [rf.error]
    write(path, '[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 fixed"\n', 10)
    clock.t += 2
    assert rf.poll() is True
    assert rf.error is None and rf.decide(rcpt("x@y.test"), now=0).reply == "550 5.1.1 fixed"


def test_deleted_file_keeps_rules_and_reports(tmp_path):
    path = tmp_path / "rules.toml"
    write(path, '[[rule]]\nrcpt = "x@*"\nreply = "550 5.1.1 kept"\n', 0)
    clock = Clock()
    rf = RulesFile(path, clock=clock)
    path.unlink()
    clock.t += 2
    assert rf.poll() is False
    assert "cannot read" in rf.error
    assert rf.decide(rcpt("x@y.test"), now=0).reply == "550 5.1.1 kept"


def test_reload_keeps_greylist_and_rate_state(tmp_path):
    path = tmp_path / "rules.toml"
    body = ('[[rule]]\nname = "grey"\nrcpt = "g@*"\ngreylist = true\n'
            '[[rule]]\nname = "rate"\nstage = "connect"\nrate = { count = 1, window = 60 }\n')
    write(path, body, 0)
    clock = Clock()
    rf = RulesFile(path, clock=clock)
    assert rf.decide(rcpt("g@x.test"), now=0).reply.startswith("451 4.7.1")
    assert rf.decide(Facts("connect", "relay", "192.0.2.1"), now=0) is None
    write(path, "# edited\n" + body, 5)
    clock.t += 2
    assert rf.poll() is True
    assert rf.decide(rcpt("g@x.test"), now=61) is None  # the first attempt was remembered
    assert rf.decide(Facts("connect", "relay", "192.0.2.1"), now=1).reply.startswith("421")


def test_a_broken_file_at_start_raises(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[[rule]]\nrcpt = 5\n")
    with pytest.raises(RulesError, match=r"rules\.toml: \[\[rule\]\] #1: rcpt: must be a text"):
        RulesFile(path)


# errors ----------------------------------------------------------------------------------------------------


ERRORS = [
    # (file text, what the message must say)
    ('[[rule]]\nrcpt = "x"\nrepy = "550 5.1.1 x"\n', r"\[\[rule\]\] #1: repy: unknown key \(did you mean 'reply'\?\)"),
    ('[[rules]]\nrcpt = "x"\n', r"rules: unknown top-level key \(did you mean 'rule'\?\)"),
    ('[greylist]\ndelai = 5\n', r"delai: unknown greylist setting"),
    ('[greylist]\ndelay = 500\nexpire = 100\n', r"greylist.expire: expire \(100\) is shorter than delay"),
    ('[greylist]\ndelay = -1\n', r"greylist.delay: must be a number"),
    ('builtin = "yes"\n', r"builtin: must be true or false"),
    ('rule = 5\n', r"rule: write each rule as a \[\[rule\]\] table"),
    ('[[rule]]\nname = "n"\nstage = "ehlo"\nreply = "550 5.7.1 x"\n', r"#1 \('n'\): stage: 'ehlo' is not a stage"),
    ('[[rule]]\nreply = "354 go on"\n', r"reply: '354 go on' is not an SMTP reply"),
    ('[[rule]]\nreply = "55 short"\n', r"reply: .* is not an SMTP reply"),
    ('[[rule]]\nreply = "550 4.1.1 class mismatch"\n', r"reply: the enhanced status code 4.1.1 must have the reply's"),
    ('[[rule]]\nreply = "550 5.1.1 two\\r\\nlines"\n', r"reply: must be one line"),
    ('[[rule]]\nreply = "550 5.1.1 ' + "x" * 600 + '"\n', r"reply: must be one line of at most 510"),
    ('[[rule]]\nreply = "550 5.1.1 {recipient}"\n', r"reply: unknown placeholder \{recipient\}"),
    ('[[rule]]\nreply = 550\n', r"reply: must be text"),
    ('[[rule]]\nstage = "data"\nreply = "250 2.0.0 ok"\n', r"reply: the lab answers DATA with 354 itself"),
    ('[[rule]]\nstage = "connect"\nreply = "250 hi"\n', r"reply: a positive reply at the connect stage must be 220"),
    ('[[rule]]\nstage = "mail"\nrcpt = "x"\nreply = "550 5.7.1 x"\n', r"rcpt: is not known until the rcpt stage"),
    ('[[rule]]\nstage = "connect"\nhelo = "x"\nreply = "550 5.7.1 x"\n', r"helo: is not known until the helo"),
    ('[[rule]]\nstage = "helo"\nsize_min = 1\nreply = "550 5.7.1 x"\n', r"size_min: is not known until the mail"),
    ('[[rule]]\nstage = "mail"\ngreylist = true\n', r"greylist: greylisting needs the recipient"),
    ('[[rule]]\nstage = "mail"\ndsn = true\n', r"dsn: acts on an accepted recipient"),
    ('[[rule]]\nrcpt = "x"\ndsn = true\nreply = "550 5.1.1 x"\n', r"reply: dsn and autoreply need the recipient"),
    ('[[rule]]\nrcpt = "x"\ndsn = "250 2.0.0 fine"\n', r"dsn: a DSN reports a 4xx or 5xx reply"),
    ('[[rule]]\nrcpt = "x"\ndsn = "550 no enhanced code"\n', r"dsn: a DSN reports a 4xx or 5xx reply"),
    ('[[rule]]\nrcpt = "x"\ndsn = true\nautoreply = true\n', r"dsn: a rule can greylist, rate-limit, bounce"),
    ('[[rule]]\nrcpt = "x"\nautoreply = 3\n', r"autoreply: must be true, false or a non-empty text"),
    ('[[rule]]\nrcpt = "x"\ngreylist = true\nreply = "550 5.7.1 x"\n', r"reply: greylisting and rate limits refuse"),
    ('[[rule]]\nrate = { count = 0, window = 60 }\n', r"rate.count: must be a whole number"),
    ('[[rule]]\nrate = { count = 5, window = 0 }\n', r"rate.window: must be a number of seconds above 0"),
    ('[[rule]]\nrate = { count = 5 }\n', r"rate: write it as rate = \{ count = N, window = SECONDS \}"),
    ('[[rule]]\nreply = "550 5.7.1 x"\nprobability = 1.5\n', r"probability: must be a number from 0 to 1"),
    ('[[rule]]\ndelay = 100000\n', r"delay: must be a number of seconds from 0 to 600"),
    ('[[rule]]\ndelay = true\n', r"delay: must be a number"),
    ('[[rule]]\nreply = "421 4.7.0 bye"\ndisconnect = false\n', r"disconnect: a 421 reply closes the connection"),
    ('[[rule]]\nrcpt = "x"\nautoreply = true\ndisconnect = true\n', r"disconnect: dsn and autoreply need"),
    ('[[rule]]\nrcpt = "x"\n', r"reply: the rule does nothing"),
    ('[[rule]]\nclient_ip = "192.0.2.0/33"\nreply = "554 5.7.1 x"\n', r"client_ip: '192.0.2.0/33' is not an IP"),
    ('[[rule]]\nlistener = "smtp"\nreply = "554 5.7.1 x"\n', r"listener: 'smtp' is not a listener"),
    ('[[rule]]\nrcpt = []\nreply = "550 5.7.1 x"\n', r"rcpt: must be a text or a list of 1 to 100"),
    ('[[rule]]\nrcpt = ["x"]\nsize_min = 9\nsize_max = 3\nreply = "550 5.7.1 x"\n', r"size_max: is smaller than"),
    ('[[rule]]\nrcpt = "re:"\nreply = "550 5.7.1 x"\n', r"rcpt: 're:': the regex after re: is empty"),
    ('[[rule]]\nrcpt = "re:(["\nreply = "550 5.7.1 x"\n', r"rcpt: .*not a valid regex"),
    ('[[rule]]\nname = "a\\u0007"\nreply = "550 5.7.1 x"\n', r"#1: name: must be a short line of text"),
    ("[[rule]\n", r"test.toml: not valid TOML"),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_errors_name_the_file_rule_and_key(text, message):
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "test.toml")
    assert str(info.value).startswith("test.toml: ")
    assert re.search(message, str(info.value)), str(info.value)


def test_errors_count_rules_from_one_and_name_them():
    text = ('[[rule]]\nrcpt = "a"\nreply = "550 5.1.1 ok"\n'
            '[[rule]]\nname = "second"\nrcpt = "b"\nreply = "650 bad"\n')
    with pytest.raises(RulesError, match=r"^test.toml: \[\[rule\]\] #2 \('second'\): reply: ") as info:
        load_rules_text(text, "test.toml")
    assert (info.value.index, info.value.key) == (2, "reply")


@pytest.mark.parametrize("regex", [
    r"(a+)+$", r"(a|ab)*c", r"(a?a)*b", r"^(?:a{1,30}){1,30}$", r"(.)\1", r".*.*.*x", r"^(.*)(.*)(.*)(.*)$",
    r"^(?:.*?,){11}P", r"^(?:a?){30}a{30}$", r"^(?:a|a){40}b", r"(?=.*x)(?=.*y)(?=.*z)", r"^(\w+\s?)*$",
])
def test_regexes_that_could_backtrack_for_ever_are_refused(regex):
    toml = f"[[rule]]\nrcpt = '''re:{regex}'''\nreply = \"550 5.7.1 x\"\n"
    with pytest.raises(RulesError, match=r"#1: rcpt: .*(take|backreferences)"):
        load_rules_text(toml, "test.toml")


@pytest.mark.parametrize("regex", [
    r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", r"^[^@]+@(?:[a-z0-9-]++\.)+example\.com$", r".*.*x", r"\w+\w+x",
    r"^\w+\w+\w+x", r"^.*a.*a.*x", r"^(?:.*?,){2}P", r"(?i)^bounce-(hard|soft)(\+[^@]*)?@", r"^(?:a|b|c|d)+$",
    r"^\w{1,100}\w{1,100}\w{1,100}x", r"^.*@(?:mx|smtp)\d*\.example\.(?:com|net)$", r"^a*+a*+a*+a*+a*+b",
])
def test_accepted_regexes_stay_fast_on_hostile_addresses(regex):
    rs = only(f"[[rule]]\nrcpt = '''re:{regex}'''\nreply = \"550 5.7.1 x\"\n")
    for value in ("a" * 5000, "a@" * 2000, ("a" * 60 + ".") * 50, "," * 5000, "ab" * 2000, "\x00" * 5000):
        t0 = time.perf_counter()
        rs.decide(rcpt(value), now=0)
        assert time.perf_counter() - t0 < 0.5, (regex, value[:10])


def test_hostile_rules_files(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(RulesError, match=r"big.toml: larger than"):
        load_rules(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(RulesError, match=r"bin.toml: not UTF-8"):
        load_rules(binary)
    with pytest.raises(RulesError, match=r"not valid TOML"):
        load_rules_text("x = " + "[" * 100_000, "deep.toml")
    with pytest.raises(RulesError, match=r"rule: 1001 rules; at most 1000"):
        load_rules_text('[[rule]]\nreply = "550 5.7.1 x"\n' * 1001, "many.toml")
    with pytest.raises(RulesError, match=r"rcpt: a pattern must have 1 to 256"):
        load_rules_text(f'[[rule]]\nrcpt = "re:{"a" * 300}"\nreply = "550 5.7.1 x"\n', "long.toml")
    with pytest.raises(RulesError, match=r"rcpt: must be a text or a list of 1 to 100"):
        load_rules_text('[[rule]]\nrcpt = [' + '"a",' * 101 + ']\nreply = "550 5.7.1 x"\n', "wide.toml")
    with pytest.raises(RulesError, match=r"missing.toml: cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_unknown_stage_in_facts_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown stage"):
        DEFAULTS().decide(Facts("quit"))


# the examples ----------------------------------------------------------------------------------------------


def test_the_example_file_loads_and_behaves():
    rs = load_rules(FIXTURES / "rules" / "example.toml")
    assert len(rs.rules) == 14 + len(DEFAULT_RULES)
    assert rs.greylist.delay == 300
    assert fires(rs, rcpt("former-12@example.net")).reply.startswith("550 5.1.1 <former-12@example.net>")
    assert fires(rs, rcpt("former-x@example.net")) is None
    assert fires(rs, rcpt("gone@example.net")).dsn
    assert fires(rs, rcpt("support@example.net")).autoreply_text.startswith("Thanks for writing")
    assert fires(rs, Facts("mail", "submission", "192.0.2.1", "h", mail_from="")).reply.startswith("550 5.7.1")
    assert fires(rs, Facts("mail", "relay", "192.0.2.1", "h", mail_from="")) is None
    assert fires(rs, Facts("helo", "relay", "192.0.2.1", helo="192.0.2.1")).reply.startswith("504 5.5.2")
    assert fires(rs, rcpt("bounce-hard@example.org")).reply.startswith("550 5.1.1")  # built-ins follow


def test_the_module_docstring_example_loads():
    text = rules_module.__doc__.split("Example::", 1)[1].split("\nMatchers", 1)[0]
    example = "\n".join(line[4:] for line in text.splitlines())
    rs = load_rules_text(example, "docstring")
    assert [r.name for r in rs.rules[:4]] == ["unknown user", "flaky MX", "too fast", "slow greeting"]
    assert fires(rs, rcpt("old-7@example.net")).reply == "550 5.1.1 <old-7@example.net>: Recipient address " \
        "rejected: User unknown"
