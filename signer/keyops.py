"""Changing who may sign: key rotation and revocation (R5, R47).

``rotate`` adds and removes keys of one role and may change its threshold:
a top-level role's keys live in root (so root gets a new version, to be
signed by the threshold of the old and of the new root), a product line's in
targets, and a product line with hashed bins also hands the same keys to
every bin. ``revoke_key`` removes a compromised key from every role that
lists it. Both refuse a change that would leave a role unable to meet its
threshold, before anything is written.

``rotate_authorization_keys`` changes which keys authorize a technician's
install (``repo_metadata.authorization``): a field of root, so the change is
a new root the officers sign, and a device trusts it only after verifying
that root like any other (the server alone can never swap these keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from securesystemslib.signer import Key
from tuf.api.metadata import Delegations, Root, Targets

from repo_metadata.authorization import AuthorizationKeys
from repo_metadata.errors import InvalidFieldError
from repo_metadata.paths import TOP_LEVEL_ROLES
from signer.errors import SignerError
from signer.repository import OfflineRepository

#: Hex digits a key id prefix needs: 24 bits, so a typo rarely names another key.
MIN_KEYID_PREFIX = 6
_HEX = frozenset("0123456789abcdef")


def resolve_keyid(prefix: str, known: Iterable[str]) -> str:
    """The one key id in ``known`` that starts with ``prefix`` (6+ hex digits)."""
    text = prefix.strip().lower()
    if len(text) < MIN_KEYID_PREFIX or not set(text) <= _HEX:
        raise SignerError(
            f"key id {prefix!r}: give the key id or at least {MIN_KEYID_PREFIX} hex digits of"
            " its start ('fwsign status' and 'fwhsm list' show key ids)"
        )
    matches = sorted(k for k in set(known) if k.startswith(text))
    if not matches:
        raise SignerError(f"no key listed in this repository has an id starting {text!r}")
    if len(matches) > 1:
        raise SignerError(
            f"key id {text!r} is ambiguous: it starts {len(matches)} keys"
            f" ({', '.join(m[:16] for m in matches)}); give more digits"
        )
    return matches[0]


def rotate(
    repo: OfflineRepository,
    *,
    role: str,
    add: Sequence[Key] = (),
    remove: Sequence[str] = (),
    threshold: int | None = None,
) -> list[str]:
    """Add keys to, remove key ids from, and re-threshold ``role``."""
    if not add and not remove and threshold is None:
        raise SignerError("nothing to change: give --add-key, --remove-key or --threshold")
    repo.check_key_separation(add, role=role)
    if role in TOP_LEVEL_ROLES:
        with repo.edit_root() as root:
            _rotate_in(root, role, add, remove, threshold)
        return repo.commit()
    name = repo.delegation_of(role).delegator_name
    if name is None or repo.targets(name).delegations is None:
        raise SignerError(f"role {role!r} is not delegated by a targets role")
    with repo.edit_targets(name) as delegator:
        if delegator.delegations is None or delegator.delegations.roles is None:
            raise SignerError(f"{role!r} is a hashed bin: rotate its product line instead")
        _rotate_in(delegator, role, add, remove, threshold)
    succinct = _succinct(repo.targets(role))
    if succinct is not None:
        with repo.edit_targets(role) as line:
            _rotate_succinct(line, add, remove, threshold)
    return repo.commit()


def _rotate_in(
    delegator: Root | Targets,
    role: str,
    add: Sequence[Key],
    remove: Sequence[str],
    threshold: int | None,
) -> None:
    entry = delegator.get_delegated_role(role)
    for keyid in remove:
        if keyid not in entry.keyids:
            raise SignerError(f"key {keyid[:12]} is not a key of {role}")
        delegator.revoke_key(keyid, role)
    for key in add:
        if key.keyid in entry.keyids:
            raise SignerError(f"key {key.keyid[:12]} is already a key of {role}")
        delegator.add_key(key, role)
    if threshold is not None:
        entry.threshold = threshold
    _check_threshold(role, len(entry.keyids), entry.threshold)


def _succinct(line: Targets) -> Delegations | None:
    delegations = line.delegations
    return delegations if delegations and delegations.succinct_roles else None


def _rotate_succinct(
    line: Targets, add: Sequence[Key], remove: Sequence[str], threshold: int | None
) -> None:
    delegations = line.delegations
    if delegations is None or delegations.succinct_roles is None:
        return
    bins = delegations.succinct_roles
    for keyid in remove:
        if keyid in bins.keyids:
            bins.keyids.remove(keyid)
            delegations.keys.pop(keyid, None)
    for key in add:
        bins.keyids.append(key.keyid)
        delegations.keys[key.keyid] = key
    if threshold is not None:
        bins.threshold = threshold
    _check_threshold("hashed bins", len(bins.keyids), bins.threshold)


def _check_threshold(role: str, keys: int, threshold: int) -> None:
    if not 1 <= threshold <= keys:
        raise SignerError(
            f"{role} would have {keys} key(s) for a threshold of {threshold};"
            " add a key or lower the threshold in the same 'fwsign rotate'"
        )


def revoke_key(repo: OfflineRepository, *, keyid: str) -> list[str]:
    """Remove ``keyid`` from every role that lists it (a compromised key, R5)."""
    found = False
    root = repo.root()
    roles_in_root = [name for name, entry in root.roles.items() if keyid in entry.keyids]
    if roles_in_root:
        found = True
        with repo.edit_root() as signed:
            for name in roles_in_root:
                _rotate_in(signed, name, (), [keyid], None)
    for name in list(repo.delegating_roles()):
        delegations = repo.targets(name).delegations
        if delegations is None or keyid not in delegations.keys:
            continue
        found = True
        with repo.edit_targets(name) as signed:
            for child in list((signed.delegations.roles or {}) if signed.delegations else {}):
                if keyid in signed.get_delegated_role(child).keyids:
                    _rotate_in(signed, child, (), [keyid], None)
            _rotate_succinct(signed, (), [keyid], None)
    if not found:
        raise SignerError(f"no role lists key {keyid[:12]}; 'fwsign status' shows the keys")
    return repo.commit()


def rotate_authorization_keys(
    repo: OfflineRepository,
    *,
    add: Sequence[Key] = (),
    remove: Sequence[str] = (),
    threshold: int | None = None,
) -> list[str]:
    """Add or remove the keys that authorize installs, or change their threshold (R47)."""
    if not add and not remove and threshold is None:
        raise SignerError("nothing to change: give --add-key, --remove-key or --threshold")
    root = repo.root()
    current = AuthorizationKeys.from_root(root)
    keys = dict(current.keys) if current is not None else {}
    for keyid in remove:
        if keyid not in keys:
            raise SignerError(f"key {keyid[:12]} is not an authorization key")
        del keys[keyid]
    taken = set(root.keys) | {
        keyid
        for name in repo.delegating_roles()
        for keyid in (repo.targets(name).delegations or Delegations(keys={}, roles={})).keys
    }
    for key in add:
        if key.keyid in keys:
            raise SignerError(f"key {key.keyid[:12]} is already an authorization key")
        if key.keyid in taken:
            raise SignerError(
                f"key {key.keyid[:12]} already signs metadata; authorizations need a key of"
                " their own (R47: one key, one use; fwhsm generate --purpose authorization)"
            )
        keys[key.keyid] = key
    wanted = threshold if threshold is not None else (current.threshold if current else 1)
    if not 1 <= wanted <= len(keys):
        raise SignerError(
            f"authorization would have {len(keys)} key(s) for a threshold of {wanted}; add a"
            " key or lower the threshold in the same 'fwsign authorization-keys'"
        )
    try:
        new = AuthorizationKeys(keys, wanted)
    except InvalidFieldError as exc:
        raise SignerError(str(exc)) from None
    with repo.edit_root() as signed:
        new.write_to(signed)
    return repo.commit()
