"""A technician's authorization: the malformed keys, documents and times a device refuses.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36). Rule A1 (the trusted keys are keys), A2 (R47: an authorization key is no
root key) and the wire form's strictness (R9, R58), each tested directly.
"""

from __future__ import annotations

from typing import Any

import pytest
from securesystemslib.signer import SSlibKey
from tuf.api.metadata import Root

from repo_metadata.authorization import (
    ROOT_FIELD,
    AuthorizationError,
    AuthorizationKeys,
    SignedAuthorization,
    sign,
)
from tests.repo_metadata.test_authorization import KEY, OTHER_KEY, authorization


def wire() -> dict[str, Any]:
    return sign(authorization(), KEY).to_dict()


def test_a1_a_key_with_no_canonical_form_has_no_keyid_and_is_refused() -> None:
    """A float has no canonical JSON: such a key has no keyid a root could name (rule A1)."""
    odd = SSlibKey("00" * 32, "ed25519", "ed25519", {"public": "ab" * 32, "x": 1.5})
    with pytest.raises(AuthorizationError, match="no canonical JSON form") as caught:
        AuthorizationKeys({odd.keyid: odd})
    assert caught.value.field == ROOT_FIELD


def test_a1_a_root_field_whose_key_is_not_a_key_is_refused() -> None:
    field = {"keys": {"ab" * 32: {"keytype": "ed25519"}}, "threshold": 1}
    with pytest.raises(AuthorizationError, match="a key is not a key"):
        AuthorizationKeys.from_field(field)


def test_a2_the_signer_writes_the_keys_into_a_root_and_they_read_back() -> None:
    """Rule A1: the root carries the keys the device trusts (the signer's rotation command)."""
    root = Root()
    keys = AuthorizationKeys({KEY.public_key.keyid: KEY.public_key})
    keys.write_to(root)
    assert AuthorizationKeys.from_root(root) == keys


def test_a2_r47_a_root_key_is_never_written_as_an_authorization_key() -> None:
    root = Root()
    root.add_key(OTHER_KEY.public_key, Root.type)
    shared = AuthorizationKeys({OTHER_KEY.public_key.keyid: OTHER_KEY.public_key})
    with pytest.raises(AuthorizationError, match="R47"):
        shared.write_to(root)
    assert ROOT_FIELD not in root.unrecognized_fields


def test_r58_a_signed_part_that_is_not_an_object_is_refused() -> None:
    document = wire()
    document["signed"] = ["not", "an", "object"]
    with pytest.raises(AuthorizationError, match="must be an object") as caught:
        SignedAuthorization.from_dict(document)
    assert caught.value.field == "signed"


@pytest.mark.parametrize(
    "signature",
    [{"keyid": "ab" * 32}, ["ab", "cd"]],
    ids=["no-sig", "not-an-object"],
)
def test_r58_a_malformed_signature_is_refused(signature: object) -> None:
    document = wire()
    document["signatures"] = [signature]
    with pytest.raises(AuthorizationError, match="a signature is malformed") as caught:
        SignedAuthorization.from_dict(document)
    assert caught.value.field == "signatures"


def test_r58_a_time_in_the_right_form_that_is_no_date_is_refused() -> None:
    """2030-02-30 matches the pattern but is no day: refused, naming the field."""
    document = wire()
    document["signed"]["expires"] = "2030-02-30T08:00:00Z"
    with pytest.raises(AuthorizationError) as caught:
        SignedAuthorization.from_dict(document)
    assert caught.value.field == "expires"
