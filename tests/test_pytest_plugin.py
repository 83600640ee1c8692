"""The pytest plugin used the way a user's test suite uses it: pytester runs small test files against it.

Each inner test sends real mail with smtplib to the fixture's lab and asserts on what the lab captured.
The inner runs are in-process (pytester's default), so they share this interpreter but not its fixtures.
"""

from __future__ import annotations

import os
import ssl
from importlib.metadata import entry_points

import pytest
from support import ZONES

pytest_plugins = ["pytester"]

APP_ZONE = '''
$ORIGIN app.test.
@               TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc          TXT "v=DMARC1; p=reject"
mail            A   192.0.2.10
10.2.0.192.in-addr.arpa. PTR mail.app.test.
'''

SENDER = '''
import smtplib, ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

def send(host, port, sender="orders@app.test", to="customer@example.net", subject="Your order #1001",
         helo="mail.app.test"):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"Shop <{sender}>", to, subject
    msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain="app.test")
    msg.set_content("Thanks for your order.")
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, local_hostname=helo) as s:
        s.starttls(context=ctx)
        s.login("app", "secret")
        s.send_message(msg)
'''


def _registered_by_entry_point() -> bool:
    return any(ep.value == "lab.pytest_plugin" for ep in entry_points(group="pytest11"))


@pytest.fixture
def tester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with the plugin active (via the entry point once maillab registers it) and the
    sender module a user's application would have."""
    if not _registered_by_entry_point():
        pytester.makeconftest('pytest_plugins = ["lab.pytest_plugin"]')
    pytester.makepyfile(myapp_mail=SENDER)
    pytester.syspathinsert()
    return pytester


# plugins of this environment that the inner runs do not need (textual-snapshot breaks when run in-process twice)
QUIET = [arg for name in ("cacheprovider", "textual-snapshot", "asyncio", "syrupy", "hypothesispytest")
         for arg in ("-p", f"no:{name}")]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args)


def test_a_test_user_sends_with_smtplib_and_asserts_on_the_verdict(tester):
    tester.makepyfile(test_user_app=f'''
import pytest
from myapp_mail import send

ZONE = """{APP_ZONE}"""

@pytest.mark.maillab(zone=ZONE, client_ip="192.0.2.10")
def test_order_mail(maillab):
    send(maillab.host, maillab.port("submission"))
    msg = maillab.wait_for(to="customer@example.net", subject=r"order #\\d+")
    assert msg.verdict in ("pass", "warn")
    assert msg.checks["spf.mailfrom"].result == "pass"
    assert msg.checks["dmarc"].result == "pass"
    assert msg.message["Subject"] == "Your order #1001"
    assert "Thanks for your order." in msg.text
    assert msg.transport.listener == "submission" and msg.transport.tls_version
    maillab.assert_passes(msg, families=("transport", "spf", "dmarc", "sender"))
    assert [m.id for m in maillab.messages()] == [msg.id]
''')
    result = run(tester)
    result.assert_outcomes(passed=1)


def test_a_failing_check_shows_its_id_summary_and_fix_in_the_pytest_output(tester):
    """The spoof: From example.com (SPF -all, DMARC p=reject) sent from an address SPF does not allow."""
    zones = "\n    ".join(str(z) for z in ZONES)
    tester.makeini(f"[pytest]\nmaillab_zones =\n    {zones}\nmaillab_client_ip = 203.0.113.5\n")
    tester.makepyfile(test_user_spoof='''
from myapp_mail import send

def test_ceo_mail(maillab):
    send(maillab.host, maillab.port("submission"), sender="ceo@example.com", subject="Wire transfer")
    msg = maillab.wait_for(from_="ceo@example.com")
    maillab.assert_passes(msg, families=["spf", "dmarc"])
''')
    result = run(tester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "maillab: failing checks" in out
    assert "spf.mailfrom (fail): SPF fail" in out
    assert "fix: Authorise 203.0.113.5" in out  # the record to change, from the SPF check
    assert "dmarc (fail)" in out and "p=reject" in out
    assert "ref: RFC 7208" in out
    # the section added to every failing test that used the lab
    assert "maillab: messages captured in this test" in out
    assert "'Wire transfer' MAIL FROM:<ceo@example.com>" in out


def test_assert_passes_without_families_checks_everything_and_warnings_can_fail_too(tester):
    tester.makepyfile(test_user_warn=f'''
import pytest
from myapp_mail import send

ZONE = """{APP_ZONE}"""

@pytest.mark.maillab(zone=ZONE, client_ip="192.0.2.10")
def test_unsigned_is_a_warning(maillab):
    send(maillab.host, maillab.port("submission"))
    msg = maillab.wait_for()
    maillab.assert_passes(msg, families="dkim")                 # a warning alone passes
    with pytest.raises(AssertionError, match=r"(?s)dkim.none.*fix: ") as info:
        maillab.assert_passes(msg, families="dkim", warnings=True)
    assert "failing or warning checks" in str(info.value)
    with pytest.raises(AssertionError, match="has no checks of the families dmark"):
        maillab.assert_passes(msg, families="dmark")            # a typo must not pass vacuously
''')
    run(tester).assert_outcomes(passed=1)


def test_wait_for_timeout_says_what_did_arrive(tester):
    tester.makepyfile(test_user_wait='''
from myapp_mail import send

def test_wrong_recipient(maillab):
    send(maillab.host, maillab.port("submission"), to="someone-else@example.net", subject="Misrouted")
    maillab.wait_for(to="customer@example.net", timeout=1.5)
''')
    result = run(tester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "no message to customer@example.net arrived within 1.5s" in out
    assert "1 other message(s) arrived" in out and "someone-else@example.net 'Misrouted'" in out


def test_wait_for_returns_each_message_once_in_order_and_matches_patterns(tester):
    tester.makepyfile(test_user_twice='''
import pytest
from myapp_mail import send

def test_two(maillab):
    for n in (1, 2):
        send(maillab.host, maillab.port("submission"), subject=f"Reminder {n}")
    send(maillab.host, maillab.port("submission"), to="other@example.org", subject="Other")
    first = maillab.wait_for(to="*@example.net")
    second = maillab.wait_for(to="*@EXAMPLE.net")
    assert (first.subject, second.subject) == ("Reminder 1", "Reminder 2")
    assert maillab.wait_for(subject="^Oth").envelope.rcpt_to == ("other@example.org",)
    with pytest.raises(AssertionError):
        maillab.wait_for(to="*@example.net", timeout=0.5)
''')
    run(tester).assert_outcomes(passed=1)


def test_the_session_lab_is_shared_between_tests(tester):
    tester.makepyfile(test_user_session='''
from myapp_mail import send
ports = []

def test_one(maillab_session):
    ports.append(maillab_session.port("relay"))
    send(maillab_session.host, maillab_session.port("submission"), subject="one")
    assert maillab_session.wait_for().subject == "one"

def test_two(maillab_session):
    ports.append(maillab_session.port("relay"))
    send(maillab_session.host, maillab_session.port("submission"), subject="two")
    assert maillab_session.wait_for().subject == "two"    # "one" was returned already
    assert ports[0] == ports[1]
    maillab_session.clear()
    assert maillab_session.messages() == []
''')
    run(tester).assert_outcomes(passed=2)


def test_two_labs_run_side_by_side_on_their_own_ports(tester):
    tester.makepyfile(test_user_both='''
from myapp_mail import send

def test_both(maillab, maillab_session):
    assert set(maillab.engine.ports.values()).isdisjoint(maillab_session.engine.ports.values())
    send(maillab.host, maillab.port("submission"), subject="to the test lab")
    assert maillab.wait_for().subject == "to the test lab"
    assert maillab_session.messages() == []
''')
    run(tester).assert_outcomes(passed=1)


def test_marker_zone_files_are_relative_to_the_test_file_and_a_broken_zone_is_a_setup_error(tester):
    sub = tester.mkpydir("pkg")
    (sub / "good.zone").write_text(APP_ZONE)
    (sub / "bad.zone").write_text('$ORIGIN app.test.\n@ TXT "v=spf1 -all"\n@ BOGUS nonsense\n')
    (sub / "test_user_zones.py").write_text('''
import pytest
from myapp_mail import send

@pytest.mark.maillab(zones=["good.zone"], client_ip="192.0.2.10")
def test_good(maillab):
    send(maillab.host, maillab.port("submission"))
    assert maillab.wait_for().checks["spf.mailfrom"].result == "pass"

@pytest.mark.maillab(zones=["bad.zone"])
def test_bad(maillab):
    pass
''')
    result = run(tester)
    result.assert_outcomes(passed=1, errors=1)
    assert "bad.zone:3" in result.stdout.str()


@pytest.mark.parametrize("before", [None, "system"])
def test_trust_certificate_lets_default_contexts_verify_the_lab_until_it_stops(tester, monkeypatch, before):
    if before is None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    else:
        before = ssl.get_default_verify_paths().openssl_cafile
        monkeypatch.setenv("SSL_CERT_FILE", before)
    tester.makepyfile(test_user_tls='''
import os, smtplib, ssl
import pytest

def test_verified(maillab):
    with smtplib.SMTP(maillab.host, maillab.port("submission")) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            s.starttls(context=ssl.create_default_context())
    maillab.trust_certificate()
    with smtplib.SMTP(maillab.host, maillab.port("submission")) as s:
        s.starttls(context=ssl.create_default_context())      # what Django 4+ does
        s.login("app", "x")
    with maillab.smtp("smtps") as s:                          # the helper verifies too
        assert s.noop()[0] == 250
    settings = maillab.smtp_settings
    assert settings["EMAIL_PORT"] == maillab.port("submission") and settings["EMAIL_USE_TLS"] is True
''')
    run(tester).assert_outcomes(passed=1)
    assert os.environ.get("SSL_CERT_FILE") == before


def test_tests_that_do_not_use_the_lab_are_untouched(tester):
    tester.makepyfile(test_user_plain='''
def test_fails():
    assert 1 == 2
''')
    result = run(tester)
    result.assert_outcomes(failed=1)
    assert "maillab:" not in result.stdout.str() and "messages captured" not in result.stdout.str()
