"""Provisioning a device: its trusted root, its identity and its first time floor.

Rules:

- P1 (no trust on first use): the root is root metadata signed by its own
  threshold; it is written read-only and never replaced (no re-provisioning).
- P2 (R52, freeze): provisioning seeds the time floor with the later of the
  factory's clock and ``BUILT``, the time this client was built. From its
  first refresh on, a device whose clock has reset (a flat RTC battery reads
  1970) checks every expiry at that floor, so metadata that expired before
  the device left the factory is a ``freeze_attack``, never an install.
- The identity, the root and the floor are written, and ``provisioned``
  logged, under the state directory's lock.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root

from client.errors import ProvisioningError
from client.events import EventType
from client.state import DeviceIdentity, StateDir
from repo_metadata.files import atomic_write

#: When this client was built: no device running it trusts a clock before it
#: (P2). Release engineering moves it forward with each client release.
BUILT = datetime(2026, 12, 1, tzinfo=UTC)


def provision(
    state: StateDir, *, root: bytes, identity: DeviceIdentity, now: datetime, built: datetime
) -> Root:
    """Provision ``state`` (rules P1, P2); return the trusted root."""
    trusted = self_signed_root(root)
    floor = max(now, built)
    state.root.mkdir(parents=True, exist_ok=True)
    with state.lock():
        if state.trusted_root.exists() or (state.provisioned / "device.json").exists():
            raise ProvisioningError(
                f"{state.root} is already provisioned; refusing to replace its root"
            )
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
        )
    return trusted


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
