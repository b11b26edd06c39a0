"""``fwsign``: the offline signing tool of release engineers and security officers.

Every command is thin: it parses options, opens the repository with the
session's signers, calls one function of ``signer``, and prints the result.
Errors become one line on stderr and exit status 1; nothing is written.
PINs are read from ``FWSIGN_PIN`` (automation) or prompted without echo;
they are never printed or logged.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from fwcommon import cli
from fwcommon.cli import ToolGroup
from hsm_mock.errors import HSMError
from repo_metadata.authorization import AuthorizationKeys
from repo_metadata.delta import delta_path
from repo_metadata.errors import RepositoryError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.policy import Policy
from signer import authoring, inspect, keyops, signing
from signer.account import account_group
from signer.audit_remote import audit_group
from signer.bundle_cli import bundle_command
from signer.errors import SignerError
from signer.keys import load_public_key, signer_from_uri
from signer.publish_cli import publish_command
from signer.repository import OfflineRepository

PIN_ENV = "FWSIGN_PIN"
_ERRORS = (SignerError, RepositoryError, HSMError, OSError)


def _pin_handler(uri: str) -> Callable[[str], str]:
    def ask(message: str) -> str:
        return cli.ask(f"{message} for {uri}", envvar=PIN_ENV)

    return ask


def _now() -> datetime:
    return datetime.now(UTC)


def _open(repo: Path, keys: Sequence[str] = ()) -> OfflineRepository:
    signers = [signer_from_uri(uri, _pin_handler(uri)) for uri in keys]
    return OfflineRepository(repo, now=_now(), signers=signers)


def _written(paths: Sequence[str]) -> None:
    click.echo(
        f"wrote {len(paths)} role(s): {', '.join(paths[:8])}{' ...' if len(paths) > 8 else ''}"
    )


repo_option = click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Repository directory.",
)
key_option = click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="URI",
    help=(
        f"Private key URI to sign with (fwhsm:... or hsm:...); repeatable. Its PIN is read"
        f" from env {PIN_ENV}, else prompted."
    ),
)


@click.group(cls=ToolGroup, tool="fwsign", errors=_ERRORS)
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr.")
def main(verbose: int) -> None:
    """Sign firmware releases offline into a TUF repository.

    A typical round: a security officer runs 'init', a release manager
    'delegate's a product line to its engineers, an engineer 'add's a
    firmware image, two engineers 'sign' in turn, and 'status' / 'verify'
    show what is ready to publish.
    """
    logging.basicConfig(level=logging.WARNING - 10 * verbose, stream=sys.stderr)


@main.command()
@repo_option
@click.option(
    "--root-key",
    "root_keys",
    multiple=True,
    required=True,
    metavar="REF",
    help="A root key: public key file or signer URI; repeat for each officer.",
)
@click.option("--root-threshold", type=int, help="Signatures root needs [policy: 2].")
@click.option(
    "--targets-key",
    "targets_keys",
    multiple=True,
    required=True,
    metavar="REF",
    help="A targets (release manager) key; repeatable.",
)
@click.option("--targets-threshold", type=int, help="Signatures targets needs [policy: 1].")
@click.option(
    "--snapshot-key", required=True, metavar="FILE", help="The server's online snapshot public key."
)
@click.option(
    "--timestamp-key",
    required=True,
    metavar="FILE",
    help="The server's online timestamp public key.",
)
@click.option(
    "--authorization-key",
    "authorization_keys",
    multiple=True,
    metavar="FILE",
    help="The server's authorization public key: technicians' authorizations it signs are"
    " trusted by devices (repeatable; fwsign authorization-keys changes them later).",
)
@click.option(
    "--expiry-days",
    "expiries",
    multiple=True,
    metavar="ROLE=DAYS",
    help="Override a role kind's lifetime (root, targets, delegation, ...).",
)
@key_option
def init(
    repo: Path,
    root_keys: tuple[str, ...],
    root_threshold: int | None,
    targets_keys: tuple[str, ...],
    targets_threshold: int | None,
    snapshot_key: str,
    timestamp_key: str,
    authorization_keys: tuple[str, ...],
    expiries: tuple[str, ...],
    keys: tuple[str, ...],
) -> None:
    """Create a repository: root and an empty targets, signed with --key."""
    policy = _policy(expiries, root_threshold, targets_threshold)
    signers = [signer_from_uri(uri, _pin_handler(uri)) for uri in keys]
    repository = OfflineRepository(repo, now=_now(), signers=signers, policy=policy, create=True)
    written = authoring.init_repository(
        repository,
        root=authoring.RoleKeys(
            [load_public_key(r) for r in root_keys], policy.for_role("root").threshold
        ),
        targets=authoring.RoleKeys(
            [load_public_key(r) for r in targets_keys], policy.for_role("targets").threshold
        ),
        snapshot=load_public_key(snapshot_key),
        timestamp=load_public_key(timestamp_key),
        authorization=[load_public_key(ref) for ref in authorization_keys],
    )
    _written(written)
    _print_status(inspect.status(OfflineRepository(repo, now=_now())))


def _policy(expiries: Sequence[str], root: int | None, targets: int | None) -> Policy:
    policy = (
        Policy().with_override("root", threshold=root).with_override("targets", threshold=targets)
    )
    for item in expiries:
        kind, sep, days = item.partition("=")
        if not sep or not days.replace(".", "", 1).isdigit():
            raise SignerError(f"--expiry-days {item!r}: expected ROLE=DAYS, e.g. timestamp=1")
        policy = policy.with_override(kind, expiry_days=float(days))
    return policy


@main.command()
@repo_option
@click.option("--name", required=True, help="Role name of the product line, e.g. pump-x100.")
@click.option("--path-prefix", required=True, help="Target path prefix it owns, e.g. pump-x100/.")
@click.option(
    "--engineer-key",
    "engineer_keys",
    multiple=True,
    required=True,
    metavar="REF",
    help="A release engineer's public key file or URI; repeatable.",
)
@click.option("--threshold", type=int, help="Signatures each release needs [policy: 2, R9].")
@click.option("--bin-bits", type=int, help="Spread releases over 2**N hashed bins (TAP 15).")
@click.option(
    "--expected-releases",
    type=int,
    help="Choose --bin-bits for this many releases (a few per bin).",
)
@key_option
def delegate(
    repo: Path,
    name: str,
    path_prefix: str,
    engineer_keys: tuple[str, ...],
    threshold: int | None,
    bin_bits: int | None,
    expected_releases: int | None,
    keys: tuple[str, ...],
) -> None:
    """Delegate a product line to its engineers (targets key signs, via --key)."""
    repository = _open(repo, keys)
    if expected_releases is not None:
        if bin_bits is not None:
            raise SignerError("give --bin-bits or --expected-releases, not both")
        bin_bits = authoring.bins_for(expected_releases)
    if threshold is None:  # only an absent option takes the policy's; 0 is refused below
        threshold = repository.policy.for_role(name).threshold
    role_keys = authoring.RoleKeys([load_public_key(ref) for ref in engineer_keys], threshold)
    written = authoring.delegate(
        repository, name=name, path_prefix=path_prefix, keys=role_keys, bin_bits=bin_bits
    )
    _written(written)
    click.echo(f"delegated {path_prefix} to {name}: {role_keys.threshold} of {len(role_keys.keys)}")
    _show_to_sign(OfflineRepository(repo, now=_now()), written, repository.to_resign)


@main.command()
@repo_option
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Firmware name, e.g. pump-fw.")
@click.option("--version", "version", required=True, help="Semantic version, e.g. 2.4.0.")
@click.option(
    "--security-version",
    required=True,
    type=int,
    help="Anti-rollback counter: devices never go below it.",
)
@click.option(
    "--hardware-model",
    "models",
    multiple=True,
    required=True,
    help="A hardware model it runs on; repeatable.",
)
@click.option(
    "--requires-authorization", is_flag=True, help="A technician must authorize each install."
)
@click.option("--min-installed-version", help="Devices must already run at least this version.")
@click.option(
    "--sbom",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The image's SBOM file, signed as a target beside it.",
)
@click.option("--release-notes", default="", help="Short release notes.")
@click.option("--target-path", help="Override the target path <model>/<name>-<version>.bin.")
@click.option(
    "--targets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Also copy IMAGE (and --sbom) to DIR/<target path>, where 'verify --targets-dir DIR'"
        " and 'publish --targets-dir DIR' look for it."
    ),
)
@click.option(
    "--delta-from",
    "delta_from",
    multiple=True,
    metavar="VERSION",
    help=(
        "Also sign a delta from this earlier release of the product line (devices running it"
        " download only the difference); repeatable. Needs --targets-dir, where the delta is"
        " written."
    ),
)
@click.option(
    "--delta-base-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Build directory holding the --delta-from releases' files, checked against their"
        " signed length and SHA-256 [default: --targets-dir]."
    ),
)
@key_option
def add(
    repo: Path,
    image: Path,
    name: str,
    version: str,
    security_version: int,
    models: tuple[str, ...],
    requires_authorization: bool,
    min_installed_version: str | None,
    sbom: Path | None,
    release_notes: str,
    target_path: str | None,
    targets_dir: Path | None,
    delta_from: tuple[str, ...],
    delta_base_dir: Path | None,
    keys: tuple[str, ...],
) -> None:
    """Add a firmware IMAGE to the product line that owns its path.

    The release is signed at the target path <first model>/<name>-<version>.bin
    (or --target-path), whatever IMAGE is called: 'verify' and 'publish' look
    for its file at DIR/<target path>, then DIR/<file name of the target path>,
    under their --targets-dir. Give --targets-dir here to copy it there.

    A release whose --security-version is below one already in its product
    line for the same hardware model is added with a warning: devices that
    installed the other release never go below its floor (R25), so it only
    reaches devices still below it.

    Each --delta-from VERSION signs, beside the release, a delta target
    <target path>.from-VERSION.bsdiff made from that release's file (found in
    --delta-base-dir, else --targets-dir, and refused unless it has the signed
    length and SHA-256); a device running VERSION may download it instead of
    the image, and still installs only bytes with the image's signed hashes.
    """
    info = FirmwareInfo(
        version=version,
        security_version=security_version,
        hardware_models=models,
        requires_authorization=requires_authorization,
        min_installed_version=min_installed_version,
        release_notes=release_notes,
    )
    repository = _open(repo, keys)
    path = authoring.release_target_path(name, info, target_path)
    files = {path: image, **({authoring.sbom_target_path(path): sbom} if sbom else {})}
    if targets_dir is not None:
        for target, file in files.items():
            if file.is_file():
                authoring.check_copy_destination(targets_dir / target, file)
    _check_delta_options(path, delta_from, targets_dir)
    floors = authoring.higher_floors(repository, path=path, info=info)
    with tempfile.TemporaryDirectory(prefix="fwsign-delta-") as work, _progress(image) as bar:
        base_dir = delta_base_dir or targets_dir
        deltas = None
        if delta_from and base_dir is not None:
            deltas = authoring.DeltaSources(delta_from, base_dir, Path(work))
        written = authoring.add_firmware(
            repository,
            image=image,
            name=name,
            info=info,
            target_path=target_path,
            sbom=sbom,
            progress=bar.update if bar is not None else None,
            deltas=deltas,
        )
        files |= {delta_path(path, v): Path(work) / delta_path(path, v) for v in delta_from}
        added = OfflineRepository(repo, now=_now())
        for target, file in files.items():
            _show_added(added, target, file, targets_dir)
    for floor in floors:
        click.echo(
            f"warning: {path} has security version {security_version}, below"
            f" {floor.info.security_version} of {floor.path} ({floor.info.version}) in the same"
            f" product line: a device that installed {floor.info.version} never installs"
            f" {version} (R25 anti-rollback floor); it reaches only devices below that floor",
            err=True,
        )
    _show_to_sign(added, written, repository.to_resign)


def _check_delta_options(path: str, delta_from: Sequence[str], targets_dir: Path | None) -> None:
    if not delta_from:
        return
    if targets_dir is None:
        raise SignerError(
            "--delta-from needs --targets-dir DIR: each delta is written to DIR/<its target"
            " path>, where 'verify' and 'publish' look for it (nothing was added)"
        )
    for version in delta_from:
        dest = targets_dir / delta_path(path, version)
        if dest.exists():
            raise SignerError(
                f"{dest} already exists; move it away or give another --targets-dir"
                " (nothing was added)"
            )


def _show_added(
    repository: OfflineRepository, path: str, file: Path, targets_dir: Path | None
) -> None:
    role = repository.leaf_role_for(path)
    target = repository.targets(role).targets[path]
    click.echo(
        f"added {path} (sha256 {target.hashes['sha256']}, {target.length} bytes) to role {role}"
    )
    if targets_dir is None:
        click.echo(
            f"  verify/publish --targets-dir DIR look for it at DIR/{path}"
            f" (else DIR/{path.rpartition('/')[2]}), not at {file.name}"
        )
        return
    dest = targets_dir / path
    copied = authoring.copy_to_targets_dir(file, dest, sha256=target.hashes["sha256"])
    click.echo(f"  {'copied to' if copied else 'already at'} {dest}")


def _show_to_sign(
    repository: OfflineRepository,
    roles: Sequence[str],
    resign: Sequence[tuple[str, str]] = (),
) -> None:
    """What the change now needs: each written role short of a threshold, or ready.

    ``resign`` is the session's ``to_resign``: roles the change took their
    delegator's trust from, now at a new version that everyone who signs
    them must sign again (hashed bins are counted, not listed).
    """
    again = {role for role, _why in resign}
    waiting, bins = [], []
    for role in roles:
        for who, part in repository.signature_status(role):
            if not part.missing:
                continue
            if _is_bin(role) and role in again:
                bins.append(role)
                continue
            version = repository.open(role).signed.version
            line = f"  {role} v{version} {inspect.missing_signatures(role, who, part)}"
            if role in again:
                line = (
                    f"  {role} v{version} must be signed again (its keys changed in {who}):"
                    f" {inspect.missing_signatures(role, who, part)};"
                    f" fwsign sign --repo {repository.path} --role {role} --key URI"
                )
            waiting.append(line)
    if bins:
        waiting.append(
            f"  {len(bins)} hashed bin(s) ({bins[0]}{', ...' if len(bins) > 1 else ''})"
            f" must be signed again (their keys changed): fwsign sign --repo {repository.path}"
            " --key URI"
        )
    if not waiting:
        click.echo(f"signed: {', '.join(roles)} ready to publish")
        return
    click.echo("to sign ('fwsign sign --key ...'):")
    for line in waiting:
        click.echo(line)


def _progress(image: Path) -> AbstractContextManager[Any]:
    if not sys.stderr.isatty() or not image.is_file():
        return nullcontext(None)
    bar: AbstractContextManager[Any] = tqdm(
        total=image.stat().st_size, unit="B", unit_scale=True, desc="hashing", leave=False
    )
    return bar


@main.command()
@repo_option
@click.option("--role", "roles", multiple=True, help="Only this role; repeatable [all pending].")
@key_option
def sign(repo: Path, roles: tuple[str, ...], keys: tuple[str, ...]) -> None:
    """Add your signature (--key) to every role it may sign, and verify it."""
    if not keys:
        raise SignerError("give the key to sign with: --key URI")
    results = signing.sign_roles(_open(repo, keys), roles=roles)
    if not results:
        click.echo("nothing to sign: your signature is already on every role it may sign")
    bins = [r for r in results if _is_bin(r.role)]
    for result in (r for r in results if not _is_bin(r.role)):
        click.echo(
            f"{result.role} v{result.version}: {result.signed} of {result.keys} signatures,"
            f" threshold {result.threshold} ({_readiness(result.signed, result.threshold)})"
        )
    if bins:
        fewest = min(r.signed for r in bins)
        click.echo(
            f"{len(bins)} hashed bin(s): at least {fewest} signature(s) each, threshold"
            f" {bins[0].threshold} ({_readiness(fewest, bins[0].threshold)})"
        )


def _is_bin(role: str) -> bool:
    return "-bins-" in role


def _readiness(signed: int, threshold: int) -> str:
    return "ready" if signed >= threshold else "needs more signatures"


@main.command()
@repo_option
@click.option("--check", is_flag=True, help="Exit with status 1 if anything blocks publication.")
def status(repo: Path, check: bool) -> None:
    """Show each role's version, expiry, signatures and what blocks publishing."""
    statuses = inspect.status(OfflineRepository(repo, now=_now()))
    _print_status(statuses)
    if check and any(not s.ready for s in statuses):
        sys.exit(1)


def _print_status(statuses: Sequence[inspect.RoleStatus]) -> None:
    # Bins are summarised, grouped by their first problem: a product line
    # may have thousands of them.
    bins: dict[str, int] = {}
    for s in statuses:
        if _is_bin(s.role) and not s.warnings:
            summary = s.problems[0] if s.problems else "ready"
            bins[summary] = bins.get(summary, 0) + 1
            continue
        mark = "ok" if s.ready else "BLOCKED"
        click.echo(
            f"{s.role:<28} v{s.version:<4} {s.signed}/{s.threshold} signatures"
            f"  expires {s.expires:%Y-%m-%d}  {mark}"
        )
        for line in (*s.problems, *s.warnings):
            click.echo(f"    - {line}")
    for summary, count in sorted(bins.items()):
        click.echo(f"{count} hashed bin(s): {summary}")
    blocked = sum(not s.ready for s in statuses)
    click.echo("ready to publish" if not blocked else f"{blocked} role(s) block publication")


@main.command()
@repo_option
@click.option(
    "--root",
    "pinned_root",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Start from this trusted root (as a device does) instead of 1.root.json.",
)
@click.option(
    "--targets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Also check each signed target's file: DIR/<target path>, else DIR/<its file name>."
        " Fails if none is found."
    ),
)
def verify(repo: Path, pinned_root: Path | None, targets_dir: Path | None) -> None:
    """Verify the whole repository as a device would, from the root chain down.

    With --targets-dir, each target's file is looked for at DIR/<target path>
    (where 'fwsign add --targets-dir DIR' puts it), then at DIR/<file name of
    the target path>, and checked against its signed length and hashes; the
    targets with no file there are listed.
    """
    report = inspect.verify_repository(
        repo, now=_now(), pinned_root=pinned_root, targets_dir=targets_dir
    )
    if report.not_found and report.files:
        missing = report.not_found
        click.echo(
            f"no file under {targets_dir} for {len(missing)} target(s), not checked:"
            f" {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
        )
    for failure in report.failures:
        click.echo(f"FAIL {failure}", err=True)
    click.echo(
        f"checked {len(report.checked)} role(s), {report.targets} target(s),"
        f" {report.files} file(s): {'OK' if report.ok else 'FAILED'}"
    )
    if not report.ok:
        sys.exit(1)


@main.command()
@repo_option
@click.option("--role", required=True, help="Role whose keys change (root, targets, a line).")
@click.option("--add-key", "add_keys", multiple=True, metavar="REF", help="Key to add.")
@click.option(
    "--remove-key",
    "remove_keys",
    multiple=True,
    metavar="KEYID",
    help=(
        f"Key id to remove, or a unique prefix of it ({keyops.MIN_KEYID_PREFIX}+ hex digits);"
        " repeatable."
    ),
)
@click.option("--threshold", type=int, help="New threshold.")
@key_option
def rotate(
    repo: Path,
    role: str,
    add_keys: tuple[str, ...],
    remove_keys: tuple[str, ...],
    threshold: int | None,
    keys: tuple[str, ...],
) -> None:
    """Add or remove keys of a role and change its threshold (R5)."""
    repository = _open(repo, keys)
    written = keyops.rotate(
        repository,
        role=role,
        add=[load_public_key(ref) for ref in add_keys],
        remove=[_full_keyid(repository, k) for k in remove_keys],
        threshold=threshold,
    )
    _written(written)
    _show_to_sign(OfflineRepository(repo, now=_now()), written, repository.to_resign)


@main.command("authorization-keys")
@repo_option
@click.option("--add-key", "add_keys", multiple=True, metavar="REF", help="Key to add.")
@click.option(
    "--remove-key",
    "remove_keys",
    multiple=True,
    metavar="KEYID",
    help=f"Key id to remove, or a unique prefix of it ({keyops.MIN_KEYID_PREFIX}+ hex digits).",
)
@click.option("--threshold", type=int, help="Signatures an authorization needs.")
@key_option
def authorization_keys_command(
    repo: Path,
    add_keys: tuple[str, ...],
    remove_keys: tuple[str, ...],
    threshold: int | None,
    keys: tuple[str, ...],
) -> None:
    """Change the keys whose signatures authorize a technician's install (R9, R47).

    They are a field of root: the change is a new root version that the
    security officers sign, and devices trust it only once they have
    verified that root, so the server alone can never swap them.
    """
    repository = _open(repo, keys)
    listed = AuthorizationKeys.from_root(repository.root())
    written = keyops.rotate_authorization_keys(
        repository,
        add=[load_public_key(ref) for ref in add_keys],
        remove=[keyops.resolve_keyid(k, listed.keys if listed else ()) for k in remove_keys],
        threshold=threshold,
    )
    _written(written)
    _show_to_sign(OfflineRepository(repo, now=_now()), written, repository.to_resign)


@main.command("revoke-key")
@repo_option
@click.argument("keyid")
@key_option
def revoke_key(repo: Path, keyid: str, keys: tuple[str, ...]) -> None:
    """Remove a compromised KEYID from every role that lists it (R5).

    KEYID is a key id or a unique prefix of it (6+ hex digits).
    """
    repository = _open(repo, keys)
    written = keyops.revoke_key(repository, keyid=_full_keyid(repository, keyid))
    _written(written)
    _show_to_sign(OfflineRepository(repo, now=_now()), written, repository.to_resign)


@main.command("revoke-release")
@repo_option
@click.argument("target_path")
@key_option
def revoke_release(repo: Path, target_path: str, keys: tuple[str, ...]) -> None:
    """Withdraw a released TARGET_PATH (its SBOM, its deltas) so devices move off it (R56, R57)."""
    repository = _open(repo, keys)
    removed = authoring.withdrawn_paths(repository, path=target_path)
    written = authoring.revoke_release(repository, path=target_path)
    click.echo(f"removed {', '.join(removed)} from {', '.join(written)}")
    _show_to_sign(OfflineRepository(repo, now=_now()), written, repository.to_resign)


def _full_keyid(repository: OfflineRepository, prefix: str) -> str:
    """Resolve a key id, or a unique prefix of it, against every key the repository lists."""
    known = set(repository.root().keys)
    for role in repository.role_names():
        delegations = repository.open(role).signed.delegations if role != "root" else None
        if delegations is not None:
            known |= set(delegations.keys)
    return keyops.resolve_keyid(prefix, known)


main.add_command(publish_command)
main.add_command(bundle_command)
main.add_command(account_group)
main.add_command(audit_group)
