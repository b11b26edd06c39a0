"""The delta target schema: every invalid field is named (issue 13, repo_metadata/delta.py DI1-DI7).

A delta target only says which bytes it starts from; these tests hold it to
one shape so it can never pass for a release (an install candidate) and
never name a base other than the signed release it claims.
"""

from __future__ import annotations

from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from repo_metadata.delta import DeltaInfo, check_delta_target, delta_path, is_delta
from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo
from tests.repo_metadata.builders import firmware_custom, target

IMAGE = "pump-x100/infusion-1.3.0.bin"
BASE = "pump-x100/infusion-1.2.0.bin"
DELTA = "pump-x100/infusion-1.3.0.bin.from-1.2.0.bsdiff"
SHA = "0" * 64  # the builders' target hash


def fields(**overrides: Any) -> dict[str, Any]:
    return {
        "image": IMAGE,
        "base": BASE,
        "base_sha256": SHA,
        "base_length": 4,
        "format": "bsdiff4",
        **overrides,
    }


def delta_target(path: str = DELTA, **overrides: Any) -> TargetFile:
    return target(path, {"delta": fields(**overrides)})


def releases() -> tuple[TargetFile, TargetFile]:
    return target(IMAGE, firmware_custom(version="1.3.0")), target(BASE, firmware_custom())


def test_round_trip_through_custom_keeps_every_field() -> None:
    """DI1: the delta field round-trips through a target's custom metadata."""
    info = DeltaInfo(image=IMAGE, base=BASE, base_sha256=SHA, base_length=4)
    assert info.to_custom() == {"delta": fields()}
    assert DeltaInfo.from_custom(info.to_custom()) == info
    assert DeltaInfo.from_target(delta_target()) == info


def test_delta_path_is_the_release_path_and_base_version() -> None:
    """DI6: a delta's path is its release's path and its base version."""
    assert delta_path(IMAGE, "1.2.0") == DELTA
    assert delta_path(IMAGE, "1.2.0-rc.1+b.7").endswith(".bin.from-1.2.0-rc.1+b.7.bsdiff")


@pytest.mark.parametrize(("image", "version"), [(IMAGE, "1.2"), (IMAGE, "../x"), ("/abs", "1.0.0")])
def test_delta_path_refuses_a_bad_version_or_image(image: str, version: str) -> None:
    """DI6: no delta path is made from a bad version or image."""
    with pytest.raises(InvalidFieldError):
        delta_path(image, version)


def test_is_delta_tells_a_delta_from_a_release() -> None:
    """DI1: a delta target is told from a release, never an install candidate (R13)."""
    assert is_delta(delta_target())
    assert not is_delta(releases()[0])


def test_di1_a_delta_field_beside_firmware_fields_is_refused() -> None:
    """A delta must never pass for an install candidate (TUF: arbitrary software)."""
    custom = {**firmware_custom(), "delta": fields()}
    with pytest.raises(InvalidFieldError, match="may not sit beside a delta field"):
        DeltaInfo.from_custom(custom)
    with pytest.raises(InvalidFieldError, match="delta: is not a firmware field"):
        FirmwareInfo.from_custom({"delta": fields()})


@pytest.mark.parametrize(
    ("custom", "field"),
    [
        ([], "custom"),
        ({}, "delta"),
        ({"delta": "x"}, "delta"),
        ({"delta": fields(extra=1)}, "delta.extra"),
        ({"delta": {k: v for k, v in fields().items() if k != "base"}}, "delta.base"),
        ({"delta": fields(image="/etc/passwd")}, "delta.image"),
        ({"delta": fields(image=5)}, "delta.image"),
        ({"delta": fields(base="a/../b.bin")}, "delta.base"),
        ({"delta": fields(base=IMAGE)}, "delta.base"),
        ({"delta": fields(base_sha256="AB" * 32)}, "delta.base_sha256"),
        ({"delta": fields(base_sha256=SHA + "\n")}, "delta.base_sha256"),
        ({"delta": fields(base_sha256=5)}, "delta.base_sha256"),
        ({"delta": fields(base_length=-1)}, "delta.base_length"),
        ({"delta": fields(base_length=True)}, "delta.base_length"),
        ({"delta": fields(base_length="4")}, "delta.base_length"),
        ({"delta": fields(format="xdelta3")}, "delta.format"),
    ],
)
def test_di2_to_di5_each_invalid_field_is_named(custom: Any, field: str) -> None:
    """DI2-DI5: each invalid field of the delta is refused by name."""
    with pytest.raises(InvalidFieldError) as caught:
        DeltaInfo.from_custom(custom)
    assert caught.value.field == field


def test_from_target_names_the_target_and_field() -> None:
    """DI1: a refusal names the target and the field."""
    with pytest.raises(InvalidFieldError) as caught:
        DeltaInfo.from_target(delta_target(base_length=-1))
    assert caught.value.field == f"{DELTA}: delta.base_length"


@pytest.mark.parametrize(
    "path", ["pump-x100/other.bin.from-1.2.0.bsdiff", f"{IMAGE}.from-1.2.0.patch", IMAGE]
)
def test_di6_a_delta_not_named_after_its_image_is_refused(path: str) -> None:
    """DI6: a delta's path must name its image and base (R13)."""
    with pytest.raises(InvalidFieldError, match="must be named"):
        DeltaInfo.from_target(delta_target(path))


def test_di7_a_delta_matching_its_signed_releases_is_accepted() -> None:
    """DI7: a delta naming its signed image and base as signed is accepted (R13)."""
    image, base = releases()
    assert check_delta_target(delta_target(), image, base).base == BASE


def test_di7_a_delta_given_other_releases_than_it_names_is_refused() -> None:
    """DI7: a delta checked against other releases than it names is refused (R13)."""
    image, base = releases()
    with pytest.raises(InvalidFieldError, match=r"delta\.image: names"):
        check_delta_target(delta_target(), base, base)
    with pytest.raises(InvalidFieldError, match=r"delta\.base: names"):
        check_delta_target(delta_target(), image, image)


def test_di7_a_delta_whose_image_or_base_is_not_a_release_is_refused() -> None:
    """DI7: a delta's image and base must be signed releases (R13)."""
    image, base = releases()
    not_firmware = target(BASE, {"note": "x"})
    with pytest.raises(InvalidFieldError, match="note"):
        check_delta_target(delta_target(), image, not_firmware)
    chained = target(IMAGE, {"delta": fields(image="pump-x100/a.bin")})
    with pytest.raises(InvalidFieldError, match="is a delta, not a release"):
        check_delta_target(delta_target(), chained, base)


def test_di7_a_delta_named_for_another_base_version_is_refused() -> None:
    """DI7: a delta's path and its base's version agree (R13)."""
    image, base = releases()
    with pytest.raises(InvalidFieldError, match=r"must be .*from-1\.2\.0\.bsdiff"):
        check_delta_target(delta_target(f"{IMAGE}.from-1.1.0.bsdiff"), image, base)


@pytest.mark.parametrize("overrides", [{"base_length": 5}, {"base_sha256": "1" * 64}])
def test_di7_a_delta_whose_base_is_not_the_signed_base_is_refused(
    overrides: dict[str, Any],
) -> None:
    """A delta against the wrong base: its base fileinfo must be the signed one (R13)."""
    image, base = releases()
    with pytest.raises(InvalidFieldError, match="signed SHA-256 and length"):
        check_delta_target(delta_target(**overrides), image, base)


def test_di7_a_delta_from_a_release_for_other_hardware_is_refused() -> None:
    """R15: no device runs the base and may install the image."""
    image, _ = releases()
    other = target(BASE, firmware_custom(hardware_models=["monitor-m20"]))
    with pytest.raises(InvalidFieldError, match="shares no hardware model"):
        check_delta_target(delta_target(), image, other)
