"""Offline bundles, the server's side (``update_server.bundles``): what one carries (R13, R25).

A bundle is only another way to carry bytes, so the tests hold it to two
standards: it carries exactly the files the device's update asks for (the
root chain after the root it trusts, timestamp, snapshot, the targets roles
its walks visit, the firmware and its SBOM: S1-S4), and a stock ngclient
whose only source is the bundle verifies and downloads the release
byte for byte. The choice of release (S5) is tested on its pure core; a
device's bundle carries no delta (S6), and a line
with hashed bins brings the bins of the releases a device may run or is given (S3, S7).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from fwcommon.bundle import MANIFEST, Bundle, BundleError
from repo_metadata.firmware import FirmwareInfo
from tests.update_server.bundle_world import (
    BundleFetcher,
    Published,
    bundle_updater,
    make_bundle,
    publish_releases,
)
from tests.update_server.repo_world import World
from tests.update_server.test_publication_deltas import (
    DELTA,
    _add_with_delta,
    _base_published,
    _publish,
)
from tests.update_server.test_publication_deltas import IMAGE as DELTA_IMAGE
from tests.update_server.test_publication_roles import _add_vent, _binned_line
from update_server.authorizations.issuing import Release
from update_server.bundles import making, selection
from update_server.bundles.errors import BadRootError, NothingToCarryError, UnknownError
from update_server.bundles.making import Request
from update_server.bundles.selection import DeviceFacts
from update_server.publication.repository import OnlineRepository

BOUND = 64 * 1024 * 1024


def _published_version(world: World, role: str) -> int:
    version = OnlineRepository(world.repository, now=world.now).published_version(role)
    assert version is not None
    return version


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def releases(world: World) -> tuple[Published, Published]:
    return publish_releases(world)


def test_a_bundle_holds_exactly_the_root_chain_roles_firmware_and_sbom_r13_r25_s1_s4(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    """Root chain after v1, timestamp, the versioned snapshot and targets, the pump line's
    role (not the monitor's), the newest release and its SBOM, under ngclient's names."""
    _, new = releases
    out = make_bundle(world, Request(hardware_model="pump-x100"), tmp_path / "b.tar")
    assert new.sbom is not None and new.sbom_path is not None
    expected = {
        MANIFEST,
        "metadata/2.root.json",
        "metadata/3.root.json",
        "metadata/timestamp.json",
        f"metadata/{_published_version(world, 'snapshot')}.snapshot.json",
        f"metadata/{_published_version(world, 'targets')}.targets.json",
        f"metadata/{_published_version(world, 'pump-x100')}.pump-x100.json",
        new.member(_sha256(new.data)),
        Published(new.sbom_path, new.sbom).member(_sha256(new.sbom)),
    }
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        assert set(bundle.names()) == expected
        assert bundle.names()[0] == MANIFEST
        manifest = bundle.manifest
        for name in expected - {MANIFEST}:
            assert bundle.read(name, limit=BOUND) == (world.repository / name).read_bytes(), name
        assert bundle.read(new.member(_sha256(new.data)), limit=BOUND) == new.data
    assert (manifest.hardware_model, manifest.device, manifest.root_from) == ("pump-x100", None, 1)
    assert manifest.release == new.path
    assert manifest.authorization is None


def test_a_stock_ngclient_on_root_1_updates_from_the_bundle_alone_r13(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    """TUF 5.3-5.7 run on the bundle's bytes only: every file the device asks for is there
    (a 404 ends the root chain only), and the firmware and SBOM verify byte for byte."""
    _, new = releases
    out = make_bundle(world, Request(hardware_model="pump-x100"), tmp_path / "b.tar")
    root_1 = (world.repository / "metadata" / "1.root.json").read_bytes()
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        updater = bundle_updater(bundle, tmp_path / "device", root_1)
        updater.refresh()
        found = updater.get_targetinfo(new.path)
        assert found is not None
        got = Path(updater.download_target(found, str(tmp_path / "fw.bin"))).read_bytes()
        assert new.sbom_path is not None
        sbom = updater.get_targetinfo(new.sbom_path)
        assert sbom is not None
        got_sbom = Path(updater.download_target(sbom, str(tmp_path / "sbom.json"))).read_bytes()
        fetcher = updater._fetcher
        assert isinstance(fetcher, BundleFetcher)
        missing = [name for name in fetcher.asked if name not in fetcher.names]
    assert got == new.data
    assert got_sbom == new.sbom
    assert missing == ["metadata/4.root.json"], "only the end of the root chain is absent"
    trusted = Metadata.from_file(str(tmp_path / "device" / "metadata" / "root.json"))
    assert trusted.signed.version == 3


def test_the_chain_starts_after_the_root_the_device_trusts_r25_s1(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    out = make_bundle(world, Request(hardware_model="pump-x100", root_from=2), tmp_path / "b.tar")
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        roots = sorted(name for name in bundle.names() if name.endswith(".root.json"))
        assert bundle.manifest.root_from == 2
    assert roots == ["metadata/3.root.json"]
    current = make_bundle(
        world, Request(hardware_model="pump-x100", root_from=3), tmp_path / "c.tar"
    )
    with Bundle.open(current, max_bytes=BOUND) as bundle:
        assert not [name for name in bundle.names() if name.endswith(".root.json")]
    with pytest.raises(BadRootError, match="up to 3, not 4"):
        make_bundle(world, Request(hardware_model="pump-x100", root_from=4), tmp_path / "d.tar")
    assert not (tmp_path / "d.tar").exists()


def test_a_named_older_release_is_carried_with_its_own_file_s5(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    """S5: a named older release is carried with its own firmware file."""
    old, _ = releases
    request = Request(hardware_model="pump-x100", version="1.0.0")
    out = make_bundle(world, request, tmp_path / "b.tar")
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        targets = [name for name in bundle.names() if name.startswith("targets/")]
        assert bundle.manifest.release == old.path
    assert targets == [old.member(_sha256(old.data))], "no SBOM named: none carried"


def test_an_unknown_model_or_release_is_refused_and_nothing_is_written_s5(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    """S5: an unknown model or release is refused; nothing is written."""
    with pytest.raises(UnknownError, match="ventilator-v9"):
        make_bundle(world, Request(hardware_model="ventilator-v9"), tmp_path / "a.tar")
    with pytest.raises(UnknownError, match=r"no release 9\.9\.9 .*1\.0\.0, 2\.0\.0"):
        make_bundle(world, Request(hardware_model="pump-x100", version="9.9.9"), tmp_path / "b.tar")
    assert list(tmp_path.glob("*.tar")) == []


def test_a_bundle_over_its_bound_is_refused_and_leaves_no_file_r13(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    with pytest.raises(BundleError, match=r"bound|larger|max"):
        make_bundle(
            world, Request(hardware_model="pump-x100"), media / "b.tar", max_bytes=16 * 1024
        )
    assert list(media.iterdir()) == [], "neither the bundle nor a temporary file is left"


def test_a_release_whose_file_the_server_lacks_is_refused(
    world: World, releases: tuple[Published, Published], tmp_path: Path
) -> None:
    """S4: a release whose firmware file the server lacks is refused."""
    _, new = releases
    (world.repository / new.member(_sha256(new.data))).unlink()
    with pytest.raises(making.UnusableError, match="upload the signed file"):
        make_bundle(world, Request(hardware_model="pump-x100"), tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


# -- S5 on its pure core ----------------------------------------------------------------


def _release(version: str, **fields: object) -> Release:
    info = FirmwareInfo(version=version, hardware_models=("pump-x100",), **fields)  # type: ignore[arg-type]
    return Release(f"pump-x100/fw-{version}.bin", "ab" * 32, info)


def _device(running: str | None, floor: int | None = None) -> DeviceFacts:
    return DeviceFacts("pump-1", "pump-x100", running, floor)


RELEASES = (
    _release("1.0.0", security_version=1),
    _release("2.0.0", security_version=1, min_installed_version="1.0.0"),
    _release("2.1.0", security_version=3, min_installed_version="2.0.0"),
    _release("3.0.0-rc.1", security_version=3),
)


def _choose(device: DeviceFacts | None, assigned: Release | None = None) -> str:
    chosen = selection.choose(
        RELEASES, model="pump-x100", version=None, device=device, assigned=assigned
    )
    return chosen.info.version


def test_a_model_bundle_carries_its_newest_release_never_a_pre_release_s5() -> None:
    """S5: a model's bundle carries its newest release, never a pre-release."""
    assert _choose(None) == "2.1.0"


def test_a_device_bundle_carries_what_the_device_takes_next_r25_s5() -> None:
    """The device's own rules: its min_installed_version met, newer than it runs."""
    assert _choose(_device("1.0.0")) == "2.0.0"
    assert _choose(_device("2.0.0")) == "2.1.0"
    assert _choose(_device(None)) == "1.0.0"
    with pytest.raises(NothingToCarryError, match="name one with --release"):
        _choose(_device("2.1.0"))


def test_a_device_below_its_floor_gets_nothing_below_the_floor_r25_s5() -> None:
    with pytest.raises(NothingToCarryError):
        _choose(_device("2.0.0", floor=4))


def test_a_deployments_assignment_wins_for_a_device_s5() -> None:
    """S5: a deployment's assignment decides a device's release."""
    assert _choose(_device("1.0.0"), assigned=RELEASES[0]) == "1.0.0"


def test_the_root_chain_is_the_versions_after_the_trusted_one_s1() -> None:
    """S1: the root chain is the root versions after the one the device trusts."""
    assert selection.root_chain(1, 3) == ["metadata/2.root.json", "metadata/3.root.json"]
    assert selection.root_chain(3, 3) == []
    with pytest.raises(BadRootError):
        selection.root_chain(0, 3)


# -- S6: deltas; S3: hashed bins -----------------------------------------------------------


def _device_request(version: str | None, running: str | None) -> Request:
    facts = DeviceFacts("pump-1", "pump-x100", running, None)
    return Request(hardware_model="pump-x100", version=version, device=facts)


def test_a_bundle_carries_the_full_image_and_no_delta_s6(world: World, tmp_path: Path) -> None:
    """R13: a device never looks a delta up offline, so a bundle carries the full image only:
    no delta file and no role the delta lookup alone would walk, for a device running the
    delta's base and for its model (a device of it may run the base)."""
    base = _base_published(world)
    image, delta = _add_with_delta(world, base)
    _publish(world, {DELTA_IMAGE: image, DELTA: delta})
    delta_member = Published(DELTA, delta).member(_sha256(delta))
    image_member = Published(DELTA_IMAGE, image).member(_sha256(image))
    for name, request in (
        ("device", _device_request(None, "1.0.0")),
        ("model", Request(hardware_model="pump-x100")),
    ):
        out = make_bundle(world, request, tmp_path / f"{name}.tar")
        with Bundle.open(out, max_bytes=BOUND) as bundle:
            assert bundle.manifest.release == DELTA_IMAGE, name
            assert bundle.read(image_member, limit=BOUND) == image, name
            assert delta_member not in bundle.names(), name
            assert not [n for n in bundle.names() if n.endswith(".bsdiff")], name


def _publish_vent(world: World, tmp_path: Path, version: str) -> tuple[str, str, bytes]:
    path, bin_role, data = _add_vent(world, tmp_path, version)
    world.login("erin", "release_engineer")
    answer = world.upload("erin", {r: world.role_json(r) for r in (bin_role, "ventilator-v5")})
    assert answer.status_code == 201, answer.get_json()
    upload = answer.get_json()["id"]
    assert world.put("erin", upload, path, data).status_code == 201
    assert world.publish("erin", upload).status_code == 200
    return path, bin_role, data


def _bins(bundle: Bundle) -> list[str]:
    return sorted(name.split(".", 1)[1] for name in bundle.names() if "-bins-" in name)


def test_with_hashed_bins_a_bundle_carries_the_bins_of_the_releases_a_device_may_run_s3_s7(
    world: World, tmp_path: Path
) -> None:
    """TAP 15 and policy rule 7 (R25, R56): discovery reads the line's current list, but the
    device looks the release it runs up again, and an older release lives in its bin only.
    A device's bundle carries the bin of the release it runs, a model's those of every
    release signed for it (here the same), and no other bin (no delta lookup's, S6); a stock
    ngclient finds both releases from the bundle alone."""
    _binned_line(world)
    old_path, old_bin, _ = _publish_vent(world, tmp_path, "1.0.0")
    new_path, _, new_data = _publish_vent(world, tmp_path, "2.0.0")
    root_1 = (world.repository / "metadata" / "1.root.json").read_bytes()
    vent = DeviceFacts("vent-1", "ventilator-v5", "1.0.0", None)
    for name, request in (
        ("model", Request(hardware_model="ventilator-v5")),
        ("device", Request(hardware_model="ventilator-v5", device=vent)),
    ):
        bins = {old_bin}
        out = make_bundle(world, request, tmp_path / f"{name}.tar")
        with Bundle.open(out, max_bytes=BOUND) as bundle:
            assert _bins(bundle) == sorted(f"{role}.json" for role in bins), name
            assert bundle.manifest.release == new_path
            updater = bundle_updater(bundle, tmp_path / name, root_1)
            updater.refresh()
            assert updater.get_targetinfo(old_path) is not None, "rule 7's lookup, offline"
            found = updater.get_targetinfo(new_path)
            assert found is not None
            got = Path(updater.download_target(found, str(tmp_path / f"{name}.bin")))
            assert got.read_bytes() == new_data
    unreported = Request(hardware_model="ventilator-v5", device=replace(vent, running_version=None))
    with Bundle.open(make_bundle(world, unreported, tmp_path / "u.tar"), max_bytes=BOUND) as bundle:
        assert _bins(bundle) == [], "nothing known to look up"


def test_a_superseded_release_named_on_purpose_comes_with_its_bin_s3(
    world: World, tmp_path: Path
) -> None:
    """S3: a superseded release named on purpose comes with its hashed bin."""
    _binned_line(world)
    old_path, old_bin, old_data = _publish_vent(world, tmp_path, "1.0.0")
    _publish_vent(world, tmp_path, "2.0.0")
    device = DeviceFacts("vent-1", "ventilator-v5", None, None)
    request = Request(hardware_model="ventilator-v5", version="1.0.0", device=device)
    named = make_bundle(world, request, tmp_path / "old.tar")
    with Bundle.open(named, max_bytes=BOUND) as bundle:
        assert _bins(bundle) == [f"{old_bin}.json"]
        assert bundle.manifest.release == old_path
        root_1 = (world.repository / "metadata" / "1.root.json").read_bytes()
        updater = bundle_updater(bundle, tmp_path / "device", root_1)
        updater.refresh()
        found = updater.get_targetinfo(old_path)
        assert found is not None
        got = Path(updater.download_target(found, str(tmp_path / "old.bin"))).read_bytes()
    assert got == old_data
