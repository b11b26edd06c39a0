"""Install policy rule 8 (R13, issue 11): the server's selection, never trusted further.

With an assignment only the signed candidate with exactly that path and
SHA-256 may be chosen, and every other rule still applies to it; "assigned"
without an assignment installs nothing; "newest" is the rule as before.
Rules 6 and 7 are computed over the whole signed set whatever is selected.
"""

from __future__ import annotations

from client.directive import NEWEST, Assignment, Install, Selection
from client.events import EventType
from client.policy import Candidate, Choice, RunningEntry
from client.state import Floor
from tests.client.test_policy import MODEL, authorized, candidate, choose, holding

RUNNING = Floor(2, "2.0.0")
NOTHING_ASSIGNED = Selection(Install.ASSIGNED)


def assign(target: Candidate, *, sha256: str | None = None, deployment: int = 7) -> Selection:
    return Selection(
        Install.ASSIGNED,
        Assignment(deployment, target.path, sha256 or target.sha256, target.info.version),
    )


def decide(
    *candidates: Candidate,
    selection: Selection,
    floor: Floor = RUNNING,
    **kwargs: object,
) -> Choice:
    return choose(
        candidates,
        hardware_model=MODEL,
        running_sha256=None,
        floor=floor,
        selection=selection,
        **kwargs,  # type: ignore[arg-type]
    )


def refused_because(choice: Choice) -> str:
    assert choice.chosen is None
    assert choice.assignment_refused is not None
    return choice.assignment_refused.reason


def test_the_assigned_release_is_chosen_not_the_newest_rule_8() -> None:
    assigned, newest = candidate("2.1.0", 2), candidate("3.0.0", 3)
    choice = decide(newest, assigned, selection=assign(assigned))
    assert choice.chosen == assigned
    assert choice.refused == () and choice.assignment_refused is None


def test_an_assigned_target_not_in_the_signed_set_is_refused_rule_8() -> None:
    """A target never signed, or withdrawn: the path is not among the signed candidates."""
    signed, unsigned = candidate("2.1.0", 2), candidate("2.2.0", 2)
    choice = decide(signed, selection=assign(unsigned))
    assert refused_because(choice) == "not_signed"
    assert choice.assignment_refused is not None
    assert "never signed, or withdrawn" in choice.assignment_refused.describe()


def test_an_assigned_path_with_other_bytes_is_refused_rule_8() -> None:
    assigned = candidate("2.1.0", 2)
    choice = decide(assigned, selection=assign(assigned, sha256="ab" * 32))
    assert refused_because(choice) == "other_sha256"
    assert assigned.sha256 in choice.assignment_refused.detail  # type: ignore[union-attr]


def test_an_assigned_release_older_than_what_runs_is_refused_r25() -> None:
    older = candidate("1.9.0", 2)
    assert refused_because(decide(older, selection=assign(older))) == "not_newer"


def test_the_running_release_assigned_again_is_refused_as_not_newer() -> None:
    running = candidate("2.0.0", 2)
    assert refused_because(decide(running, selection=assign(running))) == "not_newer"


def test_the_release_it_runs_assigned_again_is_up_to_date_not_refused() -> None:
    """A deployment keeps assigning its release to devices that installed it: no refusal."""
    running = candidate("2.0.0", 2)
    choice = choose(
        [running], hardware_model=MODEL, running_sha256=running.sha256, floor=RUNNING,
        selection=assign(running),
    )  # fmt: skip
    assert (choice.chosen, choice.assignment_refused, choice.refused) == (None, None, ())
    assert not choice.unassigned and not choice.unlisted


def test_the_release_it_runs_assigned_again_is_up_to_date_when_only_its_bin_signs_it_r13() -> None:
    """R13, hashed bins: once a newer release is published the running one lives in its bin
    only, so it is no candidate; rule 7's lookup finds it signed with the running bytes, and
    the deployment that keeps assigning it is up to date, not refused at every poll."""
    running, newer = candidate("2.0.0", 2), candidate("2.1.0", 2)
    choice = choose(
        [newer], hardware_model=MODEL, running_sha256=running.sha256, floor=RUNNING,
        selection=assign(running), running_entry=RunningEntry(running.path, running),
    )  # fmt: skip
    assert (choice.chosen, choice.assignment_refused, choice.refused) == (None, None, ())
    assert not choice.unlisted and choice.withdrawn is None
    other = choose(
        [newer], hardware_model=MODEL, running_sha256="cd" * 32, floor=RUNNING,
        selection=assign(running), running_entry=RunningEntry(running.path, running),
    )  # fmt: skip
    assert other.assignment_refused is not None, "other running bytes: not the one assigned"


def test_an_assigned_release_below_the_security_floor_is_refused_r25() -> None:
    below = candidate("2.5.0", 1)
    choice = decide(below, selection=assign(below))
    assert refused_because(choice) == EventType.FIRMWARE_DOWNGRADE.value
    assert "below this device's floor 2" in choice.assignment_refused.detail  # type: ignore[union-attr]


def test_an_assigned_release_for_another_model_is_refused_r15() -> None:
    other = candidate("2.5.0", 2, models=("pump-x200",))
    assert refused_because(decide(other, selection=assign(other))) == "hardware_mismatch"


def test_an_assigned_release_that_failed_here_before_is_refused() -> None:
    bad = candidate("2.5.0", 2)
    choice = decide(bad, selection=assign(bad), known_bad={bad.sha256})
    assert refused_because(choice) == EventType.KNOWN_BAD.value


def test_an_assigned_prerelease_is_refused_unless_the_device_takes_them() -> None:
    rc = candidate("2.5.0-rc.1", 2)
    assert refused_because(decide(rc, selection=assign(rc))) == "prerelease"
    assert decide(rc, selection=assign(rc), prereleases=True).chosen == rc


def test_an_assigned_release_needing_authorization_waits_for_one_then_binds_it_r9() -> None:
    needs = candidate("2.5.0", 2, requires_authorization=True)
    waiting = decide(needs, selection=assign(needs))
    assert [r.event for r in waiting.refused] == [EventType.AWAITING_AUTHORIZATION]
    assert waiting.assignment_refused is None
    document = authorized(needs)
    allowed = decide(needs, selection=assign(needs), authorizations=holding(document))
    assert (allowed.chosen, allowed.authorization) == (needs, document)


def test_a_withdrawn_assigned_release_is_refused_and_rule_7_still_reports_it() -> None:
    """The server assigns the release the device runs, though the signed set withdrew it."""
    successor = candidate("2.0.1-rc.1", 3)  # not a release this device takes
    running = Floor(2, "2.0.0")
    withdrawn = candidate("2.0.0", 2)
    choice = decide(successor, selection=assign(withdrawn), floor=running)
    assert refused_because(choice) == "not_signed"
    assert choice.unlisted


def test_rule_6_is_computed_over_the_whole_set_whatever_is_assigned() -> None:
    assigned = candidate("2.5.0", 3)
    other_bytes = candidate("2.0.0", 2)
    choice = choose(
        [assigned, other_bytes],
        hardware_model=MODEL,
        running_sha256="cd" * 32,
        floor=RUNNING,
        selection=assign(assigned),
    )
    assert choice.chosen == assigned
    assert [r.event for r in choice.contradicted] == [EventType.INTEGRITY_FAILURE]


def test_assigned_with_no_assignment_installs_nothing_and_newest_takes_the_newest() -> None:
    """Both fleet settings, over the same signed set (issue 11: "a test shows both")."""
    older, newest = candidate("2.1.0", 2), candidate("3.0.0", 3)
    unassigned = decide(older, newest, selection=NOTHING_ASSIGNED)
    assert unassigned.chosen is None and unassigned.unassigned
    assert unassigned.refused == () and unassigned.assignment_refused is None
    assert unassigned.considered == 2
    newest_choice = decide(older, newest, selection=NEWEST)
    assert newest_choice.chosen == newest and not newest_choice.unassigned


def test_an_assignment_is_followed_under_the_newest_setting_too() -> None:
    """A deployment's assignment names the one target, whatever the fleet's setting."""
    assigned, newest = candidate("2.1.0", 2), candidate("3.0.0", 3)
    selection = Selection(Install.NEWEST, assign(assigned).assignment)
    assert decide(assigned, newest, selection=selection).chosen == assigned
