"""An in-memory repository and mirror for the client's tests.

Like python-tuf's ``RepositorySimulator``, but our repository's shape: the
roles are made with python-tuf's Metadata API (``tests.client.tuf_repo``,
never fwsign's library nor ``repo_metadata``, so a bug they share with the
client cannot hide; keys generated here: root 2 of 3 officers, targets the
release manager, the product line 2 of 2 alice and bob, optionally in hashed
bins), and published the way the update server publishes them
(``tests.tuf_mirror.publication``, as the signer's tests see it):
consistent snapshots, snapshot and timestamp signed with the online keys,
the timestamp listing the snapshot's length and SHA-256, firmware at
``targets/<dir>/<sha256>.<name>``. Expiries count from the real clock,
because ngclient reads it.

``Sim`` is the device's network (a ``ResumableFetcher``), so every attack is
a knob on what it serves: an old published state (``replay``), a file
swapped or re-signed (``override``, ``resign``), endless or slow bodies, a
connection cut after some bytes, or no server at all.
"""

from __future__ import annotations

import hashlib
import time
from collections import ChainMap
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import DownloadError
from tuf.api.metadata import Metadata, MetaFile, Signed, Snapshot
from tuf.api.serialization.json import JSONSerializer

from client.fetcher import Pace, ResumableFetcher
from client.offline import DEFAULT_MAX_AGE
from client.state import DEFAULT_SLOT_CAPACITY, DeviceIdentity, StateDir
from client.update import Remote
from fwcommon.files import atomic_write
from tests.client.tuf_repo import TufRepo, firmware_custom
from tests.tuf_mirror import BASE, lookup, publication, target_url

MODEL = "pump-x100"
DEVICE = "pump-0001"
PEOPLE = ("officer1", "officer2", "officer3", "manager", "alice", "bob", "carol")
ONLINE = ("snapshot", "timestamp")
CHUNK = 16 * 1024
#: Fast enough for any in-memory body, slow enough to catch a trickle quickly.
TEST_PACE = Pace(min_rate=256 * 1024, grace=0.2)


def image_bytes(version: str, size: int = 40_000) -> bytes:
    """A deterministic firmware image, different for every version."""
    block = hashlib.sha256(version.encode()).digest() * 64
    return (block * (size // len(block) + 1))[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Sim(ResumableFetcher):
    """A published repository and the mirror that serves it."""

    def __init__(self, workdir: Path, *, bin_bits: int | None = None) -> None:
        super().__init__(pace=TEST_PACE)
        self.workdir = workdir
        self.path = workdir / "repo"
        self.keys: dict[str, Signer] = {
            name: CryptoSigner.generate_ed25519() for name in (*PEOPLE, *ONLINE)
        }
        self.images: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.published: list[dict[str, bytes]] = []
        # What the network does (the attacks):
        self.requests: list[tuple[str, int]] = []
        self.override: dict[str, bytes] = {}
        self.endless: set[str] = set()
        self.slow: set[str] = set()
        self.cut: dict[str, int] = {}
        self.down = False
        #: The repository, for edits beyond a release (rotations, withdrawals).
        self.repo = TufRepo(self.path, self.keys, now=_now)
        self.repo.create(
            root=("officer1", "officer2", "officer3"),
            root_threshold=2,
            targets=("manager",),
            snapshot="snapshot",
            timestamp="timestamp",
            signers=("officer1", "officer2", "manager"),
        )
        self.repo.delegate_line(
            MODEL,
            prefix=f"{MODEL}/",
            keys=("alice", "bob"),
            threshold=2,
            bin_bits=bin_bits,
            signers=("manager",),
        )
        self.publish()

    # -- the repository ---------------------------------------------------------

    def root(self, version: int = 1) -> bytes:
        return self.repo.root_bytes(version)

    def release(
        self,
        version: str,
        security_version: int,
        *,
        models: tuple[str, ...] = (MODEL,),
        path: str | None = None,
        signers: Sequence[str] = ("alice", "bob"),
        publish: bool = True,
        size: int = 40_000,
        **fields: Any,
    ) -> str:
        """Sign (and publish) firmware ``version``; return its target path."""
        image = image_bytes(version, size)
        path = path or f"{models[0]}/fw-{version}.bin"
        custom = firmware_custom(version, security_version, models, **fields)
        self.repo.add_target(MODEL, path, image, custom, *signers)
        self.images[path] = image
        if publish:
            self.publish()
        return path

    def publish(
        self,
        *,
        snapshot_expires: timedelta = timedelta(days=7),
        timestamp_expires: timedelta = timedelta(days=1),
    ) -> None:
        """Serve the repository as it is, with a new snapshot and timestamp."""
        self.files |= publication(
            self.path,
            version=len(self.published) + 1,
            snapshot_signer=self.keys["snapshot"],
            timestamp_signer=self.keys["timestamp"],
            now=_now(),
            images=self.images,
            snapshot_expires=snapshot_expires,
            timestamp_expires=timestamp_expires,
        )
        self.published.append(dict(self.files))

    def trust_authorization_key(self, key: Signer) -> None:
        """The officers list ``key`` as the one authorization key: a new root, 2 of 3, published.

        The field is written out by hand (``repo_metadata.authorization``'s
        format), so a bug the client shares with that module cannot hide.
        """
        public = key.public_key
        with self.repo.edit("root", "officer1", "officer2") as root:
            root.unrecognized_fields["x-fwupdate-authorization-keys"] = {
                "keys": {public.keyid: public.to_dict()},
                "threshold": 1,
            }
        self.publish()

    def sign(self, signed: Signed, *signers: str) -> bytes:
        """``signed`` as metadata bytes, signed by ``signers`` (default: its online key)."""
        md = Metadata(signed)
        for name in signers or (signed.type,):
            md.sign(self.keys[name], append=True)
        return md.to_bytes(JSONSerializer())

    def target_url(self, path: str) -> str:
        return target_url(path, self.images[path])

    # -- attacks ------------------------------------------------------------------

    def replay(self, index: int) -> None:
        """Serve the repository exactly as it was published the ``index``-th time."""
        self.files = dict(self.published[index])

    def served(self, url: str) -> Metadata[Any]:
        return Metadata.from_bytes(self.override.get(url, self.files[url]))

    def resign(
        self, url: str, edit: Callable[[Any], None], *signers: str, keep: bool = False
    ) -> bytes:
        """Serve ``url`` edited and signed by ``signers`` (``keep``: old signatures kept)."""
        md = self.served(url)
        edit(md.signed)
        if not keep:
            md.signatures.clear()
        for name in signers:
            md.sign(self.keys[name], append=True)
        data = md.to_bytes(JSONSerializer())
        self.override[url] = data
        return data

    def forge_snapshot(self, edit: Callable[[Snapshot], None]) -> None:
        """Serve a newer snapshot edited by ``edit`` and a timestamp listing it.

        Both are validly signed with the online keys: what a compromised
        server can do.
        """
        listed = self.served("/metadata/timestamp.json").signed.snapshot_meta.version
        snapshot = self.served(f"/metadata/{listed}.snapshot.json").signed
        snapshot.version += 1
        edit(snapshot)
        data = self.sign(snapshot)
        self.override[f"/metadata/{snapshot.version}.snapshot.json"] = data
        self.forge_timestamp(MetaFile(snapshot.version, len(data), {"sha256": sha256(data)}))

    def forge_timestamp(self, snapshot_meta: MetaFile) -> None:
        """Serve a newer timestamp, validly signed, listing ``snapshot_meta``."""
        timestamp = self.served("/metadata/timestamp.json").signed
        timestamp.version += 1
        timestamp.snapshot_meta = snapshot_meta
        self.override["/metadata/timestamp.json"] = self.sign(timestamp)

    # -- the network ----------------------------------------------------------------

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        path = url.removeprefix(BASE)
        self.requests.append((path, offset))
        if self.down:
            raise ConnectionRefusedError(f"{BASE}: connection refused")
        if path in self.endless:
            return _endless()
        data = lookup(ChainMap(self.override, self.files), url)
        return self._body(path, data[offset:])

    def _body(self, path: str, data: bytes) -> Iterator[bytes]:
        if path in self.slow:
            for index in range(len(data)):
                time.sleep(0.01)
                yield data[index : index + 1]
            return
        limit = self.cut.pop(path, None)
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            if limit is not None and start + len(chunk) > limit:
                yield chunk[: max(0, limit - start)]
                raise DownloadError(f"{path}: connection reset after {limit} bytes")
            yield chunk

    def fetched(self, prefix: str = "") -> list[str]:
        return [path for path, _ in self.requests if path.startswith(prefix)]

    def remote(self) -> Remote:
        return Remote(BASE, self)


def _endless() -> Iterator[bytes]:
    while True:
        yield b"\0" * CHUNK


def _now() -> datetime:
    return datetime.now(UTC)


def provision(
    path: Path,
    sim: Sim,
    *,
    model: str = MODEL,
    slot_capacity: int = DEFAULT_SLOT_CAPACITY,
    offline_max_age: timedelta = DEFAULT_MAX_AGE,
) -> StateDir:
    """A device as ``fwclient provision`` leaves it, trusting ``sim``'s first root."""
    state = StateDir(path)
    atomic_write(state.trusted_root, sim.root(1), mode=0o444)
    identity = DeviceIdentity(DEVICE, model, slot_capacity, offline_max_age=offline_max_age)
    state.write_identity(identity)
    return state


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (links followed) as {relative path: bytes}."""
    if not path.exists():
        return {}
    return {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def event_types(state: StateDir) -> list[str]:
    return [str(entry["type"]) for entry in state.events.entries()]
