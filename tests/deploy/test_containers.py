"""deploy/Dockerfile and deploy/compose.yaml, read as files (R6, R45).

Neither is built or run here: no container registry is reachable from CI
(deploy/README.md, "Containers"). What can be checked without one is: the
image installs every dependency from requirements.lock with its hash and
runs as its own user, never root; compose runs the server as that user
without capabilities, PostgreSQL behind it, and nginx with the published
repository alone, read only, from the server's data volume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return compose


def _instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_the_image_installs_the_locked_hashes_and_runs_unprivileged_r6() -> None:
    instructions = _instructions()
    installs = [line for line in instructions if "pip install" in line]
    assert installs and all("--no-deps" in line for line in installs)
    locked = [line for line in installs if "requirements.lock" in line]
    assert locked and all("--require-hashes" in line for line in locked)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users == ["fwupdate:fwupdate"], "the last stage's user, and no other"
    assert instructions[-1].startswith("CMD") and '"serve"' in instructions[-1]


def test_compose_runs_the_server_unprivileged_behind_nginx_on_postgresql_r6() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "fwserver", "nginx"}
    server = services["fwserver"]
    assert server["user"] == "10001:10001"
    assert server["cap_drop"] == ["ALL"] and server["read_only"] is True
    assert server["environment"]["FWSERVER_TRUSTED_PROXY_HOPS"] == "1"
    assert server["networks"] == ["backend"], "reached through nginx only"
    assert "ports" not in server and "ports" not in services["postgres"]
    assert _compose()["networks"]["backend"]["internal"] is True


def test_nginx_sees_the_repository_alone_read_only() -> None:
    nginx = _compose()["services"]["nginx"]
    [repository] = [v for v in nginx["volumes"] if isinstance(v, dict)]
    assert repository["source"] == "fwdata" and repository["read_only"] is True
    assert repository["volume"]["subpath"] == "data/repository"
    assert nginx["cap_drop"] == ["ALL"]
