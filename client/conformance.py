"""The TUF community's client conformance protocol, over the device client's own code.

tuf-conformance (``CLIENT-CLI.md`` in theupdateframework/tuf-conformance)
drives a client through three commands, options before the command::

    fwclient-conformance --metadata-dir D init ROOT_FILE
    fwclient-conformance --metadata-url U --metadata-dir D refresh
    fwclient-conformance --metadata-url U --metadata-dir D --target-name P
        [--target-name P2 ...] --target-dir T --target-base-url TU download

What runs is a device's session (``client.update``) with two parts left out,
firmware selection (the install policy) and slot writing:

* C1, the network: ``PooledFetcher``, the device's wire code with its pace
  checks (TUF slow retrieval), through the session's ``_SessionFetcher``
  (``timestamp.json`` once per session, the root probe's "not found" noted).
  Its one difference from the device's ``HttpsFetcher`` is which URLs it may
  request: plain ``http://`` to a loopback address (``127.0.0.1``, ``::1``)
  and nothing else, checked before any connection and, for the URLs given,
  before anything runs. Only this entry point may speak plain HTTP; every
  production path keeps refusing it.
* C2, the refresh: ``update.refresh_metadata``, as every device session
  runs it: ngclient anchored in the bytes of ``D/root.json`` (no trust on
  first use; newer roots enter only through verified rotation, spec 5.3),
  then every top-level expiry checked again at the trusted time, then the
  time floor raised to it. The trusted time is the device's own
  (``update.session_time``): the clock, or the time floor
  (``D/fwclient/time_floor.json``) when the clock is behind it, so a clock
  set back cannot revive expired metadata; with no floor recorded, the
  client's build time; a damaged floor rebuilt and logged
  (``integrity_failure`` in ``D/fwclient/``'s event log), never a stop.
* C3, a download: for each target, the discovery walk over every role that
  may sign a path in the target's directory (as over a hardware model's
  prefix), then ngclient's own lookup (``get_targetinfo``), which the
  evidence walk (``discovery.signing_roles``) must repeat over the verified
  cache. The target is then fetched through the fetcher at the URL the
  device uses (``update.target_url``), cut off past its signed length,
  verified against its signed length and hashes, and only then written.
  The device instead streams into its inactive slot and verifies on commit
  (docs/adr/0002).
* C4, the protocol: the exit status is 0 on success and 1 on any failure,
  usage errors included. ``D`` holds the trusted metadata as ``<role>.json``,
  the bytes exactly as served, delegated role names percent-encoded;
  anything else lives in a subdirectory (ngclient's ``root_history/``, this
  client's ``fwclient/``). A target lands in ``T`` under its percent-encoded
  path; a local copy that matches the trusted hashes is not fetched again;
  ``download`` stops at the first target that fails.

Not reachable here: the idle poll of a long-running client (docs/adr/0001),
since every command is a new process with nothing remembered. Where this
client departs from the TUF client workflow on purpose, ``docs/adr/`` says
why, and ``client/conformance.xfails`` names the suite's tests that fail
only for that reason.

This module is self-contained on purpose (argparse, not click): it is what
an auditor runs against the client as shipped, and a usage error must exit
with status 1, not click's or argparse's 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit

import urllib3
from tuf.api.exceptions import DownloadError, DownloadLengthMismatchError, RepositoryError
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.ngclient import Updater

from client import discovery
from client.errors import ClientError, ProvisioningError
from client.fetcher import Pace, PooledFetcher
from client.state import StateDir
from client.update import Remote, refresh_metadata, session_time, target_url
from fwcommon.files import atomic_write

logger = logging.getLogger(__name__)

PROG = "fwclient-conformance"
TRUSTED_ROOT = "root.json"
#: This client's own records in the metadata directory (the time floor).
PRIVATE_DIR = "fwclient"
#: Seconds to connect, and the longest wait for the next bytes.
TIMEOUT = 30.0
EXIT_OK = 0
EXIT_FAILURE = 1

#: Failures a command can meet; each becomes exit status 1 with its message.
#: urllib3's errors reach us when a connection fails (ngclient wraps only
#: HTTP statuses and timeouts).
FAILURES = (ClientError, RepositoryError, DownloadError, urllib3.exceptions.HTTPError, OSError)


def loopback_http_refusal(url: str) -> str | None:
    """Why ``url`` may not be fetched here, or ``None`` for plain HTTP to a loopback address.

    Only address literals count: a name such as ``localhost`` is resolved
    after this check, so it could lead anywhere.
    """
    parts = urlsplit(url)
    try:
        loopback = ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and loopback:
        return None
    return (
        f"refusing {url}: {PROG} fetches over plain HTTP from a loopback address only"
        " (127.0.0.1 or ::1, not a name), for a test repository on this machine;"
        " a device reaches its update server with fwclient, over HTTPS"
    )


class LoopbackHttpFetcher(PooledFetcher):
    """The device's fetcher and pace checks, allowed plain HTTP to loopback and nothing else."""

    def __init__(self, *, pace: Pace) -> None:
        super().__init__(ca_certs=None, timeout=TIMEOUT, pace=pace, user_agent=PROG)

    def _check_url(self, url: str) -> None:
        refusal = loopback_http_refusal(url)
        if refusal is not None:
            raise DownloadError(refusal)


class _ParserExitError(Exception):
    """argparse wanted to end the process; ``main`` returns the status instead."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors exit 1 (never 2) through ``main``."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExitError(status)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_FAILURE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="TUF conformance client (tuf-conformance protocol).")
    parser.add_argument("--metadata-dir", type=Path, required=True, help="trusted metadata")
    parser.add_argument("--metadata-url", help="base URL of the repository's metadata")
    parser.add_argument(
        "--target-name", action="append", default=[], help="target path (repeatable, in order)"
    )
    parser.add_argument("--target-dir", type=Path, help="where verified targets are stored")
    parser.add_argument("--target-base-url", help="base URL of the repository's targets")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init_parser = commands.add_parser("init", help="trust ROOT_FILE (no network)")
    init_parser.add_argument("root_file", type=Path, metavar="ROOT_FILE")
    commands.add_parser("refresh", help="update the top-level metadata")
    commands.add_parser("download", help="refresh, then fetch and verify each target")
    return parser


def init(*, metadata_dir: Path, root_file: Path) -> None:
    """Make ``root_file`` the trust anchor of ``metadata_dir``, byte for byte.

    The root is only parsed here: its signatures are verified by ngclient on
    every later use, as for any root it is given.
    """
    data = root_file.read_bytes()
    try:
        root = Metadata[Root].from_bytes(data)
    except (RepositoryError, ValueError) as error:
        raise ProvisioningError(f"{root_file} is not TUF metadata: {error}") from error
    if not isinstance(root.signed, Root):
        raise ProvisioningError(f"{root_file} is {root.signed.type} metadata, not root")
    # Replaces a previous root.json (even ngclient's link) rather than writing through it.
    atomic_write(metadata_dir / TRUSTED_ROOT, data)


def remote_for(metadata_url: str, *, pace: Pace) -> Remote:
    """The device's ``Remote`` for a repository whose metadata is at ``metadata_url``.

    The device finds metadata at ``<server>/metadata/`` and targets at
    ``<server>/targets/`` (``Remote``); the suite's repositories are laid out
    the same way.
    """
    refusal = loopback_http_refusal(metadata_url)
    if refusal is not None:
        raise ClientError(refusal)
    server = metadata_url.rstrip("/").removesuffix("/metadata")
    if server == metadata_url.rstrip("/"):
        raise ClientError(f"--metadata-url {metadata_url}: expected <server>/metadata/")
    return Remote(server, LoopbackHttpFetcher(pace=pace))


@dataclass(frozen=True)
class Session:
    """One refreshed session: the remote, ngclient, its cache and the trusted time."""

    remote: Remote
    updater: Updater
    cache: Path
    at: datetime


def refresh(*, metadata_dir: Path, remote: Remote) -> Session:
    """C2: the device's refresh, anchored in ``metadata_dir/root.json``, at the trusted time."""
    try:
        root = (metadata_dir / TRUSTED_ROOT).read_bytes()
    except FileNotFoundError:
        raise ProvisioningError(f"{metadata_dir} has no trusted root: run init first") from None
    floor = StateDir(metadata_dir / PRIVATE_DIR)
    clock = datetime.now(UTC)
    at = session_time(floor, clock=clock)
    if clock < at:
        logger.warning(
            "the clock reads %s, behind the time floor: expiries checked at %s", clock, at
        )
    updater, _ = refresh_metadata(remote, cache=metadata_dir, root=root, at=at, state=floor)
    return Session(remote, updater, metadata_dir, at)


def confirm(session: Session, path: str) -> TargetFile:
    """C3: walk the roles for ``path``'s directory, then ngclient's answer and the evidence's."""
    directory, slash, _ = path.rpartition("/")
    walked = discovery.walk(session.updater, session.cache, prefix=directory + slash, at=session.at)
    for role in walked:
        logger.debug("walked %s (version %d)", role.name, role.signed.version)
    found = session.updater.get_targetinfo(path)
    if found is None:
        raise ClientError(f"{path}: no such target in the trusted metadata")
    roles, target = discovery.signing_roles(session.cache, path, at=session.at)
    if target != found:
        raise ClientError(f"{path}: the evidence walk resolves it to another entry than ngclient")
    logger.info("%s: signed by %s", path, " -> ".join(role.name for role in roles))
    return target


def fetch_target(session: Session, target: TargetFile, destination: Path) -> None:
    """Fetch ``target`` where the device would, verify it, and only then write it."""
    root = discovery.read_top_level(session.cache, Root.type).signed
    url = target_url(session.remote, target, consistent_snapshot=root.consistent_snapshot)
    data = bytearray()
    for chunk in session.remote.fetcher.fetch_from(url, 0):
        data += chunk
        if len(data) > target.length:
            raise DownloadLengthMismatchError(f"{url}: more than the signed {target.length} bytes")
    target.verify_length_and_hashes(bytes(data))
    atomic_write(destination, bytes(data))


def download(session: Session, target_names: Sequence[str], target_dir: Path) -> None:
    """Fetch each target in order; the first failure stops the rest."""
    for name in target_names:
        target = confirm(session, name)
        destination = target_dir / quote(name, safe="")
        if session.updater.find_cached_target(target, str(destination)) is not None:
            logger.info("%s: already verified at %s", name, destination)
            continue
        fetch_target(session, target, destination)
        logger.info("%s: downloaded to %s", name, destination)


def run(args: argparse.Namespace, *, pace: Pace) -> None:
    """Run the parsed command; raises one of ``FAILURES`` when it fails."""
    if args.command == "init":
        init(metadata_dir=args.metadata_dir, root_file=args.root_file)
        return
    if not args.metadata_url:
        raise ClientError(f"{args.command} needs --metadata-url")
    remote = remote_for(args.metadata_url, pace=pace)
    if args.command == "download":
        _check_download_args(args, remote)
    session = refresh(metadata_dir=args.metadata_dir, remote=remote)
    if args.command == "download":
        download(session, args.target_name, args.target_dir)


def _check_download_args(args: argparse.Namespace, remote: Remote) -> None:
    missing = [
        option
        for option, value in (
            ("--target-name", args.target_name),
            ("--target-dir", args.target_dir),
            ("--target-base-url", args.target_base_url),
        )
        if not value
    ]
    if missing:
        raise ClientError(f"download needs {', '.join(missing)}")
    refusal = loopback_http_refusal(args.target_base_url)
    if refusal is not None:
        raise ClientError(refusal)
    if args.target_base_url.rstrip("/") + "/" != remote.targets_url:
        raise ClientError(
            f"--target-base-url {args.target_base_url}: the device fetches targets"
            f" from {remote.targets_url}, beside the metadata"
        )


def _describe(error: BaseException) -> str:
    """The error's message, or its type and cause when it has none (``SlowRetrievalError``)."""
    if str(error):
        return str(error)
    cause = error.__cause__ or error.__context__
    return type(error).__name__ + (f" ({_describe(cause)})" if cause else "")


def main(argv: Sequence[str] | None = None, *, pace: Pace | None = None) -> int:
    """Entry point: 0 when the command succeeded, 1 for any failure.

    ``pace`` is the slowest stream accepted (the device's ``Pace()`` unless given).
    """
    try:
        args = build_parser().parse_args(argv)
    except _ParserExitError as exit_:
        return EXIT_OK if exit_.status == EXIT_OK else EXIT_FAILURE
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), stream=sys.stderr)
    try:
        run(args, pace=pace or Pace())
    except FAILURES as error:
        sys.stderr.write(f"{PROG}: {args.command} failed: {_describe(error)}\n")
        return EXIT_FAILURE
    except Exception as error:  # the protocol: any failure is status 1
        logger.debug("unexpected failure", exc_info=True)
        sys.stderr.write(f"{PROG}: {args.command} failed unexpectedly: {error!r}\n")
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
