"""The fleet simulator's smoke run: 50 devices on the real server (issue 11, R38).

``benchmarks.fleet`` as ``make bench`` runs it, at the size of a test: the
real ``fwserver serve`` (gunicorn, TLS, 127.0.0.1, SQLite), 50 simulated
devices, each with its own Ed25519 key, enrolled with a one-time token and
registered by a signed request, polling with jitter (a signed check-in and
a conditional ``timestamp.json``), then a release published, deployed to
the fleet in waves by one release manager and approved by another with a
fresh code, and taken by every device (its assignment in its poll, its TUF
refresh, the verified download into its other slot, activation, a report
the server acknowledges). No figure is checked here:
speed is the benchmark's business; this checks the simulator and the
protocol it speaks still work, with 0 errors.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.fixtures import People
from benchmarks.fleet import FleetOptions, Leg, SizeResult

DEVICES = 50
OPTIONS = FleetOptions(
    sizes=(DEVICES,),
    databases=("sqlite",),
    rate=200.0,
    seconds=1.0,
    threads=8,
    image_kib=16,
    wave_limit=40.0,
)


def test_fifty_devices_check_in_report_and_take_a_wave_without_error(tmp_path: Path) -> None:
    leg = Leg.start(
        "sqlite", ("", list), options=OPTIONS, workdir=tmp_path, people=People.generate()
    )
    with leg.serving() as running:
        result: SizeResult = running.size(DEVICES, 0)
        devices = running.fleet.devices

    assert (result.checkins.errors, result.wave.errors) == ({}, {}), (
        result.checkins.samples,
        result.wave.samples,
    )
    assert len(devices) == DEVICES
    assert all(device.checkins >= 2 for device in devices), "every device checked in"
    assert all(device.reports >= 2 for device in devices), "a first report, and the wave's"
    assert result.reached == DEVICES
    assert {device.running_version for device in devices} == {"2.0.0"}
    assert result.wave_seconds is not None
