"""``delta-release`` of ``repo_metadata.repository_check`` and the walk it uses (issue 13).

A delta a change adds must rebuild a release a device's walk finds and start
from one, naming that base's signed length and SHA-256; a delta the trusted
version already held is not checked again. ``find_target`` walks as ngclient
does (TUF 5.6.7): a role's own targets first, delegations in order, a
terminating delegation ending the walk, hashed bins by the path's hash.
"""

from __future__ import annotations

from typing import Any

import pytest
from tuf.api.metadata import Metadata, TargetFile

from repo_metadata.errors import UpdateRejectedError
from repo_metadata.repository_check import Completeness, check_repository, find_target
from tests.repo_metadata.builders import (
    delegated_role,
    delegations,
    firmware_custom,
    new_key,
    succinct_delegations,
    target,
    targets_metadata,
)

BASE = "pump-x100/fw-1.0.0.bin"
IMAGE = "pump-x100/fw-1.1.0.bin"
DELTA = "pump-x100/fw-1.1.0.bin.from-1.0.0.bsdiff"


def _delta(path: str = DELTA, **fields: Any) -> TargetFile:
    delta = {
        "image": IMAGE,
        "base": BASE,
        "base_sha256": "0" * 64,
        "base_length": 4,
        "format": "bsdiff4",
        **fields,
    }
    return target(path, {"delta": delta})


def _releases() -> list[TargetFile]:
    return [
        target(BASE, firmware_custom(version="1.0.0")),
        target(IMAGE, firmware_custom(version="1.1.0")),
    ]


def _repository(line: list[TargetFile]) -> dict[str, Metadata[Any]]:
    key = new_key()
    top = targets_metadata(delegations=delegations((delegated_role("pump-x100", [key]), [key])))
    return {"targets": top, "pump-x100": targets_metadata(line)}


def _check(roles: dict[str, Metadata[Any]], before: dict[str, Metadata[Any]] | None = None) -> None:
    old = before or {}
    check_repository(
        {"pump-x100": roles["pump-x100"]},
        before=old.get,
        after=roles.get,
        completeness=Completeness.RELEASE,
    )


def test_a_delta_beside_its_releases_is_accepted() -> None:
    """delta-release: a delta beside the releases it names passes the check (R13)."""
    _check(_repository([*_releases(), _delta()]))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ([target(BASE, firmware_custom(version="1.0.0")), _delta()], "its image is not a target"),
        ([target(IMAGE, firmware_custom(version="1.1.0")), _delta()], "its base is not a target"),
        ([*_releases(), _delta(base_length=5)], "signed SHA-256 and length"),
        ([*_releases(), _delta(f"{IMAGE}.from-0.9.0.bsdiff")], "for this base"),
    ],
)
def test_a_delta_the_repository_cannot_back_is_refused(
    line: list[TargetFile], message: str
) -> None:
    """A delta against the wrong base, or of no signed release, is refused (delta-release; R13)."""
    with pytest.raises(UpdateRejectedError, match=message) as refused:
        _check(_repository(line))
    assert refused.value.rule == "delta-release"


def test_a_delta_whose_field_is_not_an_object_is_refused() -> None:
    """delta-release: a delta field that is not an object is refused (R13)."""
    with pytest.raises(UpdateRejectedError, match="its image is not a target"):
        _check(_repository([*_releases(), target(DELTA, {"delta": "x"})]))


def test_a_delta_the_trusted_version_already_held_is_not_checked_again() -> None:
    """A change to a role keeps its old deltas as they were trusted (one rule, checked once)."""
    dangling = _delta(image="pump-x100/fw-0.1.0.bin", path="pump-x100/fw-0.1.0.bin.x.bsdiff")
    trusted = _repository([dangling])
    changed = _repository([dangling, *_releases()])
    _check(changed, before=trusted)


def test_find_target_reads_a_roles_own_targets_before_its_delegations() -> None:
    """TUF 5.6.7: find_target reads a role's own targets before its delegations."""
    roles = _repository(_releases())
    roles["targets"].signed.targets[BASE] = target(BASE, firmware_custom(version="0.0.1"))
    found = find_target(roles.get, BASE)
    assert found is not None
    assert found.custom["version"] == "0.0.1"
    assert find_target(roles.get, IMAGE) is not None
    assert find_target(roles.get, "pump-x100/absent.bin") is None
    assert find_target(roles.get, 5) is None


def test_find_target_stops_at_a_terminating_delegation() -> None:
    """TUF 5.6.7: after a terminating role that does not sign the path, no other role is asked."""
    key = new_key()
    first = delegated_role("beta", [key], paths=["pump-x100/*"])
    first.terminating = True
    second = delegated_role("pump-x100", [key])
    top = targets_metadata(delegations=delegations((first, [key]), (second, [key])))
    roles = {"targets": top, "beta": targets_metadata(), "pump-x100": targets_metadata(_releases())}
    assert find_target(roles.get, BASE) is None
    first.terminating = False
    assert find_target(roles.get, BASE) is not None


def test_find_target_reads_the_one_hashed_bin_of_a_path() -> None:
    """TUF 5.6.7: find_target reads only the hashed bin a path hashes to."""
    key = new_key()
    line = targets_metadata(delegations=succinct_delegations(bit_length=2, prefix="line-bins"))
    bins = line.signed.delegations.succinct_roles  # type: ignore[union-attr]
    top = targets_metadata(delegations=delegations((delegated_role("line", [key]), [key])))
    roles: dict[str, Metadata[Any]] = {"targets": top, "line": line}
    roles[bins.get_role_for_target(BASE)] = targets_metadata(_releases())
    asked: list[str] = []

    def lookup(name: str) -> Metadata[Any] | None:
        asked.append(name)
        return roles.get(name)

    assert find_target(lookup, BASE) is not None
    assert asked == ["targets", "line", bins.get_role_for_target(BASE)]


def test_find_target_visits_each_role_once_and_skips_a_missing_one() -> None:
    """TUF 5.6.7: find_target visits each role once and skips a missing one."""
    key = new_key()
    role = delegated_role("pump-x100", [key])
    elsewhere = delegated_role("monitor", [key], paths=["monitor-m20/*"])
    top = targets_metadata(delegations=delegations((elsewhere, [key]), (role, [key])))
    looping = targets_metadata(delegations=delegations((role, [key])))
    assert find_target({"targets": top, "pump-x100": looping}.get, BASE) is None
    assert find_target({"targets": top}.get, BASE) is None
