"""A device's status in a deployment, from what it reports (pure: no I/O).

The device's report carries what it runs and its new event-log entries
(``device_log``, ``client.events``); this module folds them into the
device's status for one deployment's target. Rules:

- S1 An entry is about the target when its detail names the target path
  (``target``), or, for ``updated`` and ``rolled_back`` (which name the
  version only), the target's version. Other entries change nothing: a
  metadata attack or an unreachable server is no verdict on the target, and
  neither is a release held back by the freeze or by a poll left unanswered
  (``NO_VERDICT``): the freeze must not make a deployment stop itself.
- S2 In the order the device logged them, the last entry about the target
  sets the status: ``checked``, ``downloaded`` and ``verified`` mean
  downloading; ``installed`` means activating (written to the inactive
  slot, waiting for its trial boot); a deferral (``deferred_in_use``, any
  ``deferred_*`` the device adds, ``awaiting_authorization``) means
  deferred; ``updated`` means installed; a failure of the device's own
  (``FAILURES``) means failed, with its event type; anything else about
  the target is the device refusing it (its policy: older, below its
  floor, other model, known bad, an authorization refused...), with the
  device's message as the reason.
- S3 A device that reports running the target's version runs the target:
  installed, whatever its entries said before (the report's running
  version is the device's own verified state).
- S4 ``installed`` counts for a wave's success, ``failed`` and ``refused``
  against it (``waves`` W2, W3); the other statuses are in progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Longest reason kept (the column's length).
REASON = 512


class Status(StrEnum):
    ASSIGNED = "assigned"
    DOWNLOADING = "downloading"
    ACTIVATING = "activating"
    DEFERRED = "deferred"
    INSTALLED = "installed"
    FAILED = "failed"
    REFUSED = "refused"


#: S4.
SUCCEEDED = frozenset({Status.INSTALLED})
UNSUCCESSFUL = frozenset({Status.FAILED, Status.REFUSED})

_PROGRESS = {
    "checked": Status.DOWNLOADING,
    "downloaded": Status.DOWNLOADING,
    "verified": Status.DOWNLOADING,
    "installed": Status.ACTIVATING,
    "updated": Status.INSTALLED,
    "awaiting_authorization": Status.DEFERRED,
}
#: S2: what goes wrong on the device itself, as opposed to its policy refusing the target.
FAILURES = frozenset(
    {
        "rolled_back",
        "health_check_failed",
        "bad_hash",
        "too_long",
        "slow_retrieval",
        "insufficient_space",
        "integrity_failure",
        "error",
    }
)
_BY_VERSION = frozenset({"updated", "rolled_back"})
#: S1: entries that name the target but are no verdict on it: the device holds it
#: back because the server said so (the freeze) or said nothing valid.
NO_VERDICT = frozenset({"server_frozen", "poll_unanswered", "running_not_listed"})


@dataclass(frozen=True)
class Verdict:
    """A status, the event that set it and the device's words for it."""

    status: Status
    event: str | None = None
    reason: str | None = None


def about_target(entry: Mapping[str, Any], *, target_path: str, version: str) -> bool:
    """S1."""
    detail = entry.get("detail")
    if not isinstance(detail, Mapping):
        return False
    if entry.get("type") in NO_VERDICT:
        return False
    if detail.get("target") == target_path:
        return True
    return entry.get("type") in _BY_VERSION and detail.get("version") == version


def verdict_of(entry: Mapping[str, Any]) -> Verdict:
    """S2: what one entry about the target says."""
    kind = str(entry.get("type"))[:64]
    message = entry.get("message")
    reason = message[:REASON] if isinstance(message, str) else None
    if kind in _PROGRESS:
        status = _PROGRESS[kind]
        return Verdict(status, kind, reason if status is Status.DEFERRED else None)
    if kind.startswith("deferred"):
        return Verdict(Status.DEFERRED, kind, reason)
    if kind in FAILURES:
        return Verdict(Status.FAILED, kind, reason)
    return Verdict(Status.REFUSED, kind, reason)


def fold(
    current: Verdict,
    entries: Iterable[Mapping[str, Any]],
    *,
    target_path: str,
    version: str,
    running_version: str | None,
) -> Verdict:
    """S1-S3: the status after a report's ``entries`` and its running version."""
    verdict = current
    for entry in entries:
        if about_target(entry, target_path=target_path, version=version):
            verdict = verdict_of(entry)
    if running_version == version and verdict.status is not Status.INSTALLED:
        return Verdict(Status.INSTALLED, "running")
    return verdict
