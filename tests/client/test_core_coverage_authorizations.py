"""What the device keeps of technicians' authorizations, at the edges of N1, N2 and N4 (R25).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): documents handed over as files or picked up from the server are
candidates only, a nonce never accepted is never spent, and a damaged record
file is rebuilt with no nonce usable again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from client import authorizations
from client.errors import ClientError
from client.events import EventType
from client.state import StateDir
from repo_metadata.authorization import Authorization, SignedAuthorization, sign
from tests.client.helpers_state import event_types

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KEY = CryptoSigner.generate_ed25519()


def document(nonce: str = "0f" * 32) -> SignedAuthorization:
    return sign(
        Authorization(
            device_id="pump-0001",
            target_path="pump-x100/fw-1.1.0.bin",
            sha256="ab" * 32,
            nonce=nonce,
            issued=AT - timedelta(minutes=1),
            expires=AT + timedelta(minutes=14),
            technician="tom",
        ),
        KEY,
    )


def test_n2_a_nonce_never_accepted_is_never_spent(state: StateDir) -> None:
    store = authorizations.load(state, at=AT)
    with pytest.raises(ClientError, match="no accepted authorization"):
        authorizations.mark_used(state, "0f" * 32, at=AT, store=store)
    assert not authorizations.store_path(state).exists()


def test_r58_a_handed_over_file_is_read_or_refused_with_the_reason(tmp_path: Path) -> None:
    good = tmp_path / "auth.json"
    good.write_bytes(document().to_bytes())
    assert authorizations.read_file(good) == document()
    with pytest.raises(ClientError, match="cannot read the authorization"):
        authorizations.read_file(tmp_path / "missing.json")
    large = tmp_path / "large.json"
    large.write_bytes(b" " * (authorizations.MAX_FILE + 1))
    with pytest.raises(ClientError, match="larger than"):
        authorizations.read_file(large)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"signed": {}, "signatures": []}')
    with pytest.raises(ClientError, match="is not a valid authorization"):
        authorizations.read_file(bad)


def test_r25_documents_picked_up_are_candidates_a_malformed_one_is_logged_and_left_out(
    state: StateDir,
) -> None:
    found = [document().to_dict(), {"signed": "nonsense", "signatures": []}]
    picked = authorizations.pick_up(lambda: found, state, at=AT)
    assert picked == [document()]
    assert event_types(state)[-1] == EventType.AUTHORIZATION_MALFORMED.value


def test_r25_a_server_that_cannot_be_reached_gives_no_documents(state: StateDir) -> None:
    def unreachable() -> list[Any]:
        raise ClientError("connection refused")

    assert authorizations.pick_up(unreachable, state, at=AT) == []


@pytest.mark.parametrize(
    "content", [b"[]", b'{"nonces": []}', b"{"], ids=["a-list", "nonces-not-an-object", "cut"]
)
def test_n4_a_damaged_record_file_is_rebuilt_every_nonce_spent(
    state: StateDir, content: bytes
) -> None:
    store = authorizations.accept(state, document(), at=AT, store=authorizations.load(state, at=AT))
    assert store.records["0f" * 32].used_at is None
    # Entries of other types, and one that is not a record, are skipped by the rebuild.
    state.events.append(EventType.PROVISIONED, "provisioned", now=AT, nonce="2")
    state.events.append(EventType.AUTHORIZATION_ACCEPTED, "damaged entry", now=AT, nonce="1")
    authorizations.store_path(state).write_bytes(content)
    rebuilt = authorizations.load(state, at=AT)
    assert set(rebuilt.records) == {"0f" * 32}
    assert rebuilt.records["0f" * 32].used_at == AT  # never usable again
    assert rebuilt.documents == {}
    assert event_types(state)[-1] == EventType.INTEGRITY_FAILURE.value


def test_n1_a_kept_document_that_no_longer_reads_is_dropped_its_record_kept(
    state: StateDir,
) -> None:
    authorizations.accept(state, document(), at=AT, store=authorizations.load(state, at=AT))
    path = authorizations.store_path(state)
    tree = json.loads(path.read_bytes())
    tree["documents"]["0f" * 32] = {"signed": "nonsense", "signatures": []}
    path.write_text(json.dumps(tree))
    store = authorizations.load(state, at=AT)
    assert "0f" * 32 in store.records
    assert store.documents == {}
