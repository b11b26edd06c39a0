"""The firmware target schema: signed custom fields of a ``TargetFile``.

A firmware target is ``<hardware-model>/<name>-<version>.bin`` with TUF's
length and hashes, and these fields in ``TargetFile.custom``. Because they are
inside the signed targets metadata, neither the server nor a mirror can change
them (R13, R15, R25). ``FirmwareInfo`` is the one reader and writer of them:
it validates itself when built, and rejects unknown fields so that a typo
(``securityversion``) cannot silently drop the anti-rollback counter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuf.api.metadata import TargetFile

from repo_metadata.errors import InvalidFieldError
from repo_metadata.paths import check_target_path
from repo_metadata.semver import SemVer

HARDWARE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" accepts "\n"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
MAX_RELEASE_NOTES = 4096
MAX_HARDWARE_MODELS = 64
_FIELDS = frozenset(
    {
        "version",
        "security_version",
        "hardware_models",
        "requires_authorization",
        "min_installed_version",
        "sbom",
        "release_notes",
    }
)


def _strict_int(name: str, value: object) -> int:
    # bool is an int subclass in Python; "true" must never pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFieldError(name, f"must be an integer, got {type(value).__name__}")
    return value


def _semver(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFieldError(name, f"must be a string, got {type(value).__name__}")
    try:
        SemVer.parse(value)
    except ValueError as exc:
        raise InvalidFieldError(name, str(exc)) from None
    return value


@dataclass(frozen=True, kw_only=True)
class SbomRef:
    """Where the firmware's SBOM lives: a target path and its SHA-256."""

    path: str
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise InvalidFieldError("sbom.path", "must be a string")
        try:
            check_target_path(self.path)
        except InvalidFieldError as exc:
            raise InvalidFieldError("sbom.path", str(exc)) from None
        if not isinstance(self.sha256, str) or not _SHA256_HEX.match(self.sha256):
            raise InvalidFieldError("sbom.sha256", "must be 64 lowercase hexadecimal characters")


@dataclass(frozen=True, kw_only=True)
class FirmwareInfo:
    """Signed facts about one firmware image; immutable and self-validating."""

    version: str
    security_version: int
    hardware_models: tuple[str, ...]
    requires_authorization: bool = False
    min_installed_version: str | None = None
    sbom: SbomRef | None = None
    release_notes: str = ""
    _parsed: SemVer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _semver("version", self.version)
        object.__setattr__(self, "_parsed", SemVer.parse(self.version))
        if _strict_int("security_version", self.security_version) < 0:
            raise InvalidFieldError("security_version", "must be zero or more")
        self._check_models()
        if not isinstance(self.requires_authorization, bool):
            raise InvalidFieldError("requires_authorization", "must be true or false")
        if self.min_installed_version is not None:
            _semver("min_installed_version", self.min_installed_version)
            if SemVer.parse(self.min_installed_version) > self._parsed:
                raise InvalidFieldError(
                    "min_installed_version", "is above the firmware's own version"
                )
        if self.sbom is not None and not isinstance(self.sbom, SbomRef):
            raise InvalidFieldError("sbom", "must be an object with path and sha256")
        if not isinstance(self.release_notes, str):
            raise InvalidFieldError("release_notes", "must be a string")
        if len(self.release_notes) > MAX_RELEASE_NOTES:
            raise InvalidFieldError("release_notes", f"longer than {MAX_RELEASE_NOTES} characters")

    def _check_models(self) -> None:
        models = self.hardware_models
        if not isinstance(models, tuple) or not models:
            raise InvalidFieldError("hardware_models", "must be a non-empty list")
        if len(models) > MAX_HARDWARE_MODELS:
            raise InvalidFieldError("hardware_models", f"more than {MAX_HARDWARE_MODELS} entries")
        for model in models:
            if not isinstance(model, str) or not HARDWARE_MODEL.match(model):
                raise InvalidFieldError(
                    "hardware_models",
                    f"{model!r} is not a model name (letters, digits, '.', '_', '-')",
                )
        if len(set(models)) != len(models):
            raise InvalidFieldError("hardware_models", "lists a model twice")

    @property
    def semver(self) -> SemVer:
        """The parsed ``version``."""
        return self._parsed

    @classmethod
    def from_custom(cls, custom: Mapping[str, Any]) -> FirmwareInfo:
        """Read the fields from ``TargetFile.custom``; raise naming the bad field."""
        if not isinstance(custom, Mapping):
            raise InvalidFieldError("custom", "must be an object")
        unknown = sorted(set(custom) - _FIELDS)
        if unknown:
            raise InvalidFieldError(unknown[0], "is not a firmware field")
        for required in ("version", "security_version", "hardware_models"):
            if required not in custom:
                raise InvalidFieldError(required, "is missing")
        models = custom["hardware_models"]
        if not isinstance(models, list):
            raise InvalidFieldError("hardware_models", "must be a non-empty list")
        sbom = custom.get("sbom")
        if sbom is not None:
            if not isinstance(sbom, Mapping) or set(sbom) != {"path", "sha256"}:
                raise InvalidFieldError("sbom", "must be an object with exactly path and sha256")
            sbom = SbomRef(path=sbom["path"], sha256=sbom["sha256"])
        return cls(
            version=custom["version"],
            security_version=custom["security_version"],
            hardware_models=tuple(models),
            requires_authorization=custom.get("requires_authorization", False),
            min_installed_version=custom.get("min_installed_version"),
            sbom=sbom,
            release_notes=custom.get("release_notes", ""),
        )

    @classmethod
    def from_target(cls, target: TargetFile) -> FirmwareInfo:
        """Read the fields of a signed target; raise naming the target and field."""
        try:
            return cls.from_custom(target.custom)
        except InvalidFieldError as exc:
            message = str(exc).removeprefix(f"{exc.field}: ")
            raise InvalidFieldError(f"{target.path}: {exc.field}", message) from None

    def to_custom(self) -> dict[str, Any]:
        """The JSON object stored in ``TargetFile.custom``."""
        custom: dict[str, Any] = {
            "version": self.version,
            "security_version": self.security_version,
            "hardware_models": list(self.hardware_models),
            "requires_authorization": self.requires_authorization,
        }
        if self.min_installed_version is not None:
            custom["min_installed_version"] = self.min_installed_version
        if self.sbom is not None:
            custom["sbom"] = {"path": self.sbom.path, "sha256": self.sbom.sha256}
        if self.release_notes:
            custom["release_notes"] = self.release_notes
        return custom
