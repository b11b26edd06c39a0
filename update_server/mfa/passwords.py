"""Passwords: argon2id hashing and the password policy (R9). Pure.

Hashing is argon2-cffi's ``PasswordHasher`` with RFC 9106's second
recommended profile (argon2id, 64 MiB, 3 passes, 4 lanes, 16-byte salt,
32-byte tag): about 0.1 s per hash on a current server core, which bounds an
offline guessing attack on a stolen database while keeping a login cheap.
The parameters are kept in each hash, so raising them later only needs
``needs_rehash`` at the next login.

The policy follows NIST SP 800-63B rather than composition rules: a minimum
length (``ServerConfig.password_min_length``); no password known from
breaches or among the commonest (5.1.1.2; case-insensitive, also with
trailing digits and symbols removed), checked offline against the shipped
corpus ``breached_passwords.txt.gz`` (SecLists' 100,000 commonest and every
entry of 10 characters or more of its million, made by
``tools/make_breached_passwords.py``) and our own ``common_passwords.txt``;
none containing the user's own name, none made of a couple of repeated
characters, and none of the last few passwords used (checked by the caller
against the stored hashes with ``reused``). Every refusal says what
to change.

The corpus fails closed: a missing, unreadable or truncated file (fewer than
``MIN_BREACHED_ENTRIES``) is a ``PasswordCorpusError``, never a check that
quietly knows fewer passwords; ``fwserver serve`` loads it before it starts.
"""

from __future__ import annotations

import functools
import gzip
import re
import secrets
from collections.abc import Iterable, Iterator
from importlib import resources

from argon2 import PasswordHasher, exceptions, profiles

#: RFC 9106 section 4, second recommended option ("low memory").
PARAMETERS = profiles.RFC_9106_LOW_MEMORY
HASHER = PasswordHasher.from_parameters(PARAMETERS)
MAX_LENGTH = 1024
MIN_DISTINCT = 4
#: Parts of a user name shorter than this are not looked for in a password.
MIN_NAME_PART = 3
_TRAILING = "0123456789!@#$%^&*()_-+=.?,;:~ "
CURATED_FILE = "common_passwords.txt"
CORPUS_FILE = "breached_passwords.txt.gz"
#: The shipped corpus holds about 206,000 entries; fewer than this: it is damaged.
MIN_BREACHED_ENTRIES = 100_000


class PasswordPolicyError(ValueError):
    """The new password breaks the policy; ``problems`` says what to change."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("password refused: " + "; ".join(self.problems))


class PasswordCorpusError(RuntimeError):
    """The shipped breached-password corpus is missing or damaged: no password can be checked."""


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify(password_hash: str, password: str) -> bool:
    """True if ``password`` matches; False on mismatch or an unreadable hash.

    Also False for text that is not valid Unicode (a lone surrogate, which
    JSON can carry): no stored hash was made from one.
    """
    try:
        return HASHER.verify(password_hash, password)
    except (exceptions.VerificationError, exceptions.InvalidHashError, UnicodeEncodeError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return HASHER.check_needs_rehash(password_hash)
    except exceptions.InvalidHashError:
        return True


def dummy_hash() -> str:
    """A hash of a random password, made with the current parameters.

    Verified against when the user does not exist, so that a login for an
    unknown name costs the same argon2 work as one for a known name.
    """
    return _dummy_hash(HASHER.time_cost, HASHER.memory_cost, HASHER.parallelism)


@functools.cache
def _dummy_hash(_time_cost: int, _memory_cost: int, _parallelism: int) -> str:
    return HASHER.hash(secrets.token_urlsafe(32))


def check_policy(password: str, *, name: str, min_length: int) -> None:
    """Raise ``PasswordPolicyError`` listing every rule ``password`` breaks."""
    problems = []
    if not valid_unicode(password):
        problems.append("use valid Unicode text (this one holds a lone surrogate)")
    if len(password) < min_length:
        problems.append(f"use at least {min_length} characters (this one has {len(password)})")
    if len(password) > MAX_LENGTH:
        problems.append(f"use at most {MAX_LENGTH} characters")
    if is_common(password):
        problems.append(
            "this is one of the most common passwords or one known from data breaches:"
            " choose one nobody would guess, for example four or more unrelated words"
        )
    if _contains_name(password, name):
        problems.append("do not put your user name in your password")
    if len(set(password)) < MIN_DISTINCT:
        problems.append(f"use at least {MIN_DISTINCT} different characters")
    if problems:
        raise PasswordPolicyError(problems)


def reused(password: str, previous_hashes: Iterable[str]) -> bool:
    """True if ``password`` matches any of ``previous_hashes`` (R9: no reuse)."""
    # Check them all: the time taken then depends on the history length only.
    return any([verify(old, password) for old in previous_hashes])  # noqa: C419


def is_common(password: str) -> bool:
    lowered = password.lower()
    return lowered in common_passwords() or lowered.rstrip(_TRAILING) in common_passwords()


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped breached-password corpus and list of the commonest, lower-cased.

    Read once per process, on first use (about 0.2 s and 23 MiB for the
    corpus's 206,000 entries): a worker that never checks a new password
    never loads it.
    """
    package = resources.files("update_server.mfa")
    curated = package.joinpath(CURATED_FILE).read_text("utf-8").splitlines()
    try:
        with (
            package.joinpath(CORPUS_FILE).open("rb") as raw,
            gzip.open(raw, "rt", encoding="utf-8") as lines,
        ):
            breached = frozenset(_entries(lines))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise PasswordCorpusError(_damaged(f"it cannot be read ({exc})")) from None
    if len(breached) < MIN_BREACHED_ENTRIES:
        raise PasswordCorpusError(
            _damaged(f"it holds {len(breached)} entries, not at least {MIN_BREACHED_ENTRIES}")
        )
    return breached | frozenset(_entries(curated))


def _damaged(why: str) -> str:
    return (
        f"the breached-password corpus {CORPUS_FILE} of update_server.mfa is damaged: {why};"
        " no new password can be checked: reinstall fwserver"
    )


def _entries(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        entry = line.strip().lower()
        if entry and not entry.startswith("#"):
            yield entry


def valid_unicode(text: str) -> bool:
    """False for text UTF-8 cannot encode (a lone surrogate such as ``\\ud800``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _contains_name(password: str, name: str) -> bool:
    lowered, name = password.lower(), name.lower()
    parts = {name, *re.split(r"[._-]", name)}
    return any(len(part) >= MIN_NAME_PART and part in lowered for part in parts)
