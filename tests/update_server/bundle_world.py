"""Releases published for bundle tests, and a stock ngclient that reads a bundle only.

``publish`` signs a release (with its SBOM, as ``fwsign add --sbom`` does),
uploads and publishes it through the server's API. ``rotate_root`` publishes
the next root version. ``BundleFetcher`` is a device's network replaced by
the bundle file: ngclient gets a member for each URL under the repository's
base, and a 404 for anything the bundle does not hold, so a test sees every
file the device asked for and whether the bundle had it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from fwcommon.bundle import Bundle
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import add_firmware, sbom_target_path
from signer.keyops import rotate
from signer.signing import sign_roles
from tests.update_server.repo_world import LINES, World, image_bytes, key
from update_server.bundles import making
from update_server.bundles.making import Request
from update_server.publication.repository import target_file

BASE = "https://server.test"
LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Published:
    """A release as the test published it: its path, bytes, and SBOM's."""

    path: str
    data: bytes
    sbom_path: str | None = None
    sbom: bytes | None = None

    def member(self, sha256: str) -> str:
        return target_file(self.path, sha256)


def publish(
    world: World,
    version: str,
    *,
    line: str = "pump-x100",
    sbom: bool = False,
    requires_authorization: bool = False,
    security_version: int = 1,
) -> Published:
    """Sign ``version`` into ``line`` (with an SBOM), upload and publish it."""
    engineers = LINES[line]
    image = world.tmp / f"{line}-{version}.bin"
    data = image_bytes(f"{line}-{version}")
    image.write_bytes(data)
    sbom_file = None
    if sbom:
        sbom_file = world.tmp / f"{line}-{version}.sbom.json"
        sbom_file.write_text(json.dumps({"bomFormat": "CycloneDX", "version": version}))
    info = FirmwareInfo(
        version=version,
        security_version=security_version,
        hardware_models=(line,),
        requires_authorization=requires_authorization,
    )
    add_firmware(
        world.open_offline(engineers[0]), image=image, name="fw", info=info, sbom=sbom_file
    )
    sign_roles(world.open_offline(engineers[1]), roles=[line])
    answer = world.upload(engineers[0], {line: world.role_json(line)})
    assert answer.status_code == 201, answer.get_json()
    upload = answer.get_json()["id"]
    path = f"{line}/fw-{version}.bin"
    assert world.put(engineers[0], upload, path, data).status_code == 201
    published = Published(path, data)
    if sbom_file is not None:
        sbom_path = sbom_target_path(path)
        sbom_bytes = sbom_file.read_bytes()
        assert world.put(engineers[0], upload, sbom_path, sbom_bytes).status_code == 201
        published = Published(path, data, sbom_path, sbom_bytes)
    answer = world.publish(engineers[0], upload)
    assert answer.status_code == 200, answer.get_json()
    return published


def publish_releases(world: World) -> tuple[Published, Published]:
    """Pump 1.0.0, then 2.0.0 with its SBOM; a monitor release beside them; root at v3."""
    old = publish(world, "1.0.0")
    publish(world, "1.0.0", line="monitor-m20")
    new = publish(world, "2.0.0", sbom=True)
    assert rotate_root(world, "officer4") == 2
    assert rotate_root(world, "officer5") == 3
    return old, new


def make_bundle(world: World, request: Request, out: Path, *, max_bytes: int = LIMIT) -> Path:
    """The server's bundle for ``request`` at ``out`` (``bundles.making``, as the command)."""
    contents = making.collect(world.config, request, now=world.now, wait=0)
    making.write(contents, out, now=world.now, max_bytes=max_bytes)
    return out


def rotate_root(world: World, new_officer: str) -> int:
    """Publish the next root version (an officer key replaced); return that version."""
    before = int(world.role_json("root")["signed"]["version"])
    rotate(
        world.open_offline("officer1", "officer2"),
        role="root",
        add=[key(new_officer).public_key],
        remove=[],
    )
    world.login("olga", "security_officer")
    answer = world.upload("olga", {"root": world.role_json("root")}, role="security_officer")
    assert answer.status_code == 201, answer.get_json()
    published = world.publish("olga", answer.get_json()["id"])
    assert published.status_code == 200, published.get_json()
    return before + 1


class BundleFetcher(FetcherInterface):
    """ngclient's network replaced by a bundle: members by URL path, 404 otherwise."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.names = set(bundle.names())
        self.asked: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = urlparse(url).path.lstrip("/")
        self.asked.append(name)
        if name not in self.names:
            raise DownloadHTTPError(f"{name}: not in the bundle", 404)
        yield self.bundle.read(name, limit=LIMIT)


def bundle_updater(bundle: Bundle, workdir: Path, trusted_root: bytes) -> Updater:
    """A stock ngclient trusting ``trusted_root`` whose only source is ``bundle``."""
    for sub in ("metadata", "targets"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    return Updater(
        metadata_dir=str(workdir / "metadata"),
        metadata_base_url=f"{BASE}/metadata/",
        target_dir=str(workdir / "targets"),
        target_base_url=f"{BASE}/targets/",
        fetcher=BundleFetcher(bundle),
        bootstrap=trusted_root,
    )
