"""``/api/v1/releases`` and ``/api/v1/repository``: the HTTP side of publication.

Views orchestrate and persist; the rules live in ``release`` (verification),
``upload`` (streamed bytes) and ``publish`` (the switch). Who may upload
which role follows docs/api.md (R6 least privilege). Every refusal is
audited with its rule and committed before the answer. A view that reads a
request body of any size commits its transaction first, so no database lock
is held while bytes arrive.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
from collections.abc import Mapping
from typing import NoReturn

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from update_server.access import ALL_ROLES, allow
from update_server.app import Services
from update_server.audit import Actor, audit_event
from update_server.audit.actions import Action
from update_server.audit.recording import record
from update_server.bodies import accepts_body
from update_server.errors import (
    ConflictError,
    ForbiddenError,
    GoneError,
    InsufficientStorageError,
    NotFoundError,
    PayloadTooLargeError,
    ServerError,
    ServiceUnavailableError,
    UnprocessableError,
)
from update_server.freeze import state as freeze_state
from update_server.freeze.errors import FrozenError
from update_server.models import Role, User
from update_server.publication.errors import (
    BrokenRepositoryError,
    BusyError,
    ExpiredError,
    NotAllowedError,
    NotInitialisedError,
    PublicationError,
    RejectedError,
    StaleError,
    StorageFullError,
    StorageReadOnlyError,
    TooLargeError,
    UnknownReleaseError,
)
from update_server.publication.models import ReleaseUpload, UploadState
from update_server.publication.publish import (
    cancel_release,
    online_keys,
    open_upload,
    publish_release,
    staging_dir,
)
from update_server.publication.release import (
    ExpectedTarget,
    check_release,
    parse_release,
    role_kind,
    uploaded_roles,
)
from update_server.publication.repository import OnlineRepository
from update_server.publication.status import published_status
from update_server.publication.sweep import sweep
from update_server.publication.target_files import (
    UnknownTargetError,
    check_missing,
    link_published,
    published_target,
    receive_published,
)
from update_server.publication.upload import (
    CHUNK_BYTES,
    check_declared_length,
    receive,
    staged_file,
)

logger = logging.getLogger(__name__)
blueprint = Blueprint("publication", __name__)

UPLOADERS = (Role.RELEASE_ENGINEER, Role.RELEASE_MANAGER, Role.SECURITY_OFFICER)
#: Which kinds of role each person may upload (docs/api.md).
MAY_UPLOAD: Mapping[str, frozenset[str]] = {
    Role.RELEASE_ENGINEER: frozenset({"delegated"}),
    Role.RELEASE_MANAGER: frozenset({"targets", "delegated"}),
    Role.SECURITY_OFFICER: frozenset({"root", "targets"}),
}
# A publication holding the lock past the wait is rare and short: ask again soon.
BUSY_RETRY_AFTER = 5
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\Z")

_HTTP_ERRORS: tuple[tuple[type[PublicationError], type[ServerError]], ...] = (
    (RejectedError, UnprocessableError),
    (TooLargeError, PayloadTooLargeError),
    (StaleError, ConflictError),
    (ExpiredError, GoneError),
    (UnknownReleaseError, NotFoundError),
    (UnknownTargetError, NotFoundError),
    (NotAllowedError, ForbiddenError),
    (BusyError, ServiceUnavailableError),
    (NotInitialisedError, ServiceUnavailableError),
    (StorageFullError, InsufficientStorageError),
    (StorageReadOnlyError, ServiceUnavailableError),
)


@blueprint.get("/api/v1/repository")
@allow(*ALL_ROLES)
def repository_status() -> ResponseReturnValue:
    services = _services()
    repo = OnlineRepository(services.config.repository_dir, now=services.clock())
    try:
        return jsonify(published_status(repo))
    except PublicationError as exc:
        raise _http_error(exc) from None


@blueprint.post("/api/v1/releases")
@allow(*UPLOADERS)
@accepts_body("max_metadata_bytes")
def upload_release() -> ResponseReturnValue:
    g.db.commit()  # no database lock while the body arrives and is verified
    services = _services()
    config, now = services.config, services.clock()
    _refuse_if_frozen(Action.UPLOAD, "release")
    _sweep_if_free(services)
    try:
        proposed = parse_release(
            _read_body(config.max_metadata_bytes), max_size=config.max_metadata_bytes
        )
        _check_may_upload(g.user, proposed)
        repo = OnlineRepository(config.repository_dir, now=now)
        checked = check_release(
            repo,
            uploaded_roles(proposed),
            now=now,
            online_keys=online_keys(services),
            max_target_bytes=config.max_upload_bytes,
        )
    except PublicationError as exc:
        _refuse(Action.UPLOAD, "release", exc)
    upload = ReleaseUpload(
        id=secrets.token_hex(16),
        user_id=g.user.id,
        created_at=now,
        state=UploadState.OPEN,
        roles={role: data.decode() for role, data in checked.data.items()},
        expected_targets=[target.to_json() for target in checked.targets],
        trusted_versions=checked.trusted_versions,
    )
    g.db.add(upload)
    _audit(
        Action.UPLOAD,
        f"release:{upload.id}",
        "success",
        roles=checked.roles,
        targets=[target.path for target in checked.targets],
    )
    g.db.commit()
    body = {
        "id": upload.id,
        "roles": checked.roles,
        "expected_targets": [_target_json(target) for target in checked.targets],
    }
    return jsonify(body), 201


@blueprint.put("/api/v1/releases/<id>/targets/<path:path>")
@allow(*UPLOADERS)
@accepts_body("max_upload_bytes")
def upload_target(id: str, path: str) -> ResponseReturnValue:  # noqa: A002 - as in docs/api.md
    upload_id, target_path = id, path
    services = _services()
    config = services.config
    what = f"release:{upload_id}/{target_path}"[:512]
    try:
        upload = _own_upload(upload_id)
        target = _expected(upload, target_path)
    except PublicationError as exc:
        _refuse(Action.UPLOAD_TARGET, what, exc)
    g.db.commit()  # no database lock while the bytes arrive
    directory = staging_dir(config, upload_id)
    staged = staged_file(directory, target)
    if not (staged.is_file() and staged.stat().st_size == target.length):
        try:
            # Before request.stream, which refuses an over-long length unaudited.
            check_declared_length(target, request.content_length, limit=config.max_upload_bytes)
            receive(
                request.stream,
                target,
                directory=directory,
                limit=config.max_upload_bytes,
                declared=request.content_length,
            )
        except RequestEntityTooLarge:  # a chunked body cut by werkzeug (bodies.py)
            too_large = TooLargeError("upload-too-large", f"more than {config.max_upload_bytes}")
            _refuse(Action.UPLOAD_TARGET, what, too_large)
        except PublicationError as exc:
            _refuse(Action.UPLOAD_TARGET, what, exc)
    _audit(Action.UPLOAD_TARGET, what, "success", length=target.length, sha256=target.sha256)
    g.db.commit()
    return jsonify(_target_json(target)), 201


@blueprint.put("/api/v1/targets/<path:path>")
@allow(*UPLOADERS)
@accepts_body("max_upload_bytes")
def upload_published_target(path: str) -> ResponseReturnValue:
    """The file of a published target the server has no bytes for (``target_files`` F1-F3)."""
    g.db.commit()  # no database lock while the bytes arrive
    services = _services()
    config, what = services.config, f"target:{path}"[:512]
    _refuse_if_frozen(Action.UPLOAD_TARGET, what)  # freeze F3: it makes a target downloadable
    try:
        expected = published_target(config, path, now=services.clock())
        check_missing(config, expected)
        # Before request.stream, which refuses an over-long length unaudited.
        check_declared_length(expected, request.content_length, limit=config.max_upload_bytes)
        staged = receive_published(
            config, request.stream, expected, declared=request.content_length
        )
        try:  # F3 again, held (FOR SHARE) until the commit: a freeze entered meanwhile
            _refuse_if_frozen(Action.UPLOAD_TARGET, what, hold=True)
        except FrozenError:
            shutil.rmtree(staged.parent, ignore_errors=True)
            raise
        linked = link_published(config, expected, staged, now=services.clock())
    except RequestEntityTooLarge:  # a chunked body cut by werkzeug (bodies.py)
        too_large = TooLargeError("upload-too-large", f"more than {config.max_upload_bytes}")
        _refuse(Action.UPLOAD_TARGET, what, too_large)
    except PublicationError as exc:
        _refuse(Action.UPLOAD_TARGET, what, exc)
    length, sha256 = expected.length, expected.sha256
    _audit(Action.UPLOAD_TARGET, what, "success", length=length, sha256=sha256, files=linked)
    g.db.commit()
    return jsonify(_target_json(expected)), 201


@blueprint.post("/api/v1/releases/<id>/publish")
@allow(*UPLOADERS, fresh_otp=True)
def publish(id: str) -> ResponseReturnValue:  # noqa: A002 - as in docs/api.md
    upload_id = id
    g.db.commit()  # R25: the fresh code is spent whatever happens next
    services = _services()
    user: User = g.user
    _refuse_if_frozen(Action.PUBLISH, f"release:{upload_id}"[:512])
    try:
        _check_upload_id(upload_id)
        published = publish_release(
            services, upload_id, user_id=user.id, actor=_actor(), now=services.clock()
        )
    except PublicationError as exc:
        _refuse(Action.PUBLISH, f"release:{upload_id}", exc)
    return jsonify(published.to_json())


@blueprint.delete("/api/v1/releases/<id>")
@allow(*UPLOADERS)
def cancel(id: str) -> ResponseReturnValue:  # noqa: A002 - as in docs/api.md
    upload_id = id
    g.db.commit()
    services = _services()
    what = f"release:{upload_id}"
    try:
        _check_upload_id(upload_id)
        cancel_release(services, upload_id, user_id=g.user.id, now=services.clock())
    except PublicationError as exc:
        _refuse(Action.UPLOAD, what, exc)
    _audit(Action.UPLOAD, what, "success", cancelled=True)
    g.db.commit()
    return "", 204


# --- helpers -----------------------------------------------------------------------


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services


def _actor() -> Actor:
    return Actor(g.user.name, g.user.role, (request.remote_addr or "")[:64])


def _read_body(limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` before it is all read."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(
            "body-too-large",
            f"{request.content_length} bytes of metadata; the limit is {limit}",
        )
    chunks, total = [], 0
    try:
        while chunk := request.stream.read(CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise TooLargeError("body-too-large", f"more than {limit} bytes of metadata")
            chunks.append(chunk)
    except RequestEntityTooLarge:  # werkzeug's own cut at the same limit (bodies.py)
        raise TooLargeError("body-too-large", f"more than {limit} bytes of metadata") from None
    return b"".join(chunks)


def _check_may_upload(user: User, proposed: Mapping[str, object]) -> None:
    allowed = MAY_UPLOAD.get(user.role, frozenset())
    for role in proposed:
        if role_kind(role) not in allowed:
            raise NotAllowedError(
                "role-not-allowed",
                f"a {user.role} may not upload {role}; ask a"
                f" {_who_may(role_kind(role))} to upload it",
            )


def _who_may(kind: str) -> str:
    return " or ".join(sorted(str(role) for role, kinds in MAY_UPLOAD.items() if kind in kinds))


def _check_upload_id(upload_id: str) -> None:
    if not _UPLOAD_ID.match(upload_id):
        raise UnknownReleaseError("unknown-release", f"no release {upload_id[:40]!r}")


def _own_upload(upload_id: str) -> ReleaseUpload:
    _check_upload_id(upload_id)
    services = _services()
    return open_upload(
        g.db,
        upload_id,
        user_id=g.user.id,
        now=services.clock(),
        lifetime=services.config.upload_lifetime,
    )


def _sweep_if_free(services: Services) -> None:
    """Expire overdue uploads first, unless a publication holds the lock (it is swept later)."""
    try:
        sweep(services, now=services.clock())
    except BusyError:
        logger.debug("publication lock busy; the renewal thread sweeps staging")


def _expected(upload: ReleaseUpload, target_path: str) -> ExpectedTarget:
    """The signed target ``target_path`` names; nothing else may be uploaded."""
    for item in upload.expected_targets:
        if item["path"] == target_path:
            return ExpectedTarget.from_json(item)
    raise RejectedError(
        "unexpected-target",
        f"{target_path[:300]!r} is not a new or changed target of release {upload.id};"
        " see expected_targets in the upload's answer",
    )


def _target_json(target: ExpectedTarget) -> dict[str, object]:
    return {"path": target.path, "length": target.length, "sha256": target.sha256}


def _audit(
    action: Action, obj: str, outcome: str, *, commit: bool = False, **detail: object
) -> None:
    """Record in this request's transaction; an unwritable entry refuses the action (503)."""
    event = audit_event(
        action, actor=_actor(), object=obj, outcome=outcome, time=_services().clock(), detail=detail
    )
    record(event, commit=commit)


def _refuse_if_frozen(action: Action, obj: str, *, hold: bool = False) -> None:
    """Freeze F3: nothing is published while frozen; the refusal audited (committed), 423.

    ``hold``: the freeze row stays locked (FOR SHARE) until the action commits.
    """
    try:
        freeze_state.refuse_if_frozen(g.db)
    except FrozenError as frozen:
        g.db.rollback()
        _audit(action, obj, "refused", commit=True, rule="freeze-F3", reason=frozen.detail[:500])
        raise
    if not hold:
        # It wrote nothing: ends the read's transaction (no lock held while a body
        # arrives or publication works) without expiring the session's user.
        g.db.commit()


def _refuse(action: Action, obj: str, exc: PublicationError) -> NoReturn:
    """Audit the refusal (committed), then answer with its HTTP status."""
    g.db.rollback()
    server_side = (
        BusyError,
        BrokenRepositoryError,
        NotInitialisedError,
        StorageFullError,
        StorageReadOnlyError,
    )
    outcome = "failure" if isinstance(exc, server_side) else "refused"
    _audit(action, obj, outcome, commit=True, rule=exc.rule, reason=exc.message[:500])
    raise _http_error(exc) from None


def _http_error(exc: PublicationError) -> ServerError:
    for kind, http in _HTTP_ERRORS:
        if isinstance(exc, kind):
            retry = BUSY_RETRY_AFTER if isinstance(exc, BusyError) else None
            return http(exc.message, rule=exc.rule, retry_after=retry)
    return ServerError(exc.message, rule=exc.rule)
