"""The production layout's nginx (deploy/nginx) against in-run baselines (issue 12).

One server as in production: a data directory made by ``ServerWorld``
(PostgreSQL, a throwaway one from ``fleet_pg``, when installed; SQLite
otherwise, said in the output), ``trusted_proxy_hops`` 1, the real
``fwserver serve`` (gunicorn, TLS, 127.0.0.1), and in front of it nginx with
``deploy/nginx/fwserver.conf.in`` rendered by ``deploy/nginx/render.py``,
run as Debian's nginx user (``www-data``, when run as root) with the
repository granted to it as deploy/README.md says (``tests.production.nginx``).
Every figure is a ratio against a baseline measured in the same run:

L1 Metadata requests per second: ``timestamp.json`` and the newest
   versioned ``N.targets.json`` through the layout's nginx, against a bare
   nginx serving the same repository directory (same binary, worker
   processes, user, certificate and key; its ``ssl_*`` lines copied from the
   rendered layout, so the TLS settings are the layout's by construction;
   HTTP/2 on its listener too; no access log, no headers, no regular
   expression). Both answer with the same bytes or the run stops. Load:
   ``wrk`` (HTTP/1.1, keep-alive, for ``seconds``) and ``h2load`` (HTTP/2,
   from nghttp2-client, ``SKIP`` without it; 900 requests on each
   connection, under nginx's 1000 a connection: h2load opens no new one when
   nginx ends one, so a timed run would measure that), a warm-up of each, then
   ``rounds`` rounds, the two servers in turn (which goes first alternates),
   the best of each kept. Target layout / bare >= 0.9 for each file and
   protocol: TUF metadata through the layout costs what a static file costs.
   For scale, no target: a third nginx, the layout with ``disable_symlinks
   on from=$document_root`` (the layout's ``on`` opens every directory of
   the repository's path at each request, to refuse a symbolic link
   anywhere in it; ``from=`` checks only the names below the root).
L2 A device update: ``fwclient update`` (its own process, a freshly
   provisioned device: refresh, download, hash, write and fsync the inactive
   slot, read back) through the layout's nginx, against ``curl --cacert CA -o
   FILE`` of the same target through the same nginx; best of ``rounds``
   each, alternated. The access log must show nginx served the firmware
   itself (no upstream). Target fwclient / curl <= 1.0, as the device
   client's benchmark (``client.UPDATE_TARGET``; Python's start-up alone is
   a fifth of a second).
L3 The fleet simulator (``benchmarks.fleet``, unchanged: ``Running.size``)
   on this server, once with the devices talking to gunicorn directly and
   once through nginx, the same devices (enrolled by the direct run), one
   after the other at each size: check-ins/s, p50, p99, errors, the wave.
   The fleet comes from one address, so nginx's per-source device limit is
   raised for it (``DEVICE_RATE``/``DEVICE_BURST``, the setting the template
   says to size for the largest site behind one NAT) and printed. No speed
   target (reported, with the ratios); errors through nginx: 0.

The machine may be shared: the 1-minute load average is printed with each
figure. Every wait is bounded; every process started here is stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

from benchmarks import fleet, fleet_pg
from benchmarks.client import UPDATE_TARGET, _fwclient, _fwclient_env, _provision
from benchmarks.fixtures import People, write_image
from benchmarks.fleet_device import Link, SimDevice
from benchmarks.report import MIB, Check, heading, mib, table
from benchmarks.server import Skipped
from benchmarks.server_procs import (
    ServerStartError,
    Service,
    free_port,
    fwserver_command,
    gunicorn_server,
    nginx_missing,
    stop,
)
from benchmarks.server_release import Publication, ServerWorld
from fwcommon.files import atomic_write
from signer import layout
from tests.production.nginx import NGINX_USER, grant_repository, prepare, renderer
from tests.unprivileged import owner_of
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.tls import CA_CERT_FILE, CERT_FILE, KEY_FILE, TLS_DIR

RPS_TARGET = 0.9
SERVER_LABELS = {
    "layout": "layout",
    "from root": "layout, symlinks checked from root",
    "bare": "bare",
}
#: The layout's symbolic-link check, and the variant that checks only below the root.
SYMLINKS = "disable_symlinks on;"
SYMLINKS_FROM_ROOT = "disable_symlinks on from=$document_root;"
TIMESTAMP = "/metadata/timestamp.json"
#: The 64 MiB release: below the fleet's waves (2.N.0), above the devices' 1.0.0.
UPDATE_VERSION = "1.5.0"
START_TIMEOUT = 30.0
LOAD_TIMEOUT = 60
#: HTTP/2 requests h2load sends on each connection in one run: under nginx's
#: 1000 a connection (keepalive_requests), so no connection is ended under it.
H2_REQUESTS_PER_CONNECTION = 900
PROCESS_TIMEOUT = 300

#: Stand-ins in a site's configuration for what each nginx gets at its start:
#: its address and its own directory. Each is one nginx word, as render.py wants.
LISTEN_MARK = "listen.invalid:1"
DIRECTORY_MARK = "/directory.invalid"

#: The baseline: the same repository as static files and nothing else; the
#: layout's own ssl_* lines go where TLS_LINES is.
BARE_SITE = """\
server {
    listen LISTEN_MARK ssl http2;
    server_name localhost;
    access_log off;
TLS_LINES
    types { application/json json; }
    default_type application/octet-stream;
    root ROOT_DIRECTORY;
    location /metadata/ { }
    location /targets/ { }
}
"""


@dataclass(frozen=True)
class NginxOptions:
    """Durations, rounds and sizes; every load loop is bounded by them."""

    seconds: int = 5
    warmup_seconds: int = 2
    rounds: int = 3
    connections: int = 16
    #: HTTP/2 streams at a time on each connection (h2load -m).
    streams: int = 10
    #: nginx worker processes, the layout's and the bare one's alike.
    workers: int = 2
    update_mib: int = 64
    fleet: fleet.FleetOptions = field(
        default_factory=lambda: fleet.FleetOptions(sizes=(100,), wave_limit=60.0)
    )


@dataclass(frozen=True)
class Load:
    """One load-generator run against one server."""

    per_second: float
    requests: int
    #: Socket errors, failed requests and answers other than 2xx.
    failed: int
    load: float


@dataclass(frozen=True)
class Nginx:
    """A running nginx: where it answers, its master, its directory (logs)."""

    service: Service
    directory: Path

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"


def run(*, options: NginxOptions, workdir: Path, people: People) -> list[Check]:
    heading("production layout: nginx (deploy/nginx) in front of fwserver serve")
    reason = _missing()
    if reason is not None:
        print(f"SKIP: {reason}")
        names = ("layout nginx metadata req/s", "fwclient update through nginx", "fleet via nginx")
        return [Skipped(name, reason, "", met=False) for name in names]
    started = time.perf_counter()
    checks: list[Check] = []
    with _database(workdir) as (database, url, database_pids):
        world = ServerWorld(workdir / "nginx-layout", people, database_url=url)
        _trust_one_proxy(world.data_dir)
        write_image(world.image_path(UPDATE_VERSION), size=options.update_mib * MIB)
        serve = fwserver_command("serve", "--data-dir", str(world.data_dir), "--port", "0")
        with gunicorn_server(
            "layout-gunicorn", serve, logdir=world.workdir, workers=world.config.workers
        ) as gunicorn:
            update = world.publish(gunicorn, world.new_engineer(gunicorn), UPDATE_VERSION)
            grant_repository(world.data_dir)
            fleet_rate = int(options.fleet.rate)
            site = _layout_site(world, gunicorn, device_rate=4 * fleet_rate)
            bare = _bare_site(site, world.config.repository_dir)
            with contextlib.ExitStack() as stack:
                ours = stack.enter_context(_nginx("layout", site, world, options.workers))
                baseline = stack.enter_context(_nginx("bare", bare, world, options.workers))
                servers = {"layout": ours.service, "bare": baseline.service}
                if SYMLINKS in site:
                    variant = site.replace(SYMLINKS, SYMLINKS_FROM_ROOT)
                    from_root = _nginx("from-root", variant, world, options.workers)
                    servers["from root"] = stack.enter_context(from_root).service
                print(
                    f"set up in {time.perf_counter() - started:.1f} s on {database};"
                    f" gunicorn {gunicorn.url} ({len(gunicorn.workers())} workers);"
                    f" layout nginx {ours.url}, bare nginx {baseline.url}"
                    f" ({options.workers} workers each, as {_nginx_user_name()});"
                    f" load average {_load():.1f}"
                )
                checks += _metadata_rps(servers, world, options)
                ours.access_log.write_bytes(b"")  # L1's lines: not read again
                checks += _update(ours, world, update, options)
                checks += _fleet(world, gunicorn, ours, (database, database_pids), options)
    print(f"\nproduction layout benchmarks ran in {time.perf_counter() - started:.0f} s")
    return checks


def _missing() -> str | None:
    reason = nginx_missing() or (None if shutil.which("wrk") else "wrk is not installed")
    if reason is None and os.geteuid() == 0:
        try:
            pwd.getpwnam(NGINX_USER)
        except KeyError:
            reason = f"running as root and there is no {NGINX_USER} user (apt-get install nginx)"
    return reason


@contextlib.contextmanager
def _database(workdir: Path) -> Iterator[tuple[str, str, Callable[[], list[int]]]]:
    """(name, SQLAlchemy URL, the database server's processes): PostgreSQL when installed."""
    reason = fleet_pg.missing()
    if reason is not None:
        print(f"PostgreSQL not used ({reason}): SQLite, the embedded default")
        yield "sqlite", "", list
        return
    with fleet_pg.postgres(workdir) as server:
        yield "postgresql", server.url, server.processes


def _trust_one_proxy(data_dir: Path) -> None:
    """``trusted_proxy_hops`` 1 in server.json (nginx alone in front), as the operator's edit."""
    with owner_of(data_dir):
        config = ServerConfig.load(data_dir).with_changes(trusted_proxy_hops=1)
        body = json.dumps(config.to_file_json(), indent=2).encode()
        atomic_write(data_dir / CONFIG_FILE, body, mode=0o600)


def _nginx_user() -> pwd.struct_passwd | None:
    return pwd.getpwnam(NGINX_USER) if os.geteuid() == 0 else None


def _nginx_user_name() -> str:
    user = _nginx_user()
    return user.pw_name if user is not None else pwd.getpwuid(os.geteuid()).pw_name


# --- the two nginx configurations ----------------------------------------------------------


def _layout_site(world: ServerWorld, gunicorn: Service, *, device_rate: int) -> str:
    """deploy/nginx's template rendered by its renderer, address and directory left marked."""
    values = {
        "SERVER_NAME": "localhost",
        "LISTEN": LISTEN_MARK,
        "CERTIFICATE": f"{DIRECTORY_MARK}/site.crt",
        "CERTIFICATE_KEY": f"{DIRECTORY_MARK}/site.key",
        "UPSTREAM_CA": f"{DIRECTORY_MARK}/ca.crt",
        "ACCESS_LOG": f"{DIRECTORY_MARK}/access.log",
        "REPOSITORY": str(world.config.repository_dir),
        "UPSTREAM": gunicorn.url.removeprefix("https://"),
        "DEVICE_RATE": f"{device_rate}r/s",
        "DEVICE_BURST": str(device_rate),
    }
    rendered: str = renderer().render(values)
    return rendered


def _bare_site(layout_site: str, root: Path) -> str:
    """The baseline's server block, with the layout's ``ssl_*`` lines (L1)."""
    tls = [line for line in layout_site.splitlines() if line.strip().startswith("ssl_")]
    if not any("ssl_protocols" in line for line in tls):
        raise RuntimeError("the layout's configuration has no ssl_protocols: benchmark invalid")
    site = BARE_SITE.replace("LISTEN_MARK", LISTEN_MARK).replace("TLS_LINES", "\n".join(tls))
    return site.replace("ROOT_DIRECTORY", str(root))


@contextlib.contextmanager
def _nginx(name: str, site: str, world: ServerWorld, workers: int) -> Iterator[Nginx]:
    """nginx with ``site`` (its address and directory filled in) until the block ends.

    Its directory holds copies of the server's certificate, key and CA (nginx's
    user may not read the data directory's), its logs and temporary files. The
    port is found by binding port 0 and closing it; a failed start is tried
    again on another (three times).
    """
    user = _nginx_user()
    directory = Path(tempfile.mkdtemp(prefix=f"fwbench-nginx-{name}-"))
    try:
        (directory / "temp").mkdir()
        tls = world.data_dir / TLS_DIR
        copies = ((CERT_FILE, "site.crt"), (KEY_FILE, "site.key"), (CA_CERT_FILE, "ca.crt"))
        for source, copy in copies:
            shutil.copyfile(tls / source, directory / copy)
            (directory / copy).chmod(0o600)
        ca = directory / "ca.crt"
        binary = shutil.which("nginx") or "nginx"
        last = ""
        for _attempt in range(3):
            port = free_port()
            filled = site.replace(LISTEN_MARK, f"127.0.0.1:{port}")
            filled = filled.replace(DIRECTORY_MARK, str(directory))
            (directory / "site.conf").write_text(filled)
            argv = prepare(
                directory,
                "site.conf",
                user,
                binary=binary,
                workers=workers,
                connections=1024,
                level="warn",
            )
            with (directory / "stderr.log").open("wb") as stderr:
                process = subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
                )
            service = Service(
                f"nginx-{name}", f"https://127.0.0.1:{port}", ca, process, directory / "error.log"
            )
            try:
                if _answers(service, TIMESTAMP, workers):
                    yield Nginx(service, directory)
                    return
                logs = [directory / "stderr.log", directory / "error.log"]
                last = " ".join(p.read_text()[-500:] for p in logs if p.is_file())
            finally:
                stop(process)
        raise ServerStartError(f"nginx ({name}) did not start: {last}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _answers(service: Service, path: str, workers: int) -> bool:
    """Whether ``service`` answers 200 on ``path`` with its workers up, within the timeout."""
    deadline = time.monotonic() + START_TIMEOUT
    with service.pool() as pool:
        while time.monotonic() < deadline and service.process.poll() is None:
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                response = pool.request("GET", f"{service.url}{path}")
                if response.status == 200 and len(service.workers()) >= workers:
                    return True
            time.sleep(0.05)
    return False


# --- L1: metadata requests per second -------------------------------------------------------


def _metadata_rps(
    servers: dict[str, Service], world: ServerWorld, options: NginxOptions
) -> list[Check]:
    """L1 over ``servers``: "layout" and "bare", and "from root" when it could be made."""
    paths = [TIMESTAMP, _newest_targets(world.config.repository_dir)]
    tools = ["wrk"] + (["h2load"] if shutil.which("h2load") else [])
    heading(
        f"metadata requests/s: layout nginx vs bare nginx, {options.connections} keep-alive"
        f" connections, {options.seconds} s runs, best of {options.rounds}"
        f" (h2load: {options.streams} streams per connection)"
    )
    for path in paths:
        _same_bytes(list(servers.values()), path)
    for tool in tools:
        for server in servers.values():
            _generate(tool, server, TIMESTAMP, options.warmup_seconds, options)
    results: dict[tuple[str, str, str], list[Load]] = {}
    for round_ in range(options.rounds):
        order = list(servers.items()) if round_ % 2 == 0 else list(servers.items())[::-1]
        for path in paths:
            for tool in tools:
                for name, server in order:
                    load = _generate(tool, server, path, options.seconds, options)
                    results.setdefault((path, tool, name), []).append(load)
    rows, checks = [], []
    protocols = {"wrk": "HTTP/1.1 (wrk)", "h2load": "HTTP/2 (h2load)"}
    for path in paths:
        file = path.removeprefix("/metadata/")
        for tool in tools:
            runs = {name: results[(path, tool, name)] for name in servers}
            best = {name: max(r.per_second for r in loads) for name, loads in runs.items()}
            for name, loads in runs.items():
                rows.append(
                    (
                        file,
                        protocols[tool],
                        SERVER_LABELS[name],
                        f"{best[name]:.0f}",
                        f"{best[name] / best['bare']:.2f}",
                        " ".join(f"{r.per_second:.0f}" for r in loads),
                        str(sum(r.failed for r in loads)),
                        " ".join(f"{r.load:.1f}" for r in loads),
                    )
                )
            ratio = best["layout"] / best["bare"]
            failed = sum(r.failed for loads in runs.values() for r in loads)
            checks.append(
                Check(
                    f"{file} req/s layout nginx / bare nginx, {protocols[tool]}",
                    f"{ratio:.2f} ({best['layout']:.0f}/s vs {best['bare']:.0f}/s,"
                    f" {failed} failed)",
                    f">= {RPS_TARGET}, none failed",
                    ratio >= RPS_TARGET and failed == 0,
                )
            )
    table(
        ("file", "protocol", "server", "best req/s", "x bare", "all runs", "failed", "load avg"),
        rows,
    )
    if "h2load" not in tools:
        print("SKIP HTTP/2: h2load is not installed (apt-get install nghttp2-client)")
        checks.append(
            Skipped("metadata req/s over HTTP/2", "h2load is not installed", "", met=False)
        )
    print(
        "the layout's nginx also writes a JSON access line per request, matches the names by"
        " regular expression, adds five headers, and with 'disable_symlinks on' opens every"
        f" directory of {world.config.repository_dir} (no symbolic link) at each request;"
        " the bare one does none of these. 'from root': the layout with 'disable_symlinks on"
        " from=$document_root' (only the repository's own names checked), for scale"
    )
    return checks


def _newest_targets(repository: Path) -> str:
    versions = [
        int(match.group(1))
        for file in (repository / "metadata").iterdir()
        if (match := re.fullmatch(r"([0-9]+)\.targets\.json", file.name))
    ]
    if not versions:
        raise RuntimeError("the repository has no versioned targets.json: benchmark invalid")
    return f"/metadata/{max(versions)}.targets.json"


def _same_bytes(servers: Sequence[Service], path: str) -> None:
    bodies = set()
    for server in servers:
        with server.pool() as pool:
            response = pool.request("GET", f"{server.url}{path}")
        if response.status != 200:
            raise RuntimeError(f"{server.name}: GET {path} answered {response.status}")
        bodies.add(response.data)
    if len(bodies) != 1:
        raise RuntimeError(f"the two nginx answer {path} with different bytes: benchmark invalid")


def _generate(tool: str, server: Service, path: str, seconds: int, options: NginxOptions) -> Load:
    url = f"{server.url}{path}"
    threads = str(min(2, options.connections))
    connections = str(options.connections)
    if tool == "wrk":
        command = ["wrk", "-t", threads, "-c", connections, "-d", f"{seconds}s"]
        command += ["--timeout", "5s", url]
    else:
        # A number of requests, not a duration: nginx ends an HTTP/2 connection
        # after 1000 requests (keepalive_requests, both configurations alike),
        # and h2load opens no new one, so a timed run measures that end.
        total = options.connections * H2_REQUESTS_PER_CONNECTION * seconds // options.seconds
        command = ["h2load", "-t", threads, "-c", connections, "-m", str(options.streams)]
        command += ["-n", str(max(total, options.connections)), url]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + LOAD_TIMEOUT, check=False
    )
    parse = _parse_wrk if tool == "wrk" else _parse_h2load
    load = parse(result.stdout) if result.returncode == 0 else None
    if load is None:
        raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return load


def _parse_wrk(out: str) -> Load | None:
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    if rate is None or requests is None:
        return None
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = sum(map(int, errors.groups())) if errors else 0
    failed += int(non_2xx.group(1)) if non_2xx else 0
    return Load(float(rate.group(1)), int(requests.group(1)), failed, _load())


def _parse_h2load(out: str) -> Load | None:
    rate = re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", out)
    counts = re.search(
        r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed,"
        r" (\d+) errored, (\d+) timeout",
        out,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if rate is None or counts is None or codes is None or "Application protocol: h2" not in out:
        return None  # not HTTP/2, or not h2load's report: never counted as a figure
    failed = sum(int(n) for n in counts.groups()[2:]) + sum(int(n) for n in codes.groups()[1:])
    return Load(float(rate.group(1)), int(counts.group(2)), failed, _load())


# --- L2: a device update through nginx vs curl ----------------------------------------------


def _update(
    ours: Nginx, world: ServerWorld, update: Publication, options: NginxOptions
) -> list[Check]:
    rounds = options.rounds
    heading(
        f"device update of a {mib(update.length)} firmware through the layout's nginx:"
        f" fwclient update vs curl to disk (whole processes, wall clock, best of {rounds})"
    )
    devices = world.workdir / "devices"
    env = _fwclient_env(devices)
    url = ours.url + update.url_path
    ca = ours.service.ca
    times: dict[str, list[float]] = {"fwclient update": [], "curl --cacert CA -o FILE": []}
    loads: list[float] = []
    for round_ in range(rounds):
        state = devices / f"update-{round_}"
        _provision(world, state, f"pump-n{round_}", env)
        runs = [("fwclient update", state), ("curl --cacert CA -o FILE", devices / "curl.bin")]
        for label, where in runs if round_ % 2 == 0 else runs[::-1]:
            if label == "fwclient update":
                times[label].append(_fwclient_update(ours, where, env))
            else:
                times[label].append(_curl(url, ca, where, update))
        loads.append(_load())
        shutil.rmtree(state)
    served = _served_by_nginx(ours, update.url_path)
    if served < 2 * rounds:
        raise RuntimeError(
            f"nginx's access log shows {served} downloads of {update.url_path} it served itself,"
            f" {2 * rounds} were made: benchmark invalid"
        )
    best = {label: min(runs) for label, runs in times.items()}
    table(
        ("client, through nginx", "best", "throughput", "all runs (s)"),
        [
            (
                label,
                f"{best[label]:.3f} s",
                f"{update.length / MIB / best[label]:.0f} MiB/s",
                " ".join(f"{t:.3f}" for t in runs),
            )
            for label, runs in times.items()
        ],
    )
    ratio = best["fwclient update"] / best["curl --cacert CA -o FILE"]
    startup = min(_fwclient("--help", env=env)[0] for _round in range(rounds))
    print(
        f"fwclient update / curl: {ratio:.2f}; fwclient's Python start-up and imports"
        f" (fwclient --help) {startup:.3f} s of it; served by nginx itself {served} times (access"
        f" log, no upstream); load average {' '.join(f'{v:.1f}' for v in loads)}"
    )
    return [
        Check(
            f"fwclient update / curl through the layout's nginx ({mib(update.length)}, time)",
            f"{ratio:.2f}",
            f"<= {UPDATE_TARGET}",
            ratio <= UPDATE_TARGET,
        )
    ]


def _fwclient_update(ours: Nginx, state: Path, env: dict[str, str]) -> float:
    argv = ["update", "--state", str(state), "--server", ours.url, "--ca", str(ours.service.ca)]
    seconds, result = _fwclient(*argv, env=env)
    if result.returncode != 0 or "pending a reboot" not in result.stdout:
        raise RuntimeError(f"fwclient update through nginx failed: {result.stdout} {result.stderr}")
    return seconds


def _curl(url: str, ca: Path, out: Path, update: Publication) -> float:
    command = ["curl", "--silent", "--show-error", "--fail", "--cacert", str(ca)]
    command += ["--max-time", str(PROCESS_TIMEOUT), "-o", str(out), url]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, timeout=PROCESS_TIMEOUT, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or _sha256(out) != update.sha256:
        raise RuntimeError(f"curl through nginx failed or got other bytes: {done.stderr!r}")
    out.unlink()
    return elapsed


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _served_by_nginx(ours: Nginx, url_path: str) -> int:
    """Complete downloads of ``url_path`` the access log shows nginx answered itself."""
    count = 0
    for line in ours.access_log.read_text().splitlines():
        entry = json.loads(line)
        if entry["uri"] == url_path and entry["status"] == 200 and entry["upstream"] == "":
            count += 1
    return count


# --- L3: the fleet simulator, direct and through nginx --------------------------------------


def _fleet(
    world: ServerWorld,
    gunicorn: Service,
    ours: Nginx,
    database: tuple[str, Callable[[], list[int]]],
    options: NginxOptions,
) -> list[Check]:
    name, database_pids = database
    settings = options.fleet
    device_rate = 4 * int(settings.rate)
    heading(
        f"fleet simulator on {name}: the same devices direct to gunicorn, then through"
        f" nginx (its device limit per source raised to {device_rate} r/s, burst {device_rate}:"
        " the whole fleet comes from 127.0.0.1)"
    )
    root = layout.root_version_file(world.offline, 1).read_bytes()
    leg = fleet.Leg(name, world, database_pids, settings, world.workdir / "fleet")
    rng = random.Random(settings.seed)  # noqa: S311 - jitter, not a secret
    devices: list[SimDevice] = []
    fleets = {
        "direct": fleet.Fleet(
            Link.open(server=gunicorn.url, ca=gunicorn.ca, root=root, connections=settings.threads),
            world.workdir / "fleet-devices",
            rng,
            settings.threads,
            devices,
        ),
        "nginx": fleet.Fleet(
            Link.open(server=ours.url, ca=gunicorn.ca, root=root, connections=settings.threads),
            world.workdir / "fleet-devices",
            rng,
            settings.threads,
            devices,
        ),
    }
    results: list[tuple[str, fleet.SizeResult]] = []
    number = 0
    for size in settings.sizes:
        for path, devices_fleet in fleets.items():  # direct first: it enrols the new devices
            result = fleet.Running(leg, gunicorn, devices_fleet).size(size, number)
            number += 1
            results.append((path, result))
            print(f"  {path} N={size:,}: {_summary(result, settings)}", flush=True)
    return _fleet_report(results, settings)


def _checkin(result: fleet.SizeResult) -> fleet.Latency:
    return result.checkins.latencies.get("checkin", fleet.Latency.of([]))


def _rate(result: fleet.SizeResult) -> float:
    seconds = result.checkins.seconds
    return _checkin(result).count / seconds if seconds else 0.0


def _errors(result: fleet.SizeResult) -> int:
    return (
        sum(result.enrolment.errors.values())
        + result.checkins.error_count
        + result.wave.error_count
    )


def _summary(result: fleet.SizeResult, settings: fleet.FleetOptions) -> str:
    checkin = _checkin(result)
    wave = (
        f"{result.wave_seconds:.1f} s"
        if result.wave_seconds is not None
        else f"> {settings.wave_limit:.0f} s"
    )
    return (
        f"{_rate(result):.0f} check-ins/s, p50 {checkin.p50 * 1000:.1f} ms, p99"
        f" {checkin.p99 * 1000:.1f} ms, {_errors(result)} errors, {result.checkins.not_run} late,"
        f" wave {wave} ({result.reached}/{result.devices}), load avg {result.load:.1f}"
    )


def _fleet_report(
    results: Sequence[tuple[str, fleet.SizeResult]], settings: fleet.FleetOptions
) -> list[Check]:
    rows = []
    checks: list[Check] = []
    for path, r in results:
        checkin, stamp = _checkin(r), r.checkins.latencies.get("timestamp", fleet.Latency.of([]))
        polls = max(1, r.checkins.polls)
        rows.append(
            (
                path,
                f"{r.devices:,}",
                f"{_rate(r):.0f}",
                f"{checkin.p50 * 1000:.1f} ms",
                f"{checkin.p99 * 1000:.1f} ms",
                f"{stamp.p99 * 1000:.1f} ms",
                str(_errors(r)),
                str(r.checkins.not_run),
                f"{(r.usage.server_cpu + r.usage.database_cpu) / polls * 1000:.1f} ms",
                f"{r.wave_seconds:.1f} s" if r.wave_seconds is not None else "-",
                f"{r.reached:,}/{r.devices:,}",
                f"{r.load:.1f}",
            )
        )
        for kind, count in {**r.checkins.errors, **r.wave.errors}.items():
            sample = r.checkins.samples.get(kind) or r.wave.samples.get(kind, "")
            print(f"  {path} N={r.devices}: {count} {kind} errors, e.g. {sample}")
    heading(f"fleet: direct to gunicorn vs through nginx (offered {settings.rate:.0f} polls/s)")
    table(
        (
            "path",
            "N",
            "check-ins/s",
            "p50",
            "p99",
            "ts p99",
            "errors",
            "late",
            "gunicorn+db CPU/poll",
            "wave",
            "reached",
            "load avg",
        ),
        rows,
    )
    by_size: dict[int, dict[str, fleet.SizeResult]] = {}
    for path, r in results:
        by_size.setdefault(r.devices, {})[path] = r
    for size, pair in by_size.items():
        direct, through = pair["direct"], pair["nginx"]
        rate_ratio = _rate(through) / _rate(direct) if _rate(direct) else float("nan")
        print(
            f"N={size:,}: check-ins/s nginx / direct {rate_ratio:.2f}; p50"
            f" {_checkin(through).p50 / _checkin(direct).p50:.2f} x, p99"
            f" {_checkin(through).p99 / _checkin(direct).p99:.2f} x the direct path's"
        )
        errors = _errors(through)
        checks.append(
            Check(
                f"fleet through nginx N={size:,}: errors",
                f"{errors} errors, {through.reached}/{size} reached by the wave;"
                f" check-ins/s nginx / direct {rate_ratio:.2f}",
                "0 errors, every device reached",
                errors == 0 and through.reached == size,
            )
        )
    return checks


def _load() -> float:
    return os.getloadavg()[0]
