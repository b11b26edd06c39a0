"""Install policy rules 6, 7 and 8 at their edges (R25, R29, R13), tested on the pure core.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``):
what a person reads of a refusal, an assignment that signs the running version
with other bytes, and rule 7's lookup of the running slot's own path.
"""

from __future__ import annotations

from client.directive import Assignment, Install, Selection
from client.events import EventType
from client.policy import Refusal, RunningEntry
from client.state import Floor
from tests.client.test_policy import MODEL, candidate, choose

RUNNING = Floor(2, "2.0.0")
RUNNING_SHA256 = "cd" * 32


def test_r25_a_refusal_names_the_path_the_version_and_the_reason() -> None:
    target = candidate("3.0.0")
    refusal = Refusal(target, EventType.FIRMWARE_DOWNGRADE, "below the floor")
    assert refusal.describe() == f"{target.path} (version 3.0.0): below the floor"


def test_rule_8_an_offer_to_leave_a_withdrawn_release_says_so_not_a_deployment() -> None:
    """client.directive P7: an assignment with no deployment is the withdrawal's offer."""
    target = candidate("2.1.0", 2)
    offer = Selection(Install.ASSIGNED, Assignment(None, target.path, "ab" * 32, "2.1.0"))
    choice = choose(
        [target], hardware_model=MODEL, running_sha256=None, floor=RUNNING, selection=offer
    )
    assert choice.chosen is None and choice.assignment_refused is not None
    described = choice.assignment_refused.describe()
    assert "offered to leave a withdrawn release" in described
    assert "deployment" not in described


def test_r29_an_assigned_running_version_with_other_bytes_is_an_integrity_failure() -> None:
    """Rule 6 inside rule 8: the assignment matches what is signed, but not what runs."""
    other_bytes = candidate("2.0.0", 2)
    assert other_bytes.sha256 != RUNNING_SHA256
    selection = Selection(
        Install.ASSIGNED, Assignment(7, other_bytes.path, other_bytes.sha256, "2.0.0")
    )
    choice = choose(
        [other_bytes],
        hardware_model=MODEL,
        running_sha256=RUNNING_SHA256,
        floor=RUNNING,
        selection=selection,
        recovery=True,
    )
    assert choice.chosen is None
    assert choice.assignment_refused is not None
    assert choice.assignment_refused.reason == EventType.INTEGRITY_FAILURE.value
    assert [r.candidate for r in choice.contradicted] == [other_bytes]


def test_r29_the_running_path_looked_up_with_other_bytes_is_reported_contradicted() -> None:
    """Rule 6 over rule 7's lookup: the running path, signed there with other bytes."""
    running_path = candidate("2.0.0", 2)
    newer = candidate("2.1.0", 2)
    choice = choose(
        [newer],
        hardware_model=MODEL,
        running_sha256=RUNNING_SHA256,
        floor=RUNNING,
        running_entry=RunningEntry(running_path.path, running_path),
    )
    assert [r.candidate for r in choice.contradicted] == [running_path]
    assert choice.contradicted[0].event is EventType.INTEGRITY_FAILURE
    assert choice.withdrawn is None  # still signed there, as the running version
    assert choice.chosen == newer  # one contradiction freezes nothing else


def test_r25_a_looked_up_path_a_candidate_already_has_is_not_counted_twice() -> None:
    running = candidate("2.0.0", 2)
    choice = choose(
        [running],
        hardware_model=MODEL,
        running_sha256=RUNNING_SHA256,
        floor=RUNNING,
        running_entry=RunningEntry(running.path, running),
    )
    assert [r.candidate for r in choice.contradicted] == [running]


def test_r56_the_running_path_signed_no_more_is_withdrawn_and_unlisted() -> None:
    """Rule 7: nothing signed at the running path now, even with a newer release signed."""
    newer = candidate("2.1.0", 2)
    choice = choose(
        [newer],
        hardware_model=MODEL,
        running_sha256=RUNNING_SHA256,
        floor=RUNNING,
        running_entry=RunningEntry("pump-x100/fw-2.0.0.bin", None),
    )
    assert choice.withdrawn == "pump-x100/fw-2.0.0.bin"
    assert choice.unlisted is True


def test_r56_the_running_path_signed_for_another_model_is_withdrawn_for_this_one() -> None:
    elsewhere = candidate("2.0.0", 2, models=("pump-x200",))
    choice = choose(
        [],
        hardware_model=MODEL,
        running_sha256=RUNNING_SHA256,
        floor=RUNNING,
        running_entry=RunningEntry(elsewhere.path, elsewhere),
    )
    assert choice.withdrawn == elsewhere.path and choice.unlisted is True


def test_r56_the_running_path_signed_with_another_version_is_withdrawn() -> None:
    other_version = candidate("1.9.0", 2)
    choice = choose(
        [],
        hardware_model=MODEL,
        running_sha256=RUNNING_SHA256,
        floor=RUNNING,
        running_entry=RunningEntry(other_version.path, other_version),
    )
    assert choice.withdrawn == other_version.path


def test_r56_no_installed_version_means_nothing_withdrawn() -> None:
    """A device that does not know what runs cannot tell a withdrawal (rule 7 needs it)."""
    choice = choose(
        [],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(),
        running_entry=RunningEntry("pump-x100/fw-2.0.0.bin", None),
    )
    assert choice.withdrawn is None and choice.unlisted is False
