"""The device client's targets (issue 4), over TLS on 127.0.0.1 or in-process.

1. A firmware update from the real ``fwserver serve`` (``fwclient update`` in
   its own process, as a device runs it, from compiled bytecode: refresh,
   discovery, download into the inactive slot, fsync, read-back check; no
   boot) against ``curl --cacert CA -o FILE`` fetching the same target file
   to disk. Both are timed as whole processes (wall clock), best of
   ``rounds``; target fwclient / curl <= 1.0. Then one more update runs in
   this process with its phases timed, to show where the time goes.
2. A poll when nothing changed, in a long-running client: one ``Remote`` (one
   ``HttpsFetcher``) reused for every poll, as ``fwclient run`` does; requests,
   body bytes, new TLS connections (urllib3's ``num_connections``) and
   milliseconds per poll, from the fetcher's own counters, with the time of
   the request and of the fsyncs apart. Target: one request, no new
   connection.
3. Metadata bytes one device downloads for one update in a product line of N
   releases with hashed bins (``bins_for(N)`` bits). The repository is built
   with the benchmark fixtures, snapshot and timestamp signed here, and served
   in-process by a fetcher that reads the files (no network at all); the
   fetcher counts every body byte ``fwclient check`` asks for. The target
   download itself is not metadata and is not counted. Target < 100 KiB.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from click.testing import CliRunner
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer

from benchmarks.fixtures import People, fill_product_line, make_repository, write_image
from benchmarks.report import MIB, Check, heading, mib, table
from benchmarks.server import Skipped
from benchmarks.server_procs import (
    PROJECT,
    Service,
    _python_env,
    fwserver_command,
    gunicorn_server,
)
from benchmarks.server_release import LINE, Publication, ServerWorld
from client import cli as fwclient_cli
from client import slots
from client import update as update_module
from client.directive import STANDALONE
from client.fetcher import HttpsFetcher, ResumableFetcher
from client.slots import SlotWriter
from client.state import StateDir
from client.update import Outcome, Remote, check, update
from signer import layout
from signer.authoring import bins_for

UPDATE_TARGET = 1.0
METADATA_TARGET = 100 * 1024
PROCESS_TIMEOUT = 300
HEALTHY = f"{sys.executable} -c 'raise SystemExit(0)'"


@dataclass(frozen=True)
class ClientOptions:
    """Sizes and counts; every loop is bounded by them."""

    update_mib: int = 100
    rounds: int = 3
    polls: int = 5
    releases: tuple[int, ...] = (1_000, 100_000)
    #: A product line is measured only while building the previous one took less.
    setup_budget: float = 60.0


def run(*, options: ClientOptions, workdir: Path, people: People) -> list[Check]:
    checks: list[Check] = []
    checks += _server_part(options, workdir / "client-server", people)
    checks += _metadata_part(options, workdir / "client-metadata", people)
    return checks


# --- 1 and 2: against the real server ----------------------------------------------------


def _fwclient_env(devices: Path) -> dict[str, str]:
    """The fwclient processes' environment: this checkout's code, run from bytecode.

    A device runs installed code, compiled when it was installed. This
    workplace may set PYTHONDONTWRITEBYTECODE, which would make every fwclient
    process compile the project's modules from source again (about 40 ms), so
    the processes get a bytecode cache of their own; provisioning fills it.
    """
    env = _python_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(devices / "pycache")
    return env


def _fwclient(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = [sys.executable, "-c", "from client.cli import main; main()", *args]
    start = time.perf_counter()
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    return time.perf_counter() - start, result


def _provision(world: ServerWorld, state: Path, device_id: str, env: dict[str, str]) -> None:
    root = world.offline / "metadata" / "1.root.json"
    _seconds, result = _fwclient(
        "provision", "--state", str(state), "--root", str(root),
        "--hardware-model", LINE, "--device-id", device_id, env=env,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"fwclient provision failed: {result.stderr}")


@contextmanager
def _timed(*targets: tuple[object, str]) -> Iterator[dict[str, list[float]]]:
    """Time every call of each ``owner.name`` while the block runs (seconds per call)."""
    spent: dict[str, list[float]] = {name: [] for _owner, name in targets}
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def timer(func: Callable[..., object], calls: list[float]) -> Callable[..., object]:
        @functools.wraps(func)
        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                calls.append(time.perf_counter() - start)

        return timed

    try:
        for owner, name, func in saved:
            setattr(owner, name, timer(func, spent[name]))
        yield spent
    finally:
        for owner, name, func in saved:
            setattr(owner, name, func)


def _server_part(options: ClientOptions, workdir: Path, people: People) -> list[Check]:
    heading(f"device client: setting up the server and a {options.update_mib} MiB release")
    started = time.perf_counter()
    world = ServerWorld(workdir, people)
    version = "2.0.0"
    write_image(world.image_path(version), size=options.update_mib * MIB)
    serve = fwserver_command("serve", "--data-dir", str(world.data_dir), "--port", "0")
    with gunicorn_server(
        "fwserver-client", serve, logdir=workdir, workers=world.config.workers
    ) as server:
        publication = world.publish(server, world.new_engineer(server), version)
        print(f"set up in {time.perf_counter() - started:.1f} s; fwserver serve: {server.url}")
        devices = workdir / "devices"
        checks = _update_vs_curl(options, world, server, publication, devices)
        checks += _idle_poll(options, server, devices)
    return checks


def _timed_update(
    world: ServerWorld, server: Service, state: Path, env: dict[str, str]
) -> tuple[float, dict[str, list[float]]]:
    """One update of a freshly provisioned device, in this process, with its phases timed."""
    _provision(world, state, f"pump-{state.name}", env)
    fetcher = HttpsFetcher(ca=server.ca)
    phases = (
        (update_module._Session, "check"),
        (update_module, "download_into"),
        (SlotWriter, "checkpoint"),
        (SlotWriter, "commit"),
        (slots, "check_image"),
        (os, "fsync"),
    )
    try:
        with _timed(*phases) as spent:
            start = time.perf_counter()
            result = update(StateDir(state), Remote(server.url, fetcher), directive=STANDALONE)
            total = time.perf_counter() - start
    finally:
        fetcher.close()
    if result.outcome is not Outcome.INSTALLED:
        raise RuntimeError(f"the timed update did not install: {result.message}")
    shutil.rmtree(state)
    return total, spent


def _update_vs_curl(
    options: ClientOptions,
    world: ServerWorld,
    server: Service,
    publication: Publication,
    devices: Path,
) -> list[Check]:
    size = publication.length
    heading(
        f"update of a {mib(size)} firmware: fwclient update vs curl to disk"
        f" (whole processes, wall clock, best of {options.rounds})"
    )
    name = "fwclient update / curl download (time)"
    env = _fwclient_env(devices)
    curl = shutil.which("curl")
    url = f"{server.url}{publication.url_path}"
    times: dict[str, list[float]] = {"fwclient update": [], "curl --cacert CA -o FILE": []}
    for round_ in range(options.rounds):
        state = devices / f"update-{round_}"
        _provision(world, state, f"pump-u{round_}", env)
        seconds, result = _fwclient(
            "update", "--state", str(state), "--server", server.url, "--ca", str(server.ca),
            env=env,
        )  # fmt: skip
        if result.returncode != 0 or "pending a reboot" not in result.stdout:
            raise RuntimeError(f"fwclient update failed: {result.stdout} {result.stderr}")
        times["fwclient update"].append(seconds)
        if round_ < options.rounds - 1:
            shutil.rmtree(state)  # keep the last device: it boots for the poll figure
        if curl is None:
            continue
        out = devices / "curl.bin"
        command = [curl, "--silent", "--show-error", "--fail", "--cacert", str(server.ca)]
        command += ["--max-time", str(PROCESS_TIMEOUT), "-o", str(out), url]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, timeout=PROCESS_TIMEOUT, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or out.stat().st_size != size:
            raise RuntimeError(f"curl failed: {done.stderr!r}")
        times["curl --cacert CA -o FILE"].append(elapsed)
        out.unlink()
    startup = min(_fwclient("--help", env=env)[0] for _round in range(options.rounds))
    if curl is None:
        print(f"fwclient update best {min(times['fwclient update']):.3f} s")
        print("SKIP: curl is not installed (bash benchmarks/system.sh)")
        return [Skipped(name, "curl is not installed", "", met=False)]
    best = {label: min(runs) for label, runs in times.items()}
    table(
        ("client", "best", "throughput", "all runs (s)"),
        [
            (label, f"{best[label]:.3f} s", f"{size / MIB / best[label]:.0f} MiB/s", _runs(runs))
            for label, runs in times.items()
        ],
    )
    _update_breakdown(
        world, server, devices, env, rounds=options.rounds, startup=startup, size=size
    )
    ratio = best["fwclient update"] / best["curl --cacert CA -o FILE"]
    after_startup = (best["fwclient update"] - startup) / best["curl --cacert CA -o FILE"]
    print(
        f"time ratio fwclient / curl: {ratio:.2f}; without Python's start-up and imports:"
        f" {after_startup:.2f} (fwclient also refreshes TUF metadata, syncs the slot to disk"
        " and reads it back to check its SHA-256 before marking it pending; curl only"
        " downloads into the page cache)"
    )
    if ratio > UPDATE_TARGET:
        print(
            f"Why: Python's start-up and imports alone ({startup:.3f} s) take longer than"
            f" curl's whole download ({best['curl --cacert CA -o FILE']:.3f} s). The download"
            " into the slot runs at the server's pace, as curl's does, and hashes nothing on"
            " the way; commit's fsync and read-back check (the bytes installed are the bytes"
            " verified) come on top."
        )
    return [Check(name, f"{ratio:.2f}", f"<= {UPDATE_TARGET}", ratio <= UPDATE_TARGET)]


def _update_breakdown(
    world: ServerWorld,
    server: Service,
    devices: Path,
    env: dict[str, str],
    *,
    rounds: int,
    startup: float,
    size: int,
) -> None:
    """Where an update's time goes: more updates in this process, phases timed, the best kept."""
    runs = [
        _timed_update(world, server, devices / f"phases-{round_}", env) for round_ in range(rounds)
    ]
    total, spent = min(runs, key=lambda run: run[0])
    block = os.urandom(MIB)
    digest, start = hashlib.sha256(), time.perf_counter()
    for _block in range(size // MIB):
        digest.update(block)
    hashing = time.perf_counter() - start

    def row(label: str, seconds: float, calls: str = "") -> tuple[str, str, str]:
        return (label, f"{seconds:.3f} s", calls)

    took = {name: sum(calls) for name, calls in spent.items()}
    phases_sum = took["check"] + took["download_into"] + took["commit"]
    heading(
        "where fwclient update's time goes (more updates in this process, phases timed,"
        f" the fastest of {len(runs)})"
    )
    table(
        ("phase", "time", "calls"),
        [
            row("Python start-up and imports ('fwclient --help', own process)", startup),
            row("TUF refresh, discovery, install policy", took["check"]),
            row("download into the slot (network, TLS, write)", took["download_into"]),
            row("  of which checkpoints", took["checkpoint"], str(len(spent["checkpoint"]))),
            row("commit: fsync, read-back check, evidence, boot environment", took["commit"]),
            row("  of which the read-back: re-read and SHA-256 of the slot", took["check_image"]),
            row("the rest (confirm the target, open the slot, log)", total - phases_sum),
            row("in-process update, all phases", total),
            row("  fsync, every call in the update", took["fsync"], str(len(spent["fsync"]))),
            row(f"for scale: SHA-256 of {mib(size)} in memory (hashlib)", hashing),
        ],
    )


def _idle_poll(options: ClientOptions, server: Service, devices: Path) -> list[Check]:
    heading(f"a poll when nothing changed: one long-running client, {options.polls} polls")
    state_dir = devices / f"update-{options.rounds - 1}"
    env = _fwclient_env(devices)
    _seconds, booted = _fwclient(
        "boot", "--state", str(state_dir), "--health-check", HEALTHY, env=env
    )
    if booted.returncode != 0:
        raise RuntimeError(f"fwclient boot failed: {booted.stdout} {booted.stderr}")
    state = StateDir(state_dir)
    fetcher = HttpsFetcher(ca=server.ca)
    remote = Remote(server.url, fetcher)
    try:
        warm = update(state, remote, directive=STANDALONE)  # the first poll opens the connection
        if warm.outcome is not Outcome.UP_TO_DATE:
            raise RuntimeError(f"the device is not up to date: {warm.message}")
        before = (fetcher.traffic.requests, fetcher.traffic.bytes, fetcher.connections)
        times = []
        with _timed((HttpsFetcher, "fetch_unless"), (os, "fsync")) as spent:
            for _poll in range(options.polls):
                start = time.perf_counter()
                result = update(state, remote, directive=STANDALONE)
                times.append(time.perf_counter() - start)
                if result.outcome is not Outcome.UP_TO_DATE:
                    raise RuntimeError(f"a poll found the device not up to date: {result.message}")
        after = (fetcher.traffic.requests, fetcher.traffic.bytes, fetcher.connections)
    finally:
        fetcher.close()
    polls = options.polls
    requests, body, handshakes = ((a - b) / polls for a, b in zip(after, before, strict=True))
    table(
        ("per poll", "requests", "body bytes", "new TLS connections", "ms (median)", "ms (all)"),
        [
            (
                "fwclient (update() on one Remote)",
                f"{requests:g}",
                f"{body:,.0f}",
                f"{handshakes:g}",
                f"{sorted(times)[len(times) // 2] * 1000:.1f}",
                " ".join(f"{t * 1000:.1f}" for t in times),
            )
        ],
    )
    request_ms = sum(spent["fetch_unless"]) / polls * 1000
    fsync_ms = sum(spent["fsync"]) / polls * 1000
    print(
        f"first poll (warm-up, a full refresh): {before[0]} request(s), {before[1]:,} body"
        f" bytes, {before[2]} connection(s) opened. Each later poll asks timestamp.json with"
        " If-None-Match (304, no body) and, as nothing changed, answers the root probe from"
        " the last full refresh (client/update.py, 'Idle polls'); counted by the client's"
        " fetcher, HTTP headers not included. Of each poll's time: the request"
        f" {request_ms:.1f} ms, {len(spent['fsync']) / polls:g} fsync(s) {fsync_ms:.1f} ms"
        " (time floor, event log, metadata cache); the rest is ngclient verifying the cached"
        " metadata, discovery and the policy."
    )
    met = requests == 1 and handshakes == 0
    measured = f"{requests:g} request(s), {handshakes:g} new connection(s)"
    return [Check("idle poll (per poll)", measured, "1 request, 0 new connections", met)]


def _runs(times: Sequence[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)


# --- 3: metadata bytes per update, in-process -------------------------------------------


class MirrorFetcher(ResumableFetcher):
    """Serves a metadata directory from disk, counting requests and body bytes."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.requests = 0
        self.bytes = 0
        self.files: list[tuple[str, int]] = []

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        self.requests += 1
        path = self.root / unquote(urlsplit(url).path).lstrip("/")
        if not path.is_file():
            raise DownloadHTTPError(f"{url}: HTTP 404", 404)
        data = path.read_bytes()[offset:]
        self.bytes += len(data)
        self.files.append((path.name, len(data)))
        return iter([data])


def _mirror(repo: Path, mirror: Path, people: People, now: datetime) -> None:
    """The repository as a server publishes it: consistent names, snapshot, timestamp."""
    meta = mirror / "metadata"
    meta.mkdir(parents=True)
    source = layout.metadata_dir(repo)
    root = Metadata[Root].from_file(str(source / "1.root.json")).signed
    versions: dict[str, int] = {}
    for file in source.iterdir():
        if file.name == "root.json" or layout.is_versioned_file(file.name):
            continue  # root's chain is copied below; kept signed copies are no roles
        md = Metadata.from_file(str(file))
        role = unquote(file.stem)
        versions[f"{role}.json"] = md.signed.version
        name = f"{md.signed.version}.{file.name}" if root.consistent_snapshot else file.name
        shutil.copyfile(file, meta / name)
    shutil.copyfile(source / "1.root.json", meta / "1.root.json")
    serializer = JSONSerializer(compact=True)
    expires = now + timedelta(days=1)
    snapshot = Metadata(
        Snapshot(
            version=1,
            expires=expires,
            meta={name: MetaFile(version) for name, version in versions.items()},
        )
    )
    snapshot.sign(people["snapshot"])
    snapshot_bytes = snapshot.to_bytes(serializer)
    name = "1.snapshot.json" if root.consistent_snapshot else "snapshot.json"
    (meta / name).write_bytes(snapshot_bytes)
    timestamp = Metadata(Timestamp(version=1, expires=expires, snapshot_meta=MetaFile(1)))
    timestamp.sign(people["timestamp"])
    (meta / "timestamp.json").write_bytes(timestamp.to_bytes(serializer))


def _metadata_part(options: ClientOptions, workdir: Path, people: People) -> list[Check]:
    heading("metadata bytes a device downloads for one update (hashed bins, in-process mirror)")
    checks: list[Check] = []
    rows = []
    last_setup = 0.0
    for releases in options.releases:
        name = f"metadata per update, N={releases:,}"
        if last_setup > options.setup_budget:
            reason = f"building the previous line took {last_setup:.0f} s (> budget)"
            print(f"SKIP N={releases:,}: {reason}")
            checks.append(Skipped(name, reason, "", met=False))
            continue
        now = datetime.now(UTC)
        bits = bins_for(releases)
        with tempfile.TemporaryDirectory(dir=workdir.parent) as tmp:
            repo, mirror = Path(tmp) / "repo", Path(tmp) / "mirror"
            start = time.perf_counter()
            make_repository(repo, people, now=now, bin_bits=bits)
            fill_product_line(repo, people, now=now, releases=releases)
            _mirror(repo, mirror, people, now)
            last_setup = time.perf_counter() - start
            state = Path(tmp) / "device"
            trusted = str(mirror / "metadata" / "1.root.json")
            provisioned = CliRunner().invoke(
                fwclient_cli.main,
                ["provision", "--state", str(state), "--root", trusted,
                 "--hardware-model", LINE, "--device-id", "pump-m1"],
            )  # fmt: skip
            if provisioned.exit_code != 0:
                raise RuntimeError(f"provision failed: {provisioned.output}")
            fetcher = MirrorFetcher(mirror)
            start = time.perf_counter()
            result = check(
                StateDir(state), Remote("https://mirror.invalid", fetcher), directive=STANDALONE
            )
            seconds = time.perf_counter() - start
            if result.outcome is not Outcome.AVAILABLE:
                raise RuntimeError(f"check found no update: {result.message}")
        bins = [size for file, size in fetcher.files if "-bins-" in file]
        rows.append(
            (
                f"{releases:,}",
                f"{1 << bits:,}",
                f"{last_setup:.1f} s",
                f"{seconds:.1f} s",
                str(fetcher.requests),
                f"{fetcher.bytes / 1024:,.1f} KiB",
                f"{len(bins):,} / {sum(bins) / 1024:,.1f} KiB",
            )
        )
        met = fetcher.bytes < METADATA_TARGET
        checks.append(Check(name, f"{fetcher.bytes / 1024:,.1f} KiB", "< 100 KiB", met))
    table(
        ("N", "bins", "setup", "check", "requests", "metadata bytes", "bins fetched / bytes"),
        rows,
    )
    print(
        "Why: a line with hashed bins lists its current releases in its own role"
        " (repo_metadata/frontier.py), so a device reads that role and no bin; what grows"
        " with N is the snapshot, about 40 bytes per bin (bins_for: N / (3 log2 N) bins)."
    )
    return checks
