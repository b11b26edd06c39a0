"""Target files are found only inside the build directory; firmware fields are typed (R13, R36).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.paths import local_target_file

TARGET = "pump-x100/infusion-2.1.0.bin"


def test_r13_a_target_is_found_in_its_path_under_the_build_directory(tmp_path: Path) -> None:
    (tmp_path / "pump-x100").mkdir()
    (tmp_path / TARGET).write_bytes(b"fw")
    (tmp_path / "infusion-2.1.0.bin").write_bytes(b"flat")
    assert local_target_file(tmp_path, TARGET) == tmp_path / TARGET


def test_r13_a_target_is_found_by_its_file_name_in_a_flat_build_directory(tmp_path: Path) -> None:
    (tmp_path / "infusion-2.1.0.bin").write_bytes(b"flat")
    assert local_target_file(tmp_path, TARGET) == tmp_path / "infusion-2.1.0.bin"


def test_r13_no_file_or_a_directory_of_that_name_is_not_a_target(tmp_path: Path) -> None:
    assert local_target_file(tmp_path, TARGET) is None
    (tmp_path / "infusion-2.1.0.bin").mkdir()
    assert local_target_file(tmp_path, TARGET) is None


def test_r13_an_sbom_that_is_not_an_sbom_reference_is_refused() -> None:
    sbom = cast(Any, {"path": "a/b.spdx.json", "sha256": "ab" * 32})
    with pytest.raises(InvalidFieldError, match="sbom"):
        FirmwareInfo(version="1.0.0", security_version=0, hardware_models=("m",), sbom=sbom)
