"""Provides defer(): a module that a library imports but may never use is loaded when first used instead.

pyspf and dkimpy import dnspython's resolver (with its DNS-over-TLS/QUIC machinery and `ssl`) for lookups
the lab always answers itself, and dnspython imports importlib.metadata to ask whether `idna` is installed:
50 ms of a `maillab check` that took 0.39 s (the same run: 0.34 s without them). The command line
defers them (lab.cli); the lab used as a library (the pytest plugin) is left alone.
"""

from __future__ import annotations

import importlib
import sys
import types


class _Deferred(types.ModuleType):
    """Stands in sys.modules for a module not loaded yet; the first attribute asked for loads it."""

    def __getattr__(self, attr: str):
        return getattr(load(self.__name__), attr)


def defer(name: str) -> None:
    """`import name` now gives a stand-in; using it loads the real module (which then replaces it everywhere
    the import system puts modules: sys.modules and the parent package's attribute)."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    stand_in = _Deferred(name)
    sys.modules[name] = stand_in
    if parent:
        setattr(importlib.import_module(parent), child, stand_in)


def load(name: str) -> types.ModuleType:
    if isinstance(sys.modules.get(name), _Deferred):
        del sys.modules[name]
    return importlib.import_module(name)


def defer_unused_imports() -> None:
    """What `maillab` defers before its libraries load (see the module's docstring), and PyNaCl, which dkimpy
    imports for ed25519 keys (10 ms; an RSA-signed or unsigned message never uses it). dnspython's question
    about `idna` is answered without importlib.metadata when the package cannot even be found: no, as it would
    be."""
    from importlib.machinery import PathFinder

    if "dns.name" in sys.modules or "dkim" in sys.modules:
        return
    import dns.rdatatype  # pyspf reads it at import, where the real resolver would have imported it

    defer("importlib.metadata")
    defer("dns.resolver")
    defer("nacl.signing")
    defer("nacl.encoding")
    if PathFinder.find_spec("idna") is None:
        import dns._features

        dns._features.force("idna", False)
