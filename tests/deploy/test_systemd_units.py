"""The systemd units of deploy/systemd/ (R6: the server and the device agent run unprivileged).

Each unit runs its program as its own user in a sandbox: a read-only system
(``ProtectSystem=strict``) with only its data directory writable, private
``/tmp``, no home directories, no new privileges and no capabilities at all,
restarted when it fails. The server's system-call filter lets ``adjtimex``
through, read only, so that the status can say whether the clock is
synchronized (``observability.clock_sync``). Where ``systemd-analyze`` is
installed, ``systemd-analyze verify`` checks both files (an unknown key, a
bad value) with the programs pointed at this environment's scripts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
#: unit -> (its program as installed, its user, its data directory)
EXPECTED = {
    "fwserver.service": ("/opt/fwupdate/bin/fwserver", "fwupdate", "/var/lib/fwupdate"),
    "fwclient.service": ("/opt/fwclient/bin/fwclient", "fwclient", "/var/lib/fwclient"),
}


def _settings(unit: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit file, repeated keys in order."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("unit", sorted(EXPECTED))
def test_the_unit_runs_its_program_unprivileged_in_a_sandbox_r6(unit: str) -> None:
    program, user, data_dir = EXPECTED[unit]
    settings = _settings(unit)
    assert settings["ExecStart"][0].startswith(f"{program} ")
    assert settings["User"] == [user] and user != "root"
    assert settings["UMask"][0] in ("0077", "0027"), "nothing for others"
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ReadWritePaths"] == [data_dir], "the data directory, nothing else"
    for flag in ("PrivateTmp", "ProtectHome", "NoNewPrivileges", "RestrictSUIDSGID"):
        assert settings[flag] == ["yes"], flag
    assert settings["CapabilityBoundingSet"] == [""], "no capability at all"
    assert settings["AmbientCapabilities"] == [""]
    assert settings["Restart"] == ["on-failure"]
    assert "time-sync.target" in settings["After"][0]


def test_the_server_unit_binds_loopback_and_may_read_the_clocks_state() -> None:
    settings = _settings("fwserver.service")
    assert "--host 127.0.0.1" in settings["ExecStart"][0], "nginx is in front"
    assert "adjtimex" in settings["SystemCallFilter"][0].split()
    assert "ProtectClock" not in settings, "its filter would deny adjtimex (clock_sync C3)"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (not required: the units' content is tested above)",
)
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    """``verify`` needs the programs to exist: they are pointed at this environment's."""
    bindir = Path(sys.executable).parent
    for unit, (program, _user, _dir) in EXPECTED.items():
        text = (UNITS / unit).read_text().replace(program, str(bindir / Path(program).name))
        (tmp_path / unit).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / u) for u in EXPECTED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
