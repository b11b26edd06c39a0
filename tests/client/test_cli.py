"""``fwclient``: thin commands, exit 0 or 1, one line naming the event, no traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from client import cli, provisioning
from client.state import StateDir
from client.update import Remote
from repo_metadata.authorization import Authorization, sign
from tests.client.sim import DEVICE, MODEL, Sim, event_types, sha256

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTHY = f"{sys.executable} -c 'raise SystemExit(0)'"
UNHEALTHY = f"{sys.executable} -c 'raise SystemExit(1)'"


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def root_file(tmp_path: Path, sim: Sim) -> Path:
    file = tmp_path / "1.root.json"
    file.write_bytes(sim.root(1))
    return file


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    file = tmp_path / "ca.pem"
    file.write_text("not used: the simulated network stands in for HTTPS\n")
    return file


@pytest.fixture
def state_dir(tmp_path: Path, root_file: Path) -> Path:
    path = tmp_path / "device"
    result = fwclient(
        "provision", "--state", str(path), "--root", str(root_file),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def online(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> Sim:
    """The CLI's network is the simulated repository."""
    monkeypatch.setattr(cli, "_remote", lambda *_args: Remote("https://updates.test", sim))
    return sim


def fwclient(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def one_line_error(result: Result, event: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fwclient: {event}: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def server_args(state_dir: Path, ca: Path) -> list[str]:
    return ["--state", str(state_dir), "--server", "https://updates.test", "--ca", str(ca)]


# -- provision --------------------------------------------------------------------------


def test_provision_writes_a_read_only_root_and_the_identity(
    state_dir: Path, root_file: Path
) -> None:
    state = StateDir(state_dir)
    assert state.trusted_root.read_bytes() == root_file.read_bytes()
    assert state.trusted_root.stat().st_mode & 0o222 == 0
    assert (state.identity().device_id, state.identity().hardware_model) == (DEVICE, MODEL)
    assert event_types(state) == ["provisioned"]


def test_provision_seeds_the_time_floor_with_the_factory_clock_r52(
    tmp_path: Path, root_file: Path
) -> None:
    """R52, TUF freeze: a device never trusts a clock older than its own provisioning."""
    before = datetime.now(UTC)
    result = fwclient(
        "provision", "--state", str(tmp_path / "d"), "--root", str(root_file),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    floor = StateDir(tmp_path / "d").time_floor()
    assert floor is not None
    assert max(before, provisioning.BUILT) <= floor <= max(after, provisioning.BUILT)


def test_provision_with_an_unexpired_root_warns_of_nothing(tmp_path: Path, root_file: Path) -> None:
    result = fwclient(
        "provision", "--state", str(tmp_path / "d"), "--root", str(root_file),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    assert (result.exit_code, result.stderr) == (0, "")


def test_provision_with_an_expired_root_warns_and_still_provisions_tuf_freeze(
    tmp_path: Path, root_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TUF freeze (5.3.10): a root expired at the factory's clock stops every update until
    a newer root is published; the device is provisioned (it takes newer roots over the
    chain), and the factory is told."""
    expires = Metadata.from_bytes(root_file.read_bytes()).signed.expires
    factory_clock = max(expires, provisioning.BUILT) + timedelta(days=1)
    monkeypatch.setattr(cli, "_now", lambda: factory_clock)
    result = fwclient(
        "provision", "--state", str(tmp_path / "d"), "--root", str(root_file),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"fwclient: warning: the root metadata expired on {expires:%Y-%m-%d %H:%M:%S}Z:"
        " the device will refuse updates until a newer root is published (provisioned"
        " anyway: the device takes newer roots over the signed root chain)"
    ]
    assert StateDir(tmp_path / "d").trusted_root.read_bytes() == root_file.read_bytes()
    assert "provisioned" in result.stdout


def test_expired_root_warning_starts_at_the_expiry_and_counts_the_build_time(
    root_file: Path,
) -> None:
    """The device checks expiry no earlier than its floor: max(clock, build time)."""
    root = Metadata.from_bytes(root_file.read_bytes()).signed
    just_before = root.expires - timedelta(seconds=1)
    assert provisioning.expired_root_warning(root, now=just_before, built=just_before) is None
    assert provisioning.expired_root_warning(root, now=root.expires, built=just_before)
    assert provisioning.expired_root_warning(root, now=just_before, built=root.expires)


def test_provision_refuses_to_replace_an_existing_device(
    state_dir: Path, tmp_path: Path, sim: Sim
) -> None:
    other = Sim(tmp_path / "other")
    root = tmp_path / "other-root.json"
    root.write_bytes(other.root(1))
    result = fwclient(
        "provision", "--state", str(state_dir), "--root", str(root),
        "--hardware-model", MODEL, "--device-id", "pump-0002",
    )  # fmt: skip
    assert "already provisioned" in one_line_error(result, "error")
    assert StateDir(state_dir).trusted_root.read_bytes() == sim.root(1)


def test_provision_refuses_a_root_that_is_not_signed_by_itself(
    tmp_path: Path, root_file: Path
) -> None:
    md = Metadata.from_bytes(root_file.read_bytes())
    md.signed.version = 7  # signatures no longer match
    forged = tmp_path / "forged.json"
    forged.write_bytes(md.to_bytes())
    result = fwclient(
        "provision", "--state", str(tmp_path / "d"), "--root", str(forged),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    assert "not a valid signed root" in one_line_error(result, "error")
    assert not (tmp_path / "d" / "provisioned" / "root.json").exists()


def test_provision_refuses_a_bad_device_id(tmp_path: Path, root_file: Path) -> None:
    result = fwclient(
        "provision", "--state", str(tmp_path / "d"), "--root", str(root_file),
        "--hardware-model", MODEL, "--device-id", "../etc",
    )  # fmt: skip
    one_line_error(result, "error")
    assert not (tmp_path / "d" / "provisioned" / "root.json").exists()


def test_commands_on_an_unprovisioned_state_say_so(tmp_path: Path) -> None:
    result = fwclient("status", "--state", str(tmp_path / "nothing"))
    assert "fwclient provision" in one_line_error(result, "error")


# -- check, update, boot ------------------------------------------------------------------


def test_update_then_boot_with_a_healthy_check(state_dir: Path, ca: Path, online: Sim) -> None:
    online.release("1.0.0", 1)
    result = fwclient("update", *server_args(state_dir, ca), "--health-check", HEALTHY)
    assert result.exit_code == 0, result.output
    assert "1.0.0" in result.stdout
    assert "committed" in result.stdout
    assert StateDir(state_dir).floor().installed_version == "1.0.0"


def test_boot_with_a_truncated_boot_environment_boots_the_verified_slot_r33(
    state_dir: Path, ca: Path, online: Sim
) -> None:
    """R33: a truncated bootenv.json never stops ``fwclient boot``."""
    online.release("1.0.0", 1)
    assert fwclient("update", *server_args(state_dir, ca), "--boot").exit_code == 0
    env = Path(state_dir, "bootenv.json")
    env.write_bytes(env.read_bytes()[:10])
    result = fwclient("boot", "--state", str(state_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("slot b: booted: firmware 1.0.0 verified")
    assert event_types(StateDir(state_dir))[-2:] == ["integrity_failure", "booted"]


def test_check_exits_0_and_names_the_release(state_dir: Path, ca: Path, online: Sim) -> None:
    online.release("1.0.0", 1)
    result = fwclient("check", *server_args(state_dir, ca))
    assert result.exit_code == 0, result.output
    assert "pump-x100/fw-1.0.0.bin version 1.0.0" in result.stdout


def test_a_failing_health_check_falls_back_and_exits_1(
    state_dir: Path, ca: Path, online: Sim
) -> None:
    online.release("1.0.0", 1)
    assert fwclient("update", *server_args(state_dir, ca), "--boot").exit_code == 0
    online.release("2.0.0", 2)
    result = fwclient(
        "update", *server_args(state_dir, ca), "--tries", "1", "--health-check", UNHEALTHY
    )
    one_line_error(result, "rolled_back")
    assert StateDir(state_dir).floor().installed_version == "1.0.0"


def test_an_attack_is_one_line_naming_the_event(state_dir: Path, ca: Path, online: Sim) -> None:
    online.release("1.0.0", 1)
    assert fwclient("update", *server_args(state_dir, ca), "--boot").exit_code == 0
    online.publish()
    assert fwclient("check", *server_args(state_dir, ca)).exit_code == 0
    online.replay(1)
    line = one_line_error(fwclient("update", *server_args(state_dir, ca)), "rollback_attack")
    assert "older than what this device already trusts" in line


def test_plain_http_is_refused(state_dir: Path, ca: Path) -> None:
    args = ["--state", str(state_dir), "--server", "http://updates.test", "--ca", str(ca)]
    assert "HTTPS only" in one_line_error(fwclient("check", *args), "error")


def test_boot_without_firmware_enters_failsafe_and_exits_1(state_dir: Path) -> None:
    line = one_line_error(fwclient("boot", "--state", str(state_dir)), "failsafe_entered")
    assert "no slot holds verified firmware" in line


def test_run_polls_a_bounded_number_of_times(state_dir: Path, ca: Path, online: Sim) -> None:
    online.release("1.0.0", 1)
    result = fwclient("run", *server_args(state_dir, ca), "--max-polls", "2", "--interval", "0.01")
    assert result.exit_code == 0, result.output
    assert event_types(StateDir(state_dir))[-3:] == ["installed", "updated", "no_update"]


# -- status, verify, log verify -----------------------------------------------------------


def test_status_verify_and_log_verify(state_dir: Path, ca: Path, online: Sim) -> None:
    online.release("1.0.0", 1)
    assert fwclient("update", *server_args(state_dir, ca), "--boot").exit_code == 0
    status = fwclient("status", "--state", str(state_dir), "--json")
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert (report["running_version"], report["slot"], report["mode"]) == ("1.0.0", "b", "normal")
    assert report["metadata_expires"]["timestamp"] is not None
    text = fwclient("status", "--state", str(state_dir)).stdout
    assert "running_version: 1.0.0" in text
    assert "slots.b: 1.0.0 (security version 1), " in text
    assert "pending: none" in text and "damaged: none" in text
    verified = fwclient("verify", "--state", str(state_dir))
    assert verified.exit_code == 0 and "verified" in verified.stdout
    logged = fwclient("log", "verify", "--state", str(state_dir))
    assert logged.exit_code == 0 and "entries" in logged.stdout


def test_status_with_a_truncated_boot_environment_prints_everything_and_exits_0_r33(
    state_dir: Path, ca: Path, online: Sim
) -> None:
    """R33, R37: until the next boot rebuilds bootenv.json, status still reports, exit 0."""
    online.release("1.0.0", 1)
    assert fwclient("update", *server_args(state_dir, ca), "--boot").exit_code == 0
    env = Path(state_dir, "bootenv.json")
    env.write_bytes(env.read_bytes()[:10])
    shown = fwclient("status", "--state", str(state_dir), "--json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert (report["slot"], report["mode"], report["running_version"]) == (None, None, None)
    assert (report["installed_version"], report["slots"]["b"]["version"]) == ("1.0.0", "1.0.0")
    assert "the next boot rebuilds it" in report["damaged"]["bootenv.json"]
    text = fwclient("status", "--state", str(state_dir))
    assert text.exit_code == 0, text.output
    assert "damaged.bootenv.json: " in text.stdout and "installed_version: 1.0.0" in text.stdout
    assert "running_version: none, or unknown: see 'damaged'" in text.stdout
    assert fwclient("boot", "--state", str(state_dir)).exit_code == 0
    after = json.loads(fwclient("status", "--state", str(state_dir), "--json").stdout)
    assert (after["slot"], after["running_version"], after["damaged"]) == ("b", "1.0.0", {})


def test_status_text_is_key_value_lines_without_none_or_dicts(state_dir: Path) -> None:
    """A person reads 'pending: none', never Python's None or a dict literal."""
    result = fwclient("status", "--state", str(state_dir))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(": " in line for line in lines), lines
    assert "None" not in result.stdout and "{" not in result.stdout and "null" not in result.stdout
    assert "last_update: never" in lines and "slots.a: empty" in lines
    assert "running_version: none" in lines
    assert "metadata_expires.timestamp: not cached" in lines


def test_verify_names_a_corrupted_running_firmware(state_dir: Path, ca: Path, online: Sim) -> None:
    online.release("1.0.0", 1)
    assert fwclient("update", *server_args(state_dir, ca), "--boot").exit_code == 0
    image = StateDir(state_dir).slot_image("b")
    data = bytearray(image.read_bytes())
    data[10] ^= 1
    image.write_bytes(bytes(data))
    one_line_error(fwclient("verify", "--state", str(state_dir)), "bad_hash")


def test_log_verify_finds_an_edited_entry(state_dir: Path) -> None:
    log = StateDir(state_dir).events.path
    log.write_text(log.read_text().replace(DEVICE, "pump-9999"))
    line = one_line_error(fwclient("log", "verify", "--state", str(state_dir)), "integrity_failure")
    assert "entry 1" in line


# -- the real process ---------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_stops_cleanly_on_sigterm(state_dir: Path, ca: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    argv = [sys.executable, "-c", "from client.cli import main; main()", "run"]
    server = f"https://127.0.0.1:{closed_port()}"
    argv += ["--state", str(state_dir), "--server", server, "--ca", str(ca)]
    argv += ["--backoff", "3600", "--timeout", "2"]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    state = StateDir(state_dir)
    deadline = time.monotonic() + 20
    while "unreachable" not in event_types(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "unreachable" in event_types(state), "the first poll did not fail as expected"
    started = datetime.now(UTC)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert (datetime.now(UTC) - started).total_seconds() < 5
    assert "SIGTERM: stopping" in stderr
    assert "Traceback" not in stderr
    assert "stopped after 1 poll(s)" in stdout


def test_update_waits_for_an_authorization_then_installs_with_the_file_r9_r58(
    state_dir: Path, ca: Path, online: Sim, tmp_path: Path
) -> None:
    """Exit 0 while waiting; the technician's file installs it; the file is refused elsewhere."""
    key = CryptoSigner.generate_ed25519()
    online.trust_authorization_key(key)
    path = online.release("2.0.0", 2, requires_authorization=True)
    waiting = fwclient("update", *server_args(state_dir, ca))
    assert waiting.exit_code == 0, waiting.output
    assert "needs a technician's authorization" in waiting.output
    issued = datetime.now(UTC).replace(microsecond=0)
    document = sign(
        Authorization(
            device_id=DEVICE,
            target_path=path,
            sha256=sha256(online.images[path]),
            nonce="7c" * 32,
            issued=issued,
            expires=issued + timedelta(minutes=15),
            technician="tom",
        ),
        key,
    )
    file = tmp_path / "authorization.json"
    file.write_bytes(document.to_bytes())
    installed = fwclient("update", *server_args(state_dir, ca), "--authorization", str(file))
    assert installed.exit_code == 0, installed.output
    assert "in slot b" in installed.output
    other = tmp_path / "pump-0002"
    provisioned = fwclient(
        "provision", "--state", str(other), "--root", str(state_dir / "provisioned" / "root.json"),
        "--hardware-model", MODEL, "--device-id", "pump-0002",
    )  # fmt: skip
    assert provisioned.exit_code == 0, provisioned.output
    refused = fwclient("update", *server_args(other, ca), "--authorization", str(file))
    one_line_error(refused, "authorization_wrong_device")


def test_update_with_a_malformed_authorization_file_says_so_and_changes_nothing(
    state_dir: Path, ca: Path, online: Sim, tmp_path: Path
) -> None:
    file = tmp_path / "authorization.json"
    file.write_text('{"signed": {}, "signatures": []}')
    before = sorted(p.name for p in state_dir.rglob("*"))
    result = fwclient("update", *server_args(state_dir, ca), "--authorization", str(file))
    assert result.exit_code != 0
    assert "is not a valid authorization" in result.output
    assert sorted(p.name for p in state_dir.rglob("*")) == before
