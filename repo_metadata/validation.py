"""Strict validation of metadata that comes from outside.

python-tuf checks that metadata is well-formed TUF. A repository of medical
device firmware needs more: each rule below blocks one attack, and raises
``InvalidMetadataError`` whose ``rule`` is the stable id given here (for logs,
the audit trail and tests). The module is pure: bytes or objects in, nothing
or an exception out.

Parsing, ``parse_json_strict``:

- ``json-too-large``, ``json-too-deep``: bounded size and nesting, so a hostile
  upload cannot exhaust memory or the stack.
- ``json-duplicate-key``: an object with a key twice; two parsers may keep
  different values (one sees threshold 2, another 1: a parser differential).
- ``json-invalid``: not UTF-8, not JSON, not an object at the top, ``NaN`` or
  ``Infinity``, a lone surrogate (which canonical JSON cannot encode, so the
  signature check would crash instead of failing).

Loading, ``load_metadata``:

- ``field-type``: ``true`` or ``1.0`` where an integer is expected (``version``,
  ``threshold``, ``length``, ``bit_length``): Python takes ``true`` as 1, so a
  "version true" could pass as version 1; and ``terminating`` that is not a
  boolean (the string ``"false"`` is truthy).
- ``metadata-schema``: python-tuf refuses the document.
- ``unexpected-type``: the ``_type`` is not the one asked for (a snapshot
  offered as targets).

Content, ``check_metadata``:

- ``duplicate-public-key``: one public key under two keyids (in ``root.keys``
  or ``delegations.keys``); its holder alone would meet a threshold of 2.
  Keys are compared by their key material, whatever the scheme or encoding.
- ``keyid-mismatch``: a keyid that is not securesystemslib's default keyid of
  its key (SHA-256 of the canonical JSON of keytype, scheme and keyval, as
  ``SSlibKey.from_crypto`` and every signer's ``import_`` compute it), so that
  a keyid names one key everywhere: in other metadata, the audit log and
  ``status``. GPG keys (whose keyid is the fingerprint) are thus not accepted.
- ``unknown-keyid``: a role names a keyid absent from ``keys``; the threshold
  looks reachable when it is not, and a key added later under that id would
  silently gain the role's power.
- ``threshold-range``: a threshold below 1 (no signature needed) or above the
  number of distinct keys of the role (the role can never be signed again:
  for root, no rotation out of it).
- ``target-path``: a target path that is absolute, has ``..``, a backslash,
  NUL or a control character (path traversal on the server, mirrors, devices).
- ``delegation-path``: a delegated path pattern with the same faults, or a
  hash prefix that is not lowercase hex; an empty prefix delegates every path.
- ``role-name``: a delegated role name (which becomes a file name) that is not
  a safe role name.
- ``firmware-fields``: a target whose signed custom fields are not valid
  ``FirmwareInfo`` (a typo must not drop the anti-rollback counter); SBOM
  targets (see ``is_sbom_path``) with no custom fields are exempt.
- ``delta-fields``: a delta target (a ``delta`` custom field, issue 13)
  whose field is not valid ``DeltaInfo`` (``repo_metadata.delta`` DI1-DI6):
  a delta has no firmware fields, so it can never pass for a release.
- ``authorization-keys``: root's list of the keys that authorize installs
  (``repo_metadata.authorization``, rules A1 and A2) is malformed, or shares
  a key with a root role (R47).
- ``succinct-too-large``: hash bins beyond ``2**MAX_SUCCINCT_BIT_LENGTH``; also
  in ``check_delegation_graph``.

Delegations across roles:

- ``delegation-scope`` (``check_delegation_scope``,
  ``check_product_line_patterns``): a delegation that reaches beyond its
  delegator's paths, so one product line's engineers could sign another's
  firmware.
- ``delegation-cycle`` (``check_delegation_graph``): a role reachable from
  itself; a walk of the delegation tree would never end.
- ``delegated-twice`` (``check_delegation_graph``): one role name delegated by
  two delegators or twice, or a hash bin named like another role. A role is
  one file; two delegations would give it two sets of keys and paths, and a
  client would trust whichever it met first (role confusion).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from securesystemslib.signer import Key
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Role,
    Root,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from fwcommon.keyid import KeyIdError, default_keyid_of
from repo_metadata.delta import DeltaInfo, is_delta
from repo_metadata.errors import InvalidFieldError, InvalidMetadataError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.paths import MAX_TARGET_PATH, check_role_name, check_target_path

MAX_JSON_SIZE = 16 * 1024 * 1024
MAX_JSON_DEPTH = 32
#: 2**16 bins is plenty for a firmware repository and keeps enumeration cheap.
MAX_SUCCINCT_BIT_LENGTH = 16
SBOM_SUFFIXES = (".sbom.json", ".spdx.json", ".cdx.json")

_INTEGER_FIELDS = frozenset({"version", "threshold", "length", "bit_length"})
_BOOLEAN_FIELDS = frozenset({"terminating"})
_WILDCARD = re.compile(r"[*?\[]")
_HASH_PREFIX = re.compile(r"[0-9a-f]{1,64}")
_SURROGATE = re.compile("[\ud800-\udfff]")


# --- parsing ---------------------------------------------------------------


def parse_json_strict(
    data: bytes, *, max_size: int = MAX_JSON_SIZE, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """Parse ``data`` as one UTF-8 JSON object, refusing anything ambiguous.

    Rules ``json-too-large``, ``json-too-deep``, ``json-duplicate-key`` and
    ``json-invalid`` (see the module docstring).
    """
    if len(data) > max_size:
        raise InvalidMetadataError(
            "json-too-large", f"document of {len(data)} bytes exceeds the limit of {max_size}"
        )
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except RecursionError:
        raise InvalidMetadataError(
            "json-too-deep", f"nesting exceeds the limit of {max_depth}"
        ) from None
    except ValueError as exc:  # also UnicodeDecodeError and the int digit limit
        raise InvalidMetadataError("json-invalid", f"not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidMetadataError(
            "json-invalid", f"top level must be a JSON object, got {type(value).__name__}"
        )
    _check_tree(value, max_depth)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidMetadataError("json-duplicate-key", f"key {key!r} appears twice")
        obj[key] = value
    return obj


def _no_constant(name: str) -> float:
    raise InvalidMetadataError("json-invalid", f"{name} is not a JSON number")


def _check_tree(root: dict[str, Any], max_depth: int) -> None:
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidMetadataError("json-too-deep", f"nesting exceeds the limit of {max_depth}")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            for text in (key, item):
                if isinstance(text, str) and _SURROGATE.search(text):
                    raise InvalidMetadataError(
                        "json-invalid", f"string {text!r} holds a lone surrogate (not UTF-8)"
                    )
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))


# --- loading ---------------------------------------------------------------


def load_metadata(data: bytes, *, expected_type: str | None = None) -> Metadata[Any]:
    """Parse, type-check and validate one metadata file from outside.

    ``parse_json_strict``, then rule ``field-type`` on the whole document,
    python-tuf's own checks (rule ``metadata-schema``), the ``_type`` (rule
    ``unexpected-type``), then ``check_metadata``. Signatures are not checked
    here: that needs the delegator's keys.
    """
    return metadata_from_tree(parse_json_strict(data), expected_type=expected_type)


def metadata_from_tree(tree: dict[str, Any], *, expected_type: str | None = None) -> Metadata[Any]:
    """``load_metadata`` for a document ``parse_json_strict`` has parsed already.

    For a role inside a larger strictly parsed body (a release upload), so
    that it is parsed once. python-tuf consumes ``tree``: serialize it first
    if its bytes are needed.
    """
    _check_field_types(tree)
    try:
        metadata: Metadata[Any] = Metadata.from_dict(tree)
    except KeyError as exc:
        raise InvalidMetadataError("metadata-schema", f"missing field {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidMetadataError("metadata-schema", f"not valid TUF metadata: {exc}") from None
    if expected_type is not None and metadata.signed.type != expected_type:
        raise InvalidMetadataError(
            "unexpected-type", f"expected {expected_type} metadata, got {metadata.signed.type}"
        )
    check_metadata(metadata)
    return metadata


def _check_field_types(tree: dict[str, Any]) -> None:
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            here = f"{where}.{key}" if where else key
            if key in _INTEGER_FIELDS and isinstance(value, bool | float):
                raise InvalidMetadataError(
                    "field-type", f"{here} must be an integer, not {json.dumps(value)}"
                )
            if key in _BOOLEAN_FIELDS and not isinstance(value, bool):
                raise InvalidMetadataError(
                    "field-type", f"{here} must be true or false, not {json.dumps(value)}"
                )
            stack.append((here, value))


# --- one metadata document --------------------------------------------------


def check_metadata(metadata: Metadata[Any]) -> None:
    """Apply the content rules to ``metadata`` (see the module docstring).

    Root: keys and its four roles. Targets: keys and roles of its delegations,
    then every target. Snapshot and timestamp have nothing beyond tuf's checks.
    """
    signed = metadata.signed
    if isinstance(signed, Root):
        _check_keys(signed.keys, where="root")
        for name, role in signed.roles.items():
            _check_role_keys(name, role, signed.keys)
        _check_authorization_keys(signed)
    elif isinstance(signed, Targets):
        if signed.delegations is not None:
            _check_delegations(signed.delegations)
        for path, target in signed.targets.items():
            _check_target(path, target)


def _check_authorization_keys(root: Root) -> None:
    """Rule ``authorization-keys``: root's list of authorization keys is well formed (A1, A2)."""
    # Imported here: the authorization module parses its documents with this one.
    from repo_metadata.authorization import AuthorizationKeys  # noqa: PLC0415

    try:
        AuthorizationKeys.from_root(root)
    except InvalidFieldError as exc:
        raise InvalidMetadataError("authorization-keys", str(exc)) from None


def is_sbom_path(path: str) -> bool:
    """Whether ``path`` names an SBOM document rather than a firmware image."""
    return path.endswith(SBOM_SUFFIXES)


def _check_keys(keys: Mapping[str, Key], *, where: str) -> None:
    # Duplicates first: a second keyid for one key is necessarily not its
    # default keyid, and "same key twice" is the finding that matters.
    seen: dict[bytes, str] = {}
    for keyid, key in keys.items():
        first = seen.setdefault(_key_material(key), keyid)
        if first != keyid:
            raise InvalidMetadataError(
                "duplicate-public-key",
                f"{where} keys {first!r} and {keyid!r} are the same public key;"
                " one key holder would count twice towards a threshold",
            )
    for keyid, key in keys.items():
        expected = _default_keyid(key)
        if keyid != expected:
            raise InvalidMetadataError(
                "keyid-mismatch",
                f"{where} key {keyid!r} should have keyid {expected!r}, the SHA-256 of"
                " the canonical JSON of its keytype, scheme and keyval",
            )


def _key_material(key: Key) -> bytes:
    """The key as DER SubjectPublicKeyInfo, or its canonical keyval if unparsable."""
    public = key.keyval.get("public")
    if isinstance(public, str):
        try:
            crypto: PublicKeyTypes = (
                Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
                if key.keytype == "ed25519"
                else load_pem_public_key(public.encode())
            )
            return b"spki:" + crypto.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            pass
    raw = json.dumps([key.keytype, key.keyval], sort_keys=True, default=repr)
    return b"raw:" + raw.encode("utf-8", "surrogatepass")


def _default_keyid(key: Key) -> str | None:
    try:
        return default_keyid_of(key)
    except KeyIdError:
        return None


def _check_role_keys(name: str, role: Role, keys: Mapping[str, Key]) -> None:
    for keyid in role.keyids:
        if keyid not in keys:
            raise InvalidMetadataError(
                "unknown-keyid", f"role {name!r} names key {keyid!r}, which is not in keys"
            )
    distinct = len(set(role.keyids))
    threshold = role.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise InvalidMetadataError(
            "threshold-range", f"role {name!r} has a threshold that is not an integer"
        )
    if not 1 <= threshold <= distinct:
        raise InvalidMetadataError(
            "threshold-range",
            f"role {name!r} has threshold {threshold} but {distinct} distinct key(s);"
            " it must be between 1 and the number of keys",
        )


def _check_delegations(delegations: Delegations) -> None:
    _check_keys(delegations.keys, where="delegations")
    for name, role in (delegations.roles or {}).items():
        _check_role_keys(name, role, delegations.keys)
        _check_delegated_role(name, role)
    succinct = delegations.succinct_roles
    if succinct is not None:
        _check_succinct(succinct)
        _check_role_keys(f"{succinct.name_prefix}-*", succinct, delegations.keys)


def _check_delegated_role(name: str, role: DelegatedRole) -> None:
    if role.name != name:
        raise InvalidMetadataError(
            "role-name", f"delegation listed as {name!r} names role {role.name!r}"
        )
    try:
        check_role_name(role.name)
    except InvalidFieldError as exc:
        raise InvalidMetadataError("role-name", str(exc)) from None
    for pattern in role.paths or ():
        _check_pattern(role.name, pattern)
    for prefix in role.path_hash_prefixes or ():
        if not isinstance(prefix, str) or not _HASH_PREFIX.fullmatch(prefix):
            raise InvalidMetadataError(
                "delegation-path",
                f"role {role.name!r}: hash prefix {prefix!r} must be 1 to 64 lowercase hex digits",
            )


def _check_pattern(role: str, pattern: str) -> None:
    fault = _pattern_fault(pattern)
    if fault:
        raise InvalidMetadataError(
            "delegation-path", f"role {role!r}: path pattern {pattern!r} {fault}"
        )


_PATTERN_FAULTS: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda p: len(p) > MAX_TARGET_PATH, f"is longer than {MAX_TARGET_PATH} characters"),
    (lambda p: any(ord(c) < 0x20 or ord(c) == 0x7F for c in p), "contains a control character"),
    (lambda p: "\\" in p, "contains a backslash"),
    (lambda p: p.startswith("/"), "is absolute"),
    (lambda p: ".." in p, "contains '..'"),
    (lambda p: any(s in ("", ".") for s in p.split("/")), "has an empty or '.' segment"),
)


def _pattern_fault(pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string"
    return next((fault for test, fault in _PATTERN_FAULTS if test(pattern)), "")


def _check_succinct(succinct: SuccinctRoles) -> None:
    if succinct.bit_length > MAX_SUCCINCT_BIT_LENGTH:
        raise InvalidMetadataError(
            "succinct-too-large",
            f"succinct roles {succinct.name_prefix!r} have bit_length {succinct.bit_length};"
            f" at most {MAX_SUCCINCT_BIT_LENGTH} ({2**MAX_SUCCINCT_BIT_LENGTH} bins) is allowed",
        )
    sample = f"{succinct.name_prefix}-{'0' * succinct.suffix_len}"
    try:
        check_role_name(sample)
    except InvalidFieldError as exc:
        raise InvalidMetadataError("role-name", f"succinct roles: {exc}") from None


def _check_target(path: str, target: TargetFile) -> None:
    try:
        check_target_path(path)
    except InvalidFieldError as exc:
        raise InvalidMetadataError("target-path", f"target {path!r}: {exc}") from None
    if target.path != path:
        raise InvalidMetadataError(
            "target-path", f"target listed as {path!r} names path {target.path!r}"
        )
    if is_sbom_path(path) and not target.custom:
        return
    if is_delta(target):
        try:
            DeltaInfo.from_target(target)
        except InvalidFieldError as exc:
            raise InvalidMetadataError("delta-fields", str(exc)) from None
        return
    try:
        FirmwareInfo.from_target(target)
    except InvalidFieldError as exc:
        raise InvalidMetadataError("firmware-fields", str(exc)) from None


# --- delegations across roles ----------------------------------------------


def literal_prefix(pattern: str) -> str:
    """The part of a path pattern before its first wildcard (``*``, ``?``, ``[``)."""
    match = _WILDCARD.search(pattern)
    return pattern if match is None else pattern[: match.start()]


def check_delegation_scope(parent_patterns: Sequence[str], child: DelegatedRole) -> None:
    """Raise (rule ``delegation-scope``) if ``child`` reaches beyond its parent.

    ``parent_patterns`` are the paths delegated to the role that delegates
    ``child``. Each child pattern must stay under a parent pattern: equal to a
    parent pattern without wildcards, or with a literal prefix (the part
    before the first wildcard) that starts with a wildcard parent pattern's
    literal prefix. So under ``pump-x100/*``, ``pump-x100/beta/*`` is in scope
    and ``*``, ``other/*`` and ``pump-x1000/*`` are not. Hash-prefix
    delegations cannot be scoped to a path and are refused.

    This is prefix containment, not full glob containment: a TUF client still
    matches every pattern along the delegation chain. The top-level
    ``targets`` role has no parent pattern; check the product lines it
    delegates with ``check_product_line_patterns`` instead.
    """
    if isinstance(parent_patterns, str):
        raise TypeError("parent_patterns must be a sequence of patterns, not one string")
    if child.paths is None:
        raise InvalidMetadataError(
            "delegation-scope",
            f"role {child.name!r} is delegated by hash prefix, which cannot be"
            " kept inside the delegator's paths",
        )
    for pattern in child.paths:
        if not any(_within(pattern, parent) for parent in parent_patterns):
            raise InvalidMetadataError(
                "delegation-scope",
                f"role {child.name!r}: path pattern {pattern!r} reaches beyond the"
                f" delegator's paths {list(parent_patterns)}",
            )


def _within(pattern: str, parent: str) -> bool:
    parent_prefix = literal_prefix(parent)
    if parent_prefix == parent:
        return pattern == parent
    return literal_prefix(pattern).startswith(parent_prefix)


def check_product_line_patterns(patterns: Sequence[str]) -> None:
    """Raise (rule ``delegation-scope``) unless each pattern is ``<prefix>/*``.

    What the top-level ``targets`` role delegates to a product line: at least
    one pattern, each a non-empty wildcard-free directory prefix that is
    itself a safe target path, then ``/*``. A product line given ``*`` or
    ``pump*`` could sign any (or another) model's firmware.
    """
    if isinstance(patterns, str):
        raise TypeError("patterns must be a sequence of patterns, not one string")
    if not patterns:
        raise InvalidMetadataError(
            "delegation-scope", "a product line must be delegated at least one path"
        )
    for pattern in patterns:
        prefix = pattern[:-2] if isinstance(pattern, str) and pattern.endswith("/*") else ""
        try:
            check_target_path(prefix)
        except InvalidFieldError:
            raise InvalidMetadataError(
                "delegation-scope",
                f"product line pattern {pattern!r} must be '<prefix>/*' with a"
                " non-empty prefix made of safe path segments and no wildcard",
            ) from None


def check_delegation_graph(delegations: Mapping[str, Targets]) -> None:
    """Raise unless the delegations form a tree (rules in the module docstring).

    ``delegations`` maps every targets role's name (``targets`` included) to
    its signed content. Rules ``succinct-too-large`` (checked before bin names
    are enumerated), ``delegated-twice`` and ``delegation-cycle``.
    """
    children = {name: list(_delegated_names(signed)) for name, signed in delegations.items()}
    # Cycles first: a cycle entered from outside also makes its entry role
    # delegated twice, and "cycle" is the more telling diagnosis.
    cycle = _find_cycle(children)
    if cycle:
        raise InvalidMetadataError(
            "delegation-cycle", f"delegations form a cycle: {' -> '.join(cycle)}"
        )
    delegator_of: dict[str, str] = {}
    for delegator in sorted(children):
        for child in children[delegator]:
            first = delegator_of.get(child)
            if first is not None:
                by = repr(first) if first == delegator else f"both {first!r} and {delegator!r}"
                raise InvalidMetadataError(
                    "delegated-twice", f"role {child!r} is delegated twice, by {by}"
                )
            delegator_of[child] = delegator


def _delegated_names(signed: Targets) -> Iterator[str]:
    delegations = signed.delegations
    if delegations is None:
        return
    for role in (delegations.roles or {}).values():
        yield role.name
    if delegations.succinct_roles is not None:
        _check_succinct(delegations.succinct_roles)
        yield from delegations.succinct_roles.get_roles()


def _find_cycle(children: Mapping[str, Sequence[str]]) -> list[str]:
    done: set[str] = set()
    for start in sorted(children):
        if start in done:
            continue
        path, on_path = [start], {start}
        pending = [iter(children.get(start, ()))]
        while pending:
            child = next(pending[-1], None)
            if child is None:
                on_path.discard(path[-1])
                done.add(path.pop())
                pending.pop()
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                pending.append(iter(children.get(child, ())))
    return []
