"""``POST /api/v1/releases``: every refused upload, named after the threat it stops.

A refused upload answers 422 (or 403, 413) with the rule, is audited with it,
and leaves no row, no staged file and no published change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tuf.api.metadata import TargetFile, Targets

from tests.update_server.repo_world import Body, World, repository_files, resign
from update_server.models import AuditEntry
from update_server.publication.models import ReleaseUpload

SHA = "ab" * 32


def _refused(world: World, answer: Any, status: int, rule: str) -> None:
    """The answer, the audit entry, and nothing left behind."""
    assert answer.status_code == status, answer.get_json()
    body = answer.get_json()
    assert answer.mimetype == "application/problem+json"
    assert body["rule"] == rule
    assert body["detail"]
    with world.services.sessions() as db:
        assert db.query(ReleaseUpload).count() == 0
        last = db.query(AuditEntry).order_by(AuditEntry.seq.desc()).first()
        assert last is not None
        assert (last.action, last.outcome) == ("release.upload", "refused")
        assert f'"rule":"{rule}"' in last.detail
    assert not any(world.config.staging_dir.iterdir())


def _add_target(path: str, length: int = 10, hashes: dict[str, str] | None = None) -> Any:
    def mutate(signed: Targets) -> None:
        custom = {"version": "9.9.9", "security_version": 1, "hardware_models": ["pump-x100"]}
        signed.version += 1
        signed.targets[path] = TargetFile(
            length, hashes or {"sha256": SHA}, path, unrecognized_fields={"custom": custom}
        )

    return mutate


def test_upload_answers_the_targets_to_send(world: World) -> None:
    path, data = world.add_release("2.4.0")
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201
    body = answer.get_json()
    assert len(body["id"]) == 32
    assert [t["path"] for t in body["expected_targets"]] == [path]
    assert body["expected_targets"][0]["length"] == len(data)


def test_upload_with_a_bad_signature_is_refused(world: World) -> None:
    """TUF arbitrary software attack: content changed after the engineers signed it."""
    world.add_release("2.4.0")
    document = world.role_json("pump-x100")
    target = next(iter(document["signed"]["targets"].values()))
    target["length"] += 1
    _refused(world, world.upload("alice", {"pump-x100": document}), 422, "signature-threshold")


def test_upload_below_the_signature_threshold_is_refused_r9(world: World) -> None:
    """Four eyes: one engineer's signature is not enough for a 2-of-2 product line."""
    world.add_release("2.4.0", sign=1)
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    _refused(world, answer, 422, "signature-threshold")
    assert "1 valid signature(s) of the 2 required" in answer.get_json()["detail"]


def test_upload_of_a_lower_or_equal_version_is_refused_rollback(world: World) -> None:
    """TUF rollback attack: the published pump-x100 is v1; v1 again is refused."""
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    _refused(world, answer, 422, "version")
    assert "rollback" in answer.get_json()["detail"]


def test_upload_of_an_expired_role_is_refused_freeze(world: World) -> None:
    def expired(signed: Targets) -> None:
        signed.version += 1
        signed.expires = world.now - timedelta(days=1)

    document = resign(world.role_json("pump-x100"), "alice", "bob", mutate=expired)
    _refused(world, world.upload("alice", {"pump-x100": document}), 422, "expired")


def test_target_outside_the_product_line_is_refused(world: World) -> None:
    """A product line's engineers cannot sign another line's firmware."""
    mutate = _add_target("monitor-m20/evil.bin")
    document = resign(world.role_json("pump-x100"), "alice", "bob", mutate=mutate)
    _refused(world, world.upload("alice", {"pump-x100": document}), 422, "path-outside-delegation")


@pytest.mark.parametrize(
    "path", ["pump-x100/../../etc/passwd", "/pump-x100/x.bin", "pump-x100\\..\\x.bin"]
)
def test_target_path_traversal_in_signed_metadata_is_refused(world: World, path: str) -> None:
    document = resign(world.role_json("pump-x100"), "alice", "bob", mutate=_add_target(path))
    _refused(world, world.upload("alice", {"pump-x100": document}), 422, "target-path")


@pytest.mark.parametrize(
    "hashes",
    [{"sha512": "ab" * 64}, {"sha256": "../" * 21 + "x"}, {"sha256": SHA, "md5": "ab" * 16}],
    ids=["no-sha256", "not-hex", "unknown-algorithm"],
)
def test_target_hash_that_could_not_be_checked_or_named_is_refused(
    world: World, hashes: dict[str, str]
) -> None:
    """Hashes become file names and stream checks: only hex of known algorithms."""
    mutate = _add_target("pump-x100/fw.bin", hashes=hashes)
    document = resign(world.role_json("pump-x100"), "alice", "bob", mutate=mutate)
    _refused(world, world.upload("alice", {"pump-x100": document}), 422, "target-hash")


def test_target_larger_than_the_upload_limit_is_refused_at_upload(world: World) -> None:
    world.services.config = world.config.with_changes(max_upload_bytes=1000)
    mutate = _add_target("pump-x100/fw.bin", length=1001)
    document = resign(world.role_json("pump-x100"), "alice", "bob", mutate=mutate)
    _refused(world, world.upload("alice", {"pump-x100": document}), 422, "target-too-large")


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "pump-x100/../targets", "PUMP", "a\x00b", "x" * 100]
)
def test_role_name_path_traversal_is_refused(world: World, name: str) -> None:
    """A role name becomes a file name: only safe names are accepted."""
    answer = world.upload("alice", {name: world.role_json("pump-x100")})
    _refused(world, answer, 422, "role-name")


@pytest.mark.parametrize("role", ["snapshot", "timestamp"])
def test_online_roles_cannot_be_uploaded(world: World, role: str) -> None:
    _refused(world, world.upload("alice", {role: {"signed": {}}}), 422, "online-role")


def test_a_role_nobody_delegates_is_refused(world: World) -> None:
    document = resign(world.role_json("pump-x100"), "alice", "bob")
    _refused(world, world.upload("alice", {"pump-x999": document}), 422, "not-delegated")


@pytest.mark.parametrize(
    ("who", "role", "uploads"),
    [
        ("eve", "release_engineer", "targets"),
        ("eve", "release_engineer", "root"),
        ("mike", "release_manager", "root"),
        ("olga", "security_officer", "pump-x100"),
    ],
)
def test_a_role_the_uploader_may_not_change_is_forbidden_r6(
    world: World, who: str, role: str, uploads: str
) -> None:
    world.login(who, role)
    answer = world.upload(who, {uploads: world.role_json("targets")}, role=role)
    _refused(world, answer, 403, "role-not-allowed")


@pytest.mark.parametrize("role", ["technician", "auditor", "admin"])
def test_people_who_do_not_release_cannot_upload_at_all_r6(world: World, role: str) -> None:
    world.login("someone", role)
    answer = world.upload("someone", {"pump-x100": world.role_json("pump-x100")}, role=role)
    assert answer.status_code == 403


def test_oversize_metadata_is_refused_before_it_is_read(world: World) -> None:
    """413 on the declared length alone: the body is never read into memory."""
    world.services.config = world.config.with_changes(max_metadata_bytes=4096)
    body = Body(b"{", None, declared=10**9)
    answer = world.client.post(
        "/api/v1/releases",
        input_stream=body,
        headers={**world.as_("alice"), "Content-Type": "application/json"},
    )
    _refused(world, answer, 413, "body-too-large")
    assert body.read_bytes == 0


def test_endless_metadata_without_a_length_stops_past_the_limit(world: World) -> None:
    """TUF endless data attack on the API: a chunked body is cut at the limit."""
    world.services.config = world.config.with_changes(max_metadata_bytes=4096)
    body = Body(b"{", None, declared=10**9)
    answer = world.client.post(
        "/api/v1/releases",
        input_stream=body,
        headers={**world.as_("alice"), "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    _refused(world, answer, 413, "body-too-large")
    assert 4096 <= body.read_bytes <= 4096 + 1024 * 1024


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b'{"metadata": {"pump-x100": {}}, "metadata": {}}', "json-duplicate-key"),
        (b"not json", "json-invalid"),
        (b'{"roles": {}}', "malformed"),
        (b'{"metadata": {}}', "malformed"),
        (b'{"metadata": {"pump-x100": []}}', "malformed"),
    ],
)
def test_malformed_bodies_are_refused(world: World, body: bytes, rule: str) -> None:
    answer = world.client.post(
        "/api/v1/releases",
        data=body,
        headers={**world.as_("alice"), "Content-Type": "application/json"},
    )
    _refused(world, answer, 422, rule)


def test_a_refused_upload_changes_nothing_published(world: World) -> None:
    before = repository_files(world.repository)
    world.add_release("2.4.0", sign=1)
    world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert repository_files(world.repository) == before
