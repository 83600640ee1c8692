"""Provides the `maillab` pytest fixture: a real lab on free loopback ports, in-process, offline, per test.

Registered as a `pytest11` entry point, so installing maillab is enough: a test asks for `maillab`, points
its mail code at `maillab.host` / `maillab.port("submission")` (or `maillab.smtp_settings` for Django),
then `maillab.wait_for(to=...)` returns the captured message with its verdict, and
`maillab.assert_passes(msg)` fails with every failing check, its summary and its fix. When a test that
used the lab fails, the messages it captured and their failing checks are added to the report.

DNS comes from zone overlay files only (ini `maillab_zones`, marker `@pytest.mark.maillab(zones=[...])`)
plus the built-in `maillab.test` sample zone: nothing touches the network unless `offline=False`.
Everything heavy is imported when a lab starts, so the plugin costs other test suites nothing.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import email.message
    import smtplib

    from lab.core.model import Capture, Client, Envelope, Transport
    from lab.core.results import CheckResult, Verdict
    from lab.store import Stored

_START = pytest.StashKey[int]()
_LABS = ("maillab", "maillab_session")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("maillab_zones", type="paths", default=[],
                  help="maillab: zone overlay files for the lab fixture (relative to the ini file)")
    parser.addini("maillab_client_ip", default="",
                  help="maillab: evaluate loopback senders as this client IP (what SPF sees)")
    parser.addini("maillab_offline", type="bool", default=True,
                  help="maillab: answer DNS from the overlay zones alone (default true)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "maillab(zones=[...], zone='zone text', client_ip='192.0.2.10', offline=True, **settings): "
                   "how the `maillab` fixture's lab is set up for this test")


# ------------------------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class CapturedMessage:
    """One message the lab captured: its bytes, envelope, transport and verdict."""

    id: int
    raw: bytes
    envelope: Envelope
    transport: Transport
    client: Client
    result: Verdict | None  # the whole verdict; None while not analysed
    capture: Capture

    @classmethod
    def from_stored(cls, stored: Stored) -> CapturedMessage:
        c = stored.capture
        return cls(c.id, c.raw, c.envelope, c.transport, c.client, stored.verdict, c)

    @property
    def verdict(self) -> str | None:
        """"pass", "warn" or "fail" (a str enum), None while not analysed."""
        return self.result.level if self.result else None

    @property
    def disposition(self) -> str | None:
        return self.result.disposition if self.result else None

    @property
    def checks(self) -> dict[str, CheckResult]:
        """Check results by id (`spf.mailfrom`, `dmarc`, `dkim.example.com.s1`, ...), in report order."""
        return {c.id: c for c in self.result.checks} if self.result else {}

    @property
    def authentication_results(self) -> str | None:
        return self.result.authentication_results if self.result else None

    @cached_property
    def message(self) -> email.message.EmailMessage:
        """The message parsed by the stdlib (policy=default): `msg.message["Subject"]`, `.get_body()`."""
        import email
        import email.policy

        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @cached_property
    def text(self) -> str:
        """What a person would read: the text/plain part, else the HTML part as text."""
        from lab.core.mime import readable

        return readable(self.raw).text

    @property
    def subject(self) -> str:
        from lab.core.message import ParsedMessage

        return ParsedMessage(self.raw).first("subject") or ""

    def failures(self, families: Iterable[str] | None = None, warnings: bool = False) -> list[CheckResult]:
        """The failing checks (and warnings, if asked) of the given families, or of all."""
        from lab.core.results import Level

        wanted = {Level.FAIL, Level.WARN} if warnings else {Level.FAIL}
        fams = set(families) if families is not None else None
        return [c for c in self.checks.values() if c.level in wanted and (fams is None or c.family in fams)]

    def report(self, checks: Iterable[CheckResult] | None = None) -> str:
        """A readable account: the message, its verdict, then each given check (default: failures and
        warnings) with its summary and fix. Terminal-safe."""
        from lab.render import SYMBOL
        from lab.textsafe import visible

        e = self.envelope
        head = (f"message #{self.id} {self.subject[:80]!r} MAIL FROM:<{e.mail_from}> -> "
                f"{', '.join(e.rcpt_to[:3]) or '-'} via {self.transport.listener.value}")
        if self.result is None:
            return visible(head + ": not analysed yet")
        lines = [head, f"  verdict {self.result.level.value.upper()}: {self.result.disposition}"]
        for c in (self.failures(warnings=True) if checks is None else checks):
            result = f" ({c.result})" if c.result else ""
            lines.append(f"  {SYMBOL[c.level]} {c.level.value} {c.id}{result}: {c.summary}")
            if c.fix:
                lines.append(f"      fix: {c.fix}")
            if c.ref:
                lines.append(f"      ref: {c.ref}")
        return visible("\n".join(lines), keep_newlines=True)

    def json(self) -> dict:
        """The message document `maillab show --json` prints."""
        from lab.render import message_json

        return message_json(self.capture, self.result)


# ------------------------------------------------------------------------------------------------ the lab


class MailLab:
    """A running lab: three listeners on free loopback ports, its store in `data_dir`, analysis in a thread."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, zones: Iterable[str | Path] = (), client_ip: str | None = None,
                 offline: bool = True, **settings):
        from lab.config import Config
        from lab.engine import Engine, EngineThread

        self.data_dir = Path(data_dir)
        self.config = Config(data_dir=self.data_dir, zones=[str(z) for z in zones], offline=offline,
                             client_ip=client_ip or None, relay_port=0, submission_port=0, smtps_port=0,
                             analysis="thread")
        # reproducible by default: no POP3 port to collide on, no second opinion from a local rspamd/spamd
        defaults = {"pop3_port": 0, "spam_filters": "off"}
        self.config.update({k: v for k, v in defaults.items() if hasattr(self.config, k)}, "maillab fixture")
        self.config.update(settings, "maillab fixture")
        self.engine = Engine(self.config)  # a broken zone file raises here, naming the file and line
        self._runner = EngineThread(self.engine)
        self._runner.start(partial=False)
        self._returned: set[int] = set()
        self._saved_cert_env: tuple[str | None] | None = None

    # where to send ------------------------------------------------------------------------------

    def port(self, listener: str = "submission") -> int:
        """The port of `relay` (plays 25), `submission` (587: STARTTLS + AUTH) or `smtps` (465)."""
        ports = self.engine.ports
        if listener not in ports:
            raise KeyError(f"no listener {listener!r}; the lab has {', '.join(ports)}")
        return ports[listener]

    @property
    def smtp_settings(self) -> dict:
        """Django EMAIL_* settings for the submission listener (STARTTLS, then AUTH; any credentials work).

        Django 4+ verifies the server certificate: call `trust_certificate()` too.
        """
        return {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": self.host,
                "EMAIL_PORT": self.port("submission"), "EMAIL_USE_TLS": True, "EMAIL_USE_SSL": False,
                "EMAIL_HOST_USER": "app", "EMAIL_HOST_PASSWORD": "maillab", "EMAIL_TIMEOUT": 10}

    @property
    def certificate(self) -> Path:
        """The lab's self-signed certificate (PEM), valid for 127.0.0.1, ::1 and localhost."""
        return self.config.tls_dir / "cert.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the lab's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def trust_certificate(self) -> Path:
        """Make `ssl.create_default_context()` trust the lab until this lab stops, for code whose TLS context
        you cannot pass in (Django 4+, most libraries). SSL_CERT_FILE is pointed at the system's CA bundle
        plus the lab's certificate, so other TLS in the test keeps working; returns the bundle's path."""
        bundle = self.data_dir / "ca-bundle.pem"
        current = ssl.get_default_verify_paths().cafile
        parts = [Path(current).read_bytes()] if current and Path(current).is_file() else []
        bundle.write_bytes(b"\n".join([*parts, self.certificate.read_bytes()]))
        if self._saved_cert_env is None:
            self._saved_cert_env = (os.environ.get("SSL_CERT_FILE"),)
        os.environ["SSL_CERT_FILE"] = str(bundle)
        return bundle

    def smtp(self, listener: str = "submission", user: str = "app", password: str = "maillab",
             helo: str | None = None, timeout: float = 10) -> smtplib.SMTP:
        """A connected smtplib client: STARTTLS and AUTH on `submission`, implicit TLS and AUTH on `smtps`,
        plain on `relay`; `helo` is the EHLO name (default: this host's name). Use it in a `with` block."""
        import smtplib

        if listener == "smtps":
            client = smtplib.SMTP_SSL(self.host, self.port("smtps"), local_hostname=helo, timeout=timeout,
                                      context=self.ssl_context())
        else:
            client = smtplib.SMTP(self.host, self.port(listener), local_hostname=helo, timeout=timeout)
            if listener == "submission":
                client.starttls(context=self.ssl_context())
        if listener != "relay":
            client.login(user, password)
        return client

    # what arrived -------------------------------------------------------------------------------

    def last_id(self) -> int:
        from lab.store import Store

        store = Store(self.config.db_path)
        try:
            return max(store.ids(), default=0)
        finally:
            store.close()

    def wait_for(self, to: str | None = None, from_: str | None = None, subject: str | None = None,
                 timeout: float = 10, analysed: bool = True) -> CapturedMessage:
        """The next matching message, with its verdict; each message is returned once, oldest first.

        `to` is an envelope recipient, `from_` the From address or MAIL FROM (`*` wildcards allowed),
        `subject` a regular expression searched in the Subject. Fails the test after `timeout` seconds,
        listing what did arrive.
        """
        __tracebackhide__ = True
        from lab.waiting import Match, Progress, wait_for

        match = Match.of(to, from_, subject)
        progress = Progress()
        stored = wait_for(self.config.db_path, since_id=0, timeout=timeout, analysed=analysed,
                          skip=self._returned, progress=progress, match=match)
        if stored is None:
            lines = [f"maillab: no message {match.describe()} arrived within {timeout:g}s"]
            if progress.missed:
                lines.append(f"{progress.seen} other message(s) arrived:")
                lines += [f"  #{m.id} MAIL FROM:<{m.mail_from}> -> {', '.join(m.rcpt_to) or '-'} {m.subject!r}"
                          for m in progress.missed[-5:]]
            else:
                lines.append(f"nothing else arrived either (listeners: {self._describe_ports()})")
            raise AssertionError("\n".join(lines))
        self._returned.add(stored.capture.id)
        return CapturedMessage.from_stored(stored)

    def messages(self, timeout: float = 10) -> list[CapturedMessage]:
        """Every message captured so far, oldest first, once each has its verdict (waits up to `timeout`)."""
        from lab.store import Store

        store = Store(self.config.db_path)
        deadline = time.monotonic() + timeout
        try:
            while True:
                stored = [s for s in (store.get(i) for i in store.ids()) if s is not None]
                if all(s.verdict is not None for s in stored) or time.monotonic() >= deadline:
                    return [CapturedMessage.from_stored(s) for s in stored]
                time.sleep(0.05)
        finally:
            store.close()

    def clear(self) -> None:
        """Delete every captured message (for a session-wide lab between tests)."""
        from lab.store import Store

        store = Store(self.config.db_path)
        try:
            store.clear()
        finally:
            store.close()

    def assert_passes(self, msg: CapturedMessage | Iterable[CapturedMessage] | None = None,
                      families: Iterable[str] | str | None = None, *, warnings: bool = False) -> None:
        """Fail, listing each failing check's id, summary and fix, unless the message passes.

        `msg` None checks every captured message. `families` limits the checks looked at (`"spf"`,
        `("dkim", "dmarc")`); `warnings=True` fails on warnings too.
        """
        __tracebackhide__ = True
        if isinstance(families, str):
            families = (families,)
        messages = self.messages() if msg is None else [msg] if isinstance(msg, CapturedMessage) else list(msg)
        if not messages:
            raise AssertionError("maillab: no messages were captured")
        fams = tuple(families) if families is not None else None
        problems = []
        for m in messages:
            if m.result is None:
                problems.append(m.report())
                continue
            if fams is not None and not any(c.family in fams for c in m.checks.values()):
                known = sorted({c.family for c in m.checks.values()})
                raise AssertionError(f"maillab: message #{m.id} has no checks of the families {', '.join(fams)} "
                                     f"(it has: {', '.join(known)})")
            bad = m.failures(fams, warnings=warnings)
            if bad:
                problems.append(m.report(bad))
        if problems:
            what = "failing or warning" if warnings else "failing"
            raise AssertionError(f"maillab: {what} checks\n" + "\n".join(problems))

    # lifecycle ----------------------------------------------------------------------------------

    def _describe_ports(self) -> str:
        return ", ".join(f"{name} {self.host}:{port}" for name, port in self.engine.ports.items())

    def stop(self) -> None:
        try:
            self._runner.stop()
        finally:
            if self._saved_cert_env is not None:
                (old,) = self._saved_cert_env
                if old is None:
                    os.environ.pop("SSL_CERT_FILE", None)
                else:
                    os.environ["SSL_CERT_FILE"] = old
                self._saved_cert_env = None

    def __enter__(self) -> MailLab:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<MailLab {self._describe_ports()} data={self.data_dir}>"


def _settings(config: pytest.Config, marker: pytest.Mark | None, data_dir: Path, base: Path) -> dict:
    zones = [str(p) for p in config.getini("maillab_zones")]
    settings: dict = {"client_ip": config.getini("maillab_client_ip") or None,
                      "offline": config.getini("maillab_offline")}
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.maillab takes keyword arguments only")
        kwargs = dict(marker.kwargs)
        extra = kwargs.pop("zones", ())
        zones += [str(p if Path(p).is_absolute() else base / p) for p in ([extra] if isinstance(extra, str) else extra)]
        text = kwargs.pop("zone", None)
        if text:
            path = data_dir.parent / "maillab-marker.zone"
            path.write_text(text, encoding="utf-8")
            zones.append(str(path))
        settings.update(kwargs)
    settings["zones"] = zones
    return settings


@pytest.fixture
def maillab(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh lab for this test: free ports, offline DNS from the overlay zones, its store in tmp_path."""
    data_dir = tmp_path / "maillab"
    settings = _settings(request.config, request.node.get_closest_marker("maillab"), data_dir, request.path.parent)
    lab = MailLab(data_dir, **settings)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def maillab_session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One lab for the whole session (ini settings only; markers do not apply). Use `clear()` between tests,
    or rely on `wait_for` returning each message once."""
    data_dir = tmp_path_factory.mktemp("maillab-session") / "maillab"
    lab = MailLab(data_dir, **_settings(request.config, None, data_dir, request.config.rootpath))
    try:
        yield lab
    finally:
        lab.stop()


def _lab_of(item: pytest.Item) -> MailLab | None:
    funcargs = getattr(item, "funcargs", None) or {}
    for name in _LABS:
        lab = funcargs.get(name)
        if isinstance(lab, MailLab):
            return lab
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """After setup, note where this test's mail starts; when the test fails, report what it captured."""
    outcome = yield
    report = outcome.get_result()
    lab = _lab_of(item)
    if lab is None:
        return
    try:
        if report.when == "setup" and report.passed:
            item.stash[_START] = lab.last_id()
        elif report.when == "call" and report.failed:
            start = item.stash.get(_START, 0)
            captured = [m for m in lab.messages(timeout=2) if m.id > start]
            if captured:
                shown = captured[-20:]
                more = f"({len(captured) - len(shown)} earlier not shown)\n" if len(captured) > len(shown) else ""
                report.sections.append(("maillab: messages captured in this test",
                                        more + "\n".join(m.report() for m in shown)))
            else:
                report.sections.append(("maillab: messages captured in this test",
                                        f"none (listeners: {lab._describe_ports()})"))
    except Exception as exc:  # noqa: BLE001 - a report section must never hide the test's own failure
        report.sections.append(("maillab", f"could not read the lab's store: {exc}"))
