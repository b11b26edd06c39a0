"""A key rotation, signed and published the way the README tells people to (issue 9).

``fwsign rotate`` rewrites a product line's delegation; the line itself is
left out of the change, and its published version no longer meets its new
keys. The engineers then run ``fwsign sign`` and ``fwsign publish`` sends
what is newer than the server's: the line must therefore come back as a new
version, or publish would not send it and the server would refuse the new
targets (``delegation-broken``). These tests drive the signer's library and
the publish client's choice of roles against the server app.
"""

from __future__ import annotations

from signer.keyops import revoke_key, rotate
from signer.publish import local_roles, roles_to_publish
from signer.signing import sign_roles
from tests.update_server.repo_world import World, key

MANAGER = "release_manager"


def _published(world: World) -> dict[str, int]:
    """The server's published version of each role, as ``fwsign publish`` asks for them."""
    answer = world.client.get("/api/v1/repository", headers=world.as_("mike", MANAGER))
    assert answer.status_code == 200, answer.get_json()
    roles = answer.get_json()["roles"]
    return {name: int(summary["version"]) for name, summary in roles.items() if summary}


def _publish_as_fwsign_does(world: World) -> list[str]:
    """Upload and publish the roles ``fwsign publish`` would send; return their names."""
    names = roles_to_publish(local_roles(world.offline), _published(world))
    answer = world.upload("mike", {name: world.role_json(name) for name in names}, role=MANAGER)
    assert answer.status_code == 201, answer.get_json()
    assert world.publish("mike", answer.get_json()["id"]).status_code == 200
    return names


def _published_version(world: World, role: str) -> int:
    return _published(world)[role]


def test_a_rotated_line_signed_with_fwsign_sign_is_published_as_a_new_version(
    world: World,
) -> None:
    """R5: bob leaves pump-x100; alice and carol sign; devices trust the new keys.

    The line's published v1 is signed by alice and bob: after the rotation
    it needs a new version (TUF forbids two contents under one version), so
    the rotation starts pump-x100 v2 and ``to_resign`` names it.
    """
    world.login("mike", MANAGER)
    published = _published_version(world, "pump-x100")
    session = world.open_offline("manager1")
    rotate(
        session,
        role="pump-x100",
        add=[key("carol").public_key],
        remove=[key("bob").public_key.keyid],
    )
    assert [role for role, _why in session.to_resign] == ["pump-x100"]
    assert world.role_json("pump-x100")["signed"]["version"] == published + 1

    sign_roles(world.open_offline("alice", "carol"))

    assert _publish_as_fwsign_does(world) == ["targets", "pump-x100"]
    assert _published_version(world, "pump-x100") == published + 1


def test_a_revoked_engineer_key_makes_the_lines_it_signed_new_versions(world: World) -> None:
    """R5, a compromised key: every line it left short of its threshold is re-signed anew."""
    world.login("mike", MANAGER)
    before = {line: _published_version(world, line) for line in ("pump-x100", "monitor-m20")}
    session = world.open_offline("manager1")
    rotate(session, role="pump-x100", add=[key("carol").public_key], threshold=2)
    sign_roles(world.open_offline("alice", "bob"))  # nothing to re-sign: 2 of 3 still met
    assert session.to_resign == ()
    assert world.role_json("pump-x100")["signed"]["version"] == before["pump-x100"]

    revoking = world.open_offline("manager1")
    revoke_key(revoking, keyid=key("bob").public_key.keyid)
    assert [role for role, _why in revoking.to_resign] == ["pump-x100"]
    sign_roles(world.open_offline("alice", "carol"))

    assert _publish_as_fwsign_does(world) == ["targets", "pump-x100"]
    assert _published_version(world, "pump-x100") == before["pump-x100"] + 1
    assert _published_version(world, "monitor-m20") == before["monitor-m20"]
