"""``fwserver init``: atomic (I1), never over a data dir (I2), relative paths that hold (C1, D5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fwcommon import files
from tests.update_server.conftest import FAST_KDF
from update_server import setup
from update_server.cli import main
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.setup import SetupError, init_data_dir
from update_server.tls import CA_CERT_FILE, CERT_FILE, TLS_DIR

# R6: fwserver serve refuses root (test_serve_root); here its other rules are tested.
pytestmark = pytest.mark.usefixtures("unprivileged")


def _fwserver(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _siblings(data_dir: Path) -> list[str]:
    return sorted(path.name for path in data_dir.parent.iterdir())


def test_a_relative_data_dir_is_written_relative_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = init_data_dir(Path("srv"), kdf=FAST_KDF).config
    assert config.data_dir == tmp_path / "srv"
    settings = json.loads((tmp_path / "srv" / CONFIG_FILE).read_text())
    assert settings["database_url"] == "sqlite:///server.db"
    assert settings["hsm_pin_file"] == "hsm.pin"
    assert all(uri.startswith("fwhsm:hsm?label=") for uri in settings["online_keys"].values())
    assert str(tmp_path) not in json.dumps(settings), "nothing absolute: the dir can move"


def test_commands_from_another_directory_use_the_data_dirs_own_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: from a directory holding another ``srv/``, a new empty database answered."""
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    init_data_dir(Path("srv"), kdf=FAST_KDF)
    added = _fwserver("user", "add", "--data-dir", "srv", "--role", "release_manager", "mia")
    assert added.exit_code == 0, added.output

    (tmp_path / "b" / "srv").mkdir(parents=True)  # a same-named, empty directory
    monkeypatch.chdir(tmp_path / "b")
    listed = _fwserver("user", "list", "--data-dir", str(tmp_path / "a" / "srv"))
    assert listed.exit_code == 0, listed.output
    assert "mia" in listed.output
    assert list((tmp_path / "b" / "srv").iterdir()) == [], "nothing created here"


def test_a_moved_data_dir_still_works(tmp_path: Path) -> None:
    init_data_dir(tmp_path / "old", kdf=FAST_KDF)
    (tmp_path / "old").rename(tmp_path / "restored")
    restored = str(tmp_path / "restored")
    added = _fwserver("user", "add", "--data-dir", restored, "--role", "release_manager", "mia")
    assert added.exit_code == 0, added.output
    config = ServerConfig.load(tmp_path / "restored")
    assert config.database_url == f"sqlite:///{tmp_path / 'restored' / 'server.db'}"
    assert config.hsm_pin_file == tmp_path / "restored" / "hsm.pin"


@pytest.mark.parametrize(
    "command",
    [["user", "list"], ["user", "add", "--role", "release_manager", "mia"], ["renew"],
     ["repo", "sweep"], ["audit", "verify"], ["audit", "export", "--output", "-"]],
)  # fmt: skip
def test_no_command_creates_a_missing_database(tmp_path: Path, command: list[str]) -> None:
    """D5: a lost database is an error naming what to do, never a new empty one."""
    data_dir = init_data_dir(tmp_path / "srv", kdf=FAST_KDF).config.data_dir
    (data_dir / "server.db").unlink()
    result = CliRunner().invoke(main, command, env={"FWSERVER_DATA_DIR": str(data_dir)})
    assert result.exit_code == 1, result.output
    assert (
        f"error: database {data_dir / 'server.db'} does not exist:"
        " run 'fwserver init' or restore a backup"
    ) in result.stderr
    assert not (data_dir / "server.db").exists()


def test_serve_refuses_a_missing_database(tmp_path: Path) -> None:
    data_dir = init_data_dir(tmp_path / "srv", kdf=FAST_KDF).config.data_dir
    (data_dir / "server.db").unlink()
    result = _fwserver("serve", "--data-dir", str(data_dir), "--check")
    assert result.exit_code == 1
    assert "does not exist: run 'fwserver init' or restore a backup" in result.stderr
    assert not (data_dir / "server.db").exists()


def test_init_makes_the_tls_ca_and_the_first_certificate(tmp_path: Path) -> None:
    """The README's promise: ``tls/ca.crt`` exists right after init, for devices and fwsign."""
    data_dir = init_data_dir(tmp_path / "srv", kdf=FAST_KDF).config.data_dir
    assert (data_dir / TLS_DIR / CA_CERT_FILE).is_file()
    assert (data_dir / TLS_DIR / CERT_FILE).is_file()
    checked = _fwserver("serve", "--data-dir", str(data_dir), "--check")
    assert checked.exit_code == 0, checked.output
    assert "issued a TLS certificate" not in checked.output


def test_an_init_that_fails_midway_leaves_nothing_and_a_rerun_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """I1: a failure after the keys and the CA were made leaves no half-made data dir."""

    def broken(_engine: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(setup, "upgrade", broken)
    with pytest.raises(OSError, match="No space left"):
        init_data_dir(tmp_path / "srv", kdf=FAST_KDF)
    assert _siblings(tmp_path / "srv") == []
    monkeypatch.undo()
    assert init_data_dir(tmp_path / "srv", kdf=FAST_KDF).config.data_dir == tmp_path / "srv"


def test_an_init_that_fails_removes_the_sqlite_database_it_made_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """I1: the last step fails after the schema was made in a database outside the data dir."""
    real = files.atomic_write

    def broken(path: Path, data: bytes, *, mode: int = 0o644) -> None:
        if path.name == CONFIG_FILE:
            raise OSError(5, "Input/output error")
        real(path, data, mode=mode)

    monkeypatch.setattr(setup, "atomic_write", broken)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with pytest.raises(OSError, match="Input/output"):
        init_data_dir(tmp_path / "srv", database_url=url, kdf=FAST_KDF)
    assert _siblings(tmp_path / "srv") == []


def test_a_killed_init_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    leftover = tmp_path / ".srv.init-k1ll3d"
    (leftover / "hsm").mkdir(parents=True)
    result = _fwserver("init", "--data-dir", str(tmp_path / "srv"))
    assert result.exit_code == 0, result.output
    assert f"removed {leftover}, left by an interrupted 'fwserver init'" in result.stderr
    assert f"TLS CA for devices and fwsign (--ca): {tmp_path}/srv/tls/ca.crt" in result.stdout
    assert _siblings(tmp_path / "srv") == ["srv"]


def test_init_refuses_an_existing_data_dir_and_says_what_to_do(tmp_path: Path) -> None:
    """I2: never over the database and keys of a server."""
    init_data_dir(tmp_path / "srv", kdf=FAST_KDF)
    before = (tmp_path / "srv" / CONFIG_FILE).read_bytes()
    result = _fwserver("init", "--data-dir", str(tmp_path / "srv"))
    assert result.exit_code == 1
    assert "is already a server data directory: use it as it is" in result.stderr
    assert "move it aside" in result.stderr
    assert (tmp_path / "srv" / CONFIG_FILE).read_bytes() == before


def test_init_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "notes.txt").write_text("mine")
    with pytest.raises(SetupError, match="is not empty and is no server data directory"):
        init_data_dir(tmp_path / "srv", kdf=FAST_KDF)
    assert _siblings(tmp_path / "srv") == ["srv"]
    assert [path.name for path in (tmp_path / "srv").iterdir()] == ["notes.txt"]


def test_init_fills_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    init_data_dir(tmp_path / "srv", kdf=FAST_KDF)
    assert (tmp_path / "srv" / CONFIG_FILE).is_file()
    assert _siblings(tmp_path / "srv") == ["srv"]


def test_every_data_dir_option_reads_fwserver_data_dir() -> None:
    """``--help`` of each command can name the variable: every --data-dir declares it."""
    found = []

    def walk(command: object) -> None:
        for param in getattr(command, "params", []):
            if "--data-dir" in getattr(param, "opts", ()):
                found.append((getattr(command, "name", ""), param.envvar))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(main)
    assert len(found) >= 10
    assert {envvar for _name, envvar in found} == {"FWSERVER_DATA_DIR"}


def test_init_refuses_a_database_another_server_uses_and_changes_nothing(tmp_path: Path) -> None:
    """I2: a second init on a used database must not adopt its people and audit log."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    init_data_dir(tmp_path / "first", database_url=url, kdf=FAST_KDF)
    added = _fwserver(
        "user", "add", "--data-dir", str(tmp_path / "first"), "--role", "admin", "ada"
    )
    assert added.exit_code == 0, added.output
    before = (tmp_path / "shared.db").read_bytes()

    result = _fwserver("init", "--data-dir", str(tmp_path / "second"), "--database-url", url)

    assert result.exit_code == 1
    assert "already holds tables" in result.stderr
    assert "belongs to another server: nothing was changed" in result.stderr
    assert not (tmp_path / "second").exists()
    assert (tmp_path / "shared.db").read_bytes() == before
    listed = _fwserver("user", "list", "--data-dir", str(tmp_path / "first"))
    assert "ada" in listed.output
