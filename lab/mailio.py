"""Provides `maillab export` and `maillab import`: captured mail out to Maildir or mbox, mail from elsewhere in.

Export never alters a message's bytes: a Maildir file is exactly what the lab received (the lab's id is in
the file name), and an mbox only adds its `From ` separator line, mboxrd quoting of `>*From ` lines and the
blank line that ends each message, all of which import takes away again. Exports write only under the
destination the user named: no path comes from message content, files are created 0600 with O_EXCL and
O_NOFOLLOW relative to directory descriptors, and a symlinked cur/new/tmp or mbox file is refused.

Import reads .eml files, directories of .eml files, Maildir folders and mbox files (or `-` for standard
input) as raw bytes: the stdlib `mailbox` module is not used because it rewrites line endings and From_
lines. Each message becomes a Capture on the `cli` listener with the envelope `maillab check` would
assume (MAIL FROM from Return-Path, else From), is stored, and is judged in-process right away, as the
lab's analysis worker would judge it, so `maillab import` prints verdicts at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lab.config import Config
from lab.core.message import ParsedMessage
from lab.core.model import Capture, Client, Envelope, Listener, Transport
from lab.core.results import Level, Verdict

if TYPE_CHECKING:
    from lab.store import Store

log = logging.getLogger("maillab.import")

BATCH = 64  # messages per store transaction on import, as the analysis worker batches
_QUOTE_RD = re.compile(rb"^(>*From )", re.M)
_UNQUOTE_RD = re.compile(rb"^>(>*From )", re.M)
_UNQUOTE_O = re.compile(rb"^>(From )", re.M)
_SEPARATOR_UNSAFE = re.compile(r"[^\x21-\x7e]")
_BLANK = (b"\n", b"\r\n")


class MailIOError(Exception):
    """A problem with what the user asked for (a path, a destination); one line, exit 2."""


# ------------------------------------------------------------------------------------------------ export


def _selected(store: Store, ids: Iterable[int] | None) -> Iterator:
    """Stored messages in id order: the given ids (missing ones skipped), or every message."""
    for mid in (sorted(set(ids)) if ids is not None else store.ids()):
        stored = store.get(mid)
        if stored is not None:
            yield stored


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    """A directory descriptor that never follows a symlink at the last component."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise MailIOError(f"{path}: not a directory, or a symlink (refused): {exc.strerror}") from exc


def _maildir_host() -> str:
    host = socket.gethostname() or "localhost"
    return host.replace("/", r"\057").replace(":", r"\072")


def maildir_name(stored_id: int, received_at: datetime, host: str | None = None) -> str:
    """`<seconds>.M<usec>P<pid>R<random>_maillab-<id>.<host>`: unique, sorted by arrival, the lab's id visible."""
    ts = received_at.timestamp()
    sec, usec = int(ts), int(round((ts - int(ts)) * 1_000_000)) % 1_000_000
    return f"{sec}.M{usec}P{os.getpid()}R{secrets.token_hex(4)}_maillab-{stored_id}.{host or _maildir_host()}"


def export_maildir(store: Store, dest: Path, ids: Iterable[int] | None = None) -> int:
    """Write messages as files in the Maildir `dest` (created with cur/new/tmp if missing); returns how many.

    `dest` must be missing, empty or already a Maildir, so a mistyped path never sprays cur/new/tmp into
    an unrelated directory. Each file is written in tmp/ and linked into new/ (the Maildir delivery
    protocol), byte for byte, mode 0600.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise MailIOError(f"{dest} exists and is not a directory")
    if dest.is_dir():
        entries = {e.name for e in os.scandir(dest)}
        if entries and not {"cur", "new", "tmp"} <= entries:
            raise MailIOError(f"{dest} is neither empty nor a Maildir (no cur/new/tmp): refusing to write there")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = _open_dir(str(dest))
    fds: dict[str, int] = {}
    try:
        for sub in ("cur", "new", "tmp"):
            try:
                os.mkdir(sub, 0o700, dir_fd=root)
            except FileExistsError:
                pass
            fds[sub] = _open_dir(sub, root)
        host = _maildir_host()
        count = 0
        for stored in _selected(store, ids):
            name = maildir_name(stored.capture.id, stored.capture.received_at, host)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fds["tmp"])
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(stored.capture.raw)
                try:
                    os.link(name, name, src_dir_fd=fds["tmp"], dst_dir_fd=fds["new"])
                    os.unlink(name, dir_fd=fds["tmp"])
                except OSError as exc:
                    if isinstance(exc, FileExistsError):
                        raise
                    os.rename(name, name, src_dir_fd=fds["tmp"], dst_dir_fd=fds["new"])  # no hard links here
            except BaseException:
                try:
                    os.unlink(name, dir_fd=fds["tmp"])
                except OSError:
                    pass
                raise
            count += 1
        return count
    finally:
        for fd in fds.values():
            os.close(fd)
        os.close(root)


def mbox_separator(capture: Capture) -> bytes:
    """`From <sender> <asctime in UTC>`; the sender is printable ASCII without spaces, `MAILER-DAEMON` for <>."""
    sender = _SEPARATOR_UNSAFE.sub("?", capture.envelope.mail_from or "")[:256] or "MAILER-DAEMON"
    when = capture.received_at.astimezone(UTC) if capture.received_at.tzinfo else capture.received_at
    return f"From {sender} {time.asctime(when.timetuple())}\n".encode("ascii")


def mbox_entry(capture: Capture) -> bytes:
    """One mboxrd entry: separator, the message with `>*From ` lines quoted, a final newline and a blank line."""
    body = _QUOTE_RD.sub(rb">\1", capture.raw)
    if not body.endswith(b"\n"):
        body += b"\n"
    return mbox_separator(capture) + body + b"\n"


def export_mbox(store: Store, dest: Path, ids: Iterable[int] | None = None) -> int:
    """Append messages to the mboxrd file `dest` (created 0600 if missing); returns how many.

    An existing file must be an mbox (start with `From `); a symlink is refused.
    """
    dest = Path(dest)
    try:
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NOCTTY, 0o600)
    except OSError as exc:
        raise MailIOError(f"cannot write {dest}: {exc.strerror or exc}"
                          + (" (a symlink: refused)" if dest.is_symlink() else "")) from exc
    with os.fdopen(fd, "r+b") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise MailIOError(f"{dest} is not a regular file")
        if info.st_size:
            f.seek(0)
            if f.read(5) != b"From ":
                raise MailIOError(f"{dest} exists and is not an mbox file (it does not start with 'From ')")
            f.seek(max(0, info.st_size - 3))
            tail = f.read(3)
            if not tail.endswith((b"\n\n", b"\n\r\n")):  # the last message must end with a blank line
                f.write(b"\n" if tail.endswith(b"\n") else b"\n\n")
        count = 0
        for stored in _selected(store, ids):
            f.write(mbox_entry(stored.capture))
            count += 1
    return count


# ------------------------------------------------------------------------------------------------ import


@dataclass(frozen=True, slots=True)
class Found:
    """One message read from a source, or a reason it was skipped (`raw` None)."""

    origin: str  # "file.mbox#3", "Maildir/cur/123.abc", "a.eml"
    raw: bytes | None
    delivered_at: datetime | None = None
    skipped: str | None = None


def unquote(raw: bytes, style: str = "mboxrd") -> bytes:
    """Undo From_ quoting: mboxrd takes one `>` off every `>+From ` line, mboxo only off `>From `."""
    return (_UNQUOTE_O if style == "mboxo" else _UNQUOTE_RD).sub(rb"\1", raw)


def read_mbox(stream, origin: str, style: str = "mboxrd", max_size: int = 0) -> Iterator[Found]:
    """Messages of an mbox stream, line by line, so memory holds one message at a time.

    A separator is a `From ` line at the start of the file or after a blank line; the blank line before
    it (LF or CRLF) belongs to the separator and is removed, so export then import gives the same bytes.
    """
    lines: list[bytes] | None = None
    size = 0
    number = 0
    prev_blank = True
    too_big = False

    def finish() -> Found:
        nonlocal lines
        where = f"{origin}#{number}"
        if too_big:
            return Found(where, None, skipped=f"larger than max-size ({max_size} bytes)")
        body = lines[:-1] if lines and lines[-1] in _BLANK else lines
        raw = unquote(b"".join(body), style)
        return Found(where, raw) if raw.strip() else Found(where, None, skipped="empty message")

    for line in stream:
        if prev_blank and line.startswith(b"From "):
            if lines is not None:
                yield finish()
            lines, size, too_big, prev_blank = [], 0, False, False
            number += 1
            continue
        if lines is None:
            if line.strip():
                raise MailIOError(f"{origin}: not an mbox file (text before the first 'From ' line)")
            continue
        prev_blank = line in _BLANK
        if too_big:
            continue
        size += len(line)
        if max_size and size > max_size + 2:
            too_big, lines = True, []
            continue
        lines.append(line)
    if lines is not None:
        yield finish()


def _maildir_time(name: str) -> datetime | None:
    m = re.match(r"(\d{9,11})(?:\.|$)", name)
    return datetime.fromtimestamp(int(m.group(1)), UTC) if m else None


def _read_file(path: Path, origin: str, max_size: int, delivered_at: datetime | None = None) -> Found:
    try:
        size = path.stat().st_size
        if max_size and size > max_size:
            return Found(origin, None, skipped=f"larger than max-size ({max_size} bytes)")
        raw = path.read_bytes()
    except OSError as exc:
        return Found(origin, None, skipped=f"cannot read: {exc.strerror or exc}")
    if not raw.strip():
        return Found(origin, None, skipped="empty file")
    return Found(origin, raw, delivered_at)


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(5) == b"From "


def check_sources(paths: Iterable[str | Path]) -> list[str]:
    """Refuse the whole import before anything is stored if a path is missing or of an unknown kind."""
    out = []
    for p in paths:
        p = str(p)
        if p == "-":
            out.append(p)
            continue
        path = Path(p)
        if not path.exists():
            raise MailIOError(f"{p}: no such file or directory")
        if not (path.is_file() or path.is_dir()):
            raise MailIOError(f"{p}: not a file or directory")
        if path.is_file() and not os.access(path, os.R_OK):
            raise MailIOError(f"{p}: not readable")
        out.append(p)
    return out


def _prepended(head: bytes, stream) -> Iterator[bytes]:
    """The lines of `stream` whose first bytes were already read as `head`."""
    yield head + stream.readline()
    yield from stream


def read_sources(paths: Iterable[str | Path], style: str = "mboxrd", max_size: int = 0,
                 stdin=None) -> Iterator[Found]:
    """Every message in the given paths, in order: files (mbox when they start with `From `, else one
    message), Maildir folders (new/ then cur/, oldest first; tmp/ and subfolders are not read) and
    directories of *.eml files (sorted by name, not recursive)."""
    for p in check_sources(paths):
        if p == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            head = stream.read(5)
            if head == b"From ":
                yield from read_mbox(_prepended(head, stream), "stdin", style, max_size)
            else:
                raw = head + stream.read()
                yield Found("stdin", raw) if raw.strip() else Found("stdin", None, skipped="empty input")
            continue
        path = Path(p)
        if path.is_file():
            if _is_mbox(path):
                with path.open("rb") as f:
                    yield from read_mbox(f, p, style, max_size)
            else:
                yield _read_file(path, p, max_size)
        elif is_maildir(path):
            for sub in ("new", "cur"):
                entries = [e for e in os.scandir(path / sub) if not e.name.startswith(".") and e.is_file()]
                entries.sort(key=lambda e: (_maildir_time(e.name) or datetime.max.replace(tzinfo=UTC), e.name))
                for e in entries:
                    yield _read_file(Path(e.path), f"{p}/{sub}/{e.name}", max_size, _maildir_time(e.name))
        else:
            entries = sorted((e for e in os.scandir(path) if e.name.lower().endswith(".eml") and e.is_file()),
                             key=lambda e: e.name)
            if not entries:
                yield Found(p, None, skipped="a directory with no .eml files and no cur/new (not a Maildir)")
            for e in entries:
                yield _read_file(Path(e.path), str(Path(p) / e.name), max_size)


def received_time(message: ParsedMessage) -> datetime | None:
    """When the last hop received the message: the date after `;` in the topmost Received field."""
    value = message.first("received")
    if not value or ";" not in value:
        return None
    try:
        when = parsedate_to_datetime(value.rpartition(";")[2].strip()[:80])
    except Exception:  # noqa: BLE001 - any odd date is "unknown", never an exception
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def capture_from_bytes(raw: bytes, *, mail_from: str | None = None, rcpt: Iterable[str] = (),
                       helo: str | None = None, client_ip: str | None = None,
                       delivered_at: datetime | None = None) -> Capture:
    """A message file as `maillab check` sees it: the `cli` listener, MAIL FROM from Return-Path, else From.

    `received_at` is the topmost Received field's date, else `delivered_at`, else now.
    """
    from lab.cli import default_mail_from  # lazily: lab.cli imports this module for its subcommands

    message = ParsedMessage(raw)
    return Capture(
        raw=raw,
        envelope=Envelope(mail_from=default_mail_from(message) if mail_from is None else mail_from,
                          rcpt_to=tuple(rcpt), helo=helo),
        transport=Transport(Listener.CLI),
        client=Client(ip=client_ip or "127.0.0.1", peer_ip=None, source="cli" if client_ip else "peer"),
        received_at=received_time(message) or delivered_at or datetime.now(UTC),
    )


Judging = Callable[["Store", Capture], Verdict]


def lab_judging(config: Config, view) -> Judging:
    """Judge a stored capture exactly as the lab's analysis worker does: the same DNS view and the same
    options (provider profile, blocklists, the sender's history in this store, spam filters)."""
    from lab.judging import Judge

    judge = Judge(config)
    return lambda store, capture: judge.judge(capture, view, store)


@dataclass
class ImportReport:
    ids: list[int]
    skipped: list[Found]
    verdicts: dict[int, Verdict]


def import_paths(store: Store, paths: Iterable[str | Path], *, judging: Judging | None = None,
                 mail_from: str | None = None, rcpt: Iterable[str] = (), helo: str | None = None,
                 client_ip: str | None = None, style: str = "mboxrd", max_size: int = 0, keep: int = 0,
                 stdin=None, on_stored: Callable[[Capture, Verdict | None], None] | None = None) -> ImportReport:
    """Store every message found in `paths`; with `judging` (see `lab_judging`), judge each and store its verdict.

    Messages are stored in batches of BATCH per transaction and each batch is judged and its verdicts saved
    at once, as the analysis worker does, so a lab running on the same store has (almost) nothing left to
    pick up. A message that makes the analysis raise is stored without a verdict (the lab retries it when it
    next starts). `received_at` is when the message was last received (its topmost Received field, else the
    Maildir delivery time, else now), so the Date check compares against the real arrival, not the import.
    """
    report = ImportReport([], [], {})
    rcpt = tuple(rcpt)
    batch: list[Capture] = []

    def flush() -> None:
        ids = store.add_many([(c, []) for c in batch], keep=keep)
        stored = [replace(c, id=mid) for c, mid in zip(batch, ids, strict=True)]
        judged: dict[int, Verdict] = {}
        if judging is not None:
            for c in stored:
                try:
                    judged[c.id] = judging(store, c)
                except Exception:  # noqa: BLE001 - one message must not stop an import; it stays unjudged
                    log.exception("analysis of imported message %s failed", c.id)
            if judged:
                store.save_judged([(c, judged[c.id]) for c in stored if c.id in judged])
        for c in stored:
            report.ids.append(c.id)
            if c.id in judged:
                report.verdicts[c.id] = judged[c.id]
            if on_stored:
                on_stored(c, judged.get(c.id))
        batch.clear()

    for found in read_sources(paths, style, max_size, stdin):
        if found.raw is None:
            report.skipped.append(found)
            continue
        batch.append(capture_from_bytes(found.raw, mail_from=mail_from, rcpt=rcpt, helo=helo, client_ip=client_ip,
                                        delivered_at=found.delivered_at))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return report


# ------------------------------------------------------------------------------------------------ CLI


def add_parsers(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The `export` and `import` subcommands; `common` adds the options every command takes."""
    e = sub.add_parser("export", help="write captured messages to a Maildir or an mbox file")
    common(e)
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--maildir", type=Path, metavar="DIR", help="a Maildir (created if missing; files in new/)")
    where.add_argument("--mbox", type=Path, metavar="FILE", help="an mboxrd file (appended to if it exists)")
    e.add_argument("ids", type=int, nargs="*", metavar="ID", help="these messages (default: every message)")
    e.add_argument("--filter", metavar="QUERY", help="only messages matching a list filter, e.g. 'verdict:fail'")

    i = sub.add_parser("import", help="store and judge messages from .eml files, Maildir folders or mbox files")
    common(i)
    i.add_argument("paths", nargs="+", metavar="PATH", help=".eml file, directory of .eml, Maildir, mbox, or -")
    i.add_argument("--mail-from", metavar="ADDR", help="MAIL FROM for every message (default: Return-Path, else From)")
    i.add_argument("--rcpt", action="append", metavar="ADDR", help="RCPT TO for every message (repeatable)")
    i.add_argument("--helo", metavar="NAME", help="the HELO/EHLO name to assume")
    i.add_argument("--mboxo", action="store_true", help="the mbox quotes only 'From ' lines (mboxo, not mboxrd)")
    i.add_argument("--no-analyse", action="store_true",
                   help="only store; the lab judges the backlog when it next runs")
    i.add_argument("--json", action="store_true", help="print a JSON array of the imported messages")


def _fail(reason: str) -> int:
    print(f"maillab: {reason}", file=sys.stderr)
    return 2


def run_export(args: argparse.Namespace, config: Config) -> int:
    """Exit 0 when every asked-for message was written, 1 when some id does not exist, 2 on bad usage."""
    if not config.db_path.exists():
        return _fail(f"no store at {config.db_path} (run `maillab serve` first, or pass --data-dir)")
    from lab.store import Filter, Store  # sqlite3: only for the commands that open the store

    store = Store(config.db_path)
    try:
        known = set(store.ids())
        wanted = sorted(set(args.ids)) if args.ids else sorted(known)
        if args.filter:
            matching = {s.id for s in store.summaries(where=Filter.parse(args.filter))}
            wanted = [i for i in wanted if i in matching]
        missing = [i for i in wanted if i not in known]
        ids = [i for i in wanted if i in known]
        if args.maildir is not None:
            n, dest = export_maildir(store, args.maildir, ids), args.maildir
        else:
            n, dest = export_mbox(store, args.mbox, ids), args.mbox
    except MailIOError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot export: {exc.strerror or exc}")
    finally:
        store.close()
    print(f"maillab: exported {n} message{'s' * (n != 1)} to {dest}", file=sys.stderr)
    for mid in missing:
        print(f"maillab: no message {mid}", file=sys.stderr)
    return 1 if missing else 0


def run_import(args: argparse.Namespace, config: Config) -> int:
    """Exit 0 nothing failed, 1 an imported message's verdict is fail (as `check`), 2 bad usage or nothing read."""
    from lab.analyser import build_lab_view
    from lab.core.dnsview import ZoneSyntaxError
    from lab.render import message_json, one_line

    try:
        check_sources(args.paths)
        judging = None if args.no_analyse else lab_judging(config, build_lab_view(config))
    except MailIOError as exc:
        return _fail(str(exc))
    except (ZoneSyntaxError, FileNotFoundError) as exc:
        return _fail(str(exc))
    config.ensure_data_dir()
    from lab.store import Store  # sqlite3: only for the commands that open the store

    store = Store(config.db_path)
    first = [True]

    def show(capture: Capture, verdict: Verdict | None) -> None:
        if args.json:
            doc = json.dumps(message_json(capture, verdict, None), indent=2)
            print(("[\n" if first[0] else ",\n") + doc, end="")
            first[0] = False
        elif verdict is not None:
            print(one_line(capture, verdict))
        else:
            print(f"#{capture.id} stored (not analysed)")

    try:
        report = import_paths(store, args.paths, judging=judging, mail_from=args.mail_from,
                              rcpt=args.rcpt or (), helo=args.helo, client_ip=config.client_ip,
                              style="mboxo" if args.mboxo else "mboxrd", max_size=config.max_size,
                              keep=config.max_messages, on_stored=show)
    except MailIOError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot import: {exc.strerror or exc}")
    finally:
        store.close()
    if args.json:
        print("[]" if first[0] else "\n]")
    from lab.textsafe import visible

    for found in report.skipped:
        print(visible(f"maillab: skipped {found.origin}: {found.skipped}"), file=sys.stderr)
    n = len(report.ids)
    levels = [v.level for v in report.verdicts.values()]
    tally = ", ".join(f"{levels.count(lv)} {lv.value}" for lv in (Level.PASS, Level.WARN, Level.FAIL)
                      if levels.count(lv))
    span = f" (#{report.ids[0]}–#{report.ids[-1]})" if n else ""
    print(f"maillab: imported {n} message{'s' * (n != 1)}{span}" + (f": {tally}" if tally else "")
          + f" into {config.db_path}", file=sys.stderr)
    if not n:
        return 2
    return 1 if Level.FAIL in levels else 0
