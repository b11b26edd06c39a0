"""The failsafe freeze's rules: a pure core (values and the clock in, a new state or an error out).

- F1 Entering: only a security officer (confirmed with a fresh one-time
  code: the access layer's ``fresh_otp``), with a reason (1 to
  ``REASON_LENGTH`` characters once trimmed, no control characters).
  Entering while frozen is refused (409): the freeze in force, its officer
  and reason stay as they are.
- F2 Leaving needs two different security officers, each confirming with a
  fresh code, within ``window`` of each other (``unfreeze_window``). The
  first vote is recorded (pending); a vote by another officer within the
  window of it lifts the freeze. A vote by the officer whose vote is pending
  is refused (409): one person cannot lift alone. A pending vote older than
  the window has lapsed: the next vote, by anyone, is a new first vote (the
  answer says which vote lapsed). A vote dated after ``now`` (the clock
  stepped back) counts as lapsed too, never as a valid first vote. Voting
  while normal is refused (409).
- F3 While frozen, no publication (a release uploaded or published, the
  file of a published target, the first import), no authorization, no
  deployment progress and no fleet set to take the newest release
  (``rollout`` D10): ``refusal`` is the message each refusal gives (who froze, since
  when, why, and how it ends). The online roles' renewal goes on (devices
  must not see a freeze attack, R40), and devices keep what they run.
- F4 Entering and leaving start a new mode: ``since`` is the time of the
  change; leaving clears the freeze's reason and the pending vote, and names
  both officers who lifted it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from update_server.freeze.errors import (
    AlreadyFrozenError,
    NotFrozenError,
    NotOfficerError,
    ReasonError,
    SameOfficerError,
)
from update_server.models import Role

#: The longest reason a freeze may be given (characters).
REASON_LENGTH = 500


class Mode(StrEnum):
    """The server's mode."""

    NORMAL = "normal"
    FROZEN = "frozen"


@dataclass(frozen=True)
class Vote:
    """A security officer's vote to leave the freeze."""

    officer: str
    at: datetime


@dataclass(frozen=True)
class Freeze:
    """The server's mode, who set it and why, and the pending vote to leave it."""

    mode: Mode
    #: When the mode began (None: never frozen).
    since: datetime | None = None
    #: Who froze (the freeze in force, or the last one).
    frozen_by: str | None = None
    reason: str | None = None
    #: Who lifted the last freeze (empty while frozen or never frozen).
    lifted_by: tuple[str, ...] = ()
    vote: Vote | None = None


#: A server that was never frozen.
NEVER_FROZEN = Freeze(Mode.NORMAL)


class VoteKind(StrEnum):
    """What a vote to leave did (F2)."""

    #: Recorded: another officer must vote within the window.
    FIRST = "first"
    #: The second officer's vote: the freeze is lifted.
    LIFTED = "lifted"


@dataclass(frozen=True)
class VoteResult:
    state: Freeze
    kind: VoteKind
    #: The pending vote that had lapsed and was replaced by this one, if any.
    lapsed: Vote | None = None


def enter(state: Freeze, *, officer: str, role: str, reason: object, now: datetime) -> Freeze:
    """F1, F4: the frozen state ``officer`` enters, or raise."""
    _require_officer(role, "freeze the system")
    reason = checked_reason(reason)
    if state.mode is Mode.FROZEN:
        raise AlreadyFrozenError(f"already frozen: {refusal(state)}; nothing changed", rule="F1")
    return Freeze(Mode.FROZEN, since=now, frozen_by=officer, reason=reason)


def vote(state: Freeze, *, officer: str, role: str, now: datetime, window: timedelta) -> VoteResult:
    """F2, F4: ``officer``'s vote to leave: recorded first, or the second that lifts."""
    _require_officer(role, "lift the freeze")
    if state.mode is not Mode.FROZEN:
        raise NotFrozenError("the system is not frozen: there is nothing to lift", rule="F2")
    pending = pending_vote(state, now=now, window=window)
    if pending is None:
        lapsed = state.vote
        first = replace(state, vote=Vote(officer, now))
        return VoteResult(first, VoteKind.FIRST, lapsed=lapsed)
    if pending.officer == officer:
        raise SameOfficerError(
            f"your vote to lift the freeze is already recorded ({_instant(pending.at)});"
            " a different security officer must confirm it before"
            f" {_instant(pending.at + window)}",
            rule="F2",
        )
    lifted = Freeze(
        Mode.NORMAL,
        since=now,
        frozen_by=state.frozen_by,
        lifted_by=(pending.officer, officer),
    )
    return VoteResult(lifted, VoteKind.LIFTED)


def pending_vote(state: Freeze, *, now: datetime, window: timedelta) -> Vote | None:
    """F2: the vote that a second officer may still complete (None: none, or it lapsed)."""
    cast = state.vote
    if state.mode is not Mode.FROZEN or cast is None:
        return None
    return cast if cast.at <= now <= cast.at + window else None


def refusal(state: Freeze) -> str:
    """F3: why a change is refused while frozen, and how the freeze ends."""
    since = _instant(state.since) if state.since is not None else "an unknown time"
    return (
        f"the system is frozen by {state.frozen_by or 'a security officer'} since {since}:"
        f" {state.reason or 'no reason given'}; two security officers lift it"
    )


def checked_reason(reason: object) -> str:
    """F1: the reason, trimmed; 1 to ``REASON_LENGTH`` characters, no control characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonError("give the reason for the freeze (a short text)", rule="F1")
    text = reason.strip()
    if len(text) > REASON_LENGTH:
        raise ReasonError(
            f"the reason is {len(text)} characters long; keep it to {REASON_LENGTH}", rule="F1"
        )
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise ReasonError(
            "the reason holds control characters; write it on one line of plain text", rule="F1"
        )
    return text


def _require_officer(role: str, doing: str) -> None:
    if role != Role.SECURITY_OFFICER:
        raise NotOfficerError(f"only a security officer may {doing}", rule="F1/F2")


def _instant(at: datetime) -> str:
    """UTC, to the second, as every answer and audit entry shows times."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
