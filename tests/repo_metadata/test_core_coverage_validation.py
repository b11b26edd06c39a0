"""Key rules of ``repo_metadata.validation`` for keys whose public value does not parse.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36). Rules ``duplicate-public-key`` (one holder counted twice towards a
threshold) and ``keyid-mismatch`` (a key listed under a name that is not its
own) must hold for every key a document can list, not only for keys the
cryptography library can load.
"""

from __future__ import annotations

from securesystemslib.signer import SSlibKey

from repo_metadata.validation import check_metadata
from tests.repo_metadata.builders import delegated_role, delegations, relisted, targets_metadata
from tests.repo_metadata.test_validation import rejected


def unparsable(public: str, keyid: str | None = None) -> SSlibKey:
    """An ed25519 key whose public value is not hex: no key material to load."""
    template = SSlibKey("00" * 32, "ed25519", "ed25519", {"public": "00" * 32})
    return relisted(template, keyid, keyval={"public": public})


def test_duplicate_public_key_that_does_not_parse_is_still_the_same_key() -> None:
    """Threshold bypass: two names for one unparsable key compare by their canonical keyval."""
    key = unparsable("not-hex")
    twin = unparsable("not-hex", "f" * 64)
    role = delegated_role("pump-x100", [key, twin], threshold=2)
    metadata = targets_metadata(delegations=delegations((role, [key, twin])))
    message = rejected("duplicate-public-key", check_metadata, metadata)
    assert key.keyid in message and twin.keyid in message


def test_distinct_unparsable_keys_under_their_own_keyids_are_not_duplicates() -> None:
    """The raw comparison tells different values apart: no false duplicate."""
    one, two = unparsable("not-hex-1"), unparsable("not-hex-2")
    role = delegated_role("pump-x100", [one, two], threshold=2)
    check_metadata(targets_metadata(delegations=delegations((role, [one, two]))))


def test_keyid_mismatch_for_a_key_with_no_canonical_form_names_no_expected_keyid() -> None:
    """A key that has no canonical JSON (a float) has no default keyid: any keyid is wrong."""
    odd = SSlibKey("ab" * 32, "ed25519", "ed25519", {"public": "00" * 32, "x": 1.5})
    role = delegated_role("pump-x100", [odd])
    metadata = targets_metadata(delegations=delegations((role, [odd])))
    message = rejected("keyid-mismatch", check_metadata, metadata)
    assert "ab" * 32 in message and "None" in message
