"""The baseline of the ``timestamp.json`` benchmark: a minimal Flask app, same gunicorn.

Run by ``benchmarks.server`` as ``python -m benchmarks.server_baseline DATA_DIR``.
It goes through ``update_server.serve`` itself (``prepare`` then ``run``, the
code behind ``fwserver serve``) with only the app factory swapped, so the
gunicorn settings are the server's by construction: the same bind address,
worker count (from the data directory's configuration), gthread threads,
TLS certificate, key and minimum version, timeouts and log settings. It
prints ``serving URL`` and the CA line as ``fwserver serve`` does.

The app answers ``GET /metadata/timestamp.json`` with the bytes of the
published file, read once at start and served from memory: no database, no
access rule, no file read, no ETag. The difference to ``fwserver`` is what
our own request handling costs. It also takes ``PUT /discard``, reading the
body in the chunks the upload view reads and dropping it: what receiving
an upload over gunicorn and TLS costs before any hashing or writing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flask import Flask, Response, request

from update_server.config import ServerConfig
from update_server.publication.upload import CHUNK_BYTES
from update_server.serve import prepare, run

TIMESTAMP = "metadata/timestamp.json"


def minimal_app(body: bytes) -> Flask:
    app = Flask(__name__, static_folder=None)

    @app.get(f"/{TIMESTAMP}")
    def timestamp() -> Response:
        return Response(body, mimetype="application/json")

    @app.put("/discard")
    def discard() -> Response:
        # The transport alone: the body read as the upload view reads it, then dropped.
        total = 0
        while chunk := request.stream.read(CHUNK_BYTES):
            total += len(chunk)
        return Response(str(total).encode(), mimetype="text/plain")

    @app.get("/api/v1/health")
    def health() -> Response:
        return Response(b'{"status": "ok"}', mimetype="application/json")

    return app


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0])
    config = ServerConfig.load(data_dir).with_changes(port=0)
    plan = prepare(config, host_given=False)
    body = (config.repository_dir / TIMESTAMP).read_bytes()
    run(plan, app_factory=lambda _config: minimal_app(body))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
