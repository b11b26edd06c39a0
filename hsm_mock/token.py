"""A software token that behaves like an HSM.

``Token`` is the token directory (no PIN needed to list keys or read public
keys); ``Token.login`` returns a ``Session`` (like PKCS#11 ``C_Login``) that
holds the unwrapped data-encryption key and can generate keys and sign.

Invariants:

* there is no default PIN: ``Token.init`` requires an SO PIN and a user PIN,
  each at least ``MIN_PIN_LENGTH`` characters, and different (separation of
  duties);
* keys are generated inside and sealed under the DEK; no method returns
  private key bytes or the DEK;
* every PIN attempt is counted *before* it is checked, under an exclusive
  file lock, and the counter lives in the token state: ``MAX_PIN_ATTEMPTS``
  consecutive wrong user PINs lock the token until the SO unlocks it; as many
  wrong SO PINs lock it for good. Killing the process mid-check, starting a
  new process or racing several processes cannot buy extra attempts. (A
  software token cannot stop someone who can rewrite its files from resetting
  the counter; a real HSM keeps it in tamper-resistant storage.)
* a key signs only payloads its purpose covers (R47, see ``purpose``);
* every signature, key generation, PIN change, unlock and refusal is appended
  to the hash-chained usage log and fsynced before the call returns; if the
  log cannot be written, no signature is returned;
* every failure leaves the token's files as they were.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Signature, SSlibKey

from fwcommon.files import atomic_write, fsync_dir
from hsm_mock._crypto import (
    Algorithm,
    KdfParams,
    PrivateKey,
    Wrap,
    generate_private_key,
    new_dek,
    open_private_key,
    public_key_of,
    seal_private_key,
    sign_with,
    unwrap_dek,
    wrap_dek,
)
from hsm_mock._store import (
    FILE_MODE,
    KeyRecord,
    TokenFiles,
    TokenState,
    check_label,
    key_associated_data,
)
from hsm_mock.errors import (
    HSMError,
    KeyIntegrityError,
    PayloadRefusedError,
    PinIncorrectError,
    PinPolicyError,
    PurposeMismatchError,
    TokenError,
    TokenLockedError,
)
from hsm_mock.purpose import Purpose, payload_type, require_purpose
from hsm_mock.usage_log import GENESIS, Event, LogHead, Record, next_entry, verify_chain

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MIN_PIN_LENGTH = 6
MAX_PIN_LENGTH = 128
MAX_PIN_ATTEMPTS = 5


def utc_now() -> datetime:
    """The default clock of the usage log."""
    return datetime.now(UTC)


class Role(StrEnum):
    """Who a PIN belongs to: the key user or the security officer."""

    USER = "user"
    SO = "so"

    @property
    def pin_name(self) -> str:
        return "user PIN" if self is Role.USER else "SO PIN"


@dataclass(frozen=True)
class KeyInfo:
    """The public facts about one key on the token."""

    label: str
    purpose: Purpose
    algorithm: Algorithm
    public_key: SSlibKey

    @property
    def keyid(self) -> str:
        return self.public_key.keyid

    @classmethod
    def of(cls, record: KeyRecord) -> KeyInfo:
        return cls(record.label, record.purpose, record.algorithm, record.public_key)


@dataclass(frozen=True)
class TokenStatus:
    """PIN counters, lock state and usage log head (readable without a PIN)."""

    user_failures: int
    so_failures: int
    user_locked: bool
    permanently_locked: bool
    log_head: LogHead


def check_new_pin(pin: str, *, name: str) -> None:
    """Raise ``PinPolicyError`` unless ``pin`` may be set as a PIN (there is no default)."""
    if not isinstance(pin, str) or not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise PinPolicyError(f"{name} must be {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} characters")
    if pin.strip() != pin or not pin.isprintable():
        raise PinPolicyError(f"{name} must be printable, without leading or trailing spaces")


class _Transaction:
    """One locked read-modify-write: state read once, log and state written together."""

    def __init__(self, files: TokenFiles, clock: Clock) -> None:
        self.files = files
        self.clock = clock
        self.state = files.read_state()

    def save(self, state: TokenState) -> None:
        self.files.write_state(state)
        self.state = state

    def record(self, record: Record, state: TokenState | None = None) -> None:
        """Append ``record`` (fsynced), then store the new head with ``state``.

        If the state cannot be written the append is cut back, so the log and
        its recorded head never disagree after a failure.
        """
        base = self.state if state is None else state
        line, head = next_entry(base.head, record, now=self.clock())
        size = self.files.append_log(line)
        try:
            self.save(replace(base, head=head))
        except BaseException:
            self.files.truncate_log(size)
            raise

    def refuse(self, record: Record, error: HSMError) -> NoReturn:
        """Log a refusal, then raise ``error`` (even if the log could not be written)."""
        try:
            self.record(record)
        except (HSMError, OSError) as exc:
            logger.warning("could not log %s on %s: %s", record.event, self.files.root, exc)
        raise error


@contextmanager
def _transaction(files: TokenFiles, clock: Clock) -> Iterator[_Transaction]:
    with files.locked():
        yield _Transaction(files, clock)


def _failures(state: TokenState, role: Role) -> int:
    return state.user_failures if role is Role.USER else state.so_failures


def _with_failures(state: TokenState, role: Role, failures: int) -> TokenState:
    if role is Role.USER:
        return replace(state, user_failures=failures)
    return replace(state, so_failures=failures)


def _with_wrap(state: TokenState, role: Role, wrap: Wrap) -> TokenState:
    if role is Role.USER:
        return replace(state, user_wrap=wrap)
    return replace(state, so_wrap=wrap)


def _refuse_if_locked(txn: _Transaction, role: Role, record: Record) -> None:
    """Throttle first: a locked token refuses before any PIN or payload is looked at."""
    locked = replace(record, event=Event.REFUSE_LOCKED)
    if txn.state.so_failures >= MAX_PIN_ATTEMPTS:
        txn.refuse(
            locked,
            TokenLockedError(
                "token is permanently locked: the SO PIN was wrong "
                f"{MAX_PIN_ATTEMPTS} times; initialise a new token and rotate its keys"
            ),
        )
    if role is Role.USER and txn.state.user_failures >= MAX_PIN_ATTEMPTS:
        txn.refuse(
            locked,
            TokenLockedError(
                f"token is locked after {MAX_PIN_ATTEMPTS} wrong user PINs; "
                "a security officer must run: fwhsm unlock --token DIR"
            ),
        )


def _check_pin(txn: _Transaction, role: Role, pin: str) -> bytes:
    """Return the DEK if ``pin`` is right; count the attempt first, reset it on success."""
    failures = _failures(txn.state, role) + 1
    # Counted before checking: a process killed mid-check still spends the attempt.
    txn.save(_with_failures(txn.state, role, failures))
    wrap = txn.state.user_wrap if role is Role.USER else txn.state.so_wrap
    dek = unwrap_dek(wrap, pin, txn.state.kdf, role=role.value)
    if dek is None:
        remaining = max(0, MAX_PIN_ATTEMPTS - failures)
        event = Event.REFUSE_USER_PIN if role is Role.USER else Event.REFUSE_SO_PIN
        suffix = f"{remaining} attempt(s) left" if remaining else "the token is now locked"
        txn.refuse(
            Record(event),
            PinIncorrectError(f"{role.pin_name} incorrect; {suffix}", remaining=remaining),
        )
    txn.save(_with_failures(txn.state, role, 0))
    return dek


def _refuse_existing(target: Path) -> None:
    if (target / "token.json").exists():
        raise TokenError(f"{target} is already a token; refusing to initialise over it")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TokenError(f"{target} exists and is not an empty directory")


def _create(target: Path, state: TokenState, first_line: bytes) -> None:
    """Build the token in a private staging directory, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".init", dir=target.parent))
    try:
        files = TokenFiles(staging)
        files.keys.mkdir(mode=0o700)
        atomic_write(files.log, first_line, mode=FILE_MODE)
        files.write_state(state)
        # rename(2) is atomic and fails if target became a non-empty directory.
        staging.rename(target)
    except (OSError, HSMError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TokenError(f"cannot create token {target}: {exc}") from exc
    fsync_dir(target.parent)


class Token:
    """A token directory. Obtain one with ``Token.init`` or ``Token.open``."""

    def __init__(self, files: TokenFiles, *, clock: Clock) -> None:
        self._files = files
        self._clock = clock

    @classmethod
    def open(cls, path: Path | str, *, clock: Clock = utc_now) -> Token:
        """Open an existing token; raise ``TokenError`` if ``path`` is not one."""
        files = TokenFiles(Path(path).absolute())
        files.read_state()
        return cls(files, clock=clock)

    @classmethod
    def init(
        cls,
        path: Path | str,
        *,
        so_pin: str,
        user_pin: str,
        kdf: KdfParams | None = None,
        clock: Clock = utc_now,
    ) -> Token:
        """Create a new token at ``path`` (absent or an empty directory), never over one."""
        check_new_pin(so_pin, name="SO PIN")
        check_new_pin(user_pin, name="user PIN")
        if so_pin == user_pin:
            raise PinPolicyError("the SO PIN and the user PIN must differ (separation of duties)")
        target = Path(path).absolute()
        _refuse_existing(target)
        kdf = kdf or KdfParams()
        dek = new_dek()
        line, head = next_entry(GENESIS, Record(Event.INIT), now=clock())
        state = TokenState(
            token_id=secrets.token_hex(16),
            kdf=kdf,
            user_wrap=wrap_dek(dek, user_pin, kdf, role=Role.USER.value),
            so_wrap=wrap_dek(dek, so_pin, kdf, role=Role.SO.value),
            user_failures=0,
            so_failures=0,
            head=head,
        )
        _create(target, state, line)
        return cls.open(target, clock=clock)

    @property
    def path(self) -> Path:
        return self._files.root

    def __repr__(self) -> str:
        return f"Token({str(self.path)!r})"

    def keys(self) -> list[KeyInfo]:
        """Every key on the token, sorted by label (public facts only)."""
        return [self.key(label) for label in self._files.labels()]

    def key(self, label: str) -> KeyInfo:
        """The public facts of key ``label``; ``KeyNotFoundError`` if absent."""
        return KeyInfo.of(self._files.read_key(label))

    def public_key(self, label: str) -> SSlibKey:
        """The securesystemslib public key of ``label`` (no PIN needed)."""
        return self.key(label).public_key

    def status(self) -> TokenStatus:
        """PIN counters and lock state, without a PIN."""
        state = self._files.read_state()
        return TokenStatus(
            user_failures=state.user_failures,
            so_failures=state.so_failures,
            user_locked=state.user_failures >= MAX_PIN_ATTEMPTS,
            permanently_locked=state.so_failures >= MAX_PIN_ATTEMPTS,
            log_head=state.head,
        )

    def verify_log(self) -> LogHead:
        """Verify the usage log against the recorded head; raise ``UsageLogError`` naming seq."""
        with self._files.locked():
            head = self._files.read_state().head
            return verify_chain(self._files.read_log(), head)

    def login(self, user_pin: str) -> Session:
        """Open a user session; wrong PINs count toward the lockout."""
        with _transaction(self._files, self._clock) as txn:
            _refuse_if_locked(txn, Role.USER, Record(Event.REFUSE_LOCKED))
            dek = _check_pin(txn, Role.USER, user_pin)
        return Session(self._files, self._clock, dek)

    def unlock(self, *, so_pin: str, new_user_pin: str) -> None:
        """SO resets a (locked) user PIN and its counter, like PKCS#11 ``C_InitPIN``."""
        check_new_pin(new_user_pin, name="new user PIN")
        if new_user_pin == so_pin:
            raise PinPolicyError("the user PIN must differ from the SO PIN")
        with _transaction(self._files, self._clock) as txn:
            _refuse_if_locked(txn, Role.SO, Record(Event.REFUSE_LOCKED))
            dek = _check_pin(txn, Role.SO, so_pin)
            wrap = wrap_dek(dek, new_user_pin, txn.state.kdf, role=Role.USER.value)
            txn.record(Record(Event.UNLOCK), replace(txn.state, user_wrap=wrap, user_failures=0))

    def change_pin(self, *, role: Role, old_pin: str, new_pin: str) -> None:
        """Change the user or SO PIN; the old one must be right (and counts if wrong)."""
        check_new_pin(new_pin, name=f"new {role.pin_name}")
        with _transaction(self._files, self._clock) as txn:
            _refuse_if_locked(txn, role, Record(Event.REFUSE_LOCKED))
            dek = _check_pin(txn, role, old_pin)
            wrap = wrap_dek(dek, new_pin, txn.state.kdf, role=role.value)
            event = Event.CHANGE_USER_PIN if role is Role.USER else Event.CHANGE_SO_PIN
            txn.record(Record(event), _with_wrap(txn.state, role, wrap))


class Session:
    """A logged-in user session holding the unwrapped DEK (like a PKCS#11 session).

    The DEK has no accessor and is not in ``repr``; ``close`` drops it (Python
    cannot guarantee the bytes are wiped from memory).
    """

    __slots__ = ("_clock", "_dek", "_files")

    def __init__(self, files: TokenFiles, clock: Clock, dek: bytes) -> None:
        self._files = files
        self._clock = clock
        self._dek: bytes | None = dek

    def __repr__(self) -> str:
        state = "open" if self._dek else "closed"
        return f"Session({str(self._files.root)!r}, {state})"

    def close(self) -> None:
        """Log out: the session can no longer sign or generate."""
        self._dek = None

    def _require_dek(self) -> bytes:
        if self._dek is None:
            raise TokenError("session is closed; log in again")
        return self._dek

    def generate(self, *, label: str, purpose: Purpose, algorithm: Algorithm) -> KeyInfo:
        """Generate a key inside the token for exactly one ``purpose`` (R47); labels are unique."""
        purpose, algorithm = Purpose(purpose), Algorithm(algorithm)
        path = self._files.key(check_label(label))
        with _transaction(self._files, self._clock) as txn:
            _refuse_if_locked(txn, Role.USER, Record(Event.REFUSE_LOCKED, label=label))
            if path.exists():
                raise TokenError(f"a key labelled {label!r} already exists on this token")
            record = self._new_record(label, purpose, algorithm)
            self._files.write_key(record)
            try:
                txn.record(Record(Event.GENERATE, label, record.public_key.keyid, purpose.value))
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return KeyInfo.of(record)

    def _new_record(self, label: str, purpose: Purpose, algorithm: Algorithm) -> KeyRecord:
        private_key = generate_private_key(algorithm)
        public = public_key_of(private_key)
        bound = key_associated_data(
            label=label, purpose=purpose, algorithm=algorithm, public_key=public
        )
        sealed = seal_private_key(self._require_dek(), private_key, bound)
        return KeyRecord(label, purpose, algorithm, public, sealed)

    def sign(self, *, label: str, payload: bytes) -> bytes:
        """Sign ``payload`` with key ``label`` and return the signature bytes.

        Checks, each refusal logged: token not locked; payload canonical JSON
        of a known ``_type`` that the key's purpose covers (R47); key file
        intact. The signature is verified with the public key, logged and
        fsynced, and only then returned.
        """
        dek = self._require_dek()
        with _transaction(self._files, self._clock) as txn:
            key = self._files.read_key(label)
            entry = Record(
                Event.SIGN,
                label=label,
                keyid=key.public_key.keyid,
                purpose=key.purpose.value,
                payload_sha256=hashlib.sha256(payload).hexdigest(),
            )
            _refuse_if_locked(txn, Role.USER, entry)
            entry = replace(entry, payload_type=_classify(txn, key, payload, entry))
            signature = sign_with(_unseal(txn, key, dek, entry), payload)
            _verify(key.public_key, signature, payload)
            txn.record(entry)
        return signature


def _classify(txn: _Transaction, key: KeyRecord, payload: bytes, entry: Record) -> str:
    try:
        kind = payload_type(payload)
    except PayloadRefusedError as exc:
        txn.refuse(replace(entry, event=Event.REFUSE_PAYLOAD), exc)
    try:
        require_purpose(key.purpose, kind)
    except PurposeMismatchError as exc:
        txn.refuse(replace(entry, event=Event.REFUSE_PURPOSE, payload_type=kind), exc)
    return kind


def _unseal(txn: _Transaction, key: KeyRecord, dek: bytes, entry: Record) -> PrivateKey:
    try:
        return open_private_key(dek, key.sealed, key.associated_data, key.algorithm)
    except KeyIntegrityError as exc:
        txn.refuse(replace(entry, event=Event.REFUSE_KEY_INTEGRITY), exc)


def _verify(public_key: SSlibKey, signature: bytes, payload: bytes) -> None:
    try:
        public_key.verify_signature(Signature(public_key.keyid, signature.hex()), payload)
    except UnverifiedSignatureError as exc:
        raise KeyIntegrityError(
            "the new signature does not verify with the key's public key"
        ) from exc
