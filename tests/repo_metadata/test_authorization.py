"""The technician's authorization core (repo_metadata.authorization): one test per rule.

Each test names the threat it answers (R9, R25, R47, R58; ARCHITECTURE flow 4).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from securesystemslib.signer import CryptoSigner, Signature
from tuf.api.metadata import Metadata, Root

from repo_metadata.authorization import (
    MAX_LIFETIME,
    ROOT_FIELD,
    Authorization,
    AuthorizationContext,
    AuthorizationError,
    AuthorizationKeys,
    NonceRecord,
    Problem,
    SignedAuthorization,
    check,
    sign,
)
from repo_metadata.errors import InvalidMetadataError
from repo_metadata.validation import check_metadata

T0 = datetime(2030, 5, 4, 10, 0, tzinfo=UTC)
SHA = "ab" * 32
OTHER_SHA = "cd" * 32
PATH = "pump-x100/pump-fw-2.0.0.bin"
KEY = CryptoSigner.generate_ed25519()
OTHER_KEY = CryptoSigner.generate_ed25519()
TRUSTED = AuthorizationKeys({KEY.public_key.keyid: KEY.public_key})


def authorization(**changes: object) -> Authorization:
    fields: dict[str, object] = {
        "device_id": "pump-0001",
        "target_path": PATH,
        "sha256": SHA,
        "nonce": "0f" * 32,
        "issued": T0,
        "expires": T0 + timedelta(minutes=15),
        "technician": "tom",
        "grace": timedelta(hours=1),
    }
    fields.update(changes)
    return Authorization(**fields)  # type: ignore[arg-type]


def verdict(
    document: SignedAuthorization,
    *,
    at: datetime = T0 + timedelta(minutes=5),
    trusted: AuthorizationKeys | None = TRUSTED,
    device_id: str = "pump-0001",
    path: str = PATH,
    sha256: str = SHA,
    nonces: dict[str, NonceRecord] | None = None,
) -> Problem | None:
    found = check(
        document,
        trusted=trusted,
        device_id=device_id,
        target_path=path,
        sha256=sha256,
        at=at,
        nonces=nonces or {},
    )
    return None if found is None else found.problem


def test_an_authorization_signed_by_the_trusted_key_for_this_install_is_accepted() -> None:
    assert verdict(sign(authorization(), KEY)) is None


def test_it_survives_its_own_wire_form_byte_for_byte() -> None:
    document = sign(authorization(), KEY)
    again = SignedAuthorization.from_bytes(document.to_bytes())
    assert again == document
    assert verdict(again) is None


def test_for_another_device_is_refused_r58() -> None:
    assert verdict(sign(authorization(device_id="pump-0002"), KEY)) is Problem.WRONG_DEVICE


def test_for_another_release_is_refused() -> None:
    document = sign(authorization(target_path="pump-x100/pump-fw-3.0.0.bin"), KEY)
    assert verdict(document) is Problem.WRONG_RELEASE


def test_for_the_same_path_with_other_bytes_is_refused() -> None:
    assert verdict(sign(authorization(sha256=OTHER_SHA), KEY)) is Problem.WRONG_RELEASE


def test_expired_at_the_devices_trusted_time_is_refused() -> None:
    document = sign(authorization(), KEY)
    assert verdict(document, at=T0 + timedelta(minutes=15)) is None
    assert verdict(document, at=T0 + timedelta(minutes=15, seconds=1)) is Problem.EXPIRED


def test_tampered_after_signing_is_refused() -> None:
    document = sign(authorization(), KEY)
    tree = document.to_dict()
    tree["signed"]["device_id"] = "pump-0002"
    tampered = SignedAuthorization.from_dict(tree)
    assert verdict(tampered, device_id="pump-0002") is Problem.BAD_SIGNATURE


def test_signed_by_an_untrusted_or_rotated_out_key_is_refused_r47() -> None:
    assert verdict(sign(authorization(), OTHER_KEY)) is Problem.UNTRUSTED_KEY
    rotated = AuthorizationKeys({OTHER_KEY.public_key.keyid: OTHER_KEY.public_key})
    assert verdict(sign(authorization(), KEY), trusted=rotated) is Problem.UNTRUSTED_KEY


def test_with_no_authorization_key_in_the_root_nothing_is_authorized() -> None:
    assert verdict(sign(authorization(), KEY), trusted=None) is Problem.UNTRUSTED_KEY


def test_a_signature_counted_twice_does_not_meet_a_threshold_of_two() -> None:
    trusted = AuthorizationKeys(
        {KEY.public_key.keyid: KEY.public_key, OTHER_KEY.public_key.keyid: OTHER_KEY.public_key},
        threshold=2,
    )
    once = sign(authorization(), KEY)
    twice = SignedAuthorization(once.authorization, once.signatures * 2)
    assert verdict(twice, trusted=trusted) is Problem.BAD_SIGNATURE
    both = SignedAuthorization(
        once.authorization, (*once.signatures, OTHER_KEY.sign(once.authorization.payload()))
    )
    assert verdict(both, trusted=trusted) is None


def test_a_nonce_used_for_an_install_is_refused_as_a_replay_r25() -> None:
    document = sign(authorization(), KEY)
    used = NonceRecord("0f" * 32, PATH, SHA, T0, T0 + timedelta(hours=1), used_at=T0)
    assert verdict(document, nonces={used.nonce: used}) is Problem.REPLAYED


def test_a_nonce_bound_to_another_install_is_refused_as_a_replay() -> None:
    document = sign(authorization(), KEY)
    bound = NonceRecord("0f" * 32, "pump-x100/other.bin", SHA, T0, T0 + timedelta(hours=1))
    assert verdict(document, nonces={bound.nonce: bound}) is Problem.REPLAYED


def test_an_install_accepted_in_time_and_deferred_keeps_its_grace_r52() -> None:
    """An authorization's expiry does not punish a deferral (bounded by its grace)."""
    document = sign(authorization(), KEY)
    bound = NonceRecord("0f" * 32, PATH, SHA, T0, T0 + timedelta(minutes=75))
    after_expiry = T0 + timedelta(minutes=40)
    assert verdict(document, at=after_expiry) is Problem.EXPIRED
    assert verdict(document, at=after_expiry, nonces={bound.nonce: bound}) is None
    past_grace = T0 + timedelta(minutes=75, seconds=1)
    assert verdict(document, at=past_grace, nonces={bound.nonce: bound}) is Problem.EXPIRED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_id", "../etc"),
        ("target_path", "/abs/path.bin"),
        ("sha256", "AB" * 32),
        ("nonce", "short"),
        ("technician", ""),
        ("expires", T0),
        ("expires", T0 + MAX_LIFETIME + timedelta(seconds=1)),
        ("grace", timedelta(days=2)),
    ],
)
def test_a_malformed_authorization_cannot_be_made(field: str, value: object) -> None:
    with pytest.raises(AuthorizationError):
        authorization(**{field: value})


@pytest.mark.parametrize(
    "mangle",
    [
        lambda tree: tree["signed"].update(extra="field"),
        lambda tree: tree["signed"].pop("nonce"),
        lambda tree: tree["signed"].update(_type="targets"),
        lambda tree: tree["signed"].update(spec_version=True),
        lambda tree: tree["signed"].update(grace_seconds="60"),
        lambda tree: tree["signed"].update(expires="tomorrow"),
        lambda tree: tree.update(signatures=[]),
        lambda tree: tree.update(more="field"),
    ],
)
def test_a_malformed_document_is_refused_before_any_check(mangle: object) -> None:
    tree = sign(authorization(), KEY).to_dict()
    mangle(tree)  # type: ignore[operator]
    with pytest.raises(AuthorizationError):
        SignedAuthorization.from_bytes(json.dumps(tree).encode())


def test_a_document_with_a_duplicate_key_is_refused() -> None:
    """Two parsers must never disagree about what was signed (duplicate-key smuggling)."""
    data = sign(authorization(), KEY).to_bytes()
    smuggled = data.replace(b'"device_id":"pump-0001"', b'"device_id":"pump-0001","device_id":"x"')
    with pytest.raises(AuthorizationError, match="twice"):
        SignedAuthorization.from_bytes(smuggled)


def test_an_oversized_document_is_refused_unparsed() -> None:
    with pytest.raises(AuthorizationError, match="exceeds"):
        SignedAuthorization.from_bytes(b"{" + b" " * 20000 + b"}")


def test_the_context_picks_a_valid_document_or_the_most_telling_refusal() -> None:
    good = sign(authorization(), KEY)
    foreign = sign(authorization(device_id="pump-0002", nonce="1f" * 32), KEY)
    stale = sign(authorization(nonce="2f" * 32, expires=T0 + timedelta(minutes=1)), KEY)
    at = T0 + timedelta(minutes=5)
    context = AuthorizationContext(TRUSTED, "pump-0001", at, held=(foreign, stale, good))
    assert context.decide(PATH, SHA) == (good, None)
    refused = AuthorizationContext(TRUSTED, "pump-0001", at, held=(foreign, stale))
    document, found = refused.decide(PATH, SHA)
    assert document is None and found is not None and found.problem is Problem.EXPIRED
    assert AuthorizationContext(TRUSTED, "pump-0001", at).decide(PATH, SHA) == (None, None)


def test_a_handed_over_document_for_a_release_not_offered_is_named_as_such() -> None:
    context = AuthorizationContext(TRUSTED, "pump-0001", T0 + timedelta(minutes=5))
    document = sign(authorization(), KEY)
    assert context.refusal(document, {PATH: SHA}) is None
    found = context.refusal(document, {})
    assert found is not None and found.problem is Problem.WRONG_RELEASE
    found = context.refusal(document, {PATH: OTHER_SHA})
    assert found is not None and found.problem is Problem.WRONG_RELEASE


ROLE_KEY = CryptoSigner.generate_ed25519()


def _root(field: object) -> Metadata[Root]:
    root = Root(expires=T0 + timedelta(days=365))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.add_key(ROLE_KEY.public_key, role)
    root.unrecognized_fields[ROOT_FIELD] = field
    return Metadata(root)


def test_the_root_field_lists_the_trusted_keys() -> None:
    metadata = _root(TRUSTED.to_field())
    check_metadata(metadata)
    assert AuthorizationKeys.from_root(metadata.signed) == TRUSTED
    assert AuthorizationKeys.from_root(Root()) is None


def test_a_root_whose_authorization_key_is_a_root_role_key_is_refused_r47() -> None:
    metadata = _root(TRUSTED.to_field())
    metadata.signed.add_key(KEY.public_key, "root")
    with pytest.raises(InvalidMetadataError) as raised:
        check_metadata(metadata)
    assert raised.value.rule == "authorization-keys"


@pytest.mark.parametrize(
    "field",
    [
        {},
        {"keys": {}, "threshold": 1},
        {"keys": {"00" * 32: KEY.public_key.to_dict()}, "threshold": 1},
        {"keys": {KEY.public_key.keyid: KEY.public_key.to_dict()}, "threshold": 2},
        {"keys": {KEY.public_key.keyid: KEY.public_key.to_dict()}, "threshold": True},
        {"keys": {KEY.public_key.keyid: KEY.public_key.to_dict()}, "threshold": 1, "x": 1},
    ],
)
def test_a_malformed_root_field_is_refused(field: object) -> None:
    with pytest.raises(InvalidMetadataError) as raised:
        check_metadata(_root(field))
    assert raised.value.rule == "authorization-keys"


def test_a_signature_object_with_a_non_string_is_refused() -> None:
    tree = sign(authorization(), KEY).to_dict()
    tree["signatures"] = [Signature("ab", "cd").to_dict() | {"sig": 5}]
    with pytest.raises(AuthorizationError):
        SignedAuthorization.from_dict(tree)
