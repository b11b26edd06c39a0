"""A slot boots only when its bytes are the ones verified into it (R29, R39), at the edges.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): what cannot be read is never taken for verified.
"""

from __future__ import annotations

import pytest

from client.errors import ClientError
from client.events import EventType
from client.integrity import check_image, verify_sealed
from client.state import StateDir
from tests.client.helpers_state import Release, install


def test_r29_an_image_that_cannot_be_read_is_a_bad_hash(state: StateDir, update: Release) -> None:
    install(state, update)
    state.slot_image("b").unlink()
    with pytest.raises(ClientError) as caught:
        check_image(state.slot_image("b"), update.record)
    assert caught.value.event is EventType.BAD_HASH
    result = verify_sealed(state, "b")
    assert not result.ok and result.event is EventType.BAD_HASH


def test_r39_a_provisioned_root_that_cannot_be_read_verifies_nothing(
    state: StateDir, update: Release
) -> None:
    install(state, update)
    state.trusted_root.unlink()
    result = verify_sealed(state, "b")
    assert not result.ok
    assert result.event is EventType.INTEGRITY_FAILURE
    assert result.reason.startswith("slot b: ")
