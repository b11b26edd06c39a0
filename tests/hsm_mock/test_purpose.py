"""R47 "one key, one use": payload classification and the purpose matrix (pure)."""

from __future__ import annotations

import pytest

from hsm_mock.errors import PayloadRefusedError, PurposeMismatchError
from hsm_mock.purpose import PAYLOAD_TYPES_FOR, Purpose, payload_type, require_purpose
from tests.hsm_mock.helpers import canonical, payload

ALL_TYPES = ["root", "targets", "snapshot", "timestamp", "authorization", "audit-checkpoint"]
ALLOWED = {
    Purpose.ROOT: "root",
    Purpose.TARGETS: "targets",
    Purpose.DELEGATION: "targets",
    Purpose.SNAPSHOT: "snapshot",
    Purpose.TIMESTAMP: "timestamp",
    Purpose.AUTHORIZATION: "authorization",
    Purpose.AUDIT: "audit-checkpoint",
}


def test_r47_every_purpose_signs_exactly_its_payload_type() -> None:
    assert {p: set(types) for p, types in PAYLOAD_TYPES_FOR.items()} == {
        p: {kind} for p, kind in ALLOWED.items()
    }


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize("kind", ALL_TYPES)
def test_r47_purpose_mismatch_refused(purpose: Purpose, kind: str) -> None:
    """R47: a key signs its own payload type and refuses every other one."""
    assert payload_type(payload(kind)) == kind
    if ALLOWED[purpose] == kind:
        require_purpose(purpose, kind)
    else:
        with pytest.raises(PurposeMismatchError, match="R47"):
            require_purpose(purpose, kind)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"arbitrary bytes \x00\xff",
        b"sha256:" + bytes(32),
        b'["root"]',
        b'"root"',
        canonical({"version": 1}),
        canonical({"_type": "Root"}),
        canonical({"_type": "mirrors"}),
        canonical({"_type": ["root"]}),
        canonical({"signed": {"_type": "root"}}),
    ],
    ids=lambda data: repr(data[:24]),
)
def test_arbitrary_bytes_refused_not_a_signing_oracle(data: bytes) -> None:
    """Threat: the token used to sign attacker-chosen bytes of no known kind."""
    with pytest.raises(PayloadRefusedError):
        payload_type(data)


def test_duplicate_key_smuggling_refused() -> None:
    """Threat: two parsers read different ``_type`` values from one payload."""
    with pytest.raises(PayloadRefusedError, match="duplicate"):
        payload_type(b'{"_type":"timestamp","_type":"root"}')


@pytest.mark.parametrize(
    "data",
    [
        b'{"_type": "root"}',
        b'{"version":1,"_type":"root"}',
        b'{"_type":"root","version":1.0}',
        b'{"_type":"\\u0072oot"}',
        b'{"_type":"root"}\n',
    ],
)
def test_non_canonical_json_refused(data: bytes) -> None:
    """Only the exact canonical bytes TUF signs are accepted: no second encoding."""
    with pytest.raises(PayloadRefusedError):
        payload_type(data)


def test_canonical_payload_with_newlines_in_strings_accepted() -> None:
    """Canonical JSON leaves newlines raw (PEM keys inside root metadata)."""
    data = canonical({"_type": "root", "keys": {"k": "-----BEGIN\nKEY-----\n"}})
    assert payload_type(data) == "root"
