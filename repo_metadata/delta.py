"""The delta target schema: the signed ``delta`` custom field (issue 13).

A delta target carries a full release's bytes as the difference from an
earlier release (``fwcommon.delta``). It is signed in the same delegated role
as its release, at ``<release target path>.from-<base version>.bsdiff``, and
its ``TargetFile.custom`` holds exactly one field::

    {"delta": {"image": "<target path of the full release>",
               "base": "<target path of the base release>",
               "base_sha256": "<64 lowercase hex>", "base_length": <int>,
               "format": "bsdiff4"}}

``DeltaInfo`` is the one reader and writer of it. Its rules:
- DI1: ``custom`` is exactly ``{"delta": {...}}``: no firmware field beside
  it, so a delta can never pass for an install candidate (a reader of
  ``FirmwareInfo`` refuses it, and ``is_delta`` names it).
- DI2: the object has exactly the five fields; an unknown or missing one is
  named.
- DI3: ``image`` and ``base`` are safe target paths (``check_target_path``)
  and differ: a delta rebuilds one release from another one.
- DI4: ``base_sha256`` is 64 lowercase hexadecimal characters and
  ``base_length`` an integer, zero or more (never a bool): the client picks
  a delta only when they match the firmware it runs.
- DI5: ``format`` is ``bsdiff4``, the only format a device applies.
- DI6: the target's own path is ``delta_path(image, <base version>)``:
  ``<image>.from-<version>.bsdiff`` (``from_target`` checks the prefix and
  suffix; ``check_delta_target``, which knows the base release, the whole path).
- DI7: ``check_delta_target``, the one check the signer and the server both
  run: ``image`` and ``base`` are firmware targets (``FirmwareInfo`` reads
  them) for at least one common hardware model (a device runs the base and
  may install the image), and ``base_sha256``/``base_length`` are the base
  target's signed SHA-256 and length.

Only the FULL image's signed length and hashes decide what a device installs;
these fields only say which bytes the delta starts from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuf.api.metadata import TargetFile

from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.paths import check_target_path
from repo_metadata.semver import SemVer

FIELD = "delta"
FORMAT = "bsdiff4"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")  # \Z: "$" accepts "\n"
_FIELDS = frozenset({"image", "base", "base_sha256", "base_length", "format"})
_SUFFIX = ".bsdiff"


def is_delta(target: TargetFile) -> bool:
    """Whether ``target`` is a delta target (its custom has a ``delta`` field)."""
    return isinstance(target.custom, Mapping) and FIELD in target.custom


def delta_path(image: str, base_version: str) -> str:
    """The target path of the delta rebuilding ``image`` from release ``base_version`` (DI6)."""
    try:
        SemVer.parse(base_version)
    except ValueError as exc:
        raise InvalidFieldError("base version", str(exc)) from None
    return check_target_path(f"{check_target_path(image)}.from-{base_version}{_SUFFIX}")


def _path(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(name, f"must be a string, got {type(value).__name__}")
    try:
        return check_target_path(value)
    except InvalidFieldError as exc:
        raise InvalidFieldError(name, str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class DeltaInfo:
    """Signed facts about one delta target; immutable and self-validating."""

    image: str
    base: str
    base_sha256: str
    base_length: int
    format: str = FORMAT

    def __post_init__(self) -> None:
        _path("image", self.image)  # DI3
        _path("base", self.base)
        if self.image == self.base:
            raise InvalidFieldError("base", "is the image itself; a delta needs an earlier release")
        if not isinstance(self.base_sha256, str) or not _SHA256_HEX.match(self.base_sha256):
            raise InvalidFieldError("base_sha256", "must be 64 lowercase hexadecimal characters")
        length = self.base_length  # DI4: bool is an int subclass; true is not 1 byte
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise InvalidFieldError("base_length", "must be an integer, zero or more")
        if self.format != FORMAT:  # DI5
            raise InvalidFieldError("format", f"must be {FORMAT!r}, the only format devices apply")

    @classmethod
    def from_custom(cls, custom: Mapping[str, Any]) -> DeltaInfo:
        """Read the field from ``TargetFile.custom``; raise naming the bad field (DI1, DI2)."""
        if not isinstance(custom, Mapping):
            raise InvalidFieldError("custom", "must be an object")
        if FIELD not in custom:
            raise InvalidFieldError(FIELD, "is missing")
        others = sorted(set(custom) - {FIELD})
        if others:
            raise InvalidFieldError(others[0], "may not sit beside a delta field")
        fields = custom[FIELD]
        if not isinstance(fields, Mapping):
            raise InvalidFieldError(FIELD, "must be an object")
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise InvalidFieldError(f"{FIELD}.{unknown[0]}", "is not a delta field")
        missing = sorted(_FIELDS - set(fields))
        if missing:
            raise InvalidFieldError(f"{FIELD}.{missing[0]}", "is missing")
        try:
            return cls(**{name: fields[name] for name in _FIELDS})
        except InvalidFieldError as exc:
            message = str(exc).removeprefix(f"{exc.field}: ")
            raise InvalidFieldError(f"{FIELD}.{exc.field}", message) from None

    @classmethod
    def from_target(cls, target: TargetFile) -> DeltaInfo:
        """Read a signed delta target; raise naming the target and field (DI1 to DI6)."""
        try:
            info = cls.from_custom(target.custom)
        except InvalidFieldError as exc:
            message = str(exc).removeprefix(f"{exc.field}: ")
            raise InvalidFieldError(f"{target.path}: {exc.field}", message) from None
        prefix = f"{info.image}.from-"
        if not target.path.startswith(prefix) or not target.path.endswith(_SUFFIX):
            raise InvalidFieldError(
                f"{target.path}: path",
                f"a delta of {info.image} must be named {prefix}<base version>{_SUFFIX}",
            )
        return info

    def to_custom(self) -> dict[str, Any]:
        """The JSON object stored in ``TargetFile.custom``."""
        return {
            FIELD: {
                "image": self.image,
                "base": self.base,
                "base_sha256": self.base_sha256,
                "base_length": self.base_length,
                "format": self.format,
            }
        }


def check_delta_target(delta: TargetFile, image: TargetFile, base: TargetFile) -> DeltaInfo:
    """Check a delta target against the releases it names (DI1 to DI7); return its fields.

    ``image`` and ``base`` are the targets at the delta's ``image`` and ``base``
    paths, as signed beside it; raises ``InvalidFieldError`` naming the delta.
    """
    info = DeltaInfo.from_target(delta)
    for name, target in (("image", image), ("base", base)):
        if target.path != getattr(info, name):
            raise InvalidFieldError(
                f"{delta.path}: delta.{name}", f"names {getattr(info, name)}, not {target.path}"
            )
        if is_delta(target):
            raise InvalidFieldError(f"{delta.path}: delta.{name}", "is a delta, not a release")
    release, start = FirmwareInfo.from_target(image), FirmwareInfo.from_target(base)
    if not set(release.hardware_models) & set(start.hardware_models):
        raise InvalidFieldError(
            f"{delta.path}: delta.base", f"{base.path} shares no hardware model with {image.path}"
        )
    expected = delta_path(info.image, start.version)
    if delta.path != expected:
        raise InvalidFieldError(f"{delta.path}: path", f"must be {expected} for this base")
    if info.base_length != base.length or info.base_sha256 != base.hashes.get("sha256"):
        raise InvalidFieldError(
            f"{delta.path}: delta.base_sha256",
            f"base_sha256 and base_length must be the signed SHA-256 and length of {base.path}",
        )
    return info
