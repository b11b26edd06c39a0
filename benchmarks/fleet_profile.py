"""Where the server's time goes in one check-in: the app in this process, timed by part.

The server's own app (``create_app`` on the benchmark's data directory and
database, as a gunicorn worker builds it) answers signed check-ins of
registered simulated devices through Flask's test client: no TLS, no
gunicorn, no network, one at a time. The functions a check-in passes
through are wrapped with timers for the duration (this process only):

- signature: ``devices.authentication.verify`` (RFC 9421 base, Ed25519);
- nonce: ``devices.authentication.remember_nonce`` (prune, savepoint insert);
- lookup: the rest of ``authenticate`` (device row, key, ``last_seen_at``);
- view: the route's own function, its commit excluded;
- commit: ``Session.commit`` (the nonce, ``last_seen_at``, what the view wrote);
- framework: the rest (WSGI, routing, access rules, session open and close,
  the JSON answer).

A conditional ``timestamp.json`` answered 304 is timed the same way. Set
beside the server CPU per poll measured under load, the difference is what
gunicorn, TLS and HTTP parsing cost.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy.orm import Session

from benchmarks.fleet_device import TIMESTAMP, SimDevice
from benchmarks.report import heading, table
from fwcommon.message_signatures import signed_headers
from update_server import access
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.devices import authentication
from update_server.keys import signer_loader

PARTS = ("signature", "nonce", "lookup", "view", "commit", "framework")


@dataclass(frozen=True)
class Split:
    """Mean seconds per check-in, by part; and per 304 of ``timestamp.json``."""

    route: str
    count: int
    total: float
    parts: dict[str, float]
    not_modified: float

    def print(self, database: str) -> None:
        heading(f"fleet: the server side of one check-in ({database}, in-process, {self.count})")
        rows = [
            (part, f"{seconds * 1000:.2f} ms", f"{100 * seconds / self.total:.0f} %")
            for part, seconds in self.parts.items()
        ]
        rows.append(("total", f"{self.total * 1000:.2f} ms", "100 %"))
        table(("GET " + self.route, "per check-in", "share"), rows)
        print(f"a conditional timestamp.json answered 304: {self.not_modified * 1000:.2f} ms")


def profile_checkins(
    config: ServerConfig, devices: Sequence[SimDevice], *, count: int, url: str, route: str
) -> Split:
    """``count`` signed check-ins of ``devices`` in turn through the app; the split."""
    app = create_app(config, signer_loader=signer_loader(config))
    host = urlsplit(url).netloc
    endpoint, _ = app.url_map.bind(host).match(route, method="GET")
    spent: dict[str, float] = defaultdict(float)
    client = app.test_client()
    with _timers(app, endpoint, spent):
        client.get(route, base_url=url, headers=_signed(devices[0], url + route))  # warm-up
        spent.clear()
        start = time.perf_counter()
        for number in range(count):
            device = devices[number % len(devices)]
            answer = client.get(route, base_url=url, headers=_signed(device, url + route))
            if answer.status_code != 200:
                raise RuntimeError(
                    f"profiled check-in answered {answer.status_code}: {answer.data[:300]!r}"
                )
        total = (time.perf_counter() - start) / count
    not_modified = _not_modified(app, url, count)
    parts = {
        "signature": spent["verify"],
        "nonce": spent["nonce"],
        "lookup": spent["authenticate"] - spent["verify"] - spent["nonce"],
        "view": spent["view"] - spent["view_commit"],
        "commit": spent["commit"],
        "framework": total * count - spent["authenticate"] - spent["view"]
        + spent["view_commit"] - spent["commit"],
    }  # fmt: skip
    return Split(route, count, total, {k: v / count for k, v in parts.items()}, not_modified)


def _signed(device: SimDevice, url: str) -> dict[str, str]:
    return signed_headers(
        "GET",
        url,
        body=b"",
        signer=device.signer,
        key_id=device.device_id,
        created=datetime.now(UTC),
    )


def _not_modified(app: Flask, url: str, count: int) -> float:
    client = app.test_client()
    etag = client.get(TIMESTAMP, base_url=url).headers["ETag"]
    start = time.perf_counter()
    for _ in range(count):
        if client.get(TIMESTAMP, base_url=url, headers={"If-None-Match": etag}).status_code != 304:
            raise RuntimeError("timestamp.json with its own ETag was not answered 304")
    return (time.perf_counter() - start) / count


@contextlib.contextmanager
def _timers(app: Flask, endpoint: str, spent: dict[str, float]) -> Iterator[None]:
    in_view = [False]
    view = app.view_functions[endpoint]
    commit = Session.commit

    def timed_commit(self: Session) -> None:
        start = time.perf_counter()
        try:
            commit(self)
        finally:
            took = time.perf_counter() - start
            spent["commit"] += took
            if in_view[0]:
                spent["view_commit"] += took

    @functools.wraps(view)  # keeps its access rule (``fw_access``)
    def timed_view(*args: Any, **kwargs: Any) -> Any:
        in_view[0] = True
        try:
            return _timed(view, spent, "view")(*args, **kwargs)
        finally:
            in_view[0] = False

    wrapped = (
        (authentication, "verify", "verify"),
        (authentication, "remember_nonce", "nonce"),
        (access, "authenticate_device", "authenticate"),
    )
    with contextlib.ExitStack() as patches:
        for module, name, key in wrapped:
            timed = _timed(getattr(module, name), spent, key)
            patches.enter_context(mock.patch.object(module, name, timed))
        patches.enter_context(mock.patch.object(Session, "commit", timed_commit))
        patches.enter_context(mock.patch.dict(app.view_functions, {endpoint: timed_view}))
        yield


def _timed(function: Callable[..., Any], spent: dict[str, float], key: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start

    return wrapper
