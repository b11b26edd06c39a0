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


def test_totp_replay_a_right_code_not_later_than_the_last_step_is_a_replay() -> None:
    """R25 (OWASP ASVS 2.8.4): only a step later than the last accepted one is accepted."""
    now = totp.step_at(NOW)
    assert totp.check(SECRET, code(0), now=NOW, last_step=now - 1) == totp.CodeCheck(
        totp.Verdict.ACCEPTED, now
    )
    assert totp.check(SECRET, code(0), now=NOW, last_step=now).verdict is totp.Verdict.REPLAYED
    # The code of the step before the last accepted one: still in the window, refused.
    replayed = totp.check(SECRET, code(-1), now=NOW, last_step=now)
    assert replayed == totp.CodeCheck(totp.Verdict.REPLAYED, now - 1)
    window = {code(offset) for offset in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in window)
    assert totp.check(SECRET, wrong, now=NOW, last_step=0) == (
        totp.CodeCheck(totp.Verdict.WRONG, None)
    )


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("JBSWY3DPEHPK3PXPJBSWY3DP", "32 to 128"),  # 120 bits: pyotp would take it
        ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PX", "32 to 128"),  # not whole bytes
        ("A" * 136, "32 to 128"),
        ("jbswy3dpehpk3pxpjbswy3dpehpk3pxp", "base32"),
        ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3P==", "base32"),
        ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3P01", "base32"),
    ],
)
def test_weak_or_damaged_secret_is_never_used_as_stored(secret: str, problem: str) -> None:
    """R9: a short or non-base32 secret is refused with what to do, never quoting it."""
    with pytest.raises(totp.TotpSecretError, match=problem) as caught:
        totp.match(secret, "123456", now=NOW)
    assert secret not in str(caught.value)
    assert "enrol TOTP again" in str(caught.value)
    with pytest.raises(totp.TotpSecretError):
        totp.provisioning_uri(secret, name="alice")
    assert totp.check_secret(SECRET) == SECRET
