"""A device on a withdrawn release says so from signed metadata alone, and leaves it (R56, R57).

Threat (issue 11): a compromised server keeps a device on a withdrawn
release by assigning it nothing, while the release's successor is signed.
Policy rule 7 alone saw a newer release and stayed quiet; with the
running slot's own path looked up in the verified metadata (ngclient's
walk to the one role delegated for it), the device reports
``running_not_listed`` whatever the directive says, and still installs a
successor the server offers. A superseded release, still signed in its
bin while the line lists only its current releases, stays quiet.

The pure rule first (``policy.choose`` with the lookup's answer), then the
client against the in-memory repository (``tests.client.sim``), flat and
in hashed bins.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.boot import boot
from client.directive import (
    NEWEST,
    STANDALONE,
    Assignment,
    Directive,
    Install,
    Selection,
    ServerMode,
)
from client.events import EventType
from client.policy import RunningEntry
from client.state import Floor, StateDir
from client.update import Outcome, update
from tests.client.sim import MODEL, Sim, event_types, image_bytes, provision, sha256
from tests.client.test_policy import candidate, choose
from tests.client.tuf_repo import firmware_custom

RUNNING = Floor(2, "2.0.0")
NOTHING_ASSIGNED = Selection(Install.ASSIGNED)
RUNNING_PATH = f"{MODEL}/fw-2.0.0.bin"
RUNNING_SHA256 = hashlib.sha256(b"2.0.0").hexdigest()  # tests.client.test_policy.candidate's


# -- the rule -----------------------------------------------------------------------------


def test_rule_7_a_running_path_signed_no_more_is_reported_though_a_successor_is_signed() -> None:
    """R56/R57: the successor is signed but not assigned; the lookup finds nothing at the path."""
    choice = choose(
        [candidate("2.1.0", 2)],
        hardware_model=MODEL,
        floor=RUNNING,
        running_sha256=RUNNING_SHA256,
        running_entry=RunningEntry(RUNNING_PATH, None),
        selection=NOTHING_ASSIGNED,
    )
    assert choice.unlisted and choice.withdrawn == RUNNING_PATH
    assert choice.unassigned and choice.chosen is None


def test_rule_7_without_the_lookup_a_signed_successor_hid_the_withdrawal() -> None:
    """The gap this closes: with no lookup, a newer signed release accounts for the running one."""
    choice = choose(
        [candidate("2.1.0", 2)],
        hardware_model=MODEL,
        floor=RUNNING,
        running_sha256=RUNNING_SHA256,
        selection=NOTHING_ASSIGNED,
    )
    assert not choice.unlisted and choice.withdrawn is None


def test_rule_7_a_superseded_release_still_signed_in_its_bin_is_quiet() -> None:
    """A line lists only its current releases: the lookup finds the running one in its bin."""
    choice = choose(
        [candidate("2.1.0", 2)],
        hardware_model=MODEL,
        floor=RUNNING,
        running_sha256=RUNNING_SHA256,
        running_entry=RunningEntry(RUNNING_PATH, candidate("2.0.0", 2)),
        selection=NOTHING_ASSIGNED,
    )
    assert not choice.unlisted and choice.withdrawn is None and not choice.contradicted


def test_rule_7_the_path_signed_for_another_model_or_version_counts_as_withdrawn() -> None:
    """Signed no more *as the running release for this model* is withdrawn for this device."""
    for entry in (
        candidate("2.0.0", 2, models=("other-model",)),
        candidate("2.0.1", 2),
    ):
        choice = choose(
            [candidate("2.1.0", 2)],
            hardware_model=MODEL,
            floor=RUNNING,
            running_sha256=RUNNING_SHA256,
            running_entry=RunningEntry(RUNNING_PATH, entry),
        )
        assert choice.unlisted and choice.withdrawn == RUNNING_PATH


def test_rule_6_the_running_path_signed_with_other_bytes_in_its_bin_r29() -> None:
    """R29: found by the lookup with another SHA-256 than the running slot's: integrity failure."""
    choice = choose(
        [candidate("2.1.0", 2)],
        hardware_model=MODEL,
        floor=RUNNING,
        running_sha256="cd" * 32,
        running_entry=RunningEntry(RUNNING_PATH, candidate("2.0.0", 2)),
        selection=NOTHING_ASSIGNED,
    )
    assert [r.event for r in choice.contradicted] == [EventType.INTEGRITY_FAILURE]
    assert choice.contradicted[0].candidate.path == RUNNING_PATH
    assert not choice.unlisted


def test_rule_7_a_withdrawn_release_still_takes_the_offered_successor() -> None:
    """Client.directive P7: the offer (deployment null) is chosen, and the withdrawal reported."""
    successor = candidate("2.1.0", 2)
    offer = Assignment(None, successor.path, successor.sha256, "2.1.0")
    choice = choose(
        [successor],
        hardware_model=MODEL,
        floor=RUNNING,
        running_sha256=RUNNING_SHA256,
        running_entry=RunningEntry(RUNNING_PATH, None),
        selection=Selection(Install.ASSIGNED, offer),
    )
    assert choice.chosen == successor
    assert choice.unlisted and choice.withdrawn == RUNNING_PATH


def test_rule_7_newest_fleet_reports_the_withdrawal_and_takes_the_successor() -> None:
    successor = candidate("2.1.0", 2)
    choice = choose(
        [successor],
        hardware_model=MODEL,
        floor=RUNNING,
        running_sha256=RUNNING_SHA256,
        running_entry=RunningEntry(RUNNING_PATH, None),
        selection=NEWEST,
    )
    assert choice.chosen == successor and choice.withdrawn == RUNNING_PATH


# -- the client ---------------------------------------------------------------------------

ASSIGNED_NOTHING = Directive(ServerMode.NORMAL, NOTHING_ASSIGNED, None)


@pytest.fixture(params=[None, 3], ids=["flat", "bins"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim", bin_bits=request.param)


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    """A device running 2.0.0 (security version 2), committed."""
    state = provision(tmp_path / "device", sim)
    sim.release("2.0.0", 2)
    assert update(state, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    assert state.floor() == RUNNING
    return state


def withdraw_running_and_sign_successor(sim: Sim) -> str:
    """2.1.0 signed, 2.0.0 withdrawn (from the line, and from its bin if the line has bins)."""
    successor = sim.release("2.1.0", 3, publish=False)
    sim.repo.remove_target(MODEL, RUNNING_PATH, "alice", "bob")
    sim.publish()
    return successor


def slots(state: StateDir) -> dict[str, object]:
    return {slot: state.slot_record(slot) for slot in ("a", "b")}


def test_withdrawn_with_a_successor_signed_and_nothing_assigned_is_reported(
    device: StateDir, sim: Sim
) -> None:
    """R56/R57: a server assigning nothing cannot keep the device quiet on a withdrawn release."""
    withdraw_running_and_sign_successor(sim)
    before = slots(device)
    result = update(device, sim.remote(), directive=ASSIGNED_NOTHING)
    assert (result.outcome, result.event) == (Outcome.REFUSED, EventType.RUNNING_NOT_LISTED)
    assert RUNNING_PATH in result.message and "withdrawn" in result.message
    assert event_types(device)[-1] == "running_not_listed"
    assert "no_assignment" not in event_types(device)
    entry = list(device.events.entries())[-1]
    assert entry["detail"]["target"] == RUNNING_PATH
    assert slots(device) == before

    # Once per poll: the next poll reports it again, once.
    update(device, sim.remote(), directive=ASSIGNED_NOTHING)
    assert event_types(device).count("running_not_listed") == 2


def test_a_superseded_release_still_signed_stays_quiet(device: StateDir, sim: Sim) -> None:
    """2.1.0 supersedes 2.0.0, which stays signed (in its bin when the line has bins)."""
    sim.release("2.1.0", 3)
    result = update(device, sim.remote(), directive=ASSIGNED_NOTHING)
    assert (result.outcome, result.event) == (Outcome.UP_TO_DATE, EventType.NO_ASSIGNMENT)
    assert "running_not_listed" not in event_types(device)


def test_withdrawn_and_the_successor_offered_without_a_deployment_installs_it(
    device: StateDir, sim: Sim
) -> None:
    """Client.directive P7: the offer to leave the withdrawn release is installed, and reported."""
    successor = withdraw_running_and_sign_successor(sim)
    offer = Assignment(None, successor, sha256(sim.images[successor]), "2.1.0")
    directive = Directive(ServerMode.NORMAL, Selection(Install.ASSIGNED, offer), None)
    result = update(device, sim.remote(), directive=directive)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert event_types(device)[-2:] == ["running_not_listed", "installed"]
    boot(device, health_check=None, now=datetime.now(UTC))
    assert device.floor() == Floor(3, "2.1.0")

    # Left: the running release is signed again, so the next poll is quiet.
    result = update(device, sim.remote(), directive=ASSIGNED_NOTHING)
    assert result.event is EventType.NO_ASSIGNMENT
    assert event_types(device)[-1] == "no_assignment"


def test_the_running_path_re_signed_with_other_bytes_in_its_bin_is_an_integrity_failure_r29(
    tmp_path: Path,
) -> None:
    """R29 through the lookup: superseded, so only its bin lists it, and with other bytes."""
    sim = Sim(tmp_path / "sim", bin_bits=3)
    state = provision(tmp_path / "device", sim)
    sim.release("2.0.0", 2)
    assert update(state, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    sim.release("2.1.0", 3, publish=False)
    other = image_bytes("2.0.0-other", 40_000)
    sim.repo.add_target(
        MODEL, RUNNING_PATH, other, firmware_custom("2.0.0", 2, [MODEL]), "alice", "bob"
    )
    sim.publish()
    result = update(state, sim.remote(), directive=ASSIGNED_NOTHING)
    assert result.event is EventType.INTEGRITY_FAILURE, result.message
    assert RUNNING_PATH in result.message and "other bytes" in result.message
    assert "running_not_listed" not in event_types(state)
