"""The clinical-use guard (R52: emergencies come first).

A pump in the middle of an infusion must never reboot into an update. The
device's integrator supplies a *ready-check*: a command, like the health
check, that answers "is this device idle?". Its rules:

- G1: exit status 0 within the timeout is *idle*; any other status, a
  command that hangs (killed with its process group at the timeout), or
  one that cannot be run at all (missing, not executable) is *in use*:
  the guard fails safe, never open.
- G2: it is asked before each activation: before a verified download is
  marked pending (``Activation.INSTALL``, in ``client.update``) and before
  a pending slot's trial boot starts (``Activation.TRIAL_BOOT``, in
  ``client.boot``). In use, the device keeps running what it runs, keeps
  the verified bytes, logs ``deferred_in_use`` once per deferral, and asks
  again at the next poll or boot. A deferral is not a failure.
- G3: no update path bypasses it, failsafe mode and a signed recovery
  included, but one: a person installing or booting a signed recovery who
  says so explicitly (``--ignore-ready-check``, accepted only with a
  recovery). The override is logged with what the ready-check answered.
- G4: with no ready-check configured, every activation may happen (as with
  no health check): the guard is the integrator's to configure
  (``--ready-check`` or ``FWCLIENT_READY_CHECK``).

``may_activate`` is the decision, pure: readiness in, a ``Decision`` out.
``ask`` runs the command; ``run_command`` is the one way the client runs a
device command with a timeout (the health check in ``client.boot`` too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

#: Seconds a ready-check may take before the device counts as in use (G1).
READY_CHECK_TIMEOUT = 10.0
#: Bytes of a command's stderr kept in the detail (a line of the log stays short).
_TAIL = 200


class Activation(StrEnum):
    """What the guard is asked about (G2)."""

    INSTALL = "install"  # a verified download about to be marked pending
    TRIAL_BOOT = "trial_boot"  # a pending slot about to be booted on trial


@dataclass(frozen=True)
class Ready:
    detail: str


@dataclass(frozen=True)
class InUse:
    reason: str


Readiness = Ready | InUse


@dataclass(frozen=True)
class Decision:
    """Whether an activation happens now, and the words the log keeps about it."""

    proceed: bool
    detail: str
    #: True when the device said it is in use and a person overrode it for a recovery (G3).
    overridden: bool = False


@dataclass(frozen=True)
class ReadyCheck:
    """The configured ready-check command and how long it may take (G1)."""

    argv: tuple[str, ...]
    timeout: float = READY_CHECK_TIMEOUT

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise ValueError("an empty ready-check command: give a command, or none at all")
        if not self.timeout > 0:
            raise ValueError("the ready-check timeout must be positive")


@dataclass(frozen=True)
class Guard:
    """The guard as configured: the ready-check (None: none, G4) and the recovery override."""

    check: ReadyCheck | None = None
    ignore_for_recovery: bool = False

    def decide(self, activation: Activation, *, version: str, recovery: bool) -> Decision:
        readiness = ask(self.check, activation=activation, version=version)
        return may_activate(
            readiness, recovery=recovery, ignore_ready_check=self.ignore_for_recovery
        )


def may_activate(readiness: Readiness, *, recovery: bool, ignore_ready_check: bool) -> Decision:
    """G2, G3: idle proceeds; in use defers, unless a person overrides it for a recovery."""
    if isinstance(readiness, Ready):
        return Decision(True, readiness.detail)
    if recovery and ignore_ready_check:
        return Decision(
            True,
            f"the device says it is in use ({readiness.reason}); ready-check ignored"
            " for a signed recovery (--ignore-ready-check)",
            overridden=True,
        )
    note = "" if recovery or not ignore_ready_check else " (--ignore-ready-check: recovery only)"
    return Decision(False, f"the device is in use ({readiness.reason}){note}")


def ask(check: ReadyCheck | None, *, activation: Activation, version: str) -> Readiness:
    """G1, G4: run the ready-check; it learns what is asked from ``FWCLIENT_ACTIVATION``."""
    if check is None:
        return Ready("no ready-check configured")
    env = {**os.environ, "FWCLIENT_ACTIVATION": activation.value, "FWCLIENT_VERSION": version}
    result = run_command(check.argv, env=env, timeout=check.timeout)
    if result.status == 0:
        return Ready("the ready-check says the device is idle")
    return InUse(f"ready-check: {result.detail}")


@dataclass(frozen=True)
class CommandResult:
    """A device command's exit status (None: it could not run, or was killed) and why."""

    status: int | None
    detail: str


def run_command(argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> CommandResult:
    """Run ``argv`` without input or output; one that hangs is killed with its process group."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(  # nosec B603 # the device configuration's argv, no shell
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(None, f"cannot run {argv[0]}: {exc.strerror}")
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return CommandResult(None, f"no answer within {timeout:g} s")
        errors.seek(0)
        tail = errors.read()[-_TAIL:].decode(errors="replace").strip()
    if status == 0:
        return CommandResult(0, "exit status 0")
    return CommandResult(status, f"exit status {status}" + (f": {tail}" if tail else ""))
