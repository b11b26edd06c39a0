"""Role policy: how many signatures each role needs and how long it lives.

Defaults follow the key table in ARCHITECTURE.md: root 2-of-N and one year,
targets 1-of-N and six months, delegated product-line roles 2-of-N (four eyes,
R9) and three months, the online snapshot a week and the timestamp a day. A
repository may override them (``policy.json`` in its directory); an override
can never set a threshold below 1 or an expiry that is not positive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from repo_metadata.errors import InvalidFieldError
from repo_metadata.paths import TOP_LEVEL_ROLES

#: The policy key used for every delegated (product-line or bin) role.
DELEGATION = "delegation"
POLICY_ROLES = (*sorted(TOP_LEVEL_ROLES), DELEGATION)
MAX_EXPIRY_DAYS = 5 * 365


@dataclass(frozen=True)
class RolePolicy:
    """Threshold and lifetime of one kind of role."""

    threshold: int
    expiry: timedelta

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise InvalidFieldError("threshold", "must be an integer")
        if self.threshold < 1:
            raise InvalidFieldError("threshold", "must be at least 1")
        if not timedelta(0) < self.expiry <= timedelta(days=MAX_EXPIRY_DAYS):
            raise InvalidFieldError(
                "expiry", f"must be between 1 second and {MAX_EXPIRY_DAYS} days"
            )


DEFAULT_ROLE_POLICY: Mapping[str, RolePolicy] = MappingProxyType(
    {
        "root": RolePolicy(2, timedelta(days=365)),
        "targets": RolePolicy(1, timedelta(days=182)),
        DELEGATION: RolePolicy(2, timedelta(days=91)),
        "snapshot": RolePolicy(1, timedelta(days=7)),
        "timestamp": RolePolicy(1, timedelta(days=1)),
    }
)


@dataclass(frozen=True)
class Policy:
    """The policy of one repository: defaults with its overrides applied."""

    roles: Mapping[str, RolePolicy] = field(default_factory=lambda: DEFAULT_ROLE_POLICY)

    def for_role(self, role: str) -> RolePolicy:
        """Policy of ``role``; every non-top-level role is a delegation."""
        return self.roles[role if role in TOP_LEVEL_ROLES else DELEGATION]

    def with_override(
        self, kind: str, *, threshold: int | None = None, expiry_days: float | None = None
    ) -> Policy:
        """A new policy where ``kind`` has the given threshold and/or expiry."""
        if kind not in POLICY_ROLES:
            raise InvalidFieldError("policy", f"unknown role kind {kind!r}; one of {POLICY_ROLES}")
        if expiry_days is not None and not 0 < expiry_days <= MAX_EXPIRY_DAYS:
            # Checked before timedelta(), which overflows on huge values.
            raise InvalidFieldError(
                "expiry", f"must be between 1 second and {MAX_EXPIRY_DAYS} days"
            )
        current = self.roles[kind]
        updated = replace(
            current,
            threshold=current.threshold if threshold is None else threshold,
            expiry=current.expiry if expiry_days is None else timedelta(days=expiry_days),
        )
        return Policy(MappingProxyType({**self.roles, kind: updated}))

    def to_json(self) -> dict[str, Any]:
        return {
            kind: {"threshold": rp.threshold, "expiry_seconds": int(rp.expiry.total_seconds())}
            for kind, rp in self.roles.items()
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """Parse a ``policy.json`` object; unknown kinds or fields are errors."""
        if not isinstance(data, Mapping):
            raise InvalidFieldError("policy", "must be an object")
        policy = cls()
        for kind, entry in data.items():
            if not isinstance(entry, Mapping) or set(entry) - {"threshold", "expiry_seconds"}:
                raise InvalidFieldError(
                    f"policy.{kind}", "must be an object with threshold and expiry_seconds"
                )
            seconds = entry.get("expiry_seconds")
            if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
                raise InvalidFieldError(f"policy.{kind}.expiry_seconds", "must be an integer")
            policy = policy.with_override(
                kind,
                threshold=entry.get("threshold"),
                expiry_days=None if seconds is None else seconds / 86400,
            )
        return policy

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
