"""The fleet simulator: N devices against the real server on this machine (issue 11).

For each database (SQLite, PostgreSQL) one server data directory is made as
in production (``server_release.ServerWorld``: repository imported, release
engineers who publish through ``fwsign``'s client) and ``fwserver serve``
runs exactly as an operator starts it (gunicorn, TLS, 127.0.0.1). For each
fleet size N, smallest first, the fleet grows to N devices, then:

1. enrolment: one pre-accepted enrolment token per new device, issued with
   the code of ``fwserver device enrol-token --accept`` (``enrolment.
   issue_token`` through ``cli_common.database``, all in one transaction),
   then each device registers with a request signed by its own new Ed25519
   key (``fleet_device``), polls once (its first TUF refresh) and reports;
2. check-ins: every device polls, with jitter, for ``seconds``: the fleet
   offers ``rate`` polls per second in all (each device every N / rate
   seconds, its first poll at a random point of that period, each next one
   the period later +/- 10 %), ``threads`` polls at a time over one pool of
   keep-alive TLS connections. A poll is one signed check-in and one
   conditional ``timestamp.json`` (``fleet_device`` F1, F2). Measured:
   check-ins per second, their p50 and p99 latency, errors, the CPU of the
   server's processes (gunicorn master and workers; PostgreSQL's server)
   and of the load generator, the workers' peak RSS;
3. the wave: a release is published, one release manager creates a
   deployment of it to the whole fleet in waves (10 %, then the rest, each
   next wave once 90 % of the last runs it), a second approves it with a
   fresh one-time code (R9), and the time until every device reports running
   it is measured: each device gets its assignment in its poll, sees the new
   timestamp, runs its TUF refresh, verifies and downloads the target into
   its other slot, activates it and reports.

Each size's row is printed as soon as it is measured (enrolment timed by
part: tokens, registrations, first polls), the whole table at the end.
Then the server side of one check-in is profiled in this process
(``fleet_profile``), and "where the time goes" sets the two beside each
other: the machine's cores under load (server, database, load generator,
the rest), the server's CPU per poll, the part of it the app spends
in-process by part, and the rest (gunicorn, TLS, HTTP).

Bounds: every phase has a deadline (a multiple of its planned length; the
wave's is ``wave_limit``, ``--fleet-wave-seconds``); polls not run by then
are counted and printed, and devices the wave has not reached by then are
counted (``reached``), never waited for.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import urllib3

from benchmarks import fleet_pg
from benchmarks.fixtures import People, write_image
from benchmarks.fleet_device import (
    POLL,
    DeviceError,
    Link,
    SimDevice,
)
from benchmarks.fleet_profile import Split, profile_checkins
from benchmarks.report import Check, heading, table
from benchmarks.server import Skipped
from benchmarks.server_procs import (
    KIB,
    RssSampler,
    Service,
    fwserver_command,
    gunicorn_server,
)
from benchmarks.server_release import LINE, Engineer, ServerWorld
from signer import layout
from tests.unprivileged import owner_of
from update_server.audit import Actor
from update_server.cli_common import command_now, database
from update_server.devices import enrolment
from update_server.mfa.totp import INTERVAL, code_at

RATE_TARGET = 1000.0
P99_TARGET = 0.100
MODEL = LINE
DATABASES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class FleetOptions:
    """What the run simulates; every loop is bounded by these."""

    sizes: tuple[int, ...] = (100, 1_000, 10_000)
    databases: tuple[str, ...] = DATABASES
    #: Polls per second the whole fleet offers during the check-in phase.
    rate: float = RATE_TARGET
    #: Length of the check-in phase.
    seconds: float = 10.0
    #: Polls (and connections) at a time.
    threads: int = 16
    image_kib: int = 64
    #: The wave phase's bound: the devices not running the release by then are
    #: counted (``reached``), never waited for.
    wave_limit: float = 120.0
    #: Check-ins profiled in this process after the load.
    profiled: int = 300
    seed: int = 11


@dataclass(frozen=True)
class Latency:
    count: int
    p50: float
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        if not samples:
            return cls(0, float("nan"), float("nan"))
        ordered = sorted(samples)
        return cls(len(ordered), _percentile(ordered, 0.50), _percentile(ordered, 0.99))


@dataclass(frozen=True)
class Phase:
    """What one driven phase did: polls run, polls not run, wall time, errors by kind."""

    polls: int
    not_run: int
    seconds: float
    errors: dict[str, int]
    samples: dict[str, str]
    latencies: dict[str, Latency]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class Usage:
    """CPU seconds of the server's and this process's work during a phase, peak worker RSS."""

    server_cpu: float
    database_cpu: float
    generator_cpu: float
    worker_rss: int


@dataclass(frozen=True)
class Enrolment:
    """Wall seconds of step 1's parts for the devices new at this size."""

    devices: int
    tokens: float
    registrations: float
    first_polls: float
    errors: dict[str, int]
    samples: dict[str, str]

    @property
    def seconds(self) -> float:
        return self.tokens + self.registrations + self.first_polls


@dataclass(frozen=True)
class SizeResult:
    database: str
    devices: int
    enrolment: Enrolment
    checkins: Phase
    usage: Usage
    wave: Phase
    wave_seconds: float | None
    reached: int
    #: The 1-minute load average at the end of the check-in phase (the machine is shared).
    load: float


@dataclass
class Fleet:
    """The devices so far, and how to reach the server."""

    link: Link
    directory: Path
    rng: random.Random
    threads: int
    devices: list[SimDevice] = field(default_factory=list)

    def grow(self, size: int, data_dir: Path) -> tuple[float, float]:
        """Enrol devices until there are ``size`` (step 1): seconds for the tokens, the rest."""
        start = time.perf_counter()
        new = [
            SimDevice(f"sim-{i:05d}", MODEL, self.directory / f"sim-{i:05d}")
            for i in range(len(self.devices), size)
        ]
        tokens = issue_tokens(data_dir, len(new))
        issued = time.perf_counter()
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(lambda pair: _enrol(self.link, *pair), zip(new, tokens, strict=True)))
        self.devices += new
        return issued - start, time.perf_counter() - issued


def run(*, options: FleetOptions, workdir: Path, people: People) -> list[Check]:
    heading("fleet simulator: N devices against fwserver serve (gunicorn, TLS, 127.0.0.1)")
    results: list[SizeResult] = []
    splits: dict[str, Split] = {}
    skipped: list[Check] = []
    for name in options.databases:
        reason = fleet_pg.missing() if name == "postgresql" else None
        if reason is not None:
            skipped.append(Skipped(f"fleet {name}", reason, "PostgreSQL installed", met=False))
            continue
        with _database(name, workdir) as database:
            leg = Leg.start(
                name, database, options=options, workdir=workdir / f"fleet-{name}", people=people
            )
            with leg.serving() as running:
                for number, size in enumerate(options.sizes):
                    try:
                        results.append(running.size(size, number))
                    except Exception as exc:  # noqa: BLE001 - printed; the other database runs
                        print(f"  {name} N={size:,} failed: {type(exc).__name__}: {exc}")
                        skipped.append(Check(f"fleet {name} N={size:,}", "failed", "run", False))
                        break
                    _print_row(results[-1], options)
                splits[name] = running.profile()
                splits[name].print(name)
    _print_results(results, options)
    _print_where_time_goes(results, splits)
    return [*_checks(results), *skipped]


@contextlib.contextmanager
def _database(name: str, workdir: Path) -> Iterator[tuple[str, Callable[[], list[int]]]]:
    """(SQLAlchemy URL, the database server's processes); URL ``""`` is the SQLite default."""
    if name == "sqlite":
        yield "", list
        return
    with fleet_pg.postgres(workdir) as server:
        yield server.url, server.processes


@dataclass
class Leg:
    """One database: its server world, and once serving, the server and the fleet."""

    name: str
    world: ServerWorld
    database_pids: Callable[[], list[int]]
    options: FleetOptions
    workdir: Path
    server: Service | None = None
    fleet: Fleet | None = None

    @classmethod
    def start(
        cls,
        name: str,
        database: tuple[str, Callable[[], list[int]]],
        *,
        options: FleetOptions,
        workdir: Path,
        people: People,
    ) -> Leg:
        workdir.mkdir(parents=True, exist_ok=True)
        url, database_pids = database
        world = ServerWorld(workdir, people, database_url=url)
        return cls(name, world, database_pids, options, workdir)

    @contextlib.contextmanager
    def serving(self) -> Iterator[Running]:
        world, options = self.world, self.options
        root = layout.root_version_file(world.offline, 1).read_bytes()
        serve = fwserver_command("serve", "--data-dir", str(world.data_dir), "--port", "0")
        with gunicorn_server(
            f"fleet-{self.name}", serve, logdir=self.workdir, workers=world.config.workers
        ) as server:
            link = Link.open(
                server=server.url, ca=server.ca, root=root, connections=options.threads
            )
            print(f"{self.name}: fwserver serve at {server.url}, {len(server.workers())} workers")
            rng = random.Random(options.seed)  # noqa: S311 - jitter, not a secret
            fleet = Fleet(link, self.workdir / "devices", rng, options.threads)
            yield Running(self, server, fleet)


@dataclass(frozen=True)
class Running:
    leg: Leg
    server: Service
    fleet: Fleet

    def size(self, size: int, number: int) -> SizeResult:
        """Steps 1 to 3 of the module docstring for a fleet of ``size`` devices."""
        fleet, options, world = self.fleet, self.leg.options, self.leg.world
        recorder = fleet.link.recorder
        tokens, registrations = fleet.grow(size, world.data_dir)
        devices = fleet.devices[:size]
        first = [d for d in devices if d.reported_version is None]
        started = time.perf_counter()
        _drive(fleet, first, polls=1, period=len(first) / options.rate, threads=options.threads)
        with recorder._lock:
            errors, samples = dict(recorder.errors), dict(recorder.samples)
        enrolment = Enrolment(
            len(first), tokens, registrations, time.perf_counter() - started, errors, samples
        )
        print(
            f"  {self.leg.name} N={size:,}: {len(first):,} enrolled in {enrolment.seconds:.1f} s"
            f" (tokens {tokens:.1f} s, registrations {registrations:.1f} s, first polls"
            f" {enrolment.first_polls:.1f} s)",
            flush=True,
        )
        period = size / options.rate
        polls = max(1, round(options.seconds / period))
        recorder.reset()
        with _usage(self.server, self.leg.database_pids) as usage:
            checkins = _drive(fleet, devices, polls=polls, period=period, threads=options.threads)
        load = os.getloadavg()[0]
        version = f"2.{number}.0"
        write_image(world.image_path(version), size=options.image_kib * KIB)
        publication = world.publish(self.server, world.new_engineer(self.server), version)
        published = time.monotonic()
        deployment = _deploy(world, self.server, publication.path)
        recorder.reset()
        wave = _drive(
            fleet,
            devices,
            polls=10**9,
            period=period,
            threads=options.threads,
            until=lambda: all(d.reported_version == version for d in devices),
            limit=options.wave_limit,
        )
        reached = sum(d.reported_version == version for d in devices)
        wave_seconds = time.monotonic() - published if reached == size else None
        if reached < size:  # bounded: the next size's deployment names these devices (D2)
            _abort(world, self.server, deployment)
        return SizeResult(
            self.leg.name,
            size,
            enrolment,
            checkins,
            usage[0],
            wave,
            wave_seconds,
            reached,
            load,
        )

    def profile(self) -> Split:
        with owner_of(self.leg.world.data_dir):  # as the server's user, if run as root (R6)
            return profile_checkins(
                self.leg.world.config,
                [device for device in self.fleet.devices if device.registered],
                count=self.leg.options.profiled,
                url=self.server.url,
                route=POLL,
            )


def _deploy(world: ServerWorld, server: Service, target_path: str) -> int:
    """A deployment of ``target_path`` to the whole fleet in waves, approved by a second manager.

    Waves: 10 % of the fleet, then the rest, each next wave starting once 90 %
    of the last one runs the target; stopped if over 10 % of a wave fails.
    Two release managers, each new (so each one-time code is fresh): one
    creates, the other approves with a fresh code (R9).
    """
    creator, approver = (world.new_engineer(server, role="release_manager") for _ in range(2))
    plan = {
        "target_path": target_path,
        "fleets": [MODEL],
        "waves": [{"percent": 10}],
        "success_percent": 90,
        "failure_percent": 10,
    }
    with server.pool() as pool:
        token = _login(pool, server, creator)
        created = _api(pool, server, "POST", "/deployments", plan, token=token)
        step = _step()
        token = _login(pool, server, approver, step=step)
        fresh = {"X-OTP": code_at(approver.secret, step + 1)}  # not the login's code
        approve = f"/deployments/{created['id']}/approve"
        _api(pool, server, "POST", approve, {}, token=token, headers=fresh)
    deployment: int = created["id"]
    return deployment


def _abort(world: ServerWorld, server: Service, deployment: int) -> None:
    """A wave stopped at its bound: aborted by a new release manager with a fresh code (D4).

    Already stopped by the server (its failure threshold): nothing to abort (409).
    """
    manager = world.new_engineer(server, role="release_manager")
    with server.pool() as pool:
        step = _step()
        token = _login(pool, server, manager, step=step)
        fresh = {"X-OTP": code_at(manager.secret, step + 1)}  # not the login's code
        sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", **fresh}
        url = f"{server.url}/api/v1/deployments/{deployment}/abort"
        response = pool.request("POST", url, body=b"{}", headers=sent)
    if response.status not in (200, 409):
        raise RuntimeError(f"abort of deployment {deployment}: HTTP {response.status}")
    print(f"  deployment {deployment} aborted at the wave's bound ({response.status})", flush=True)


def _login(
    pool: urllib3.PoolManager, server: Service, person: Engineer, *, step: int | None = None
) -> str:
    code = code_at(person.secret, _step() if step is None else step)
    body = {"username": person.name, "password": person.password, "otp": code}
    token: str = _api(pool, server, "POST", "/auth/login", body, token=None)["token"]
    return token


def _api(
    pool: urllib3.PoolManager,
    server: Service,
    method: str,
    path: str,
    body: dict[str, Any],
    *,
    token: str | None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    url = f"{server.url}/api/v1{path}"
    response = pool.request(method, url, body=json.dumps(body), headers=sent)
    if response.status not in (200, 201):
        raise RuntimeError(f"{method} {path}: HTTP {response.status} {response.data[:300]!r}")
    answer: dict[str, Any] = response.json()
    return answer


def _step() -> int:
    return int(time.time()) // INTERVAL


def issue_tokens(data_dir: Path, count: int) -> list[str]:
    """``fwserver device enrol-token --accept``'s code, ``count`` times, in one transaction."""
    actor = Actor(name="cli:fleet-benchmark", role="operator", source="local")
    with owner_of(data_dir), database(data_dir) as db:  # as the server's user (R6)
        now = command_now()
        return [
            enrolment.issue_token(
                db,
                hardware_model=MODEL,
                device_id=None,
                site=None,
                pre_authorized=True,
                lifetime=timedelta(hours=24),
                now=now,
                actor=actor,
            ).token
            for _ in range(count)
        ]


def _enrol(link: Link, device: SimDevice, token: str) -> None:
    try:
        device.register(link, token)
    except DeviceError as exc:
        link.recorder.failed("register", str(exc))


# --- the driver: polls with jitter, a bounded number at a time ----------------------------


def _drive(
    fleet: Fleet,
    devices: Sequence[SimDevice],
    *,
    polls: int,
    period: float,
    threads: int,
    until: Callable[[], bool] = lambda: False,
    limit: float | None = None,
) -> Phase:
    """Poll each device ``polls`` times, every ``period`` s with jitter (module docstring, 2)."""
    recorder, rng = fleet.link.recorder, fleet.rng
    start = time.monotonic()
    deadline = start + (limit if limit is not None else 3 * polls * period + 60)
    queue = [(start + rng.uniform(0, period), i, 0) for i in range(len(devices))]
    heapq.heapify(queue)
    lock, done = threading.Lock(), [0]
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not queue or time.monotonic() > deadline:
                    return
                due, index, count = heapq.heappop(queue)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load, not waiting for a result
            _poll(fleet.link, devices[index])
            with lock:
                done[0] += 1
                if count + 1 < polls:
                    step = period * rng.uniform(0.9, 1.1)
                    heapq.heappush(queue, (max(due + step, time.monotonic()), index, count + 1))

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    # ``until`` is asked here twice a second, not after each poll: it may look
    # at every device, and the polls' thread time is the load generator's.
    joined_by = deadline + 120  # a poll under way at the deadline ends within its timeouts
    while time.monotonic() < joined_by:
        alive = [thread for thread in pool if thread.is_alive()]
        if not alive:
            break
        alive[0].join(timeout=0.5)
        if not stop.is_set() and until():
            stop.set()
    stop.set()
    seconds = time.monotonic() - start
    with recorder._lock:
        latencies = {kind: Latency.of(values) for kind, values in recorder.latencies.items()}
        errors, samples = dict(recorder.errors), dict(recorder.samples)
    return Phase(done[0], len(queue), seconds, errors, samples, latencies)


def _poll(link: Link, device: SimDevice) -> None:
    try:
        device.poll(link)
    except DeviceError as exc:
        link.recorder.failed("poll", f"{device.device_id}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a simulator bug is an error too, never a stop
        link.recorder.failed("poll", f"{device.device_id}: {type(exc).__name__}: {exc}")


# --- usage of the server's processes -------------------------------------------------------


@contextlib.contextmanager
def _usage(server: Service, database_pids: Callable[[], list[int]]) -> Iterator[list[Usage]]:
    """CPU seconds of gunicorn (master and workers) and the database server, over the block."""
    out: list[Usage] = []
    workers = server.workers()
    gunicorn = [server.process.pid, *workers]
    before = (_cpu(gunicorn), _cpu(database_pids()), time.process_time())
    with RssSampler(workers, interval=0.2) as sampler:
        yield out
    after = (_cpu(gunicorn), _cpu(database_pids()), time.process_time())
    out.append(
        Usage(
            server_cpu=after[0] - before[0],
            database_cpu=max(0.0, after[1] - before[1]),
            generator_cpu=after[2] - before[2],
            worker_rss=max(sampler.peaks.values(), default=0),
        )
    )


def _cpu(pids: Sequence[int]) -> float:
    """User and system CPU seconds of ``pids`` (from /proc/<pid>/stat)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# --- printing ------------------------------------------------------------------------------


HEADER = (
    "db",
    "N",
    "enrol",
    "check-ins/s",
    "p50",
    "p99",
    "ts p99",
    "errors",
    "late",
    "server cores",
    "server CPU/poll",
    "pg cores",
    "loadgen cores",
    "load avg",
    "worker RSS",
    "wave",
    "reached",
)


def _row(r: SizeResult, options: FleetOptions) -> tuple[str, ...]:
    c, u = r.checkins, r.usage
    checkin = c.latencies.get("checkin", Latency.of([]))
    stamp = c.latencies.get("timestamp", Latency.of([]))
    return (
        r.database,
        f"{r.devices:,}",
        f"{r.enrolment.seconds:.0f} s",
        f"{checkin.count / c.seconds:.0f}" if c.seconds else "-",
        _ms(checkin.p50),
        _ms(checkin.p99),
        _ms(stamp.p99),
        str(_errors(r)),
        str(c.not_run),
        f"{u.server_cpu / c.seconds:.2f}",
        f"{_per_poll(r) * 1000:.1f} ms",
        f"{u.database_cpu / c.seconds:.2f}",
        f"{u.generator_cpu / c.seconds:.2f}",
        f"{r.load:.1f}",
        f"{u.worker_rss / KIB / KIB:.0f} MiB",
        f"{r.wave_seconds:.1f} s"
        if r.wave_seconds is not None
        else f"> {options.wave_limit:.0f} s",
        f"{r.reached:,}/{r.devices:,}",
    )


def _errors(r: SizeResult) -> int:
    return sum(r.enrolment.errors.values()) + r.checkins.error_count + r.wave.error_count


def _per_poll(r: SizeResult) -> float:
    """Server CPU seconds (gunicorn and the database server) per poll of the check-in phase."""
    return (r.usage.server_cpu + r.usage.database_cpu) / max(1, r.checkins.polls)


def _print_row(r: SizeResult, options: FleetOptions) -> None:
    """One size's figures as soon as they are measured (the whole table comes at the end)."""
    table(HEADER, [_row(r, options)])
    _print_errors(r)
    print(flush=True)


def _print_errors(r: SizeResult) -> None:
    phases = (
        (r.enrolment.errors, r.enrolment.samples, "enrolment"),
        (r.checkins.errors, r.checkins.samples, "check-ins"),
        (r.wave.errors, r.wave.samples, "wave"),
    )
    for errors, samples, what in phases:
        for kind, count in errors.items():
            print(f"  {r.database} N={r.devices} {what}: {count} {kind} errors, e.g. "
                  f"{samples.get(kind, '')}")  # fmt: skip


def _print_results(results: Sequence[SizeResult], options: FleetOptions) -> None:
    heading("fleet: check-ins and waves")
    print(
        f"offered {options.rate:.0f} polls/s, {options.threads} at a time over keep-alive TLS;"
        " a poll = 1 signed check-in + 1 conditional timestamp.json; the wave is bounded by"
        f" {options.wave_limit:.0f} s (reached: devices running the release by then);"
        " load avg: the machine's 1-minute load after the check-ins (it is shared)"
    )
    table(HEADER, [_row(r, options) for r in results])
    for r in results:
        _print_errors(r)
        e = r.enrolment
        print(
            f"  {r.database} N={r.devices}: enrolment of {e.devices} devices: tokens"
            f" {e.tokens:.1f} s, registrations {e.registrations:.1f} s, first polls"
            f" {e.first_polls:.1f} s"
        )
        extra = r.wave.latencies
        parts = [f"{k} p50 {_ms(v.p50)} p99 {_ms(v.p99)} ({v.count})" for k, v in extra.items()]
        print(f"  {r.database} N={r.devices} wave: {'; '.join(parts)}")


def _print_where_time_goes(results: Sequence[SizeResult], splits: Mapping[str, Split]) -> None:
    """Where a check-in's time goes (issue 11): the cores under load, then one poll's CPU."""
    heading("fleet: where the time goes")
    cores = os.cpu_count() or 1
    for r in results:
        c, u = r.checkins, r.usage
        if not c.seconds:
            continue
        server, database, generator = (
            u.server_cpu / c.seconds,
            u.database_cpu / c.seconds,
            u.generator_cpu / c.seconds,
        )
        rest = max(0.0, cores - server - database - generator)
        per_poll = _per_poll(r)
        line = (
            f"{r.database} N={r.devices:,}: the {cores} cores: server {server:.2f}, database"
            f" {database:.2f}, load generator {generator:.2f}, other processes or idle {rest:.2f}"
            f" (load avg {r.load:.1f}); server CPU {per_poll * 1000:.1f} ms a poll, so at most"
            f" {cores / per_poll:.0f} polls/s on {cores} cores for the server alone"
            if per_poll
            else f"{r.database} N={r.devices:,}: no poll measured"
        )
        print(line)
        split = splits.get(r.database)
        if split is not None and per_poll:
            in_process = split.total_cpu + split.not_modified_cpu
            print(
                f"  of which the app's own CPU in-process {in_process * 1000:.1f} ms (check-in"
                f" {split.total_cpu * 1000:.1f} ms, by part in the split above; 304"
                f" {split.not_modified_cpu * 1000:.1f} ms), the rest (gunicorn, TLS, HTTP,"
                f" the database server) {(per_poll - in_process) * 1000:.1f} ms"
            )


def _checks(results: Sequence[SizeResult]) -> list[Check]:
    checks = []
    for r in results:
        errors = _errors(r)
        checks.append(
            Check(
                f"fleet {r.database} N={r.devices:,}: errors",
                f"{errors} errors, {r.reached}/{r.devices} reached by the wave",
                "0 errors, every device reached",
                errors == 0 and r.reached == r.devices,
            )
        )
        if r.database != "postgresql":
            continue
        checkin = r.checkins.latencies.get("checkin", Latency.of([]))
        rate = checkin.count / r.checkins.seconds if r.checkins.seconds else 0.0
        checks.append(
            Check(
                f"fleet postgresql N={r.devices:,}: check-ins/s and p99",
                f"{rate:.0f}/s, p99 {_ms(checkin.p99)}",
                f">= {RATE_TARGET:.0f}/s, p99 < {_ms(P99_TARGET)}",
                rate >= RATE_TARGET and checkin.p99 < P99_TARGET,
            )
        )
    return checks


def _percentile(ordered: Sequence[float], q: float) -> float:
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"
