"""Provides Config: defaults, then the TOML config file, then command-line flags, in that order."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

APP = "maillab"


def default_data_dir() -> Path:
    env = os.environ.get("MAILLAB_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs  # 10 ms of imports, for the default location only

    return platformdirs.user_data_path(APP)


def default_config_file() -> Path:
    env = os.environ.get("MAILLAB_CONFIG")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_config_path(APP) / "config.toml"


@dataclass
class Config:
    data_dir: Path = field(default_factory=default_data_dir)
    zones: list[str] = field(default_factory=list)
    offline: bool = False
    nameserver: str | None = None
    client_ip: str | None = None
    bind: str = "127.0.0.1"
    relay_port: int = 2525
    submission_port: int = 2587
    smtps_port: int = 2465
    pop3_port: int = 2110  # POP3 listener for reading captured mail back; 0 turns it off
    hostname: str = "maillab.localhost"
    max_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    credentials: str | None = None  # a file of user:password lines; unset accepts any AUTH
    idle_timeout: float = 300.0
    max_messages: int = 0  # keep at most this many messages, pruning the oldest; 0 keeps everything
    analysis: str = "process"  # "process": judge mail in a second process, off the SMTP path; or "thread"
    analysis_workers: int = 0  # analysis processes; 0 picks one per core (at least 1, at most 4)
    profile: str = "none"  # provider profile every message is judged by (lab.core.profiles)
    profiles: dict[str, str] = field(default_factory=dict)  # per listener: {"submission": "gmail-bulk"}
    blocklists: str = "default"  # "default", "off", or "ip:ZONE,domain:ZONE,..."
    spam_filters: str = "auto"  # ask rspamd / spamd on loopback for a second opinion: auto, rspamd, spamassassin, off
    rules: str | None = None  # a rules file (lab.rules): scripted refusals, delays, greylisting, bounces
    rules_seed: int | None = None  # seeds the rules' `probability` draws, so a chaos run can be repeated
    greylist_delay: float | None = None  # seconds the built-in greylist@ waits (default 60) when there is no rules file

    @property
    def workers(self) -> int:
        if self.analysis != "process":
            return 1
        return self.analysis_workers or max(1, min(4, (os.cpu_count() or 1)))

    def ensure_data_dir(self) -> Path:
        """Create the data directory owner-only (captured mail is private); an existing one is left as it is."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.data_dir

    @property
    def db_path(self) -> Path:
        return self.data_dir / "maillab.db"

    @property
    def zone_cache(self) -> Path:
        """What overlay zone texts parse to, kept by lab.resolver so a `maillab check` need not load dnspython's
        zone parser again."""
        return self.data_dir / "cache" / "zones"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    def update(self, values: dict, source: str) -> None:
        """Apply settings by name (dashes or underscores); unknown names are an error naming the source."""
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ValueError(f"{source}: unknown setting {key!r}")
            if value is None:
                continue
            if name == "data_dir":
                value = Path(value).expanduser()
            elif name == "rules":
                if not isinstance(value, str | os.PathLike) or not str(value):
                    raise ValueError(f"{source}: rules must be the path of a rules file")
                value = str(Path(value).expanduser())
            elif name == "greylist_delay" and (isinstance(value, bool) or not isinstance(value, int | float)
                                               or not 0 <= value <= 86400):
                raise ValueError(f"{source}: greylist_delay must be a number of seconds from 0 to 86400")
            elif name == "rules_seed" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{source}: rules_seed must be a whole number")
            elif name == "zones":
                value = [str(v) for v in (value if isinstance(value, list) else [value])]
            setattr(self, name, value)


def load(path: Path | None = None) -> Config:
    """Defaults overlaid with the config file, when there is one."""
    config = Config()
    path = path or default_config_file()
    if path.exists():
        try:
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
        base = path.parent
        if "zones" in data:
            data["zones"] = [str(base / Path(z).expanduser()) for z in data["zones"]]
        if isinstance(data.get("rules"), str):
            data["rules"] = str(base / Path(data["rules"]).expanduser())
        config.update(data, str(path))
    return config


def exposed_warning(bind: str) -> str | None:
    """A loud warning when the listeners are reachable from other machines."""
    try:
        if ipaddress.ip_address(bind).is_loopback:
            return None
    except ValueError:
        if bind == "localhost":
            return None
    return (f"listening on {bind}, not loopback: anyone who can reach this machine can send mail into the "
            "lab and read what it answers. Use --bind 127.0.0.1 unless you mean it.")
