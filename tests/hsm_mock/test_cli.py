"""``fwhsm`` with click's CliRunner: thin commands, clear errors, nothing changed on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hsm_mock import Token, parse_uri
from hsm_mock.cli import main
from tests.hsm_mock.helpers import SO_PIN, USER_PIN, snapshot_files

PIN_ENV = {"FWHSM_SO_PIN": SO_PIN, "FWHSM_USER_PIN": USER_PIN}


@pytest.fixture(autouse=True)
def _no_pins_from_the_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FWHSM_SO_PIN", "FWHSM_USER_PIN", "FWHSM_NEW_USER_PIN", "FWHSM_NEW_SO_PIN"):
        monkeypatch.delenv(name, raising=False)


def fwhsm(*args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], env=env, input=stdin)


def _failed_cleanly(result: Result, message: str) -> None:
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert SO_PIN not in result.output and USER_PIN not in result.output


@pytest.fixture
def cli_token(tmp_path: Path) -> Path:
    token_dir = tmp_path / "token"
    result = fwhsm("init", "--token", token_dir, "--kdf-memory-kib", "8192", env=PIN_ENV)
    assert result.exit_code == 0, result.output
    return token_dir


def _generate(token_dir: Path, label: str, purpose: str, pin: str = USER_PIN) -> Result:
    return fwhsm(
        "generate", "--token", token_dir, "--label", label, "--purpose", purpose,
        "--algorithm", "ecdsa-p256", env={"FWHSM_USER_PIN": pin},
    )  # fmt: skip


def test_cli_init_generate_list_export_public(cli_token: Path) -> None:
    assert _generate(cli_token, "root-1", "root").exit_code == 0
    listed = fwhsm("list", "--token", cli_token)
    assert listed.exit_code == 0
    assert listed.stdout.split()[:3] == ["root-1", "root", "ecdsa-p256"]
    exported = fwhsm("export-public", "--token", cli_token, "--label", "root-1")
    key = json.loads(exported.stdout)
    assert set(key) == {"keyid", "keytype", "scheme", "keyval"}
    assert (key["keytype"], key["scheme"]) == ("ecdsa", "ecdsa-sha2-nistp256")
    assert key["keyid"] == Token.open(cli_token).key("root-1").keyid
    assert "PRIVATE" not in exported.output + listed.output


def test_cli_list_json(cli_token: Path) -> None:
    _generate(cli_token, "ts", "timestamp")
    rows = json.loads(fwhsm("list", "--token", cli_token, "--json").stdout)
    assert [(row["label"], row["purpose"]) for row in rows] == [("ts", "timestamp")]


def test_cli_uri_names_the_key(cli_token: Path) -> None:
    _generate(cli_token, "snap", "snapshot")
    uri = fwhsm("uri", "--token", cli_token, "--label", "snap").stdout.strip()
    assert parse_uri(uri) == (cli_token.absolute(), "snap")


def test_cli_init_prompts_hidden_with_confirmation(tmp_path: Path) -> None:
    stdin = f"{SO_PIN}\n{SO_PIN}\n{USER_PIN}\n{USER_PIN}\n"
    result = fwhsm("init", "--token", tmp_path / "t", "--kdf-memory-kib", "8192", stdin=stdin)
    assert result.exit_code == 0, result.output
    assert SO_PIN not in result.output and USER_PIN not in result.output
    assert Token.open(tmp_path / "t").login(USER_PIN)


def test_cli_no_default_pin_init_without_pins_names_the_variable_to_set(tmp_path: Path) -> None:
    """No default PIN (R47): with no terminal and no PIN variable, init says what to set."""
    result = fwhsm("init", "--token", tmp_path / "t", "--kdf-memory-kib", "8192", stdin="")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        "fwhsm: error: no terminal to ask for the new SO PIN",
        "fwhsm: hint: set FWHSM_SO_PIN, or run the command in a terminal",
    ]
    assert "Aborted" not in result.output
    assert not (tmp_path / "t").exists()
    only_so = fwhsm("init", "--token", tmp_path / "t", env={"FWHSM_SO_PIN": SO_PIN}, stdin="")
    assert "fwhsm: hint: set FWHSM_USER_PIN, or run the command in a terminal" in only_so.stderr
    assert not (tmp_path / "t").exists()


def test_cli_errors_are_one_line_in_the_house_style_and_keep_their_exit_codes(
    cli_token: Path,
) -> None:
    """A wrong PIN keeps its documented status (3) and reads 'fwhsm: error: ...'."""
    result = _generate(cli_token, "k", "root", pin="wrong-pin-0000")
    assert result.exit_code == 3
    [line] = result.stderr.splitlines()
    assert line.startswith("fwhsm: error: ")


def test_cli_help_names_the_pin_variables() -> None:
    shown = fwhsm("--help").stdout
    for name in ("FWHSM_SO_PIN", "FWHSM_USER_PIN", "FWHSM_NEW_USER_PIN", "FWHSM_NEW_SO_PIN"):
        assert name in shown


def test_cli_init_rejects_short_pin_and_creates_nothing(tmp_path: Path) -> None:
    env = {**PIN_ENV, "FWHSM_USER_PIN": "12345"}
    result = fwhsm("init", "--token", tmp_path / "t", "--kdf-memory-kib", "8192", env=env)
    _failed_cleanly(result, "user PIN must be")
    assert not (tmp_path / "t").exists()


def test_cli_init_refuses_existing_token(cli_token: Path) -> None:
    before = snapshot_files(cli_token)
    result = fwhsm("init", "--token", cli_token, "--kdf-memory-kib", "8192", env=PIN_ENV)
    _failed_cleanly(result, "already a token")
    assert snapshot_files(cli_token) == before


def test_cli_kdf_memory_below_floor_refused(tmp_path: Path) -> None:
    result = fwhsm("init", "--token", tmp_path / "t", "--kdf-memory-kib", "64", env=PIN_ENV)
    assert result.exit_code == 2
    assert not (tmp_path / "t").exists()


def test_cli_wrong_pin_exits_3_and_generates_nothing(cli_token: Path) -> None:
    result = _generate(cli_token, "root-1", "root", pin="wrong-pin-9")
    _failed_cleanly(result, "user PIN incorrect; 4 attempt(s) left")
    assert result.exit_code == 3
    assert not (cli_token / "keys" / "root-1.json").exists()


def test_cli_bad_input_exits_non_zero_and_changes_nothing(cli_token: Path) -> None:
    _generate(cli_token, "root-1", "root")
    before = snapshot_files(cli_token)
    bad_purpose = _generate(cli_token, "k2", "firmware")
    assert bad_purpose.exit_code == 2 and "firmware" in bad_purpose.stderr
    _failed_cleanly(_generate(cli_token, "root-1", "root"), "already exists")
    _failed_cleanly(_generate(cli_token, "../k", "root"), "invalid key label")
    _failed_cleanly(
        fwhsm("export-public", "--token", cli_token, "--label", "nope"), "no key labelled"
    )
    # Wrong PINs are the one failure that must change the token: they are counted.
    assert {k: v for k, v in snapshot_files(cli_token).items() if k != "usage.log"} == {
        k: v for k, v in before.items() if k != "usage.log"
    }


def test_cli_not_a_token(tmp_path: Path) -> None:
    _failed_cleanly(fwhsm("list", "--token", tmp_path), "is not a fwhsm token")


def test_cli_lockout_then_so_unlock(cli_token: Path) -> None:
    for _ in range(5):
        _generate(cli_token, "k", "root", pin="wrong-pin-9")
    locked = _generate(cli_token, "k", "root")
    _failed_cleanly(locked, "fwhsm unlock")
    assert locked.exit_code == 4
    assert "locked: yes" in fwhsm("status", "--token", cli_token).stdout
    env = {"FWHSM_SO_PIN": SO_PIN, "FWHSM_NEW_USER_PIN": "fresh-user-pin"}
    assert fwhsm("unlock", "--token", cli_token, env=env).exit_code == 0
    assert _generate(cli_token, "k", "root", pin="fresh-user-pin").exit_code == 0


def test_cli_change_pin(cli_token: Path) -> None:
    env = {"FWHSM_USER_PIN": USER_PIN, "FWHSM_NEW_USER_PIN": "fresh-user-pin"}
    assert fwhsm("change-pin", "--token", cli_token, env=env).exit_code == 0
    env = {"FWHSM_SO_PIN": SO_PIN, "FWHSM_NEW_SO_PIN": "fresh-so-pin"}
    assert fwhsm("change-pin", "--token", cli_token, "--so", env=env).exit_code == 0
    assert _generate(cli_token, "k", "root", pin="fresh-user-pin").exit_code == 0


def test_cli_log_verify_names_first_bad_seq(cli_token: Path) -> None:
    _generate(cli_token, "k", "root")
    assert "usage log intact: 2 entries" in fwhsm("log", "verify", "--token", cli_token).stdout
    log = cli_token / "usage.log"
    log.write_bytes(log.read_bytes().replace(b'"purpose":"root"', b'"purpose":"audit"'))
    result = fwhsm("log", "verify", "--token", cli_token)
    _failed_cleanly(result, "entry 2 was altered")
    assert result.exit_code == 6
