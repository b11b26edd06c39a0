"""Provisioning a device: its trusted root, its identity and its first time floor.

Rules:

- P1 (no trust on first use): the root is root metadata signed by its own
  threshold; it is written read-only and never replaced (no re-provisioning).
- P2 (R52, freeze): provisioning seeds the time floor with the later of the
  factory's clock and ``BUILT``, the time this client was built. From its
  first refresh on, a device whose clock has reset (a flat RTC battery reads
  1970) checks every expiry at that floor, so metadata that expired before
  the device left the factory is a ``freeze_attack``, never an install.
- P3 (R52, R33): a time floor record that cannot be read (truncated, not
  JSON, other fields) never stops an update and never lets the clock go
  back further than the device can prove. It is rebuilt (``time_floor``)
  at the latest of: the client's build time; the provisioning floor, if
  the ``provisioned`` event is still in a log whose chain verifies; and,
  for each slot whose record its signed evidence proves, the time that
  evidence was verified at (the record's ``verified_at``), capped at the
  evidence's earliest expiry, before which it must have been verified, and
  at the expiry of the newest timestamp in the metadata cache, which every
  session that raised the floor accepted as valid (so a damaged date cannot
  push the floor past what was signed). Signed TUF metadata carries
  expiries, not signing times: it bounds when it was verified from above,
  never "now" from below, so it only caps. The
  damage is logged as ``integrity_failure`` naming the file, then the
  update goes on; its refresh raises the floor as every refresh does.
- P4 (R25, R52; ADR 0007): the offline freshness bound (``client.offline``
  O3: how long after its expiry a bundle's metadata is still accepted) is
  a setting of the device, written once with its identity and logged with
  ``provisioned``; ``fwclient update --bundle`` may only narrow it for one
  run. A device provisioned before the setting existed reads the default.
- The device key (``client.identity``), the identity, the root and the
  floor are written, and ``provisioned`` logged, under the state
  directory's lock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError

from client.errors import ClientError, ProvisioningError
from client.events import EventType
from client.evidence import read_evidence, verify_evidence
from client.identity import create_device_key
from client.state import SLOTS, DeviceIdentity, StateDir
from fwcommon.files import atomic_write

#: When this client was built: no device running it trusts a clock before it
#: (P2, P3). Written by hand, with the release it belongs to, and guarded by two
#: tests that hold on any date (tests/client/test_provisioning.py):
#:
#: - it is moved with each release: a release bumps the project version in
#:   pyproject.toml, and until ``BUILT_RELEASE`` names that version (which
#:   means whoever bumps it has set ``BUILT`` to the release's date) CI fails;
#: - it is never after the newest commit touching client/: a build time in the
#:   future would make every device check expiries at it, refusing every
#:   update as a freeze attack until that date.
#:
#: Why not stamp it at packaging: the wheel's metadata holds no build time,
#: a generated module would be absent from a source checkout (where the tests
#: and the device simulators run), and a fallback for its absence would be
#: the very constant that can be forgotten. An older ``BUILT`` is never
#: unsafe for a device, only weaker: it bounds a reset clock less tightly.
BUILT = datetime(2026, 12, 3, tzinfo=UTC)
#: The project version ``BUILT`` was set for (see above).
BUILT_RELEASE = "0.4.0"


def provision(
    state: StateDir,
    *,
    root: bytes,
    identity: DeviceIdentity,
    now: datetime,
    built: datetime,
    device_key: str | None = None,
) -> Root:
    """Provision ``state`` (rules P1, P2); return the trusted root.

    The device key (``client.identity``, K1-K3) is generated, or taken from
    the secure element ``device_key`` names, before anything else is written.
    """
    trusted = self_signed_root(root)
    floor = max(now, built)
    state.root.mkdir(parents=True, exist_ok=True)
    with state.lock():
        if state.trusted_root.exists() or (state.provisioned / "device.json").exists():
            raise ProvisioningError(
                f"{state.root} is already provisioned; refusing to replace its root"
            )
        key = create_device_key(state, uri=device_key)
        state.write_identity(identity)
        atomic_write(state.trusted_root, root, mode=0o444)
        state.raise_time_floor(floor)
        state.events.append(
            EventType.PROVISIONED,
            f"provisioned as {identity.device_id} ({identity.hardware_model}), trusting root"
            f" v{trusted.version}; no clock before {floor:%Y-%m-%d %H:%M:%S}Z is trusted",
            now=floor,
            device_id=identity.device_id,
            hardware_model=identity.hardware_model,
            root_version=trusted.version,
            time_floor=floor.isoformat(),
            device_key=key.public_key.keyid,
            offline_max_age_seconds=identity.offline_max_age // timedelta(seconds=1),
        )
    return trusted


def expired_root_warning(root: Root, *, now: datetime, built: datetime) -> str | None:
    """What to tell the factory when ``root`` has expired at the device's first floor (P2).

    Provisioning goes on: an expired trusted root is only a starting point, and
    the device takes every newer root over the signed chain (TUF 5.3). But
    until a newer root is published, each refresh ends at this one and
    refuses to update (TUF 5.3.10, expired final root).
    """
    floor = max(now, built)
    if not root.is_expired(floor):
        return None
    return (
        f"the root metadata expired on {root.expires:%Y-%m-%d %H:%M:%S}Z: the device will"
        " refuse updates until a newer root is published (provisioned anyway: the device"
        " takes newer roots over the signed root chain)"
    )


def self_signed_root(data: bytes) -> Root:
    """The root in ``data`` if it is root metadata signed by its own threshold (P1)."""
    try:
        md = Metadata[Root].from_bytes(data)
        if not isinstance(md.signed, Root):
            raise ProvisioningError("the --root file holds no root metadata")
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except RepositoryError as exc:
        raise ProvisioningError(f"the --root file is not a valid signed root ({exc})") from None
    return md.signed


def time_floor(state: StateDir, *, clock: datetime, built: datetime) -> datetime:
    """The device's time floor: its record, ``built`` without one, rebuilt if damaged (P3)."""
    try:
        return state.time_floor() or built
    except ClientError as exc:
        damage = str(exc)
    floor, sources = proven_time(state, built=built)
    rebuilt = f"time floor {floor:%Y-%m-%d %H:%M:%S}Z from {', '.join(sources)}"
    state.events.append(
        EventType.INTEGRITY_FAILURE,
        f"{damage}; rebuilt: {rebuilt}",
        now=max(clock, floor),
        file=state.time_floor_file.name,
        rebuilt=rebuilt,
        time_floor=floor.isoformat(),
    )
    state.replace_damaged_time_floor(floor)
    return floor


def proven_time(state: StateDir, *, built: datetime) -> tuple[datetime, list[str]]:
    """The latest time the device can prove it has reached (P3), and what proves it."""
    proofs = {"the client's build time": built}
    provisioned = _provisioning_floor(state)
    if provisioned is not None:
        proofs["the provisioning floor"] = provisioned
    cached = _cached_timestamp_expiry(state)
    for slot in SLOTS:
        verified = _verified_at(state, slot)
        if verified is not None:
            capped = verified if cached is None else min(verified, cached)
            proofs[f"slot {slot}'s verified evidence"] = capped
    latest = max(proofs.values())
    return latest, [source for source, moment in proofs.items() if moment == latest]


def _provisioning_floor(state: StateDir) -> datetime | None:
    """The floor ``provisioned`` logged, if still in a log whose chain verifies."""
    log = state.events
    if not log.verify().ok:
        return None
    entry = log.last(EventType.PROVISIONED)
    detail = entry.get("detail") if entry else None
    return _aware(detail.get("time_floor")) if isinstance(detail, dict) else None


def _verified_at(state: StateDir, slot: str) -> datetime | None:
    """When ``slot``'s evidence was verified, if the evidence proves its record; capped."""
    try:
        record = state.slot_record(slot)
        if record is None:
            return None
        evidence = read_evidence(state.slot_evidence(slot))
        verify_evidence(state.trusted_root.read_bytes(), evidence, record)
        expiries = [Metadata[Any].from_bytes(data).signed.expires for data in evidence.values()]
    except (ClientError, OSError, DeserializationError):
        return None
    verified = _aware(record.verified_at)
    return min([*expiries, verified]) if verified is not None else None


def _cached_timestamp_expiry(state: StateDir) -> datetime | None:
    """When the newest timestamp the device holds expires (None: none readable).

    Every session that raised the floor accepted a timestamp valid then, and
    the cache keeps the newest one accepted: no time proven is after it.
    """
    try:
        data = (state.metadata_dir / "timestamp.json").read_bytes()
        expires: datetime = Metadata[Any].from_bytes(data).signed.expires
    except (OSError, DeserializationError):
        return None
    return expires


def _aware(text: object) -> datetime | None:
    """``text`` as a time with a UTC offset, or None."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None
