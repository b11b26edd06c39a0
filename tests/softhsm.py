"""A real PKCS#11 token for tests: SoftHSM2 in a temporary directory.

The PKCS#11 library reads ``SOFTHSM2_CONF`` once per process, so there is one
token for the whole session (the ``softhsm_key`` fixture in tests/conftest.py).
Skips locally if SoftHSM2 or OpenSC is missing; fails instead on CI.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from securesystemslib.signer import HSMSigner, SSlibKey

from tests.hsm_mock.helpers import SO_PIN, USER_PIN, skip_or_fail

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "fwupdate-test"
KEY_ID = 1


@dataclass(frozen=True)
class KeyConfig:
    """What a signer's configuration holds for one key: URI and public key."""

    uri: str
    public_key: SSlibKey


def _require_softhsm() -> None:
    for tool in ("softhsm2-util", "pkcs11-tool"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} not installed (apt-get install softhsm2 opensc)")
    if not SOFTHSM_MODULE.exists():
        skip_or_fail(f"SoftHSM2 PKCS#11 module missing at {SOFTHSM_MODULE}")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def make_softhsm_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyConfig]:
    """A SoftHSM2 token in a temporary directory with one ECDSA P-256 key pair.

    Session-scoped: the PKCS#11 library reads SOFTHSM2_CONF once per process.
    """
    _require_softhsm()
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        patch.setenv("PYKCS11LIB", str(SOFTHSM_MODULE))
        _run(
            "softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
            "--so-pin", SO_PIN, "--pin", USER_PIN,
        )  # fmt: skip
        _run(
            "pkcs11-tool", "--module", str(SOFTHSM_MODULE), "--token-label", TOKEN_LABEL,
            "--login", "--pin", USER_PIN, "--keypairgen", "--key-type", "EC:prime256v1",
            "--id", f"{KEY_ID:02x}", "--label", "root-key",
        )  # fmt: skip
        uri, public_key = HSMSigner.import_(KEY_ID, TOKEN_LABEL)
        yield KeyConfig(uri, public_key)
