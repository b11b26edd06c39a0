"""``GET /metadata/...`` and ``GET /targets/...``: the published repository, public.

The files are the plain directory ``config.repository_dir`` (so nginx or a
CDN can serve the same paths at scale); this blueprint serves them with the
headers a mirror should send:

- a strong ``ETag`` from the content's SHA-256 (for a consistent-snapshot
  target it is the hash in its name), ``304`` on ``If-None-Match``;
- ``Range`` for targets (``206``, or ``416`` with ``Content-Range: */size``),
  so an interrupted firmware download resumes;
- ``Cache-Control``: ``no-cache`` for ``timestamp.json`` and ``root.json``
  (they change in place), a year and ``immutable`` for versioned files;
- ``Content-Type`` ``application/json`` or ``application/octet-stream``,
  ``X-Content-Type-Options: nosniff``.

Names are checked before any file is touched (no ``..``, backslash, NUL,
control character or hidden file), then resolved and required to lie
inside the repository directory, so a request can never reach outside it.
Targets are streamed from disk, never read whole.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from repo_metadata.errors import InvalidFieldError
from repo_metadata.paths import check_target_path
from update_server.access import public
from update_server.errors import NotFoundError, problem

blueprint = Blueprint("distribution", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"
_METADATA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._%+-]{0,254}\.json\Z")
_VERSIONED = re.compile(r"^[0-9]+\.")
_HASHED_NAME = re.compile(r"^([0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})\.[^/]+\Z")


@blueprint.get("/metadata/<path:path>")
@public
def metadata(path: str) -> ResponseReturnValue:
    name = path
    if not _METADATA_NAME.match(name):
        raise _not_found(name)
    data = _inside(Path("metadata") / name).read_bytes()
    response = Response(data, mimetype="application/json")
    response.set_etag(hashlib.sha256(data).hexdigest())
    response.headers["Cache-Control"] = IMMUTABLE if _VERSIONED.match(name) else REVALIDATE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)


@blueprint.get("/targets/<path:path>")
@public
def target(path: str) -> ResponseReturnValue:
    try:
        check_target_path(path)
    except InvalidFieldError:
        raise _not_found(path) from None
    name = path.rpartition("/")[2]
    digest = _HASHED_NAME.match(name)
    if digest is None:
        raise _not_found(path)
    file = _inside(Path("targets") / path)
    try:
        response = send_file(
            file, mimetype="application/octet-stream", etag=digest.group(1), conditional=True
        )
    except RequestedRangeNotSatisfiable:
        return _unsatisfiable(file.stat().st_size)
    response.headers["Cache-Control"] = IMMUTABLE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _inside(relative: Path) -> Path:
    """``relative`` under the repository directory, if it is a file there."""
    base: Path = current_app.extensions["fw"].config.repository_dir.resolve()
    if any(part.startswith(".") for part in relative.parts):
        raise _not_found(str(relative))
    file = (base / relative).resolve()
    if not file.is_relative_to(base) or not file.is_file():
        raise _not_found(str(relative))
    return file


def _not_found(what: str) -> NotFoundError:
    return NotFoundError(f"{what[:200]!r} is not a file of this repository")


def _unsatisfiable(size: int) -> Response:
    response = jsonify(
        problem(416, "Range not satisfiable", f"the range asked lies outside the {size} bytes")
    )
    response.status_code = 416
    response.mimetype = "application/problem+json"
    response.headers["Content-Range"] = f"bytes */{size}"
    return response
