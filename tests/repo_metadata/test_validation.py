"""Strict parsing and per-document rules of ``repo_metadata.validation``.

One test per rule, named after the rule and the attack it blocks; each checks
the exact ``rule`` id and that the message names the offender.
"""

from __future__ import annotations

from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Snapshot, Timestamp

from repo_metadata.errors import InvalidMetadataError
from repo_metadata.validation import (
    check_metadata,
    is_sbom_path,
    load_metadata,
    parse_json_strict,
)
from tests.repo_metadata.builders import (
    EXPIRES,
    FIRMWARE_PATH,
    delegated_role,
    delegations,
    firmware_custom,
    firmware_target,
    new_key,
    relisted,
    root_metadata,
    succinct_delegations,
    target,
    targets_metadata,
    to_bytes,
    to_doc,
)


def rejected(rule: str, action: Any, *args: Any, **kwargs: Any) -> str:
    """Run ``action``; assert it raised ``rule``; return the message."""
    with pytest.raises(InvalidMetadataError) as caught:
        action(*args, **kwargs)
    assert caught.value.rule == rule, str(caught.value)
    return str(caught.value)


# --- valid metadata passes ---------------------------------------------------


def test_valid_metadata_of_every_type_loads_unchanged() -> None:
    role_keys = [new_key(), new_key()]
    product_line = delegated_role("pump-x100", role_keys, threshold=2)
    sbom = target("pump-x100/infusion-1.2.0.spdx.json")
    documents: list[Metadata[Any]] = [
        root_metadata(),
        targets_metadata([firmware_target(), sbom], delegations((product_line, role_keys))),
        targets_metadata(delegations=succinct_delegations()),
        Metadata(Snapshot(expires=EXPIRES)),
        Metadata(Timestamp(expires=EXPIRES)),
    ]
    for metadata in documents:
        loaded = load_metadata(metadata.to_bytes(), expected_type=metadata.signed.type)
        assert loaded.signed == metadata.signed


# --- parse_json_strict ---------------------------------------------------------


def test_json_too_large_is_rejected_memory_exhaustion() -> None:
    message = rejected("json-too-large", parse_json_strict, b'{"a": "xxxx"}', max_size=8)
    assert "13 bytes" in message


@pytest.mark.parametrize("depth", [33, 100_000], ids=["over-limit", "over-recursion-limit"])
def test_json_too_deep_is_rejected_stack_exhaustion(depth: int) -> None:
    data = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    assert "limit of 32" in rejected("json-too-deep", parse_json_strict, data)


def test_json_at_depth_limit_is_accepted() -> None:
    value = parse_json_strict(b'{"a":' + b"[" * 31 + b"]" * 31 + b"}")["a"]
    for _ in range(30):
        (value,) = value
    assert value == []


def test_json_duplicate_key_is_rejected_parser_differential() -> None:
    data = b'{"signed": {"threshold": 2, "threshold": 1}}'
    assert "'threshold'" in rejected("json-duplicate-key", parse_json_strict, data)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "-Infinity"),
        (b'{"a": "\xe9"}', "UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}', "BOM"),
        (b'["not", "an", "object"]', "list"),
        (b'{"a": 1', "JSON"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"a": ' + b"9" * 5000 + b"}", "JSON"),
    ],
    ids=["nan", "infinity", "latin1", "utf16", "bom", "array", "truncated", "surrogate", "bigint"],
)
def test_json_invalid_is_rejected_ambiguous_encoding(data: bytes, named: str) -> None:
    assert named in rejected("json-invalid", parse_json_strict, data)


# --- load_metadata -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("signed", "version"), True, "signed.version"),
        (("signed", "roles", "root", "threshold"), True, "signed.roles.root.threshold"),
        (("signed", "roles", "root", "threshold"), 1.0, "signed.roles.root.threshold"),
        (("signed", "spec_version"), "1.0.31", None),
    ],
    ids=["bool-version", "bool-threshold", "float-threshold", "control"],
)
def test_field_type_bool_or_float_integer_is_rejected_type_confusion(
    path: tuple[str, ...], value: object, named: str | None
) -> None:
    doc = to_doc(root_metadata())
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if named is None:
        load_metadata(to_bytes(doc))
    else:
        assert named in rejected("field-type", load_metadata, to_bytes(doc))


def test_field_type_string_terminating_is_rejected_truthy_false() -> None:
    keys = [new_key()]
    doc = to_doc(targets_metadata(delegations=delegations((delegated_role("a", keys), keys))))
    doc["signed"]["delegations"]["roles"][0]["terminating"] = "false"
    message = rejected("field-type", load_metadata, to_bytes(doc))
    assert "signed.delegations.roles[0].terminating" in message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda doc: doc.pop("signed"), "signed"),
        (lambda doc: doc["signed"].update(version=0), "version"),
        (lambda doc: doc["signed"].update(_type="mirrors"), "mirrors"),
        (lambda doc: doc["signed"]["roles"]["root"].update(threshold=0), "threshold"),
        (lambda doc: doc["signatures"].append("not a signature"), "str"),
    ],
    ids=["no-signed", "version-0", "unknown-type", "threshold-0", "bad-signature"],
)
def test_metadata_schema_error_of_tuf_is_wrapped_not_leaked(change: Any, named: str) -> None:
    doc = to_doc(root_metadata())
    change(doc)
    assert named in rejected("metadata-schema", load_metadata, to_bytes(doc))


def test_unexpected_type_is_rejected_role_substitution() -> None:
    data = Metadata(Snapshot(expires=EXPIRES)).to_bytes()
    message = rejected("unexpected-type", load_metadata, data, expected_type="targets")
    assert "expected targets metadata, got snapshot" in message


# --- check_metadata: keys and thresholds ----------------------------------------


def test_duplicate_public_key_under_two_keyids_is_rejected_threshold_bypass() -> None:
    metadata = root_metadata()
    root = metadata.signed
    key = root.get_key(root.roles["root"].keyids[0])
    twin = relisted(key, "f" * 64)
    root.add_key(twin, "root")
    root.roles["root"].threshold = 2
    message = rejected("duplicate-public-key", check_metadata, metadata)
    assert key.keyid in message
    assert twin.keyid in message


def test_duplicate_public_key_in_another_spelling_is_rejected_threshold_bypass() -> None:
    # One ECDSA key under both registered keytype spellings has two correct
    # default keyids; only its key material shows that it is one key.
    key = CryptoSigner.generate_ecdsa().public_key
    twin = relisted(key, keytype="ecdsa-sha2-nistp256")
    role = delegated_role("pump-x100", [key, twin], threshold=2)
    metadata = targets_metadata(delegations=delegations((role, [key, twin])))
    message = rejected("duplicate-public-key", check_metadata, metadata)
    assert key.keyid in message
    assert twin.keyid in message


def test_duplicate_public_key_in_upper_case_hex_is_rejected_threshold_bypass() -> None:
    key = new_key()
    upper = relisted(key, keyval={"public": key.keyval["public"].upper()})
    role = delegated_role("pump-x100", [key, upper], threshold=2)
    metadata = targets_metadata(delegations=delegations((role, [key, upper])))
    assert upper.keyid in rejected("duplicate-public-key", check_metadata, metadata)


def test_keyid_mismatch_is_rejected_key_impersonation_by_name() -> None:
    metadata = root_metadata()
    root = metadata.signed
    key = root.get_key(root.roles["targets"].keyids[0])
    root.revoke_key(key.keyid, "targets")
    root.add_key(relisted(key, "ab" * 32), "targets")
    message = rejected("keyid-mismatch", check_metadata, metadata)
    assert "ab" * 32 in message
    assert key.keyid in message


def test_unknown_keyid_is_rejected_dangling_signing_power() -> None:
    metadata = root_metadata()
    metadata.signed.roles["snapshot"].keyids.append("c" * 64)
    message = rejected("unknown-keyid", check_metadata, metadata)
    assert "'snapshot'" in message
    assert "c" * 64 in message


def test_unknown_keyid_in_delegation_is_rejected_dangling_signing_power() -> None:
    keys = [new_key()]
    metadata = targets_metadata(delegations=delegations((delegated_role("pump-x100", keys), [])))
    message = rejected("unknown-keyid", check_metadata, metadata)
    assert keys[0].keyid in message


def test_threshold_range_above_key_count_is_rejected_role_lockout() -> None:
    doc = to_doc(root_metadata())
    doc["signed"]["roles"]["root"]["threshold"] = 2
    message = rejected("threshold-range", load_metadata, to_bytes(doc))
    assert "role 'root' has threshold 2 but 1 distinct key(s)" in message


@pytest.mark.parametrize("threshold", [0, -1, True])
def test_threshold_range_below_one_is_rejected_signature_bypass(threshold: int) -> None:
    keys = [new_key()]
    role = delegated_role("pump-x100", keys)
    role.threshold = threshold
    metadata = targets_metadata(delegations=delegations((role, keys)))
    assert "'pump-x100'" in rejected("threshold-range", check_metadata, metadata)


def test_threshold_range_of_succinct_roles_is_rejected_role_lockout() -> None:
    metadata = targets_metadata(delegations=succinct_delegations(threshold=2))
    assert "'bin-*'" in rejected("threshold-range", check_metadata, metadata)


# --- check_metadata: paths and names --------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/etc/fw.bin", "pump/../../etc/fw.bin", "pump\\fw.bin", "pump/fw\x00.bin", "pump/\x1bfw.bin"],
    ids=["absolute", "dotdot", "backslash", "nul", "control"],
)
def test_target_path_is_rejected_path_traversal(path: str) -> None:
    metadata = targets_metadata([target(path, firmware_custom())])
    assert repr(path) in rejected("target-path", check_metadata, metadata)


def test_target_path_differing_from_its_key_is_rejected_path_confusion() -> None:
    metadata = targets_metadata([firmware_target()])
    metadata.signed.targets[FIRMWARE_PATH].path = "pump-x200/infusion-1.2.0.bin"
    assert "pump-x200/" in rejected("target-path", check_metadata, metadata)


@pytest.mark.parametrize(
    "pattern",
    ["/pump-x100/*", "pump-x100/../*", "pump-x100\\*", "pump-x100/\n*", "pump-x100//*", "", "./*"],
    ids=["absolute", "dotdot", "backslash", "control", "empty-segment", "empty", "dot"],
)
def test_delegation_path_pattern_is_rejected_path_traversal(pattern: str) -> None:
    keys = [new_key()]
    role = delegated_role("pump-x100", keys, paths=[pattern])
    metadata = targets_metadata(delegations=delegations((role, keys)))
    assert repr(pattern) in rejected("delegation-path", check_metadata, metadata)


@pytest.mark.parametrize("prefix", ["", "0G", "AB", "0" * 65], ids=["empty", "g", "upper", "long"])
def test_delegation_path_hash_prefix_not_hex_is_rejected_delegate_everything(prefix: str) -> None:
    keys = [new_key()]
    role = delegated_role("bins", keys, path_hash_prefixes=["ab", prefix])
    metadata = targets_metadata(delegations=delegations((role, keys)))
    assert repr(prefix) in rejected("delegation-path", check_metadata, metadata)


def test_delegation_path_hex_hash_prefix_is_accepted() -> None:
    keys = [new_key()]
    role = delegated_role("bins", keys, path_hash_prefixes=["00", "ab", "f" * 64])
    check_metadata(targets_metadata(delegations=delegations((role, keys))))


@pytest.mark.parametrize("name", ["../evil", "Pump", "pump\n", "a" * 65], ids=repr)
def test_role_name_is_rejected_file_name_traversal(name: str) -> None:
    keys = [new_key()]
    metadata = targets_metadata(delegations=delegations((delegated_role(name, keys), keys)))
    assert repr(name) in rejected("role-name", check_metadata, metadata)


def test_role_name_differing_from_its_key_is_rejected_role_confusion() -> None:
    keys = [new_key()]
    dels = delegations((delegated_role("pump-x100", keys), keys))
    assert dels.roles is not None
    dels.roles = {"pump-x200": dels.roles["pump-x100"]}
    metadata = targets_metadata(delegations=dels)
    assert "'pump-x200' names role 'pump-x100'" in rejected("role-name", check_metadata, metadata)


def test_role_name_of_succinct_bins_is_rejected_file_name_traversal() -> None:
    metadata = targets_metadata(delegations=succinct_delegations(prefix="../bin"))
    assert "'../bin-0'" in rejected("role-name", check_metadata, metadata)


def test_succinct_too_large_is_rejected_enumeration_exhaustion() -> None:
    metadata = targets_metadata(delegations=succinct_delegations(bit_length=17))
    assert "bit_length 17" in rejected("succinct-too-large", check_metadata, metadata)


# --- check_metadata: firmware fields ---------------------------------------------


@pytest.mark.parametrize(
    ("custom", "field"),
    [
        (firmware_custom(securityversion=3), "securityversion"),
        ({k: v for k, v in firmware_custom().items() if k != "security_version"}, "security_ver"),
        (firmware_custom(security_version=True), "security_version"),
        (None, "custom"),
    ],
    ids=["typo", "missing", "bool", "none"],
)
def test_firmware_fields_invalid_are_rejected_anti_rollback_loss(
    custom: dict[str, Any] | None, field: str
) -> None:
    metadata = targets_metadata([target(FIRMWARE_PATH, custom)])
    message = rejected("firmware-fields", check_metadata, metadata)
    assert f"{FIRMWARE_PATH}: {field}" in message


def test_firmware_fields_sbom_with_custom_fields_must_be_firmware() -> None:
    metadata = targets_metadata([target("pump-x100/a.cdx.json", {"version": "1.0.0"})])
    assert "pump-x100/a.cdx.json" in rejected("firmware-fields", check_metadata, metadata)


@pytest.mark.parametrize(
    ("path", "sbom"),
    [
        ("pump/a.sbom.json", True),
        ("pump/a.spdx.json", True),
        ("pump/a.cdx.json", True),
        ("pump/a.json", False),
        ("pump/a.bin", False),
        ("pump/sbom.json.bin", False),
    ],
)
def test_is_sbom_path_by_suffix(path: str, sbom: bool) -> None:
    assert is_sbom_path(path) is sbom
