"""An update from a bundle on removable media: the bundle as the session's network (R46).

``fwclient update --bundle FILE`` runs ``client.update.update``, the same
refresh, policy and install as an online update, through ``BundleFetcher``:
a ``ResumableFetcher`` that answers each URL the session asks for with the
bundle member of the same name (``fwcommon.bundle``: members mirror the
repository's layout under its base URL). Rules:

- S1 No network. The session's repository is ``BUNDLE_URL``, a name under
  ``.invalid`` (RFC 6761: it never resolves), and the fetcher has no
  network code: a URL is only ever looked up among the bundle's members.
- S2 A URL with no member of its name is "not found": a
  ``MissingMemberError``, which is ngclient's 404 (so a root version the
  bundle does not carry is the end of the root chain, TUF 5.3.4) and the
  client's refusal naming the member (any other file the session needs: the
  update stops, nothing installed).
- S3 The bundle is opened by ``fwcommon.bundle.Bundle.open``: its size is
  checked against the bound before anything is read, every member's name
  and type before any is used (no link, no device file, no path out of the
  repository's layout); nothing is extracted, nothing executed. The
  firmware streams from its member into the inactive slot through the
  download path every update takes, checked there against its signed
  length and SHA-256. Any ``BundleError`` refuses the bundle with its
  reason, before the state directory is touched.
- S4 The manifest is read first and refuses a bundle for another model or
  device (``client.offline`` O7), or whose root chain starts after a root
  version this device does not trust yet (it would end in a bad signature),
  before any other member is read. Its
  ``release`` narrows the choice to that target, with the SHA-256 its
  member's name carries (consistent snapshots): advice, checked by policy
  rule 8 like a server's assignment.
- S5 The bundle's ``authorization.json``, when present, is one more
  document for policy rule 5, exactly like one handed over with
  ``--authorization`` (bounded, parsed, trusted only if it verifies).
- S6 What waits online fails offline: a release that needs an
  authorization the bundle does not carry, or an intermediate release
  first, is a refusal (the result, not the log: the event is the online
  one), since nothing more will arrive; the technician needs another bundle.

Freshness (the bundle's metadata may have expired) is ``client.offline``'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization import DeserializationError

from client import authorizations as authorization_files
from client.directive import Assignment, Directive, Install, Selection, ServerMode
from client.errors import ClientError
from client.events import EventType
from client.fetcher import BLOCK, ResumableFetcher
from client.offline import Offline, check_manifest, check_root_chain, session_max_age
from client.readiness import Guard
from client.state import StateDir
from client.update import DEFAULT_TRIES, Outcome, Remote, UpdateResult, update
from fwcommon.bundle import AUTHORIZATION, DEFAULT_MAX_BYTES, Bundle, BundleError, Manifest
from repo_metadata.authorization import AuthorizationError, SignedAuthorization

#: S1: the repository an offline session asks; never resolved (RFC 6761 ``.invalid``).
BUNDLE_URL = "https://bundle.invalid"
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}\.")
#: The label of an assignment made from a manifest (policy rule 8 reads the signed version).
_LABEL = "from the bundle"


class BundleRefusedError(ClientError):
    """S3: the bundle cannot be used as it is; the message says what is wrong."""


class MissingMemberError(DownloadHTTPError, ClientError):
    """S2: the bundle has no member for a URL: ngclient's 404, the client's refusal."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class BundleFetcher(ResumableFetcher):
    """S1, S2: ngclient's network for an offline session: the bundle's members by URL."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self._bundle = bundle
        self._names = frozenset(bundle.names())

    def member(self, url: str) -> str:
        """The member ``url`` names (``MissingMemberError`` when the bundle has none)."""
        prefix = f"{BUNDLE_URL}/"
        name = url.removeprefix(prefix) if url.startswith(prefix) else None
        if name is None or name not in self._names:
            raise MissingMemberError(_missing(url.removeprefix(prefix)))
        return name

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        # The lookup runs now, before the first byte: a missing member raises here.
        # A read that fails later (a failing medium) is the download's error.
        return _chunks(self._bundle.open_member(self.member(url)), offset)


def _chunks(stream: BinaryIO, offset: int) -> Iterator[bytes]:
    """The member's bytes from ``offset`` on (a resumed download skips what it holds)."""
    with stream:
        while offset > 0 and (skipped := len(stream.read(min(offset, BLOCK)))):
            offset -= skipped
        while chunk := stream.read(BLOCK):
            yield chunk


def _missing(name: str) -> str:
    if name.startswith("metadata/") and name.endswith(".root.json"):
        return f"{name}: not in the bundle (no newer root)"
    return (
        f"the bundle does not carry {name}, which this device needs: nothing was installed;"
        " make the bundle again for this device (its model, the release it runs, and the"
        " root version it trusts)"
    )


@dataclass(frozen=True)
class BundleSession:
    """What ``client.update.update`` takes for one offline session over an open bundle."""

    remote: Remote
    directive: Directive
    authorizations: tuple[SignedAuthorization, ...]
    offline: Offline


def open_bundle(path: Path, *, max_bytes: int) -> Bundle:
    """S3: the bundle at ``path``, checked by the reader (``BundleRefusedError`` otherwise)."""
    try:
        return Bundle.open(path, max_bytes=max_bytes)
    except BundleError as exc:
        said = str(exc)  # the reader names the file when the file itself is refused
        raise BundleRefusedError(said if str(path) in said else f"{path}: {said}") from None
    except OSError as exc:
        raise BundleRefusedError(f"cannot read the bundle {path}: {exc.strerror}") from None


def prepare(bundle: Bundle, state: StateDir, *, max_age: timedelta, name: str) -> BundleSession:
    """S4, S5: the session's network, directive, documents and freshness, from ``bundle``."""
    manifest = bundle.manifest
    identity = state.identity()
    check_manifest(
        model=manifest.hardware_model,
        device=manifest.device,
        hardware_model=identity.hardware_model,
        device_id=identity.device_id,
    )
    check_root_chain(root_from=manifest.root_from, trusted=_trusted_root_version(state))
    source: dict[str, Any] = {
        "bundle": name,
        "bundle_created": manifest.created.isoformat(),
        "bundle_release": manifest.release,
        "bundle_device": manifest.device,
    }
    return BundleSession(
        remote=Remote(BUNDLE_URL, BundleFetcher(bundle)),
        directive=Directive(ServerMode.NORMAL, _selection(bundle, manifest)),
        authorizations=_authorizations(bundle),
        offline=Offline(max_age=max_age, source=source),
    )


def _trusted_root_version(state: StateDir) -> int:
    """The newest root this device verified (the cache's), else the provisioned one's.

    Only for S4's refusal: a wrong answer refuses a bundle, never accepts one
    (ngclient verifies the chain from the provisioned root either way).
    """
    try:
        return _root_version(state.metadata_dir / "root.json")
    except (OSError, DeserializationError):
        return _root_version(state.trusted_root)


def _root_version(path: Path) -> int:
    return int(Metadata[Root].from_bytes(path.read_bytes()).signed.version)


def _selection(bundle: Bundle, manifest: Manifest) -> Selection:
    """S4: the manifest's release as an assignment (advice, policy rule 8); else the newest."""
    release = manifest.release
    if release is None:
        return Selection(Install.NEWEST)
    directory, slash, file_name = release.rpartition("/")
    prefix = f"targets/{directory}{slash}"
    for member in bundle.names():
        rest = member.removeprefix(prefix)
        if (
            member.startswith(prefix)
            and _SHA256_NAME.match(rest)
            and rest[65:] == file_name
            and "/" not in rest
        ):
            return Selection(Install.ASSIGNED, Assignment(None, release, rest[:64], _LABEL))
    raise BundleRefusedError(
        f"the bundle names the release {release} but does not carry its firmware:"
        " nothing was installed; make the bundle again"
    )


def _authorizations(bundle: Bundle) -> tuple[SignedAuthorization, ...]:
    """S5: the bundle's technician authorization, if it carries one (a candidate only)."""
    if AUTHORIZATION not in bundle.names():
        return ()
    try:
        data = bundle.read(AUTHORIZATION, limit=authorization_files.MAX_FILE)
        return (SignedAuthorization.from_bytes(data),)
    except BundleError as exc:
        raise BundleRefusedError(f"{AUTHORIZATION}: {exc}") from None
    except AuthorizationError as exc:
        raise BundleRefusedError(
            f"the bundle's {AUTHORIZATION} is not a valid authorization: {exc}; nothing was"
            " installed",
            event=EventType.AUTHORIZATION_MALFORMED,
        ) from None


def update_from_bundle(
    state: StateDir,
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_age: timedelta | None = None,
    recovery: bool = False,
    tries: int = DEFAULT_TRIES,
    guard: Guard | None = None,
    authorizations: Sequence[SignedAuthorization] = (),
) -> UpdateResult:
    """``fwclient update --bundle``: one offline session over the bundle at ``path``.

    A bundle refused before the session (S3, S4, S5) raises a ``ClientError``
    and changes nothing; from the session on, the result and the event log
    say what happened, as for an online update. ``authorizations`` are
    documents handed over besides the bundle's (``--authorization FILE``).
    ``max_age`` narrows the device's setting for this session (None: the
    setting); a longer one is ``WiderMaxAgeError``, before the bundle is read
    (``client.offline`` O3).
    """
    state.require_provisioned()
    bound = session_max_age(setting=state.identity().offline_max_age, requested=max_age)
    with open_bundle(path, max_bytes=max_bytes) as bundle:
        session = prepare(bundle, state, max_age=bound, name=path.name)
        result = update(
            state,
            session.remote,
            directive=session.directive,
            recovery=recovery,
            tries=tries,
            guard=guard,
            authorizations=(*authorizations, *session.authorizations),
            offline=session.offline,
        )
    if result.outcome is not Outcome.WAITING:
        return result
    return replace(  # S6
        result,
        outcome=Outcome.REFUSED,
        message=f"{result.message}; nothing was installed: bring a bundle that carries what"
        " this release needs",
    )
