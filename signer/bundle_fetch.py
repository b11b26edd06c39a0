"""``fwsign bundle``: a technician downloads the offline bundle for one device (issue 13).

The server makes it (``POST /api/v1/devices/<id>/bundle``, the bundle the
device's web page makes, with the authorization its release requires);
this side logs in (password and code, ``publish.ServerSession``), confirms
with a fresh code, and keeps the file. Rules:

F1 (R9, R25) The confirmation is a new one-time code, not the login's; a
   refused one is asked again, up to ``publish.CODE_TRIES`` times (each
   refusal counts against the person on the server, as a wrong login does).
F2 The file appears whole or not at all: the answer is streamed to a
   temporary file beside FILE, checked, then linked to FILE, which must not
   exist (an existing FILE is refused before anything is asked, and again
   at the link, so no bundle ever replaces another). On any failure the
   temporary file is removed.
F3 (R46) What the server sent is opened as a bundle (``fwcommon.bundle``,
   bounded) before it is kept: a file that is no bundle, or one for another
   device, is refused. Nothing in it is trusted here: the device verifies
   every byte with TUF and the authorization with the keys its root lists;
   the release, the authorization's expiry and the SHA-256 are shown for
   the technician to check against the device and the server's audit log.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from fwcommon.bundle import AUTHORIZATION, DEFAULT_MAX_BYTES, Bundle, BundleError
from fwcommon.files import fsync_dir
from repo_metadata.authorization import MAX_DOCUMENT_SIZE, AuthorizationError, SignedAuthorization
from signer.publish import (
    CODE_TRIES,
    Credentials,
    Login,
    PublishError,
    ServerRefusedError,
    ServerSession,
)

MEDIA_TYPE = "application/x-tar"


@dataclass(frozen=True)
class Fetched:
    """A bundle kept at ``path`` (F2), and what it says it carries (F3)."""

    path: Path
    size: int
    sha256: str
    device: str | None
    release: str | None
    authorization_expires: datetime | None


def refuse_existing(output: Path) -> None:
    """F2: FILE must not exist, and its directory must."""
    if output.exists() or output.is_symlink():
        raise PublishError(f"{output} exists: give a new file name (a bundle never replaces one)")
    if not output.parent.is_dir():
        raise PublishError(f"{output.parent}: no such directory; create it or choose another")


def fetch_bundle(
    session: ServerSession,
    credentials: Credentials,
    *,
    device_id: str,
    output: Path,
    confirm_otp: Callable[[int], str],
    from_root: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    say: Callable[[str], None] = lambda _line: None,
    on_login: Callable[[Login], None] = lambda _login: None,
) -> Fetched:
    """Log in, download the device's bundle with a fresh code (F1), keep it whole (F2, F3)."""
    refuse_existing(output)
    body = {} if from_root is None else {"from_root": from_root}
    path = f"/devices/{quote(device_id, safe='')}/bundle"
    with _logged_in(session, credentials) as login:
        on_login(login)
        fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
        partial = Path(name)
        try:
            with os.fdopen(fd, "w+b") as handle:
                _download(session, path, handle, body, confirm_otp, max_bytes, say)
                handle.flush()
                os.fsync(handle.fileno())
            fetched = _checked(partial, output, device_id, max_bytes)
            _link(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    fsync_dir(output.parent)
    return fetched


def _download(  # noqa: PLR0917 - the round's parts, passed through
    session: ServerSession,
    path: str,
    handle: BinaryIO,
    body: dict[str, int],
    confirm_otp: Callable[[int], str],
    max_bytes: int,
    say: Callable[[str], None],
) -> None:
    """F1: the answer into ``handle``; a refused code is asked again, up to ``CODE_TRIES``."""
    accept = f"{MEDIA_TYPE}, application/problem+json"
    for attempt in range(1, CODE_TRIES + 1):
        headers = {"X-OTP": confirm_otp(attempt), "Accept": accept}
        try:
            media = session.download(path, handle, body=body, headers=headers, max_bytes=max_bytes)
        except ServerRefusedError as refused:
            if refused.status != HTTPStatus.UNAUTHORIZED or attempt == CODE_TRIES:
                raise
            say(f"that code was not accepted ({refused.detail}); try {attempt + 1} of {CODE_TRIES}")
            handle.seek(0)
            handle.truncate()
            continue
        if media != MEDIA_TYPE:
            raise PublishError(f"the server answered {media or 'no media type'}, not a bundle")
        return


def _checked(partial: Path, output: Path, device_id: str, max_bytes: int) -> Fetched:
    """F3: the file opens as a bundle for this device; what it says it carries."""
    expires = None
    try:
        with Bundle.open(partial, max_bytes=max_bytes) as bundle:
            manifest = bundle.manifest
            if manifest.authorization is not None:
                document = bundle.read(manifest.authorization, limit=MAX_DOCUMENT_SIZE)
                expires = SignedAuthorization.from_bytes(document).authorization.expires
    except BundleError as exc:
        raise PublishError(f"the server's answer is not a usable bundle: {exc}") from None
    except AuthorizationError as exc:
        raise PublishError(f"the bundle's {AUTHORIZATION} does not parse: {exc}") from None
    if manifest.device != device_id:
        raise PublishError(
            f"the server sent a bundle for device {manifest.device!r}, not {device_id!r};"
            " nothing was kept: tell the server's operator"
        )
    with partial.open("rb") as written:
        digest = hashlib.file_digest(written, "sha256").hexdigest()
    size = partial.stat().st_size
    return Fetched(output, size, digest, manifest.device, manifest.release, expires)


def _link(partial: Path, output: Path) -> None:
    """F2: FILE appears whole, and only if it still does not exist."""
    try:
        os.link(partial, output)
    except FileExistsError:
        raise PublishError(
            f"{output} appeared while the bundle was downloaded; nothing was replaced:"
            " give a new file name"
        ) from None


@contextmanager
def _logged_in(session: ServerSession, credentials: Credentials) -> Iterator[Login]:
    try:
        yield session.login(credentials)
    finally:
        with suppress(PublishError):
            session.logout()
        session.close()
