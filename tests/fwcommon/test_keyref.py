"""``fwcommon.keyref``: the mock token is loaded only for its own URIs (R3)."""

from __future__ import annotations

import subprocess
import sys

from fwcommon import keyref
from hsm_mock import signer


def test_the_mock_scheme_named_in_keyref_is_the_mock_tokens() -> None:
    assert keyref.MOCK_SCHEME == signer.SCHEME


def test_importing_keyref_loads_no_part_of_the_mock_token() -> None:
    """A device reads its key through keyref and carries no mock token (test_isolation)."""
    probe = (
        "import sys, fwcommon.keyref\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hsm_mock'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
