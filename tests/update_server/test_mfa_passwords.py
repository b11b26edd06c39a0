"""The password core (pure): argon2id hashing, the policy, reuse (R9)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest
from argon2 import Type, extract_parameters

from update_server.mfa import passwords
from update_server.mfa.passwords import PasswordCorpusError, PasswordPolicyError, check_policy


def test_hashes_are_argon2id_with_the_documented_parameters() -> None:
    """Production parameters: RFC 9106 second recommended option."""
    hashed = passwords.hash_password("a long enough passphrase")
    parameters = extract_parameters(hashed)
    assert parameters.type is Type.ID
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (
        65536,
        3,
        4,
    )
    assert passwords.verify(hashed, "a long enough passphrase")
    assert not passwords.verify(hashed, "a long enough passphrasE")
    assert not passwords.needs_rehash(hashed)


def test_hashes_are_salted() -> None:
    assert passwords.hash_password("same password here") != passwords.hash_password(
        "same password here"
    )


def test_verify_is_false_for_an_unreadable_hash() -> None:
    assert not passwords.verify("not-a-hash", "anything")
    assert passwords.needs_rehash("not-a-hash")


def test_weaker_parameters_are_rehashed_at_next_login() -> None:
    weak = passwords.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    assert passwords.needs_rehash(weak.hash("x" * 12))


def test_dummy_hash_uses_the_current_parameters() -> None:
    dummy = passwords.dummy_hash()
    assert extract_parameters(dummy) == passwords.PARAMETERS
    assert dummy == passwords.dummy_hash()  # made once


def refusal(password: str, name: str = "alice", min_length: int = 12) -> str:
    with pytest.raises(PasswordPolicyError) as caught:
        check_policy(password, name=name, min_length=min_length)
    return str(caught.value)


def test_minimum_length_counts_characters_and_says_how_many() -> None:
    assert "at least 12 characters (this one has 11)" in refusal("kx8-vq2-mw4")
    check_policy("kx8-vq2-mw4z", name="alice", min_length=12)
    assert "at least 16" in refusal("kx8-vq2-mw4z", min_length=16)


def test_maximum_length() -> None:
    assert "at most 1024" in refusal("kx8-vq2-mw4z" * 100)


@pytest.mark.parametrize(
    "common",
    [
        "password1234",
        "PASSWORD1234",
        "Password123!",
        "qwertyuiopasdf",
        "iloveyou1234",
        "123456789012",
        "correcthorsebatterystaple",
        "Welcome2026!!",
    ],
)
def test_commonest_passwords_are_refused_whatever_the_case(common: str) -> None:
    assert "most common passwords" in refusal(common)


def test_common_list_is_shipped_and_sizeable() -> None:
    listed = passwords.common_passwords()
    assert len(listed) >= 300
    assert {"123456", "password", "qwerty", "letmein"} <= listed
    assert all(entry == entry.lower() for entry in listed)


@pytest.mark.parametrize("name", ["alice", "alice.smith", "j-alice_x"])
def test_own_name_refused(name: str) -> None:
    assert "user name" in refusal("Hello-ALICE-from-ward-7", name=name)


def test_short_name_parts_are_not_looked_for() -> None:
    check_policy("quiet-al-orchard-lamp", name="al", min_length=12)


def test_repeated_characters_refused() -> None:
    assert "4 different characters" in refusal("zzzzzzzzzzzzzzzz")
    assert "4 different characters" in refusal("xyzxyzxyzxyzxyz")


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(PasswordPolicyError) as caught:
        check_policy("alice-qv7", name="alice", min_length=12)
    assert len(caught.value.problems) == 2  # too short, contains the name


def test_a_good_passphrase_passes() -> None:
    check_policy("violet harbour lantern quietly", name="alice", min_length=12)


def test_reuse_is_detected_against_any_previous_hash() -> None:
    cheap = passwords.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    previous = [cheap.hash(f"older-passphrase-{n}") for n in range(3)]
    assert passwords.reused("older-passphrase-1", previous)
    assert not passwords.reused("older-passphrase-9", previous)
    assert not passwords.reused("anything-at-all", [])


def test_lone_surrogate_password_is_refused_not_a_crash() -> None:
    """R9: a lone surrogate (JSON can carry one) never matches, and a policy refusal says why."""
    cheap = passwords.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    assert passwords.verify(cheap.hash("violet harbour lantern"), "violet \ud800 lantern") is False
    with pytest.raises(PasswordPolicyError, match="valid Unicode"):
        check_policy("violet harbour \ud800 lantern quietly", name="alice", min_length=12)


@pytest.mark.parametrize(
    "breached",
    ["leavemealone", "Sojdlg123aljg", "LoveTheWayYouLie", "lovingirishprincess"],
)
def test_passwords_known_from_breaches_are_refused(breached: str) -> None:
    """NIST 800-63B 5.1.1.2: the breach corpus beyond the curated list (top 100k, long tail)."""
    assert breached.lower() not in _curated()
    assert "known from data breaches" in refusal(breached)


def test_breach_corpus_is_shipped_offline_with_its_provenance() -> None:
    corpus = passwords.common_passwords()
    assert len(corpus - _curated()) >= 100_000
    assert all(entry == entry.lower() for entry in corpus)
    package = resources.files("update_server.mfa")
    header = gzip.decompress(package.joinpath(passwords.CORPUS_FILE).read_bytes())[:600]
    assert b"SecLists" in header
    assert b"licence" in header


def test_a_strong_passphrase_is_not_in_the_corpus() -> None:
    check_policy("tundra-marmalade-cobalt-whistle", name="alice", min_length=12)


@pytest.fixture
def shipped_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The package's data files read from ``tmp_path`` (the curated list copied there)."""
    package = resources.files("update_server.mfa")
    (tmp_path / passwords.CURATED_FILE).write_bytes(
        package.joinpath(passwords.CURATED_FILE).read_bytes()
    )
    monkeypatch.setattr(passwords, "resources", SimpleNamespace(files=lambda _name: tmp_path))
    passwords.common_passwords.cache_clear()
    yield tmp_path
    passwords.common_passwords.cache_clear()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (b"", "holds 0 entries, not at least 100000"),
        (gzip.compress(b"123456\npassword\nleavemealone\n", mtime=0), "holds 3 entries"),
        (gzip.compress(b"leavemealone\n" * 1000, mtime=0)[:-40], "cannot be read"),
        (b"not gzip at all", "cannot be read"),
        (gzip.compress(b"\xff\xfe\xfd\n", mtime=0), "cannot be read"),
        (None, "cannot be read"),
    ],
)
def test_a_damaged_breach_corpus_fails_closed(
    shipped_elsewhere: Path, damage: bytes | None, why: str
) -> None:
    """R9, NIST 800-63B 5.1.1.2: an empty, short, truncated, corrupt or missing corpus
    refuses every new password with what to do, never a check that knows fewer passwords."""
    if damage is not None:
        (shipped_elsewhere / passwords.CORPUS_FILE).write_bytes(damage)
    with pytest.raises(PasswordCorpusError, match=why) as refused:
        check_policy("LoveTheWayYouLie", name="alice", min_length=12)
    assert "reinstall fwserver" in str(refused.value)


def _curated() -> set[str]:
    text = resources.files("update_server.mfa").joinpath(passwords.CURATED_FILE).read_text()
    return {line.strip().lower() for line in text.splitlines() if not line.startswith("#")}
