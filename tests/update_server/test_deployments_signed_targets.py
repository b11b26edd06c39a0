"""``rollout.SignedTargets`` ST1: the published targets read once per timestamp, per process.

D1, D6, R56: the cache keys on the published ``timestamp.json``, so a new
publication (here a withdrawal) is seen by the very next request.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.update_server.deployments_helpers import publish, withdraw
from tests.update_server.repo_world import World
from update_server.authorizations.issuing import Release
from update_server.deployments import rollout
from update_server.publication.repository import OnlineRepository


def _signed(world: World) -> rollout.SignedTargets:
    """What one request builds (``deployments.views._signed``)."""
    return rollout.SignedTargets(OnlineRepository(world.config.repository_dir, now=world.now))


def test_st1_targets_are_read_once_per_timestamp_and_a_withdrawal_is_seen_at_once_r56(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = publish(world, "2.0.0")
    reads: list[str] = []
    read = rollout.published_release

    def counted(repository: OnlineRepository, target: str) -> Release:
        reads.append(target)
        return read(repository, target)

    monkeypatch.setattr(rollout, "published_release", counted)
    first = _signed(world).release(path)
    assert first is not None and first.path == path
    again: Any = [_signed(world).release(path) for _ in range(3)]
    assert again == [first] * 3
    assert reads == [path]  # one read for four requests on the same timestamp

    withdraw(world, path)

    assert _signed(world).release(path) is None
    assert reads == [path, path]
    assert _signed(world).release(path) is None
    assert reads == [path, path]
