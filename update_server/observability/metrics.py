"""The server's Prometheus metrics (R38), counted right under several gunicorn workers.

What is counted: requests and their latency by route, publications, device
check-ins (signed device requests), the update results and refusals devices
report (their event types), and alerts sent and failed (``count_alert``,
called by the alert worker). ``exposition`` renders them in the Prometheus
text format for ``GET /metrics``. Rules:

- P1 Every label is bounded, so no client can grow the series without end: a
  route is its URL rule (``/targets/<path:path>``), never the path sent
  (``UNMATCHED`` when no rule matched); a method is one HTTP knows, else
  ``other``; a status is its class (``2xx``); a device event is one of
  ``RESULT_EVENTS`` or ``REFUSAL_EVENTS`` (any other type is not counted); an
  alert outcome is an ``AlertOutcome``.
- P2 Under ``fwserver serve`` each worker counts into its own files in a
  directory made fresh and empty for that run (prometheus_client's
  multiprocess mode, ``use_multiprocess_dir``), and ``/metrics``, whichever
  worker answers it, adds up every worker's files: the totals are the
  server's, not one worker's. A worker that exits is marked dead
  (``worker_exited``); its counts stay in the totals.
- P3 The instruments are made on first use in a process, never at import
  (``_instruments``): the process's value class (in memory, or in files)
  must be chosen before the first value is made, and ``fwserver serve``
  imports this module before it knows where the files go. A process that
  already counted cannot switch to files (``MetricsError``).
- P4 Without a multiprocess directory (one process: the tests, ``flask
  run``), the instruments live in this module's own registry, exposed as is.
- P5 Counting never fails or changes an answer: the hooks read the request
  and response, and write nothing but the counts.
- P6 ``fwserver_clock_synchronized`` is read when scraped, not counted: 1
  when the kernel says the system clock is synchronized, 0 when it says it
  is not or cannot say (``clock_sync`` C1-C3); absent for a server on another
  clock than the system's (C4).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from update_server.observability.clock_sync import ClockSync, SyncState

#: The environment variable prometheus_client reads for its multiprocess directory.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
PREFIX: Final = "fwserver"
#: P1: the route label of a request no URL rule matched (404, 405).
UNMATCHED: Final = "(unmatched)"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Seconds; up to the minutes a firmware upload over a slow link takes.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600)
#: P1: what became of an update on a device (``client.events`` types).
RESULT_EVENTS: Final = frozenset(
    {
        "updated",
        "installed",
        "offline_install",
        "rolled_back",
        "health_check_failed",
        "insufficient_space",
        "deferred_in_use",
        "deferred_window",
        "awaiting_authorization",
        "server_frozen",
        "failsafe_entered",
        "error",
    }
)
#: P1: what a device refused, as an attack or by its own policy (``client.events`` types).
REFUSAL_EVENTS: Final = frozenset(
    {
        "rollback_attack",
        "freeze_attack",
        "mix_and_match",
        "bad_signature",
        "bad_hash",
        "too_long",
        "slow_retrieval",
        "clock_skew",
        "firmware_downgrade",
        "hardware_mismatch",
        "integrity_failure",
        "known_bad",
        "prerequisite_missing",
        "running_not_listed",
        "assignment_refused",
        "failsafe_refused",
        "authorization_replayed",
        "authorization_expired",
        "authorization_wrong_device",
        "authorization_wrong_release",
        "authorization_bad_signature",
        "authorization_untrusted_key",
        "authorization_malformed",
    }
)


class MetricsError(RuntimeError):
    """The metrics cannot be set up as asked; the message says why."""


class AlertOutcome(StrEnum):
    """What became of one delivery of an alert (``count_alert``)."""

    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class _Instruments:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    checkins: Counter
    publications: Counter
    results: Counter
    refusals: Counter
    alerts: Counter


#: P3: this process's instruments, once made; the lock makes them once, however
#: many threads of a worker ask first (two sets would overwrite each other's
#: counts in the worker's file).
_MADE: list[_Instruments] = []
_MAKING = threading.Lock()


def _instruments() -> _Instruments:
    """P3: this process's instruments, made on first use."""
    if not _MADE:
        with _MAKING:
            if not _MADE:
                _MADE.append(_make())
    return _MADE[0]


def _make() -> _Instruments:
    registry = CollectorRegistry(auto_describe=True)
    return _Instruments(
        registry=registry,
        requests=Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route rule, method and status class.",
            ("route", "method", "status"),
            registry=registry,
        ),
        latency=Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route rule and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        checkins=Counter(
            f"{PREFIX}_device_checkins",
            "Signed device requests answered, by route rule and status class.",
            ("route", "status"),
            registry=registry,
        ),
        publications=Counter(
            f"{PREFIX}_publications", "Releases published through the API.", registry=registry
        ),
        results=Counter(
            f"{PREFIX}_device_update_results",
            "Update results devices reported in their logs, by event type.",
            ("event",),
            registry=registry,
        ),
        refusals=Counter(
            f"{PREFIX}_device_update_refusals",
            "Refusals (attacks, policy) devices reported in their logs, by event type.",
            ("event",),
            registry=registry,
        ),
        alerts=Counter(
            f"{PREFIX}_alerts",
            "Alert deliveries, by outcome (sent, failed).",
            ("outcome",),
            registry=registry,
        ),
    )


def use_multiprocess_dir(directory: Path) -> None:
    """P2, P3: count into files in ``directory`` from now on, in this process and its forks.

    Called by the gunicorn master before it forks the workers, with a fresh
    empty directory. prometheus_client chooses its value class when it is
    imported, from ``PROMETHEUS_MULTIPROC_DIR``; this process imported it
    before the directory existed, so the choice is made again here, the way
    the library makes it.
    """
    if _MADE:
        raise MetricsError("this process has counted already; its counts cannot move to files")
    if any(directory.iterdir()):
        raise MetricsError(f"{directory} is not empty: the metrics of each run start from zero")
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> Path | None:
    """The directory the workers count into, or None (one process, P4)."""
    named = os.environ.get(MULTIPROC_ENV)
    return Path(named) if named else None


def worker_exited(pid: int) -> None:
    """P2: gunicorn's ``child_exit``: the worker's files count on, as a dead process's."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition(*, clock: ClockSync | None = None) -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type (P2, P4, P6)."""
    directory = multiprocess_dir()
    if directory is None:
        counted = generate_latest(_instruments().registry)
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    read = CollectorRegistry()
    if clock is not None and clock.state is not SyncState.NOT_SYSTEM_CLOCK:
        read.register(_ClockCollector(clock))
    return counted + generate_latest(read), CONTENT_TYPE_LATEST


class _ClockCollector(Collector):
    """P6: one reading, as a gauge (no value class: nothing written to the workers' files)."""

    def __init__(self, clock: ClockSync) -> None:
        self.clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        synchronized = self.clock.state is SyncState.SYNCHRONIZED
        yield GaugeMetricFamily(
            f"{PREFIX}_clock_synchronized",
            "1 when the kernel says the system clock is synchronized (NTP), else 0.",
            value=1.0 if synchronized else 0.0,
        )


def count_request(*, route: str, method: str, status: int, seconds: float) -> None:
    """One answered request (P1: ``route`` is the URL rule, or ``UNMATCHED``)."""
    known = method if method in METHODS else "other"
    metrics = _instruments()
    metrics.requests.labels(route, known, status_class(status)).inc()
    metrics.latency.labels(route, known).observe(seconds)


def count_device_checkin(*, route: str, status: int) -> None:
    """One signed device request answered (a device route)."""
    _instruments().checkins.labels(route, status_class(status)).inc()


def count_publication() -> None:
    _instruments().publications.inc()


def count_device_events(entries: Iterable[Mapping[str, Any]]) -> None:
    """The update results and refusals among a report's new log entries (P1)."""
    metrics = _instruments()
    for entry in entries:
        kind = entry.get("type")
        if kind in RESULT_EVENTS:
            metrics.results.labels(kind).inc()
        elif kind in REFUSAL_EVENTS:
            metrics.refusals.labels(kind).inc()


def count_alert(outcome: AlertOutcome) -> None:
    """One delivery of an alert, sent or failed (the alert worker calls this)."""
    _instruments().alerts.labels(AlertOutcome(outcome).value).inc()


def status_class(status: int) -> str:
    """``2xx`` for 200..299 (P1)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"
