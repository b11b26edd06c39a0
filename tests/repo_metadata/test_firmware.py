"""The firmware target schema: every invalid field is named in the error."""

from __future__ import annotations

from typing import Any

import pytest

from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo, SbomRef
from repo_metadata.semver import SemVer
from tests.repo_metadata.builders import FIRMWARE_PATH, firmware_custom, target

SHA = "ab" * 32


def full_info() -> FirmwareInfo:
    return FirmwareInfo(
        version="2.1.0-rc.1",
        security_version=7,
        hardware_models=("pump-x100", "pump-x100b"),
        requires_authorization=True,
        min_installed_version="1.4.0",
        sbom=SbomRef(path="pump-x100/infusion-2.1.0.spdx.json", sha256=SHA),
        release_notes="Fixes the occlusion alarm.",
    )


def test_round_trip_through_custom_keeps_every_field() -> None:
    info = full_info()
    assert FirmwareInfo.from_custom(info.to_custom()) == info


def test_to_custom_omits_absent_optional_fields() -> None:
    info = FirmwareInfo(version="1.0.0", security_version=0, hardware_models=("m",))
    assert info.to_custom() == {
        "version": "1.0.0",
        "security_version": 0,
        "hardware_models": ["m"],
        "requires_authorization": False,
    }
    assert FirmwareInfo.from_custom(info.to_custom()) == info


def test_semver_is_the_parsed_version() -> None:
    assert full_info().semver == SemVer(2, 1, 0, ("rc", "1"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": "1.0"}, "version"),
        ({"version": "v1.0.0"}, "version"),
        ({"version": 1}, "version"),
        ({"security_version": -1}, "security_version"),
        ({"security_version": True}, "security_version"),
        ({"security_version": "3"}, "security_version"),
        ({"security_version": 3.0}, "security_version"),
        ({"hardware_models": []}, "hardware_models"),
        ({"hardware_models": "pump-x100"}, "hardware_models"),
        ({"hardware_models": ["pump-x100", "pump-x100"]}, "hardware_models"),
        ({"hardware_models": ["pump x100"]}, "hardware_models"),
        ({"hardware_models": ["-pump"]}, "hardware_models"),
        ({"hardware_models": ["pump-x100\n"]}, "hardware_models"),
        ({"hardware_models": [7]}, "hardware_models"),
        ({"hardware_models": [f"m{i}" for i in range(65)]}, "hardware_models"),
        ({"requires_authorization": "yes"}, "requires_authorization"),
        ({"requires_authorization": 1}, "requires_authorization"),
        ({"min_installed_version": "1.3.0"}, "min_installed_version"),
        ({"min_installed_version": "1.2"}, "min_installed_version"),
        ({"sbom": {"path": "/etc/sbom.json", "sha256": SHA}}, "sbom.path"),
        ({"sbom": {"path": "a/../b.json", "sha256": SHA}}, "sbom.path"),
        ({"sbom": {"path": 5, "sha256": SHA}}, "sbom.path"),
        ({"sbom": {"path": "a/b.spdx.json", "sha256": SHA.upper()}}, "sbom.sha256"),
        ({"sbom": {"path": "a/b.spdx.json", "sha256": SHA[:-1]}}, "sbom.sha256"),
        ({"sbom": {"path": "a/b.spdx.json", "sha256": SHA + "\n"}}, "sbom.sha256"),
        ({"sbom": {"path": "a/b.spdx.json"}}, "sbom"),
        ({"sbom": {"path": "a/b.spdx.json", "sha256": SHA, "x": 1}}, "sbom"),
        ({"sbom": "a/b.spdx.json"}, "sbom"),
        ({"release_notes": 5}, "release_notes"),
        ({"release_notes": "x" * 4097}, "release_notes"),
        ({"securityversion": 3}, "securityversion"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else str(value),
)
def test_invalid_field_is_named(changes: dict[str, Any], field: str) -> None:
    custom = firmware_custom(**changes)  # version 1.2.0
    with pytest.raises(InvalidFieldError) as caught:
        FirmwareInfo.from_custom(custom)
    assert caught.value.field == field


@pytest.mark.parametrize("missing", ["version", "security_version", "hardware_models"])
def test_missing_required_field_is_named(missing: str) -> None:
    custom = firmware_custom()
    del custom[missing]
    with pytest.raises(InvalidFieldError) as caught:
        FirmwareInfo.from_custom(custom)
    assert caught.value.field == missing
    assert "is missing" in str(caught.value)


def test_min_installed_version_equal_to_version_is_accepted() -> None:
    info = FirmwareInfo.from_custom(firmware_custom(min_installed_version="1.2.0"))
    assert info.min_installed_version == "1.2.0"


def test_custom_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidFieldError) as caught:
        FirmwareInfo.from_custom(["version"])  # type: ignore[arg-type]
    assert caught.value.field == "custom"


def test_from_target_names_the_target_and_the_field_once() -> None:
    with pytest.raises(InvalidFieldError) as caught:
        FirmwareInfo.from_target(target(FIRMWARE_PATH, firmware_custom(security_version=-1)))
    assert caught.value.field == f"{FIRMWARE_PATH}: security_version"
    assert str(caught.value) == f"{FIRMWARE_PATH}: security_version: must be zero or more"


def test_from_target_reads_valid_fields() -> None:
    info = FirmwareInfo.from_target(target(FIRMWARE_PATH, full_info().to_custom()))
    assert info == full_info()


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidFieldError) as caught:
        FirmwareInfo(version="1.0.0", security_version=0, hardware_models=["m"])  # type: ignore[arg-type]
    assert caught.value.field == "hardware_models"
