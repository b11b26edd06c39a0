"""An in-memory mirror for tests: what a device sees of a published repository.

``publication()`` stands in for the update server's publication step: the
offline-signed roles under consistent-snapshot names, a new snapshot and
timestamp signed with the online keys (the timestamp listing the snapshot's
length and SHA-256), firmware at ``targets/<dir>/<sha256>.<name>``.
``InMemoryMirror`` serves the result to a stock ``tuf.ngclient.Updater``
through a ``FetcherInterface``; the client's simulator (``tests/client/sim.py``)
serves it with its attacks. Both are test doubles for the network, not for any
part under test: the roles they serve are the ones ``fwsign`` wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from securesystemslib.signer import Signer
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater

BASE = "https://updates.test"


def publication(
    repo: Path,
    *,
    version: int,
    snapshot_signer: Signer,
    timestamp_signer: Signer,
    now: datetime,
    images: Mapping[str, bytes] | None = None,
    snapshot_expires: timedelta = timedelta(days=7),
    timestamp_expires: timedelta = timedelta(days=1),
) -> dict[str, bytes]:
    """What the server serves of ``repo`` (URL path to bytes), snapshot and timestamp ``version``.

    ``N.root.json`` files are served as they are, every other role at its
    version and listed in the snapshot.
    """
    files: dict[str, bytes] = {}
    meta: dict[str, MetaFile] = {}
    for file in sorted((repo / "metadata").glob("*.json")):
        name = file.name.removesuffix(".json")
        if name.split(".", 1)[0].isdigit():
            files[f"/metadata/{file.name}"] = file.read_bytes()
        elif name != "root":
            data = file.read_bytes()
            role_version = Metadata.from_bytes(data).signed.version
            files[f"/metadata/{role_version}.{file.name}"] = data
            # The snapshot lists a role by its name: fw%2Fpump.json as fw/pump.json.
            meta[unquote(file.name)] = MetaFile(version=role_version)
    snapshot = _signed(
        Metadata(Snapshot(version, expires=now + snapshot_expires, meta=meta)), snapshot_signer
    )
    files[f"/metadata/{version}.snapshot.json"] = snapshot
    snapshot_meta = MetaFile(version, len(snapshot), {"sha256": _sha256(snapshot)})
    files["/metadata/timestamp.json"] = _signed(
        Metadata(Timestamp(version, expires=now + timestamp_expires, snapshot_meta=snapshot_meta)),
        timestamp_signer,
    )
    for path, image in (images or {}).items():
        files[target_url(path, image)] = image
    return files


def target_url(path: str, image: bytes) -> str:
    """Where target ``path`` is served (consistent snapshot: its SHA-256 in the name)."""
    directory, slash, name = path.rpartition("/")
    return f"/targets/{directory}{slash}{_sha256(image)}.{name}"


def lookup(files: Mapping[str, bytes], url: str) -> bytes:
    """The bytes served at ``url`` (under ``BASE``); anything else is a 404."""
    path = url.removeprefix(BASE)
    data = files.get(path)
    if data is None:
        raise DownloadHTTPError(f"{path}: HTTP 404", 404)
    return data


def _signed(md: Metadata[Any], signer: Signer) -> bytes:
    md.sign(signer)
    return md.to_bytes(JSONSerializer())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InMemoryMirror(FetcherInterface):
    """Serves ``files`` (URL path to bytes); anything else is a 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.publications = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests.append(url)
        yield lookup(self.files, url)

    def publish(
        self,
        repo: Path,
        *,
        snapshot_signer: Signer,
        timestamp_signer: Signer,
        now: datetime,
        images: dict[str, bytes] | None = None,
    ) -> None:
        """Serve ``repo``'s roles with fresh online snapshot and timestamp."""
        self.publications += 1
        self.files |= publication(
            repo,
            version=self.publications,
            snapshot_signer=snapshot_signer,
            timestamp_signer=timestamp_signer,
            now=now,
            images=images,
        )

    def updater(self, root: bytes, workdir: Path, **kwargs: Any) -> Updater:
        """A stock ngclient updater that trusts ``root`` and reads this mirror."""
        (workdir / "metadata").mkdir(parents=True, exist_ok=True)
        (workdir / "targets").mkdir(parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(workdir / "metadata"),
            metadata_base_url=f"{BASE}/metadata/",
            target_dir=str(workdir / "targets"),
            target_base_url=f"{BASE}/targets/",
            fetcher=self,
            bootstrap=root,
            **kwargs,
        )
