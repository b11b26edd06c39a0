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

A conditional ``timestamp.json`` answered 304 is timed the same way. Each
part is measured twice: wall time, and this thread's CPU time (the rest of
its wall time is waiting: for the database server's answer, for SQLite's
``fsync``, or for a core on a busy machine). The requests are signed before
the clock starts (signing is the device's work). Set beside the server CPU
per poll measured under load, the difference is what gunicorn, TLS and
HTTP parsing cost.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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

#: Requests signed at a time, before their clock starts.
BATCH = 20
PARTS = ("signature", "nonce", "lookup", "view", "commit", "framework")


@dataclass(frozen=True)
class Split:
    """Mean seconds per check-in by part, wall and CPU; and per 304 of ``timestamp.json``."""

    route: str
    count: int
    total: float
    parts: dict[str, float]
    not_modified: float
    total_cpu: float = 0.0
    parts_cpu: dict[str, float] = field(default_factory=dict)
    not_modified_cpu: float = 0.0

    def print(self, database: str) -> None:
        heading(f"fleet: the server side of one check-in ({database}, in-process, {self.count})")
        rows = [
            (
                part,
                f"{seconds * 1000:.2f} ms",
                f"{100 * seconds / self.total:.0f} %",
                f"{self.parts_cpu.get(part, 0.0) * 1000:.2f} ms",
            )
            for part, seconds in self.parts.items()
        ]
        rows.append(
            ("total", f"{self.total * 1000:.2f} ms", "100 %", f"{self.total_cpu * 1000:.2f} ms")
        )
        table(("GET " + self.route, "wall", "share", "CPU"), rows)
        print(
            f"a conditional timestamp.json answered 304: {self.not_modified * 1000:.2f} ms"
            f" (CPU {self.not_modified_cpu * 1000:.2f} ms)"
        )


def profile_checkins(
    config: ServerConfig, devices: Sequence[SimDevice], *, count: int, url: str, route: str
) -> Split:
    """``count`` signed check-ins of ``devices`` in turn through the app; the split."""
    app = create_app(config, signer_loader=signer_loader(config))
    host = urlsplit(url).netloc
    endpoint, _ = app.url_map.bind(host).match(route, method="GET")
    spent: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    client = app.test_client()
    with _timers(app, endpoint, spent, cpu):
        client.get(route, base_url=url, headers=_signed(devices[0], url + route))  # warm-up
        spent.clear()
        cpu.clear()
        total = total_cpu = 0.0
        for first in range(0, count, BATCH):  # signed a few at a time: ``created`` stays fresh
            batch = range(first, min(count, first + BATCH))
            signed = [_signed(devices[n % len(devices)], url + route) for n in batch]
            start, start_cpu = time.perf_counter(), time.thread_time()
            for headers in signed:
                answer = client.get(route, base_url=url, headers=headers)
                if answer.status_code != 200:
                    raise RuntimeError(
                        f"profiled check-in answered {answer.status_code}: {answer.data[:300]!r}"
                    )
            total += time.perf_counter() - start
            total_cpu += time.thread_time() - start_cpu
        total, total_cpu = total / count, total_cpu / count
    not_modified, not_modified_cpu = _not_modified(app, url, count)
    return Split(
        route,
        count,
        total,
        _parts(spent, total * count, count),
        not_modified,
        total_cpu,
        _parts(cpu, total_cpu * count, count),
        not_modified_cpu,
    )


def _parts(spent: dict[str, float], total: float, count: int) -> dict[str, float]:
    parts = {
        "signature": spent["verify"],
        "nonce": spent["nonce"],
        "lookup": spent["authenticate"] - spent["verify"] - spent["nonce"],
        "view": spent["view"] - spent["view_commit"],
        "commit": spent["commit"],
        "framework": total - spent["authenticate"] - spent["view"]
        + spent["view_commit"] - spent["commit"],
    }  # fmt: skip
    return {k: v / count for k, v in parts.items()}


def _signed(device: SimDevice, url: str) -> dict[str, str]:
    return signed_headers(
        "GET",
        url,
        body=b"",
        signer=device.signer,
        key_id=device.device_id,
        created=datetime.now(UTC),
    )


def _not_modified(app: Flask, url: str, count: int) -> tuple[float, float]:
    """Mean wall and CPU seconds of a 304 answered to ``timestamp.json``'s own ETag."""
    client = app.test_client()
    etag = client.get(TIMESTAMP, base_url=url).headers["ETag"]
    start, start_cpu = time.perf_counter(), time.thread_time()
    for _ in range(count):
        if client.get(TIMESTAMP, base_url=url, headers={"If-None-Match": etag}).status_code != 304:
            raise RuntimeError("timestamp.json with its own ETag was not answered 304")
    return (time.perf_counter() - start) / count, (time.thread_time() - start_cpu) / count


@contextlib.contextmanager
def _timers(
    app: Flask, endpoint: str, spent: dict[str, float], cpu: dict[str, float]
) -> Iterator[None]:
    in_view = [False]
    view = app.view_functions[endpoint]
    commit = Session.commit

    def timed_commit(self: Session) -> None:
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            commit(self)
        finally:
            took, took_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
            spent["commit"] += took
            cpu["commit"] += took_cpu
            if in_view[0]:
                spent["view_commit"] += took
                cpu["view_commit"] += took_cpu

    @functools.wraps(view)  # keeps its access rule (``fw_access``)
    def timed_view(*args: Any, **kwargs: Any) -> Any:
        in_view[0] = True
        try:
            return _timed(view, spent, cpu, "view")(*args, **kwargs)
        finally:
            in_view[0] = False

    wrapped = (
        (authentication, "verify", "verify"),
        (authentication, "remember_nonce", "nonce"),
        (access, "authenticate_device", "authenticate"),
    )
    with contextlib.ExitStack() as patches:
        for module, name, key in wrapped:
            timed = _timed(getattr(module, name), spent, cpu, key)
            patches.enter_context(mock.patch.object(module, name, timed))
        patches.enter_context(mock.patch.object(Session, "commit", timed_commit))
        patches.enter_context(mock.patch.dict(app.view_functions, {endpoint: timed_view}))
        yield


def _timed(
    function: Callable[..., Any], spent: dict[str, float], cpu: dict[str, float], key: str
) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, start_cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - start
            cpu[key] += time.thread_time() - start_cpu

    return wrapper
