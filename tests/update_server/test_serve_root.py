"""``fwserver serve`` refuses to run as root (R6; ``cli_serve`` U1, U2).

The refusal comes first: with effective user id 0 the command reads and
opens nothing (no database connection, so no -wal or -shm file made root's;
no TLS renewal) and says how to run it as an unprivileged user. The real
process is tested as root where the tests run as root (CI), and the same
command is accepted as the unprivileged user the harness runs servers as.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unprivileged import as_server_user, hand_over
from tests.update_server.conftest import FAST_KDF
from update_server import cli_serve
from update_server.cli import main
from update_server.setup import init_data_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the tests do not run as root here")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with its SQLite database inside, as ``fwserver init`` makes it.

    Not the ``config`` fixture's: the refusal comes before any database, so
    one leg is enough, and the unprivileged user must own the database too.
    """
    return init_data_dir(tmp_path / "data", kdf=FAST_KDF).config.data_dir


def _fwserver(*args: str, server_user: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSERVER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", "from update_server.cli import main; main()", *args]
    return subprocess.run(
        as_server_user(argv) if server_user else argv,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _tree(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Every path in ``directory`` with its owner, size and modification time."""
    return {
        str(path.relative_to(directory)): (stat.st_uid, stat.st_size, stat.st_mtime_ns)
        for path in (directory, *directory.rglob("*"))
        for stat in [path.lstat()]
    }


def test_the_refusal_says_how_to_run_unprivileged_r6() -> None:
    refusal = cli_serve.root_refusal(0, Path("/var/lib/fwupdate"))
    assert refusal is not None
    assert refusal.startswith("refusing to run as root (R6)")
    assert "deploy/systemd/fwserver.service does (User=fwupdate)" in refusal
    assert refusal.endswith("runuser -u fwupdate -- fwserver serve --data-dir /var/lib/fwupdate")
    assert cli_serve.root_refusal(1000, Path("/var/lib/fwupdate")) is None


def test_serve_as_root_stops_before_anything_is_read_r6(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever user runs the tests: uid 0 is refused before the configuration is read."""
    called: list[str] = []
    monkeypatch.setattr(cli_serve, "effective_uid", lambda: 0)
    monkeypatch.setattr(cli_serve.ServerConfig, "load", lambda *_a: called.append("load"))
    monkeypatch.setattr(cli_serve, "run", lambda _plan: called.append("run"))
    for extra in ([], ["--check"]):
        result = CliRunner().invoke(main, ["serve", "--data-dir", str(data_dir), *extra])
        assert result.exit_code == 1
        assert result.stderr.startswith("fwserver: error: refusing to run as root (R6)")
    assert called == []


@AS_ROOT
def test_the_real_command_as_root_exits_1_and_leaves_the_data_dir_as_it_was_r6(
    data_dir: Path,
) -> None:
    before = _tree(data_dir)
    result = _fwserver("serve", "--data-dir", str(data_dir), "--port", "0")
    assert result.returncode == 1, result.stderr
    assert "refusing to run as root (R6)" in result.stderr
    assert "runuser -u fwupdate -- fwserver serve" in result.stderr
    assert "Traceback" not in result.stderr
    assert _tree(data_dir) == before, "nothing opened, made or renewed"


def test_the_same_command_as_an_unprivileged_user_is_accepted_r6(data_dir: Path) -> None:
    """The user the harness runs servers as (tests.unprivileged) passes the check."""
    hand_over(data_dir)
    result = _fwserver("serve", "--data-dir", str(data_dir), "--check", server_user=True)
    assert result.returncode == 0, result.stderr
    assert "CA certificate for clients:" in result.stdout
    assert "refusing" not in result.stderr
