"""The token directory on disk (private to ``hsm_mock``).

Layout::

    <token>/token.json       state: KDF parameters, the two DEK wraps, PIN
                             failure counters, usage log head
    <token>/keys/<label>.json one sealed key per label, with its public key
    <token>/usage.log        the hash-chained usage log (JSON lines)
    <token>/.lock            flock'ed around every read-modify-write

Invariants: every file is written atomically with mode 0600
(``fwcommon.files.atomic_write``) or appended and fsynced (the log);
anything read back is validated and a malformed file raises ``TokenError``.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import SSlibKey

from fwcommon.files import atomic_write
from fwcommon.keyid import default_keyid_of
from hsm_mock._crypto import Algorithm, KdfParams, Sealed, Wrap
from hsm_mock.errors import KeyNotFoundError, TokenError, UsageLogError
from hsm_mock.purpose import Purpose
from hsm_mock.usage_log import LogHead

FORMAT = 1
STATE_FILE = "token.json"
KEYS_DIR = "keys"
LOG_FILE = "usage.log"
LOCK_FILE = ".lock"
FILE_MODE = 0o600
# Labels become file names and URI query values: keep them plain.
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_label(label: str) -> str:
    """Return ``label`` if it is a safe key label, else raise ``TokenError``."""
    if not isinstance(label, str) or not LABEL.match(label):
        raise TokenError(
            f"invalid key label {label!r}: use 1-64 of A-Z a-z 0-9 . _ -, starting alphanumeric"
        )
    return label


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(document: dict[str, Any]) -> bytes:
    return str(encode_canonical(document)).encode("utf-8")


def _file_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def _get(document: Any, name: str, kind: type) -> Any:
    if not isinstance(document, dict) or not isinstance(document.get(name), kind):
        raise TokenError(f"token file is malformed: {name!r} missing or not {kind.__name__}")
    return document[name]


def _unb64(document: Any, name: str) -> bytes:
    try:
        return base64.b64decode(_get(document, name, str), validate=True)
    except binascii.Error as exc:
        raise TokenError(f"token file is malformed: {name!r} is not base64") from exc


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenError(f"cannot read {path}: {exc}") from exc


def _sealed_to_json(sealed: Sealed) -> dict[str, str]:
    return {"nonce": _b64(sealed.nonce), "ciphertext": _b64(sealed.ciphertext)}


def _sealed_from_json(document: Any) -> Sealed:
    return Sealed(_unb64(document, "nonce"), _unb64(document, "ciphertext"))


def _wrap_to_json(wrap: Wrap) -> dict[str, Any]:
    return {"salt": _b64(wrap.salt), "sealed": _sealed_to_json(wrap.sealed)}


def _wrap_from_json(document: Any) -> Wrap:
    return Wrap(_unb64(document, "salt"), _sealed_from_json(_get(document, "sealed", dict)))


@dataclass(frozen=True)
class TokenState:
    """Everything in ``token.json``; replaced as a whole, never edited in place."""

    token_id: str
    kdf: KdfParams
    user_wrap: Wrap
    so_wrap: Wrap
    user_failures: int
    so_failures: int
    head: LogHead

    def to_json(self) -> bytes:
        kdf = self.kdf
        return _file_json(
            {
                "format": FORMAT,
                "token_id": self.token_id,
                "kdf": {
                    "algorithm": "argon2id",
                    "memory_kib": kdf.memory_kib,
                    "iterations": kdf.iterations,
                    "lanes": kdf.lanes,
                },
                "user_wrap": _wrap_to_json(self.user_wrap),
                "so_wrap": _wrap_to_json(self.so_wrap),
                "user_failures": self.user_failures,
                "so_failures": self.so_failures,
                "log_head": {"seq": self.head.seq, "hash": self.head.hash},
            }
        )

    @classmethod
    def from_json(cls, document: Any) -> TokenState:
        if _get(document, "format", int) != FORMAT:
            raise TokenError(f"unsupported token format {document['format']!r}")
        kdf, head = _get(document, "kdf", dict), _get(document, "log_head", dict)
        if _get(kdf, "algorithm", str) != "argon2id":
            raise TokenError("token file is malformed: KDF is not argon2id")
        return cls(
            token_id=_get(document, "token_id", str),
            kdf=KdfParams(
                _get(kdf, "memory_kib", int), _get(kdf, "iterations", int), _get(kdf, "lanes", int)
            ),
            user_wrap=_wrap_from_json(_get(document, "user_wrap", dict)),
            so_wrap=_wrap_from_json(_get(document, "so_wrap", dict)),
            user_failures=_get(document, "user_failures", int),
            so_failures=_get(document, "so_failures", int),
            head=LogHead(_get(head, "seq", int), _get(head, "hash", str)),
        )


def key_associated_data(
    *, label: str, purpose: Purpose, algorithm: Algorithm, public_key: SSlibKey
) -> bytes:
    """The AEAD associated data of a sealed key: binds every field a key file shows (R47)."""
    return _canonical(
        {
            "format": FORMAT,
            "label": label,
            "purpose": purpose.value,
            "algorithm": algorithm.value,
            "keyid": public_key.keyid,
            "public": public_key.to_dict(),
        }
    )


@dataclass(frozen=True)
class KeyRecord:
    """One key file: public facts in clear, the private key sealed under the DEK."""

    label: str
    purpose: Purpose
    algorithm: Algorithm
    public_key: SSlibKey
    sealed: Sealed

    @property
    def associated_data(self) -> bytes:
        return key_associated_data(
            label=self.label,
            purpose=self.purpose,
            algorithm=self.algorithm,
            public_key=self.public_key,
        )

    def to_json(self) -> bytes:
        return _file_json(
            {
                "format": FORMAT,
                "label": self.label,
                "purpose": self.purpose.value,
                "algorithm": self.algorithm.value,
                "keyid": self.public_key.keyid,
                "public": self.public_key.to_dict(),
                "sealed": _sealed_to_json(self.sealed),
            }
        )

    @classmethod
    def from_json(cls, document: Any) -> KeyRecord:
        label = _get(document, "label", str)
        try:
            purpose = Purpose(_get(document, "purpose", str))
            algorithm = Algorithm(_get(document, "algorithm", str))
            public = SSlibKey.from_dict(
                _get(document, "keyid", str), dict(_get(document, "public", dict))
            )
            keyid = default_keyid_of(public)  # KeyIdError is a ValueError
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"key file is malformed: {exc}") from exc
        if public.keyid != keyid:
            raise TokenError(f"key file of {label!r}: keyid does not match its public key")
        return cls(
            label,
            purpose,
            algorithm,
            public,
            _sealed_from_json(_get(document, "sealed", dict)),
        )


@dataclass(frozen=True)
class TokenFiles:
    """Paths inside one token directory and the raw reads and writes on them."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def keys(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def log(self) -> Path:
        return self.root / LOG_FILE

    def key(self, label: str) -> Path:
        return self.keys / f"{check_label(label)}.json"

    def read_state(self) -> TokenState:
        try:
            return TokenState.from_json(_load_json(self.state))
        except FileNotFoundError as exc:
            raise TokenError(
                f"{self.root} is not a fwhsm token (no {STATE_FILE}); create one with fwhsm init"
            ) from exc

    def write_state(self, state: TokenState) -> None:
        try:
            atomic_write(self.state, state.to_json(), mode=FILE_MODE)
        except OSError as exc:
            raise TokenError(f"cannot write {self.state}: {exc.strerror}") from exc

    def read_key(self, label: str) -> KeyRecord:
        try:
            record = KeyRecord.from_json(_load_json(self.key(label)))
        except FileNotFoundError as exc:
            raise KeyNotFoundError(f"no key labelled {label!r} on token {self.root}") from exc
        if record.label != label:
            raise TokenError(f"key file {self.key(label)} holds label {record.label!r}")
        return record

    def write_key(self, record: KeyRecord) -> None:
        path = self.key(record.label)
        try:
            atomic_write(path, record.to_json(), mode=FILE_MODE)
        except OSError as exc:
            raise TokenError(f"cannot write {path}: {exc.strerror}") from exc

    def labels(self) -> list[str]:
        return sorted(path.stem for path in self.keys.glob("*.json") if LABEL.match(path.stem))

    def read_log(self) -> list[bytes]:
        try:
            return self.log.read_bytes().splitlines()
        except OSError as exc:
            raise UsageLogError(f"cannot read usage log {self.log}: {exc.strerror}") from exc

    def append_log(self, line: bytes) -> int:
        """Append ``line`` durably (fsync); return the log's size before, for rollback."""
        try:
            with self.log.open("ab") as handle:
                size = handle.tell()
                try:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    handle.truncate(size)
                    raise
        except OSError as exc:
            raise UsageLogError(f"cannot write usage log {self.log}: {exc.strerror}") from exc
        return size

    def truncate_log(self, size: int) -> None:
        """Undo an append whose state update failed (best effort, durable)."""
        with self.log.open("r+b") as handle:
            handle.truncate(size)
            os.fsync(handle.fileno())

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive ``flock`` on the token: one read-modify-write at a time."""
        try:
            fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise TokenError(f"cannot lock token {self.root}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
