"""The update server's targets, over TLS on 127.0.0.1, against in-run baselines.

One data directory, one repository and the real ``fwserver serve`` (gunicorn,
TLS, its default workers) for all of them; README.md says what each figure
means and why each baseline is fair:

1. ``timestamp.json`` requests per second (wrk, keep-alive) through
   ``fwserver`` over a minimal Flask app under the same gunicorn settings
   (>= 0.7), and over nginx (reported, no target);
2. a 100 MiB firmware download through ``fwserver`` over nginx, both HTTPS
   (>= 0.8);
3. the gunicorn workers' peak RSS while a 1 GiB release uploads (< 128 MiB),
   and flat: it grows no more than for a 256 MiB release;
4. publication latency, first byte of the PUT to the answer of the publish,
   over ``hashlib.sha256`` of the same bytes (<= 1.5).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import urllib3

from benchmarks.fixtures import People, write_image
from benchmarks.report import MIB, Check, heading, mib, table
from benchmarks.server_procs import (
    RssSampler,
    ServerStartError,
    Service,
    fwserver_command,
    gunicorn_server,
    memory_of,
    nginx_missing,
    nginx_server,
    reset_peak,
    sockets_of,
)
from benchmarks.server_release import Publication, ServerWorld
from update_server.publication.release import ExpectedTarget
from update_server.publication.upload import receive

RPS_TARGET = 0.7
DOWNLOAD_TARGET = 0.8
MEMORY_TARGET = 128 * MIB
#: "Flat": the 1 GiB release may grow a worker by at most this much more than
#: the 256 MiB one did (holding the extra 768 MiB would show as 768 MiB).
FLAT_SLACK = 16 * MIB
LATENCY_TARGET = 1.5
TIMESTAMP = "/metadata/timestamp.json"
DOWNLOAD_TIMEOUT = 120


@dataclass(frozen=True)
class Skipped(Check):
    """A comparison that could not be made here; never counted as met or missed."""

    @property
    def verdict(self) -> str:
        return "SKIP"


@dataclass(frozen=True)
class ServerOptions:
    """Sizes, durations and counts; every load loop is bounded by them."""

    download_mib: int = 100
    upload_mib: int = 1024
    publish_mib: int = 256
    publish_rounds: int = 2
    wrk_seconds: int = 10
    wrk_warmup_seconds: int = 3
    wrk_rounds: int = 4
    connections: int = 16
    download_rounds: int = 5


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    per_second: float
    errors: int
    non_2xx: int
    #: Connections each worker held halfway through the run ("9+7").
    spread: str


@dataclass(frozen=True)
class WorkerMemory:
    """One publication's memory: per worker, RSS before, sampled peak and VmHWM."""

    before: dict[int, int]
    sampled: dict[int, int]
    hwm: dict[int, int]
    hwm_reset: bool
    samples: int

    def peak(self, pid: int) -> int:
        return max(self.sampled.get(pid, 0), self.hwm.get(pid, 0) if self.hwm_reset else 0)

    @property
    def max_peak(self) -> int:
        return max(self.peak(pid) for pid in self.before)

    @property
    def max_growth(self) -> int:
        return max(self.peak(pid) - self.before[pid] for pid in self.before)


def run(*, options: ServerOptions, workdir: Path, people: People) -> list[Check]:
    heading("update server: setting up (data directory, repository, firmware images)")
    _check_disk(workdir, options)
    started = time.perf_counter()
    world = ServerWorld(workdir / "server", people)
    versions = {
        "download": ["2.0.0"],
        "latency": [f"2.1.{i}" for i in range(options.publish_rounds)],
        "memory": ["2.2.0"],
    }
    sizes = {
        "download": options.download_mib,
        "latency": options.publish_mib,
        "memory": options.upload_mib,
    }
    for kind, names in versions.items():
        for version in names:
            write_image(world.image_path(version), size=sizes[kind] * MIB)

    checks: list[Check] = []
    workers = world.config.workers
    with ExitStack() as stack:
        # fwserver and nginx run from here to the end (one server at a time is
        # loaded, the others idle); the baseline app only where it is compared.
        serve = fwserver_command("serve", "--data-dir", str(world.data_dir), "--port", "0")
        ours = stack.enter_context(
            gunicorn_server("fwserver", serve, logdir=workdir, workers=workers)
        )
        baseline_command = [
            sys.executable,
            "-m",
            "benchmarks.server_baseline",
            str(world.data_dir),
        ]
        nginx, nginx_reason = None, nginx_missing()
        if nginx_reason is None:
            tls = world.data_dir / "tls"
            try:
                nginx = stack.enter_context(
                    nginx_server(
                        root=world.config.repository_dir,
                        cert=tls / "server.crt",
                        key=tls / "server.key",
                        ca=ours.ca,
                        workers=workers,
                        logdir=workdir,
                        probe=TIMESTAMP,
                    )
                )
            except ServerStartError as exc:
                nginx_reason = str(exc).splitlines()[0][:300]
        pids = ours.workers()
        print(f"set up in {time.perf_counter() - started:.1f} s")
        print(f"fwserver serve: {ours.url}, {len(pids)} workers, {_gthreads()} threads each")
        print(f"nginx: {nginx.url if nginx else nginx_reason}")

        download = world.publish(ours, world.new_engineer(ours), versions["download"][0])
        latency_runs, latency_memory = [], []
        for version in versions["latency"]:
            engineer = world.new_engineer(ours)
            memory, publication = _measured(pids, partial(world.publish, ours, engineer, version))
            latency_runs.append(publication)
            latency_memory.append(memory)
        # The baseline app holds timestamp.json as it was at its start: it
        # starts after the last publication for the requests/s comparison.
        with gunicorn_server(
            "baseline-put", baseline_command, logdir=workdir, workers=workers
        ) as put_baseline:
            image = world.image_path(versions["latency"][0])
            transport = [_put_discard(put_baseline, image) for _ in range(2)]
        checks += _latency_report(world, image, transport, latency_runs, options)

        engineer = world.new_engineer(ours)
        big_memory, big = _measured(
            pids, partial(world.publish, ours, engineer, versions["memory"][0])
        )
        checks += _memory_report(latency_memory[-1], big_memory, big, options)

        baseline = stack.enter_context(
            gunicorn_server("baseline", baseline_command, logdir=workdir, workers=workers)
        )
        checks += _rps(ours, baseline, nginx, nginx_reason, options)
        checks += _download(ours, nginx, nginx_reason, download, options)
    print(f"\nserver benchmarks ran in {time.perf_counter() - started:.0f} s")
    return checks


def _check_disk(workdir: Path, options: ServerOptions) -> None:
    images = (
        options.download_mib + options.upload_mib + options.publish_mib * options.publish_rounds
    )
    need = 2 * images * MIB + 512 * MIB  # the build outputs, and the server's copies
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise RuntimeError(f"{workdir}: {mib(free)} free, the server benchmarks need {mib(need)}")


def _gthreads() -> int:
    from update_server.serve import THREADS_PER_WORKER  # noqa: PLC0415

    return THREADS_PER_WORKER


# --- 3 and 4: publication memory and latency -------------------------------------------


class MemoryWatch:
    """Samples the workers' RSS every 50 ms while entered; resets their VmHWM first."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.result: WorkerMemory | None = None
        self._sampler = RssSampler(pids)
        self._reset = False
        self._before: dict[int, int] = {}

    def __enter__(self) -> MemoryWatch:
        self._reset = all(reset_peak(pid) for pid in self.pids)
        self._before = {pid: memory_of(pid)[0] for pid in self.pids}
        self._sampler.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sampler.__exit__(*exc)
        hwm = {pid: memory_of(pid)[1] for pid in self.pids}
        self.result = WorkerMemory(
            self._before, dict(self._sampler.peaks), hwm, self._reset, self._sampler.samples
        )


def _measured(
    pids: list[int], publish: Callable[..., Publication]
) -> tuple[dict[str, WorkerMemory], Publication]:
    """Run ``publish``, watching the workers' memory during its PUT and its publish."""
    watches: dict[str, MemoryWatch] = {}

    def watch(phase: str) -> MemoryWatch:
        watches[phase] = MemoryWatch(pids)
        return watches[phase]

    publication = publish(watch=watch)
    memory = {phase: w.result for phase, w in watches.items() if w.result is not None}
    if set(memory) != {"upload", "publish"}:
        raise RuntimeError("a publication ran without its upload or publish phase")
    return memory, publication


def _latency_report(
    world: ServerWorld,
    image: Path,
    transport: list[float],
    runs: list[Publication],
    options: ServerOptions,
) -> list[Check]:
    size = options.publish_mib * MIB
    heading(
        f"publication latency of a {mib(size)} release vs hashlib.sha256 of its bytes"
        f" (best of {len(runs)})"
    )
    digest = _sha256(image)  # also warms the page cache
    hashes = [_timed(lambda: _sha256(image)) for _ in range(3)]
    probes = world.workdir / "probes"
    try:
        # Files kept until the end, as the server keeps what it receives: a
        # page freed by deleting one would make the next write look cheaper.
        disk = [_write_fsync(image, probes / f"copy-{i}") for i in range(2)]
        core = [_receive(image, digest, probes / f"receive-{i}") for i in range(2)]
    finally:
        shutil.rmtree(probes, ignore_errors=True)
    best = min(runs, key=lambda run: run.latency_seconds)
    best_hash, best_transport = min(hashes), min(transport)
    best_write, best_fsync = min(w for w, _f in disk), min(f for _w, f in disk)
    ratio = best.latency_seconds / best_hash

    def row(label: str, best: float, runs: list[float], *, rate: bool = True) -> tuple[str, ...]:
        return (
            label,
            f"{best:.3f}",
            f"{best / best_hash:.2f}",
            _rate(size, best) if rate else "",
            _runs(runs),
        )

    table(
        ("measure", "seconds", "x hash", "MiB/s", "all runs (s)"),
        [
            row("baseline: hashlib.sha256, page cache", best_hash, hashes),
            row(
                "fwserver: PUT (TLS, hash, write, fsync)",
                best.upload_seconds,
                [r.upload_seconds for r in runs],
            ),
            row(
                "fwserver: POST publish (verify, sign, switch)",
                best.publish_seconds,
                [r.publish_seconds for r in runs],
                rate=False,
            ),
            row(
                "fwserver: PUT start to publish end",
                best.latency_seconds,
                [r.latency_seconds for r in runs],
            ),
            row("for scale: PUT to minimal Flask, discarded", best_transport, transport),
            row("for scale: upload.receive from the file, no network", min(core), core),
            row("for scale: write the bytes to a new file", best_write, [w for w, _f in disk]),
            row("for scale: fsync that file", best_fsync, [f for _w, f in disk]),
        ],
    )
    print(f"latency ratio publication / hashlib: {ratio:.2f}")
    print(
        "besides hashing, the server receives the bytes over gunicorn and TLS"
        f" ({best_transport / best_hash:.2f} x the hash here), writes them to a new file"
        f" ({best_write / best_hash:.2f} x) and fsyncs it ({best_fsync / best_hash:.2f} x),"
        " one chunk after the other"
    )
    return [
        Check(
            f"publication latency / hashlib.sha256 ({mib(size)})",
            f"{ratio:.2f}",
            f"<= {LATENCY_TARGET}",
            ratio <= LATENCY_TARGET,
        )
    ]


def _memory_report(
    small: dict[str, WorkerMemory],
    big: dict[str, WorkerMemory],
    publication: Publication,
    options: ServerOptions,
) -> list[Check]:
    upload, publish = big["upload"], big["publish"]
    heading(
        f"gunicorn workers' RSS while a {mib(publication.length)} release uploads (PUT), then"
        f" publishes (sampled every 50 ms, and VmHWM"
        f" {'reset before each phase' if upload.hwm_reset else 'NOT reset: an upper bound'})"
    )
    rows = [
        (
            str(pid),
            mib(upload.before[pid]),
            mib(upload.sampled[pid]),
            mib(upload.hwm[pid]),
            mib(upload.peak(pid) - upload.before[pid]),
            mib(small["upload"].peak(pid) - small["upload"].before[pid]),
            mib(publish.peak(pid)),
            mib(publish.peak(pid) - publish.before[pid]),
        )
        for pid in upload.before
    ]
    table(
        (
            "worker",
            "idle RSS",
            "PUT: sampled peak",
            "VmHWM",
            "growth",
            f"growth, {options.publish_mib} MiB PUT",
            "publish: peak",
            "growth",
        ),
        rows,
    )
    print(
        f"PUT {publication.upload_seconds:.1f} s"
        f" ({_rate(publication.length, publication.upload_seconds)}, {upload.samples} samples),"
        f" publish {publication.publish_seconds:.2f} s ({publish.samples} samples)"
    )
    flat = upload.max_growth - small["upload"].max_growth
    print(
        f"upload: peak worker RSS {mib(upload.max_peak)}, growth over idle"
        f" {mib(upload.max_growth)} ({options.upload_mib} MiB) vs"
        f" {mib(small['upload'].max_growth)} ({options.publish_mib} MiB)"
    )
    print(
        f"publish after it: peak worker RSS {mib(publish.max_peak)}, growth"
        f" {mib(publish.max_growth)} (reported, no target)"
    )
    return [
        Check(
            f"server worker peak RSS while a {mib(publication.length)} release uploads",
            mib(upload.max_peak),
            f"< {mib(MEMORY_TARGET)}",
            upload.max_peak < MEMORY_TARGET,
        ),
        Check(
            f"upload growth, {options.upload_mib} MiB release minus {options.publish_mib} MiB",
            mib(flat),
            f"< {mib(FLAT_SLACK)}: flat",
            flat < FLAT_SLACK,
        ),
    ]


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_fsync(source: Path, probe: Path) -> tuple[float, float]:
    """Copy ``source`` (page cache) to a new file ``probe``; (write, fsync) seconds."""
    probe.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, probe.open("wb") as out:
        start = time.perf_counter()
        while block := src.read(MIB):
            out.write(block)
        out.flush()
        written = time.perf_counter()
        os.fsync(out.fileno())
        synced = time.perf_counter()
    return written - start, synced - written


def _receive(source: Path, digest: str, directory: Path) -> float:
    """The server's upload core (read, hash, write, fsync, rename), fed from a file."""
    size = source.stat().st_size
    target = ExpectedTarget(path="pump-x100/probe.bin", length=size, hashes={"sha256": digest})
    with source.open("rb") as stream:
        start = time.perf_counter()
        receive(stream, target, directory=directory, limit=size)
        return time.perf_counter() - start


def _put_discard(baseline: Service, image: Path) -> float:
    """PUT ``image`` to the minimal app, which reads and drops it: the transport alone."""
    size = image.stat().st_size
    with (
        urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(baseline.ca),
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=DOWNLOAD_TIMEOUT),
            blocksize=MIB,
        ) as pool,
        image.open("rb") as handle,
    ):
        start = time.perf_counter()
        response = pool.request(
            "PUT",
            f"{baseline.url}/discard",
            body=iter(lambda: handle.read(MIB), b""),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        elapsed = time.perf_counter() - start
    if response.status != 200 or int(response.data) != size:
        raise RuntimeError(f"PUT to the minimal app failed: {response.status}")
    return elapsed


# --- 1: timestamp.json requests per second -------------------------------------------


def _rps(
    ours: Service,
    baseline: Service,
    nginx: Service | None,
    nginx_reason: str | None,
    options: ServerOptions,
) -> list[Check]:
    threads = min(2, options.connections)
    heading(
        f"timestamp.json requests/s: wrk, {options.connections} keep-alive connections,"
        f" {threads} threads, {options.wrk_seconds} s runs, best of {options.wrk_rounds}"
    )
    wrk_reason = None if shutil.which("wrk") else "wrk is not installed (bash benchmarks/system.sh)"
    if wrk_reason is not None:
        print(f"SKIP: {wrk_reason}")
        return [
            Skipped("timestamp.json req/s fwserver / minimal Flask", wrk_reason, "", met=False),
            Skipped("timestamp.json req/s fwserver / nginx", wrk_reason, "", met=False),
        ]
    servers = [ours, baseline] + ([nginx] if nginx is not None else [])
    _same_bytes(servers, TIMESTAMP)
    for server in servers:
        _wrk(server, seconds=options.wrk_warmup_seconds, options=options)
    results: dict[str, list[WrkResult]] = {server.name: [] for server in servers}
    for _round in range(options.wrk_rounds):
        for server in servers:
            results[server.name].append(_wrk(server, seconds=options.wrk_seconds, options=options))
    best = {name: max(runs, key=lambda r: r.per_second) for name, runs in results.items()}
    labels = {
        "fwserver": "fwserver serve (gunicorn)",
        "baseline": "minimal Flask, same gunicorn",
        "nginx": "nginx, same certificate",
    }
    table(
        ("server", "best req/s", "all runs req/s", "connections per worker", "errors", "non-2xx"),
        [
            (
                labels[name],
                f"{best[name].per_second:.0f}",
                " ".join(f"{r.per_second:.0f}" for r in runs),
                " ".join(r.spread for r in runs),
                str(sum(r.errors for r in runs)),
                str(sum(r.non_2xx for r in runs)),
            )
            for name, runs in results.items()
        ],
    )
    flask_ratio = best["fwserver"].per_second / best["baseline"].per_second
    medians = {
        name: statistics.median(r.per_second for r in runs) for name, runs in results.items()
    }
    print(
        f"fwserver / minimal Flask: {flask_ratio:.2f}"
        f" (of the medians: {medians['fwserver'] / medians['baseline']:.2f})"
    )
    checks: list[Check] = [
        Check(
            "timestamp.json req/s fwserver / minimal Flask (same gunicorn)",
            f"{flask_ratio:.2f}",
            f">= {RPS_TARGET}",
            flask_ratio >= RPS_TARGET,
        )
    ]
    if "nginx" in best:
        nginx_ratio = best["fwserver"].per_second / best["nginx"].per_second
        print(f"fwserver / nginx: {nginx_ratio:.3f} (reported, no target)")
    else:
        print(f"SKIP fwserver / nginx: {nginx_reason}")
        checks.append(
            Skipped("timestamp.json req/s fwserver / nginx", str(nginx_reason), "", met=False)
        )
    return checks


_REQUESTS = re.compile(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)")
_PER_SECOND = re.compile(r"Requests/sec:\s+([0-9.]+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _wrk(server: Service, *, seconds: int, options: ServerOptions) -> WrkResult:
    """One wrk run; halfway through, count each worker's open connections."""
    threads = min(2, options.connections)
    command = ["wrk", "-t", str(threads), "-c", str(options.connections)]
    command += ["-d", f"{seconds}s", "--timeout", "5s", f"{server.url}{TIMESTAMP}"]
    workers = server.workers()
    idle = {pid: sockets_of(pid) for pid in workers}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as wrk:
        try:
            time.sleep(seconds / 2)
            spread = "+".join(str(max(0, sockets_of(pid) - idle[pid])) for pid in workers)
            stdout, stderr = wrk.communicate(timeout=seconds + 30)
        except BaseException:
            wrk.kill()
            wrk.wait()
            raise
    requests, per_second = _REQUESTS.search(stdout), _PER_SECOND.search(stdout)
    if wrk.returncode != 0 or requests is None or per_second is None:
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {stdout}{stderr}")
    errors = _SOCKET_ERRORS.search(stdout)
    non_2xx = _NON_2XX.search(stdout)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNITS[requests.group(3)],
        per_second=float(per_second.group(1)),
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        spread=spread,
    )


def _same_bytes(servers: list[Service], path: str) -> None:
    """Every server answers ``path`` with the same bytes, or the comparison is void."""
    bodies = {}
    for server in servers:
        with server.pool() as pool:
            response = pool.request("GET", f"{server.url}{path}")
            if response.status != 200:
                raise RuntimeError(f"{server.name}: GET {path} answered {response.status}")
            bodies[server.name] = response.data
    if len(set(bodies.values())) != 1:
        raise RuntimeError(f"the servers answer {path} with different bytes: benchmark invalid")


# --- 2: a firmware download --------------------------------------------------------------


def _download(
    ours: Service,
    nginx: Service | None,
    nginx_reason: str | None,
    publication: Publication,
    options: ServerOptions,
) -> list[Check]:
    size = publication.length
    heading(
        f"download of a {mib(size)} firmware over HTTPS: fwserver vs nginx"
        f" (curl, best of {options.download_rounds})"
    )
    name = "firmware download fwserver / nginx"
    reason = nginx_reason or (None if shutil.which("curl") else "curl is not installed")
    if nginx is None or reason is not None:
        print(f"SKIP: {reason}")
        return [Skipped(name, str(reason), "", met=False)]
    servers = [ours, nginx]
    for server in servers:  # untimed: checks the bytes and warms both sides
        digest = _stream_sha256(server, publication.url_path)
        if digest != publication.sha256:
            raise RuntimeError(f"{server.name} served other bytes: benchmark invalid")
    times: dict[str, list[float]] = {server.name: [] for server in servers}
    for _round in range(options.download_rounds):
        for server in servers:
            times[server.name].append(_curl(server, publication.url_path, size))
    best = {name: min(runs) for name, runs in times.items()}
    table(
        ("server", "best", "throughput", "all runs (s)"),
        [
            (label, f"{best[label]:.3f} s", _rate(size, best[label]), _runs(times[label]))
            for label in times
        ],
    )
    ratio = best["nginx"] / best["fwserver"]
    print(f"throughput ratio fwserver / nginx: {ratio:.2f}")
    return [Check(name, f"{ratio:.2f}", f">= {DOWNLOAD_TARGET}", ratio >= DOWNLOAD_TARGET)]


def _stream_sha256(server: Service, path: str) -> str:
    hasher = hashlib.sha256()
    with server.pool() as pool:
        response = pool.request("GET", f"{server.url}{path}", preload_content=False)
        try:
            if response.status != 200:
                raise RuntimeError(f"{server.name}: GET {path} answered {response.status}")
            for chunk in response.stream(MIB):
                hasher.update(chunk)
        finally:
            response.release_conn()
    return hasher.hexdigest()


def _curl(server: Service, path: str, size: int) -> float:
    """One download with curl (verifying TLS against the CA), discarded; its total time."""
    command = ["curl", "--silent", "--show-error", "--cacert", str(server.ca)]
    command += ["--max-time", str(DOWNLOAD_TIMEOUT), "--output", "/dev/null"]
    command += ["--write-out", "%{http_code} %{size_download} %{time_total}"]
    command.append(f"{server.url}{path}")
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT + 10, check=False
    )
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 3 or fields[0] != "200" or int(fields[1]) != size:
        raise RuntimeError(f"curl from {server.name} failed: {result.stdout} {result.stderr}")
    return float(fields[2])


# --- formatting -------------------------------------------------------------------------


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:.0f} MiB/s"


def _runs(times: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)
