"""``repo_metadata.frontier``: which releases a product line lists as current.

A device reads only the line's list, so a release wrongly left out is one no
device installs (a missed security fix, R25), and a copy that differs from
its bin is a mix-and-match the server and signer must refuse.
"""

from __future__ import annotations

from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from repo_metadata.errors import UpdateRejectedError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.frontier import (
    check_complete,
    check_copies,
    check_covered,
    current_releases,
    supersedes,
    with_release,
)

MODEL = "pump-x100"


def fw(version: str, **fields: Any) -> FirmwareInfo:
    fields.setdefault("security_version", 1)
    fields.setdefault("hardware_models", (MODEL,))
    return FirmwareInfo(version=version, **fields)


def target(version: str, **fields: Any) -> TargetFile:
    info = fw(version, **fields)
    path = f"{MODEL}/fw-{version}.bin"
    return TargetFile(10, {"sha256": "ab" * 32}, path, {"custom": info.to_custom()})


def sbom(path: str) -> TargetFile:
    return TargetFile(5, {"sha256": "cd" * 32}, path, {})


def test_a_newer_release_with_the_same_rules_supersedes() -> None:
    assert supersedes(fw("2.0.0"), fw("1.0.0"))
    assert not supersedes(fw("1.0.0"), fw("2.0.0"))
    assert not supersedes(fw("1.0.0"), fw("1.0.0"))


@pytest.mark.parametrize(
    ("new", "old", "why"),
    [
        (fw("2.0.0"), fw("1.0.0", hardware_models=(MODEL, "pump-x200")), "R15 fewer models"),
        (fw("2.0.0", security_version=1), fw("1.0.0", security_version=2), "R25 lower floor"),
        (fw("2.0.0", min_installed_version="1.5.0"), fw("1.0.0"), "a stepping stone"),
        (
            fw("2.0.0", min_installed_version="1.5.0"),
            fw("1.9.0", min_installed_version="1.0.0"),
            "a higher step",
        ),
        (fw("2.0.0-rc.1"), fw("1.0.0"), "a pre-release"),
        (fw("2.0.0", requires_authorization=True), fw("1.0.0"), "needs a technician"),
    ],
)
def test_a_newer_release_that_some_device_may_not_take_does_not_supersede(
    new: FirmwareInfo, old: FirmwareInfo, why: str
) -> None:
    """Every device allowed the old release must be allowed the new one (client/policy.py)."""
    assert not supersedes(new, old), why


def test_a_release_that_is_more_permissive_still_supersedes() -> None:
    old = fw("1.0.0", min_installed_version="0.9.0", requires_authorization=True)
    new = fw("2.0.0", security_version=5, hardware_models=(MODEL, "pump-x200"))
    assert supersedes(new, old)
    assert supersedes(fw("2.0.0", min_installed_version="0.5.0"), old)
    assert supersedes(fw("2.0.0"), fw("1.0.0-beta"))


def test_current_releases_keep_stepping_stones_and_drop_superseded_ones() -> None:
    """A device on 1.x needs 1.9.0 before 3.0.0 (min_installed_version 1.9.0)."""
    releases = [
        target("1.0.0"),
        target("1.9.0"),
        target("3.0.0", min_installed_version="1.9.0"),
        target("3.1.0-rc.1", min_installed_version="1.9.0"),
        sbom(f"{MODEL}/fw-3.0.0.sbom.json"),
    ]
    current = current_releases(releases)
    assert sorted(current) == [
        f"{MODEL}/fw-1.9.0.bin",
        f"{MODEL}/fw-3.0.0.bin",
        f"{MODEL}/fw-3.1.0-rc.1.bin",
    ]


def test_adding_to_the_current_releases_equals_recomputing_from_all() -> None:
    """``fwsign add`` reads only the line's list: the answer must be the full one."""
    history = [
        target("1.0.0"),
        target("1.1.0", security_version=2),
        target("1.2.0", min_installed_version="1.1.0"),
        target("1.3.0", hardware_models=("pump-x200",)),
        target("1.4.0-rc.1"),
        target("1.4.0", security_version=2),
        target("2.0.0", requires_authorization=True),
    ]
    current: dict[str, TargetFile] = {}
    for index, release in enumerate(history):
        current = with_release(current, release)
        assert current == current_releases(history[: index + 1])


def test_a_copy_that_differs_from_its_bin_is_refused() -> None:
    """Mix-and-match: the list and the bin must say the same (rule current-release-copy)."""
    release = target("2.0.0")
    other = target("2.0.0", security_version=9)
    check_copies("line", {release.path: release}, {release.path: release}.get)
    with pytest.raises(UpdateRejectedError, match="differs from its bin") as caught:
        check_copies("line", {release.path: release}, {release.path: other}.get)
    assert caught.value.rule == "current-release-copy"
    with pytest.raises(UpdateRejectedError, match="not in its bin"):
        check_copies("line", {release.path: release}, {}.get)
    with pytest.raises(UpdateRejectedError, match="not a firmware release"):
        check_copies("line", {"a/b.sbom.json": sbom("a/b.sbom.json")}, {}.get)


def test_a_release_the_list_neither_holds_nor_supersedes_is_refused() -> None:
    """A stale list would hide a new security fix from every device (current-release-missing)."""
    old, new = target("1.0.0"), target("2.0.0", security_version=2)
    check_covered("line", {new.path: new}, [old, new, sbom("x/y.sbom.json")])
    with pytest.raises(UpdateRejectedError, match="neither lists it") as caught:
        check_covered("line", {old.path: old}, [old, new])
    assert caught.value.rule == "current-release-missing"


def test_the_full_check_names_a_missing_or_an_extra_release() -> None:
    old, new = target("1.0.0"), target("2.0.0")
    check_complete("line", {new.path: new}, [old, new])
    with pytest.raises(UpdateRejectedError, match="does not list"):
        check_complete("line", {}, [old, new])
    with pytest.raises(UpdateRejectedError, match="supersedes"):
        check_complete("line", {old.path: old, new.path: new}, [old, new])
