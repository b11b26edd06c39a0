"""Server configuration: one frozen object, from a file and the environment.

``fwserver`` reads ``<data-dir>/server.json`` (written by ``fwserver init``)
and then ``FWSERVER_*`` environment variables, which win. Anything invalid
stops the server at start with a message naming the setting. No secret is
kept here: the HSM PIN comes from ``FWSERVER_HSM_PIN`` or a 0600 PIN file.

C1 A relative path in ``server.json`` (a file setting, a SQLite database,
the token of an ``fwhsm:`` key URI) is relative to the data directory, never
to the directory a command runs in; ``init`` writes what lies inside the
data directory that way, so a data directory can be moved or restored
elsewhere whole. The loaded configuration holds absolute paths only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from hsm_mock import SCHEME as TOKEN_SCHEME

CONFIG_FILE = "server.json"
ONLINE_ROLES = ("snapshot", "timestamp", "audit", "authorization")
#: Long enough to upload gigabytes over a slow link, short enough that
#: abandoned firmware does not sit in staging for weeks.
UPLOAD_LIFETIME_RANGE = (timedelta(minutes=10), timedelta(days=30))

#: R25: how far a device request's signed ``created`` may be from the server's clock.
DEVICE_SKEW_RANGE = (timedelta(seconds=5), timedelta(minutes=10))
#: R24: how long the first security officer's vote to lift the freeze waits for the second.
UNFREEZE_WINDOW_RANGE = (timedelta(minutes=5), timedelta(hours=24))
#: How long an enrolment token may be valid at most (``fwserver device enrol-token``).
ENROLMENT_TOKEN_MAX = timedelta(days=30)

#: Who may read the metrics (``observability.metrics_access`` A1, A2).
METRICS_ACCESS = frozenset({"loopback", "token"})
#: Counting windows (failed logins per source, coalesced refusals).
WINDOW_RANGE = (timedelta(seconds=1), timedelta(hours=1))
#: R31: the longest wait between two attempts to deliver one alert.
ALERT_RETRY_CAP_RANGE = (timedelta(seconds=10), timedelta(days=1))
#: Proxies in front of the server whose forwarding headers are trusted
#: (``update_server.proxy``): none, or nginx, a load balancer, a CDN.
TRUSTED_PROXY_HOPS_RANGE = (0, 5)
#: Hosts a webhook may be reached on over plain http (this machine only).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True, kw_only=True)
class Webhook:
    """Where critical alerts are POSTed (R31, ``update_server.alerts``).

    Signed with the HMAC secret read from ``secret_file`` (0600, at least 32
    bytes; never logged, never in this file). ``url`` is https, verified
    against ``ca_file`` (None: the system's CAs); plain http only to a
    loopback address (a relay on this machine), since the body is not
    encrypted.
    """

    name: str
    url: str
    secret_file: Path
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        where = f"alert_webhooks[{self.name!r}]"
        if not self.name or len(self.name) > 32 or not self.name.replace("-", "").isalnum():
            raise ConfigError(f"{where}: name must be 1 to 32 letters, digits or '-'")
        parts = urlsplit(self.url)
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ConfigError(f"{where}: url {self.url!r} has a bad port") from None
        plain = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        if not parts.hostname or not (parts.scheme == "https" or plain):
            raise ConfigError(
                f"{where}: url must be https://... (http:// only to 127.0.0.1, ::1 or localhost)"
            )

    def to_json(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "url": self.url,
            "secret_file": str(self.secret_file),
            "ca_file": None if self.ca_file is None else str(self.ca_file),
        }

    def with_paths(self, change: Callable[[Path], Path]) -> Webhook:
        ca_file = None if self.ca_file is None else change(self.ca_file)
        return replace(self, secret_file=change(self.secret_file), ca_file=ca_file)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything the server needs to know at start; immutable."""

    data_dir: Path
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 2
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Private key URI of each online key (fwhsm:... or hsm:...), by role.
    online_keys: Mapping[str, str] = field(default_factory=dict)
    hsm_pin_file: Path | None = None
    max_upload_bytes: int = 4 * 1024**3
    max_metadata_bytes: int = 16 * 1024**2
    #: Every other request body (login, enrolment: small JSON) is refused
    #: (413) past this, before it is read.
    max_request_bytes: int = 64 * 1024
    #: Seconds a request waits for a locked or unreachable database before
    #: it is refused (503).
    database_timeout: float = 5.0
    #: Host names clients may use, comma-separated (``.example.org``: the
    #: domain and its subdomains); empty: loopback and the names the served
    #: certificate is valid for (``tls.certificate_names``). Any other Host
    #: is refused (400).
    trusted_hosts: str = ""
    #: R9, R27, R31: how many proxies in front of the server append the
    #: address they saw to ``X-Forwarded-For`` (nginx alone: 1). 0: no
    #: forwarding header is trusted, the source of each request is its TCP
    #: peer. Set it only when the server is reachable through those proxies
    #: alone (``update_server.proxy`` P1 to P4).
    trusted_proxy_hops: int = 0
    #: Who may read ``GET /metrics``: ``loopback`` (requests from this host
    #: only) or ``token`` (``Authorization: Bearer`` with the content of
    #: ``metrics_token_file``, 0600); ``observability.metrics_access``.
    metrics_access: str = "loopback"
    metrics_token_file: Path | None = None
    session_idle: timedelta = timedelta(minutes=15)
    session_absolute: timedelta = timedelta(hours=8)
    max_failed_logins: int = 5
    lockout: timedelta = timedelta(minutes=15)
    #: R9: failed logins one source address may make per window, then 429.
    max_failed_logins_per_source: int = 20
    login_source_window: timedelta = timedelta(minutes=1)
    #: R27: refusals of one (actor, source, route, reason) within this
    #: window are audited as one entry with their count.
    refusal_audit_window: timedelta = timedelta(minutes=1)
    password_min_length: int = 12
    password_history: int = 5
    audit_checkpoint_every: int = 100
    syslog_address: str = ""
    #: R31: the webhooks critical alerts go to (``Webhook``); none: syslog only.
    alert_webhooks: tuple[Webhook, ...] = ()
    #: R31: the longest back-off between two attempts to deliver one alert.
    alert_retry_cap: timedelta = timedelta(hours=1)
    #: Renew timestamp and snapshot once this fraction of their life is gone.
    renew_at_fraction: float = 0.5
    #: An upload not published by then expires: staging removed, row kept.
    upload_lifetime: timedelta = timedelta(hours=24)
    #: R25: signed device requests created further than this from now are stale.
    device_request_skew: timedelta = timedelta(seconds=60)
    #: R24: a vote to lift the freeze lapses unless another security officer
    #: confirms it within this time (``freeze.rules`` F2).
    unfreeze_window: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'server.db'}")
        _check_range("port", self.port, 0, 65535)
        _check_range("workers", self.workers, 1, 64)
        _check_range("trusted_proxy_hops", self.trusted_proxy_hops, *TRUSTED_PROXY_HOPS_RANGE)
        _check_metrics_access(self.metrics_access, self.metrics_token_file)
        _check_range("max_failed_logins", self.max_failed_logins, 1, 100)
        _check_range("max_failed_logins_per_source", self.max_failed_logins_per_source, 1, 10_000)
        _check_duration("login_source_window", self.login_source_window, *WINDOW_RANGE)
        _check_duration("refusal_audit_window", self.refusal_audit_window, *WINDOW_RANGE)
        _check_range("password_min_length", self.password_min_length, 8, 1024)
        _check_range("password_history", self.password_history, 0, 100)
        _check_range("audit_checkpoint_every", self.audit_checkpoint_every, 1, 1_000_000)
        _check_duration("alert_retry_cap", self.alert_retry_cap, *ALERT_RETRY_CAP_RANGE)
        names = [hook.name for hook in self.alert_webhooks]
        if len(set(names)) != len(names):
            raise ConfigError(f"alert_webhooks: each needs its own name, got {names}")
        _check_range("max_request_bytes", self.max_request_bytes, 1024, 16 * 1024**2)
        if not 0.5 <= self.database_timeout <= 60:
            raise ConfigError("database_timeout: must be from 0.5 to 60 seconds")
        if not 0.05 <= self.renew_at_fraction <= 0.9:
            raise ConfigError("renew_at_fraction: must be between 0.05 and 0.9")
        _check_duration("upload_lifetime", self.upload_lifetime, *UPLOAD_LIFETIME_RANGE)
        _check_duration("device_request_skew", self.device_request_skew, *DEVICE_SKEW_RANGE)
        _check_duration("unfreeze_window", self.unfreeze_window, *UNFREEZE_WINDOW_RANGE)
        unknown = set(self.online_keys) - set(ONLINE_ROLES)
        if unknown:
            raise ConfigError(f"online_keys: unknown role(s) {sorted(unknown)}")

    @property
    def trusted_host_names(self) -> tuple[str, ...]:
        """The configured ``trusted_hosts``, one name each; empty when unset."""
        return tuple(name.strip() for name in self.trusted_hosts.split(",") if name.strip())

    @property
    def repository_dir(self) -> Path:
        """The published TUF repository: plain files, servable by nginx or a CDN."""
        return self.data_dir / "repository"

    @property
    def staging_dir(self) -> Path:
        """Uploads in progress; same file system as the repository (atomic renames)."""
        return self.data_dir / "staging"

    @property
    def incoming_dir(self) -> Path:
        """Firmware of published targets being received (PUT /api/v1/targets); same file system."""
        return self.data_dir / "incoming"

    @property
    def secrets_key_file(self) -> Path:
        """AES key that encrypts TOTP secrets at rest (0600)."""
        return self.data_dir / "secrets.key"

    @property
    def web_secret_key_file(self) -> Path:
        """Flask's SECRET_KEY, which signs the web pages' CSRF tokens (0600)."""
        return self.data_dir / "web-secret.key"

    def to_file_json(self) -> dict[str, Any]:
        """The settings as ``server.json`` keeps them (C1): paths inside the data dir relative."""
        out = {name: value for name, value in self.to_json().items() if name != "data_dir"}
        base = self.data_dir.absolute()
        for item in fields(self):
            if str(item.type).startswith("Path") and out.get(item.name) is not None:
                out[item.name] = str(_relative(Path(out[item.name]), base))
        out["online_keys"] = {
            role: _map_token_path(uri, lambda path: _relative(path, base))
            for role, uri in self.online_keys.items()
        }
        out["database_url"] = _map_sqlite_path(
            self.database_url, lambda path: _relative(path, base)
        )
        out["alert_webhooks"] = [
            hook.with_paths(lambda path: _relative(path, base)).to_json()
            for hook in self.alert_webhooks
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, timedelta):
                value = int(value.total_seconds())
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = [hook.to_json() for hook in value]
            out[item.name] = value
        return out

    @classmethod
    def load(cls, data_dir: Path, env: Mapping[str, str] | None = None) -> ServerConfig:
        """Read ``data_dir/server.json`` then ``FWSERVER_*`` overrides.

        Relative paths in the file are resolved against ``data_dir`` (C1).
        """
        env = os.environ if env is None else env
        data_dir = data_dir.absolute()
        values: dict[str, Any] = {}
        file = data_dir / CONFIG_FILE
        if file.is_file():
            try:
                values = json.loads(file.read_text())
            except ValueError as exc:
                raise ConfigError(f"{file}: not valid JSON ({exc})") from None
            if not isinstance(values, dict):
                raise ConfigError(f"{file}: expected a JSON object of settings")
            values = _anchored(cls, values, data_dir)
        for item in fields(cls):
            key = f"FWSERVER_{item.name.upper()}"
            if key in env:
                values[item.name] = env[key]
        values["data_dir"] = str(data_dir)
        return cls.from_json(values)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> ServerConfig:
        kinds = {item.name: item for item in fields(cls)}
        unknown = set(values) - set(kinds)
        if unknown:
            raise ConfigError(f"unknown setting(s): {sorted(unknown)}")
        parsed = {name: _parse(name, str(kinds[name].type), raw) for name, raw in values.items()}
        return cls(**parsed)

    def with_changes(self, **changes: Any) -> ServerConfig:
        return replace(self, **changes)


def _anchored(cls: type[ServerConfig], values: dict[str, Any], base: Path) -> dict[str, Any]:
    """``values`` with every relative path made absolute against ``base`` (C1)."""
    out = dict(values)
    for item in fields(cls):
        raw = out.get(item.name)
        if str(item.type).startswith("Path") and isinstance(raw, str) and raw:
            out[item.name] = str(base / raw)
    keys = out.get("online_keys")
    if isinstance(keys, dict):
        out["online_keys"] = {
            role: _map_token_path(uri, lambda path: base / path) if isinstance(uri, str) else uri
            for role, uri in keys.items()
        }
    if isinstance(out.get("database_url"), str):
        out["database_url"] = _map_sqlite_path(out["database_url"], lambda path: base / path)
    if isinstance(out.get("alert_webhooks"), list):
        out["alert_webhooks"] = [_anchored_hook(hook, base) for hook in out["alert_webhooks"]]
    return out


def _anchored_hook(hook: Any, base: Path) -> Any:
    """A webhook's relative file paths against ``base`` (C1)."""
    if not isinstance(hook, dict):
        return hook
    files = ("secret_file", "ca_file")
    return {
        name: str(base / value) if name in files and isinstance(value, str) and value else value
        for name, value in hook.items()
    }


def _relative(path: Path, base: Path) -> Path:
    """``path`` relative to ``base`` if it lies inside it, else as it is."""
    return path.relative_to(base) if path.is_absolute() and path.is_relative_to(base) else path


def _map_token_path(uri: str, change: Callable[[Path], Path]) -> str:
    """An ``fwhsm:`` URI with ``change`` applied to its token path; other URIs unchanged."""
    scheme, colon, rest = uri.partition(":")
    if scheme != TOKEN_SCHEME or not colon:
        return uri
    quoted, question, query = rest.partition("?")
    path = Path(unquote(quoted))
    if not str(path) or str(path) == ".":
        return uri
    return f"{scheme}:{quote(str(change(path)))}{question}{query}"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") else Path(database)


def _map_sqlite_path(url: str, change: Callable[[Path], Path]) -> str:
    """``url`` with ``change`` applied to its SQLite file path; other URLs unchanged."""
    path = sqlite_file(url)
    if path is None:
        return url
    changed = make_url(url).set(database=str(change(path)))
    return changed.render_as_string(hide_password=False)


def _mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return {str(k): str(v) for k, v in value.items()}


def _webhooks(value: Any) -> tuple[Webhook, ...]:
    """``alert_webhooks``: a list of {name, url, secret_file[, ca_file]}."""
    if not isinstance(value, list):
        raise TypeError("expected a list of {name, url, secret_file[, ca_file]}")
    hooks = []
    for item in value:
        if not isinstance(item, dict) or not {"name", "url", "secret_file"} <= set(item):
            raise TypeError("each webhook is an object with name, url and secret_file")
        unknown = set(item) - {"name", "url", "secret_file", "ca_file"}
        if unknown:
            raise TypeError(f"unknown webhook field(s) {sorted(unknown)}")
        ca_file = item.get("ca_file")
        hooks.append(
            Webhook(
                name=str(item["name"]),
                url=str(item["url"]),
                secret_file=Path(item["secret_file"]),
                ca_file=Path(ca_file) if ca_file else None,
            )
        )
    return tuple(hooks)


def _check_metrics_access(mode: str, token_file: Path | None) -> None:
    if mode not in METRICS_ACCESS:
        raise ConfigError(f"metrics_access: must be one of {sorted(METRICS_ACCESS)}, got {mode!r}")
    if (mode == "token") != (token_file is not None):
        raise ConfigError(
            "metrics_token_file: set it with metrics_access token, and only then"
            " (loopback access takes no token)"
        )


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}: must be an integer from {low} to {high}, got {value!r}")


def _check_duration(name: str, value: timedelta, low: timedelta, high: timedelta) -> None:
    if not isinstance(value, timedelta) or not low <= value <= high:
        got = f"{value.total_seconds():.0f}" if isinstance(value, timedelta) else repr(value)
        raise ConfigError(
            f"{name}: must be from {low.total_seconds():.0f} to {high.total_seconds():.0f}"
            f" seconds, got {got}"
        )


def _integer(raw: Any) -> int:
    """An integer setting: 3 or "3", never true or 1.5 (which int() would take as 1)."""
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise TypeError("expected a whole number")
    return int(raw)


def _parse(name: str, kind: str, raw: Any) -> Any:
    try:
        if kind.startswith("Path"):
            return None if raw in (None, "") else Path(raw)
        if kind == "int":
            return _integer(raw)
        if kind == "float":
            return float(raw)
        if kind == "timedelta":
            return timedelta(seconds=int(raw))
        if kind.startswith(("Mapping", "tuple[Webhook")):
            value = json.loads(raw) if isinstance(raw, str) else raw
            return _mapping(value) if kind.startswith("Mapping") else _webhooks(value)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} ({exc})") from None
