"""The server warns when its clock is not synchronized (``clock_sync`` C1-C4; R38, R25).

One-time codes allow one 30-second step of skew: the status, ``fwserver
status`` and ``/metrics`` say when the kernel does not call the system clock
synchronized. The classifier is tested on the kernel's possible answers, the
reader by really asking this machine's kernel (either answer is right here;
what is checked is that it answers), and the status and the CLI with a clock
that states its own synchronization (C4: a test's clock is not the kernel's).
"""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from tests.clocks import FakeClock
from tests.update_server.repo_world import World
from update_server.app import build_services
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.cli_status import OK, WARNINGS
from update_server.clock import system_clock
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.keys import signer_loader
from update_server.observability import metrics
from update_server.observability.clock_sync import (
    STA_UNSYNC,
    TIME_ERROR,
    ClockSync,
    SyncState,
    classify,
    read_kernel,
    sync_of,
)
from update_server.observability.status import server_status

TIME_OK = 0
STA_PLL, STA_NANO = 0x0001, 0x2000
UNSYNCED = ClockSync(SyncState.UNSYNCHRONIZED, max_error_us=16_000_000)
SYNCED = ClockSync(SyncState.SYNCHRONIZED, max_error_us=12_000)


@pytest.mark.parametrize(
    ("result", "status", "expected"),
    [
        (TIME_OK, STA_PLL | STA_NANO, SyncState.SYNCHRONIZED),
        (1, STA_PLL, SyncState.SYNCHRONIZED),  # TIME_INS: a leap second ahead, still in sync
        (TIME_OK, STA_UNSYNC | STA_NANO, SyncState.UNSYNCHRONIZED),
        (TIME_ERROR, STA_PLL, SyncState.UNSYNCHRONIZED),
        (TIME_ERROR, STA_UNSYNC | STA_NANO, SyncState.UNSYNCHRONIZED),  # a container's host
        (-1, 0, SyncState.UNKNOWN),
    ],
)
def test_the_kernels_answer_is_classified_c1_c2(
    result: int, status: int, expected: SyncState
) -> None:
    assert classify(result, status, 500).state is expected


def test_only_an_unsynchronized_or_unknown_clock_is_warned_about_c3() -> None:
    assert SYNCED.warning is None
    assert ClockSync(SyncState.NOT_SYSTEM_CLOCK).warning is None
    assert UNSYNCED.warning is not None
    assert "not synchronized (NTP): one-time codes allow 30 seconds of skew" in UNSYNCED.warning
    unknown = classify(-1, 0)
    assert unknown.warning == "clock: cannot tell whether the system clock is synchronized:" + (
        " adjtimex failed (-1)"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_kernel_really_answers_c1() -> None:
    """Read only (modes 0), so any user may ask; synchronized or not depends on the machine."""
    reading = read_kernel()
    assert reading.state in (SyncState.SYNCHRONIZED, SyncState.UNSYNCHRONIZED), reading
    assert reading.max_error_us is not None and reading.max_error_us >= 0
    kernel = (SyncState.SYNCHRONIZED, SyncState.UNSYNCHRONIZED)
    assert sync_of(system_clock).state in kernel, "the system clock is the kernel's (C4)"


def test_another_clock_is_not_the_kernels_c4(clock: FakeClock) -> None:
    assert sync_of(clock) == ClockSync(SyncState.NOT_SYSTEM_CLOCK)
    assert sync_of(FakeClock(clock.now, synchronized=UNSYNCED)) is UNSYNCED


def test_the_status_warns_of_an_unsynchronized_clock_s9(
    config: ServerConfig, clock: FakeClock
) -> None:
    for stated, warned in ((UNSYNCED, True), (SYNCED, False)):
        services = build_services(
            config,
            clock=FakeClock(clock.now, synchronized=stated),
            signer_loader=signer_loader(config),
        )
        with transaction(services.sessions) as db:
            report = server_status(services, db)
        services.engine.dispose()
        assert report["clock"] == stated.to_json()
        assert (stated.warning in report["warnings"]) is warned


def test_fwserver_status_exits_3_on_an_unsynchronized_clock(
    world: World, config: ServerConfig, clock: FakeClock
) -> None:
    """A monitor running ``fwserver status`` sees the warning and the exit status."""
    for stated, code in ((SYNCED, OK), (UNSYNCED, WARNINGS)):
        result = CliRunner().invoke(
            main,
            ["status", "--data-dir", str(config.data_dir)],
            obj=CommandClock(FakeClock(clock.now, synchronized=stated)),
        )
        assert result.exit_code == code, result.output
        assert ("not synchronized (NTP)" in result.stderr) is (stated is UNSYNCED)


def test_the_metrics_carry_the_clocks_state_p6() -> None:
    def gauge(reading: ClockSync | None) -> list[str]:
        text = metrics.exposition(clock=reading)[0].decode()
        return [line for line in text.splitlines() if line.startswith("fwserver_clock_")]

    assert gauge(SYNCED) == ["fwserver_clock_synchronized 1.0"]
    assert gauge(UNSYNCED) == ["fwserver_clock_synchronized 0.0"]
    assert gauge(classify(-1, 0)) == ["fwserver_clock_synchronized 0.0"]
    assert gauge(ClockSync(SyncState.NOT_SYSTEM_CLOCK)) == []
    assert gauge(None) == []
