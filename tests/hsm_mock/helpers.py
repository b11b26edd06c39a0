"""Helpers of the software HSM tests (plain functions and constants, no fixtures).

The KDF runs with 8 MiB and one pass so the suite stays fast; production
tokens keep the 64 MiB default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest
from securesystemslib.formats import encode_canonical

from hsm_mock import KdfParams

SO_PIN = "so-pin-4711"
USER_PIN = "user-pin-0815"
FAST_KDF = KdfParams(memory_kib=8192, iterations=1, lanes=1)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally when a system component is missing; fail on CI (CI=true)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run this test, not skip it")
    pytest.skip(reason)


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes TUF signs for ``document``."""
    return str(encode_canonical(document)).encode("utf-8")


def payload(kind: str) -> bytes:
    """A minimal canonical payload of top-level ``_type`` ``kind``."""
    return canonical({"_type": kind, "version": 1, "expires": "2030-01-01T00:00:00Z"})


def snapshot_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its content, to show a failure changed nothing."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
