"""The client imports nothing from the server, Flask or the signing tools.

A device carries only what it needs (R3): the update logic is small and
apart from every server-side part. Checked in a fresh interpreter so that
modules the test suite itself loaded do not hide an import.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import client

FORBIDDEN = ("update_server", "flask", "signer", "hsm_mock", "sqlalchemy", "werkzeug")


def test_client_modules_import_no_server_or_signing_code() -> None:
    modules = [
        f"client.{info.name}"
        for info in pkgutil.iter_modules(client.__path__)
        if info.name != "cli"  # the command line may use click, nothing else
    ]
    assert modules, "no client modules found"
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout
