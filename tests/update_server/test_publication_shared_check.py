"""The signer and the server refuse the same broken repositories by the same rule (issue 9).

Both run ``repo_metadata.repository_check``. Each test makes one broken
change with ``fwsign``'s library over a repository the server publishes as
it is: the signer refuses to write it, and the very roles it would have
written (signed, as ``open`` holds them after the refusal) are uploaded to
the server, which refuses them by the same rule. Nothing is written on
either side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import DelegatedRole, Delegations

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate
from signer.errors import SignerError
from signer.keyops import rotate
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.update_server.repo_world import World, key, repository_files

ENGINEER = "release_engineer"
MANAGER = "release_manager"


def _refused_by_both(
    world: World, session: OfflineRepository, roles: list[str], *, rule: str, who: str, as_: str
) -> dict[str, Any]:
    """The signer refuses ``session``'s change by ``rule``; so does the server, given its roles."""
    offline, published = repository_files(world.offline), repository_files(world.repository)
    with pytest.raises(SignerError) as refused:
        session.commit()
    assert f"[rule: {rule}]" in str(refused.value)
    assert repository_files(world.offline) == offline
    drafts = {role: session.open(role).to_dict() for role in roles}
    world.login(who, as_)
    answer = world.upload(who, drafts, role=as_)
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["rule"] == rule
    assert repository_files(world.repository) == published
    body: dict[str, Any] = answer.get_json()
    return body


def test_a_delegation_cycle_is_refused_by_signer_and_server_alike(world: World) -> None:
    """delegation-cycle: a device's walk pump-x100 -> beta -> pump-x100 would never end."""
    alice = key("alice").public_key

    def to(name: str) -> Delegations:
        entry = DelegatedRole(name, [alice.keyid], 1, False, ["pump-x100/beta/*"])
        return Delegations({alice.keyid: alice}, roles={name: entry})

    session = world.open_offline("alice", "bob")
    with session.edit_targets("pump-x100") as pump:
        pump.delegations = to("beta")
    with session.edit_targets("beta") as beta:
        beta.delegations = to("pump-x100")
    _refused_by_both(
        world, session, ["pump-x100", "beta"], rule="delegation-cycle", who="eve", as_=ENGINEER
    )


def test_a_line_delegated_twice_is_refused_by_signer_and_server_alike(world: World) -> None:
    """delegated-twice: one role with two sets of keys is role confusion for a device."""
    carol = key("carol").public_key
    session = world.open_offline("alice", "bob")
    with session.edit_targets("pump-x100") as pump:
        entry = DelegatedRole("monitor-m20", [carol.keyid], 1, False, ["pump-x100/m/*"])
        pump.delegations = Delegations({carol.keyid: carol}, roles={"monitor-m20": entry})
    _refused_by_both(world, session, ["pump-x100"], rule="delegated-twice", who="eve", as_=ENGINEER)


# --- the current-release list of a line with hashed bins -------------------------------


def _published_binned_release(world: World, tmp_path: Path) -> str:
    """ventilator-v5 with 4 bins and release 1.0.0, published; returns its target path."""
    delegate(
        world.open_offline("manager1"),
        name="ventilator-v5",
        path_prefix="ventilator-v5/",
        keys=RoleKeys([key("erin").public_key, key("frank").public_key], 2),
        bin_bits=2,
    )
    image = tmp_path / "vent.bin"
    image.write_bytes(b"ventilator firmware 1.0.0" * 100)
    info = FirmwareInfo(version="1.0.0", security_version=1, hardware_models=("ventilator-v5",))
    add_firmware(world.open_offline("erin"), image=image, name="vent-fw", info=info)
    sign_roles(world.open_offline("erin", "frank"))
    path = "ventilator-v5/vent-fw-1.0.0.bin"
    roles = ["targets", "ventilator-v5", *(f"ventilator-v5-bins-{n}" for n in range(4))]
    world.login("mike", MANAGER)
    answer = world.upload("mike", {role: world.role_json(role) for role in roles}, role=MANAGER)
    assert answer.status_code == 201, answer.get_json()
    release = answer.get_json()["id"]
    assert world.put("mike", release, path, image.read_bytes()).status_code == 201
    assert world.publish("mike", release).status_code == 200
    return path


def test_a_line_list_that_drops_a_current_release_is_refused_by_both(
    world: World, tmp_path: Path
) -> None:
    """current-release-missing: devices read only the list, so 1.0.0 would vanish for them."""
    path = _published_binned_release(world, tmp_path)
    session = world.open_offline("erin", "frank")
    with session.edit_targets("ventilator-v5") as line:
        del line.targets[path]
    _refused_by_both(
        world, session, ["ventilator-v5"], rule="current-release-missing", who="erin", as_=ENGINEER
    )


def test_a_line_list_whose_copy_differs_from_its_bin_is_refused_by_both(
    world: World, tmp_path: Path
) -> None:
    """current-release-copy (mix-and-match): the list must say what the bin says."""
    path = _published_binned_release(world, tmp_path)
    session = world.open_offline("erin", "frank")
    with session.edit_targets("ventilator-v5") as line:
        line.targets[path].unrecognized_fields["custom"]["security_version"] = 7
    _refused_by_both(
        world, session, ["ventilator-v5"], rule="current-release-copy", who="erin", as_=ENGINEER
    )


# --- a role left out of a change that affects it -----------------------------------------


def test_a_line_left_out_of_a_key_rotation_is_named_by_both(world: World) -> None:
    """delegation-broken: the same finding; the signer lists it to re-sign, the server refuses.

    fwsign commits drafts that people sign in turn, so it keeps the finding
    (``to_resign``) where the server, publishing a release that must stand
    on its own, refuses it; once the line is re-signed both accept.
    """
    session = world.open_offline("manager1")
    rotate(
        session,
        role="pump-x100",
        add=[key("carol").public_key],
        remove=[key("alice").public_key.keyid],
    )
    assert [role for role, _why in session.to_resign] == ["pump-x100"]
    world.login("mike", MANAGER)
    answer = world.upload("mike", {"targets": world.role_json("targets")}, role=MANAGER)
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "delegation-broken"
    assert "pump-x100" in answer.get_json()["detail"]

    resigned = world.open_offline("bob", "carol")
    with resigned.edit_targets("pump-x100"):
        pass  # a new version, signed by the line's new keys
    resigned.commit()
    assert resigned.to_resign == ()
    roles = {"targets": world.role_json("targets"), "pump-x100": world.role_json("pump-x100")}
    answer = world.upload("mike", roles, role=MANAGER)
    assert answer.status_code == 201, answer.get_json()
