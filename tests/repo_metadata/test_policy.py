"""Role policy: defaults from the key table, overrides, and policy.json errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from repo_metadata.errors import InvalidFieldError
from repo_metadata.policy import DEFAULT_ROLE_POLICY, DELEGATION, Policy, RolePolicy
from repo_metadata.validation import parse_json_strict


@pytest.mark.parametrize(
    ("role", "threshold", "days"),
    [
        ("root", 2, 365),
        ("targets", 1, 182),
        ("pump-x100", 2, 91),
        ("bin-0a", 2, 91),
        ("snapshot", 1, 7),
        ("timestamp", 1, 1),
    ],
)
def test_defaults_follow_the_key_table(role: str, threshold: int, days: int) -> None:
    assert Policy().for_role(role) == RolePolicy(threshold, timedelta(days=days))


def test_override_changes_one_kind_and_returns_a_new_policy() -> None:
    base = Policy()
    changed = base.with_override(DELEGATION, threshold=3)
    assert changed.for_role("pump-x100") == RolePolicy(3, timedelta(days=91))
    assert base.for_role("pump-x100") == DEFAULT_ROLE_POLICY[DELEGATION]
    assert {k: changed.roles[k] for k in changed.roles if k != DELEGATION} == {
        k: v for k, v in DEFAULT_ROLE_POLICY.items() if k != DELEGATION
    }
    assert changed.with_override("timestamp", expiry_days=0.5).for_role("timestamp") == RolePolicy(
        1, timedelta(hours=12)
    )


def test_json_round_trip() -> None:
    policy = Policy().with_override("root", threshold=3, expiry_days=200)
    assert Policy.from_json(parse_json_strict(policy.dumps().encode())) == policy


def test_from_json_applies_partial_overrides() -> None:
    policy = Policy.from_json({"snapshot": {"expiry_seconds": 3600}, "targets": {"threshold": 2}})
    assert policy.for_role("snapshot") == RolePolicy(1, timedelta(hours=1))
    assert policy.for_role("targets") == RolePolicy(2, timedelta(days=182))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (["root"], "policy"),
        ({"mirror": {"threshold": 1}}, "policy"),
        ({"root": 2}, "policy.root"),
        ({"root": {"threshold": 2, "expires": 5}}, "policy.root"),
        ({"root": {"expiry_seconds": "3600"}}, "policy.root.expiry_seconds"),
        ({"root": {"expiry_seconds": True}}, "policy.root.expiry_seconds"),
        ({"root": {"expiry_seconds": 0}}, "expiry"),
        ({"root": {"expiry_seconds": -60}}, "expiry"),
        ({"root": {"expiry_seconds": 5 * 365 * 86400 + 1}}, "expiry"),
        ({"root": {"expiry_seconds": 10**20}}, "expiry"),
        ({"root": {"threshold": 0}}, "threshold"),
        ({"root": {"threshold": True}}, "threshold"),
        ({"root": {"threshold": "2"}}, "threshold"),
    ],
    ids=repr,
)
def test_from_json_errors_name_the_field(data: Any, field: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        Policy.from_json(data)
    assert caught.value.field == field


@pytest.mark.parametrize("days", [float("nan"), 1e300, -1.0])
def test_override_with_an_impossible_expiry_is_refused(days: float) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        Policy().with_override("root", expiry_days=days)
    assert caught.value.field == "expiry"
