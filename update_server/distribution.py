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
  ``X-Content-Type-Options: nosniff``; targets as ``Content-Disposition:
  attachment``, never rendered by a browser.

Names are checked before any file is touched (no ``..``, backslash, NUL,
control character or hidden file), then resolved and required to lie
inside the repository directory, so a request can never reach outside it.
Targets are streamed from disk, never read whole.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

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
STREAM_BLOCK = 1024 * 1024
_CACHE_ENTRIES = 256
_CACHE: dict[tuple[str, int, int, int], tuple[bytes, str]] = {}
_BASES: dict[Path, Path] = {}
_METADATA_DIRS: dict[Path, str] = {}
_WRAPPERS: dict[type, type] = {}
_HASHED_NAME = re.compile(r"^([0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})\.[^/]+\Z")


@blueprint.get("/metadata/<path:path>")
@public
def metadata(path: str) -> ResponseReturnValue:
    name = path
    if not _METADATA_NAME.match(name):
        raise _not_found(name)
    data, etag = _metadata_bytes(name)
    # Only If-None-Match applies to metadata (no ranges, no dates), checked
    # directly: the device poll is the server's hot path. RFC 9110 compares
    # If-None-Match weakly, so W/"..." matches too.
    wanted = request.headers.get("If-None-Match", "")
    matched = wanted.strip() == "*" or f'"{etag}"' in wanted
    response = Response(b"" if matched else data, status=304 if matched else 200)
    response.headers["Content-Type"] = "application/json"
    response.headers["ETag"] = f'"{etag}"'
    response.headers["Cache-Control"] = IMMUTABLE if _VERSIONED.match(name) else REVALIDATE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _metadata_bytes(name: str) -> tuple[bytes, str]:
    """Content and ETag of a metadata file, cached per process.

    The name has no '/' (checked above), so the file is a direct child of
    ``metadata/``; one ``lstat`` says it is a regular file (never a symlink
    that could point elsewhere). The cache key includes inode, mtime and
    size, so a file replaced by a publication (atomic rename: a new inode)
    is read afresh; ``timestamp.json`` is replaced, never edited in place.
    """
    file = os.path.join(_metadata_dir(), name)  # noqa: PTH118 - strings: the hot path
    try:
        info = os.lstat(file)
    except OSError:
        raise _not_found(name) from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_found(name)
    key = (file, info.st_ino, info.st_mtime_ns, info.st_size)
    cached = _CACHE.get(key)
    if cached is None:
        with open(file, "rb") as handle:  # noqa: PTH123 - strings: the hot path
            data = handle.read()
        cached = (data, hashlib.sha256(data).hexdigest())
        if len(_CACHE) >= _CACHE_ENTRIES:
            _CACHE.clear()
        _CACHE[key] = cached
    return cached


def _metadata_dir() -> str:
    config_dir: Path = current_app.extensions["fw"].config.repository_dir
    directory = _METADATA_DIRS.get(config_dir)
    if directory is None:
        directory = _METADATA_DIRS[config_dir] = str(_base() / "metadata")
    return directory


def _base() -> Path:
    config_dir: Path = current_app.extensions["fw"].config.repository_dir
    base = _BASES.get(config_dir)
    if base is None:
        base = _BASES[config_dir] = config_dir.resolve()
    return base


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
    _large_blocks(request.environ)
    try:
        # An attachment, never inline: a browser that follows a link to
        # firmware saves it and renders nothing (with nosniff, below).
        response = send_file(
            file,
            mimetype="application/octet-stream",
            as_attachment=True,
            download_name=name,
            etag=digest.group(1),
            conditional=True,
        )
    except RequestedRangeNotSatisfiable:
        return _unsatisfiable(file.stat().st_size)
    response.headers["Cache-Control"] = IMMUTABLE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _large_blocks(environ: dict[str, Any]) -> None:
    """Stream files in 1 MiB blocks instead of the WSGI server's 8 KiB.

    The server's file wrapper is kept (gunicorn recognises its responses by
    class, so the replacement is a subclass), only its block size changes:
    under TLS there is no sendfile, and small blocks cost a 100 MiB firmware
    download a large share of its throughput.
    """
    base = environ.get("wsgi.file_wrapper")
    if not isinstance(base, type):
        return
    wrapper = _WRAPPERS.get(base)
    if wrapper is None:
        wrapper = _WRAPPERS[base] = _large_block_wrapper(base)
    environ["wsgi.file_wrapper"] = wrapper


def _large_block_wrapper(base: type) -> type:
    class LargeBlocks(base):  # type: ignore[misc] # a subclass of the server's own class
        def __init__(self, filelike: Any, _blksize: int = 8192) -> None:
            super().__init__(filelike, STREAM_BLOCK)

    return LargeBlocks


def _inside(relative: Path) -> Path:
    """``relative`` under the repository directory, if it is a file there."""
    base = _base()
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
