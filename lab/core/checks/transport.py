"""Provides transport checks: which port role was used, whether TLS protected it, how AUTH was done.

These say how the sending application is configured, which matters as much as DNS: an app that submits
on port 25 without AUTH works in the lab and fails at a real provider.
"""

from __future__ import annotations

from lab.core.context import Context
from lab.core.model import Listener
from lab.core.results import CheckResult, Level, check

_MODERN_TLS = ("TLSv1.2", "TLSv1.3")


def check_transport(ctx: Context) -> list[CheckResult]:
    t = ctx.capture.transport
    if t.listener is Listener.CLI:
        return _cli(ctx)
    return [_port(ctx), _tls(ctx), _auth(ctx), _client(ctx)]


def _port(ctx: Context) -> CheckResult:
    t = ctx.capture.transport
    listener = t.listener
    ev = dict(listener=listener.value, port=t.port, real_port=listener.real_port)
    if listener is Listener.RELAY and not t.authenticated:
        return check("transport.port", Level.WARN,
                     "Sent to the port 25 role without AUTH: that is how MTAs relay to each other, not how an "
                     "application should submit", ref="RFC 6409 §1",
                     fix="Configure the application to submit on port 587 with STARTTLS and AUTH (or 465 with "
                         "implicit TLS). Many networks block outbound 25, and providers only accept "
                         "authenticated submission from applications.", **ev)
    if listener in (Listener.SUBMISSION, Listener.SMTPS) and t.authenticated:
        how = "STARTTLS + AUTH" if listener is Listener.SUBMISSION else "implicit TLS + AUTH"
        return check("transport.port", Level.PASS, f"Submitted on the {listener.real_port} role with {how}",
                     ref="RFC 6409, RFC 8314", **ev)
    return check("transport.port", Level.INFO, f"Received on the {listener.value} role", **ev)


def _tls(ctx: Context) -> CheckResult:
    t = ctx.capture.transport
    ev = dict(tls_version=t.tls_version, cipher=t.tls_cipher)
    if not t.tls:
        return check("transport.tls", Level.WARN, "The session was not encrypted", ref="RFC 3207, RFC 8314",
                     fix="Use STARTTLS on 587 or implicit TLS on 465. Gmail marks unencrypted mail with a red "
                         "padlock and requires TLS from bulk senders.")
    if t.tls_version not in _MODERN_TLS:
        return check("transport.tls", Level.WARN, f"Encrypted with an outdated protocol ({t.tls_version})",
                     ref="RFC 8996", fix="Use TLS 1.2 or 1.3.", **ev)
    return check("transport.tls", Level.PASS, f"Encrypted with {t.tls_version}", ref="RFC 8314", **ev)


def _auth(ctx: Context) -> CheckResult:
    t = ctx.capture.transport
    ev = dict(mechanism=t.auth_mechanism, user=t.auth_user)
    if t.authenticated and not t.tls:
        return check("transport.auth", Level.FAIL, "Credentials were sent over an unencrypted connection",
                     ref="RFC 4954 §4", fix="Only authenticate after STARTTLS, or on 465 with implicit TLS.",
                     **ev)
    if t.authenticated:
        return check("transport.auth", Level.PASS, f"Authenticated with {t.auth_mechanism} as {t.auth_user}",
                     ref="RFC 4954", **ev)
    if t.listener is Listener.RELAY:
        return check("transport.auth", Level.INFO, "No AUTH: the relay role (port 25) does not offer it")
    return check("transport.auth", Level.WARN, "Not authenticated", ref="RFC 6409 §4.3",
                 fix="Authenticate (AUTH PLAIN or LOGIN over TLS) before MAIL FROM.")


def _client(ctx: Context) -> CheckResult:
    c = ctx.capture.client
    ev = dict(client_ip=c.ip, peer_ip=c.peer_ip, client_name=c.name, source=c.source)
    if c.is_loopback:
        return check("transport.client-ip", Level.INFO,
                     f"Evaluated as sent from {c.ip} (loopback): SPF and IP-based checks say little",
                     fix="Tell the lab the production sending IP: `--client-ip IP`, or XCLIENT ADDR=IP "
                         "from the test.", **ev)
    how = {"xclient": "as set by XCLIENT", "configured": "the configured --client-ip for loopback senders",
           "cli": "as given on the command line"}.get(c.source, "the connecting peer")
    return check("transport.client-ip", Level.INFO, f"Evaluated as sent from {c.ip} ({how})", **ev)


def _cli(ctx: Context) -> list[CheckResult]:
    t = ctx.capture.transport
    out = [_client(ctx)]
    if t.authenticated and not t.tls:
        out.append(_auth(ctx))
    return out
