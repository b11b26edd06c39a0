"""The token: PINs and lockout, one key one use (R47), keys sealed and never exported."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import Signature

import hsm_mock.token as token_module
from hsm_mock import MAX_PIN_ATTEMPTS, Algorithm, KdfParams, KeyInfo, Purpose, Role, Token
from hsm_mock._crypto import PrivateKey, generate_private_key
from hsm_mock._store import TokenFiles
from hsm_mock.errors import (
    HSMError,
    KeyIntegrityError,
    KeyNotFoundError,
    PayloadRefusedError,
    PinIncorrectError,
    PinPolicyError,
    PurposeMismatchError,
    TokenError,
    TokenLockedError,
    UsageLogError,
)
from hsm_mock.token import Session
from tests.hsm_mock.helpers import FAST_KDF, SO_PIN, USER_PIN, payload, snapshot_files

MakeKey = Callable[..., KeyInfo]


def _events(token: Token) -> list[str]:
    lines = (token.path / "usage.log").read_bytes().splitlines()
    return [json.loads(line)["event"] for line in lines]


def _fail_logins(token: Token, count: int) -> None:
    for _ in range(count):
        with pytest.raises(PinIncorrectError):
            token.login("not-the-pin")


# --- PINs: no default, policy, lockout -------------------------------------------------


@pytest.mark.parametrize("guess", ["0000", "123456", "12345678", "87654321"])
def test_no_default_pin_opens_a_new_token(token: Token, guess: str) -> None:
    """Threat: factory default PINs. Only the PIN set at init opens the token."""
    with pytest.raises(PinIncorrectError):
        token.login(guess)
    assert isinstance(token.login(USER_PIN), Session)


@pytest.mark.parametrize(
    ("so_pin", "user_pin", "message"),
    [
        ("", USER_PIN, "SO PIN must be"),
        (SO_PIN, "", "user PIN must be"),
        ("12345", USER_PIN, "SO PIN must be"),
        (SO_PIN, " pin-with-space", "leading or trailing"),
        (USER_PIN, USER_PIN, "must differ"),
    ],
)
def test_no_default_pin_init_enforces_pin_policy(
    token_dir: Path, so_pin: str, user_pin: str, message: str
) -> None:
    with pytest.raises(PinPolicyError, match=message):
        Token.init(token_dir, so_pin=so_pin, user_pin=user_pin, kdf=FAST_KDF)
    assert not token_dir.exists()


def test_init_refuses_to_overwrite_an_existing_token(token: Token, token_dir: Path) -> None:
    before = snapshot_files(token_dir)
    with pytest.raises(TokenError, match="already a token"):
        Token.init(token_dir, so_pin="other-so-pin", user_pin="other-user-pin", kdf=FAST_KDF)
    assert snapshot_files(token_dir) == before


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(TokenError, match="not an empty directory"):
        Token.init(tmp_path, so_pin=SO_PIN, user_pin=USER_PIN, kdf=FAST_KDF)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_kdf_defaults_are_memory_hard_and_weak_parameters_refused() -> None:
    assert KdfParams().memory_kib == 64 * 1024
    with pytest.raises(TokenError, match="KDF memory"):
        KdfParams(memory_kib=1024)


def test_wrong_user_pin_locks_token_after_five(token: Token) -> None:
    """Threat: PIN guessing. Five consecutive wrong user PINs lock the token."""
    for remaining in range(MAX_PIN_ATTEMPTS - 1, -1, -1):
        with pytest.raises(PinIncorrectError) as caught:
            token.login("not-the-pin")
        assert caught.value.remaining == remaining
    with pytest.raises(TokenLockedError, match="fwhsm unlock"):
        token.login(USER_PIN)
    assert token.status().user_locked
    assert _events(token)[-1] == "refuse-locked"


def test_wrong_pin_lockout_survives_restart(token_dir: Path, token: Token) -> None:
    """Threat: restarting the process to reset the counter. It lives in the token."""
    _fail_logins(token, 3)
    restarted = Token.open(token_dir)
    _fail_logins(restarted, 2)
    with pytest.raises(TokenLockedError):
        Token.open(token_dir).login(USER_PIN)


def test_right_pin_resets_the_consecutive_failure_count(token: Token) -> None:
    _fail_logins(token, MAX_PIN_ATTEMPTS - 1)
    token.login(USER_PIN)
    _fail_logins(token, MAX_PIN_ATTEMPTS - 1)
    assert token.login(USER_PIN)


def test_concurrent_wrong_pins_cannot_race_past_lockout(token_dir: Path, token: Token) -> None:
    """Threat: many processes guessing at once. The file lock serialises the counter."""

    def attempt(_: int) -> str:
        try:
            Token.open(token_dir).login("not-the-pin")
        except HSMError as exc:
            return type(exc).__name__
        return "logged in"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(12)))
    assert outcomes.count("PinIncorrectError") == MAX_PIN_ATTEMPTS
    assert outcomes.count("TokenLockedError") == 12 - MAX_PIN_ATTEMPTS
    assert token.status().user_failures == MAX_PIN_ATTEMPTS


def test_pin_attempt_is_counted_before_it_is_checked(
    token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threat: killing the process after a wrong guess, before the counter is written."""

    def killed(*_: object, **__: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(token_module, "unwrap_dek", killed)
    with pytest.raises(KeyboardInterrupt):
        token.login("a-guess-123")
    assert token.status().user_failures == 1


def test_so_unlock_resets_user_pin_and_keys_still_sign(token: Token, make_key: MakeKey) -> None:
    make_key(Purpose.TIMESTAMP)
    _fail_logins(token, MAX_PIN_ATTEMPTS)
    token.unlock(so_pin=SO_PIN, new_user_pin="fresh-user-pin")
    with pytest.raises(PinIncorrectError):
        token.login(USER_PIN)
    session = token.login("fresh-user-pin")
    assert session.sign(label="timestamp", payload=payload("timestamp"))
    assert "unlock" in _events(token)


def test_wrong_so_pin_five_times_locks_token_permanently(token: Token) -> None:
    """Threat: guessing the SO PIN to unlock. Five wrong SO PINs end the token's life."""
    for _ in range(MAX_PIN_ATTEMPTS):
        with pytest.raises(PinIncorrectError):
            token.unlock(so_pin="not-the-so-pin", new_user_pin="fresh-user-pin")
    with pytest.raises(TokenLockedError, match="permanently"):
        token.unlock(so_pin=SO_PIN, new_user_pin="fresh-user-pin")
    with pytest.raises(TokenLockedError, match="permanently"):
        token.login(USER_PIN)


def test_open_session_stops_signing_once_token_is_locked(
    token: Token, session: Session, make_key: MakeKey
) -> None:
    make_key(Purpose.SNAPSHOT)
    _fail_logins(token, MAX_PIN_ATTEMPTS)
    with pytest.raises(TokenLockedError):
        session.sign(label="snapshot", payload=payload("snapshot"))


def test_change_user_pin_and_so_pin(token: Token) -> None:
    token.change_pin(role=Role.USER, old_pin=USER_PIN, new_pin="new-user-pin")
    token.change_pin(role=Role.SO, old_pin=SO_PIN, new_pin="new-so-pin-1")
    assert token.login("new-user-pin")
    with pytest.raises(PinIncorrectError):
        token.change_pin(role=Role.SO, old_pin=SO_PIN, new_pin="another-so-pin")
    token.unlock(so_pin="new-so-pin-1", new_user_pin="third-user-pin")
    assert _events(token)[1:3] == ["change-user-pin", "change-so-pin"]


def test_closed_session_cannot_sign(session: Session, make_key: MakeKey) -> None:
    make_key(Purpose.TIMESTAMP)
    session.close()
    with pytest.raises(TokenError, match="closed"):
        session.sign(label="timestamp", payload=payload("timestamp"))


# --- R47: one key, one use ----------------------------------------------------------------

MISMATCHES = [
    (Purpose.TIMESTAMP, "root"),  # online key must never sign offline root
    (Purpose.TIMESTAMP, "targets"),
    (Purpose.SNAPSHOT, "targets"),
    (Purpose.SNAPSHOT, "timestamp"),
    (Purpose.AUTHORIZATION, "timestamp"),
    (Purpose.AUTHORIZATION, "targets"),
    (Purpose.TARGETS, "root"),
    (Purpose.DELEGATION, "root"),
    (Purpose.DELEGATION, "snapshot"),
    (Purpose.ROOT, "timestamp"),
    (Purpose.ROOT, "targets"),
    (Purpose.AUDIT, "authorization"),
    (Purpose.TIMESTAMP, "audit-checkpoint"),
]


@pytest.mark.parametrize(("purpose", "kind"), MISMATCHES)
def test_r47_purpose_mismatch_refused_and_logged(
    token: Token, session: Session, make_key: MakeKey, purpose: Purpose, kind: str
) -> None:
    """R47: a key of one purpose refuses payloads of another kind; the refusal is logged."""
    make_key(purpose)
    with pytest.raises(PurposeMismatchError, match="R47"):
        session.sign(label=purpose.value, payload=payload(kind))
    assert _events(token)[-1] == "refuse-purpose"


@pytest.mark.parametrize("purpose", list(Purpose))
def test_arbitrary_bytes_refused_for_every_purpose(
    token: Token, session: Session, make_key: MakeKey, purpose: Purpose
) -> None:
    """Threat: the token as a signing oracle for bytes of no known kind."""
    make_key(purpose)
    with pytest.raises(PayloadRefusedError):
        session.sign(label=purpose.value, payload=b"firmware image or a TLS handshake")
    assert _events(token)[-1] == "refuse-payload"


@pytest.mark.parametrize(("field", "value"), [("purpose", "root"), ("algorithm", "ed25519")])
def test_key_file_tampering_refused(
    token: Token, session: Session, make_key: MakeKey, field: str, value: str
) -> None:
    """R47 threat: edit a timestamp key's purpose on disk so it signs root. AEAD refuses."""
    make_key(Purpose.TIMESTAMP, Algorithm.ECDSA_P256)
    key_file = token.path / "keys" / "timestamp.json"
    record = json.loads(key_file.read_bytes())
    record[field] = value
    key_file.write_text(json.dumps(record))
    with pytest.raises(KeyIntegrityError, match="altered"):
        session.sign(label="timestamp", payload=payload(record["purpose"]))
    assert _events(token)[-1] == "refuse-key-integrity"


def test_key_file_copied_under_another_label_refused(
    token: Token, session: Session, make_key: MakeKey
) -> None:
    make_key(Purpose.TIMESTAMP)
    record = json.loads((token.path / "keys" / "timestamp.json").read_bytes())
    record["label"] = "root"
    (token.path / "keys" / "root.json").write_text(json.dumps(record))
    with pytest.raises(KeyIntegrityError):
        session.sign(label="root", payload=payload("timestamp"))


def test_key_labels_are_unique_and_safe(session: Session, make_key: MakeKey) -> None:
    make_key(Purpose.ROOT)
    with pytest.raises(TokenError, match="already exists"):
        make_key(Purpose.TIMESTAMP, label="root")
    with pytest.raises(TokenError, match="invalid key label"):
        make_key(Purpose.ROOT, label="../escape")
    with pytest.raises(KeyNotFoundError):
        session.sign(label="missing", payload=payload("root"))


# --- signatures -------------------------------------------------------------------------


SSLIB_SCHEMES = {
    Algorithm.ED25519: ("ed25519", "ed25519"),
    Algorithm.ECDSA_P256: ("ecdsa", "ecdsa-sha2-nistp256"),
}


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_signature_verifies_with_securesystemslib(
    session: Session, make_key: MakeKey, algorithm: Algorithm
) -> None:
    key = make_key(Purpose.SNAPSHOT, algorithm).public_key
    data = payload("snapshot")
    raw = session.sign(label="snapshot", payload=data)
    key.verify_signature(Signature(key.keyid, raw.hex()), data)
    assert (key.keytype, key.scheme) == SSLIB_SCHEMES[algorithm]


def test_log_write_failure_returns_no_signature(
    token: Token, session: Session, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log entry is fsynced before a signature leaves; if it cannot be, none does."""
    make_key(Purpose.TIMESTAMP)
    before = snapshot_files(token.path)

    def broken_fsync(_: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(UsageLogError, match="cannot write usage log"):
        session.sign(label="timestamp", payload=payload("timestamp"))
    monkeypatch.undo()
    assert snapshot_files(token.path) == before
    token.verify_log()


def test_state_write_failure_rolls_back_the_log_entry(
    token: Token, session: Session, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_key(Purpose.TIMESTAMP)
    before = snapshot_files(token.path)

    def broken(*_: object) -> None:
        raise TokenError("disk full")

    monkeypatch.setattr(TokenFiles, "write_state", broken)
    with pytest.raises(TokenError, match="disk full"):
        session.sign(label="timestamp", payload=payload("timestamp"))
    monkeypatch.undo()
    assert snapshot_files(token.path) == before
    token.verify_log()


# --- private keys never leave -------------------------------------------------------------


def _secret_forms(private_key: PrivateKey) -> list[bytes]:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        raw = private_key.private_bytes_raw()
    else:
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        raw = private_key.private_numbers().private_value.to_bytes(32, "big")
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return [raw, raw.hex().encode(), base64.b64encode(raw), der, base64.b64encode(der)]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_private_key_never_exported_nor_stored_in_clear(
    token: Token, session: Session, monkeypatch: pytest.MonkeyPatch, algorithm: Algorithm
) -> None:
    """Threat: key extraction. No API output or file holds the private key or a PIN."""
    generated: list[PrivateKey] = []

    def spy(chosen: Algorithm) -> PrivateKey:
        generated.append(generate_private_key(chosen))
        return generated[-1]

    monkeypatch.setattr(token_module, "generate_private_key", spy)
    info = session.generate(label="k", purpose=Purpose.ROOT, algorithm=algorithm)
    session.sign(label="k", payload=payload("root"))
    exposed = [repr(info).encode(), repr(token.keys()).encode(), repr(session).encode()]
    exposed.append(json.dumps(token.public_key("k").to_dict()).encode())
    exposed.extend(snapshot_files(token.path).values())
    for blob in exposed:
        for secret in [*_secret_forms(generated[0]), SO_PIN.encode(), USER_PIN.encode()]:
            assert secret not in blob
    assert not [name for name in dir(session) if "dek" in name.lower() and name[0] != "_"]


def test_token_files_are_private_to_the_owner(token: Token, make_key: MakeKey) -> None:
    make_key(Purpose.ROOT)
    for path in token.path.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({oct(mode)})"
