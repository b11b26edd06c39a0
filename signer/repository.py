"""The offline repository: python-tuf's ``Repository`` over a directory.

``close()`` is the only way a role changes: it starts a new version (once per
session, and only if the version on disk was already signed), sets the expiry
from the policy, drops signatures over the old content, and signs with every
key given for this session that the role's delegator authorizes, verifying
each signature at once. Nothing touches the disk until ``commit()``, which
first re-checks every changed role with ``repo_metadata.verify``, then the
whole repository with ``repo_metadata.repository_check`` (the server's own
check of a release), and then writes all files together (``FileBatch``): a
failure anywhere leaves the directory exactly as it was. A role the change
takes its delegator's trust from (a key rotation) gets a new version in the
same commit, listed in ``to_resign``, for its new keys to sign.

TUF rollback from inside the signer: ``commit()`` keeps what it signs. Each
role it writes with at least one signature is also written as
``N.<role>.json``; root keeps its whole chain (devices walk it), every other
role only its newest signed version, the older one removed once the new one
is durable (a crash leaves two kept versions, never none). A role is signed
or written only if it is its kept version itself (same signed bytes) or goes
beyond it under ``check_proposed``'s rules, the server's own: a signature
never lands on a rewound role.

Roles are loaded lazily, so adding one release to a product line with
hashed bins reads and re-signs ``targets``, the product line and one bin,
never the whole line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Delegations,
    Metadata,
    Root,
    Signed,
    SuccinctRoles,
    TargetFile,
    Targets,
    VerificationResult,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from fwcommon.files import FileBatch
from repo_metadata.errors import RepositoryError
from repo_metadata.paths import TOP_LEVEL_ROLES
from repo_metadata.policy import Policy
from repo_metadata.repository_check import Completeness, RepositoryCheck, check_repository
from repo_metadata.validation import load_metadata, parse_json_strict
from repo_metadata.verify import check_proposed, role_type
from signer import layout
from signer.errors import SignerError

_SERIALIZER = JSONSerializer(compact=False)
_NO_DELEGATIONS = Delegations({}, roles={})


@dataclass(frozen=True)
class Delegation:
    """Who delegates a role, and the path patterns granted above that."""

    delegator_name: str | None
    delegator: Root | Targets
    ancestor_patterns: tuple[tuple[str, ...], ...]


class OfflineRepository(Repository):
    """A signer's working copy of the repository, in one directory."""

    def __init__(
        self,
        path: Path,
        *,
        now: datetime,
        signers: Iterable[Signer] = (),
        policy: Policy | None = None,
        create: bool = False,
    ) -> None:
        self.path = path
        self.now = now
        if create:
            self.policy = policy or Policy()
        else:
            if not layout.role_file(path, Root.type).is_file():
                raise SignerError(
                    f"{path} is not a firmware repository (no metadata/root.json);"
                    " create one with 'fwsign init'"
                )
            self.policy = policy or _load_policy(path)
        self._signers = {s.public_key.keyid: s for s in signers}
        self._loaded: dict[str, Metadata[Any]] = {}
        # Version on disk when loaded and whether it carried signatures: an
        # edit of signed content starts a new version; a draft is edited in place.
        self._on_disk: dict[str, tuple[int, bool] | None] = {}
        self._edited: set[str] = set()
        self._bumped: set[str] = set()
        self._dirty: list[str] = []
        self._new_policy = create
        self._versioned: dict[str, list[int]] | None = None
        # Roles whose kept version this session wrote: it amends them in place.
        self._kept_here: set[str] = set()
        self._read_digest: dict[str, bytes] = {}  # SHA-256 of each role file as read
        #: Roles the last commit's change took their delegator's trust from
        #: (a rotation, a revoked key), with why: the commit started a new
        #: version of each (``_check_repository``), to be signed before publishing.
        self.to_resign: tuple[tuple[str, str], ...] = ()

    # -- python-tuf Repository interface --------------------------------

    def open(self, role: str) -> Metadata[Any]:
        if role in self._loaded:
            return self._loaded[role]
        file = layout.role_file(self.path, role)
        if not file.is_file():
            md = _new_metadata(role, self.now)
            self._on_disk[role] = None
        else:
            data = file.read_bytes()
            try:
                md = load_metadata(data, expected_type=role_type(role))
            except RepositoryError as exc:
                raise SignerError(f"{file}: {exc}") from None
            self._on_disk[role] = (md.signed.version, bool(md.signatures))
            self._read_digest[role] = hashlib.sha256(data).digest()
        self._loaded[role] = md
        return md

    def close(self, role: str, md: Metadata[Any]) -> None:
        if role not in self._edited and self._starts_new_version(role):
            md.signed.version += 1
            self._bumped.add(role)
        self._edited.add(role)
        md.signed.expires = self.now + self.policy.for_role(role).expiry
        md.signatures.clear()
        self._loaded[role] = md
        self._mark_dirty(role)
        self.sign_available(role)

    def _starts_new_version(self, role: str) -> bool:
        """Whether an edit of ``role`` must start a new version.

        Signed content may already be with someone (published, or with the
        next signer), so a change gets a new version. Root is stricter: its
        versions form a chain every device walks step by step, so a root
        version that never met its thresholds is amended in place, never
        skipped (TUF spec 5.3.4: each root is exactly the previous + 1).
        """
        disk = self._on_disk.get(role)
        if disk is None or not disk[1]:
            return False
        if role != Root.type:
            return True
        data = layout.role_file(self.path, Root.type).read_bytes()
        on_disk = load_metadata(data, expected_type=Root.type)
        previous = self._root_version(disk[0] - 1)
        return bool(
            on_disk.signed.get_root_verification_result(
                previous, on_disk.signed_bytes, on_disk.signatures
            )
        )

    # -- reading ---------------------------------------------------------

    def exists(self, role: str) -> bool:
        return role in self._loaded or layout.role_file(self.path, role).is_file()

    def delegation_of(self, role: str) -> Delegation:
        """The delegator of ``role``, found by walking down from targets."""
        if role in TOP_LEVEL_ROLES:
            return Delegation(None, self.root(), ())
        queue: list[tuple[str, tuple[tuple[str, ...], ...]]] = [(Targets.type, ())]
        seen: set[str] = set()
        while queue:
            name, ancestors = queue.pop(0)
            if name in seen or not self.exists(name):
                continue
            seen.add(name)
            delegator = self.targets(name)
            delegations = delegator.delegations
            if delegations is None:
                continue
            succinct = delegations.succinct_roles
            if succinct is not None and succinct.is_delegated_role(role):
                return Delegation(name, delegator, ancestors)
            for child in (delegations.roles or {}).values():
                if child.name == role:
                    return Delegation(name, delegator, ancestors)
                patterns = tuple(child.paths or ())
                queue.append((child.name, (*ancestors, patterns) if patterns else ancestors))
        raise SignerError(f"no role {role!r} is delegated in this repository; see 'fwsign status'")

    def delegating_roles(self) -> Iterator[str]:
        """Every targets role that delegates, walking down from targets."""
        queue = [Targets.type]
        seen: set[str] = set()
        while queue:
            name = queue.pop(0)
            if name in seen or not self.exists(name):
                continue
            seen.add(name)
            delegations = self.targets(name).delegations
            if delegations is None:
                continue
            yield name
            queue.extend((delegations.roles or {}).keys())

    def check_key_separation(self, keys: Iterable[Key], *, role: str) -> None:
        """Refuse giving ``role`` a key that serves the other side (R47).

        A token cannot tell top-level targets from a delegated role (both
        sign ``_type: targets``), so the repository keeps the keys apart:
        no key root lists for a top-level role may sign a delegation, and no
        key a delegation lists may become a top-level key.
        """
        if role in TOP_LEVEL_ROLES:
            taken = {
                keyid: f"the delegations of {name}"
                for name in self.delegating_roles()
                for keyid in (self.targets(name).delegations or _NO_DELEGATIONS).keys
            }
        else:
            taken = {
                keyid: f"a {name} key"
                for name, entry in self.root().roles.items()
                for keyid in entry.keyids
            }
        for key in keys:
            if key.keyid in taken:
                raise SignerError(
                    f"key {key.keyid[:12]} is already {taken[key.keyid]}; {role} needs keys"
                    " of its own (R47: one key, one use)"
                )

    def leaf_role_for(self, path: str) -> str:
        """The delegated role that holds ``path``: the product line, or its hashed bin.

        With bins, a current release is also copied into the line's own role
        (``repo_metadata.frontier``), where a client's walk finds it first;
        this is the bin, where every release is kept and added.
        """
        name = Targets.type
        for _ in range(32):
            delegations = self.targets(name).delegations
            if delegations is None:
                break
            children = [child for child, _terminating in delegations.get_roles_for_target(path)]
            if not children:
                break
            name = children[0]
            if delegations.succinct_roles is not None:
                break
        if name == Targets.type:
            raise SignerError(
                f"no product line is delegated for {path!r}; create one with 'fwsign delegate'"
            )
        return name

    def line_of_bin(self, role: str) -> str | None:
        """The product line whose hashed bin ``role`` is, or None for any other role."""
        if role in TOP_LEVEL_ROLES:
            return None
        delegation = self.delegation_of(role)
        succinct = _succinct(delegation.delegator)
        if succinct is None or not succinct.is_delegated_role(role):
            return None
        return delegation.delegator_name

    def archived_releases(self, line: str) -> list[TargetFile]:
        """Every target in every hashed bin of ``line`` (reads them all)."""
        succinct = _succinct(self.targets(line))
        if succinct is None:
            return []
        return [
            target
            for name in succinct.get_roles()
            if self.exists(name)
            for target in self.targets(name).targets.values()
        ]

    def authorized_keys(self, role: str) -> dict[str, Key]:
        """Keys whose signature counts for ``role`` (for root: old and new root)."""
        if role == Root.type:
            keys = _role_keys(self.root(), Root.type)
            previous = self.previous_root()
            if previous is not None:
                keys |= _role_keys(previous, Root.type)
            return keys
        delegator = self.delegation_of(role).delegator
        try:
            entry = delegator.get_delegated_role(role)
        except ValueError:
            raise SignerError(f"role {role!r} is not delegated") from None
        return {keyid: delegator.get_key(keyid) for keyid in entry.keyids}

    def signature_status(self, role: str) -> list[tuple[str, VerificationResult]]:
        """How far ``role``'s signatures are from its threshold(s).

        One part per threshold that applies: a root after the first needs the
        previous root's threshold and its own; every other role its
        delegator's.
        """
        md = self.open(role)
        if role == Root.type:
            previous = self.previous_root()
            result = md.signed.get_root_verification_result(
                previous, md.signed_bytes, md.signatures
            )
            if previous is None:
                return [("root", result.second)]
            return [("previous root", result.first), ("new root", result.second)]
        delegator = self.delegation_of(role)
        verification = delegator.delegator.get_verification_result(
            role, md.signed_bytes, md.signatures
        )
        return [(delegator.delegator_name or "root", verification)]

    def kept_version(self, role: str) -> Metadata[Any] | None:
        """The newest version of ``role`` the directory keeps in a versioned file, if any."""
        versions = self._kept_versions().get(role)
        if not versions:
            return None
        file = layout.versioned_role_file(self.path, role, versions[-1])
        try:
            kept = load_metadata(file.read_bytes(), expected_type=role_type(role))
        except RepositoryError as exc:
            raise SignerError(f"{file}: {exc}") from None
        if kept.signed.version != versions[-1]:
            raise SignerError(f"{file} holds version {kept.signed.version}: the file was altered")
        return kept

    def _kept_versions(self) -> dict[str, list[int]]:
        """{role: kept versions, sorted}, read once per commit (one directory listing)."""
        if self._versioned is None:
            self._versioned = layout.versioned_roles(self.path)
        return self._versioned

    def previous_root(self) -> Root | None:
        """The root version before the current one, if any."""
        return self._root_version(self.root().version - 1)

    def _root_version(self, version: int) -> Root | None:
        file = layout.root_version_file(self.path, version)
        if version < 1 or not file.is_file():
            return None
        signed = load_metadata(file.read_bytes(), expected_type=Root.type).signed
        return signed if isinstance(signed, Root) else None

    def role_names(self) -> Iterator[str]:
        """Every role that has a file, top-level first."""
        names = set(self._loaded)
        for file in layout.metadata_dir(self.path).glob("*.json"):
            if not layout.is_versioned_file(file.name):
                names.add(file.name[: -len(".json")])
        yield from (role for role in ("root", "targets") if role in names)
        yield from sorted(names - {"root", "targets", "snapshot", "timestamp"})

    # -- signing -----------------------------------------------------------

    def session_keys_for(self, role: str) -> list[str]:
        """Key ids of this session's signers that ``role`` authorizes."""
        allowed = self.authorized_keys(role)
        return [keyid for keyid in self._signers if keyid in allowed]

    def check_signable(self, role: str) -> None:
        """Refuse to sign ``role`` where ``verify`` would refuse it (before any signature).

        The same rules ``commit`` applies, so a rewound role is refused before
        an engineer's key signs it, not merely before it is written.
        """
        md = self.open(role)
        try:
            self._check(role, md)
        except SignerError as exc:
            hint = self._rewound_hint(role, "signing")
            raise SignerError(f"refusing to sign {role}: {exc.args[0]}{hint}") from None

    def _rewound_hint(self, role: str, before: str) -> str:
        """What to do when ``role`` is refused because it is behind its kept version."""
        kept = self.rewound_from(role)
        if kept is None:
            return ""
        return (
            f"; this repository keeps {role} v{kept}"
            f" ({layout.versioned_role_file(self.path, role, kept).name}):"
            f" {layout.role_file(self.path, role).name} was rewound, restore the newest"
            f" version before {before}"
        )

    def keys_to_sign(self, role: str) -> list[str]:
        """Key ids of this session's signers that ``role`` authorizes and lacks."""
        md = self.open(role)
        allowed = self.authorized_keys(role)
        return [
            keyid
            for keyid in self._signers
            if keyid in allowed and not _has_valid_signature(md, allowed[keyid])
        ]

    def sign_available(self, role: str) -> list[str]:
        """Sign ``role`` with each session key it authorizes; return key ids used."""
        md = self.open(role)
        allowed = self.authorized_keys(role)
        used = self.keys_to_sign(role)
        for keyid in used:
            self._sign_and_check(role, md, self._signers[keyid], allowed[keyid])
        if used:
            self._mark_dirty(role)
        return used

    def _sign_and_check(self, role: str, md: Metadata[Any], signer: Signer, key: Key) -> None:
        # tuf-on-ci's habit: a signature is verified with the expected public
        # key the moment it is made, so a misconfigured token fails here.
        try:
            signature = md.sign(signer, append=True)
        except UnsignedMetadataError as exc:
            # The token's own refusal (wrong PIN, locked, R47 purpose): say it.
            cause = exc.__cause__ or exc
            raise SignerError(f"{role}: key {key.keyid[:12]} did not sign: {cause}") from None
        try:
            key.verify_signature(signature, md.signed_bytes)
        except UnverifiedSignatureError:
            del md.signatures[signature.keyid]
            raise SignerError(
                f"the signature just made for {role} by key {key.keyid[:12]} does not verify;"
                " check that the key URI points at the right token and key"
            ) from None

    # -- writing -----------------------------------------------------------

    def _mark_dirty(self, role: str) -> None:
        if role not in self._dirty:
            self._dirty.append(role)

    def commit(self) -> list[str]:
        """Check every changed role, then write them all at once, keeping what is signed.

        A kept version is renamed into place before the role's own file, so
        a crash between the two leaves the role behind its kept version
        (refused as rewound), never a signed version that is not kept.
        """
        checked = {role: self._checked_bytes(role) for role in self._dirty}
        self._check_repository()
        payloads = [
            (role, checked[role] if role in checked else self._checked_bytes(role))
            for role in self._dirty
        ]
        kept = {r: self._loaded[r].signed.version for r in self._dirty if self._keeps(r)}
        stale = self._superseded(kept)
        with FileBatch() as batch:
            if self._new_policy:
                batch.add(layout.policy_file(self.path), self.policy.dumps().encode())
            for role, data in payloads:
                if role in kept:
                    batch.add(layout.versioned_role_file(self.path, role, kept[role]), data)
                batch.add(layout.role_file(self.path, role), data)
        _remove(stale)
        self._kept_here.update(kept)
        written = list(self._dirty)
        self._dirty.clear()
        self._versioned = None
        return written

    def _keeps(self, role: str) -> bool:
        """Whether ``role`` is also written as ``N.<role>.json``: root always, others if signed."""
        return role == Root.type or bool(self._loaded[role].signatures)

    def _superseded(self, kept: dict[str, int]) -> list[Path]:
        """Older kept versions of the non-root roles in ``kept``: only the newest is kept.

        A product line with hashed bins has thousands of roles, so each keeps
        one signed version; root keeps its chain, which every device walks.
        """
        return [
            layout.versioned_role_file(self.path, role, old)
            for role, version in kept.items()
            if role != Root.type
            for old in self._kept_versions().get(role, [])
            if old < version
        ]

    def _checked_bytes(self, role: str) -> bytes:
        data = self._loaded[role].to_bytes(_SERIALIZER)
        try:
            proposed = load_metadata(data, expected_type=role_type(role))
        except RepositoryError as exc:
            raise SignerError(f"refusing to write {role}: {exc}") from None
        try:
            self._check(role, proposed)
        except SignerError as exc:
            hint = self._rewound_hint(role, "editing")
            raise SignerError(f"refusing to write {role}: {exc.args[0]}{hint}") from None
        return data

    def _check(self, role: str, proposed: Metadata[Any]) -> None:
        """``check_proposed`` (the server's rules but signatures) against what is trusted here."""
        try:
            check_proposed(
                proposed,
                role=role,
                trusted_version=self._trusted_version(role),
                delegator=self._delegator_for_check(role, proposed.signed),
                now=self.now,
                ancestor_patterns=self.delegation_of(role).ancestor_patterns,
            )
        except RepositoryError as exc:
            raise SignerError(str(exc)) from None

    def _check_repository(self) -> None:
        """The whole-repository rules (``repo_metadata.repository_check``), as the server's.

        A commit is a draft: a role it leaves out that no longer meets its
        delegator's threshold (a rotation, a revoked key) is not refused. The
        commit starts a new version of it instead, signed by this session's
        keys that the new delegation lists, and names it in ``to_resign``.

        Why a new version, not new signatures on the old one: that version
        is (or may be) published, and the server keeps the first content it
        publishes under a version number (TUF: one version, one content;
        devices and mirrors cache by it), so ``fwsign publish``, which sends
        what is newer than the server's, would never send it again, and the
        server would refuse the delegator without it (``delegation-broken``).
        A new version is what ``fwsign sign`` then signs and ``publish`` sends.
        """
        result = self._repository_check()
        self.to_resign = result.to_resign
        if not result.to_resign:
            return
        for role, _reason in result.to_resign:
            with self.edit(role):
                pass  # close(): a new version if the old one was signed; sign what we can
        self._repository_check()  # the re-started roles are part of the change now

    def _repository_check(self) -> RepositoryCheck:
        try:
            return check_repository(
                {role: self._loaded[role] for role in self._dirty},
                before=self._before,
                after=lambda role: self.open(role) if self.exists(role) else None,
                completeness=Completeness.DRAFT,
            )
        except RepositoryError as exc:
            raise SignerError(f"refusing to write: {exc}") from None

    def _before(self, role: str) -> Metadata[Any] | None:
        """``role`` as the directory holds it before this commit (None: a new role)."""
        if role not in self._dirty:
            return self.open(role) if self.exists(role) else None
        file = layout.role_file(self.path, role)
        if not file.is_file():
            return None
        return load_metadata(file.read_bytes(), expected_type=role_type(role))

    def _trusted_version(self, role: str) -> int | None:
        """The signed version the role's content must go beyond, if any.

        The version on disk once this session started a new one; for root,
        its predecessor (an amended root still follows it); and the kept
        version it is rewound from (``rewound_from``).
        """
        disk = self._on_disk.get(role)
        if disk is not None and role in self._bumped:
            trusted: int | None = disk[0]
        elif role == Root.type and self.root().version > 1:
            trusted = self.root().version - 1  # an amended root still follows its predecessor
        else:
            trusted = None
        kept = self.rewound_from(role)
        return trusted if kept is None or (trusted is not None and trusted > kept) else kept

    def rewound_from(self, role: str) -> int | None:
        """The kept version ``role`` is rewound from: None unless ``role`` is not beyond it.

        A role newer than every kept version is not read against them; one at
        the kept version with the same signed bytes is that version (a
        co-signature). A role this session already wrote is amended in place
        (one new version per session), replacing its own kept version, as does
        a root this session amends (``_starts_new_version``); the version and
        root chain rules of ``_trusted_version`` still apply.
        """
        if role in self._kept_here or (role == Root.type and role in self._edited):
            return None
        current = self.open(role)
        versions = self._kept_versions().get(role)
        if not versions or versions[-1] < current.signed.version:
            return None
        file = layout.versioned_role_file(self.path, role, versions[-1])
        if role not in self._edited and self._read_digest.get(role) == _sha256(file):
            return None  # the role file as read is its kept copy: nothing to parse
        kept = self.kept_version(role)
        if kept is None or kept.signed_bytes == current.signed_bytes:
            return None
        return int(kept.signed.version)

    def _delegator_for_check(self, role: str, signed: Signed) -> Root | Targets:
        if role == Root.type and isinstance(signed, Root):
            return self.previous_root() or signed
        return self.delegation_of(role).delegator


def _sha256(file: Path) -> bytes:
    return hashlib.sha256(file.read_bytes()).digest()


def _remove(files: list[Path]) -> None:
    """Delete superseded kept files, once what replaces them is durable.

    The removal itself needs no sync: one lost in a crash leaves two kept
    versions, and the next write of the role removes the older again.
    """
    for file in files:
        file.unlink(missing_ok=True)


def _succinct(signed: Root | Targets) -> SuccinctRoles | None:
    if not isinstance(signed, Targets) or signed.delegations is None:
        return None
    return signed.delegations.succinct_roles


def _has_valid_signature(md: Metadata[Any], key: Key) -> bool:
    """Whether ``md`` already carries a good signature by ``key`` (nothing to redo)."""
    signature = md.signatures.get(key.keyid)
    if signature is None:
        return False
    try:
        key.verify_signature(signature, md.signed_bytes)
    except UnverifiedSignatureError:
        return False
    return True


def _role_keys(root: Root, role: str) -> dict[str, Key]:
    return {keyid: root.get_key(keyid) for keyid in root.roles[role].keyids}


def _new_metadata(role: str, now: datetime) -> Metadata[Any]:
    if role == Root.type:
        return Metadata(Root(expires=now, consistent_snapshot=True))
    if role in TOP_LEVEL_ROLES - {Targets.type}:
        raise SignerError(f"{role} is an online role: the update server writes it")
    return Metadata(Targets(expires=now))


def _load_policy(path: Path) -> Policy:
    file = layout.policy_file(path)
    if not file.is_file():
        return Policy()
    try:
        return Policy.from_json(parse_json_strict(file.read_bytes()))
    except RepositoryError as exc:
        raise SignerError(f"{file}: {exc}") from None
