"""Provides the `maillab` command: serve, check, list and show (the TUI arrives as the default command).

Exit codes: 0 nothing failed, 1 a check failed (check) or the message is missing (show), 2 usage or
unreadable input, always with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lab import __version__
from lab.lazyimport import defer_unused_imports

defer_unused_imports()  # before the libraries load: dnspython's resolver, PyNaCl... only when used

from lab.config import Config, exposed_warning, load  # noqa: E402
from lab.core.dnsview import ZoneSyntaxError  # noqa: E402
from lab.core.message import ParsedMessage, parse_mailboxes  # noqa: E402
from lab.core.model import Capture, Client, Envelope, Listener, Transport  # noqa: E402
from lab.core.results import Level  # noqa: E402
from lab.render import message_json, verdict_text  # noqa: E402
from lab.textsafe import visible  # noqa: E402

if TYPE_CHECKING:
    from lab.store import Store


class _Suppressing:
    """An argument group whose arguments default to SUPPRESS: absent, they leave the namespace alone."""

    def __init__(self, group):
        self.group = group

    def add_argument(self, *args, **kwargs):
        kwargs["default"] = argparse.SUPPRESS
        if kwargs.get("action") == "append":  # kept apart, then added to what came before the subcommand
            kwargs["dest"] = f"{kwargs.get('dest') or args[0].lstrip('-').replace('-', '_')}{_MORE}"
        return self.group.add_argument(*args, **kwargs)


_MORE = "_after_command"


def _repeated(args: argparse.Namespace, name: str) -> list:
    """A repeatable option given before the subcommand, then after it: `--zone A check --zone B` is both."""
    return [*(getattr(args, name, None) or []), *(getattr(args, name + _MORE, None) or [])]


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line, exit 2."""


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common options")
    if p.prog != "maillab":
        # A subcommand's defaults would overwrite what was given before the subcommand (`maillab --zone F
        # check`): its copies of the common options set nothing unless given.
        g = _Suppressing(g)
    g.add_argument("--config", type=Path, help="TOML config file (default: XDG config dir/maillab/config.toml)")
    g.add_argument("--data-dir", type=Path, help="where the store and TLS certificate live")
    g.add_argument("--zone", dest="zones", action="append", metavar="FILE",
                   help="zone overlay file answered before real DNS (repeatable)")
    g.add_argument("--offline", action="store_true", default=None, help="answer DNS from the overlays alone")
    g.add_argument("--nameserver", metavar="HOST[:PORT]", help="resolver to use instead of the system's")
    g.add_argument("--client-ip", metavar="IP", help="evaluate loopback senders as this client IP")
    g.add_argument("--bind", metavar="ADDR", help="address the listeners bind (default 127.0.0.1)")
    g.add_argument("--relay-port", type=int, metavar="N", help="relay listener, port 25 role (default 2525)")
    g.add_argument("--submission-port", type=int, metavar="N", help="submission, port 587 role (default 2587)")
    g.add_argument("--smtps-port", type=int, metavar="N", help="smtps, port 465 role (default 2465)")
    g.add_argument("--pop3-port", type=int, metavar="N", help="POP3, to read captured mail (default 2110; 0: off)")
    g.add_argument("--profile", action="append", metavar="[LISTENER=]NAME",
                   help="judge by a provider's sender rules: gmail-bulk, gmail, yahoo, outlook or none "
                        "(default none); LISTENER=NAME for one listener; repeatable")
    g.add_argument("--blocklists", metavar="SETTING",
                   help="DNS blocklists: default, off, or ip:ZONE,domain:ZONE,... (default: default)")
    g.add_argument("--spam-filters", choices=["auto", "rspamd", "spamassassin", "off"],
                   help="ask rspamd/spamd on loopback for a second opinion (default auto: when they listen)")
    g.add_argument("--rules", metavar="FILE",
                   help="rules file (TOML): scripted refusals, delays, greylisting, bounces; re-read on change")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maillab", description="A terminal email testing lab: captures test mail "
                                "and judges it as a receiving filter would. Never delivers anything.")
    p.add_argument("--version", action="version", version=f"maillab {__version__}")
    _common(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("serve", help="run the three listeners without a UI; one line per message")
    _common(s)
    s.add_argument("--json", action="store_true", help="print JSON lines instead")
    s.add_argument("--credentials", metavar="FILE", help="accept only these user:password lines for AUTH")
    s.add_argument("--max-messages", type=int, metavar="N", help="keep only the newest N messages (0: all)")
    s.add_argument("--analysis-workers", type=int, metavar="N",
                   help="analysis processes (default: one per core, at most 4)")

    c = sub.add_parser("check", help="analyse message files without SMTP")
    _common(c)
    c.add_argument("files", nargs="+", metavar="FILE.eml",
                   help="the message (- for standard input); several are judged in one run, with --json as an "
                        "array of documents each naming its file")
    c.add_argument("--helo", metavar="NAME", help="the HELO/EHLO name to assume")
    c.add_argument("--mail-from", metavar="ADDR", help="MAIL FROM (default: Return-Path, else From)")
    c.add_argument("--rcpt", action="append", metavar="ADDR", help="RCPT TO (repeatable)")
    c.add_argument("--listener", choices=[x.value for x in Listener if x is not Listener.LAB], default="cli",
                   help="judge as if received on this listener")
    c.add_argument("--tls", action="store_true", help="assume the session was TLS-protected")
    c.add_argument("--tls-version", metavar="V", default="TLSv1.3", help="with --tls: the protocol (TLSv1.3)")
    c.add_argument("--auth-user", metavar="USER", help="assume the client authenticated as USER")
    c.add_argument("--auth-mechanism", metavar="MECH", default="PLAIN", help="with --auth-user: PLAIN, LOGIN, ...")
    c.add_argument("--json", action="store_true", help="print the result as JSON")

    ls = sub.add_parser("list", help="list captured messages, newest first")
    _common(ls)
    ls.add_argument("--json", action="store_true", help="a JSON array of messages")
    ls.add_argument("--limit", type=int, metavar="N", help="at most N messages (with --attempts: N groups)")
    ls.add_argument("--attempts", action="store_true",
                    help="the refused attempts instead, grouped by sender and recipient, with the retry verdict")

    sh = sub.add_parser("show", help="show one captured message and its verdict")
    _common(sh)
    sh.add_argument("id", type=int, metavar="ID")
    fmt = sh.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the message as JSON")
    fmt.add_argument("--raw", action="store_true", help="the exact bytes received")

    d = sub.add_parser("dns", help="explain a domain's SPF, DMARC, DKIM and MX records and what to change")
    _common(d)
    d.add_argument("domain", metavar="DOMAIN", help="the domain to inspect")
    d.add_argument("--selector", action="append", metavar="S", help="a DKIM selector to look up (repeatable)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")

    from lab import mailio, waiting

    mailio.add_parsers(sub, _common)
    waiting.add_parser(sub, _common)
    return p


def config_from(args: argparse.Namespace) -> Config:
    from lab.core.profiles import get_profile
    from lab.judging import blocklist_zones

    try:
        given = getattr(args, "config", None)
        explicit = given or (Path(os.environ["MAILLAB_CONFIG"]) if os.environ.get("MAILLAB_CONFIG") else None)
        if explicit is not None and not explicit.exists():
            raise UsageError(f"config file {explicit} does not exist")
        config = load(given)
        values = {k: getattr(args, k, None) for k in (
            "data_dir", "offline", "nameserver", "client_ip", "bind", "relay_port", "submission_port",
            "smtps_port", "pop3_port", "credentials", "max_messages", "analysis_workers", "blocklists", "spam_filters",
            "rules")}
        config.update(values, "command line")
        for item in _repeated(args, "profile"):
            listener, sep, name = item.rpartition("=")
            if sep:
                if listener not in ("relay", "submission", "smtps"):
                    raise ValueError(f"--profile {item}: the listener is relay, submission or smtps")
                config.profiles = {**config.profiles, listener: name}
            else:
                config.profile = name
        for name in [config.profile, *config.profiles.values()]:
            get_profile(name)
        blocklist_zones(config.blocklists)
        if _repeated(args, "zones"):
            config.zones = [*config.zones, *_repeated(args, "zones")]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if config.client_ip:
        try:
            ipaddress.ip_address(config.client_ip)
        except ValueError as exc:
            raise UsageError(f"--client-ip {config.client_ip!r} is not an IP address") from exc
    if config.nameserver:
        from lab.resolver import parse_nameserver

        try:
            host, port = parse_nameserver(config.nameserver)
            ipaddress.ip_address(host)
            if not 0 < port < 65536:
                raise ValueError(port)
        except ValueError as exc:
            raise UsageError(f"--nameserver {config.nameserver!r} is not IP[:PORT] or [IPv6]:PORT") from exc
    for flag in ("relay_port", "submission_port", "smtps_port", "pop3_port"):
        port = getattr(config, flag)
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise UsageError(f"--{flag.replace('_', '-')} {port} is not a port number (0-65535)")
    return config


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = config_from(args)
        if args.command is None:
            _check_rules(config)
            if sys.stdin.isatty() and sys.stdout.isatty():
                return cmd_ui(config)
            print("maillab: no terminal for the UI; serving headless (maillab serve)", file=sys.stderr)
            return cmd_serve(config, False)
        command = args.command
        if command == "serve":
            _check_rules(config)
            return cmd_serve(config, getattr(args, "json", False))
        if command == "check":
            return cmd_check(config, args)
        if command == "list":
            return cmd_list(config, args)
        if command == "dns":
            from lab.dnscmd import run as cmd_dns

            return cmd_dns(args, _view(config), config.db_path)
        if command == "show":
            return cmd_show(config, args)
        if command in ("export", "import"):
            from lab import mailio

            return (mailio.run_export if command == "export" else mailio.run_import)(args, config)
        if command == "wait":
            from lab import waiting

            return waiting.run(args, config)
    except UsageError as exc:
        print(f"maillab: {exc}", file=sys.stderr)
        return 2
    except (ZoneSyntaxError, FileNotFoundError) as exc:
        print(f"maillab: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 2


def _check_rules(config: Config) -> None:
    """A rules file that does not load stops the lab before it starts (exit 2), naming the rule and key."""
    if not config.rules:
        return
    from lab.rules import RulesError, load_rules

    try:
        load_rules(config.rules)
    except RulesError as exc:
        raise UsageError(str(exc)) from exc


def _view(config: Config):
    from lab.resolver import build_view

    try:
        return build_view(config.zones, config.offline, config.nameserver, cache_dir=config.zone_cache)
    except (ZoneSyntaxError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from exc


def cmd_ui(config: Config) -> int:
    from lab.ui.app import MaillabApp

    MaillabApp(config).run()  # a broken zone file or a busy port is a notification there
    return 0


def cmd_serve(config: Config, as_json: bool) -> int:
    import asyncio
    import signal

    from lab.engine import Engine
    from lab.rules import RulesError

    try:
        engine = Engine(config, _view(config))
    except RulesError as exc:  # the file changed for the worse since _check_rules
        raise UsageError(str(exc)) from exc

    engine.worker.output = "json" if as_json else "line"  # printed by the analysis worker, off the SMTP path
    engine.subscribe_rules(lambda text, bad: print(f"maillab: {'ERROR: ' if bad else ''}{text}", file=sys.stderr,
                                                   flush=True))

    async def run() -> None:
        try:
            await engine.start()
        except OSError as exc:
            raise UsageError(str(exc)) from exc
        out = sys.stderr
        if exposed_warning(config.bind):
            print(f"maillab: WARNING: {exposed_warning(config.bind)}", file=out)
        for spec in engine.specs:
            print(f"maillab: listening {spec.describe()}", file=out)
        if engine.pop3_port is not None:
            print(f"maillab: listening pop3 {config.bind}:{engine.pop3_port} (read captured mail: USER is a recipient "
                  "address or *; STLS offered)", file=out)
        if config.rules:
            print(f"maillab: rules {config.rules} (re-read when it changes)", file=out)
        print(f"maillab: DNS {engine.dns_mode}; store {config.db_path}", file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("maillab: stopping", file=out, flush=True)
        await engine.stop()

    asyncio.run(run())
    return 0


def cmd_check(config: Config, args: argparse.Namespace) -> int:
    """One or more files, judged by one Judge over one DNS view: checking a folder costs one start-up.

    Exit 0 when none fails, 1 when one does, 2 when one could not be read (the others are still judged)."""
    from lab.judging import Judge

    files = args.files
    if files.count("-") > 1:
        raise UsageError("standard input (-) can be read once")
    judge, view = Judge(config), _view(config)
    many = len(files) > 1
    docs, status = [], 0
    for name in files:
        try:
            raw = _read_message(name)
        except UsageError as exc:
            if not many:
                raise
            print(f"maillab: {exc}", file=sys.stderr)
            status = 2
            continue
        capture, verdict = _judge_file(raw, config, args, judge, view)
        if verdict.level is Level.FAIL and status == 0:
            status = 1
        if args.json:
            docs.append({"file": name, **message_json(capture, verdict)} if many else message_json(capture, verdict))
        else:
            if many:
                print(visible(f"== {name}"))
            print(verdict_text(capture, verdict, color=sys.stdout.isatty()))
    if args.json:
        print(json.dumps(docs if many else docs[0], indent=2))
    return status


def _read_message(name: str) -> bytes:
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise UsageError(f"{name} is empty")
    return raw


def _judge_file(raw: bytes, config: Config, args: argparse.Namespace, judge, view):
    """The capture `check` makes of a file (envelope from the options, else from the message) and its verdict."""
    message = ParsedMessage(raw)
    mail_from = args.mail_from
    if mail_from is None:
        mail_from = default_mail_from(message)
    client_ip = config.client_ip or "127.0.0.1"
    capture = Capture(
        raw=raw,
        envelope=Envelope(mail_from=mail_from, rcpt_to=tuple(args.rcpt or ()), helo=args.helo),
        transport=Transport(Listener(args.listener), None, args.tls_version if args.tls else None, None,
                            args.auth_mechanism.upper() if args.auth_user else None, args.auth_user),
        client=Client(ip=client_ip, peer_ip=None, source="cli" if config.client_ip else "peer"),
        received_at=datetime.now(UTC),
    )
    return capture, judge.judge(capture, view, message=message)


def default_mail_from(message: ParsedMessage) -> str:
    for name in ("return-path", "from"):
        value = message.first(name)
        if value:
            boxes = parse_mailboxes(value)
            if boxes:
                return boxes[0].address
    return ""


def _open_store(config: Config) -> Store:
    from lab.store import Store
    if not config.db_path.exists():
        raise UsageError(f"no store at {config.db_path} (run `maillab serve` first, or pass --data-dir)")
    return Store(config.db_path)


def cmd_list(config: Config, args: argparse.Namespace) -> int:
    if getattr(args, "attempts", False):
        return cmd_list_attempts(config, args)
    store = _open_store(config)
    try:
        rows = store.summaries(limit=args.limit)
        if args.json:
            docs = []
            for row in rows:
                stored = store.get(row.id)
                if stored is not None:
                    docs.append(message_json(stored.capture, stored.verdict, stored.analysed_at))
            print(json.dumps(docs, indent=2))
            return 0
        from lab.render import SYMBOL
        from lab.textsafe import visible

        for r in rows:
            badge = f"{SYMBOL[r.level]} {r.level.value}" if r.level else "… new"
            failed = f" [{','.join(r.failed)}]" if r.failed else ""
            print(visible(f"{r.id:>6}  {badge:7} {r.received_at[:19]}  {r.listener:10} {r.mail_from or '<>'} -> "
                          f"{','.join(r.rcpt_to[:2])}  {r.subject[:50]!r}{failed}"))
        if not rows and store.count() == 0:
            print("no messages captured yet", file=sys.stderr)
        return 0
    finally:
        store.close()


def cmd_list_attempts(config: Config, args: argparse.Namespace) -> int:
    """`list --attempts`: refused attempts grouped by sender and recipient, each group with its retry verdict."""
    from lab.render import group_json, group_text
    from lab.retries import judged_groups

    store = _open_store(config)
    try:
        judged = judged_groups(store, limit=args.limit)
        if args.json:
            print(json.dumps([group_json(j.group, j.checks) for j in judged], indent=2))
            return 0
        for j in judged:
            print(group_text(j.group, j.checks))
            print()
        if not judged:
            print("no refused attempts recorded", file=sys.stderr)
        return 0
    finally:
        store.close()


def _attempts_of(store: Store, capture: Capture):
    message = ParsedMessage(capture.raw)
    return store.attempts_for(capture, message.first("message-id"))


def cmd_show(config: Config, args: argparse.Namespace) -> int:
    store = _open_store(config)
    try:
        stored = store.get(args.id)
        if stored is None:
            print(f"maillab: no message {args.id}", file=sys.stderr)
            return 1
        if args.raw:
            sys.stdout.buffer.write(stored.capture.raw)
            sys.stdout.buffer.flush()
        elif args.json:
            from lab.render import attempt_json

            doc = message_json(stored.capture, stored.verdict, stored.analysed_at)
            doc["session"] = stored.session
            doc["attempts"] = [attempt_json(a) for a in _attempts_of(store, stored.capture)]
            print(json.dumps(doc, indent=2))
        else:
            from lab.render import attempts_text

            print(verdict_text(stored.capture, stored.verdict, color=sys.stdout.isatty()))
            checks = [c for c in stored.verdict.checks if c.family == "retry"] if stored.verdict else []
            section = attempts_text(_attempts_of(store, stored.capture), checks)
            if section:
                print(section)
        return 0
    finally:
        store.close()
