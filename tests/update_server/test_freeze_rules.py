"""The failsafe freeze's pure core (``update_server.freeze.rules`` F1-F4), one test per rule.

No database, no app: states, officers and the clock in, a new state or an
error out. The same rules run behind the API (``test_freeze_api``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.clocks import RUN_START
from update_server.freeze import rules
from update_server.freeze.errors import (
    AlreadyFrozenError,
    NotFrozenError,
    NotOfficerError,
    ReasonError,
    SameOfficerError,
)
from update_server.freeze.rules import NEVER_FROZEN, Mode, Vote, VoteKind
from update_server.models import Role

OFFICER = Role.SECURITY_OFFICER
WINDOW = timedelta(hours=1)
T0 = RUN_START


def _frozen(by: str = "olga", reason: str = "key compromise suspected") -> rules.Freeze:
    return rules.enter(NEVER_FROZEN, officer=by, role=OFFICER, reason=reason, now=T0)


def test_f1_an_officer_freezes_with_a_reason() -> None:
    frozen = _frozen()
    assert frozen.mode is Mode.FROZEN
    assert (frozen.frozen_by, frozen.reason, frozen.since) == (
        "olga",
        "key compromise suspected",
        T0,
    )


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.SECURITY_OFFICER])
def test_f1_no_other_role_freezes(role: Role) -> None:
    with pytest.raises(NotOfficerError):
        rules.enter(NEVER_FROZEN, officer="x", role=role, reason="because", now=T0)


@pytest.mark.parametrize("reason", [None, "", "   ", 42, "x" * 501, "line\nbreak", "nul\x00"])
def test_f1_a_reason_missing_too_long_or_with_control_characters_is_refused(
    reason: object,
) -> None:
    with pytest.raises(ReasonError):
        rules.enter(NEVER_FROZEN, officer="olga", role=OFFICER, reason=reason, now=T0)


def test_f1_the_reason_is_trimmed_and_500_characters_are_enough() -> None:
    assert rules.checked_reason("  why  ") == "why"
    assert rules.checked_reason("é" * 500) == "é" * 500


def test_f1_entering_while_frozen_is_refused_and_names_the_freeze_in_force() -> None:
    frozen = _frozen()
    with pytest.raises(AlreadyFrozenError, match="frozen by olga"):
        rules.enter(frozen, officer="paul", role=OFFICER, reason="again", now=T0)


def test_f2_the_first_vote_is_recorded_and_the_system_stays_frozen() -> None:
    result = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW)
    assert result.kind is VoteKind.FIRST
    assert result.state.mode is Mode.FROZEN
    assert result.state.vote == Vote("olga", T0)
    assert result.lapsed is None


def test_f2_a_second_officer_within_the_window_lifts_the_freeze() -> None:
    first = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    later = T0 + WINDOW
    result = rules.vote(first, officer="paul", role=OFFICER, now=later, window=WINDOW)
    assert result.kind is VoteKind.LIFTED
    lifted = result.state
    assert (lifted.mode, lifted.since, lifted.lifted_by) == (Mode.NORMAL, later, ("olga", "paul"))
    assert (lifted.reason, lifted.vote) == (None, None)


def test_f2_the_same_officer_twice_is_refused() -> None:
    first = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    with pytest.raises(SameOfficerError, match="different security officer"):
        rules.vote(
            first, officer="olga", role=OFFICER, now=T0 + timedelta(minutes=1), window=WINDOW
        )


def test_f2_a_vote_older_than_the_window_lapsed_and_the_next_is_a_new_first_vote() -> None:
    first = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    late = T0 + WINDOW + timedelta(seconds=1)
    result = rules.vote(first, officer="paul", role=OFFICER, now=late, window=WINDOW)
    assert result.kind is VoteKind.FIRST
    assert result.state.mode is Mode.FROZEN
    assert result.state.vote == Vote("paul", late)
    assert result.lapsed == Vote("olga", T0)


def test_f2_an_officer_whose_own_vote_lapsed_may_vote_again_as_a_new_first_vote() -> None:
    first = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    late = T0 + 2 * WINDOW
    result = rules.vote(first, officer="olga", role=OFFICER, now=late, window=WINDOW)
    assert (result.kind, result.state.vote) == (VoteKind.FIRST, Vote("olga", late))


def test_f2_a_vote_dated_after_now_counts_as_lapsed_never_as_a_first_vote() -> None:
    """A clock stepped back must not let a 'future' vote pair with one cast now."""
    future = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    earlier = T0 - timedelta(minutes=5)
    result = rules.vote(future, officer="paul", role=OFFICER, now=earlier, window=WINDOW)
    assert result.kind is VoteKind.FIRST
    assert result.lapsed == Vote("olga", T0)


def test_f2_voting_while_normal_is_refused() -> None:
    with pytest.raises(NotFrozenError):
        rules.vote(NEVER_FROZEN, officer="olga", role=OFFICER, now=T0, window=WINDOW)


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.SECURITY_OFFICER])
def test_f2_no_other_role_votes(role: Role) -> None:
    first = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    with pytest.raises(NotOfficerError):
        rules.vote(first, officer="root", role=role, now=T0, window=WINDOW)


def test_f3_the_refusal_says_who_froze_since_when_why_and_how_it_ends() -> None:
    message = rules.refusal(_frozen())
    assert message == (
        f"the system is frozen by olga since {T0.strftime('%Y-%m-%dT%H:%M:%SZ')}:"
        " key compromise suspected; two security officers lift it"
    )


def test_f2_a_pending_vote_is_shown_only_within_its_window() -> None:
    first = rules.vote(_frozen(), officer="olga", role=OFFICER, now=T0, window=WINDOW).state
    assert rules.pending_vote(first, now=T0 + WINDOW, window=WINDOW) == Vote("olga", T0)
    assert rules.pending_vote(first, now=T0 + WINDOW + timedelta(seconds=1), window=WINDOW) is None
