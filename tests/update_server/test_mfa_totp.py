"""The TOTP core (pure): 6 digits, 30 s, window +/-1, the matched step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from update_server.mfa import totp

NOW = datetime(2026, 11, 23, 9, 0, 10, tzinfo=UTC)
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code(offset: int, secret: str = SECRET) -> str:
    return str(pyotp.TOTP(secret).at(NOW, counter_offset=offset))


def test_new_secrets_are_160_bit_base32_and_differ() -> None:
    first, second = totp.new_secret(), totp.new_secret()
    assert first != second
    assert len(first) == 32
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def test_the_current_code_matches_the_current_step() -> None:
    assert totp.match(SECRET, code(0), now=NOW) == totp.step_at(NOW)
    assert totp.step_at(NOW) == int(NOW.timestamp()) // 30


@pytest.mark.parametrize("offset", [-1, 1])
def test_window_accepts_one_step_either_side_and_says_which(offset: int) -> None:
    assert totp.match(SECRET, code(offset), now=NOW) == totp.step_at(NOW) + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_outside_the_window_are_refused(offset: int) -> None:
    assert totp.match(SECRET, code(offset), now=NOW) is None


def test_another_secrets_code_is_refused() -> None:
    assert totp.match(SECRET, code(0, secret=totp.new_secret()), now=NOW) is None


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        " 12345",
        "123 456",
        "\u0661\u0662\u0663\u0664\u0665\u0666",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
    ],
)
def test_anything_but_six_ascii_digits_is_refused_early(malformed: str) -> None:
    assert not totp.well_formed(malformed)
    assert totp.match(SECRET, malformed, now=NOW) is None


def test_step_boundaries() -> None:
    start = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
    assert totp.step_at(start + timedelta(seconds=29)) == totp.step_at(start)
    assert totp.step_at(start + timedelta(seconds=30)) == totp.step_at(start) + 1


def test_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        totp.match(SECRET, code(0), now=NOW.replace(tzinfo=None))


def test_provisioning_uri_names_the_issuer_and_the_person() -> None:
    uri = totp.provisioning_uri(SECRET, name="alice")
    parsed = pyotp.parse_uri(uri)
    assert (parsed.secret, parsed.issuer, parsed.name) == (SECRET, "fwupdate", "alice")
    assert totp.code_at(SECRET, totp.step_at(NOW)) == code(0)
