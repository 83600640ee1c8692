"""Provides Knot DNS and rspamd on loopback for the interop tests, and rspamd's verdict in the lab's words.

Knot serves the root zone `.` built from fixtures/zones, so every name outside it is an authoritative
NXDOMAIN and nothing leaves the machine; `servfail.test` is configured but cannot load, which gives
SERVFAIL (temperror). rspamd 3.4 (Debian) runs unprivileged-style on loopback with its own top-level
config, network modules disabled, and SPF/DKIM/DMARC enabled for loopback and authenticated clients.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support import ZONES

SOA = """$TTL 300
.                 SOA ns.root. hostmaster.root. 1 3600 600 86400 300
.                 NS  ns.root.
ns.root.          A   127.0.0.1
"""
DISABLED = ("rbl", "surbl", "fuzzy_check", "neural", "asn", "phishing", "dcc", "reputation", "greylist",
            "ratelimit", "replies", "url_redirector", "history_redis", "clickhouse", "elastic",
            "metadata_exporter", "mx_check", "emails", "spamassassin", "multimap", "p0f", "dkim_signing",
            "arc", "maillist", "milter_headers", "antivirus", "external_services", "bayes_expiry",
            "neural", "once_received", "received_rbl", "rspamd_update", "dynamic_conf")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s\n{tail}")


@dataclass
class Knot:
    port: int
    process: subprocess.Popen

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path) -> Knot:
        workdir.mkdir(parents=True, exist_ok=True)
        zone = SOA + "".join(z.read_text() + "\n$ORIGIN .\n" for z in ZONES)
        (workdir / "root.zone").write_text(zone)
        port = free_port(socket.SOCK_DGRAM)
        (workdir / "knot.conf").write_text(f"""server:
    rundir: "{workdir}"
    listen: 127.0.0.1@{port}
database:
    storage: "{workdir}"
log:
  - target: stderr
    any: error
zone:
  - domain: .
    file: "{workdir}/root.zone"
  - domain: servfail.test
    file: "{workdir}/absent.zone"
""")
        log = workdir / "knot.log"
        process = subprocess.Popen(["knotd", "-c", str(workdir / "knot.conf")], stdout=log.open("w"),
                                   stderr=subprocess.STDOUT)
        knot = cls(port, process)
        wait(knot._answers, 20, "knotd", log)
        return knot

    def _answers(self) -> bool:
        import dns.message
        import dns.query

        try:
            reply = dns.query.udp(dns.message.make_query("example.com", "TXT"), "127.0.0.1", timeout=0.5,
                                  port=self.port)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return bool(reply.answer)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Rspamd:
    port: int
    process: subprocess.Popen
    workdir: Path

    @classmethod
    def start(cls, workdir: Path, nameserver: str) -> Rspamd:
        for sub in ("local/local.d", "local/override.d", "db", "run", "log"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        port = free_port()
        (workdir / "rspamd.conf").write_text(f""".include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "warning";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
""")
        (workdir / "local/local.d/options.inc").write_text(
            f'dns {{\n    nameserver = ["{nameserver}"];\n    timeout = 1s;\n    retransmits = 1;\n}}\n'
            "local_addrs = [];\n")
        for module in ("spf", "dkim", "dmarc"):
            (workdir / f"local/local.d/{module}.conf").write_text("check_local = true;\ncheck_authed = true;\n")
        with (workdir / "local/local.d/dmarc.conf").open("a") as f:
            f.write("reporting { enabled = false; }\n")
        for module in DISABLED:
            (workdir / f"local/override.d/{module}.conf").write_text("enabled = false;\n")
        args = ["rspamd", "-c", str(workdir / "rspamd.conf"), "-f", "-i"]
        if os.geteuid() == 0:
            args += ["-u", "root", "-g", "root"]
        for var, sub in (("LOCAL_CONFDIR", "local"), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")):
            args += ["--var", f"{var}={workdir / sub}"]
        log = workdir / "log" / "rspamd.log"
        process = subprocess.Popen(args, stdout=(workdir / "stdout.log").open("w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        rspamd = cls(port, process, workdir)
        wait(rspamd._pong, 90, "rspamd", log)
        return rspamd

    def _pong(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=1) as r:
                return b"pong" in r.read()
        except OSError:
            return False

    def check(self, raw: bytes, ip: str, helo: str | None, mail_from: str, rcpt: str) -> dict:
        headers = {"IP": ip, "From": mail_from or "<>", "Rcpt": rcpt}
        if helo:
            headers["Helo"] = helo
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/checkv2", data=raw, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def available() -> str | None:
    """Why the interop suite cannot run here, or None."""
    missing = [b for b in ("knotd", "rspamd") if shutil.which(b) is None]
    return f"{' and '.join(missing)} not installed (.ci/run installs knot and rspamd)" if missing else None


SPF = {"R_SPF_ALLOW": "pass", "R_SPF_FAIL": "fail", "R_SPF_SOFTFAIL": "softfail", "R_SPF_NEUTRAL": "neutral",
       "R_SPF_NA": "none", "R_SPF_DNSFAIL": "temperror", "R_SPF_PERMFAIL": "permerror"}
DKIM = {"R_DKIM_ALLOW": "pass", "R_DKIM_REJECT": "fail", "R_DKIM_TEMPFAIL": "temperror",
        "R_DKIM_PERMFAIL": "permerror"}
DMARC = {"DMARC_POLICY_ALLOW": "pass", "DMARC_POLICY_REJECT": "fail", "DMARC_POLICY_QUARANTINE": "fail",
         "DMARC_POLICY_SOFTFAIL": "fail", "DMARC_NA": "none", "DMARC_BAD_POLICY": "permerror",
         "DMARC_DNSFAIL": "temperror"}


def results(reply: dict) -> dict:
    """rspamd's symbols as {"spf": word, "dkim": {(d, s): word}, "dmarc": word}."""
    symbols = reply.get("symbols", {})
    out: dict = {"spf": None, "dkim": {}, "dmarc": None}
    for name, sym in symbols.items():
        if name in SPF:
            out["spf"] = SPF[name]
        elif name in DMARC:
            out["dmarc"] = DMARC[name]
        elif name in DKIM:
            for option in sym.get("options") or []:
                domain, _, selector = option.partition(":s=")
                out["dkim"][(domain.lower(), selector)] = DKIM[name]
    return out
