"""``repo_metadata.verify``: one test per rule and per attack it blocks.

Each test builds real, correctly signed metadata with keys generated here,
changes the one thing the attack needs, and checks the exact
``UpdateRejectedError.rule`` (the stable id the server's audit log records).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from repo_metadata.errors import UpdateRejectedError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.verify import check_proposed, path_granted, verify_root_chain, verify_update

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=90)
PUMP = "pump-x100/pump-fw-2.4.0.bin"
MONITOR = "monitor-m20/monitor-fw-1.0.0.bin"
NAMES = (
    "o1", "o2", "o3", "n1", "n2", "n3", "m1", "m2",
    "targets", "snapshot", "timestamp", "alice", "bob", "carol", "dave", "mallory",
)  # fmt: skip
KEYS = {name: CryptoSigner.generate_ed25519() for name in NAMES}


def firmware(path: str) -> TargetFile:
    model = path.split("/", 1)[0]
    info = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=(model,))
    return TargetFile(
        4, {"sha256": "ab" * 32}, path, unrecognized_fields={"custom": info.to_custom()}
    )


def signed(md: Metadata[Any], *names: str) -> bytes:
    """``md`` as bytes, signed by the named keys in order."""
    md.signatures.clear()
    for name in names:
        md.sign(KEYS[name], append=True)
    return md.to_bytes()


def root(
    version: int, keys: Sequence[str], *, threshold: int = 2, expires: datetime = LATER
) -> Metadata[Root]:
    """Root ``version`` with ``keys`` for root and one key per online role."""
    signed_root = Root(version=version, expires=expires, consistent_snapshot=True)
    for name in keys:
        signed_root.add_key(KEYS[name].public_key, Root.type)
    signed_root.roles[Root.type].threshold = threshold
    for role in ("targets", "snapshot", "timestamp"):
        signed_root.add_key(KEYS[role].public_key, role)
    return Metadata(signed_root)


def delegating(*roles: tuple[str, Sequence[str], int, list[str]]) -> Targets:
    """Trusted targets delegating (name, key names, threshold, paths) roles."""
    keys: dict[str, Key] = {
        KEYS[n].public_key.keyid: KEYS[n].public_key for _, names, _, _ in roles for n in names
    }
    delegated = {
        name: DelegatedRole(name, [KEYS[n].public_key.keyid for n in names], thr, True, paths)
        for name, names, thr, paths in roles
    }
    return Targets(expires=LATER, delegations=Delegations(keys, roles=delegated))


TOP = delegating(
    ("pump-x100", ("alice", "bob"), 2, ["pump-x100/*"]),
    ("monitor-m20", ("carol",), 1, ["monitor-m20/*"]),
)


def line(version: int = 2, *paths: str, expires: datetime = LATER, **kw: Any) -> Metadata[Targets]:
    targets = {path: firmware(path) for path in paths or (PUMP,)}
    return Metadata(Targets(version=version, expires=expires, targets=targets, **kw))


def rejected(rule: str, proposed: bytes, **kwargs: Any) -> str:
    """Run ``verify_update``; assert it refused with ``rule``; return the message."""
    kwargs.setdefault("role", "pump-x100")
    kwargs.setdefault("trusted", None)
    kwargs.setdefault("delegator", TOP)
    kwargs.setdefault("ancestor_patterns", ())  # TOP is top-level targets: nothing above it
    with pytest.raises(UpdateRejectedError) as caught:
        verify_update(proposed, now=NOW, **kwargs)
    assert caught.value.rule == rule, str(caught.value)
    return str(caught.value)


# --- accepted ---------------------------------------------------------------


def test_good_update_is_accepted_and_returned_as_metadata() -> None:
    """The control case: every rule passes and the verified ``Metadata`` comes back."""
    trusted = Metadata.from_bytes(signed(line(1), "alice", "bob"))
    result = verify_update(
        signed(line(2), "alice", "bob"),
        role="pump-x100",
        trusted=trusted,
        delegator=TOP,
        now=NOW,
        ancestor_patterns=(),
    )
    assert isinstance(result, Metadata)
    assert isinstance(result.signed, Targets)
    assert result.signed.version == 2
    assert list(result.signed.targets) == [PUMP]


# --- malformed, not-delegated ---------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "tamper"),
    [
        ("json-duplicate-key", lambda data: data.replace(b"{", b'{"signed": {},', 1)),
        ("field-type", lambda data: data.replace(b'"version":2', b'"version":true')),
        ("json-invalid", lambda data: data[:-3]),
    ],
    ids=["duplicate-json-key-parser-differential", "boolean-version", "truncated"],
)
def test_malformed_bytes_rejected_with_the_validation_rule(rule: str, tamper: Any) -> None:
    """The strict parser's rule id comes through ``verify_update`` unchanged."""
    rejected(rule, tamper(signed(line(2), "alice", "bob")))


def test_snapshot_offered_as_targets_is_unexpected_type() -> None:
    """Role confusion: metadata of another type never passes as a targets role."""
    snapshot = Metadata(Snapshot(version=2, expires=LATER))
    rejected("unexpected-type", signed(snapshot, "alice", "bob"))


def test_role_the_delegator_does_not_delegate_is_refused() -> None:
    """Rule not-delegated: an invented role name gains no trust."""
    rejected("not-delegated", signed(line(1), "mallory"), role="pump-x999")


# --- version: rollback, root +1 ---------------------------------------------


@pytest.mark.parametrize("version", [2, 1], ids=["equal", "lower"])
def test_rollback_attack_version_not_newer_refused(version: int) -> None:
    """TUF rollback attack (R25 anti-replay): an old or replayed version."""
    trusted = Metadata.from_bytes(signed(line(2), "alice", "bob"))
    message = rejected("version", signed(line(version), "alice", "bob"), trusted=trusted)
    assert "rollback refused" in message


@pytest.mark.parametrize("version", [1, 3], ids=["replayed", "skipped"])
def test_root_must_be_exactly_the_next_version(version: int) -> None:
    """TUF spec 5.3.4: root v1 is followed by v2 only, not v1 again or v3."""
    trusted = root(1, ("o1", "o2"))
    proposed = root(version, ("o1", "o2"))
    message = rejected(
        "version", signed(proposed, "o1", "o2"), role=Root.type, trusted=trusted, delegator=TOP
    )
    assert "(v2)" in message


# --- expired: freeze --------------------------------------------------------


def test_freeze_attack_expired_metadata_refused() -> None:
    """TUF freeze attack: metadata already expired cannot become trusted."""
    stale = line(2, expires=NOW - timedelta(seconds=1))
    rejected("expired", signed(stale, "alice", "bob"))


# --- signature-threshold ------------------------------------------------------


@pytest.mark.parametrize("names", [(), ("alice",)], ids=["0-of-2", "1-of-2"])
def test_threshold_not_met_refused(names: tuple[str, ...]) -> None:
    """R9 four eyes: a product line with threshold 2 needs two engineers."""
    message = rejected("signature-threshold", signed(line(), *names))
    assert f"has {len(names)} valid signature(s) of the 2 required" in message


@pytest.mark.parametrize("outsider", ["carol", "mallory"])
def test_signature_by_a_key_the_delegator_does_not_name_does_not_count(outsider: str) -> None:
    """TUF arbitrary software: another line's key (carol) or a stranger's adds nothing."""
    rejected("signature-threshold", signed(line(), "alice", outsider))


def test_duplicate_signature_by_the_same_key_does_not_count_twice() -> None:
    """One engineer cannot meet a threshold of 2 by listing their signature twice."""
    data = signed(line(), "alice")
    doubled = Metadata.from_bytes(data).to_dict()
    doubled["signatures"] *= 2
    rejected("metadata-schema", _json(doubled))
    # Relabelled as bob's, alice's signature does not verify with bob's key.
    relabelled = Metadata.from_bytes(data).to_dict()
    sig = dict(relabelled["signatures"][0], keyid=KEYS["bob"].public_key.keyid)
    relabelled["signatures"].append(sig)
    rejected("signature-threshold", _json(relabelled))


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


# --- root rotation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "missing_from"),
    [(("n1", "n2"), "the trusted root"), (("o1", "o2"), "the new root itself")],
    ids=["only-new-keys", "only-old-keys"],
)
def test_root_rotation_needs_old_and_new_thresholds(
    names: tuple[str, ...], missing_from: str
) -> None:
    """TUF key compromise: stolen new (or old) root keys alone cannot rotate root."""
    trusted = root(1, ("o1", "o2", "o3"))
    proposed = signed(root(2, ("n1", "n2", "n3")), *names)
    message = rejected(
        "signature-threshold", proposed, role=Root.type, trusted=trusted, delegator=TOP
    )
    assert missing_from in message


def test_root_rotation_signed_by_old_and_new_thresholds_accepted() -> None:
    """TUF 5.3.4 / R5: a root signed by 2 of the old and 2 of the new keys is accepted."""
    trusted = root(1, ("o1", "o2", "o3"))
    proposed = signed(root(2, ("n1", "n2", "n3")), "o1", "o3", "n2", "n3")
    result = verify_update(
        proposed, role=Root.type, trusted=trusted, delegator=TOP, now=NOW, ancestor_patterns=()
    )
    assert result.signed.version == 2


def _chain(final_expires: datetime) -> list[bytes]:
    """Roots v1 to v3, each signed by its own and its predecessor's keys."""
    expired = NOW - timedelta(days=400)
    return [
        signed(root(1, ("o1", "o2"), expires=expired), "o1", "o2"),
        signed(root(2, ("n1", "n2"), expires=expired), "o1", "o2", "n1", "n2"),
        signed(root(3, ("m1", "m2"), expires=final_expires), "n1", "n2", "m1", "m2"),
    ]


def test_root_chain_walks_versions_through_expired_intermediate_roots() -> None:
    """TUF 5.3: old roots may have expired long ago; only the last one counts."""
    chain = _chain(LATER)
    assert verify_root_chain(chain, trusted=None, now=NOW).signed.version == 3
    pinned = Metadata.from_bytes(chain[0])
    assert verify_root_chain(chain[1:], trusted=pinned, now=NOW).signed.version == 3


def test_root_chain_refuses_an_expired_final_root() -> None:
    """TUF freeze attack on root: the chain must end at an unexpired root."""
    with pytest.raises(UpdateRejectedError) as caught:
        verify_root_chain(_chain(NOW - timedelta(days=1)), trusted=None, now=NOW)
    assert caught.value.rule == "expired"


@pytest.mark.parametrize(
    ("drop", "rule"),
    [(1, "version"), (None, "signature-threshold")],
    ids=["skipped-version", "intermediate-not-signed-by-predecessor"],
)
def test_root_chain_refuses_a_broken_link(drop: int | None, rule: str) -> None:
    """TUF rollback / key compromise: a chain with a gap or a self-signed link stops there."""
    chain = _chain(LATER)
    if drop is not None:
        del chain[drop]
    else:
        chain[1] = signed(root(2, ("n1", "n2"), expires=LATER), "n1", "n2")
    with pytest.raises(UpdateRejectedError) as caught:
        verify_root_chain(chain, trusted=None, now=NOW)
    assert caught.value.rule == rule


# --- path-outside-delegation, delegation-scope --------------------------------


def test_arbitrary_software_product_line_cannot_sign_another_lines_firmware() -> None:
    """TUF arbitrary software: pump-x100's keys sign a monitor-m20 image."""
    message = rejected("path-outside-delegation", signed(line(2, PUMP, MONITOR), "alice", "bob"))
    assert MONITOR in message


def _binned() -> tuple[Targets, SuccinctRoles]:
    key = KEYS["dave"].public_key
    bins = SuccinctRoles([key.keyid], 1, 2, "pump-x100-bins")
    return Targets(
        expires=LATER, delegations=Delegations({key.keyid: key}, succinct_roles=bins)
    ), bins


def test_hashed_bin_accepts_a_target_that_hashes_to_it() -> None:
    """Control for the hashed-bin rule: the bin a target hashes to may sign it."""
    delegator, bins = _binned()
    own_bin = bins.get_role_for_target(PUMP)
    result = verify_update(
        signed(line(1), "dave"),
        role=own_bin,
        trusted=None,
        delegator=delegator,
        now=NOW,
        ancestor_patterns=[["pump-x100/*"]],
    )
    assert PUMP in result.signed.targets


def test_hashed_bin_refuses_a_target_that_hashes_to_another_bin() -> None:
    """A target placed in a bin a client never looks in for it (role confusion)."""
    delegator, bins = _binned()
    other_bin = next(name for name in bins.get_roles() if name != bins.get_role_for_target(PUMP))
    rejected(
        "path-outside-delegation", signed(line(1), "dave"), role=other_bin, delegator=delegator
    )


def test_ancestor_patterns_constrain_a_nested_delegation() -> None:
    """A sub-delegation granted ``*/*`` still signs only inside its ancestors' paths."""
    beta = delegating(("beta", ("dave",), 1, ["*/*"]))
    ancestors = [["pump-x100/*"]]
    proposed = signed(line(1, MONITOR), "dave")
    rejected(
        "path-outside-delegation",
        proposed,
        role="beta",
        delegator=beta,
        ancestor_patterns=ancestors,
    )
    inside = signed(line(1, PUMP), "dave")
    result = verify_update(
        inside, role="beta", trusted=None, delegator=beta, now=NOW, ancestor_patterns=ancestors
    )
    assert PUMP in result.signed.targets


def test_product_line_cannot_delegate_outside_its_own_prefix() -> None:
    """Rule delegation-scope: pump-x100 hands monitor-m20/* to a key of its choice."""
    sub = delegating(("escape", ("mallory",), 1, ["monitor-m20/*"]))
    proposed = signed(line(2, delegations=sub.delegations), "alice", "bob")
    message = rejected("delegation-scope", proposed)
    assert "monitor-m20/*" in message


@pytest.mark.parametrize("paths", [["*"], ["pump*"], ["pump-x100/fw-*.bin"], []])
def test_targets_cannot_hand_a_product_line_everything(paths: list[str]) -> None:
    """Rule delegation-scope at the top: a line granted ``*`` could sign any model's firmware."""
    greedy = delegating(("pump-x100", ("alice", "bob"), 2, paths))
    proposed = Metadata(Targets(version=2, expires=LATER, delegations=greedy.delegations))
    message = rejected(
        "delegation-scope",
        signed(proposed, "targets"),
        role="targets",
        delegator=root(1, ("o1", "o2")).signed,
    )
    assert "pump-x100" in message


def test_targets_cannot_put_hashed_bins_at_the_top() -> None:
    """Rule delegation-scope: top-level targets delegates product lines, each by prefix."""
    key = KEYS["dave"].public_key
    bins = SuccinctRoles([key.keyid], 1, 2, "all-bins")
    top = Targets(
        version=2, expires=LATER, delegations=Delegations({key.keyid: key}, succinct_roles=bins)
    )
    rejected(
        "delegation-scope",
        signed(Metadata(top), "targets"),
        role="targets",
        delegator=root(1, ("o1", "o2")).signed,
    )


# --- key-reuse ------------------------------------------------------------------


def test_root_using_one_key_for_two_top_level_roles_is_refused() -> None:
    """R47 one key, one use: the snapshot key must not also sign targets."""
    reused = root(1, ("o1", "o2"))
    reused.signed.add_key(KEYS["snapshot"].public_key, "targets")
    message = rejected(
        "key-reuse", signed(reused, "o1", "o2"), role=Root.type, trusted=None, delegator=TOP
    )
    assert "R47" in message


def test_arbitrary_software_a_caller_forgetting_the_ancestor_patterns_is_stopped_not_weakened() -> (
    None
):
    """TUF arbitrary software via a nested delegation: security policy has no default.

    ``beta`` is granted ``*/*`` under a line that owns only ``pump-x100/*``.
    A caller that forgets the ancestors' patterns would check the monitor
    image against ``*/*`` alone and accept it; instead each entry point
    refuses to run without them.
    """
    beta = delegating(("beta", ("dave",), 1, ["*/*"]))
    proposed = signed(line(1, MONITOR), "dave")
    calls: list[Any] = [
        lambda: verify_update(proposed, role="beta", trusted=None, delegator=beta, now=NOW),
        lambda: check_proposed(
            Metadata.from_bytes(proposed),
            role="beta",
            trusted_version=None,
            delegator=beta,
            now=NOW,
        ),
        lambda: path_granted(MONITOR, role="beta", delegator=beta),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="ancestor_patterns"):
            call()
