"""Keeping the online roles fresh without anyone acting (TUF freeze attack, R13).

A device refuses an expired timestamp or snapshot, so the server signs new
ones before that happens: each is due once ``renew_at_fraction`` of its
lifetime (``Policy``: snapshot 7 days, timestamp 1 day) has passed. A new
snapshot always comes with a new timestamp that lists it.

``renew_if_due`` runs under the publication lock, so renewals and
publications never interleave and, of several gunicorn workers, one renews
and the others find nothing due. ``start_renewal_thread`` runs it in the
background of a worker, each tick followed by the upload ``sweep``
(expired uploads, orphaned staging) and the audit of the refusal counts
whose window has ended (R27: they reach the log with no traffic,
``auth.refusals`` C3); the first failure of a run of failed renewals is
audited, an alert (R31); ``fwserver renew`` runs it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TypeVar

from flask import Flask
from tuf.api.metadata import Snapshot, Timestamp

from repo_metadata.policy import Policy
from update_server.app import Services
from update_server.audit import append, audit_event
from update_server.audit.actions import Action
from update_server.audit.vocabulary import Outcome
from update_server.auth import refusals
from update_server.db import transaction
from update_server.publication import switch
from update_server.publication.errors import BusyError
from update_server.publication.lock import publication_lock
from update_server.publication.publish import (
    ServicesLike,
    recover,
    switch_with_audit,
    system_actor,
)
from update_server.publication.repository import OnlineRepository
from update_server.publication.sweep import Swept, sweep

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
_T = TypeVar("_T")


def due_roles(repo: OnlineRepository, now: datetime, *, fraction: float) -> list[str]:
    """The online roles to sign anew at ``now`` (snapshot implies timestamp)."""
    due = [
        role for role in (Snapshot.type, Timestamp.type) if now >= renew_at(repo, role, fraction)
    ]
    if Snapshot.type in due and Timestamp.type not in due:
        due.append(Timestamp.type)
    return due


def renew_at(repo: OnlineRepository, role: str, fraction: float) -> datetime:
    """When ``role`` is due: ``fraction`` of its policy lifetime after it was signed."""
    md = repo.published(role)
    if md is None:
        raise ValueError(f"no published {role}")
    lifetime = repo.policy.for_role(role).expiry
    expires: datetime = md.signed.expires
    return expires - lifetime * (1 - fraction)


def renew_if_due(
    services: ServicesLike,
    now: datetime,
    *,
    force: bool = False,
    wait: float = 60.0,
    policy: Policy | None = None,
) -> list[str]:
    """Sign new online roles if due (or ``force``); return which were renewed.

    Waits up to ``wait`` seconds for the publication lock (``BusyError``).
    A repository not imported yet has nothing to renew.
    """
    config = services.config
    if not OnlineRepository(config.repository_dir, now=now).is_initialised():
        return []
    with publication_lock(config.data_dir, timeout=wait):
        recover(services, now=now)
        repo = OnlineRepository(
            config.repository_dir, now=now, signers=services.signer, policy=policy
        )
        due = (
            [Snapshot.type, Timestamp.type]
            if force
            else due_roles(repo, now, fraction=config.renew_at_fraction)
        )
        if not due:
            return []
        if Snapshot.type in due:
            repo.do_snapshot(force=True)
        repo.refresh_timestamp()
        signed = {role: version for role, version in repo.staged_versions().items() if role in due}
        change = switch.Change(
            links=(),
            files=repo.pending_files(),
            timestamp=repo.pending_timestamp(),
            action=Action.RENEW,
            object="repository",
        )
        detail = {"renewed": {role: f"v{version}" for role, version in signed.items()}}
        switch_with_audit(
            services, change, actor=system_actor(), now=now, signed=signed, detail=detail
        )
    logger.info("renewed %s", ", ".join(due))
    return due


class RenewalThread(threading.Thread):
    """Checks every ``interval`` seconds whether a renewal is due, and does it."""

    def __init__(self, services: Services, *, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(name="fw-renewal", daemon=True)
        self.services = services
        self.interval = interval
        self._stopping = threading.Event()
        #: A renewal failed and none succeeded since (its alert is raised).
        self._failing = False

    def run(self) -> None:
        while True:
            self.tick()
            if self._stopping.wait(self.interval):
                return

    def tick(self) -> list[str]:
        """One check, then housekeeping; never raises (what fails is retried next tick)."""
        renewed = self._renew()
        self._guarded(self._sweep)
        self._guarded(self._audit_ended_refusals)
        return renewed or []

    def _renew(self) -> list[str] | None:
        """A renewal if due; the first failure of a run of failures is audited (R31).

        Its alert says the renewal fails once; the failures that follow are
        logged until a renewal succeeds (in each worker that tried).
        """
        try:
            renewed = renew_if_due(self.services, self.services.clock(), wait=0)
        except BusyError:
            return None  # another worker or a publication holds the lock: it renews
        except Exception as exc:  # a daemon loop must survive; the next tick retries
            logger.exception("renewal failed; retrying in %.0f s", self.interval)
            if not self._failing:
                self._failing = self._guarded(partial(self._audit_failure, exc)) is not None
            return None
        self._failing = False
        return renewed

    def _audit_failure(self, error: Exception) -> bool:
        """R31: a ``repository.renew`` failure entry (an alert: ``alerts.critical``).

        The error's class and text only: HSM errors quote no PIN, and a key
        never reaches an exception's text.
        """
        event = audit_event(
            Action.RENEW,
            actor=system_actor(),
            object="repository",
            outcome=Outcome.FAILURE,
            time=self.services.clock(),
            detail={"error": f"{type(error).__name__}: {error}"[:300]},
        )
        with transaction(self.services.sessions) as db:
            append(db, event)
        return True

    def _sweep(self) -> Swept:
        return sweep(self.services, now=self.services.clock())

    def _audit_ended_refusals(self) -> int:
        window = self.services.config.refusal_audit_window
        with transaction(self.services.sessions) as db:
            return refusals.append_ended(db, now=self.services.clock(), window=window)

    def _guarded(self, work: Callable[[], _T]) -> _T | None:
        try:
            return work()
        except BusyError:
            return None  # another worker or a publication holds the lock: it renews
        except Exception:  # a daemon loop must survive; the next tick retries
            logger.exception("renewal failed; retrying in %.0f s", self.interval)
            return None

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.join(timeout)


def start_renewal_thread(app: Flask, *, interval: float = DEFAULT_INTERVAL) -> RenewalThread:
    """Start renewing in the background of this process (call once per worker)."""
    thread = RenewalThread(app.extensions["fw"], interval=interval)
    thread.start()
    return thread
