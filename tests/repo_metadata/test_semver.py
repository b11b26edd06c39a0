"""Semantic version parsing and precedence, with semver.org's own examples."""

from __future__ import annotations

import itertools

import pytest

from repo_metadata.semver import SemVer

# semver.org 2.0.0, item 11: each is lower than the next.
PRERELEASE_CHAIN = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
]
CORE_CHAIN = ["1.0.0", "2.0.0", "2.1.0", "2.1.1", "2.9.0", "2.10.0", "10.0.0"]


@pytest.mark.parametrize("chain", [PRERELEASE_CHAIN, CORE_CHAIN], ids=["prerelease", "core"])
def test_precedence_follows_semver_org(chain: list[str]) -> None:
    versions = [SemVer.parse(text) for text in chain]
    for lower, higher in itertools.combinations(versions, 2):
        assert lower < higher
        assert higher > lower
        assert lower != higher
    backwards = versions[::-1]
    assert sorted(backwards) == versions


def test_numeric_identifiers_sort_below_alphanumeric_ones() -> None:
    assert SemVer.parse("1.0.0-2") < SemVer.parse("1.0.0-10") < SemVer.parse("1.0.0-a")


def test_build_metadata_is_ignored_in_precedence() -> None:
    plain, built, other = (SemVer.parse(t) for t in ("1.0.0", "1.0.0+b.1", "1.0.0+exp.sha.5114f85"))
    assert plain == built == other
    assert hash(plain) == hash(built) == hash(other)
    assert not built < other
    assert not other < built
    assert SemVer.parse("1.0.0-rc.1+build.1") < SemVer.parse("1.0.0+build.0")


def test_parse_reads_each_part() -> None:
    version = SemVer.parse("1.22.333-rc.1.x-y+build.007")
    assert (version.major, version.minor, version.patch) == (1, 22, 333)
    assert version.prerelease == ("rc", "1", "x-y")
    assert version.build == "build.007"


@pytest.mark.parametrize("text", ["0.0.0", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0+20130313144700"])
def test_str_gives_back_the_text(text: str) -> None:
    assert str(SemVer.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.0",
        "1.0.0.0",
        "v1.0.0",
        "01.0.0",
        "1.00.0",
        "1.0.0-",
        "1.0.0-01",
        "1.0.0-alpha..1",
        "1.0.0+",
        "1.0.0+a..b",
        " 1.0.0",
        "1.0.0 ",
        "1.0.0\n",
        "1\u0661.0.0",
        "1.0.0-rc\u0661",
        "1.0.0-" + "a" * 130,
    ],
    ids=repr,
)
def test_invalid_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        SemVer.parse(text)


def test_non_string_is_refused() -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        SemVer.parse(100)  # type: ignore[arg-type]
