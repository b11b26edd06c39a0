"""What ``fwserver restore`` refuses, each with a clear error and nothing written (A2, R1-R5).

One archive of a new server (SQLite: the checks are the archive's, not the
engine's) is rewritten member by member to make each attack; every refusal
exits 1 naming what was wrong, and leaves no data directory, no hidden
work directory and no database behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.clocks import FakeClock
from tests.update_server.conftest import FAST_KDF
from update_server.backup.archive import MANIFEST
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.setup import init_data_dir

Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerConfig, Path]:
    """A new server's data directory and its backup."""
    base = tmp_path_factory.mktemp("made")
    config = init_data_dir(base / "data", kdf=FAST_KDF).config
    archive = base / "server.tar.gz"
    run(FakeClock(), "backup", "--data-dir", str(config.data_dir), "-o", str(archive))
    return config, archive


def run(clock: FakeClock, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), obj=CommandClock(clock))


def members(archive: Path) -> Members:
    with tarfile.open(archive, "r:gz") as tar:
        return [(info, tar.extractfile(info).read() if info.isreg() else b"") for info in tar]  # type: ignore[union-attr]


def rewrite(source: Path, target: Path, change: Callable[[Members], Members]) -> Path:
    with tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in change(members(source)):
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return target


def relisted(items: Members, name: str, data: bytes) -> Members:
    """``items`` whose manifest lists ``name`` with ``data``'s hash (only the name is wrong)."""
    out = []
    for info, original in items:
        content = original
        if info.name == MANIFEST:
            body = json.loads(content)
            body["members"][name] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "mode": 0o600,
            }
            content = json.dumps(body).encode()
            info.size = len(content)
        out.append((info, content))
    return out


def restore(made: tuple[ServerConfig, Path], archive: Path, target: Path, *extra: str) -> Result:
    config, _ = made
    pin = ["--hsm-pin-file", str(config.data_dir / "hsm.pin")]
    return run(FakeClock(), "restore", str(archive), "--data-dir", str(target), *pin, *extra)


def assert_refused(result: Result, target: Path, words: str) -> None:
    assert result.exit_code == 1, result.output
    assert words in result.output, result.output
    assert not target.exists() or not any(target.iterdir())
    assert list(target.parent.glob(f".{target.name}.restore-*")) == []


def test_a_changed_byte_is_refused_by_its_hash_a2(
    made: tuple[ServerConfig, Path], tmp_path: Path
) -> None:
    def change(items: Members) -> Members:
        return [
            (info, data.replace(b'"', b"'", 1) if info.name == "database/users.jsonl" else data)
            for info, data in items
        ]

    tampered = rewrite(made[1], tmp_path / "tampered.tar.gz", change)
    target = tmp_path / "restored"
    assert_refused(restore(made, tampered, target), target, "database/users.jsonl")


def test_a_missing_member_is_refused_a2(made: tuple[ServerConfig, Path], tmp_path: Path) -> None:
    cut = rewrite(
        made[1],
        tmp_path / "cut.tar.gz",
        lambda items: [(i, d) for i, d in items if i.name != "files/secrets.key"],
    )
    target = tmp_path / "restored"
    assert_refused(
        restore(made, cut, target), target, "lacks member(s) its manifest lists: files/secrets.key"
    )


@pytest.mark.parametrize("name", ["files/../../escaped", "/tmp/escaped", "elsewhere/escaped"])
def test_a_path_out_of_the_data_directory_is_refused_a2(
    made: tuple[ServerConfig, Path], tmp_path: Path, name: str
) -> None:
    def change(items: Members) -> Members:
        extra = tarfile.TarInfo(name)
        extra.size = 5
        return relisted([(extra, b"owned"), *items], name, b"owned")

    bad = rewrite(made[1], tmp_path / "escape.tar.gz", change)
    target = tmp_path / "deep" / "restored"
    assert_refused(restore(made, bad, target), target, "outside the data directory")
    assert not (tmp_path / "escaped").exists()


def test_a_link_member_is_refused_a2(made: tuple[ServerConfig, Path], tmp_path: Path) -> None:
    def change(items: Members) -> Members:
        link = tarfile.TarInfo("files/hsm/keys/stolen.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return [*items[:-1], (link, b""), items[-1]]

    bad = rewrite(made[1], tmp_path / "link.tar.gz", change)
    target = tmp_path / "restored"
    assert_refused(restore(made, bad, target), target, "is a link")


def test_a_member_the_manifest_does_not_list_is_refused_a2(
    made: tuple[ServerConfig, Path], tmp_path: Path
) -> None:
    def change(items: Members) -> Members:
        extra = tarfile.TarInfo("files/extra.key")
        extra.size = 3
        return [(extra, b"key"), *items]

    bad = rewrite(made[1], tmp_path / "extra.tar.gz", change)
    target = tmp_path / "restored"
    assert_refused(restore(made, bad, target), target, "not in the manifest")


def test_a_non_empty_data_directory_is_refused_and_left_as_it_was_r1(
    made: tuple[ServerConfig, Path], tmp_path: Path
) -> None:
    target = tmp_path / "restored"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = restore(made, made[1], target)
    assert result.exit_code == 1 and "is not empty" in result.output, result.output
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_a_database_that_holds_tables_is_refused_r1(
    made: tuple[ServerConfig, Path], tmp_path: Path
) -> None:
    used = tmp_path / "used.db"
    with sqlite3.connect(used) as connection:
        connection.execute("CREATE TABLE users (id INTEGER)")
    target = tmp_path / "restored"
    result = restore(made, made[1], target, "--database-url", f"sqlite:///{used}")
    assert_refused(result, target, "exists: a backup is restored into a new database only")


def test_without_the_token_pin_nothing_is_restored_r5(
    made: tuple[ServerConfig, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FWSERVER_HSM_PIN", raising=False)
    target = tmp_path / "restored"
    result = run(FakeClock(), "restore", str(made[1]), "--data-dir", str(target))
    assert_refused(result, target, "the token's user PIN is not in the archive")


def test_a_file_that_is_no_archive_is_refused_a2(
    made: tuple[ServerConfig, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    target = tmp_path / "restored"
    assert_refused(restore(made, junk, target), target, "not a readable backup archive")
