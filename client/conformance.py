"""The TUF community's client conformance protocol, over a stock ngclient.

tuf-conformance (``CLIENT-CLI.md`` in theupdateframework/tuf-conformance)
drives a client through three commands, options before the command::

    fwclient-conformance --metadata-dir D init ROOT_FILE
    fwclient-conformance --metadata-url U --metadata-dir D refresh
    fwclient-conformance --metadata-url U --metadata-dir D --target-name P
        [--target-name P2 ...] --target-dir T --target-base-url TU download

Invariants:

* The exit status is 0 on success and 1 on any failure, usage errors
  included: the suite reads any other status as a broken client.
* ``D`` is the trust store. ``init`` copies the given root into ``D/root.json``
  and makes no request; ``refresh`` and ``download`` start from the bytes of
  ``D/root.json`` and fail without them (no trust on first use). Newer roots
  enter only through ngclient's verified root rotation (spec 5.3).
* ``D`` holds the trusted metadata as ``<role>.json``, the bytes exactly as
  served, delegated role names percent-encoded. Anything else ngclient keeps
  lives in a subdirectory (``D/root_history/``, of which ``D/root.json`` is a
  link to the newest version).
* A target is verified against the trusted length and hashes before it is
  written, and lands in ``T`` under its percent-encoded target path, so the
  same target always has the same file name. A local copy that matches the
  trusted hashes is not fetched again. ``download`` stops at the first target
  that fails and leaves the ones before it in place.

This module is self-contained on purpose (argparse, not click): it is what
an auditor runs against the client as shipped, and a usage error must exit
with status 1, not click's or argparse's 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import urllib3
from tuf.api.exceptions import DownloadError, RepositoryError
from tuf.api.metadata import Metadata, Root
from tuf.ngclient import Updater

from client.errors import ClientError, ProvisioningError
from repo_metadata.files import atomic_write

logger = logging.getLogger(__name__)

PROG = "fwclient-conformance"
TRUSTED_ROOT = "root.json"
EXIT_OK = 0
EXIT_FAILURE = 1

#: Failures a command can meet; each becomes exit status 1 with its message.
#: urllib3's errors reach us when a connection fails (ngclient wraps only
#: HTTP statuses and timeouts).
FAILURES = (ClientError, RepositoryError, DownloadError, urllib3.exceptions.HTTPError, OSError)


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


def open_updater(
    *,
    metadata_dir: Path,
    metadata_url: str,
    target_dir: Path | None = None,
    target_base_url: str | None = None,
) -> Updater:
    """An ngclient ``Updater`` anchored in ``metadata_dir/root.json`` (plain HTTP allowed)."""
    try:
        root = (metadata_dir / TRUSTED_ROOT).read_bytes()
    except FileNotFoundError:
        raise ProvisioningError(f"{metadata_dir} has no trusted root: run init first") from None
    return Updater(
        metadata_dir=str(metadata_dir),
        metadata_base_url=metadata_url,
        target_dir=None if target_dir is None else str(target_dir),
        target_base_url=target_base_url,
        bootstrap=root,
    )


def download(updater: Updater, target_names: Sequence[str]) -> None:
    """Refresh, then fetch each target in order; the first failure stops the rest."""
    updater.refresh()
    for name in target_names:
        info = updater.get_targetinfo(name)
        if info is None:
            raise ClientError(f"{name}: no such target in the trusted metadata")
        cached = updater.find_cached_target(info)
        if cached is None:
            logger.info("%s: downloaded to %s", name, updater.download_target(info))
        else:
            logger.info("%s: already verified at %s", name, cached)


def run(args: argparse.Namespace) -> None:
    """Run the parsed command; raises one of ``FAILURES`` when it fails."""
    if args.command == "init":
        init(metadata_dir=args.metadata_dir, root_file=args.root_file)
        return
    if not args.metadata_url:
        raise ClientError(f"{args.command} needs --metadata-url")
    if args.command == "refresh":
        open_updater(metadata_dir=args.metadata_dir, metadata_url=args.metadata_url).refresh()
        return
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
    updater = open_updater(
        metadata_dir=args.metadata_dir,
        metadata_url=args.metadata_url,
        target_dir=args.target_dir,
        target_base_url=args.target_base_url,
    )
    download(updater, args.target_name)


def _describe(error: BaseException) -> str:
    """The error's message, or its type and cause when it has none (``SlowRetrievalError``)."""
    if str(error):
        return str(error)
    cause = error.__cause__ or error.__context__
    return type(error).__name__ + (f" ({_describe(cause)})" if cause else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when the command succeeded, 1 for any failure."""
    try:
        args = build_parser().parse_args(argv)
    except _ParserExitError as exit_:
        return EXIT_OK if exit_.status == EXIT_OK else EXIT_FAILURE
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), stream=sys.stderr)
    try:
        run(args)
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
