"""The list read in one pass (lab.core.psl) holds exactly the rules publicsuffixlist's own parser reads, and the
strict lookup of link texts agrees with the library's full list (punycode twins included) on every rule."""

from __future__ import annotations

from publicsuffixlist import PublicSuffixList
from support import psl_rule_names

from lab.core import psl


def test_one_pass_reads_the_same_rules_as_the_library():
    mine = psl.bundled()
    theirs = PublicSuffixList(accept_encoded_idn=False)
    assert len(mine._publicsuffix) > 5000
    assert mine._publicsuffix == theirs._publicsuffix and mine._maxlabel == theirs._maxlabel


def test_one_pass_keeps_the_library_rule_on_odd_lines():
    odd = b"// comment\n\n  indented.example\nfoo.example  trailing words\r\n!except.foo.example\r\nUPPER.Example\n/x\n"
    import io

    class Probe(psl._OnePass):
        def __init__(self):  # parse an in-memory file the way __init__ passes the bundled one
            self.accept_unknown = True
            self._parse(io.BytesIO(odd), False)

    reference = PublicSuffixList(source=io.BytesIO(odd), accept_encoded_idn=False)
    assert Probe()._publicsuffix == reference._publicsuffix == {"foo.example", "!except.foo.example", "upper.example",
                                                                "/x"}


def test_listed_suffix_agrees_with_the_full_list_for_every_rule_in_both_forms():
    """Link texts ask whether a name is under a listed suffix; the library's full list has the punycode twins."""
    full = PublicSuffixList(accept_unknown=False)
    names = psl_rule_names("shop")
    differ = [form for form in names if psl.has_listed_suffix(form) != bool(full.publicsuffix(form))]
    assert len(names) > 5000 and differ == []
    assert not psl.has_listed_suffix("index.html") and psl.has_listed_suffix("paypal.com")
    assert not psl.has_listed_suffix("a.xn--broken-.zz")
