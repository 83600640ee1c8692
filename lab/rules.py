r"""Provides scripted receiver behaviour: rules that make the lab refuse, delay, greylist, bounce or auto-reply.

An application's mail code is only tested when the receiving side misbehaves: a recipient that does not
exist, a full mailbox, a greylisting MX, a server that drops the connection. The rules here decide, at each
stage of an SMTP session, whether the lab answers normally or does something else. They are pure decisions:
no sockets; the SMTP server asks `decide()` and acts on the Action it gets back.

With no rules file four local parts behave specially (any domain, any `+tag`):

- `bounce-hard@`  RCPT gets `550 5.1.1 <addr>: Recipient address rejected: User unknown`;
  `bounce-hard+dsn@` is accepted, then an RFC 3464 bounce (DSN) goes to the envelope sender.
- `bounce-soft@`  RCPT gets `452 4.2.2 <addr>: Recipient address rejected: Mailbox full`;
  `bounce-soft+dsn@` is accepted, then a "delayed" DSN goes to the envelope sender.
- `greylist@`     the first attempt of a (client /24, MAIL FROM, RCPT) triplet gets `451 4.7.1`; a retry
  after `delay` seconds (60 by default) and within `expire` is accepted.
- `ooo@`          accepted, and an RFC 3834 out-of-office reply goes to the envelope sender.

A rules file (TOML, `--rules FILE`, re-read when it changes) puts its rules before these. Example::

    builtin = true                     # keep the four built-in local parts after these rules (default)

    [greylist]                         # settings for every rule with greylist = true
    delay = 300                        # seconds before a retry is accepted
    expire = 14400                     # a retry later than this starts over
    keep = 3110400                     # a triplet that passed stays accepted this long after its last use

    [[rule]]
    name = "unknown user"
    rcpt = ["nobody@example.net", "re:^old-[0-9]+@example\\.net$"]
    reply = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"

    [[rule]]
    name = "flaky MX"                  # a random 20% of messages from one network get a temporary failure
    stage = "end-of-data"
    client_ip = "192.0.2.0/24"
    probability = 0.2
    reply = "451 4.3.0 Temporary failure, try again"

    [[rule]]
    name = "too fast"
    stage = "connect"
    rate = { count = 5, window = 60 }  # per client IP; the 6th connection in a minute gets a 421
    reply = "421 4.7.0 Error: too many connections from {client_ip}"

    [[rule]]
    name = "slow greeting"
    stage = "connect"
    listener = "relay"
    delay = 10                         # seconds before the lab answers

Matchers (all given must match; a list matches if any item does): `listener`, `client_ip` (addresses
or CIDR networks), `helo`, `mail_from` (`<>` is the null sender), `rcpt`, `auth_user`, `size_min` /
`size_max` (octets: the MAIL SIZE= parameter, or the real size at end-of-data). Text matchers are globs
(`*`, `?`, `[abc]`), case-insensitive, or regexes with a `re:` prefix, matched against the value with its
domain in lower case. Actions: `reply`, `delay`, `disconnect`, `greylist`, `rate`, `dsn`, `autoreply`.
Rules are tried in order at their stage; the first that matches decides.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import math
import os
import random
import re
import time
import tomllib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lab.core.model import Listener

STAGES = ("connect", "helo", "mail", "rcpt", "data", "end-of-data")
_ORDER = {s: i for i, s in enumerate(STAGES)}
# The first stage at which each matcher's fact is known (AUTH comes after EHLO, so auth_user from MAIL on)
_KNOWN_AT = {"listener": "connect", "client_ip": "connect", "helo": "helo", "mail_from": "mail",
             "auth_user": "mail", "size_min": "mail", "size_max": "mail", "rcpt": "rcpt"}
_TEXT_MATCHERS = ("listener", "helo", "mail_from", "rcpt", "auth_user")
_RULE_KEYS = frozenset({"name", "stage", "client_ip", *_KNOWN_AT, "reply", "delay", "disconnect", "probability",
                        "greylist", "rate", "dsn", "autoreply"})
_TOP_KEYS = frozenset({"builtin", "greylist", "rule"})
_GREYLIST_KEYS = frozenset({"delay", "expire", "keep"})

MAX_FILE = 1 << 20  # octets of rules file
MAX_RULES = 1000
MAX_PATTERNS = 100  # items in one matcher list
MAX_PATTERN = 256  # characters in one glob or regex
MAX_VALUE = 320  # characters of a fact a pattern looks at (RFC 5321 §4.5.3.1.3: a path is at most 256 octets)
MAX_REPLY = 512  # RFC 5321 §4.5.3.1.5: a reply line, with its CRLF
MAX_DELAY = 600.0  # seconds; RFC 5321 §4.5.3.2 has clients wait 5 minutes for most replies
MAX_COST = 3  # polynomial degree a regex may reach on MAX_VALUE characters (see _regex_problem)
RELOAD_INTERVAL = 1.0

_REPLY = re.compile(r"([2-5])(\d\d)(?: (.*))?", re.S)
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_PLACEHOLDERS = frozenset({"rcpt", "mail_from", "client_ip", "helo", "listener", "auth_user", "size", "remaining"})

_RNG = random.Random()


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the rule and the key."""

    def __init__(self, source: str, message: str, index: int | None = None, key: str | None = None,
                 name: str | None = None):
        where = source
        if index is not None:
            where += f": [[rule]] #{index}" + (f" ({name!r})" if name else "")
        if key is not None:
            where += f": {key}"
        super().__init__(f"{where}: {message}")
        self.source, self.index, self.key = source, index, key


# facts and actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What the lab knows about the session when it asks for a decision; None is "not known yet"."""

    stage: str  # one of STAGES
    listener: str = ""  # "relay", "submission", "smtps"
    client_ip: str = ""  # the effective client (XCLIENT, --client-ip, else the peer)
    helo: str | None = None
    mail_from: str | None = None  # "" is the null sender <>
    rcpt: str | None = None
    auth_user: str | None = None
    size: int | None = None  # MAIL SIZE= before DATA; the octets received at end-of-data


@dataclass(frozen=True, slots=True)
class Action:
    """What the lab does instead of (or besides) its normal answer.

    `reply` replaces the lab's reply (None keeps it); `delay` seconds pass before the reply; `disconnect`
    closes the connection after the reply (without one when `reply` is None). `dsn` and `autoreply` accept
    the recipient and, once the message is stored, make a bounce (with `dsn_reply` as its diagnostic) or an
    out-of-office reply (with `autoreply_text`) for the envelope sender. `probability` is the rule's.
    """

    reply: str | None = None
    delay: float = 0.0
    disconnect: bool = False
    dsn: bool = False
    autoreply: bool = False
    probability: float = 1.0
    rule: str = ""  # which rule decided, for the session transcript: "rule #2 'flaky MX' (rules.toml)"
    dsn_reply: str | None = None  # "550 5.1.1 <bob@example.net>: ...": the DSN's Status and Diagnostic-Code
    autoreply_text: str | None = None  # None: dsn.DEFAULT_AUTOREPLY

    @property
    def dsn_status(self) -> str | None:
        """The RFC 3463 status a DSN reports, from `dsn_reply`."""
        if not self.dsn_reply:
            return None
        m = _ENHANCED.match(self.dsn_reply[4:])
        return m.group(0).strip() if m else None


# patterns -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pattern:
    """One matcher item: a glob, a `re:` regex, `<>` (the null sender) or an IP network."""

    text: str
    kind: str  # "glob", "regex", "null", "network"
    regex: re.Pattern | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def matches(self, value: str) -> bool:
        if self.kind == "null":
            return value == ""
        if self.kind == "network":
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                return False
            return ip.version == self.network.version and ip in self.network  # type: ignore[union-attr]
        if self.kind == "glob":
            return self.regex.match(value[:MAX_VALUE]) is not None  # type: ignore[union-attr]
        return self.regex.search(value[:MAX_VALUE]) is not None  # type: ignore[union-attr]


def _normal(key: str, value: str) -> str:
    """The fact as regexes see it: domains in lower case (RFC 5321 §2.4), local parts as written."""
    if key in ("mail_from", "rcpt"):
        local, at, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}" if at else value
    if key in ("helo", "listener"):
        return value.lower()
    return value


def _regex_problem(pattern: str) -> str | None:
    """Why this regex could take too long on a hostile address, or None.

    Python's re backtracks: `(a+)+$` and `(a?){30}a{30}` are exponential, `.*.*.*.*x` takes a minute on 300
    characters. The work is estimated as a product of the choices the regex can make: MAX_VALUE for each
    backtracking variable repeat (`*`, `+`, `{2,9}`), 4 for each `?` and the square of the number of
    alternatives for `|` (a choice is a real backtrack, dearer than a step of `.*`), raised to n under
    `{n}`, and MAX_VALUE once more for an unanchored search (no leading ^). A regex is refused if that
    exceeds MAX_VALUE**MAX_COST steps (milliseconds), if a choice sits inside a variable repeat (`(a+)+`,
    `(a|ab)*`, `(a?a)*`) unless that repeat is possessive (`++`, never backtracking), or if it uses
    backreferences.
    """
    from re import _constants as c  # the parser's vocabulary; stable since Python 3.11
    from re import _parser

    try:
        tree = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"not a valid regex: {exc}"
    per_repeat = math.log2(MAX_VALUE)
    budget = MAX_COST * per_repeat + 1e-9

    class Slow(Exception):
        pass

    def bits(items, inside: str | None) -> float:
        """log2 of the work; `inside` is "loop" within a backtracking variable repeat, "possessive" within a
        possessive one (where a per-iteration choice is fine but a backtracking loop is not)."""
        total = 0.0
        for op, av in items:
            if op in (c.GROUPREF, c.GROUPREF_EXISTS):
                raise Slow("backreferences can take exponential time; use a glob or a simpler regex")
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                lo, hi, sub = av
                if op == c.POSSESSIVE_REPEAT:
                    bits(sub, "possessive")
                elif lo == hi:  # {n}: what it holds, n times over
                    total += bits(sub, inside) * hi
                elif inside == "loop" or (inside == "possessive" and hi != 1):
                    raise Slow("a choice inside a repeat, like (a+)+, (a|ab)* or (a?a)*, can take exponential "
                               "time; use a glob, or make the outer repeat possessive (a++)")
                elif hi == 1:  # ?: tried with and without (a choice weighs double: each is a real backtrack)
                    total += 2 + bits(sub, inside)
                else:
                    bits(sub, "loop")
                    total += per_repeat
            elif op == c.BRANCH:
                if inside == "loop":
                    raise Slow("alternation inside a repeat, like (a|ab)*, can take exponential time; use a "
                               "glob or several patterns in a list")
                total += 2 * math.log2(len(av[1])) + max(bits(b, inside) for b in av[1])
            elif op == c.SUBPATTERN:
                total += bits(av[3], inside)
            elif op == c.ATOMIC_GROUP:
                total += bits(av, inside)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                total += bits(av[1], inside)
            if total > budget:
                break
        return total

    try:
        work = bits(list(tree), None)
    except Slow as exc:
        return str(exc)
    except RecursionError:
        return "nested too deeply"
    anchored = bool(tree) and tree[0][0] == c.AT and tree[0][1] in (c.AT_BEGINNING, c.AT_BEGINNING_STRING)
    if work + (0 if anchored else per_repeat) > budget:
        how = "" if anchored else " (an unanchored regex is tried at every position: start it with ^)"
        return (f"it can take too long on a long address{how}: at most {MAX_COST} of .*, + or {{m,n}} "
                "(fewer with ? or | beside them), or use a glob")
    return None


def _flat(items):
    """Every (op, av) in a parsed regex, nested ones included, without recursion limits."""
    from re import _constants as c

    stack = [list(items)]
    while stack:
        for op, av in stack.pop():
            yield op, av
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                stack.append(av[2])
            elif op == c.SUBPATTERN:
                stack.append(av[3])
            elif op == c.ATOMIC_GROUP:
                stack.append(av)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                stack.append(av[1])
            elif op == c.BRANCH:
                stack.extend(av[1])


# greylisting and rate limits ----------------------------------------------------------------------------


@dataclass
class Greylist:
    """Greylisting as postgrey does it: the first attempt of a triplet is refused for a while.

    The triplet is the client's /24 (/64 for IPv6: a sender's pool of outbound hosts shares it), the MAIL
    FROM and the RCPT, both in lower case. `attempt()` returns None when the attempt is accepted, else the
    seconds left before a retry will be. A triplet first seen at t0 is refused until t0 + delay, accepted
    from then until t0 + expire, and after t0 + expire starts over; once accepted, it stays accepted for
    `keep` seconds after its last use. Deterministic: time comes from `now` or the injectable `clock`.
    """

    delay: float = 60.0
    expire: float = 4 * 3600.0
    keep: float = 36 * 86400.0
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 100_000  # a hostile client cannot grow the table without bound; the oldest go first
    entries: OrderedDict[tuple[str, str, str], list] = field(default_factory=OrderedDict, repr=False)

    @staticmethod
    def triplet(client_ip: str, mail_from: str, rcpt: str) -> tuple[str, str, str]:
        try:
            ip = ipaddress.ip_address(client_ip)
            net = str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))
        except ValueError:
            net = client_ip
        return net, mail_from.lower()[:MAX_VALUE], rcpt.lower()[:MAX_VALUE]

    def attempt(self, client_ip: str, mail_from: str, rcpt: str, now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        key = self.triplet(client_ip, mail_from, rcpt)
        entry = self.entries.get(key)  # [first attempt, last accepted attempt or None]
        if entry is not None:
            self.entries.move_to_end(key)
            first, passed = entry
            if passed is not None and now - passed <= self.keep:
                entry[1] = now
                return None
            waited = now - first
            if passed is None and self.delay <= waited <= self.expire:
                entry[1] = now
                return None
            if passed is None and waited < self.delay:
                return self.delay - waited
        self.entries[key] = [now, None]  # first attempt, or one after the retry window or the keep time
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return self.delay


@dataclass
class RateLimit:
    """At most `count` attempts per client IP in any `window` seconds; every attempt counts, refused ones
    too, as Postfix's anvil counts connections (a client that retries at once stays refused)."""

    count: int
    window: float
    max_clients: int = 100_000
    hits: OrderedDict[str, deque] = field(default_factory=OrderedDict, repr=False)

    def hit(self, client_ip: str, now: float) -> bool:
        """Count one attempt; True when it is over the limit."""
        times = self.hits.get(client_ip)
        if times is None:
            times = self.hits[client_ip] = deque(maxlen=self.count)
            while len(self.hits) > self.max_clients:
                self.hits.popitem(last=False)
        self.hits.move_to_end(client_ip)
        while times and now - times[0] >= self.window:
            times.popleft()
        over = len(times) >= self.count
        times.append(now)  # the deque keeps only the last `count`: all that can decide the next attempt
        return over


# rules --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule: where it applies (stage and matchers) and what it does."""

    index: int  # position in its source, from 1
    source: str
    stage: str
    name: str = ""
    matchers: tuple[tuple[str, tuple[Pattern, ...]], ...] = ()  # (fact, patterns): any pattern matches
    size_min: int | None = None
    size_max: int | None = None
    reply: str | None = None
    delay: float = 0.0
    disconnect: bool = False
    probability: float = 1.0
    greylist: bool = False
    rate: tuple[int, float] | None = None  # (count, window seconds) per client IP
    dsn: bool = False
    dsn_reply: str | None = None
    autoreply: bool = False
    autoreply_text: str | None = None

    def describe(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"rule #{self.index}{name} ({self.source})"

    def matches(self, facts: Facts) -> bool:
        """Whether every matcher holds; a matcher on a fact not known yet (None) does not."""
        for key, patterns in self.matchers:
            value = getattr(facts, key)
            if value is None:
                return False
            value = _normal(key, value)
            if not any(p.matches(value) for p in patterns):
                return False
        if self.size_min is not None or self.size_max is not None:
            if facts.size is None:
                return False
            if self.size_min is not None and facts.size < self.size_min:
                return False
            if self.size_max is not None and facts.size > self.size_max:
                return False
        return True

    def action(self, facts: Facts, remaining: float | None = None) -> Action:
        values = {
            "rcpt": facts.rcpt or "", "mail_from": facts.mail_from or "", "client_ip": facts.client_ip,
            "helo": facts.helo or "", "listener": facts.listener, "auth_user": facts.auth_user or "",
            "size": "" if facts.size is None else str(facts.size),
            "remaining": "" if remaining is None else str(max(1, math.ceil(remaining))),
        }
        return Action(
            reply=_expand(self.reply, values) if self.reply else None,
            delay=self.delay,
            disconnect=self.disconnect,
            dsn=self.dsn,
            autoreply=self.autoreply,
            probability=self.probability,
            rule=self.describe(),
            dsn_reply=_expand(self.dsn_reply, values) if self.dsn_reply else None,
            autoreply_text=self.autoreply_text,
        )


def _expand(template: str, values: dict[str, str]) -> str:
    """A reply with {placeholders} filled from the session: client text, so no controls, and bounded."""
    def sub(m: re.Match) -> str:
        if m.group(1) is None:
            return m.group(0)[0]
        return _CONTROL.sub("?", values.get(m.group(1), ""))[:MAX_VALUE]

    return _PLACEHOLDER.sub(sub, template)[:MAX_REPLY - 2]


class RuleSet:
    """Rules in order, with the greylist and rate-limit state they share. `decide()` is the whole API the
    SMTP server needs; the state is in memory and starts empty when the lab starts."""

    def __init__(self, rules: Iterable[Rule] = (), greylist: Greylist | None = None, source: str = "<built-in>"):
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.greylist = greylist or Greylist()
        self.source = source
        self._rates: dict[int, RateLimit] = {i: RateLimit(*r.rate) for i, r in enumerate(self.rules) if r.rate}
        by_stage: dict[str, list[tuple[int, Rule]]] = {s: [] for s in STAGES}
        for i, rule in enumerate(self.rules):
            by_stage[rule.stage].append((i, rule))
        self._by_stage = {s: tuple(v) for s, v in by_stage.items()}

    @classmethod
    def default(cls) -> RuleSet:
        """The built-in local parts only: what the lab does with no rules file."""
        return cls(DEFAULT_RULES, Greylist())

    @property
    def stages(self) -> frozenset[str]:
        """Stages that have rules: the server need not ask about the others."""
        return frozenset(s for s, rules in self._by_stage.items() if rules)

    def decide(self, facts: Facts, now: float | None = None, rng: random.Random | None = None) -> Action | None:
        """The first matching rule's Action for this stage, or None for the lab's normal behaviour.

        A rule with a `probability` below 1 draws one number from `rng` when its matchers hold, and is
        skipped (touching no greylist or rate state) when the draw is not below it. A greylist rule whose
        triplet is accepted, or a rate rule whose client is under its limit, does not match: later rules
        still get their turn.
        """
        if facts.stage not in _ORDER:
            raise ValueError(f"unknown stage {facts.stage!r}; expected one of {', '.join(STAGES)}")
        now = time.monotonic() if now is None else now
        for i, rule in self._by_stage[facts.stage]:
            if not rule.matches(facts):
                continue
            if rule.probability < 1.0 and (rng or _RNG).random() >= rule.probability:
                continue
            remaining = None
            if rule.greylist:
                remaining = self.greylist.attempt(facts.client_ip, facts.mail_from or "", facts.rcpt or "", now)
                if remaining is None:
                    continue
            elif rule.rate and not self._rates[i].hit(facts.client_ip, now):
                continue
            return rule.action(facts, remaining)
        return None

    def adopt(self, old: RuleSet) -> None:
        """Keep the greylist and rate-limit state of the rules this set replaces (on a reload), so editing
        the file does not let every greylisted or limited client through."""
        self.greylist.entries = old.greylist.entries
        previous = {(r.name or r.index, r.stage, r.rate): old._rates[i] for i, r in enumerate(old.rules) if r.rate}
        for i, rule in enumerate(self.rules):
            state = previous.get((rule.name or rule.index, rule.stage, rule.rate)) if rule.rate else None
            if state is not None:
                self._rates[i] = state


# loading ------------------------------------------------------------------------------------------------


def load_rules(path: str | os.PathLike) -> RuleSet:
    """The rules in a TOML file, followed by the built-in ones unless the file says `builtin = false`.

    Raises RulesError naming the file, the rule (`[[rule]] #N`, counted from 1) and the key for anything
    it cannot use: unknown keys, bad patterns, regexes that could run too long, replies that are not SMTP
    replies, matchers a stage cannot know.
    """
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
    except OSError as exc:
        raise RulesError(source, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE:
        raise RulesError(source, f"larger than {MAX_FILE} octets; a rules file is a few rules")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(source, f"not UTF-8 text (octet {exc.start})") from exc
    return load_rules_text(text, source)


def load_rules_text(text: str, source: str = "<rules>") -> RuleSet:
    """load_rules for TOML text; `source` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(source, f"not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise RulesError(source, "not valid TOML: nested too deeply") from exc
    _unknown(data, _TOP_KEYS, source, None, None, "top-level key")
    builtin = data.get("builtin", True)
    if not isinstance(builtin, bool):
        raise RulesError(source, "must be true or false", key="builtin")
    greylist = _greylist(data.get("greylist", {}), source)
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise RulesError(source, "write each rule as a [[rule]] table", key="rule")
    if len(raw_rules) > MAX_RULES:
        raise RulesError(source, f"{len(raw_rules)} rules; at most {MAX_RULES}", key="rule")
    rules = [_rule(raw, i, source) for i, raw in enumerate(raw_rules, 1)]
    if builtin:
        rules += DEFAULT_RULES
    return RuleSet(rules, greylist, source)


def _unknown(table: dict, known: frozenset[str], source: str, index, name, what: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"
            raise RulesError(source, f"unknown {what}{hint}", index, str(key)[:60], name)


def _greylist(table, source: str) -> Greylist:
    if not isinstance(table, dict):
        raise RulesError(source, "must be a table: [greylist]", key="greylist")
    _unknown(table, _GREYLIST_KEYS, source, None, None, "greylist setting")
    values = {}
    for key in _GREYLIST_KEYS & table.keys():
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10 * 365 * 86400:
            raise RulesError(source, "must be a number of seconds, 0 or more", key=f"greylist.{key}")
        values[key] = float(value)
    grey = Greylist(**values)
    if grey.expire < grey.delay:
        raise RulesError(source, f"expire ({grey.expire:g}) is shorter than delay ({grey.delay:g}): no retry "
                         "could ever be accepted", key="greylist.expire")
    return grey


def _rule(raw: dict, index: int, source: str) -> Rule:
    name = raw.get("name", "")
    if not isinstance(name, str) or len(name) > 100 or _CONTROL.search(name):
        raise RulesError(source, "must be a short line of text", index, "name")

    def fail(key: str, message: str):
        raise RulesError(source, message, index, key, name)

    _unknown(raw, _RULE_KEYS, source, index, name, "key")
    matchers = []
    for key in ("listener", "client_ip", *(k for k in _TEXT_MATCHERS if k != "listener")):
        if key in raw:
            matchers.append((key, _patterns(key, raw[key], fail)))
    size_min, size_max = (_count(raw.get(k), k, fail) for k in ("size_min", "size_max"))
    if size_min is not None and size_max is not None and size_min > size_max:
        fail("size_max", f"is smaller than size_min ({size_min})")

    greylist = _flag(raw, "greylist", fail)
    rate = None
    if "rate" in raw:
        r = raw["rate"]
        if not isinstance(r, dict) or set(r) != {"count", "window"}:
            fail("rate", "write it as rate = { count = N, window = SECONDS }")
        count, window = r["count"], r["window"]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            fail("rate.count", "must be a whole number from 1 to 100000")
        if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= 86400:
            fail("rate.window", "must be a number of seconds above 0, at most 86400")
        rate = (count, float(window))
    dsn, dsn_reply = _text_or_flag(raw, "dsn", fail)
    autoreply, autoreply_text = _text_or_flag(raw, "autoreply", fail)

    # the stage: as written, else the first one at which every matcher's fact is known
    needs = max([_ORDER[_KNOWN_AT[k]] for k, _ in matchers]
                + [_ORDER["mail"] for k in ("size_min", "size_max") if k in raw]
                + [_ORDER["rcpt"] for flag in (greylist, dsn, autoreply) if flag] + [0])
    stage = raw.get("stage", STAGES[needs])
    if stage not in _ORDER:
        fail("stage", f"{str(stage)[:40]!r} is not a stage; use one of {', '.join(STAGES)}")
    for key in [k for k, _ in matchers] + [k for k in ("size_min", "size_max") if k in raw]:
        if _ORDER[stage] < _ORDER[_KNOWN_AT[key]]:
            fail(key, f"is not known until the {_KNOWN_AT[key]} stage, and this rule's stage is {stage}")
    if greylist and stage != "rcpt":
        fail("greylist", "greylisting needs the recipient: use it at the rcpt stage")
    if (dsn or autoreply) and stage not in ("rcpt", "end-of-data"):
        fail("dsn" if dsn else "autoreply", "acts on an accepted recipient: use it at rcpt or end-of-data")
    if sum(map(bool, (greylist, rate, dsn, autoreply))) > 1:
        fail("greylist" if greylist else "rate" if rate else "dsn",
             "a rule can greylist, rate-limit, bounce (dsn) or auto-reply, only one of them")

    reply = raw.get("reply")
    if reply is not None:
        _check_reply(reply, stage, fail)
    elif greylist:
        reply = "451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, try again in {remaining} seconds"
    elif rate:
        reply = ("421 4.7.0 Error: too many connections from {client_ip}" if stage == "connect"
                 else "450 4.7.1 Error: too much mail from {client_ip}")
    if reply is not None and (greylist or rate) and reply[0] != "4":
        fail("reply", "greylisting and rate limits refuse for now: the reply must be 4xx")
    if reply is not None and (dsn or autoreply) and reply[0] != "2":
        fail("reply", "dsn and autoreply need the recipient accepted: leave reply out or use a 2xx reply")
    if dsn:
        dsn_reply = dsn_reply or "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
        _check_reply(dsn_reply, "dsn", fail)
        if dsn_reply[0] == "2" or not _ENHANCED.match(dsn_reply[4:]):
            fail("dsn", "a DSN reports a 4xx or 5xx reply with an enhanced status code, like "
                 "\"550 5.1.1 <{rcpt}>: User unknown\"")

    delay = raw.get("delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY:
        fail("delay", f"must be a number of seconds from 0 to {MAX_DELAY:g}")
    disconnect = _flag(raw, "disconnect", fail)
    if reply is not None and reply.startswith("421"):
        if raw.get("disconnect") is False:
            fail("disconnect", "a 421 reply closes the connection (RFC 5321 §3.8); remove disconnect = false")
        disconnect = True
    if disconnect and (dsn or autoreply):
        fail("disconnect", "dsn and autoreply need the message accepted, not the connection closed")
    probability = raw.get("probability", 1.0)
    if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
        fail("probability", "must be a number from 0 to 1")
    if not (reply or delay or disconnect or dsn or autoreply):
        fail("reply", "the rule does nothing: give it a reply, delay, disconnect, greylist, rate, dsn or autoreply")
    return Rule(index=index, source=source, stage=stage, name=name, matchers=tuple(matchers), size_min=size_min,
                size_max=size_max, reply=reply, delay=float(delay), disconnect=disconnect,
                probability=float(probability), greylist=greylist, rate=rate, dsn=dsn, dsn_reply=dsn_reply,
                autoreply=autoreply, autoreply_text=autoreply_text)


def _flag(raw: dict, key: str, fail) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        fail(key, "must be true or false")
    return value


def _text_or_flag(raw: dict, key: str, fail) -> tuple[bool, str | None]:
    value = raw.get(key, False)
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value and len(value) <= 10_000:
        return True, value
    fail(key, "must be true, false or a non-empty text")
    raise AssertionError  # fail raises


def _count(value, key: str, fail) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        fail(key, "must be a whole number of octets, 0 or more")
    return value


def _check_reply(reply, stage: str, fail) -> None:
    key = "dsn" if stage == "dsn" else "reply"
    if not isinstance(reply, str):
        fail(key, "must be text: an SMTP reply like \"550 5.1.1 User unknown\"")
    if len(reply) > MAX_REPLY - 2 or _CONTROL.search(reply):
        fail(key, f"must be one line of at most {MAX_REPLY - 2} characters")
    m = _REPLY.fullmatch(reply)
    if not m or m.group(1) == "3":
        fail(key, f"{reply[:40]!r} is not an SMTP reply: three digits (2xx, 4xx or 5xx), a space and text")
    enhanced = _ENHANCED.match(m.group(3) or "")
    if enhanced and enhanced.group(1) != m.group(1):
        fail(key, f"the enhanced status code {enhanced.group(0).strip()} must have the reply's class "
             f"{m.group(1)} (RFC 3463 §2)")
    if m.group(1) == "2" and stage != "dsn":
        allowed = {"connect": ("220",), "data": ()}.get(stage, ("250", "251", "252") if stage == "rcpt" else ("250",))
        if reply[:3] not in allowed:
            fail(key, f"a positive reply at the {stage} stage must be {' or '.join(allowed)}" if allowed
                 else "the lab answers DATA with 354 itself: use a 4xx or 5xx reply here, or the end-of-data stage")
    for placeholder in _PLACEHOLDER.findall(reply):
        if placeholder and placeholder not in _PLACEHOLDERS:
            fail(key, f"unknown placeholder {{{placeholder[:30]}}}; known: {', '.join(sorted(_PLACEHOLDERS))}")


def _patterns(key: str, value, fail) -> tuple[Pattern, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_PATTERNS or not all(isinstance(v, str) for v in items):
        fail(key, f"must be a text or a list of 1 to {MAX_PATTERNS} texts")
    out = []
    for item in items:
        if not item or len(item) > MAX_PATTERN + 3:
            fail(key, f"a pattern must have 1 to {MAX_PATTERN} characters")
        if key == "client_ip":
            try:
                out.append(Pattern(item, "network", network=ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                fail(key, f"{item[:60]!r} is not an IP address or network like 192.0.2.0/24")
            continue
        if key == "mail_from" and item == "<>":
            out.append(Pattern(item, "null"))
            continue
        if item.startswith("re:"):
            problem = _regex_problem(item[3:]) if item[3:] else "the regex after re: is empty"
            if problem:
                fail(key, f"{item[:60]!r}: {problem}")
            out.append(Pattern(item, "regex", re.compile(item[3:])))
            continue
        if key == "listener" and not any(ch in item for ch in "*?[") and item.lower() not in _LISTENERS:
            fail(key, f"{item[:40]!r} is not a listener; use {', '.join(sorted(_LISTENERS))}")
        out.append(Pattern(item, "glob", re.compile(fnmatch.translate(item), re.IGNORECASE)))
    return tuple(out)


_LISTENERS = frozenset(li.value for li in Listener if li not in (Listener.CLI, Listener.LAB))


# the rules file, re-read when it changes -----------------------------------------------------------------


class RulesFile:
    """A rules file kept current: `decide()` re-reads it when its size or modification time changes,
    looking at most once every `interval` seconds. A file that no longer loads keeps the rules that were
    working; `error` says what is wrong (and `on_change` is told) until a fixed file loads."""

    def __init__(self, path: str | os.PathLike, *, clock: Callable[[], float] = time.monotonic,
                 interval: float = RELOAD_INTERVAL, on_change: Callable[[RuleSet, str | None], None] | None = None):
        self.path = Path(path)
        self.clock = clock
        self.interval = interval
        self.on_change = on_change
        self.rules: RuleSet = load_rules(self.path)  # a broken file at start is the caller's error to report
        self.error: str | None = None
        self.reloads = 0
        self._signature = _signature(self.path)
        self._next = clock() + interval

    def current(self) -> RuleSet:
        self.poll()
        return self.rules

    def decide(self, facts: Facts, now: float | None = None, rng: random.Random | None = None) -> Action | None:
        return self.current().decide(facts, now, rng)

    def poll(self) -> bool:
        """Re-read the file if it changed and the interval has passed; True when new rules took effect."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval
        signature = _signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.error = f"{exc} (still using the rules loaded before)"
            self._notify()
            return False
        rules.adopt(self.rules)
        self.rules = rules
        self.error = None
        self.reloads += 1
        self._notify()
        return True

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self.rules, self.error)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


# the built-in rules ---------------------------------------------------------------------------------------

BUILTIN_TOML = """
[[rule]]
name = "bounce-hard+dsn@: accepted, then bounced"
rcpt = "bounce-hard+dsn@*"
dsn = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"

[[rule]]
name = "bounce-hard@: unknown user"
rcpt = ["bounce-hard@*", "bounce-hard+*@*"]
reply = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"

[[rule]]
name = "bounce-soft+dsn@: accepted, then delayed"
rcpt = "bounce-soft+dsn@*"
dsn = "452 4.2.2 <{rcpt}>: Recipient address rejected: Mailbox full"

[[rule]]
name = "bounce-soft@: mailbox full"
rcpt = ["bounce-soft@*", "bounce-soft+*@*"]
reply = "452 4.2.2 <{rcpt}>: Recipient address rejected: Mailbox full"

[[rule]]
name = "greylist@: greylisted"
rcpt = ["greylist@*", "greylist+*@*"]
greylist = true

[[rule]]
name = "ooo@: out of the office"
rcpt = ["ooo@*", "ooo+*@*"]
autoreply = true
"""

# the built-in local parts, read by the same code as a rules file (so they are also an example of one)
DEFAULT_RULES: tuple[Rule, ...] = tuple(
    _rule(raw, i, "built-in") for i, raw in enumerate(tomllib.loads(BUILTIN_TOML)["rule"], 1)
)
