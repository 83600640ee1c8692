"""The Verdict pane's head and provider-rules pane, drawn from real verdicts (lab.core.analyse over fixture zones).

The head must lead with what the chosen provider would do, then the score and what cost the most, then
the problems; the provider rules show gate and reply code per rule, compactly at 80 columns too.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from support import BAD_IP, GOOD_IP, capture, message, sign

from lab.core.analyse import analyse
from lab.core.context import Options
from lab.core.model import Capture, Client, Envelope, Listener, Transport
from lab.core.profiles import get_profile
from lab.core.results import CheckResult, Level, Verdict, check
from lab.ui.widgets.verdict_view import BulkRules, check_text, head, losses, outcome, reply, short_summary

NEWSLETTER = Path(__file__).parent / "fixtures" / "newsletter-org.eml"
RECEIVED = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)


def draw(renderable, width: int = 120) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def newsletter(view, profile: str) -> Verdict:
    cap = Capture(NEWSLETTER.read_bytes(), Envelope("news@example.org", ("bob@example.net",), "mail.example.com"),
                  Transport(Listener.SUBMISSION, 587, "TLSv1.3", "TLS_AES_256_GCM_SHA384", "PLAIN", "news"),
                  Client(ip=BAD_IP, peer_ip="127.0.0.1", source="xclient"), received_at=RECEIVED)
    return analyse(cap, view, options=Options(profile=get_profile(profile)))


@pytest.mark.parametrize(("profile", "badge", "starts"), [
    ("gmail-bulk", "REJECTED", "Would be rejected by Gmail (bulk): 550 5.7.27"),
    ("gmail", "DELIVERED", "Would be delivered by Gmail"),
    ("yahoo", "SPAM", "Would be sent to spam by Yahoo (bulk)"),
    ("outlook", "REJECTED", "Would be rejected by Outlook.com (bulk): 550 5.7.515"),
    ("none", "INBOX?", "Inbox likely"),
])
def test_the_head_leads_with_what_the_profiles_provider_would_do(view, profile, badge, starts):
    verdict = newsletter(view, profile)
    first = draw(head(verdict)).splitlines()[0]
    assert first.split()[0] == badge
    assert first[12:].startswith(starts)
    assert ("(no provider profile)" in draw(head(verdict))) == (profile == "none")


def test_the_score_line_names_the_biggest_losses_first(view):
    verdict = newsletter(view, "gmail-bulk")
    assert verdict.score == 7.2
    line = draw(losses(verdict), width=300).strip()
    assert line.startswith("7.2/10: dkim.example.org.rsa2048 -1.5, spf.mailfrom -0.5")
    assert "and" not in line  # four findings cost points: all named
    assert draw(losses(verdict, limit=2), width=300).strip().endswith(", and 2 more (-0.8)")
    assert " score      7.2/10: dkim.example.org.rsa2048 -1.5" in draw(head(verdict), width=300)


def test_a_clean_message_loses_no_points_and_an_old_verdict_has_no_score_line(view):
    verdict = analyse(capture(sign(message()), received_at=datetime.now(UTC)), view)
    assert verdict.score == 10
    assert draw(losses(verdict)).strip() == "10/10: no points lost"
    old = Verdict(verdict.level, verdict.checks, verdict.authentication_results, verdict.disposition, score=None)
    assert " score " not in draw(head(old))


def test_the_why_lines_are_one_line_each_and_say_how_many_more(view):
    verdict = newsletter(view, "gmail-bulk")
    problems = [c for c in verdict.checks if c.level in (Level.FAIL, Level.WARN)]
    assert len(problems) == 6
    text = draw(head(verdict, why_lines=3), width=70)
    rows = text.splitlines()
    why = rows[rows.index(next(r for r in rows if "✗ FAIL" in r)):]
    assert [r[12:14] for r in why[:3]] == ["✗ ", "✗ ", "! "]  # fails before warnings
    assert why[0].rstrip().endswith("…") and len(why) == 4  # cut to the width, never wrapped
    assert why[3].strip() == "… and 3 more below"
    assert "bulk.spf: SPF softfail" in why[0]  # the "Gmail (bulk): " prefix is dropped: the head names the provider


@pytest.mark.parametrize(("disposition", "expected"), [
    ("Would be rejected by Gmail: 550 5.7.26 x", ("REJECTED", "red")),
    ("Would be deferred by Gmail: 451 4.7.26 x", ("DEFERRED", "yellow")),
    ("Would be sent to spam by Yahoo (bulk): x", ("SPAM", "yellow")),
    ("Would be delivered by Outlook.com (bulk): x", ("DELIVERED", "green")),
    ("Reject: 550 5.7.1 DMARC fails under p=reject", ("REJECTED", "red")),
    ("Likely reject: SPF fail (-all) and no valid DKIM signature", ("REJECTED?", "red")),
    ("Deferred: 451 4.7.x a DNS lookup failed", ("DEFERRED", "yellow")),
    ("Spam folder: DMARC fails under p=quarantine", ("SPAM", "yellow")),
    ("Spam folder likely: nothing authenticates the sender", ("SPAM?", "yellow")),
    ("Delivered, trusted less: authenticated but without an aligned DMARC pass", ("DELIVERED", "yellow")),
    ("Inbox likely: DMARC passes", ("INBOX?", "green")),
    ("Inbox: authenticated and aligned", ("INBOX", "green")),
    ("Not judged against Gmail: no provider results", None),
    ("No provider profile: judged by the lab's own checks only", None),
    ("", None),
])
def test_outcome_badges(disposition, expected):
    assert outcome(disposition) == expected


def test_a_disposition_without_an_outcome_gets_the_plain_label():
    verdict = Verdict(Level.PASS, (), "x", "Not judged against Gmail: no provider results", score=10.0,
                      profile="gmail")
    first = draw(head(verdict)).splitlines()[0]
    assert first.startswith(" receiver") and "Not judged against Gmail" in first


@pytest.mark.parametrize(("code", "gate", "expected"), [
    ("421 4.7.27 / 550 5.7.27", "reject", "550 5.7.27"),
    ("421 4.7.27 / 550 5.7.27", "defer", "421 4.7.27"),
    ("451 4.7.26", "defer", "451 4.7.26"),
    ("550 5.7.515", "reject", "550 5.7.515"),
    ("421 4.7.27 / 550 5.7.27", "spam", ""),
    ("421 4.7.27 / 550 5.7.27", "none", ""),
    ("provider documents no code", "reject", ""),
    ("", "reject", ""),
])
def test_reply_picks_the_code_that_goes_with_the_gate(code, gate, expected):
    assert reply(code, gate) == expected


def test_short_summary_drops_the_profile_label_of_provider_rules_only():
    rule = check("bulk.tls", Level.FAIL, "Gmail (bulk): the session was not encrypted")
    other = check("transport.tls", Level.WARN, "Gmail (bulk): not a prefix here")
    assert short_summary(rule, "Gmail (bulk)") == "the session was not encrypted"
    assert short_summary(rule, "") == rule.summary
    assert short_summary(other, "Gmail (bulk)") == other.summary


def bulk(verdict: Verdict) -> list[CheckResult]:
    return [c for c in verdict.checks if c.family == "bulk"]


def test_provider_rules_show_gate_and_reply_per_rule_not_the_evidence(view):
    verdict = newsletter(view, "gmail-bulk")
    text = draw(BulkRules(bulk(verdict), "Gmail (bulk)"), width=140)
    rows = text.splitlines()
    assert rows[0].split() == ["rule", "if", "unmet", "found"]
    spf = next(r for r in rows if r.startswith("✗ spf"))
    assert spf.split()[2:5] == ["reject", "550", "5.7.27"] and "SPF softfail for example.org" in spf
    assert "spam" in next(r for r in rows if r.startswith("! one-click"))
    assert sum(r.strip().startswith("fix: ") for r in rows) == 2  # the two rules not met, not the nine that are
    assert len([r for r in rows if r[:1] in "✓✗!·"]) == len(bulk(verdict)) == 11
    assert "provider-code" not in text and "gate:" not in text  # no evidence wall
    assert "Gmail email sender guidelines" in text and "https://support.google.com/a/answer/81126" in text


def test_provider_rules_at_80_columns_keep_the_status_code_and_put_fixes_under_the_rule(view):
    verdict = newsletter(view, "gmail-bulk")
    rows = draw(BulkRules(bulk(verdict), "Gmail (bulk)"), width=74).splitlines()  # an 80-column pane's inside
    spf = next(i for i, r in enumerate(rows) if r.startswith("✗ spf"))
    assert rows[spf].split()[2:4] == ["reject", "5.7.27"]  # "550" dropped: the enhanced code says it
    fix = next(r for r in rows[spf:] if "fix:" in r)
    assert fix.startswith("    fix: Authorise 203.0.113.5")  # across the pane, not squeezed under the summary
    assert all(len(r) <= 74 for r in rows)


def test_check_text_hangs_evidence_and_fix_under_the_summary(view):
    verdict = newsletter(view, "none")
    spf = [c for c in verdict.checks if c.family == "spf"]
    rows = draw(check_text(spf), width=80).splitlines()
    assert rows[0].startswith("! warn spf.mailfrom (softfail) -0.5  SPF softfail")
    assert all(r.startswith("       ") for r in rows[1:] if not r.startswith(("! warn", "✓ pass", "✗ fail")))
    assert any(r.strip().startswith("fix: ") for r in rows)


def test_text_from_mail_is_escaped_in_the_head_and_panes():
    evil = "\x1b]52;c;b3duZWQ=\x07\x1b[2J pwned \u202etxt"
    checks = (check("bulk.format", Level.FAIL, f"Gmail: {evil}", fix=evil, provider_code="550 5.7.1", gate="reject",
                    profile="gmail"),
              check("sender.from", Level.WARN, evil, evil_key=evil))
    verdict = Verdict(Level.FAIL, checks, "x", f"Would be rejected by Gmail: 550 5.7.1 {evil}", score=1.0,
                      profile="gmail")
    for renderable in (head(verdict), BulkRules(list(checks[:1]), "Gmail"), check_text(checks)):
        text = draw(renderable, width=200)
        assert "pwned" in text
        assert not any(ch in text for ch in ("\x1b", "\x07", "\u202e")), text


def test_a_pass_verdict_says_every_check_passes(view):
    verdict = analyse(capture(sign(message()), received_at=datetime.now(UTC), ip=GOOD_IP), view)
    passing = Verdict(Level.PASS, tuple(c for c in verdict.checks if c.level in (Level.PASS, Level.INFO)),
                      verdict.authentication_results, verdict.disposition, score=verdict.score)
    assert "every check passes" in draw(head(passing))
    assert "every check passes" not in draw(head(newsletter(view, "gmail")))


def test_hanging_rows_draw_what_a_two_column_grid_draws_styles_included():
    """The check panes draw their rows with Hanging instead of a Table.grid (a table measured every cell each
    time Textual measured or drew a pane): line for line, style for style, at every width, long words included."""
    import random

    from rich.table import Table
    from rich.text import Text

    from lab.ui.format import STYLE, SYMBOL
    from lab.ui.widgets.verdict_view import Hanging

    def grid(rows):
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(no_wrap=True)
        table.add_column(ratio=1)
        for label, body in rows:
            table.add_row(label, body)
        return table

    def ansi(renderable, width):
        console = Console(width=width, file=io.StringIO(), color_system="truecolor", force_terminal=True)
        with console.capture() as out:
            console.print(renderable)
        return out.get()

    rng = random.Random(4285)
    words = ["dkim.example.com", "(pass)", "Valid", "signature", "https://example.com/" + "x" * 90, "\n", "key:",
             "é", "日本語", "  ", "a" * 30, "\t", "fix:", "", "\x1b"]
    for _ in range(600):
        rows = []
        for _ in range(rng.randrange(1, 4)):
            level = rng.choice(list(Level))
            body = Text()
            for _ in range(rng.randrange(0, 12)):
                body.append(rng.choice(words) + rng.choice(["", " "]), style=rng.choice(["", "bold", "dim"]))
            rows.append((Text(f"{SYMBOL[level]} {level.value:4}", style=STYLE[level]), body))
        width = rng.randrange(12, 130)
        drawn = Hanging(rows)
        assert ansi(drawn, width) == ansi(grid(rows), width), (width, rows)
        assert ansi(drawn, width) == ansi(drawn, width)  # drawn once per width, then handed out again
