"""The DNS tab: the From domain's records explained, made off the UI thread, cached until `r`, escaped.

Reports come from lab.core.dnsreport over real zone text (fixture zones, overlay files written here) and,
for the timeout case, a real UDP name server on loopback that never answers (support.dnsserver.TinyDNS).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console
from support import GOOD_IP, message, sign
from support.dnsserver import TinyDNS
from support.ui import make_app, plain, smtp_send, until
from textual.worker import WorkerState

from lab.core.dnsreport import inspect_domain
from lab.core.dnsview import LayeredView, ZoneView
from lab.ui.dnstarget import MAX_SIGNATURES, Target, dkim_tags, target_of
from lab.ui.widgets.dns_report import (
    MAX_SPF_ROWS,
    dkim_renderable,
    dmarc_renderable,
    head_text,
    mx_renderable,
    recommendations,
    spf_renderable,
)
from lab.ui.widgets.dns_view import DnsView

SIZE = (140, 44)
NEWSLETTER = (Path(__file__).parent / "fixtures" / "newsletter-org.eml").read_bytes()
UNSAFE = ("\x1b", "\x07", "\u202e", "\u200b")


def draw(renderable, width: int = 120) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def report_text(report, target: Target, width: int = 120) -> str:
    return "\n".join(draw(r, width) for r in (head_text(report, target, "offline"), recommendations(report),
                                              spf_renderable(report), dmarc_renderable(report),
                                              dkim_renderable(report, target), mx_renderable(report)))


def dns_text(app) -> str:
    return "\n".join(plain(w.content) for w in app.query("DnsView Static") if w.display)


# which domain and selectors ------------------------------------------------------------------------


def test_the_target_is_the_from_domain_and_the_selectors_it_signs_with():
    target = target_of(NEWSLETTER)
    assert (target.domain, target.address, target.selectors) == ("example.org", "news@example.org", ("rsa2048", "s1"))
    assert target.key == ("example.org", ("rsa2048", "s1"))


def test_signatures_for_other_domains_name_no_selector():
    raw = sign(message(from_="Alice <alice@Example.ORG>"), domain="example.com", selector="rsa2048")
    target = target_of(raw)
    assert (target.domain, target.selectors) == ("example.org", ())
    assert target_of(sign(message())).selectors == ("rsa2048",)


@pytest.mark.parametrize(("raw", "problem"), [
    (b"To: bob@example.net\r\nSubject: no from\r\n\r\nbody\r\n", "no From address"),
    (b"From: a@.\r\n\r\nbody\r\n", "has no domain"),
    (b"From: a@[192.0.2.1]\r\n\r\nbody\r\n", "cannot be looked up"),
    (b"From: a@exa mple..com\r\n\r\nbody\r\n", "cannot be looked up"),
    (b"", "no From address"),
])
def test_no_usable_from_domain_is_said_not_looked_up(raw, problem):
    target = target_of(raw)
    assert target.domain is None and target.key is None
    assert problem in (target.problem or "")


def test_an_international_from_domain_is_asked_in_idna():
    raw = "From: Bücher <info@bücher.example>\r\n\r\nbody\r\n".encode()
    assert target_of(raw).domain == "xn--bcher-kva.example"


def test_only_the_first_signatures_are_read():
    sigs = "".join(f"DKIM-Signature: v=1; d=example.com; s=s{n}; b=x\r\n" for n in range(MAX_SIGNATURES + 5))
    target = target_of((sigs + "From: a@example.com\r\n\r\nbody\r\n").encode())
    assert target.selectors == tuple(f"s{n}" for n in range(MAX_SIGNATURES))


def test_dkim_tags_are_tolerant_and_bounded():
    assert dkim_tags(" d = Example.COM ; s= sel\r\n 1 ;garbage;=x; d=other") == {"d": "Example.COM", "s": "sel1"}
    started = time.monotonic()
    tags = dkim_tags("a=1;" * 1_000_000 + "s=late")
    assert "s" not in tags and time.monotonic() - started < 0.5


# the report, drawn -----------------------------------------------------------------------------------


def test_a_domain_with_a_missing_key_says_what_to_publish(view):
    target = target_of(NEWSLETTER)
    text = report_text(inspect_domain("example.org", view, target.selectors), target)
    assert "DNS records of example.org   ✗ 1 problem affects delivery" in text
    assert "DKIM selectors in this message: rsa2048, s1" in text
    assert "✗ DKIM  No DKIM key at rsa2048._domainkey.example.org" in text
    assert 'fix: Publish `rsa2048._domainkey.example.org. TXT "v=DKIM1; k=rsa;' in text
    assert "rsa2048._domainkey.example.org  ✗ missing  (used in this message)" in text
    assert "s1._domainkey.example.org  ✓ rsa 2048-bit  (used in this message)" in text
    assert "record   v=spf1 ip4:192.0.2.10 ~all" in text
    assert "ip4:192.0.2.10  host 192.0.2.10 → pass" in text
    assert "policy  none for example.org" in text


def test_a_domain_with_nothing_to_fix_says_so(view):
    target = Target("example.com", "orders@example.com", ("rsa2048",))
    text = report_text(inspect_domain("example.com", view, target.selectors), target)
    assert "✓ nothing to fix" in text
    assert "nothing: the records say what a receiver needs to hear" in text
    assert "10 mail.example.com" in text.replace("  ", " ")
    assert "✗" not in text


def test_includes_are_drawn_as_a_tree_with_their_lookups(view):
    target = Target("news.example.com", "n@news.example.com")
    text = report_text(inspect_domain("news.example.com", view), target, width=100)
    assert "lookups  1 of 10" in text
    assert "include:example.com" in text and "[1 lookup]" in text
    assert "  └ example.com" in text and "    ip4:192.0.2.0/24" in text
    assert "this message has no DKIM signature for this domain" in text


def txt(words: list[str]) -> str:
    """A TXT value of many words as several quoted strings of at most 255 octets (SPF joins them as they are)."""
    chunks, current = [], ""
    for word in words:
        if len(current) + len(word) + 1 > 250:
            chunks.append(current)
            current = ""
        current += word + " "
    return " ".join(f'"{c}"' for c in [*chunks, current.rstrip()])


def test_a_huge_spf_tree_is_cut():
    includes = txt(["v=spf1", *(f"include:i{n}.big.test" for n in range(60)), "-all"])
    nets = txt(["v=spf1", *(f"ip4:10.0.{n}.0/24" for n in range(90)), "-all"])
    zone = f"big.test. TXT {includes}\n" + "".join(f"i{n}.big.test. TXT {nets}\n" for n in range(60))
    report = inspect_domain("big.test", LayeredView(ZoneView.from_text(zone)))
    text = draw(spf_renderable(report), width=100)
    assert "more rows of the SPF tree" in text
    assert len(text.splitlines()) < MAX_SPF_ROWS * 3


def test_text_from_dns_is_escaped():
    zone = ('evil.test. TXT "v=spf1 ip4:192.0.2.1 \\027]52;c;b3duZWQ=\\007 \\226\\128\\174txt -all"\n'
            '_dmarc.evil.test. TXT "v=DMARC1; p=none; rua=mailto:\\027[2Jx@evil.test"\n'
            'sel._domainkey.evil.test. TXT "v=DKIM1; n=\\027[31mred; p=abc"\n'
            'evil.test. MX 10 mx.evil.test.\n')
    target = Target("evil.test", "a@evil.test", ("sel",))
    text = report_text(inspect_domain("evil.test", LayeredView(ZoneView.from_text(zone)), target.selectors), target)
    assert "52;c;b3duZWQ=" in text and "␛" in text
    assert not any(ch in text for ch in UNSAFE), [ch for ch in UNSAFE if ch in text]


# in the app ------------------------------------------------------------------------------------------


async def test_the_dns_tab_shows_the_from_domains_report(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, NEWSLETTER, mail_from="news@example.org")
        await until(pilot, lambda: app._shown is not None)
        await pilot.press("7")
        await until(pilot, lambda: "DNS records of example.org" in dns_text(app))
        text = dns_text(app)
        assert "DKIM selectors in this message: rsa2048, s1" in text
        assert "No DKIM key at rsa2048._domainkey.example.org" in text
        assert app.query_one(DnsView).query_one(".dns-recs").border_title.startswith("✗ What to change")


async def test_a_message_without_from_says_there_is_nothing_to_look_up(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, b"To: bob@example.net\r\nSubject: anonymous\r\n\r\nhi\r\n")
        await until(pilot, lambda: app._shown is not None)
        await pilot.press("7")
        await until(pilot, lambda: "no From address" in dns_text(app))
        assert not app.query_one(DnsView).cache


async def test_reports_are_cached_per_domain_until_r_reads_the_zones_again(tmp_path):
    zone = tmp_path / "mine.zone"
    zone.write_text('$ORIGIN mine.test.\n@ TXT "v=spf1 ip4:198.51.100.1 -all"\n')
    app = make_app(tmp_path, zones=[str(zone)])
    async with app.run_test(size=SIZE) as pilot:
        await smtp_send(app, message(from_="App <app@mine.test>"), mail_from="app@mine.test")
        await until(pilot, lambda: app._shown is not None)
        await pilot.press("7")
        await until(pilot, lambda: "ip4:198.51.100.1" in dns_text(app))
        assert list(app.query_one(DnsView).cache) == [("mine.test", ())]
        zone.write_text(f'$ORIGIN mine.test.\n@ TXT "v=spf1 ip4:{GOOD_IP} -all"\n')
        await pilot.press("1")
        await pilot.pause(0.1)
        await pilot.press("7")  # shown again: from the cache, the file is not read again
        await pilot.pause(0.3)
        assert "ip4:198.51.100.1" in dns_text(app) and f"ip4:{GOOD_IP}" not in dns_text(app)
        await pilot.press("r")
        await until(pilot, lambda: f"ip4:{GOOD_IP}" in dns_text(app))
        assert "ip4:198.51.100.1" not in dns_text(app)
        assert app.query_one(DnsView).generation == 1


async def test_a_silent_name_server_never_stalls_the_screen(tmp_path):
    server = TinyDNS("")  # every name under blackhole. goes unanswered: a 2-second timeout per lookup
    try:
        app = make_app(tmp_path, offline=False, nameserver=server.address, zones=[])
        async with app.run_test(size=SIZE) as pilot:
            await smtp_send(app, message(from_="Slow <a@slow.blackhole>"), mail_from="a@slow.blackhole")
            await until(pilot, lambda: app._shown is not None, timeout=20)
            await pilot.press("7")
            await until(pilot, lambda: "Looking up the DNS records of slow.blackhole" in dns_text(app))

            def looking() -> bool:
                return any(w.group == "dns" and w.state is WorkerState.RUNNING for w in app.workers)

            assert looking()
            started = time.monotonic()
            await pilot.press("1")  # the UI answers while DNS does not
            assert app.query_one("#tabs").active == "verdict" and time.monotonic() - started < 1
            assert looking()
            await pilot.press("7")
            await until(pilot, lambda: "What to change" in str(app.query_one(".dns-recs").border_title), timeout=20)
            assert "temperror" in dns_text(app)
    finally:
        server.close()

