"""An in-memory mirror for tests: what a device sees of a published repository.

It stands in for the update server's publication step (online snapshot and
timestamp over the offline-signed roles, consistent-snapshot file names) and
serves the result to a stock ``tuf.ngclient.Updater`` through a
``FetcherInterface``. It is a test double for the network, not for any part
under test: the roles it serves are the ones ``fwsign`` wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater

BASE = "https://updates.test"


class InMemoryMirror(FetcherInterface):
    """Serves ``files`` (URL path to bytes); anything else is a 404."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests.append(url)
        path = url.removeprefix(BASE)
        if path not in self.files:
            raise DownloadHTTPError(f"not found: {path}", 404)
        yield self.files[path]

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
        metadata = repo / "metadata"
        meta: dict[str, MetaFile] = {}
        for file in sorted(metadata.glob("*.json")):
            name = file.name[: -len(".json")]
            data = file.read_bytes()
            if name.split(".", 1)[0].isdigit():
                self.files[f"/metadata/{name}.json"] = data
                continue
            if name == "root":
                continue
            version = Metadata.from_bytes(data).signed.version
            self.files[f"/metadata/{version}.{name}.json"] = data
            meta[f"{name}.json"] = MetaFile(version=version)
        snapshot = Metadata(Snapshot(version=1, expires=now + timedelta(days=7), meta=meta))
        snapshot.sign(snapshot_signer)
        snap_bytes = snapshot.to_bytes(JSONSerializer())
        self.files["/metadata/1.snapshot.json"] = snap_bytes
        timestamp = Metadata(
            Timestamp(
                version=1,
                expires=now + timedelta(days=1),
                snapshot_meta=MetaFile(version=1, length=len(snap_bytes)),
            )
        )
        timestamp.sign(timestamp_signer)
        self.files["/metadata/timestamp.json"] = timestamp.to_bytes(JSONSerializer())
        for path, data in (images or {}).items():
            directory, _, name = path.rpartition("/")
            digest = hashlib.sha256(data).hexdigest()
            self.files[f"/targets/{directory}/{digest}.{name}"] = data

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
