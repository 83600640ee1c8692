"""The Textual lab driven with Pilot: real mail over SMTP appears, tabs, filter, re-check, export, delete."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from support import BAD_IP, GOOD_IP, ZONES, message, sign
from support.client import send  # noqa: F401
from support.ui import make_app, plain, smtp_send, until, verdict_text  # noqa: F401

from lab.samples import SAMPLES
from lab.ui.widgets.message_list import MessageList

SIZE = (140, 44)


async def test_empty_lab_shows_how_to_send_the_first_message(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE):
        welcome = app.query_one("#welcome")
        relay = app.engine.ports["relay"]
        assert f"swaks --server 127.0.0.1:{relay}" in welcome._markdown
        assert "Send sample messages" in welcome._markdown
        assert not app.query_one("#tabs").display


async def test_mail_appears_live_and_the_selection_stays(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        first = await smtp_send(app, sign(message(subject="first")))
        await until(pilot, lambda: listing.selected_id == first and "DMARC" in verdict_text(app))
        assert "Inbox likely" in verdict_text(app) and "dkim.example.com.rsa2048" in verdict_text(app)
        assert " score " in verdict_text(app)
        second = await smtp_send(app, message(subject="second"), ip=BAD_IP)
        await until(pilot, lambda: listing.count == 2)
        assert listing.selected_id == first  # new mail did not steal the selection
        assert listing.cursor == 1
        await pilot.press("k")
        await until(pilot, lambda: "second" in str(app.query_one("#status").render()) or listing.selected_id == second)
        await until(pilot, lambda: "Reject" in verdict_text(app))


async def test_the_verdict_leads_with_the_profiles_outcome(tmp_path):
    app = make_app(tmp_path, profile="gmail-bulk")
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, (Path(__file__).parent / "fixtures" / "newsletter-org.eml").read_bytes(), ip=BAD_IP,
                        mail_from="news@example.org")
        await until(pilot, lambda: "if unmet" in verdict_text(app))
        head = plain(app.query_one("VerdictView .disposition").content).splitlines()
        assert head[0].split()[:6] == ["REJECTED", "Would", "be", "rejected", "by", "Gmail"]
        assert head[1].split()[0] == "score" and "/10: " in head[1]
        pane = app.query_one("VerdictView .family-bulk")
        assert str(pane.border_title).startswith("✗ Provider rules: Gmail (bulk)")
        rules = plain(pane.content)
        assert "if unmet" in rules and "reject 550 5.7.27" in rules and "provider-code" not in rules


async def test_tabs_show_headers_text_parts_raw_and_session(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, sign(message(subject="tabs please")))
        await until(pilot, lambda: "DMARC" in verdict_text(app))
        for key, widget, needle in (("2", "HeadersView", "tabs please"), ("3", "BodyView", "this is a test"),
                                    ("5", "RawView", "␍␊"), ("6", "SessionView", "XCLIENT")):
            await pilot.press(key)
            await until(pilot, lambda w=widget, n=needle: n in plain(app.query_one(f"{w} Static").content))
        await pilot.press("4")
        await until(pilot, lambda: "text/plain" in str(app.query_one("PartsView").root.label))


async def test_hostile_text_is_shown_escaped(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, message(subject="\x1b]52;c;b3duZWQ=\x07 \x1b[2J pwned \u202etxt"))
        listing = app.query_one(MessageList)
        await until(pilot, lambda: listing.count == 1)
        await pilot.pause(0.3)
        row = "".join(seg.text for seg in listing.render_line(1))
        assert "pwned" in row and "\x1b" not in row and "\x07" not in row and "\u202e" not in row
        for key in "23":
            await pilot.press(key)
            await pilot.pause(0.2)
        rendered = plain(app.query_one("HeadersView Static").content)
        assert "pwned" in rendered and "\x1b" not in rendered and "\u202e" not in rendered


async def test_filter_by_verdict_and_text(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        await smtp_send(app, sign(message(subject="good one")))
        await smtp_send(app, message(subject="spoofed one"), ip=BAD_IP)
        await until(pilot, lambda: listing.count == 2 and app.store.count() == 2)
        await pilot.pause(0.3)
        await pilot.press("slash")
        await pilot.press(*"verdict:fail")
        await pilot.press("enter")
        await until(pilot, lambda: listing.count == 1)
        assert "spoofed" in listing.source.row(0).subject
        await pilot.press("slash", "escape")
        await until(pilot, lambda: listing.count == 2)
        await pilot.press("slash")
        await pilot.press(*"good")
        await pilot.press("enter")
        await until(pilot, lambda: listing.count == 1 and "good" in listing.source.row(0).subject)


async def test_recheck_after_fixing_an_overlay_zone(tmp_path):
    zone = tmp_path / "mine.zone"
    zone.write_text('$ORIGIN mine.test.\n@ TXT "v=spf1 ip4:198.51.100.1 -all"\n_dmarc TXT "v=DMARC1; p=reject"\n')
    app = make_app(tmp_path, zones=[str(zone)])
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, message(from_="app@mine.test"), mail_from="app@mine.test")
        await until(pilot, lambda: "SPF fail" in verdict_text(app))
        zone.write_text(f'$ORIGIN mine.test.\n@ TXT "v=spf1 ip4:{GOOD_IP} -all"\n_dmarc TXT "v=DMARC1; p=reject"\n')
        await pilot.press("r")
        await until(pilot, lambda: "SPF pass" in verdict_text(app) and "DMARC pass" in verdict_text(app))


async def test_a_broken_zone_file_on_recheck_is_a_notification_not_a_crash(tmp_path):
    zone = tmp_path / "mine.zone"
    zone.write_text('mine.test. TXT "v=spf1 -all"\n')
    app = make_app(tmp_path, zones=[str(zone)])
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, message())
        zone.write_text("mine.test. NOSUCHTYPE x\n")
        await pilot.pause(0.3)
        await pilot.press("r")
        await until(pilot, lambda: any("NOSUCHTYPE" in str(n.message) for n in app._notifications))
        assert app.is_running


async def test_a_broken_zone_file_at_start_is_left_out_with_a_notification(tmp_path):
    bad = tmp_path / "bad.zone"
    bad.write_text("x.test. NOSUCHTYPE y\n")
    app = make_app(tmp_path, zones=[*map(str, ZONES), str(bad)])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        assert any("bad.zone" in str(n.message) and "left out" in str(n.message) for n in app._notifications)
        first = await smtp_send(app, sign(message()))  # the good zones still answer
        await until(pilot, lambda: app.query_one(MessageList).selected_id == first and "DMARC pass" in
                    verdict_text(app))


async def test_export_copy_delete_and_clear(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        raw = sign(message(subject="keep me"))
        first = await smtp_send(app, raw)
        await smtp_send(app, message(subject="second"))
        await smtp_send(app, message(subject="third"))
        await until(pilot, lambda: listing.count == 3)
        await pilot.pause(0.3)
        await pilot.press("G")
        await until(pilot, lambda: listing.selected_id == first)
        await pilot.press("e")
        exported = app.config.data_dir / "exports" / f"maillab-{first}.eml"
        await until(pilot, exported.exists)
        assert exported.read_bytes() == raw
        await pilot.press("y")
        assert app.clipboard.startswith("swaks --server 127.0.0.1:") and f"@{exported}" in app.clipboard
        await pilot.press("d")
        await until(pilot, lambda: listing.count == 2)
        assert app.store.get(first) is None
        await pilot.press("D")
        await pilot.pause(0.2)
        await pilot.press("n")  # the confirmation protects the rest
        await pilot.pause(0.2)
        assert app.store.count() == 2
        await pilot.press("D")
        await pilot.pause(0.2)
        await pilot.press("y")
        await until(pilot, lambda: app.store.count() == 0 and listing.count == 0)


async def test_samples_from_the_palette_fill_every_pane(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"Send sample")
        await pilot.pause(0.3)
        await pilot.press("enter")
        listing = app.query_one(MessageList)
        n = len(SAMPLES)
        await until(pilot, lambda: listing.count == n and all(listing.source.row(i).level for i in range(n)))


async def test_help_opens_and_closes(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause(0.2)
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.screen.__class__.__name__ != "HelpScreen"


async def test_a_busy_port_is_a_notification_and_the_rest_keeps_working(tmp_path):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        app = make_app(tmp_path, relay_port=busy.getsockname()[1])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.2)
            assert any("relay" in str(n.message) for n in app._notifications)
            assert "not listening" in str(app.query_one("#status").render())
            assert set(app.engine.ports) == {"submission", "smtps"}
    finally:
        busy.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
async def test_swaks_mail_shows_up(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", f"127.0.0.1:{app.engine.ports['smtps']}", "--tls-on-connect", "--auth", "PLAIN",
            "--auth-user", "u", "--auth-password", "p", "--from", "a@example.com", "--to", "b@example.net",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await proc.wait() == 0
        listing = app.query_one(MessageList)
        await until(pilot, lambda: listing.count == 1 and listing.source.row(0).listener == "smtps")


async def test_the_status_line_names_the_pop3_listener(tmp_path):
    from support import free_ports

    (port,) = free_ports(1)
    app = make_app(tmp_path, pop3_port=port)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        assert f"pop3 :{port}" in plain(app.query_one("#status").render())


async def test_new_mail_above_a_scrolled_list_moves_the_scrollbar_not_the_rows(tmp_path):
    """New mail changes the list's virtual height; unless the scrollbar comes or goes that no longer lays out
    the whole screen (30-60 ms with a message's detail shown, on every tick while mail arrived): the
    scrollbar and the rows on screen must still follow."""
    from support import capture

    from lab.store import Store
    from lab.ui.messages import Analysed

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        store = Store(app.config.db_path)
        try:
            ids = [store.add(capture(message(subject=f"old {n}"))) for n in range(40)]
            app.post_message(Analysed(ids[-1]))
            await until(pilot, lambda: listing.count == 40)
            await pilot.press("G")  # the oldest, at the bottom: the list scrolls
            await until(pilot, lambda: listing.selected_id == ids[0] and listing.scroll_offset.y > 0)
            top, bar = listing.scroll_offset.y, listing.vertical_scrollbar
            assert listing.show_vertical_scrollbar and bar.window_virtual_size == 41
            new = [store.add(capture(message(subject=f"new {n}"))) for n in range(5)]
            app.post_message(Analysed(new[-1]))
            await until(pilot, lambda: listing.count == 45)
            assert listing.virtual_size.height == 46 and bar.window_virtual_size == 46
            assert listing.scroll_offset.y == top + 5 and listing.selected_id == ids[0]  # the same rows in view
            assert "messages: 45" in str(app.query_one("#status").render())
        finally:
            store.close()


async def test_while_mail_keeps_arriving_the_list_is_reread_at_most_every_flush_gap(tmp_path):
    """Re-reading the list on every 150 ms tick took a quarter of the UI thread at 500 msg/s (bench/tui_load.py):
    judged mail is shown at once after a quiet spell, then at most every FLUSH_GAP seconds; what is held back
    stays pending, and deleting or clearing shows at once."""
    import time

    from support import capture

    from lab.store import Store
    from lab.ui import app as app_module

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(MessageList)
        store = Store(app.config.db_path)
        try:
            first, second = (store.add(capture(message(subject=f"m{n}"))) for n in range(2))
            app._flushed = time.monotonic() - app_module.FLUSH_GAP  # quiet for a while: shown at once
            app._pending.add(first)
            app._flush_pending()
            assert listing.count == 2 and not app._pending  # (both are stored; the list reads the store)
            third = store.add(capture(message(subject="m2")))
            app._pending.add(third)
            app._flush_pending()  # right after the last re-read: held back
            assert listing.count == 2 and app._pending == {third}
            app._flush_pending(now=True)
            assert listing.count == 3 and not app._pending
            store.add(capture(message(subject="m3")))
            app._pending.add(-1)
            await until(pilot, lambda: listing.count == 4)  # a later tick shows what was held back
        finally:
            store.close()
