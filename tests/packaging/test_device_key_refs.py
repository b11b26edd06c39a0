"""A device install has no software token: a ``fwhsm:`` key URI is refused in words (R3).

``fwupdate-device`` ships no ``hsm_mock`` (a device's key is its own file or
a secure element's, ``hsm:``); ``fwcommon.keyref`` imports the software
token only for a ``fwhsm:`` URI, and where it is absent says so instead of
raising an import error. The real absence is tested in the device's own
environment (test_device_install); here the import is made to fail.
"""

from __future__ import annotations

import sys

import pytest

from fwcommon.keyref import KeyRefError, public_key_from_uri

URI = "fwhsm:/nonexistent/token?key=device"


def test_a_software_token_uri_without_the_software_token_is_refused_in_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hsm_mock", None)  # import of hsm_mock fails as if absent
    with pytest.raises(KeyRefError, match=r"software token \(fwhsm:\) is not installed here"):
        public_key_from_uri(URI)


def test_a_broken_software_token_install_is_not_mistaken_for_an_absent_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hsm_mock.errors", None)
    with pytest.raises(ModuleNotFoundError) as raised:
        public_key_from_uri(URI)
    assert raised.value.name == "hsm_mock.errors"
