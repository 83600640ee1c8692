"""Refused attempts in the Textual lab: rows of their own until a retry gets through, then a mark on that
message; the detail shows every attempt and the retry checks; rules-file reloads and errors are told."""

from __future__ import annotations

import asyncio
import smtplib

from support import message
from support.ui import make_app, plain, until, verdict_text

from lab.ui.widgets.message_list import MessageList

SIZE = (140, 44)
SENDER = "app@example.com"


async def rcpt_try(app, rcpt: str, data: bytes | None = None) -> int:
    """One transaction from SENDER to `rcpt` on the relay listener; the RCPT reply code (and DATA if accepted)."""
    def go() -> int:
        with smtplib.SMTP("127.0.0.1", app.engine.ports["relay"], local_hostname="mail.example.com") as s:
            s.ehlo()
            s.mail(SENDER)
            code = s.rcpt(rcpt)[0]
            if code == 250 and data is not None:
                assert s.data(data)[0] == 250
            return code
    return await asyncio.to_thread(go)


def rows(listing: MessageList) -> list[str]:
    return [listing.render_line(y).text.rstrip() for y in range(1, listing.count + 1)]


async def test_a_hard_bounce_is_a_row_and_a_greylisted_message_shows_the_tries_it_took(tmp_path):
    app = make_app(tmp_path, greylist_delay=3)  # the second try must land inside it, even on a loaded machine
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        assert await rcpt_try(app, "bounce-hard@example.net") == 550
        await until(pilot, lambda: listing.count == 1)
        [row] = rows(listing)
        assert row.startswith("⊘ 550") and "<app@example.com>" in row and "bounce-hard@example.net" in row
        assert "refused 1×, not delivered: 550 5.1.1" in row
        assert not app.query_one("#welcome-holder").display and app.query_one("#tabs").display
        await until(pilot, lambda: "REFUSED" in verdict_text(app))
        text = verdict_text(app)
        assert "1 try refused, not delivered: last told 550 5.1.1" in text
        assert "rcpt" in text and "built-in" in text  # the timeline names the stage and the rule
        assert "refused, not delivered: 1" in plain(app.query_one("#status").render())

        # greylisting: two refusals, then the retry is accepted and the group becomes a mark on that message
        assert await rcpt_try(app, "greylist@example.net") == 451
        assert await rcpt_try(app, "greylist@example.net") == 451
        # the attempt records reach the store after the replies (the SMTP side does not wait for them): the row
        # may show the first refusal before the second
        await until(pilot, lambda: listing.count == 2 and "refused 2×" in rows(listing)[0])
        assert rows(listing)[0].startswith("⊘ 451")
        await pilot.press("home")
        await until(pilot, lambda: "2 tries refused" in verdict_text(app))
        assert "Retries" in str(app.query_one("VerdictView .family-retry").border_title)
        await pilot.press("6")  # the Session tab: the last refused conversation
        await until(pilot, lambda: "451 4.7.1" in plain(app.query_one("SessionView Static").content))
        await pilot.press("5")  # no bytes were ever sent: the Raw tab says so instead of showing nothing
        await until(pilot, lambda: "No message content" in plain(app.query_one("RawView Static").content))
        await pilot.press("1")

        await asyncio.sleep(3.1)
        assert await rcpt_try(app, "greylist@example.net", message(subject="third time", to="greylist@example.net")) \
            == 250
        await until(pilot, lambda: any("third time" in r for r in rows(listing)))
        await until(pilot, lambda: listing.count == 2)  # the greylist group is gone: it ended in that message
        first, second = rows(listing)
        assert "↻2 third time" in first and first.split()[0] in ("✓", "!", "✗", "·", "…")
        assert second.startswith("⊘ 550")
        await until(pilot, lambda: "Retries" in verdict_text(app) or listing.selected_id is not None)

        # verdict:refused lists only what was never delivered
        await pilot.press("slash")
        await pilot.press(*"verdict:refused", "enter")
        await until(pilot, lambda: listing.count == 1)
        assert rows(listing)[0].startswith("⊘ 550")


async def test_the_export_and_delete_keys_leave_a_refused_row_alone(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        assert await rcpt_try(app, "bounce-hard@example.net") == 550
        await until(pilot, lambda: listing.count == 1)
        await pilot.press("e", "d")
        await pilot.pause(0.3)
        assert listing.count == 1
        assert any("No message selected" in str(n.message) for n in app._notifications)


async def test_rules_file_reloads_and_broken_edits_are_notifications(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nrcpt = "a@example.net"\nreply = "550 5.1.1 gone"\n')
    app = make_app(tmp_path, rules=str(rules))
    async with app.run_test(size=SIZE) as pilot:
        rules.write_text('[[rule]]\nrcpt = "b@example.net"\nreply = "nonsense"\n')
        await until(pilot, lambda: any("still using the rules loaded before" in str(n.message)
                                       for n in app._notifications), timeout=10)
        bad = next(n for n in app._notifications if "still using" in str(n.message))
        assert bad.severity == "error" and bad.title == "Rules file" and "rules.toml" in str(bad.message)
        rules.write_text('[[rule]]\nrcpt = "b@example.net"\nreply = "550 5.1.1 gone"\n')
        await until(pilot, lambda: any("reloaded" in str(n.message) for n in app._notifications), timeout=10)


async def test_a_broken_rules_file_at_start_is_a_notification_and_the_built_in_rules_apply(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]\n")
    app = make_app(tmp_path, rules=str(rules))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: any("built-in rules" in str(n.message) for n in app._notifications))
        assert await rcpt_try(app, "bounce-hard@example.net") == 550
