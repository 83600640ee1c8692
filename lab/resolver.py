"""Provides the production DNS view: overlay zone files answered first, then the system resolver.

The system resolver is dnspython with a short lifetime and a cache, so a dead DNS server costs about
two seconds and gives `temperror`, never a hang. `--offline` skips it entirely.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from lab.core.dnsview import Answer, DnsTempError, LayeredView, ZoneSyntaxError, ZoneView, rdata_value

DEFAULT_LIFETIME = 2.0
DEAD_FOR = 5.0  # after a timeout, fail fast for this long so one message costs one timeout


class SystemView:
    """dnspython over the system's resolvers (or `nameserver`), with a small TTL-respecting cache."""

    def __init__(self, nameserver: str | None = None, lifetime: float = DEFAULT_LIFETIME):
        import dns.resolver  # 50 ms of imports, for the system resolver only: `--offline` never needs it

        if nameserver:
            host, port = parse_nameserver(nameserver)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        else:
            resolver = dns.resolver.Resolver()
        resolver.lifetime = lifetime
        resolver.timeout = lifetime
        resolver.cache = dns.resolver.LRUCache(4096)
        self.resolver = resolver
        self.label = f"system ({nameserver})" if nameserver else "system"
        self._dead_until = 0.0

    def lookup(self, name: str, rtype: str) -> Answer:
        import dns.resolver

        if time.monotonic() < self._dead_until:  # one timeout per message, not one per lookup
            raise DnsTempError(f"{name} {rtype}: the resolver timed out moments ago; not asked again yet")
        try:
            qname = dns.name.from_text(name)
            answer = self.resolver.resolve(qname, rtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return Answer(name, rtype, (), exists=False, source="system")
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            self._dead_until = time.monotonic() + DEAD_FOR
            raise DnsTempError(f"{name} {rtype}: {exc}") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTempError(f"{name} {rtype}: {exc}") from exc
        except (dns.resolver.NoAnswer, dns.name.NameTooLong, dns.name.EmptyLabel, dns.name.LabelTooLong,
                dns.resolver.YXDOMAIN, dns.exception.SyntaxError):
            return Answer(name, rtype, (), exists=True, source="system")
        values = tuple(rdata_value(rtype, rd) for rd in answer.rrset) if answer.rrset is not None else ()
        return Answer(name, rtype, values, exists=True, source="system")


def parse_nameserver(text: str) -> tuple[str, int]:
    """`HOST`, `HOST:PORT` or `[V6]:PORT`."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


ZONE_CACHE_FORMAT = 1  # raise when rdata_value changes what a record becomes
ZONE_CACHE_KEEP = 64  # parsed zone texts kept; the oldest go first


def load_zones(paths: Iterable[str | Path], errors: list[str] | None = None,
               cache_dir: Path | None = None) -> ZoneView:
    """Read zone overlay files. A file that cannot be read or parsed raises with its name and line, or,
    when `errors` is given, is left out and described there (the TUI keeps running without it).

    With `cache_dir`, what a zone text parses to is kept there under the hash of the text: dnspython
    parses a record in 0.2 ms and takes 30 ms to import, a quarter of what `maillab check` may cost."""
    views = []
    for p in paths:
        path = Path(p).expanduser()
        try:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise FileNotFoundError(f"zone file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
            label = str(path)
            views.append(_cached(text, label, cache_dir) if cache_dir else ZoneView.from_text(text, label=label))
        except (FileNotFoundError, ZoneSyntaxError) as exc:
            if errors is None:
                raise
            errors.append(f"{exc} (left out of the overlay)")
    return ZoneView.merge(views)


def _cached(text: str, label: str, cache_dir: Path) -> ZoneView:
    """The view of a zone text, from the cache or parsed (and then kept). A cache that cannot be read or
    written is no cache: the text is parsed, as without one."""
    import hashlib
    import marshal
    import sys

    import dns.version

    key = hashlib.sha256(f"{ZONE_CACHE_FORMAT} {dns.version.version} {sys.version_info[:2]}\n{text}".encode(
        "utf-8", "surrogatepass")).hexdigest()
    entry = cache_dir / f"{key}.zone"
    try:
        return ZoneView(marshal.loads(entry.read_bytes()), label=label)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    view = ZoneView.from_text(text, label=label)
    try:
        for missing in reversed([d for d in (cache_dir, *cache_dir.parents) if not d.exists()]):
            missing.mkdir(mode=0o700, exist_ok=True)  # what is made here (the data directory too) is owner-only
        partial = entry.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(marshal.dumps(view.records))
        os.replace(partial, entry)
        kept = sorted(cache_dir.glob("*.zone"), key=lambda f: f.stat().st_mtime)
        for old in kept[:-ZONE_CACHE_KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
    return view


def build_view(zones: Iterable[str | Path], offline: bool, nameserver: str | None = None,
               extra: Iterable[ZoneView] = (), errors: list[str] | None = None,
               cache_dir: Path | None = None) -> LayeredView:
    overlay = ZoneView.merge([load_zones(zones, errors, cache_dir), *extra])
    return LayeredView(overlay, None if offline else SystemView(nameserver))


def describe(view: LayeredView) -> str:
    """The DNS mode in a few words, for status lines."""
    n = len(view.overlay)
    zones = f"{n} overlay record set{'s' if n != 1 else ''}"
    if view.fallback is None:
        return f"offline: {zones} only"
    label = getattr(view.fallback, "label", "system")
    return f"{zones}, then {label} DNS" if n else f"{label} DNS"
