"""``fwserver repo sweep`` speaks of durations as people do."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.update_server.conftest import FAST_KDF
from update_server.cli import main
from update_server.cli_repo import for_people
from update_server.setup import init_data_dir


@pytest.mark.parametrize(
    ("duration", "said"),
    [
        (timedelta(days=1), "1 day"),
        (timedelta(hours=2), "2 hours"),
        (timedelta(minutes=90), "1 hour 30 minutes"),
        (timedelta(days=30), "30 days"),
        (timedelta(minutes=10), "10 minutes"),
        (timedelta(days=2, hours=3, minutes=4), "2 days 3 hours"),
        (timedelta(0), "0 seconds"),
    ],
)
def test_durations_read_as_people_say_them(duration: timedelta, said: str) -> None:
    assert for_people(duration) == said


def test_sweep_says_one_day_not_a_timedelta(tmp_path: Path) -> None:
    data_dir = init_data_dir(tmp_path / "srv", kdf=FAST_KDF).config.data_dir
    result = CliRunner().invoke(main, ["repo", "sweep", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "expired 0 upload(s) open longer than 1 day\n" in result.stdout
    assert "0:00:00" not in result.stdout
