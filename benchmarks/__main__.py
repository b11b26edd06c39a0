"""``python -m benchmarks``: run every benchmark, print figures and targets.

Exits 0 whatever the figures (benchmarks inform, they do not gate), unless
``--strict`` is given, then 1 if any target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import client, delta, fleet, large_image, nginx_layout, scale, server
from benchmarks.fixtures import People
from benchmarks.report import MIB, Check, summary

DEFAULT_SIZES = (10, 1_000, 10_000, 100_000)
ONLY = ("signer", "server", "large-image", "scale", "client", "fleet", "nginx", "delta")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--size-mib", type=int, default=1024, help="size of the large image (default 1024)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="large image: best of this many runs (default 3)"
    )
    parser.add_argument(
        "--releases",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="product line sizes, comma-separated, smallest first is the base"
        " (default 10,1000,10000,100000)",
    )
    parser.add_argument(
        "--flat-max",
        type=int,
        default=10_000,
        help="largest product line also measured without bins (default 10000)",
    )
    parser.add_argument(
        "--adds", type=int, default=5, help="scaling: median of this many adds (default 5)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run 'fwsign verify' on every product line built (slow at 100,000)",
    )
    parser.add_argument(
        "--server-download-mib",
        type=_positive,
        default=100,
        help="server: size of the firmware downloaded through fwserver and nginx (default 100)",
    )
    parser.add_argument(
        "--server-upload-mib",
        type=_positive,
        default=1024,
        help="server: size of the release whose upload memory is measured (default 1024)",
    )
    parser.add_argument(
        "--server-publish-mib",
        type=_positive,
        default=256,
        help="server: size of the release whose publication latency is timed (default 256)",
    )
    parser.add_argument(
        "--wrk-seconds",
        type=_positive,
        default=10,
        help="server: duration of each wrk run on timestamp.json (default 10)",
    )
    parser.add_argument(
        "--wrk-rounds",
        type=_positive,
        default=4,
        help="server: wrk runs per server, the best kept (default 4)",
    )
    parser.add_argument(
        "--wrk-connections",
        type=_positive,
        default=16,
        help="server: wrk keep-alive connections (default 16)",
    )
    parser.add_argument(
        "--client-update-mib",
        type=_positive,
        default=100,
        help="client: size of the firmware fwclient updates to, against curl (default 100)",
    )
    parser.add_argument(
        "--client-releases",
        type=_sizes,
        default=client.ClientOptions.releases,
        help="client: product line sizes for the metadata bytes per update (default 1000,100000)",
    )
    parser.add_argument(
        "--fleet-sizes",
        type=_counts,
        default=fleet.FleetOptions.sizes,
        help="fleet: numbers of devices, comma-separated (default 100,1000,10000)",
    )
    parser.add_argument(
        "--fleet-databases",
        type=_databases,
        default=fleet.FleetOptions.databases,
        help="fleet: sqlite, postgresql or both, comma-separated (default both)",
    )
    parser.add_argument(
        "--fleet-rate",
        type=_positive,
        default=int(fleet.FleetOptions.rate),
        help="fleet: polls per second the whole fleet offers (default 1000)",
    )
    parser.add_argument(
        "--fleet-seconds",
        type=_positive,
        default=int(fleet.FleetOptions.seconds),
        help="fleet: length of the check-in phase at each size (default 10)",
    )
    parser.add_argument(
        "--fleet-wave-seconds",
        type=_positive,
        default=int(fleet.FleetOptions.wave_limit),
        help="fleet: the wave's bound; devices not running the release by then are counted"
        " (default 120)",
    )
    parser.add_argument(
        "--fleet-threads",
        type=_positive,
        default=fleet.FleetOptions.threads,
        help="fleet: polls at a time, one keep-alive TLS connection each (default 16)",
    )
    parser.add_argument(
        "--nginx-seconds",
        type=_positive,
        default=nginx_layout.NginxOptions.seconds,
        help="nginx: length of each wrk and h2load run on the metadata (default 5)",
    )
    parser.add_argument(
        "--nginx-rounds",
        type=_positive,
        default=nginx_layout.NginxOptions.rounds,
        help="nginx: load rounds and updates per client, the best kept (default 3)",
    )
    parser.add_argument(
        "--nginx-update-mib",
        type=_positive,
        default=nginx_layout.NginxOptions.update_mib,
        help="nginx: size of the firmware fwclient updates to through nginx (default 64)",
    )
    parser.add_argument(
        "--nginx-fleet-sizes",
        type=_counts,
        default=(100,),
        help="nginx: fleet sizes run direct and through nginx, on PostgreSQL when installed"
        " (default 100; --fleet-rate, --fleet-seconds, --fleet-threads and"
        " --fleet-wave-seconds apply)",
    )
    parser.add_argument(
        "--delta-image-mib",
        type=_positive,
        default=delta.DeltaOptions.image_mib,
        help="delta: size of the image a release changes by 1%%, delta vs full (default 64)",
    )
    parser.add_argument(
        "--delta-link-mbit",
        type=float,
        default=delta.DeltaOptions.link_mbit,
        help="delta: the thin link both devices also update over, in Mbit/s (default 10)",
    )
    parser.add_argument(
        "--only",
        choices=ONLY,
        help="run only some benchmarks: signer (large-image and scale), server, client,"
        " fleet, nginx (the production layout), delta (delta vs full update), or one of them",
    )
    parser.add_argument("--tmp-dir", type=Path, help="where to build files (default: system temp)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    return parser.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError("product line sizes must be at least 2")
    return sizes


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("fleet sizes must be at least 1")
    return counts


def _databases(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    unknown = [name for name in names if name not in fleet.DATABASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"databases are {' and '.join(fleet.DATABASES)}")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _selected(only: str | None, name: str) -> bool:
    groups = {"signer": ("large-image", "scale"), "server": ("server",)}
    return only is None or only == name or name in groups.get(only, ())


def _fleet_options(
    args: argparse.Namespace,
    sizes: tuple[int, ...],
    databases: tuple[str, ...] = fleet.DATABASES,
) -> fleet.FleetOptions:
    """The fleet simulator's settings from the command line, for ``sizes`` on ``databases``."""
    return fleet.FleetOptions(
        sizes=sizes,
        databases=databases,
        rate=args.fleet_rate,
        seconds=args.fleet_seconds,
        threads=args.fleet_threads,
        wave_limit=args.fleet_wave_seconds,
    )


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, {_cpus()} CPUs")
    people, now = People.generate(), datetime.now(UTC)
    checks: list[Check] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fwsign-bench-", dir=args.tmp_dir) as tmp:
        workdir = Path(tmp)
        if _selected(args.only, "large-image"):
            checks += large_image.run(
                size=args.size_mib * MIB,
                rounds=args.rounds,
                workdir=workdir,
                people=people,
                now=now,
            )
        if _selected(args.only, "scale"):
            checks += scale.run(
                sizes=args.releases,
                flat_max=args.flat_max,
                adds=args.adds,
                verify=args.verify,
                workdir=workdir,
                people=people,
                now=now,
            )
        if _selected(args.only, "server"):
            checks += server.run(
                options=server.ServerOptions(
                    download_mib=args.server_download_mib,
                    upload_mib=args.server_upload_mib,
                    publish_mib=args.server_publish_mib,
                    wrk_seconds=args.wrk_seconds,
                    wrk_rounds=args.wrk_rounds,
                    connections=args.wrk_connections,
                ),
                workdir=workdir,
                people=people,
            )
        if _selected(args.only, "client"):
            checks += client.run(
                options=client.ClientOptions(
                    update_mib=args.client_update_mib,
                    rounds=args.rounds,
                    releases=args.client_releases,
                ),
                workdir=workdir,
                people=people,
            )
        if _selected(args.only, "fleet"):
            checks += fleet.run(
                options=_fleet_options(args, args.fleet_sizes, args.fleet_databases),
                workdir=workdir,
                people=people,
            )
        if _selected(args.only, "nginx"):
            checks += nginx_layout.run(
                options=nginx_layout.NginxOptions(
                    seconds=args.nginx_seconds,
                    rounds=args.nginx_rounds,
                    update_mib=args.nginx_update_mib,
                    fleet=_fleet_options(args, args.nginx_fleet_sizes),
                ),
                workdir=workdir,
                people=people,
            )
        if _selected(args.only, "delta"):
            checks += delta.run(
                options=delta.DeltaOptions(
                    image_mib=args.delta_image_mib,
                    rounds=args.rounds,
                    link_mbit=args.delta_link_mbit,
                ),
                workdir=workdir / "delta",
                people=people,
            )
    measured = [check for check in checks if not isinstance(check, server.Skipped)]
    skipped = [check for check in checks if isinstance(check, server.Skipped)]
    summary(measured)
    for check in skipped:
        print(f"{check.verdict}  {check.name}: {check.measured}")
    print(f"benchmarks ran in {time.perf_counter() - start:.0f} s")
    missed = any(not check.met for check in measured)
    return 1 if args.strict and missed else 0


def _cpus() -> str:
    return str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
