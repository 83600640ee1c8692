"""The command line defers imports its libraries make but a run may not use (lab.lazyimport): a stand-in takes the
module's place until it is used, and then it is the real module everywhere. Each test runs a fresh interpreter,
as the stand-ins are only made before the libraries load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import ZONES, message, sign

from lab.core.results import Level

ZONE_ARGS = [arg for z in ZONES for arg in ("--zone", str(z))]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MAILLAB_CONFIG": os.devnull})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_deferred_module_is_the_real_one_once_used():
    out = _run("""
import sys
import lab.cli
import dns.resolver
print(type(sys.modules["dns.resolver"]).__name__)
resolver = dns.resolver.Resolver(configure=False)  # first use: the real module loads
print(type(sys.modules["dns.resolver"]).__name__, dns.resolver is sys.modules["dns.resolver"])
from dns.resolver import NXDOMAIN
print(issubclass(NXDOMAIN, Exception), type(resolver).__module__)
""")
    assert out.split() == ["_Deferred", "module", "True", "True", "dns.resolver"]


def test_check_judges_without_loading_what_it_does_not_use(tmp_path):
    """A cold `maillab check` of an RSA-signed message: dnspython's resolver, importlib.metadata and PyNaCl stay
    unloaded (50 ms of its start-up); the verdict is the one the lab gives in-process."""
    eml = tmp_path / "rsa.eml"
    eml.write_bytes(sign(message()))
    out = _run(f"""
import contextlib, io, sys
import lab.cli
with contextlib.redirect_stdout(io.StringIO()) as text:
    code = lab.cli.main(["check", "--offline", "--json", *{ZONE_ARGS!r}, {str(eml)!r}])
names = ("dns.resolver", "importlib.metadata", "nacl.signing")
print(code, [type(sys.modules.get(n)).__name__ for n in names])
print(text.getvalue())
""")
    first, _, doc = out.partition("\n")
    assert first.split(" ", 1)[1] == "['_Deferred', '_Deferred', '_Deferred']"
    checks = json.loads(doc)["checks"]
    assert [c["result"] for c in checks if c["id"].startswith("dkim.")] == ["pass"]
    assert all(c["level"] != Level.FAIL.value for c in checks), checks


def test_an_ed25519_signature_loads_pynacl_when_it_is_needed(tmp_path):
    eml = tmp_path / "ed.eml"
    eml.write_bytes(sign(message(), selector="ed", keyfile="example.com.ed.ed25519"))
    done = subprocess.run([sys.executable, "-m", "lab", "check", "--offline", "--json", *ZONE_ARGS, str(eml)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MAILLAB_CONFIG": os.devnull})
    doc = json.loads(done.stdout)
    dkim = [c for c in doc["checks"] if c["id"].startswith("dkim.")]
    assert [c["result"] for c in dkim] == ["pass"] and dkim[0]["evidence"]["a"] == "ed25519-sha256", dkim
