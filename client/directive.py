"""What the update server tells a registered device at each poll: its directive (issue 11).

``GET /api/v1/device/poll`` (``client.device_api``, signed by the device key)
answers one JSON object::

    {"mode": "normal" | "frozen",
     "install": "assigned" | "newest",
     "assignment": null | {"deployment": <int> | null, "target_path": <str>,
                           "sha256": <64 hex>, "version": <str>},
     "window": null | {"opens": <ISO 8601 UTC>, "closes": <ISO 8601 UTC>}}

Rules:

- P1 The answer is parsed strictly (``parse``): exactly those keys, known
  values only, a positive deployment number or null (P7), a target path relative to the
  repository, a lowercase 64-hex SHA-256, a semantic version, times with a
  UTC offset and ``opens`` before ``closes``. Anything else is a
  ``DirectiveError`` naming the field, what was wrong and what was expected.
- P2 A directive is advice, never trust (R13). TUF verifies the metadata,
  and the install policy (``client.policy`` rule 8) takes an assigned target
  only if it is signed with exactly that path and SHA-256 and passes every
  other rule. A lying server can delay an update or name one the device
  refuses; it can never make the device install older, unsigned or other
  bytes. The assignment's ``version`` is the server's label: the signed
  ``FirmwareInfo`` is what the policy reads.
- P3 Fail closed: a registered device that gets no valid answer (the server
  unreachable, a refusal, a malformed answer) follows ``Directive.no_answer``
  for this poll: it installs nothing new, logs why (``poll_unanswered``) and
  still refreshes its metadata, so rules 6 and 7 of the policy (a
  contradicted or withdrawn running release) are still reported.
- P4 A device that is not registered has no server to ask: ``STANDALONE``
  (the newest eligible release, as before deployments existed). There is no
  default: every ``update``, ``check`` and ``choose`` names its directive or
  selection (a security policy is a required argument).
- P5 ``frozen`` (the server's failsafe freeze, R24, R40): the device
  refreshes its metadata (so it sees no freeze attack and its reports stay
  true), installs and activates nothing (a signed recovery included),
  keeps its verified firmware, reports rules 6 and 7 as in any poll, and
  logs ``server_frozen`` once per poll. The boot path is not the server's:
  a reboot still tries a pending slot, and a failed health check still
  rolls back.
- P6 The maintenance window is scheduling, not security: the device's own
  (session) clock decides whether it is open (``Window.is_open``). A wrong
  clock can only activate early or late, never install what the policy
  refuses, and the clinical-use guard (``client.readiness``) still decides
  after it. Outside the window the firmware is downloaded and verified into
  the inactive slot and its activation deferred (``deferred_window``).
- P7 ``"deployment": null`` is the server's own offer to leave a withdrawn
  release (R56, R57): the successor of the release this device runs, which
  the signed set no longer lists, with no deployment behind it. It is an
  assignment like any other (P2, policy rule 8: signed with exactly that
  path and SHA-256, newer, rules 1-5); a device the server does not offer
  one still reports its running release missing from the signed set
  (policy rule 7).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from client.errors import ClientError
from client.events import EventType
from repo_metadata.semver import SemVer

logger = logging.getLogger(__name__)

_KEYS = frozenset({"mode", "install", "assignment", "window"})
_ASSIGNMENT_KEYS = frozenset({"deployment", "target_path", "sha256", "version"})
_WINDOW_KEYS = frozenset({"opens", "closes"})
_E = TypeVar("_E", bound=StrEnum)
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
#: Longest target path accepted (a repository path, not a document).
MAX_PATH = 255


class DirectiveError(ClientError):
    """P1: the server's poll answer is not a directive; the message says what is wrong."""

    event = EventType.POLL_UNANSWERED


class ServerMode(StrEnum):
    NORMAL = "normal"
    #: P5: the failsafe freeze.
    FROZEN = "frozen"


class Install(StrEnum):
    """The per-fleet (hardware model) setting."""

    #: Only what a deployment assigns to this device (the default for every model).
    ASSIGNED = "assigned"
    #: The newest eligible release, as an unregistered device takes.
    NEWEST = "newest"


@dataclass(frozen=True)
class Assignment:
    """The signed target a deployment assigns to this device now (P2: to be verified)."""

    #: P7: None for the server's offer to leave a withdrawn release.
    deployment: int | None
    target_path: str
    sha256: str
    version: str


@dataclass(frozen=True)
class Selection:
    """Which signed candidates the install policy may choose from (policy rule 8)."""

    install: Install
    assignment: Assignment | None = None


#: P4: the newest eligible release.
NEWEST = Selection(Install.NEWEST)


@dataclass(frozen=True)
class Window:
    """The maintenance window open now or opening next: activation when opens <= now < closes."""

    opens: datetime
    closes: datetime

    def is_open(self, at: datetime) -> bool:
        """P6: whether an activation at ``at`` (the device's session time) falls inside."""
        return self.opens <= at < self.closes

    def describe(self) -> str:
        return f"{self.opens.isoformat()} to {self.closes.isoformat()}"


@dataclass(frozen=True)
class Directive:
    """What this poll follows: the server's mode, the selection, the window."""

    mode: ServerMode
    selection: Selection
    window: Window | None = None
    #: P3: why no answer of the server is followed (None: one is, or none was asked).
    unanswered: str | None = None

    @classmethod
    def no_answer(cls, reason: str) -> Directive:
        """P3: a registered device without a valid answer installs nothing new."""
        return cls(ServerMode.NORMAL, Selection(Install.ASSIGNED), unanswered=reason)

    @property
    def frozen(self) -> bool:
        return self.mode is ServerMode.FROZEN


#: P4: a device with no server to ask (not registered).
STANDALONE = Directive(ServerMode.NORMAL, NEWEST)


def obtain(poll: Callable[[], Directive]) -> Directive:
    """P3: the directive ``poll`` gets from the server, or ``no_answer`` with the reason."""
    try:
        return poll()
    except ClientError as exc:
        logger.info("poll: no valid directive: %s", exc)  # the event log and the result say it
        return Directive.no_answer(str(exc))


def parse(answer: object) -> Directive:
    """P1: the server's poll answer as a ``Directive``, or ``DirectiveError``."""
    body = _object(answer, "the poll answer", _KEYS)
    mode = _choice(body["mode"], ServerMode, "mode")
    install = _choice(body["install"], Install, "install")
    assignment = body["assignment"]
    window = body["window"]
    return Directive(
        mode,
        Selection(install, None if assignment is None else _assignment(assignment)),
        None if window is None else _window(window),
    )


def _object(value: object, what: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DirectiveError(f"{what} is not a JSON object")
    if value.keys() != keys:
        missing = ", ".join(sorted(keys - value.keys())) or "none"
        unknown = ", ".join(sorted(value.keys() - keys)) or "none"
        raise DirectiveError(
            f"{what} must hold exactly {', '.join(sorted(keys))} (missing: {missing};"
            f" unknown: {unknown})"
        )
    return value


def _choice(value: object, kind: type[_E], field: str) -> _E:
    for member in kind:
        if value == member.value:
            return member
    known = ", ".join(member.value for member in kind)
    raise DirectiveError(f"{field} {value!r} is not one of: {known}")


def _assignment(value: object) -> Assignment:
    body = _object(value, "assignment", _ASSIGNMENT_KEYS)
    deployment = body["deployment"]
    if deployment is not None and (
        isinstance(deployment, bool) or not isinstance(deployment, int) or deployment < 1
    ):
        raise DirectiveError(
            f"assignment.deployment {deployment!r} is not a positive integer or null"
        )
    return Assignment(
        deployment,
        _target_path(body["target_path"]),
        _sha256(body["sha256"]),
        _version(body["version"]),
    )


def _target_path(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_PATH
        or value.startswith("/")
        or "\\" in value
        or any(part in {"", ".", ".."} for part in value.split("/"))
        or not value.isprintable()
    ):
        raise DirectiveError(
            f"assignment.target_path {value!r} is not a target path (relative, at most"
            f" {MAX_PATH} characters, no empty, '.' or '..' part)"
        )
    return value


def _sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise DirectiveError(f"assignment.sha256 {value!r} is not 64 lowercase hex digits")
    return value


def _version(value: object) -> str:
    try:
        SemVer.parse(value)  # type: ignore[arg-type]
    except ValueError:
        raise DirectiveError(f"assignment.version {value!r} is not a semantic version") from None
    return str(value)


def _window(value: object) -> Window:
    body = _object(value, "window", _WINDOW_KEYS)
    opens, closes = _time(body["opens"], "window.opens"), _time(body["closes"], "window.closes")
    if not opens < closes:
        raise DirectiveError(f"window.opens {opens.isoformat()} is not before window.closes")
    return Window(opens, closes)


def _time(value: object, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() != timedelta(0):
        raise DirectiveError(
            f"{field} {value!r} is not an ISO 8601 time in UTC (e.g. 2030-05-04T22:00:00Z)"
        )
    return parsed
