"""The device key (R10): generated on the device or held by a secure element, never shown.

Threats: a device key that leaks (readable by others, printed at the
factory, sent to a server) lets anyone speak for the device; a key the
state does not record could be swapped under the device; a key that cannot
sign device requests would only fail later, in the field.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from client import cli, identity, provisioning
from client.errors import ProvisioningError
from client.events import EventType
from client.state import DeviceIdentity, StateDir
from tests.client.sim import DEVICE, MODEL, Sim
from tests.hsm_mock.helpers import USER_PIN
from tests.softhsm import KeyConfig

NOW = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


def _provision(state: StateDir, sim: Sim, *, device_key: str | None = None) -> None:
    provisioning.provision(
        state,
        root=sim.root(1),
        identity=DeviceIdentity(DEVICE, MODEL),
        now=NOW,
        built=provisioning.BUILT,
        device_key=device_key,
    )


def test_provisioning_generates_an_ed25519_key_readable_only_by_the_device_r10(
    tmp_path: Path, sim: Sim
) -> None:
    """K1: the private key is 0600 in provisioned/; the record (K2) names it, read-only."""
    state = StateDir(tmp_path / "device")
    _provision(state, sim)
    private = state.provisioned / identity.PRIVATE_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(identity.record_file(state).stat().st_mode) == 0o444
    key = identity.device_key(state)
    assert key.uri == identity.FILE_URI
    assert (key.public_key.keytype, key.public_key.scheme) == ("ed25519", "ed25519")
    signature = identity.device_signer(state).sign(b"report")
    key.public_key.verify_signature(signature, b"report")
    assert b"PRIVATE KEY" not in identity.record_file(state).read_bytes()
    assert (state.events.last(EventType.PROVISIONED) or {})["detail"][
        "device_key"
    ] == key.public_key.keyid


def test_provision_prints_the_public_key_id_never_the_private_key_r10(
    tmp_path: Path, sim: Sim
) -> None:
    root = tmp_path / "1.root.json"
    root.write_bytes(sim.root(1))
    state_dir = tmp_path / "device"
    result = CliRunner().invoke(
        cli.main,
        [
            *("provision", "--state", str(state_dir), "--root", str(root)),
            *("--hardware-model", MODEL, "--device-id", DEVICE),
        ],
    )
    assert result.exit_code == 0, result.output
    key = identity.device_key(StateDir(state_dir))
    assert f"device key {key.public_key.keyid} (ed25519, file:device_key.pem)" in result.output
    private = (state_dir / "provisioned" / identity.PRIVATE_KEY_FILE).read_text()
    body = "".join(private.splitlines()[1:-1])
    assert "PRIVATE" not in result.output and body not in result.output


def test_a_device_key_is_never_replaced_r10(tmp_path: Path, sim: Sim) -> None:
    """A second key would silently change who the device is to the server."""
    state = StateDir(tmp_path / "device")
    _provision(state, sim)
    before = identity.device_key(state)
    with pytest.raises(ProvisioningError, match="already has a device key"):
        identity.create_device_key(state)
    assert identity.device_key(state) == before


def test_device_key_that_is_no_token_uri_is_refused_and_nothing_is_written(
    tmp_path: Path, sim: Sim
) -> None:
    state = StateDir(tmp_path / "device")
    with pytest.raises(ProvisioningError, match=r"PKCS#11 signer URI \(hsm:\.\.\.\)"):
        _provision(state, sim, device_key="/tmp/some-key.pem")
    assert not state.is_provisioned()
    assert not identity.record_file(state).exists()


def test_a_damaged_key_record_is_a_clear_error(tmp_path: Path, sim: Sim) -> None:
    state = StateDir(tmp_path / "device")
    _provision(state, sim)
    record = identity.record_file(state)
    record.chmod(0o644)
    record.write_text("{")
    with pytest.raises(ProvisioningError, match="is not a device key record"):
        identity.device_key(state)


def test_secure_element_key_by_pkcs11_uri_signs_and_stays_in_the_token_r10(
    tmp_path: Path, sim: Sim, softhsm_key: KeyConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K1 with a secure element (SoftHSM2): no private key file; the PIN from the environment."""
    monkeypatch.setenv(identity.PIN_ENV, USER_PIN)
    state = StateDir(tmp_path / "device")
    _provision(state, sim, device_key=softhsm_key.uri)
    key = identity.device_key(state)
    assert key.uri == softhsm_key.uri
    assert key.public_key.keyval == softhsm_key.public_key.keyval
    assert not (state.provisioned / identity.PRIVATE_KEY_FILE).exists()
    signature = identity.device_signer(state).sign(b"report")
    key.public_key.verify_signature(signature, b"report")


def test_secure_element_key_without_its_pin_says_which_variable_to_set(
    tmp_path: Path, sim: Sim, softhsm_key: KeyConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(identity.PIN_ENV, USER_PIN)
    state = StateDir(tmp_path / "device")
    _provision(state, sim, device_key=softhsm_key.uri)
    monkeypatch.delenv(identity.PIN_ENV)
    with pytest.raises(ProvisioningError, match=identity.PIN_ENV):
        identity.device_signer(state).sign(b"report")
