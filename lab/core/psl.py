"""Provides the Public Suffix List bundled with publicsuffixlist, read in one pass.

publicsuffixlist parses its 16,000-line file a line at a time in Python, and with the punycode twin of
every rule by default: 0.2 s, then 21 ms without the twin, of a `maillab check` that must start in well
under a third of a second. The rules are the same (tests/core/test_psl.py compares them); names with
xn-- labels are looked up in Unicode instead (`unicode_name`).
"""

from __future__ import annotations

from functools import cache

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
