"""A technician's authorization for one install, and the keys a device trusts for it.

ARCHITECTURE flow 4; ANSM R9 (two-step confirmation), R25 (replay), R47 (one
key, one use), R58 (a technician authorizes on site). Pure: bytes, keys and
times in; a document, a verdict or an exception out. The server signs with
``sign``; the device decides with ``check`` (through ``AuthorizationContext``,
one rule of the install policy).

Who is trusted to authorize is not the server's decision. The public keys
(and their threshold) live in a field of the root role, ``ROOT_FIELD``,
which only the security officers' root keys sign, offline; a device learns
of a new set only through a root update it verifies like every other (TUF
5.3), so a compromised server cannot swap them. Rules for the field
(``AuthorizationKeys.from_field``, enforced for every root by
``repo_metadata.validation``):

- A1: ``{"keys": {keyid: key}, "threshold": n}``, nothing else; each keyid is
  its key's default keyid; 1 <= n <= the number of keys.
- A2 (R47): no authorization key is also a key of a root role; a key that
  signs installs must not also sign metadata (and the reverse).

The document (``SignedAuthorization``) is canonical JSON ``{"signed": ...,
"signatures": [...]}``, the signed part of ``_type`` ``authorization`` (the
only type a token key of purpose ``authorization`` signs). It binds one
device id, one target path and its SHA-256, a random nonce, the issuing
time, an expiry, the grace a deferred install keeps (below), and the
technician. Parsing refuses anything else (unknown or missing fields,
duplicate keys, a lifetime over ``MAX_LIFETIME``, a grace over ``MAX_GRACE``).

``check`` accepts a document for an install only if (each failure its own
``Problem``, in this order):

1. ``untrusted_key``: some signature is by a key the trusted root lists
   (with none listed, nothing is ever authorized);
2. ``bad_signature``: signatures by distinct trusted keys verify over the
   signed part and reach the threshold (a tampered document fails here);
3. ``wrong_device``: it names this device;
4. ``wrong_release``: it names exactly the target path and SHA-256 about to
   be installed (the same path with other bytes is another release);
5. ``replayed``: its nonce was never used for an install here, and was never
   bound to another install (``NonceRecord``);
6. ``expired``: the device's trusted time (the clock, never behind the time
   floor) is not after its expiry; or, for a document already bound to this
   very install by an earlier session (accepted, then deferred because the
   device was in use, R52, or interrupted), not after its expiry plus its
   grace. A deferral never costs an authorization given in time; the grace
   bounds how long the permission lasts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, Signer
from tuf.api.metadata import Root

from fwcommon.keyid import KeyIdError, default_keyid_of
from repo_metadata.errors import InvalidFieldError, InvalidMetadataError
from repo_metadata.paths import check_target_path
from repo_metadata.validation import parse_json_strict

#: The field of root's signed part that lists the authorization keys.
ROOT_FIELD = "x-fwupdate-authorization-keys"
PAYLOAD_TYPE = "authorization"
SPEC_VERSION = 1
#: An authorization lasts minutes (15 by default, ``DEFAULT_LIFETIME``), never over a day.
DEFAULT_LIFETIME = timedelta(minutes=15)
MAX_LIFETIME = timedelta(hours=24)
#: How long after its expiry an install accepted in time may still complete (R52).
DEFAULT_GRACE = timedelta(hours=8)
MAX_GRACE = timedelta(hours=24)
#: A document larger than this is refused before it is parsed.
MAX_DOCUMENT_SIZE = 16 * 1024
NONCE_HEX = 64

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_NONCE = re.compile(rf"^[0-9a-f]{{{NONCE_HEX}}}\Z")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_SIGNED_FIELDS = frozenset(
    {
        "_type",
        "spec_version",
        "device_id",
        "target_path",
        "sha256",
        "nonce",
        "issued",
        "expires",
        "grace_seconds",
        "technician",
    }
)


class AuthorizationError(InvalidFieldError):
    """A document or a root field that is not a well-formed authorization (rule A1)."""


class Problem(StrEnum):
    """Why ``check`` refuses a document (module docstring, rules 1 to 6)."""

    MALFORMED = "malformed"
    UNTRUSTED_KEY = "untrusted_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_DEVICE = "wrong_device"
    WRONG_RELEASE = "wrong_release"
    REPLAYED = "replayed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Verdict:
    """A refusal: which rule, and a sentence a technician can act on."""

    problem: Problem
    detail: str


# --- the keys a device trusts -------------------------------------------------


@dataclass(frozen=True)
class AuthorizationKeys:
    """Rule A1: the keys whose signatures authorize an install, and how many are needed."""

    keys: Mapping[str, Key]
    threshold: int = 1

    def __post_init__(self) -> None:
        for keyid, key in self.keys.items():
            try:
                expected = default_keyid_of(key)
            except KeyIdError as exc:
                raise AuthorizationError(ROOT_FIELD, f"key {keyid[:12]}: {exc}") from None
            if keyid != expected:
                raise AuthorizationError(
                    ROOT_FIELD, f"key {keyid[:12]} should have keyid {expected[:12]}"
                )
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int):
            raise AuthorizationError(ROOT_FIELD, "threshold must be an integer")
        if not 1 <= threshold <= len(self.keys):
            raise AuthorizationError(
                ROOT_FIELD,
                f"threshold {threshold} needs between 1 and {len(self.keys)} (the number of keys)",
            )

    @classmethod
    def from_field(cls, value: object) -> AuthorizationKeys:
        if not isinstance(value, dict) or set(value) != {"keys", "threshold"}:
            raise AuthorizationError(ROOT_FIELD, 'must be {"keys": {...}, "threshold": n}')
        keys = value["keys"]
        if not isinstance(keys, dict) or not keys:
            raise AuthorizationError(ROOT_FIELD, "keys must be a non-empty object")
        try:
            parsed = {keyid: Key.from_dict(keyid, dict(key)) for keyid, key in keys.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise AuthorizationError(ROOT_FIELD, f"a key is not a key: {exc}") from None
        return cls(parsed, value["threshold"])

    @classmethod
    def from_root(cls, root: Root) -> AuthorizationKeys | None:
        """The keys ``root`` lists (rules A1, A2), or None when it lists none."""
        value = root.unrecognized_fields.get(ROOT_FIELD)
        if value is None:
            return None
        keys = cls.from_field(value)
        keys.check_separation(root)
        return keys

    def check_separation(self, root: Root) -> None:
        """Rule A2 (R47): no authorization key is a key of a root role."""
        shared = sorted(set(self.keys) & set(root.keys))
        if shared:
            raise AuthorizationError(
                ROOT_FIELD,
                f"key {shared[0][:12]} is also a key of a root role; an authorization key"
                " signs authorizations only (R47)",
            )

    def to_field(self) -> dict[str, Any]:
        return {
            "keys": {keyid: key.to_dict() for keyid, key in sorted(self.keys.items())},
            "threshold": self.threshold,
        }

    def write_to(self, root: Root) -> None:
        """Set ``root``'s field to these keys (the signer's rotation command)."""
        self.check_separation(root)
        root.unrecognized_fields[ROOT_FIELD] = self.to_field()


# --- the document ---------------------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    """What a technician authorized (the signed part)."""

    device_id: str
    target_path: str
    sha256: str
    nonce: str
    issued: datetime
    expires: datetime
    technician: str
    grace: timedelta = DEFAULT_GRACE

    def __post_init__(self) -> None:
        _require(bool(_DEVICE_ID.match(self.device_id)), "device_id", "is not a device id")
        try:
            check_target_path(self.target_path)
        except ValueError as exc:
            raise AuthorizationError("target_path", str(exc)) from None
        _require(bool(_SHA256.match(self.sha256)), "sha256", "must be 64 lowercase hex digits")
        _require(bool(_NONCE.match(self.nonce)), "nonce", f"must be {NONCE_HEX} lowercase hex")
        _require(
            isinstance(self.technician, str) and 0 < len(self.technician) <= 64,
            "technician",
            "must name the person (1 to 64 characters)",
        )
        _require(self.issued < self.expires, "expires", "must be after issued")
        _require(
            self.expires - self.issued <= MAX_LIFETIME,
            "expires",
            f"an authorization lasts at most {MAX_LIFETIME}",
        )
        _require(
            timedelta(0) <= self.grace <= MAX_GRACE,
            "grace_seconds",
            f"must be between 0 and {int(MAX_GRACE.total_seconds())}",
        )

    @property
    def usable_until(self) -> datetime:
        """The latest trusted time an install bound to it in time may complete."""
        return self.expires + self.grace

    def signed_dict(self) -> dict[str, Any]:
        return {
            "_type": PAYLOAD_TYPE,
            "spec_version": SPEC_VERSION,
            "device_id": self.device_id,
            "target_path": self.target_path,
            "sha256": self.sha256,
            "nonce": self.nonce,
            "issued": _format_time(self.issued),
            "expires": _format_time(self.expires),
            "grace_seconds": int(self.grace.total_seconds()),
            "technician": self.technician,
        }

    def payload(self) -> bytes:
        """The bytes signed: canonical JSON of the signed part."""
        return _canonical(self.signed_dict())

    @classmethod
    def from_signed_dict(cls, signed: object) -> Authorization:
        if not isinstance(signed, dict):
            raise AuthorizationError("signed", "must be an object")
        missing = sorted(_SIGNED_FIELDS - set(signed))
        extra = sorted(set(signed) - _SIGNED_FIELDS)
        if missing or extra:
            raise AuthorizationError(
                "signed", f"fields missing: {missing or 'none'}; unknown: {extra or 'none'}"
            )
        _require(signed["_type"] == PAYLOAD_TYPE, "_type", f"must be {PAYLOAD_TYPE!r}")
        _require(
            signed["spec_version"] == SPEC_VERSION and type(signed["spec_version"]) is int,
            "spec_version",
            f"this device understands version {SPEC_VERSION}",
        )
        for name in ("device_id", "target_path", "sha256", "nonce", "technician"):
            _require(isinstance(signed[name], str), name, "must be a string")
        grace = signed["grace_seconds"]
        _require(type(grace) is int, "grace_seconds", "must be an integer")
        return cls(
            device_id=signed["device_id"],
            target_path=signed["target_path"],
            sha256=signed["sha256"],
            nonce=signed["nonce"],
            issued=_parse_time(signed["issued"], "issued"),
            expires=_parse_time(signed["expires"], "expires"),
            technician=signed["technician"],
            grace=timedelta(seconds=grace),
        )


@dataclass(frozen=True)
class SignedAuthorization:
    """An authorization and its signatures, as it travels (a file, a poll's answer)."""

    authorization: Authorization
    signatures: tuple[Signature, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "signed": self.authorization.signed_dict(),
            "signatures": [sig.to_dict() for sig in self.signatures],
        }

    def to_bytes(self) -> bytes:
        return _canonical(self.to_dict())

    @classmethod
    def from_dict(cls, value: object) -> SignedAuthorization:
        if not isinstance(value, dict) or set(value) != {"signed", "signatures"}:
            raise AuthorizationError(
                "authorization", 'must be {"signed": ..., "signatures": [...]}'
            )
        signatures = value["signatures"]
        if not isinstance(signatures, list) or not signatures:
            raise AuthorizationError("signatures", "must be a non-empty list")
        try:
            parsed = tuple(Signature.from_dict(dict(sig)) for sig in signatures)
        except (KeyError, TypeError, ValueError) as exc:
            raise AuthorizationError("signatures", f"a signature is malformed: {exc}") from None
        if any(not isinstance(s.keyid, str) or not isinstance(s.signature, str) for s in parsed):
            raise AuthorizationError("signatures", "keyid and sig must be strings")
        return cls(Authorization.from_signed_dict(value["signed"]), parsed)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedAuthorization:
        """Parse strictly: bounded size, one JSON object, no duplicate keys."""
        try:
            tree = parse_json_strict(data, max_size=MAX_DOCUMENT_SIZE, max_depth=6)
        except InvalidMetadataError as exc:
            raise AuthorizationError("authorization", str(exc)) from None
        return cls.from_dict(tree)


def sign(authorization: Authorization, signer: Signer) -> SignedAuthorization:
    """The server's half: sign ``authorization`` with the authorization key."""
    return SignedAuthorization(authorization, (signer.sign(authorization.payload()),))


# --- the device's decision --------------------------------------------------------


@dataclass(frozen=True)
class NonceRecord:
    """What a device keeps of an authorization it accepted (rule 5).

    ``used_at`` is set once the install it allowed is committed; until then,
    the same document may finish that same install within its grace.
    """

    nonce: str
    target_path: str
    sha256: str
    accepted_at: datetime
    usable_until: datetime
    used_at: datetime | None = None


def check(
    document: SignedAuthorization,
    *,
    trusted: AuthorizationKeys | None,
    device_id: str,
    target_path: str,
    sha256: str,
    at: datetime,
    nonces: Mapping[str, NonceRecord],
) -> Verdict | None:
    """Rules 1 to 6 of the module docstring: None when ``document`` allows this install."""
    auth = document.authorization
    signature = _signature_verdict(document, trusted)
    if signature is not None:
        return signature
    if auth.device_id != device_id:
        return Verdict(
            Problem.WRONG_DEVICE,
            f"it authorizes device {auth.device_id}, not this device ({device_id})",
        )
    if auth.target_path != target_path or auth.sha256 != sha256:
        return Verdict(
            Problem.WRONG_RELEASE,
            f"it authorizes {auth.target_path} with SHA-256 {auth.sha256[:16]}..., not"
            f" {target_path} with SHA-256 {sha256[:16]}...",
        )
    record = nonces.get(auth.nonce)
    if record is not None and (
        record.used_at is not None or (record.target_path, record.sha256) != (target_path, sha256)
    ):
        when = record.used_at or record.accepted_at
        return Verdict(
            Problem.REPLAYED,
            f"its nonce {auth.nonce[:16]}... was already used here on"
            f" {_format_time(when)}; an authorization allows one install",
        )
    deadline = auth.expires if record is None else auth.usable_until
    if at > deadline:
        return Verdict(
            Problem.EXPIRED,
            f"it expired at {_format_time(deadline)}; the device's trusted time is"
            f" {_format_time(at)}; ask the technician for a new one",
        )
    return None


def _signature_verdict(
    document: SignedAuthorization, trusted: AuthorizationKeys | None
) -> Verdict | None:
    if trusted is None:
        return Verdict(
            Problem.UNTRUSTED_KEY,
            "the trusted root lists no authorization key: the security officers must add one"
            " (fwsign authorization-keys)",
        )
    payload = document.authorization.payload()
    listed = [sig for sig in document.signatures if sig.keyid in trusted.keys]
    if not listed:
        return Verdict(
            Problem.UNTRUSTED_KEY,
            "it is not signed by any authorization key the trusted root lists (a rotated-out"
            " or foreign key)",
        )
    valid: set[str] = set()
    for sig in listed:
        try:
            trusted.keys[sig.keyid].verify_signature(sig, payload)
        except UnverifiedSignatureError:
            continue
        valid.add(sig.keyid)
    if len(valid) < trusted.threshold:
        return Verdict(
            Problem.BAD_SIGNATURE,
            f"{len(valid)} of the {trusted.threshold} required signature(s) verify: the"
            " document was altered or signed wrongly",
        )
    return None


@dataclass(frozen=True)
class AuthorizationContext:
    """What the install policy needs to apply its authorization rule, as data (pure).

    ``held`` are the documents this session has (picked up at the poll, or
    handed over as a file); ``nonces`` what the device keeps of accepted ones.
    """

    trusted: AuthorizationKeys | None
    device_id: str
    at: datetime
    held: Sequence[SignedAuthorization] = ()
    nonces: Mapping[str, NonceRecord] = field(default_factory=dict)

    def decide(
        self, target_path: str, sha256: str
    ) -> tuple[SignedAuthorization | None, Verdict | None]:
        """A document allowing this install, or the most telling refusal (None: none held)."""
        verdicts: list[Verdict] = []
        for document in self.held:
            verdict = check(
                document,
                trusted=self.trusted,
                device_id=self.device_id,
                target_path=target_path,
                sha256=sha256,
                at=self.at,
                nonces=self.nonces,
            )
            if verdict is None:
                return document, None
            verdicts.append(verdict)
        if not verdicts:
            return None, None
        return None, max(verdicts, key=lambda v: _SPECIFICITY.index(v.problem))

    def refusal(self, document: SignedAuthorization, offered: Mapping[str, str]) -> Verdict | None:
        """Why ``document`` allows none of the installs ``offered`` (path: SHA-256), or None.

        For a document handed over by a person: it is judged against the
        release it names, as the signed metadata offers it to this device.
        """
        auth = document.authorization
        digest = offered.get(auth.target_path)
        verdict = check(
            document,
            trusted=self.trusted,
            device_id=self.device_id,
            target_path=auth.target_path,
            sha256=auth.sha256 if digest is None else digest,
            at=self.at,
            nonces=self.nonces,
        )
        if verdict is None and digest is None:
            return Verdict(
                Problem.WRONG_RELEASE,
                f"it authorizes {auth.target_path}, which the signed metadata does not offer"
                " this device",
            )
        return verdict


#: Least to most telling: a refusal about this very release beats one about another.
_SPECIFICITY = (
    Problem.MALFORMED,
    Problem.UNTRUSTED_KEY,
    Problem.BAD_SIGNATURE,
    Problem.WRONG_DEVICE,
    Problem.WRONG_RELEASE,
    Problem.REPLAYED,
    Problem.EXPIRED,
)


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise AuthorizationError(name, message)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: object, name: str) -> datetime:
    if not isinstance(text, str) or not _TIME.match(text):
        raise AuthorizationError(name, "must be a UTC time like 2026-12-03T08:00:00Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise AuthorizationError(name, str(exc)) from None


def _canonical(value: dict[str, Any]) -> bytes:
    text = encode_canonical(value)
    if not isinstance(text, str):  # encode_canonical returns None only when given a writer
        raise AuthorizationError("authorization", "has no canonical JSON form")
    return text.encode("utf-8")
