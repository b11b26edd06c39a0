"""The server's parts are wired by explicit imports: a missing part fails the start.

A server that skipped a missing module would fail open: without the renewal
thread the timestamp expires and every device sees a freeze; without the
auth or audit blueprint a security function is silently absent. Each case
runs in a fresh interpreter with the module made unimportable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from update_server.config import ServerConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60
_START = """
import os, sys
sys.modules[sys.argv[1]] = None
from update_server import wsgi
wsgi.create(sys.argv[2])
print("started", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize(
    "module",
    [
        "update_server.publication.renewal",
        "update_server.alerts.worker",
        "update_server.auth.views",
        "update_server.audit.views",
        "update_server.publication.views",
        "update_server.distribution",
        "update_server.observability.views",
        "update_server.freeze.views",
        "update_server.web.deployment_pages",
        "update_server.web.fleet_pages",
        "update_server.web.audit_pages",
        "update_server.web.alert_pages",
    ],
)
def test_a_server_missing_a_part_does_not_start_fail_open(
    config: ServerConfig, module: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _START, module, str(config.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert "started" not in result.stdout
    assert result.returncode != 0
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr
    assert module.rpartition(".")[2] in result.stderr
