"""Delta updates (issue 13): a release changing about 1% of a 64 MiB image, delta vs full.

Set up as the client benchmark is: the real ``fwserver serve`` (gunicorn, TLS on
127.0.0.1), a repository made with the signer library and imported, every
release published through the server by its own release engineer
(``benchmarks.server_release.ServerWorld``). Release 1.9.0 and 2.0.0 are random
bytes; 2.1.0 is 2.0.0 with 1% of its bytes changed in scattered 4 KiB blocks,
signed with its delta from 2.0.0 (``fwsign add --delta-from``:
``signer.authoring.DeltaSources``) and published with it.

Two devices, measured in the same run, each update on a fresh copy of its
state (best of ``rounds`` on the loopback, then once each over a thin link:
``benchmarks.thin_link`` paces what the server sends to ``link_mbit``):

- delta: runs 2.0.0, so ``fwclient update`` takes the delta;
- full, the baseline: runs 1.9.0, from which no delta leads to 2.1.0, so it
  downloads the full image.

Each update is ``fwclient update`` in its own process, as a device runs it
(refresh, policy, download, apply or stream into the inactive slot, fsync,
read-back check; no boot), timed as a whole (wall clock). Its peak memory is
the client process's own peak RSS, imports included (``VmHWM``, read by the
process itself: ``benchmarks._delta_child``; the ``ru_maxrss`` that ``wait4``
gives also holds this process's peak, which Linux carries over ``exec``, and
is printed beside it). Its bytes downloaded are the ``installed`` event's own count (the
firmware payload: the delta, or the full image; the metadata is the same for
both). Targets: the delta's bytes at most 5% of the full image's, and its
update faster end to end over the thin link (on the loopback the full image
arrives at memory speed: the break-even link speed is printed). Time and
memory are printed as ratios to the full-image baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.client import HEALTHY, _fwclient, _fwclient_env, _provision
from benchmarks.fixtures import People
from benchmarks.report import MIB, Check, heading, mib, table
from benchmarks.server_procs import PROJECT, Service, fwserver_command, gunicorn_server
from benchmarks.server_release import IMAGE_NAME, LINE, Engineer, ServerWorld, _step
from benchmarks.thin_link import ThinLink
from client.state import StateDir
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import DeltaSources, add_firmware
from signer.publish import (
    Credentials,
    ServerSession,
    find_target_files,
    local_roles,
    roles_to_publish,
)
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from update_server.mfa.totp import code_at

BYTES_TARGET = 0.05
CHANGED = 0.01
BLOCK = 4096
OLD, BASE, NEW = "1.9.0", "2.0.0", "2.1.0"


@dataclass(frozen=True)
class DeltaOptions:
    image_mib: int = 64
    rounds: int = 3
    #: The thin link (``benchmarks.thin_link``) both devices update over once more.
    link_mbit: float = 10.0


@dataclass(frozen=True)
class Run:
    """One ``fwclient update`` in its own process."""

    seconds: float
    #: The client process's own peak RSS (VmHWM: ``benchmarks._delta_child``).
    peak: int
    #: ``ru_maxrss`` from ``wait4``: also the parent's peak, carried over ``exec``.
    maxrss: int
    transfer: str
    downloaded: int


def run(*, options: DeltaOptions, workdir: Path, people: People) -> list[Check]:
    size = options.image_mib * MIB
    heading(f"delta updates: setting up the server and three {mib(size)} releases")
    started = time.perf_counter()
    world = ServerWorld(workdir, people)
    for version, seed in ((OLD, 1), (BASE, 2)):
        world.image_path(version).write_bytes(random.Random(seed).randbytes(size))  # noqa: S311
    new = _changed(world.image_path(BASE).read_bytes(), seed=3)
    world.image_path(NEW).write_bytes(new)
    expected = hashlib.sha256(new).hexdigest()
    del new
    serve = fwserver_command("serve", "--data-dir", str(world.data_dir), "--port", "0")
    devices = workdir / "devices"
    env = _fwclient_env(devices)
    with gunicorn_server(
        "fwserver-delta", serve, logdir=workdir, workers=world.config.workers
    ) as server:
        templates = {}
        for name, version in (("full", OLD), ("delta", BASE)):
            world.publish(server, world.new_engineer(server), version)
            templates[name] = _running(world, server, devices / f"{name}-template", version, env)
        making = time.perf_counter()
        lengths = _publish_with_delta(world, server, world.new_engineer(server), workdir)
        making = time.perf_counter() - making
        print(
            f"set up in {time.perf_counter() - started:.1f} s, of which signing and publishing"
            f" {NEW} with its delta {making:.1f} s; fwserver serve: {server.url}"
        )
        runs: dict[str, list[Run]] = {"full": [], "delta": []}
        for round_ in range(options.rounds):
            order = ("full", "delta") if round_ % 2 == 0 else ("delta", "full")
            for name in order:  # alternate, so neither always inherits the other's cache
                state = devices / f"{name}-{round_}"
                shutil.copytree(templates[name], state)
                runs[name].append(_update(server, state, env, expected=expected))
                shutil.rmtree(state)
        thin: dict[str, Run] = {}
        port = int(server.url.rsplit(":", 1)[1])
        with ThinLink(port, bits_per_second=options.link_mbit * 1e6) as link:
            for name in ("delta", "full"):
                state = devices / f"{name}-thin"
                shutil.copytree(templates[name], state)
                url = f"https://127.0.0.1:{link.port}"
                thin[name] = _update(server, state, env, expected=expected, url=url)
                shutil.rmtree(state)
    checks = _report(runs, size=size, lengths=lengths)
    heading(f"the same two updates over a {options.link_mbit:g} Mbit/s link (once each)")
    return [*checks, _thin_check(thin, options.link_mbit)]


def _thin_check(thin: dict[str, Run], mbit: float) -> Check:
    """Issue 13's target: the delta faster end to end, where bandwidth is what it saves."""
    ratio = thin["delta"].seconds / thin["full"].seconds
    print(
        f"over {mbit:g} Mbit/s: full image {thin['full'].seconds:.1f} s"
        f" ({thin['full'].downloaded:,} B), delta {thin['delta'].seconds:.1f} s"
        f" ({thin['delta'].downloaded:,} B): time ratio {ratio:.3f}"
    )
    return Check(
        f"delta time / full image time over {mbit:g} Mbit/s", f"{ratio:.3f}", "< 1", ratio < 1
    )


def _changed(image: bytes, *, seed: int) -> bytes:
    """``image`` with ``CHANGED`` of its bytes replaced, in scattered ``BLOCK``-byte blocks."""
    rng = random.Random(seed)  # noqa: S311  benchmark data, not secrets
    data = bytearray(image)
    blocks = len(image) // BLOCK
    for index in rng.sample(range(blocks), int(len(image) * CHANGED) // BLOCK):
        data[index * BLOCK : (index + 1) * BLOCK] = rng.randbytes(BLOCK)
    return bytes(data)


def _running(
    world: ServerWorld, server: Service, state: Path, version: str, env: dict[str, str]
) -> Path:
    """A device provisioned, updated to ``version`` and booted into it: the template."""
    _provision(world, state, f"pump-{state.name}", env)
    for command in (
        ("update", "--state", str(state), "--server", server.url, "--ca", str(server.ca)),
        ("boot", "--state", str(state), "--health-check", HEALTHY),
    ):
        _seconds, result = _fwclient(*command, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"fwclient {command[0]} failed: {result.stdout} {result.stderr}")
    running = StateDir(state).slot_record(StateDir(state).bootenv().active)
    if running is None or running.version != version:
        raise RuntimeError(f"{state.name} does not run {version}")
    return state


def _publish_with_delta(
    world: ServerWorld, server: Service, engineer: Engineer, workdir: Path
) -> dict[str, int]:
    """Sign ``NEW`` with its delta from ``BASE`` (alice, then bob) and publish both files.

    As ``fwsign add --delta-from`` then ``fwsign publish``; the lengths of the
    targets uploaded, by path.
    """
    alice, bob = world.people.engineers
    now = datetime.now(UTC)
    work = workdir / "deltas"
    work.mkdir()
    add_firmware(
        OfflineRepository(world.offline, now=now, signers=[alice]),
        image=world.image_path(NEW),
        name=IMAGE_NAME,
        info=FirmwareInfo(version=NEW, security_version=1, hardware_models=(LINE,)),
        deltas=DeltaSources(versions=[BASE], base_dir=world.build, work_dir=work),
    )
    sign_roles(OfflineRepository(world.offline, now=now, signers=[bob]), roles=[LINE])
    for made in work.rglob("*.bsdiff"):
        copy = world.build / made.relative_to(work)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, copy)
    session = ServerSession(server.url, ca=server.ca)
    login_step = _step()
    try:
        session.login(
            Credentials(engineer.name, engineer.password, code_at(engineer.secret, login_step))
        )
        names = roles_to_publish(local_roles(world.offline), session.published_versions())
        metadata = {
            name: json.loads(role.path.read_bytes())
            for name, role in local_roles(world.offline).items()
            if name in names
        }
        release = session.open_release(metadata)
        files = find_target_files(release.expected_targets, world.build)
        for target, file in files:
            session.upload_target(release, target, file, sent=lambda _n: None)
        otp = code_at(engineer.secret, max(login_step + 1, _step() - 1))
        session.publish(release, otp=otp)
        session.logout()
    finally:
        session.close()
    return {target.path: target.length for target, _file in files}


def _update(
    server: Service, state: Path, env: dict[str, str], *, expected: str, url: str | None = None
) -> Run:
    """``fwclient update`` in its own process (to ``url``, a thin link, else the server):
    wall time, peak memory, the installed event."""
    report = state.parent / f"{state.name}.memory.json"
    argv = [sys.executable, "-m", "benchmarks._delta_child", str(report), "update"]
    argv += ["--state", str(state), "--server", url or server.url, "--ca", str(server.ca)]
    start = time.perf_counter()
    with subprocess.Popen(
        argv, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as child:
        output = child.stdout.read() if child.stdout else b""
        _pid, status, usage = os.wait4(child.pid, 0)  # reaps it: its rusage is the child's
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0 or b"pending a reboot" not in output:
        raise RuntimeError(f"fwclient update failed: {output!r}")
    device = StateDir(state)
    pending = device.bootenv().pending
    if pending is None or _sha256(device.slot_image(pending)) != expected:
        raise RuntimeError(f"{state.name}: the pending slot is not {NEW} as signed")
    (detail,) = [e["detail"] for e in device.events.entries() if e["type"] == "installed"][-1:]
    memory = json.loads(report.read_text())
    return Run(
        seconds,
        memory["peak_kib"] * 1024,
        usage.ru_maxrss * 1024,
        detail["transfer"],
        detail["downloaded"],
    )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _report(runs: dict[str, list[Run]], *, size: int, lengths: dict[str, int]) -> list[Check]:
    heading(
        f"update to {NEW} ({mib(size)}, {CHANGED:.0%} changed): delta vs full image"
        f" (fwclient update in its own process, best of {len(runs['full'])})"
    )
    for name, want in (("full", "full"), ("delta", "delta")):
        got = {r.transfer for r in runs[name]}
        if got != {want}:
            raise RuntimeError(f"the {name} device installed by {got}, not by {want}")
    best = {name: min(r.seconds for r in done) for name, done in runs.items()}
    peak = {name: max(r.peak for r in done) for name, done in runs.items()}
    maxrss = {name: max(r.maxrss for r in done) for name, done in runs.items()}
    downloaded = {name: done[0].downloaded for name, done in runs.items()}
    table(
        ("device", "bytes downloaded", "best time", "peak RSS", "ru_maxrss", "all runs (s)"),
        [
            (
                f"{name} ({'runs ' + (BASE if name == 'delta' else OLD)})",
                f"{downloaded[name]:,}",
                f"{best[name]:.3f} s",
                mib(peak[name]),
                mib(maxrss[name]),
                " ".join(f"{r.seconds:.3f}" for r in runs[name]),
            )
            for name in ("full", "delta")
        ],
    )
    delta_files = {path: length for path, length in lengths.items() if path.endswith(".bsdiff")}
    print(f"targets published with {NEW}: " + ", ".join(f"{p} {n:,} B" for p, n in lengths.items()))
    ratio = downloaded["delta"] / downloaded["full"]
    print(
        f"ratios delta / full: bytes {ratio:.4f}, time {best['delta'] / best['full']:.2f},"
        f" peak memory {peak['delta'] / peak['full']:.2f}"
    )
    extra = best["delta"] - best["full"]
    if extra > 0:
        even = (downloaded["full"] - downloaded["delta"]) / extra
        print(
            f"on this loopback link the full image is {extra:.2f} s faster; the delta saves"
            f" {downloaded['full'] - downloaded['delta']:,} bytes, so it is faster on any link"
            f" slower than {even * 8 / 1e6:,.0f} Mbit/s (break-even from the figures above)"
        )
    else:
        print(f"the delta is {-extra:.2f} s faster even on this loopback link")
    print(
        "Why: the delta carries only the changed blocks (bsdiff4, bz2-compressed) and the"
        " device rebuilds the image from the slot it runs; applying holds the base, the"
        " rebuilt image and the decompressed patch in memory (fwcommon.delta), where the full"
        " download streams into the slot in small chunks. Both images are read back and"
        " checked against the signed SHA-256 before the slot is marked pending."
    )
    if list(delta_files.values()) != [downloaded["delta"]]:
        raise RuntimeError(f"the delta device downloaded {downloaded['delta']} bytes: {lengths}")
    return [
        Check(
            f"delta bytes / full image bytes ({mib(size)}, {CHANGED:.0%} changed)",
            f"{ratio:.4f}",
            f"<= {BYTES_TARGET}",
            ratio <= BYTES_TARGET,
        )
    ]
