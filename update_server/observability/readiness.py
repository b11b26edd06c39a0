"""Is this server ready to serve devices? (``GET /readyz``, ``fwserver status``)

Liveness (``/api/v1/health``) says the process answers; readiness says it
can do its job, so a load balancer sends it devices and a monitor pages
someone when it cannot. Three checks, each cheap, none with a side effect:

- Y1 ``database``: the database answers and holds the schema this code
  knows (``migrations`` M3): a file gone, a server unreachable or a schema
  another fwserver wrote all fail it.
- Y2 ``repository``: a repository is published (``fwserver import`` ran) and
  its root and timestamp read.
- Y3 ``online_keys``: every configured online key loads (its token, its key,
  its PIN file), and the snapshot and timestamp keys are the ones the
  published root trusts for those roles: a server signing with another key
  would renew metadata every device refuses. No test payload is signed: a
  key signs only metadata of its own purpose (R47; the mock HSM refuses
  anything else), and every signature goes to the token's usage log, so a
  probe every few seconds would fill it. A PIN that stopped working shows
  as a renewal overdue in the status (``expiry`` X3).

The answer names the checks that failed and nothing more (it is public);
why is in the server's log and in ``fwserver status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from securesystemslib.exceptions import Error as SecuritySystemsLibError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from tuf.api.metadata import Root, Snapshot, Timestamp

from fwcommon.keyref import KeyRefError
from hsm_mock.errors import HSMError
from update_server.app import Services
from update_server.errors import ServerError
from update_server.keys import KeyConfigError
from update_server.migrations import schema_problem
from update_server.publication.errors import PublicationError
from update_server.publication.repository import OnlineRepository

logger = logging.getLogger(__name__)

#: What loading a signer can raise when its key cannot be used as configured.
KEY_ERRORS = (
    KeyConfigError,
    KeyRefError,
    HSMError,
    ServerError,
    SecuritySystemsLibError,
    ValueError,
    OSError,
)
#: The online roles whose keys root must trust (Y3).
ROOT_LISTED = (Snapshot.type, Timestamp.type)


class Check(StrEnum):
    DATABASE = "database"
    REPOSITORY = "repository"
    ONLINE_KEYS = "online_keys"


@dataclass(frozen=True)
class Readiness:
    """Each check's failure (None: it passed), for the answer and the status."""

    failures: dict[Check, str | None]

    @property
    def ready(self) -> bool:
        return all(reason is None for reason in self.failures.values())

    @property
    def failed(self) -> list[str]:
        return [check.value for check, reason in self.failures.items() if reason is not None]

    def to_json(self) -> dict[str, Any]:
        """What ``/readyz`` answers: ok or failed, per check (Y: no reasons, it is public)."""
        return {
            "ready": self.ready,
            "checks": {
                check.value: "ok" if reason is None else "failed"
                for check, reason in self.failures.items()
            },
        }


def readiness(services: Services, db: Session) -> Readiness:
    """Y1-Y3, each failure logged with its reason."""
    repo = OnlineRepository(services.config.repository_dir, now=services.clock())
    failures = {
        Check.DATABASE: database_problem(db),
        Check.REPOSITORY: repository_problem(repo),
        Check.ONLINE_KEYS: online_keys_problem(services, repo),
    }
    for check, reason in failures.items():
        if reason is not None:
            logger.warning("not ready: %s: %s", check.value, reason)
    return Readiness(failures)


def database_problem(db: Session) -> str | None:
    """Y1."""
    try:
        problem = schema_problem(db.connection())
    except SQLAlchemyError as exc:
        db.rollback()
        # The driver's complaint only: a database error's text may quote parameters.
        return f"the database does not answer ({type(exc).__name__})"
    return None if problem is None else str(problem)


def repository_problem(repo: OnlineRepository) -> str | None:
    """Y2."""
    try:
        repo.require_initialised()
        for role in (Root.type, Timestamp.type):
            if repo.published(role) is None:
                return f"no published {role}"
    except (PublicationError, OSError, ValueError) as exc:
        return str(exc)
    return None


def online_keys_problem(services: Services, repo: OnlineRepository) -> str | None:
    """Y3 (the root comparison needs Y2: without a root, only the loading is checked)."""
    trusted = _trusted_by_root(repo)
    problems = []
    for role in sorted(services.config.online_keys):
        try:
            keyid = services.signer(role).public_key.keyid
        except KEY_ERRORS as exc:
            problems.append(f"{role}: {exc}")
            continue
        if trusted is not None and role in ROOT_LISTED and keyid not in trusted[role]:
            problems.append(f"{role}: key {keyid[:12]} is not the one root trusts for {role}")
    missing = [role for role in ROOT_LISTED if role not in services.config.online_keys]
    problems += [f"{role}: no online key configured" for role in missing]
    return "; ".join(problems) or None


def _trusted_by_root(repo: OnlineRepository) -> dict[str, list[str]] | None:
    try:
        root = repo.published(Root.type) if repo.is_initialised() else None
    except (PublicationError, OSError, ValueError):
        return None
    if root is None:
        return None
    return {role: list(root.signed.roles[role].keyids) for role in ROOT_LISTED}
