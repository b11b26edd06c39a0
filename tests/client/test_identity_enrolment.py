"""The enrolment token reaches ``fwclient register`` from a file or the environment, never argv.

Threat (R10): a token on the command line is visible to every user of the
device in ``ps`` and in shell histories; whoever reads it first registers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from client import cli
from client.device_api import TOKEN_ENV, enrolment_token
from client.errors import ClientError


def test_token_from_a_file_wins_over_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text("fwenrol_from-file\n")
    assert enrolment_token(file, {TOKEN_ENV: "fwenrol_env"}) == "fwenrol_from-file"


def test_token_from_the_environment(tmp_path: Path) -> None:
    assert enrolment_token(None, {TOKEN_ENV: " fwenrol_env "}) == "fwenrol_env"


def test_no_token_names_both_ways_to_give_one() -> None:
    with pytest.raises(ClientError, match=f"--token-file FILE or set {TOKEN_ENV}"):
        enrolment_token(None, {})


def test_register_takes_no_token_argument(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.main,
        ["register", "--state", str(tmp_path), "--server", "https://x", "--ca", __file__,
         "--token", "fwenrol_secret"],
    )  # fmt: skip
    assert result.exit_code == 2 and "No such option '--token'" in result.output
