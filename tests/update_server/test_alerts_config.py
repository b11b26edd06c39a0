"""Webhook settings (R31): checked at start, secrets from safe files, paths relative (C1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from update_server.alerts.delivery import Sender, read_secret
from update_server.alerts.errors import AlertConfigError
from update_server.config import ConfigError, ServerConfig, Webhook


def _hook(url: str, name: str = "siem") -> Webhook:
    return Webhook(name=name, url=url, secret_file=Path("/s/siem.key"))


@pytest.mark.parametrize(
    "url", ["https://siem.example.org/alerts", "http://127.0.0.1:9000/x", "http://[::1]/x"]
)
def test_https_or_loopback_http_is_accepted(url: str) -> None:
    assert _hook(url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://siem.example.org/alerts",  # plain text over a network: refused
        "ftp://127.0.0.1/x",
        "https:///no-host",
        "https://siem.example.org:99999/",
        "siem.example.org",
    ],
)
def test_other_urls_are_refused_with_what_to_use(url: str) -> None:
    with pytest.raises(ConfigError, match="alert_webhooks"):
        _hook(url)


@pytest.mark.parametrize("name", ["", "a b", "x" * 33, "siem/1"])
def test_a_webhook_name_is_short_and_plain(name: str) -> None:
    with pytest.raises(ConfigError, match="name"):
        _hook("https://siem.example.org/", name=name)


def test_two_webhooks_with_one_name_are_refused(tmp_path: Path) -> None:
    hooks = (_hook("https://a.example.org/"), _hook("https://b.example.org/"))
    with pytest.raises(ConfigError, match="its own name"):
        ServerConfig(data_dir=tmp_path, alert_webhooks=hooks)


def test_c1_server_json_keeps_secret_paths_relative_and_loads_them_absolute(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    hook = Webhook(
        name="siem", url="https://siem.example.org/a", secret_file=data / "alerts" / "siem.key"
    )
    config = ServerConfig(data_dir=data, alert_webhooks=(hook,))
    written = config.to_file_json()
    assert written["alert_webhooks"][0]["secret_file"] == "alerts/siem.key"
    (data / "server.json").write_text(json.dumps(written))
    moved = tmp_path / "moved"
    data.rename(moved)
    loaded = ServerConfig.load(moved, env={})
    assert loaded.alert_webhooks[0].secret_file == moved / "alerts" / "siem.key"
    assert loaded.alert_webhooks[0].url == hook.url


def test_the_environment_sets_webhooks_as_json(tmp_path: Path) -> None:
    value = json.dumps([{"name": "siem", "url": "https://s.example.org/", "secret_file": "/k"}])
    loaded = ServerConfig.load(tmp_path, env={"FWSERVER_ALERT_WEBHOOKS": value})
    assert loaded.alert_webhooks == (
        Webhook(name="siem", url="https://s.example.org/", secret_file=Path("/k")),
    )


@pytest.mark.parametrize(
    "value",
    [
        '{"name": "siem"}',
        '[{"name": "siem", "url": "https://s.example.org/"}]',
        '[{"name": "siem", "url": "https://s.example.org/", "secret_file": "/k", "token": "x"}]',
    ],
)
def test_a_malformed_webhook_list_stops_the_start(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="alert_webhooks"):
        ServerConfig.load(tmp_path, env={"FWSERVER_ALERT_WEBHOOKS": value})


def test_w4_a_secret_is_read_from_an_owner_only_file(tmp_path: Path) -> None:
    file = tmp_path / "siem.key"
    file.write_bytes(b"k" * 40 + b"\n")
    file.chmod(0o600)
    assert read_secret(file) == b"k" * 40


def test_w4_a_secret_others_can_read_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "siem.key"
    file.write_bytes(b"k" * 40)
    file.chmod(0o644)
    with pytest.raises(AlertConfigError, match="chmod 600"):
        read_secret(file)


def test_w4_a_short_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    file = tmp_path / "siem.key"
    file.write_bytes(b"hunter2")
    file.chmod(0o600)
    with pytest.raises(AlertConfigError, match="fewer than 32 bytes") as refused:
        read_secret(file)
    assert "hunter2" not in str(refused.value)


def test_w4_a_missing_secret_file_stops_the_worker_at_start(tmp_path: Path) -> None:
    hook = Webhook(name="siem", url="https://s.example.org/", secret_file=tmp_path / "absent")
    with pytest.raises(AlertConfigError, match="absent"):
        Sender([hook])
