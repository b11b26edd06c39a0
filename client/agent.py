"""``fwclient run``: the long-running update agent.

It polls (one ``update`` per poll) at a configured interval with random
jitter, so a fleet that booted together does not poll together, and backs
off exponentially, with jitter and a cap, after a transport or server
failure (a fleet must not stampede a recovering server). Which outcome backs
off is declared once, by event type (``BACKOFF``, ``NORMAL_INTERVAL``):
every type is in exactly one of the two sets. A refusal by the device's own
rules (a downgrade, another model's firmware, a release too large for the
slot, a running release withdrawn) says nothing about the server's health
and keeps the normal interval, so the signed replacement of a withdrawn
release is picked up at the next ordinary poll (R52). The one ``Remote``
it is given is reused for every poll,
so the connection is too. ``stop()`` (wired to SIGTERM) ends the wait at
once and stops a download at the next chunk, its progress kept for a resume.
Each poll holds the state directory's lock, and only the poll: between polls
``fwclient boot`` or ``verify`` may run; a poll that finds the directory
busy is a failed poll (back-off), logged as a diagnostic only, since the
event log is not written without the lock.

Reports (R37, R38): after each poll (and the reboot it led to), a
``Reporter``, when given, reports if ``client.report.should_report`` says so
(a poll that did more than find nothing new, or a day without a report). It
runs after the poll, outside the lock, and never raises: a device that
cannot report keeps polling, and its unsent entries wait in the log.

R52: every poll asks the clinical-use guard it was given (``guard``) before
it activates anything; a deferred install is resumed from its verified bytes
at the next poll, and a pending slot whose trial boot was deferred is
rebooted into (``after_install``) at the next poll, which asks again.

Issue 11: a registered device (``poll`` given) asks the server for its
directive (``client.directive``) at the start of every poll, then picks up
its authorizations, then updates as directed; an unregistered one follows
``STANDALONE``. The same holds for a deferral outside the maintenance
window (resumed at a later poll inside it) and for a freeze (the normal
interval: nothing is wrong with the device or the network). A poll the
server does not answer validly backs off like any server failure.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from client.directive import STANDALONE, Directive, obtain
from client.errors import ClientError
from client.events import AUTHORIZATION_REFUSALS, EventType
from client.readiness import Guard
from client.report import Reporter
from client.state import StateDir
from client.update import Outcome, Remote, UpdateResult, update
from repo_metadata.authorization import SignedAuthorization

logger = logging.getLogger(__name__)

#: Failed polls that back off: the server, the network or the metadata it
#: serves failed (unreachable, too slow, endless, an attack caught by TUF),
#: or the poll itself could not run (``error``: the state busy, the unforeseen).
BACKOFF = frozenset(
    {
        EventType.UNREACHABLE,
        EventType.SLOW_RETRIEVAL,
        EventType.TOO_LONG,
        EventType.BAD_HASH,
        EventType.ROLLBACK_ATTACK,
        EventType.FREEZE_ATTACK,
        EventType.MIX_AND_MATCH,
        EventType.BAD_SIGNATURE,
        EventType.POLL_UNANSWERED,
        EventType.ERROR,
    }
)
#: Every other event type keeps the normal interval: the device's own rules
#: refused a verified answer (install policy, slot size, a withdrawal, failsafe
#: mode), or the type is never a poll's failure (successes, boot and log events).
NORMAL_INTERVAL = frozenset(
    {
        EventType.FIRMWARE_DOWNGRADE,
        EventType.HARDWARE_MISMATCH,
        EventType.KNOWN_BAD,
        EventType.INSUFFICIENT_SPACE,
        EventType.RUNNING_NOT_LISTED,
        EventType.INTEGRITY_FAILURE,
        EventType.FAILSAFE_REFUSED,
        EventType.CLOCK_SKEW,
        EventType.PROVISIONED,
        EventType.CHECKED,
        EventType.NO_UPDATE,
        EventType.DOWNLOADED,
        EventType.INSTALLED,
        EventType.UPDATED,
        EventType.ROLLED_BACK,
        EventType.BOOTED,
        EventType.FAILSAFE_ENTERED,
        EventType.FAILSAFE_LEFT,
        EventType.VERIFIED,
        EventType.HEALTH_CHECK_FAILED,
        EventType.LEFTOVERS_REMOVED,
        EventType.LOG_TAIL_REPAIRED,
        EventType.LOG_DAMAGED,
        EventType.LOG_ROTATED,
        EventType.DELTA_FAILED,
        EventType.OFFLINE_INSTALL,
        EventType.AWAITING_AUTHORIZATION,
        EventType.PREREQUISITE_MISSING,
        EventType.AUTHORIZATION_ACCEPTED,
        EventType.AUTHORIZATION_USED,
        *AUTHORIZATION_REFUSALS,
        EventType.DEFERRED_IN_USE,
        EventType.ASSIGNMENT_REFUSED,
        EventType.NO_ASSIGNMENT,
        EventType.SERVER_FROZEN,
        EventType.DEFERRED_WINDOW,
    }
)


@dataclass(frozen=True)
class Schedule:
    """When to poll: ``interval`` +- ``jitter``, or a capped exponential back-off."""

    interval: float = 3600.0
    jitter: float = 0.1
    backoff: float = 30.0
    backoff_max: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.backoff <= 0:
            raise ValueError("the poll interval and the first back-off must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction of the interval, from 0 to below 1")
        if self.backoff_max < self.backoff:
            raise ValueError("the back-off cap must not be below the first back-off")

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after a poll, given the failures in a row so far."""
        if failures <= 0:
            return self.interval * rng.uniform(1 - self.jitter, 1 + self.jitter)
        ceiling = min(self.backoff_max, self.backoff * 2 ** min(failures - 1, 32))
        return rng.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in step


def needs_backoff(result: UpdateResult) -> bool:
    """Whether the poll that gave ``result`` failed for the server's sake (``BACKOFF``)."""
    return not result.ok and result.event in BACKOFF


@dataclass
class AgentReport:
    polls: int = 0
    failures_in_a_row: int = 0
    last: UpdateResult | None = None
    outcomes: list[Outcome] = field(default_factory=list)


class Agent:
    """Polls for updates until stopped (or ``max_polls`` reached)."""

    def __init__(
        self,
        state: StateDir,
        remote: Remote,
        schedule: Schedule,
        *,
        after_install: Callable[[], object] | None = None,
        rng: random.Random | None = None,
        wait: Callable[[float], object] | None = None,
        reporter: Reporter | None = None,
        guard: Guard | None = None,
        pickup: Callable[[], Sequence[SignedAuthorization]] | None = None,
        poll: Callable[[], Directive] | None = None,
    ) -> None:
        self.state = state
        #: Issue 11: the server's directive for this device (None: not registered, STANDALONE).
        self._poll_directive = poll
        #: Flow 4: the technicians' authorizations the server holds for this device.
        self._pickup = pickup
        self.guard = guard
        self.remote = remote
        self.schedule = schedule
        self._after_install = after_install
        self._reporter = reporter
        self._rng = rng or random.SystemRandom()
        self._stopped = threading.Event()
        self._wait = wait or self._stopped.wait

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def run(self, *, max_polls: int | None = None) -> AgentReport:
        report = AgentReport()
        while not self.stopped and (max_polls is None or report.polls < max_polls):
            result = self._poll()
            report.polls += 1
            report.last = result
            report.outcomes.append(result.outcome)
            report.failures_in_a_row = report.failures_in_a_row + 1 if needs_backoff(result) else 0
            logger.info("poll %d: %s", report.polls, result.message)
            waiting = result.outcome in {Outcome.INSTALLED, Outcome.PENDING_REBOOT}
            if waiting and self._after_install is not None:
                self._after_install()
            self._report(result)
            if self.stopped or (max_polls is not None and report.polls >= max_polls):
                break
            delay = self.schedule.delay(report.failures_in_a_row, self._rng)
            logger.info("next poll in %.0f s", delay)
            self._wait(delay)
        return report

    def _report(self, result: UpdateResult) -> None:
        """Report what the poll changed, or once a day (never raises: ``Reporter.report``)."""
        if self._reporter is None or self.stopped:
            return
        now = datetime.now(UTC)
        if self._reporter.due(now, changed=result.outcome is not Outcome.UP_TO_DATE):
            logger.info("report: %s", self._reporter.report(now=now).message)

    def _poll(self) -> UpdateResult:
        try:
            with self.state.lock():
                return self._update()
        except (ClientError, OSError) as exc:  # the lock was not taken (busy, or no directory)
            logger.warning("poll skipped: %s", exc)
            return UpdateResult(Outcome.FAILED, EventType.ERROR, f"poll skipped: {exc}")

    def _update(self) -> UpdateResult:
        try:
            asked = self._poll_directive
            directive = STANDALONE if asked is None else obtain(asked)
            documents = self._pickup() if self._pickup is not None else ()
            return update(
                self.state,
                self.remote,
                directive=directive,
                should_stop=self._stopped.is_set,
                guard=self.guard,
                authorizations=documents,
            )
        except Exception as exc:  # R52: an unforeseen error must not end the agent
            logger.exception("poll failed")
            message = f"the poll failed unexpectedly: {type(exc).__name__}: {exc}"
            self.state.events.append(EventType.ERROR, message, now=datetime.now(UTC))
            return UpdateResult(Outcome.FAILED, EventType.ERROR, message)
