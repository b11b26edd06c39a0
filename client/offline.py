"""Freshness without a network: the rules of an offline (bundle) session (ADR 0007, R46).

A technician carries a bundle (``fwcommon.bundle``) to a device with no
route to the update server. Its metadata was current when the bundle was
made, and may have expired by the time it is plugged in: days on a shelf,
a week in a van. An online session would refuse it (``freeze_attack``); an
offline one accepts a bounded age instead, and nothing else changes. These
rules are pure (no I/O, the clock and the floor are arguments); the session
that applies them is ``client.update``'s, with the bundle as its network
(``client.bundle_source``).

Rules:

- O1 Nothing in a bundle is trusted beyond what TUF verifies. An offline
  session is an online session with another fetcher: the same ngclient
  refresh from the provisioned root, the same version checks against the
  metadata this device already trusts (rollback), the same install policy
  (hardware model, security floor, known-bad firmware, prerequisites,
  authorization), the same streaming into the inactive slot and read-back
  of the signed length and SHA-256.
- O2 Reference time. Every expiry of the metadata (ngclient's checks of
  root, timestamp, snapshot and targets roles, and the client's own
  ``check_fresh`` and delegation walk) is checked at
  ``T = max(F, now - max_age)``, ``F`` the device's time floor (the latest
  time it trusted), ``now`` its clock: a bundle's metadata may have expired
  at most ``max_age`` ago, and never before a time this device already
  trusted. A bundle older than the device's last refresh, online or
  offline, is a ``freeze_attack``.
- O3 ``max_age`` is a device setting, fixed at provisioning (``fwclient
  provision --offline-max-age``, kept with the identity in
  ``provisioned/device.json``; a device provisioned without it has
  ``DEFAULT_MAX_AGE``), between ``SHORTEST_MAX_AGE`` and
  ``LONGEST_MAX_AGE``; there is no "never": an old bundle is not
  replayable indefinitely. A run may only narrow it (``session_max_age``):
  whoever runs ``fwclient update --bundle`` cannot widen the freeze window
  the device was provisioned with; a wider value is refused before the
  bundle is read or anything is written.
- O4 A clock behind the floor counts as the floor (``T = F``): a clock set
  back revives nothing. A clock set forward only moves ``T`` later, which
  refuses more, never less.
- O5 A release that requires a technician's authorization (R9) installs
  offline only with a document that verifies for this device and this
  target's SHA-256 (the bundle's ``authorization.json``), checked by policy
  rule 5 at the session's trusted time ``max(now, F)``, not at ``T``: its
  short lifetime (minutes) is that install's freshness. It is bound and
  spent as online (``client.authorizations`` N1, N2): never usable twice.
- O6 After an offline install the time floor rises to ``T`` and no
  further: ``T`` is before every expiry ngclient has just accepted, so a
  bundle moves the floor no further than what it proves (an online refresh
  moves it to the clock, which a timestamp valid now vouches for; an
  expired one vouches for nothing later than its expiry). A session that
  installs nothing (refused, up to date, waiting) leaves the floor as it
  was.
- O7 The manifest (``bundle.json``) is not signed: it can only refuse. A
  bundle whose manifest names another hardware model or another device, or
  a root chain that starts after the newest root this device trusts (the
  roots in between missing, it could only end in ``bad_signature``), is
  refused before any other member is read, with both named. The release it
  names narrows the choice to that target, with the SHA-256 its member's
  name carries, exactly as a server's assignment does (policy rule 8: only
  a signed target with that path and SHA-256, passing every rule).
- O8 Every offline install is logged (``offline_install``, with the
  target and version, ``T``, ``max_age``, the bundle's file name and its
  manifest's creation time, release and device) just before the slot is
  marked pending, in the hash-chained log the next online report carries to
  the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from client.errors import ClientError

#: O3: how long after its expiry a bundle's metadata is still accepted, by default.
DEFAULT_MAX_AGE = timedelta(days=30)
#: O3: the bounds of the device setting.
SHORTEST_MAX_AGE = timedelta(hours=1)
LONGEST_MAX_AGE = timedelta(days=90)


class BundleMismatchError(ClientError):
    """O7: the bundle is for another hardware model or another device."""


class WiderMaxAgeError(ClientError):
    """O3: a run asked for a longer offline maximum age than the device's setting."""


@dataclass(frozen=True)
class Offline:
    """What makes a session offline: its freshness bound (O3) and what its log says (O8)."""

    max_age: timedelta = DEFAULT_MAX_AGE
    #: O8: what the ``offline_install`` entry says of the bundle (JSON values).
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_max_age(self.max_age)

    def reference_time(self, *, clock: datetime, floor: datetime) -> datetime:
        """O2, O4: the time every metadata expiry of the session is checked at."""
        return reference_time(clock=clock, floor=floor, max_age=self.max_age)


def check_max_age(max_age: timedelta) -> timedelta:
    """O3: ``max_age`` if it is within the bounds; ``ValueError`` saying them if not."""
    if not SHORTEST_MAX_AGE <= max_age <= LONGEST_MAX_AGE:
        raise ValueError(
            f"the offline maximum age {describe(max_age)} is outside {describe(SHORTEST_MAX_AGE)}"
            f" to {describe(LONGEST_MAX_AGE)}: choose a value in that range (O3)"
        )
    return max_age


def session_max_age(*, setting: timedelta, requested: timedelta | None) -> timedelta:
    """O3: one run's bound: the device's ``setting``, or a ``requested`` one no longer."""
    if requested is None:
        return setting
    if requested > setting:
        raise WiderMaxAgeError(
            f"--offline-max-age {describe(requested)} is longer than this device's offline"
            f" maximum age, {describe(setting)}, set when it was provisioned: a run may only"
            f" narrow it; nothing was read or changed. Leave the option out, or give at most"
            f" {describe(setting)}"
        )
    return check_max_age(requested)


def parse(text: str) -> timedelta:
    """A duration as the options write it; ``ValueError`` for anything else.

    A number and its unit: ``d`` (days, also with no unit), ``h`` or ``s``:
    ``30d``, ``36h``, ``7`` (seven days). Whole seconds (rounded).
    """
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number of days, hours or seconds"
            " (30d, 36h, 5400s; a number alone is days)"
        )
    return timedelta(seconds=round(float(match["number"]) * _UNITS[match["unit"] or "d"]))


def describe(max_age: timedelta) -> str:
    """``max_age`` as ``parse`` reads it, in the largest whole unit (``30d``, ``36h``)."""
    seconds = round(max_age.total_seconds())  # parse reads whole seconds
    for unit in ("d", "h"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


_UNITS = {"d": 86400, "h": 3600, "s": 1}
_DURATION = re.compile(r"^(?P<number>[0-9]{1,7}(?:\.[0-9]{1,6})?)(?P<unit>[dhs]?)\Z")


def reference_time(*, clock: datetime, floor: datetime, max_age: timedelta) -> datetime:
    """O2, O4: ``max(floor, clock - max_age)``."""
    return max(floor, clock - max_age)


def check_manifest(*, model: str, device: str | None, hardware_model: str, device_id: str) -> None:
    """O7: refuse a bundle whose manifest names another model or another device."""
    if model != hardware_model:
        raise BundleMismatchError(
            f"this bundle is for model {model}; this device is model {hardware_model}:"
            " nothing was installed; bring a bundle made for this model"
        )
    if device is not None and device != device_id:
        raise BundleMismatchError(
            f"this bundle is for device {device}; this device is {device_id}: nothing was"
            " installed; bring a bundle made for this device"
        )


def check_root_chain(*, root_from: int, trusted: int) -> None:
    """O7: refuse a bundle whose root chain starts after the newest root this device trusts."""
    if root_from > trusted:
        raise BundleMismatchError(
            f"this bundle's root chain starts after root version {root_from}; this device"
            f" trusts root version {trusted}: nothing was installed; make the bundle for this"
            f" device, with the chain from root version {trusted}"
        )
