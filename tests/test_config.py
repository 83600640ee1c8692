"""Config: defaults, the TOML file and flags, in that order of precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import UsageError, config_from, parser
from lab.config import Config, load


def test_defaults_are_loopback_and_unprivileged(monkeypatch, tmp_path):
    monkeypatch.setenv("MAILLAB_DATA_DIR", str(tmp_path / "d"))
    c = Config()
    assert (c.bind, c.relay_port, c.submission_port, c.smtps_port) == ("127.0.0.1", 2525, 2587, 2465)
    assert c.max_size == 50 * 1024 * 1024 and c.credentials is None and c.offline is False
    assert c.db_path == tmp_path / "d" / "maillab.db"


def test_file_then_flags(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('client-ip = "192.0.2.10"\nzones = ["z/a.zone"]\noffline = true\nrelay_port = 3525\n')
    c = load(cfg)
    assert c.client_ip == "192.0.2.10" and c.offline and c.relay_port == 3525
    assert c.zones == [str(tmp_path / "z" / "a.zone")]  # relative to the config file
    args = parser().parse_args(["serve", "--config", str(cfg), "--relay-port", "4525", "--zone", "b.zone"])
    c = config_from(args)
    assert c.relay_port == 4525 and c.zones == [str(tmp_path / "z" / "a.zone"), "b.zone"]
    assert c.client_ip == "192.0.2.10"


@pytest.mark.parametrize("text", ['colour = "blue"\n', "client-ip = \n"])
def test_bad_config_files_are_usage_errors(tmp_path, text):
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    with pytest.raises(UsageError) as err:
        config_from(parser().parse_args(["list", "--config", str(cfg)]))
    assert str(cfg) in str(err.value)


def test_missing_config_file_is_fine(tmp_path):
    assert load(Path(tmp_path / "absent.toml")).relay_port == 2525


def test_common_options_before_the_command_are_kept_and_repeated_ones_add_up(tmp_path):
    """`maillab --zone A --offline check --zone B FILE`: a subcommand's defaults used to erase A and --offline."""
    args = parser().parse_args(["--zone", "a.zone", "--offline", "--relay-port", "3000", "check", "--zone", "b.zone",
                                "--client-ip", "192.0.2.9", "x.eml"])
    c = config_from(args)
    assert c.zones == ["a.zone", "b.zone"] and c.offline and c.relay_port == 3000 and c.client_ip == "192.0.2.9"
    c = config_from(parser().parse_args(["--zone", "a.zone", "list"]))
    assert c.zones == ["a.zone"]
    c = config_from(parser().parse_args(["list", "--profile", "gmail"]))
    assert c.profile == "gmail"
