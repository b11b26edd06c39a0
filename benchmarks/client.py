"""The device client's targets (issue 4), over TLS on 127.0.0.1 or in-process.

1. A firmware update from the real ``fwserver serve`` (``fwclient update`` in
   its own process, as a device runs it: refresh, discovery, download, hash
   and write into the inactive slot; no boot) against ``curl --cacert CA -o
   FILE`` fetching the same target file to disk. Both are timed as whole
   processes (wall clock), best of ``rounds``; target fwclient / curl <= 1.0.
2. A poll when nothing changed, in a long-running client: one ``Remote`` (one
   ``HttpsFetcher``) reused for every poll, as ``fwclient run`` does; requests,
   body bytes, new TLS connections (urllib3's ``num_connections``) and
   milliseconds per poll, from the fetcher's own counters. Reported only.
3. Metadata bytes one device downloads for one update in a product line of N
   releases with hashed bins (``bins_for(N)`` bits). The repository is built
   with the benchmark fixtures, snapshot and timestamp signed here, and served
   in-process by a fetcher that reads the files (no network at all); the
   fetcher counts every body byte ``fwclient check`` asks for. The target
   download itself is not metadata and is not counted. Target < 100 KiB.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
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
from client.fetcher import HttpsFetcher, ResumableFetcher
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


def _fwclient(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    argv = [sys.executable, "-c", "from client.cli import main; main()", *args]
    start = time.perf_counter()
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=_python_env(),
        cwd=PROJECT,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    return time.perf_counter() - start, result


def _provision(world: ServerWorld, state: Path, device_id: str) -> None:
    root = world.offline / "metadata" / "1.root.json"
    _seconds, result = _fwclient(
        "provision", "--state", str(state), "--root", str(root),
        "--hardware-model", LINE, "--device-id", device_id,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"fwclient provision failed: {result.stderr}")


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
    curl = shutil.which("curl")
    url = f"{server.url}{publication.url_path}"
    times: dict[str, list[float]] = {"fwclient update": [], "curl --cacert CA -o FILE": []}
    for round_ in range(options.rounds):
        state = devices / f"update-{round_}"
        _provision(world, state, f"pump-u{round_}")
        seconds, result = _fwclient(
            "update", "--state", str(state), "--server", server.url, "--ca", str(server.ca)
        )
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
    ratio = best["fwclient update"] / best["curl --cacert CA -o FILE"]
    startup, _result = _fwclient("--help")
    print(f"of which Python start-up and imports ('fwclient --help'): {startup:.3f} s")
    print(
        f"time ratio fwclient / curl: {ratio:.2f} (fwclient's time includes Python start-up,"
        " the TUF refresh and the slot's fsync; curl only downloads)"
    )
    return [Check(name, f"{ratio:.2f}", f"<= {UPDATE_TARGET}", ratio <= UPDATE_TARGET)]


def _idle_poll(options: ClientOptions, server: Service, devices: Path) -> list[Check]:
    heading(f"a poll when nothing changed: one long-running client, {options.polls} polls")
    state_dir = devices / f"update-{options.rounds - 1}"
    _seconds, booted = _fwclient("boot", "--state", str(state_dir), "--health-check", HEALTHY)
    if booted.returncode != 0:
        raise RuntimeError(f"fwclient boot failed: {booted.stdout} {booted.stderr}")
    state = StateDir(state_dir)
    fetcher = HttpsFetcher(ca=server.ca)
    remote = Remote(server.url, fetcher)
    try:
        warm = update(state, remote)  # the first poll opens the connection
        if warm.outcome is not Outcome.UP_TO_DATE:
            raise RuntimeError(f"the device is not up to date: {warm.message}")
        before = (fetcher.traffic.requests, fetcher.traffic.bytes, fetcher.connections)
        times = []
        for _poll in range(options.polls):
            start = time.perf_counter()
            result = update(state, remote)
            times.append(time.perf_counter() - start)
            if result.outcome is not Outcome.UP_TO_DATE:
                raise RuntimeError(f"a poll did not find the device up to date: {result.message}")
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
    print(
        f"first poll (warm-up): {before[0]} request(s), {before[1]:,} body bytes,"
        f" {before[2]} connection(s) opened; counted by the client's fetcher,"
        " HTTP headers not included. Each poll asks N+1.root.json (404) and timestamp.json"
        " (ngclient), then stops: the snapshot is unchanged."
    )
    return []


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
        if file.name == "root.json" or file.name.endswith(".root.json"):
            continue
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
            result = check(StateDir(state), Remote("https://mirror.invalid", fetcher))
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
        "Why: discovery (client/discovery.py) walks the product line's role and every"
        " hashed bin to list all releases for this model, so a device downloads the whole"
        " line (and a snapshot listing every bin) to find one update: the bytes grow"
        " linearly with N. A signed per-model index would make them constant (not built)."
    )
    return checks
