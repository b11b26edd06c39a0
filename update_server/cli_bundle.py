"""``fwserver bundle``: an offline update bundle for a hardware model or one device (issue 13).

Thin over ``update_server.bundles`` (R13: the device verifies everything in
it as TUF says; R25: the chain of roots and the signed versions travel with
it). The command reads the server's published repository and writes one
file (``docs/bundle-format.md``); it is audited (``bundle.create``) as the
operator on the server's host (``cli:<login>``).

A technician's authorization is never issued here: issuing one needs a
technician and a fresh one-time code (R9), which a host command has
neither. The technician issues it on the device's page (which can also
make the whole bundle) or through the API, and ``--authorization FILE``
packs that document: it must be one this server issued (found by its
nonce, the same bytes), for this device and this release, not expired.

Exit status: 0 written; 2 refused (unknown model, device, release or root
version, a bundle over ``--max-bytes``, an authorization that does not fit,
an existing output file): nothing written; 1 any other failure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from fwcommon.bundle import DEFAULT_MAX_BYTES, BundleError
from fwcommon.cli import say
from repo_metadata.authorization import (
    MAX_DOCUMENT_SIZE,
    AuthorizationError,
    SignedAuthorization,
)
from update_server.app import Services
from update_server.audit import Actor
from update_server.authorizations.models import IssuedAuthorization
from update_server.bundles import making
from update_server.bundles.making import Contents, Request
from update_server.cli_common import cli_services, data_dir_option
from update_server.cli_users import operator_login
from update_server.db import transaction
from update_server.errors import ServerError
from update_server.freeze import state as freeze_state

#: How long the command waits for a publication in progress (``making`` M1).
LOCK_WAIT = 60.0
REFUSED = 2


class BundleRefusedError(Exception):
    """The bundle is not made: the line to print (exit status 2)."""


@click.command("bundle")
@data_dir_option
@click.option("--model", help="The hardware model the bundle is for [the device's].")
@click.option("--device", "device_id", help="The registered device the bundle is for.")
@click.option(
    "--from-root",
    type=click.IntRange(min=1),
    help="The root version the device trusts: the chain starts after it [1].",
)
@click.option(
    "--release",
    "version",
    help="The version to carry [the device's assigned release, else the newest it takes;"
    " for a model, its newest release].",
)
@click.option(
    "--authorization",
    "authorization_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A technician's authorization this server issued for the device and release (from"
    " the technician's pages or the API), packed as authorization.json. Issuing one needs a"
    " technician's fresh code: this command never issues one.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Refuse a bundle larger than this.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle to write (a new file).",
)
@click.pass_context
def bundle(
    ctx: click.Context,
    *,
    data_dir: Path,
    model: str | None,
    device_id: str | None,
    from_root: int | None,
    version: str | None,
    authorization_file: Path | None,
    max_bytes: int,
    output: Path,
) -> None:
    """Write an offline update bundle for --model or --device from the published repository.

    It holds the root chain after --from-root, timestamp, snapshot, the targets
    roles the device walks, the release's firmware and its SBOM, and with
    --authorization the technician's document for that device. The device
    verifies all of it as it would online (``fwclient update --bundle FILE``).
    """
    with cli_services(data_dir) as services:
        try:
            made = _make(
                services,
                model=model,
                device_id=device_id,
                from_root=from_root,
                version=version,
                authorization_file=authorization_file,
                max_bytes=max_bytes,
                output=output,
            )
        except BundleRefusedError as exc:
            say("error", f"no bundle written: {exc}")
            ctx.exit(REFUSED)
    click.echo(f"bundle written: {made.path}")
    click.echo(f"  {made.release.path} for {made.manifest.device or made.manifest.hardware_model}")
    click.echo(f"  sha256 {made.sha256}, {made.size} bytes, {len(made.names)} files (audited)")
    if made.manifest.authorization is None and made.release.info.requires_authorization:
        click.echo(
            "  this release requires a technician's authorization: the device installs it only"
            " with one (give --authorization, or make the bundle on the device's page)"
        )


def _make(
    services: Services,
    *,
    model: str | None,
    device_id: str | None,
    from_root: int | None,
    version: str | None,
    authorization_file: Path | None,
    max_bytes: int,
    output: Path,
) -> making.Made:
    """Read in one transaction, write outside it (a large file holds no lock), then audit."""
    if output.exists() or output.is_symlink():
        raise BundleRefusedError(
            f"{output} exists: choose a new file name (nothing is overwritten)"
        )
    now = services.clock()
    try:
        with transaction(services.sessions) as db:
            freeze_state.refuse_if_frozen(db)
            request = _request(
                db, model=model, device_id=device_id, from_root=from_root, version=version
            )
            contents = making.collect(services.config, request, now=now, wait=LOCK_WAIT)
            document, nonce = _authorization(db, contents, authorization_file, now=now)
        made = making.write(contents, output, now=now, max_bytes=max_bytes, authorization=document)
    except ServerError as exc:
        raise BundleRefusedError(exc.detail) from None
    except BundleError as exc:
        raise BundleRefusedError(str(exc)) from None
    try:
        with transaction(services.sessions) as db:
            making.audit_made(db, made, actor=_actor(), now=now, nonce=nonce)
    except BaseException:
        output.unlink(missing_ok=True)  # written but not audited: not made (M4)
        raise
    return made


def _request(
    db: Session,
    *,
    model: str | None,
    device_id: str | None,
    from_root: int | None,
    version: str | None,
) -> Request:
    if device_id is None:
        if model is None:
            raise BundleRefusedError("name the bundle's --model or --device")
        return Request(hardware_model=model, root_from=from_root or 1, version=version)
    request = making.device_request(db, device_id, root_from=from_root, version=version)
    if model is not None and model != request.hardware_model:
        raise BundleRefusedError(f"device {device_id} is a {request.hardware_model}, not a {model}")
    return request


def _authorization(
    db: Session, contents: Contents, file: Path | None, *, now: datetime
) -> tuple[bytes | None, str | None]:
    """The document ``file`` holds, if this server issued it for this device and release."""
    if file is None:
        return None, None
    device = contents.request.device
    if device is None:
        raise BundleRefusedError("an authorization is for one device: give --device too")
    with file.open("rb") as handle:
        data = handle.read(MAX_DOCUMENT_SIZE + 1)  # the parser refuses more, unread beyond
    try:
        signed = SignedAuthorization.from_bytes(data).authorization
    except AuthorizationError as exc:
        raise BundleRefusedError(f"{file} is not an authorization document: {exc}") from None
    row = db.scalars(
        select(IssuedAuthorization).where(IssuedAuthorization.nonce == signed.nonce)
    ).first()
    if row is None or row.document.encode("utf-8") != data:
        raise BundleRefusedError(f"{file} is not an authorization this server issued")
    release = contents.release
    if (signed.device_id, signed.target_path, signed.sha256) != (
        device.device_id,
        release.path,
        release.sha256,
    ):
        raise BundleRefusedError(
            f"{file} authorizes {signed.target_path} for {signed.device_id}, not"
            f" {release.path} for {device.device_id}"
        )
    if now.astimezone(UTC) > signed.expires or row.outcome is not None:
        raise BundleRefusedError(f"{file} has expired or was used: the technician issues a new one")
    return data, signed.nonce


def _actor() -> Actor:
    return Actor(f"cli:{operator_login()}"[:64], "operator", "local")
