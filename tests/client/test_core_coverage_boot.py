"""What the boot loader decides at the edges of its rules (R24, R29, R33).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): failsafe mode entered twice, an active slot that verifies but was never
committed with no fall-back, and a damaged slot record while the known-bad
list is rebuilt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from client.boot import Outcome, boot, enter_failsafe
from client.state import BootEnv, Mode, StateDir
from tests.client.helpers_state import (
    HEALTHY,
    NOW,
    Release,
    SignedLine,
    corrupt,
    event_types,
    in_service,
    install,
)


@pytest.fixture
def state(tmp_path: Path, line: SignedLine, factory: Release) -> StateDir:
    return in_service(tmp_path / "device", line, factory)


def test_r24_entering_failsafe_mode_again_keeps_it_and_logs_the_new_reason(
    state: StateDir,
) -> None:
    first = enter_failsafe(state, now=NOW, reason="rollback attack")
    env = state.bootenv()
    again = enter_failsafe(state, now=NOW, reason="freeze attack")
    assert (first.outcome, again.outcome) == (Outcome.FAILSAFE, Outcome.FAILSAFE)
    assert state.bootenv() == env and env.mode is Mode.FAILSAFE
    assert event_types(state)[-2:] == ["failsafe_entered", "failsafe_entered"]
    assert "freeze attack" in str(list(state.events.entries())[-1]["message"])


def test_r29_an_active_slot_never_committed_with_no_fall_back_enters_failsafe(
    state: StateDir, update: Release
) -> None:
    """A boot environment edited to run an untried firmware, the other slot decayed."""
    install(state, update)  # sealed in slot b, never committed
    state.write_bootenv(BootEnv(active="b"))
    corrupt(state, "a")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert result.outcome is Outcome.FAILSAFE
    assert "no slot holds verified committed firmware" in result.message
    assert "was never committed here" in result.message
    assert state.bootenv().mode is Mode.FAILSAFE


def test_r33_a_damaged_slot_record_does_not_stop_the_known_bad_list_being_rebuilt(
    state: StateDir,
) -> None:
    """Both damaged: the list is rebuilt from the records that read; the device boots."""
    state.known_bad_file.write_bytes(b"{")
    state.slots_dir.mkdir(parents=True, exist_ok=True)
    state.slot_record_file("b").write_text('{"committed": "yes"}')
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.BOOTED)
    assert state.known_bad() == {}
