"""``fwsign`` with a real PKCS#11 token (SoftHSM2) beside a mock-HSM token.

Switching an officer from the software token to a hardware one is a change
of key URI only (``hsm:`` instead of ``fwhsm:``): the same commands create,
sign and verify the repository. Skips locally without SoftHSM2; fails on CI.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hsm_mock import Algorithm, Purpose, Token, private_key_uri
from signer.cli import main
from tests.hsm_mock.helpers import FAST_KDF, SO_PIN, USER_PIN
from tests.softhsm import KeyConfig


def _mock_key(base: Path, name: str, purpose: Purpose) -> str:
    token = Token.init(base / name, so_pin=SO_PIN, user_pin=USER_PIN, kdf=FAST_KDF)
    token.login(USER_PIN).generate(label=name, purpose=purpose, algorithm=Algorithm.ED25519)
    return private_key_uri(token.path, name)


def _public_file(base: Path, uri: str, name: str) -> str:
    key = Token.open(Path(uri.split(":", 1)[1].split("?", 1)[0])).public_key(name)
    path = base / f"{name}.pub.json"
    path.write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}))
    return str(path)


def test_root_signed_by_a_pkcs11_officer_and_a_mock_hsm_officer(
    softhsm_key: KeyConfig, tmp_path: Path
) -> None:
    """Root 2 of 2 across token kinds; verify accepts it (R13, R47)."""
    officer = _mock_key(tmp_path, "officer", Purpose.ROOT)
    manager = _mock_key(tmp_path, "manager", Purpose.TARGETS)
    snapshot = _public_file(tmp_path, _mock_key(tmp_path, "snapshot", Purpose.SNAPSHOT), "snapshot")
    timestamp = _public_file(
        tmp_path, _mock_key(tmp_path, "timestamp", Purpose.TIMESTAMP), "timestamp"
    )
    repo = tmp_path / "repo"
    runner = CliRunner()
    env = {"FWSIGN_PIN": USER_PIN}
    init = runner.invoke(
        main,
        [
            "init", "--repo", str(repo),
            "--root-key", softhsm_key.uri, "--root-key", officer, "--targets-key", manager,
            "--snapshot-key", snapshot, "--timestamp-key", timestamp,
            "--key", officer, "--key", manager,
        ],
        env=env,
    )  # fmt: skip
    assert init.exit_code == 0, init.output
    assert "root                         v1    1/2 signatures" in init.output

    signed = runner.invoke(
        main, ["sign", "--repo", str(repo), "--role", "root", "--key", softhsm_key.uri], env=env
    )
    assert signed.exit_code == 0, signed.output
    assert "root v1: 2 of 2 signatures, threshold 2 (ready)" in signed.output
    verified = runner.invoke(main, ["verify", "--repo", str(repo)])
    assert verified.exit_code == 0, verified.output
    root = json.loads((repo / "metadata" / "root.json").read_text())
    assert softhsm_key.public_key.keyid in {s["keyid"] for s in root["signatures"]}
