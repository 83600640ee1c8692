"""`maillab dns DOMAIN`: the inspector's text and JSON output, exit codes, terminal safety and selectors from mail."""

from __future__ import annotations

import argparse
import json

import pytest
from support import ZONES, capture, message

from lab.core.dnsreport import inspect_domain
from lab.core.dnsview import LayeredView
from lab.core.results import Level, Verdict, check
from lab.dnscmd import render_text, run, selectors_seen, to_json
from lab.resolver import load_zones
from lab.store import Store

FIXTURE_ZONES = [str(z) for z in ZONES]


def args(domain: str, *selectors: str, as_json: bool = False, zones: list[str] | None = None) -> argparse.Namespace:
    return argparse.Namespace(domain=domain, selector=list(selectors) or None, json=as_json,
                              zones=FIXTURE_ZONES if zones is None else zones, offline=True, nameserver=None)


def test_good_domain_exits_0_and_explains_each_section(capsys):
    assert run(args("example.com", "rsa2048", "ed")) == 0
    out = capsys.readouterr().out
    assert out.startswith("DNS: offline:")
    assert "DNS report for example.com: ✓ nothing to fix" in out
    assert "SPF  example.com: ok" in out and "DNS lookups: 0 of 10   void lookups: 0 of 2   ends with: -all" in out
    assert "hosts in 192.0.2.0/24 (256 addresses) → pass" in out
    assert "policy for example.com: reject (p)" in out and "sp=quarantine" in out
    assert "rsa2048._domainkey.example.com  ✓ rsa 2048-bit" in out
    assert "ed._domainkey.example.com  ✓ ed25519 256-bit" in out
    assert "DNS cannot list DKIM selectors" in out
    assert "10 mail.example.com  192.0.2.10" in out


def test_domain_with_problems_exits_1_with_fixes(capsys):
    assert run(args("lookups.test")) == 1
    out = capsys.readouterr().out
    assert "✗ fail spf   SPF uses 11 lookups of 10" in out
    assert "fix: Remove `include:l1.test` (1 lookup): it authorises no host" in out
    assert '`_dmarc.lookups.test. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@lookups.test"`' in out
    assert "see: RFC 7208 §4.6.4" in out


def test_warnings_alone_exit_0(capsys):
    # example.org: SPF ~all, DMARC p=none with rua, no MX but an address: advice, nothing blocking
    assert run(args("example.org", "s1")) == 0
    assert "nothing to fix" in capsys.readouterr().out


def test_json_output(capsys):
    assert run(args("twospf.test", "nokey", as_json=True)) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["domain"] == "twospf.test" and doc["level"] == "fail" and doc["needs_fixing"] is True
    assert doc["dns"].startswith("offline:")
    assert doc["spf"]["status"] == "permerror" and len(doc["spf"]["tree"]["records"]) == 2
    assert doc["dkim"]["keys"][0]["selector"] == "nokey" and doc["dkim"]["keys"][0]["status"] == "missing"
    levels = {(r["section"], r["level"]) for r in doc["recommendations"]}
    assert {("spf", "fail"), ("dmarc", "fail"), ("dkim", "fail")} <= levels


def test_json_include_tree(capsys, tmp_path):
    zone = tmp_path / "tree.zone"
    zone.write_text('$ORIGIN tree.test.\n@ TXT "v=spf1 include:_spf.tree.test -all"\n'
                    '_spf TXT "v=spf1 ip4:192.0.2.0/24 a:relay.tree.test ~all"\nrelay A 192.0.2.5\n'
                    '_dmarc TXT "v=DMARC1; p=quarantine; rua=mailto:d@tree.test"\n@ MX 10 relay\n')
    assert run(args("tree.test", as_json=True, zones=[str(zone)])) == 0
    doc = json.loads(capsys.readouterr().out)
    (include, _all) = doc["spf"]["tree"]["terms"]
    assert include["lookups"] == 2 and include["child"]["domain"] == "_spf.tree.test"
    assert include["child"]["terms"][1]["addresses"] == ["192.0.2.5"]
    assert doc["spf"]["lookups"] == 2


def test_hostile_txt_is_shown_escaped(capsys, tmp_path):
    zone = tmp_path / "hostile.zone"
    # \027 is ESC: an OSC 52 clipboard write and a colour change, in SPF, DMARC and a DKIM key record
    zone.write_text('$ORIGIN evil.test.\n'
                    '@ TXT "v=spf1 ip4:192.0.2.1 \\027]52;c;cm0gLXJmIH4=\\007 \\027[2J -all"\n'
                    '_dmarc TXT "v=DMARC1; p=reject; rua=mailto:d@evil.test; x=\\027[31mred"\n'
                    's1._domainkey TXT "v=DKIM1; k=rsa; n=\\027[5mblink; p=AAAA"\n'
                    '@ MX 10 mx\nmx A 192.0.2.1\n')
    assert run(args("evil.test", "s1", zones=[str(zone)])) == 1  # the SPF record is broken
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "␛]52;c;cm0gLXJmIH4=^G" in out and "␛[31mred" in out and "␛[5mblink" in out
    assert run(args("evil.test", "s1", zones=[str(zone)], as_json=True)) == 1
    raw = capsys.readouterr().out
    assert "\x1b" not in raw and "\\u001b]52" in raw  # JSON escapes it; the value itself is kept
    assert "\x1b[31mred" in json.loads(raw)["dmarc"]["record"]


def test_render_text_escapes_without_run():
    view = LayeredView(load_zones(ZONES))
    text = render_text(inspect_domain("example.com", view, ["bad\x1b[31mselector"]))
    assert "\x1b" not in text and "bad␛[31mselector" in text


def test_to_json_is_plain_json():
    report = inspect_domain("example.com", LayeredView(load_zones(ZONES)), ["rsa2048"])
    doc = to_json(report)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["recommendations"] == [] and doc["level"] == "pass"
    assert doc["dmarc"]["tags"][1] == {"tag": "p", "value": "reject",
                                       "meaning": "this domain: mail that fails DMARC is refused (550 5.7.1)"}


@pytest.mark.parametrize("domain", ["not a domain", "x..y", "evil\x1b[2J.test"])
def test_bad_domain_exits_2(capsys, domain):
    assert run(args(domain)) == 2
    err = capsys.readouterr().err
    assert "is not a domain name" in err and "\x1b" not in err


def test_bad_zone_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.zone"
    bad.write_text("$ORIGIN x.test.\n@ BOGUS 1\n@ TXT \"ok\"\n")
    assert run(args("x.test", zones=[str(bad)])) == 2
    assert "bad.zone:2" in capsys.readouterr().err
    assert run(args("x.test", zones=[str(tmp_path / "missing.zone")])) == 2
    assert "missing.zone" in capsys.readouterr().err


def test_view_passed_in_is_used(capsys):
    view = LayeredView(load_zones(ZONES))
    assert run(argparse.Namespace(domain="example.com", selector=None, json=False), view) == 0
    assert "SPF  example.com: ok" in capsys.readouterr().out


def _stored_verdict(store: Store, d: str, s: str) -> None:
    message_id = store.add(capture(message()))
    result = check(f"dkim.{d}.{s}", Level.PASS, "Valid signature", result="pass", d=d, s=s)
    store.save_verdict(message_id, Verdict(Level.PASS, (result,), "", "Inbox", {}))


def test_selectors_come_from_captured_mail(tmp_path, capsys):
    db = tmp_path / "maillab.db"
    store = Store(db)
    try:
        _stored_verdict(store, "example.com", "rsa2048")
        _stored_verdict(store, "example.com", "Gone")
        _stored_verdict(store, "example.org", "s1")  # another domain: not asked for example.com
        _stored_verdict(store, "example.com", "rsa2048")
    finally:
        store.close()
    assert selectors_seen(db, "example.com") == ["rsa2048", "gone"]
    assert run(args("example.com"), db_path=db) == 1  # mail was signed with selector "gone", which has no key
    out = capsys.readouterr().out
    assert "rsa2048._domainkey.example.com  ✓ rsa 2048-bit" in out
    assert "No DKIM key at gone._domainkey.example.com" in out
    assert "s1._domainkey.example.com" not in out


def test_selectors_seen_without_a_store(tmp_path):
    assert selectors_seen(tmp_path / "none.db", "example.com") == []
    assert not (tmp_path / "none.db").exists()  # looking does not create a store


def test_output_is_deterministic(capsys):
    # the report is a function of the zone data alone, so scripts can diff it
    assert run(args("lookups.test", as_json=True)) == 1
    first = capsys.readouterr().out
    assert run(args("lookups.test", as_json=True)) == 1
    assert capsys.readouterr().out == first
