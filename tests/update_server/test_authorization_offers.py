"""What a device is offered to authorize (update_server.authorizations.offers, O1 to O3).

The page must offer what the device would wait for, and nothing it would
refuse or install by itself (R9: a technician authorizes only what is needed).
"""

from __future__ import annotations

from repo_metadata.firmware import FirmwareInfo
from tests.update_server.repo_world import World
from update_server.authorizations import issuing
from update_server.authorizations.issuing import Release
from update_server.authorizations.offers import offered, published_releases
from update_server.publication.repository import OnlineRepository

PUMP = "pump-x100"


def release(
    version: str,
    *,
    model: str = PUMP,
    authorization: bool = True,
    security: int = 1,
    needs: str | None = None,
) -> Release:
    info = FirmwareInfo(
        version=version,
        security_version=security,
        hardware_models=(model,),
        requires_authorization=authorization,
        min_installed_version=needs,
    )
    return Release(f"{model}/fw-{version}.bin", "ab" * 32, info)


def offer(releases: list[Release], running: str | None = "1.0.0", floor: int | None = 0) -> str:
    chosen = offered(releases, hardware_model=PUMP, running_version=running, security_floor=floor)
    return "-" if chosen is None else chosen.info.version


def test_the_newest_release_for_the_model_that_needs_an_authorization_is_offered_o1_o2() -> None:
    releases = [release("2.0.0"), release("3.0.0"), release("9.0.0", model="monitor-m20")]
    assert offer(releases) == "3.0.0"


def test_nothing_is_offered_for_what_the_device_runs_or_an_older_release_o1() -> None:
    assert offer([release("1.0.0"), release("0.9.0")]) == "-"


def test_a_release_that_needs_no_authorization_is_not_offered_the_device_takes_it_itself_o2() -> (
    None
):
    assert offer([release("2.0.0"), release("3.0.0", authorization=False)]) == "-"
    assert offer([release("2.0.0", authorization=False), release("3.0.0")]) == "3.0.0"


def test_a_downgrade_below_the_security_floor_is_never_offered_r25_o1() -> None:
    assert offer([release("2.0.0", security=1)], floor=2) == "-"
    assert offer([release("2.0.0", security=2)], floor=2) == "2.0.0"


def test_a_pre_release_is_not_offered_o1() -> None:
    assert offer([release("2.0.0"), release("3.0.0-rc.1")]) == "2.0.0"


def test_an_unmet_prerequisite_offers_the_intermediate_release_instead_o1() -> None:
    releases = [release("2.0.0"), release("3.0.0", needs="2.0.0")]
    assert offer(releases, running="1.0.0") == "2.0.0"
    assert offer(releases, running="2.0.0") == "3.0.0"


def test_a_device_that_never_reported_its_version_is_offered_the_newest_o1() -> None:
    releases = [release("2.0.0"), release("3.0.0", needs="2.0.0")]
    assert offer(releases, running=None, floor=None) == "2.0.0"
    assert offer(releases, running="not a version") == "2.0.0"


def test_the_published_releases_are_read_as_the_issuing_binds_them_o3(world: World) -> None:
    for version, needs in (("2.0.0", True), ("2.1.0", False)):
        upload = world.release("alice", version, requires_authorization=needs)
        assert world.publish("alice", upload).status_code == 200
    repository = OnlineRepository(world.repository, now=world.now)
    releases = {release.path: release for release in published_releases(repository)}
    assert set(releases) == {f"{PUMP}/fw-2.0.0.bin", f"{PUMP}/fw-2.1.0.bin"}
    for path, found in releases.items():
        assert found == issuing.published_release(repository, path)
    assert offer(list(releases.values())) == "-"  # 2.1.0 needs none: the pump takes it
