"""Provides the Public Suffix List bundled with publicsuffixlist, read in one pass.

publicsuffixlist parses its 16,000-line file a line at a time in Python, and with the punycode twin of
every rule by default: 0.2 s, then 21 ms without the twin, of a `maillab check` that must start in well
under a third of a second. The rules are the same (tests/core/test_psl.py compares them); names with
xn-- labels are looked up in Unicode instead (`unicode_name`): the two lookups the checks make,
`org_domain` (DMARC alignment) and `has_listed_suffix` (does a link's text read as a domain), do that.
"""

from __future__ import annotations

from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList


class _OnePass(PublicSuffixList):
    def _parse(self, source, accept_encoded_idn, only_icann=False):
        if accept_encoded_idn or only_icann or not hasattr(source, "read"):
            return super()._parse(source, accept_encoded_idn, only_icann=only_icann)
        # the library's rule, per line: the text before the first space, right-stripped; comments and blanks skipped
        text = source.read().decode("utf8", "surrogateescape").lower()
        rules = {s for s in (line.split(" ", 1)[0].rstrip() for line in text.split("\n"))
                 if s and not s.startswith("//")}
        self._publicsuffix = frozenset(rules)
        self._maxlabel = max((s.count(".") + 1 for s in rules), default=0)


@cache
def bundled(accept_unknown: bool = True) -> PublicSuffixList:
    """The bundled list, rules as written (Unicode). `accept_unknown=False`: a name under no listed suffix
    has none (else the PSL's default rule "*" makes its last label one)."""
    return _OnePass(accept_unknown=accept_unknown, accept_encoded_idn=False)


def unicode_name(domain: str) -> str | None:
    """`domain` with its xn-- labels decoded, for looking up in the list; None when one is not valid punycode."""
    try:
        return ".".join(label.encode("ascii").decode("idna") if label.startswith("xn--") else label
                        for label in domain.split("."))
    except UnicodeError:
        return None


def has_listed_suffix(name: str) -> bool:
    """`name` ends in a suffix the list names (not merely the default rule "*"), in either form of its labels."""
    return bool(bundled(accept_unknown=False).publicsuffix(unicode_name(name) or name))


@lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The public suffix plus one label (RFC 7489 §3.2), or the name itself when it is a suffix or cannot be
    placed; xn-- labels are looked up in Unicode and given back as the message wrote them. Cached: a message
    asks for the same few domains many times, and the list does not change."""
    domain = domain.rstrip(".").lower()
    shown = unicode_name(domain) if "xn--" in domain else domain
    try:
        found = bundled().privatesuffix(shown or domain) or (shown or domain)
    except Exception:  # noqa: BLE001 - odd labels must not break a check
        return domain
    return ".".join(domain.split(".")[-(found.count(".") + 1):])  # the same labels, as the message wrote them
