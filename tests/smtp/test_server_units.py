"""LabSMTP's shortcuts must answer exactly what aiosmtpd's slower code answers."""

from __future__ import annotations

import asyncio

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.core.model import Listener
from lab.smtp.auth import Credentials
from lab.smtp.listeners import CaptureHandler
from lab.smtp.server import _PLAIN_PATH, ROLES, LabSMTP

PATHS = [
    "<alice@example.com>", "<alice@example.com> SIZE=5120 BODY=8BITMIME", "<a.b+tag@mail.example.co.uk>",
    "<o'brien@example.ie>", "<x@y>", "<alice@example.com>  SIZE=1", "<alice@example.com>\tSIZE=1",
    "<>", "<a..b@example.com>", "<.a@example.com>", "<a.@example.com>", '<"quoted local"@example.com>',
    "<alice@[192.0.2.1]>", "<@relay.example:alice@example.com>", "alice@example.com", "<alice@example.com",
    "<alice@-example.com>", "<alice@example..com>", "<ali ce@example.com>", "<alice@example.com>SIZE=1",
    "<alice@exämple.com>", "<ålice@example.com>", "<alice@example.com> ", "<a@b.c>\r\n",
]


def _lab(loop, handler=None, role=Listener.SUBMISSION) -> LabSMTP:
    return LabSMTP(handler or CaptureHandler(None), ROLES[role], Credentials(), 2587, loop=loop, hostname="lab.test",
                   ident="maillab ESMTP", tls_context=None, enable_SMTPUTF8=True, data_size_limit=1000, timeout=30)


@pytest.fixture(scope="module")
def server():
    loop = asyncio.new_event_loop()
    yield _lab(loop)
    loop.close()


def test_constructor_sets_up_everything_aiosmtpd_does():
    """LabSMTP skips SMTP.__init__ (its introspection is per connection); this catches an aiosmtpd upgrade
    that adds state the lab would then be missing."""
    loop = asyncio.new_event_loop()
    try:
        handler = CaptureHandler(None)
        ours = _lab(loop, handler)
        theirs = SMTP(handler, hostname="lab.test", loop=loop, enable_SMTPUTF8=True, auth_required=True,
                      authenticator=lambda *a: None)
        assert set(vars(theirs)) <= set(vars(ours))
        assert set(ours._handle_hooks) == set(theirs._handle_hooks) == {"EHLO", "MAIL", "RCPT", "DATA"}
        assert ours._ehlo_hook_ver == theirs._ehlo_hook_ver == "new"
        assert set(ours._smtp_methods) == set(theirs._smtp_methods) | {"XCLIENT", "BDAT"}
        assert set(ours._auth_methods) == set(theirs._auth_methods) | {"CRAM-MD5"}
        assert all(m.is_builtin for m in ours._auth_methods.values())
        assert ours._auth_methods["PLAIN"].method.__self__ is ours  # bound to this connection
        assert ours._smtp_methods["EHLO"].__self__ is ours
        assert ours.command_size_limits is not _lab(loop, handler).command_size_limits  # not shared
    finally:
        loop.close()


def _aiosmtpd(server: LabSMTP, arg: str):
    try:
        return SMTP._getaddr(server, arg)
    except (IndexError, ValueError):
        return None, None


def _rest_words(result):
    address, rest = result
    return address, None if rest is None else rest.upper().split()


@pytest.mark.parametrize("arg", PATHS)
def test_fast_path_parses_as_aiosmtpd_does(server, arg):
    assert _rest_words(server._getaddr(arg)) == _rest_words(_aiosmtpd(server, arg))


def test_fast_path_is_taken_for_plain_addresses():
    assert _PLAIN_PATH.match("<alice@example.com> SIZE=1")
    assert not _PLAIN_PATH.match('<"x y"@example.com>')


_ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-.\"@<> \t", min_size=0, max_size=12)


@settings(max_examples=400, deadline=None)
@given(local=_ATOM, domain=_ATOM, rest=st.sampled_from(["", " SIZE=1", "  BODY=7BIT", "X", " "]))
def test_fast_path_agrees_with_aiosmtpd_on_generated_paths(server, local, domain, rest):
    arg = f"<{local}@{domain}>{rest}"
    assert _rest_words(server._getaddr(arg)) == _rest_words(_aiosmtpd(server, arg))
