"""The withdrawn-release rules (update_server.deployments.withdrawn WD1-WD4; R56, R57), pure."""

from __future__ import annotations

from repo_metadata.firmware import FirmwareInfo
from repo_metadata.semver import SemVer
from update_server.authorizations.issuing import Release
from update_server.deployments.withdrawn import running_withdrawn, successor

PUMP = "pump-x100"


def release(
    version: str,
    *,
    security: int = 1,
    models: tuple[str, ...] = (PUMP,),
    min_installed: str | None = None,
) -> Release:
    info = FirmwareInfo(
        version=version,
        security_version=security,
        hardware_models=models,
        min_installed_version=min_installed,
    )
    return Release(f"{models[0]}/fw-{version}.bin", "ab" * 32, info)


def once(*versions: str) -> frozenset[SemVer]:
    return frozenset(SemVer.parse(version) for version in versions)


def withdrawn(releases: list[Release], running: str | None, ever: frozenset[SemVer]) -> bool | None:
    return running_withdrawn(
        releases, hardware_model=PUMP, running_version=running, once_signed=ever
    )


def test_wd2_a_once_signed_version_no_longer_signed_is_withdrawn_whatever_is_newer() -> None:
    assert withdrawn([release("2.1.0")], "2.0.0", once("2.0.0", "2.1.0")) is True


def test_wd2_a_version_still_signed_is_not_withdrawn() -> None:
    assert withdrawn([release("2.0.0"), release("2.1.0")], "2.0.0", once("2.0.0")) is False


def test_wd2_a_factory_version_never_signed_with_a_newer_release_is_only_behind() -> None:
    assert withdrawn([release("2.1.0")], "1.0.0", once("2.1.0")) is False


def test_wd1_nothing_signed_for_it_nor_newer_is_flagged_as_the_device_itself_would() -> None:
    assert withdrawn([release("1.5.0")], "2.0.0", once()) is True
    # A newer release for another model, or a pre-release, takes no device off it.
    other = release("3.0.0", models=("monitor-m20",))
    assert withdrawn([other, release("2.1.0-rc.1")], "2.0.0", once()) is True


def test_wd3_an_unknown_or_unreadable_running_version_is_unknown() -> None:
    assert withdrawn([release("2.1.0")], None, once("2.0.0")) is None
    assert withdrawn([release("2.1.0")], "two", once("2.0.0")) is None


def successor_of(
    releases: list[Release], running: str = "2.0.0", floor: int | None = 1
) -> str | None:
    found = successor(releases, hardware_model=PUMP, running_version=running, security_floor=floor)
    return None if found is None else found.info.version


def test_wd4_the_successor_is_the_newest_higher_release_for_the_model() -> None:
    assert successor_of([release("1.9.0"), release("2.1.0"), release("2.2.0")]) == "2.2.0"


def test_wd4_only_a_higher_version() -> None:
    assert successor_of([release("1.9.0"), release("2.0.0")]) is None


def test_wd4_never_below_the_devices_security_floor() -> None:
    low, high = release("2.2.0", security=1), release("2.1.0", security=3)
    assert successor_of([low, high], floor=3) == "2.1.0"
    assert successor_of([low], floor=3) is None
    # None reported: the device's own floor (policy rule 2) still decides.
    assert successor_of([low], floor=None) == "2.2.0"


def test_wd4_never_a_pre_release() -> None:
    assert successor_of([release("2.1.0"), release("2.2.0-rc.1")]) == "2.1.0"
    assert successor_of([release("2.2.0-rc.1")]) is None


def test_wd4_never_a_release_for_another_model() -> None:
    other = release("3.0.0", models=("monitor-m20",))
    assert successor_of([other, release("2.1.0")]) == "2.1.0"
    both = release("3.1.0", models=("monitor-m20", PUMP))
    assert successor_of([other, both]) == "3.1.0"


def test_wd4_its_min_installed_version_is_met_by_the_running_one() -> None:
    needs = release("3.0.0", min_installed="2.1.0")
    assert successor_of([needs, release("2.1.0")]) == "2.1.0"
    assert successor_of([needs]) is None
    assert successor_of([release("3.0.0", min_installed="2.0.0")]) == "3.0.0"


def test_wd4_an_unknown_running_version_has_no_successor() -> None:
    assert successor_of([release("2.1.0")], running="two") is None
