"""Rules of ``repo_metadata.validation`` that span delegations: scope and graph."""

from __future__ import annotations

import pytest
from securesystemslib.signer import Key
from tuf.api.metadata import Delegations, Targets

from repo_metadata.errors import InvalidMetadataError
from repo_metadata.validation import (
    check_delegation_graph,
    check_delegation_scope,
    check_product_line_patterns,
    literal_prefix,
)
from tests.repo_metadata.builders import (
    EXPIRES,
    delegated_role,
    delegations,
    new_key,
    succinct_delegations,
)

PARENT = ["pump-x100/*"]


def delegating(*names: str, key: Key | None = None) -> Targets:
    """A targets role that delegates ``names`` (paths under ``pump-x100/``)."""
    keys = [key or new_key()]
    roles = [(delegated_role(name, keys), keys) for name in names]
    return Targets(expires=EXPIRES, delegations=delegations(*roles) if roles else None)


def with_delegations(dels: Delegations) -> Targets:
    return Targets(expires=EXPIRES, delegations=dels)


# --- delegation-scope ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [("pump-x100/*", "pump-x100/"), ("a/b?c/*", "a/b"), ("a/[ab]", "a/"), ("a/fw.bin", "a/fw.bin")],
)
def test_literal_prefix_stops_at_first_wildcard(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


@pytest.mark.parametrize(
    "child", [["pump-x100/*"], ["pump-x100/beta/*"], ["pump-x100/fw-1.0.0.bin", "pump-x100/b*"]]
)
def test_delegation_scope_inside_the_parent_is_accepted(child: list[str]) -> None:
    check_delegation_scope(PARENT, delegated_role("beta", [new_key()], paths=child))


@pytest.mark.parametrize(
    "pattern", ["*", "other/*", "pump-x1000/*", "pump-x10*", "pump-x100"], ids=str
)
def test_delegation_scope_escaping_the_product_line_is_rejected_cross_line_signing(
    pattern: str,
) -> None:
    child = delegated_role("beta", [new_key()], paths=["pump-x100/beta/*", pattern])
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_scope(PARENT, child)
    assert caught.value.rule == "delegation-scope"
    assert "'beta'" in str(caught.value)
    assert repr(pattern) in str(caught.value)


def test_delegation_scope_under_an_exact_parent_path_is_only_that_path() -> None:
    parent = ["pump-x100/fw-1.0.0.bin"]
    check_delegation_scope(parent, delegated_role("one", [new_key()], paths=parent))
    wider = delegated_role("one", [new_key()], paths=["pump-x100/fw-1.0.0.bin*"])
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_scope(parent, wider)
    assert caught.value.rule == "delegation-scope"


def test_delegation_scope_by_hash_prefix_is_rejected_unscoped_delegation() -> None:
    child = delegated_role("bins", [new_key()], path_hash_prefixes=["00"])
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_scope(PARENT, child)
    assert caught.value.rule == "delegation-scope"
    assert "'bins'" in str(caught.value)


def test_delegation_scope_with_no_parent_pattern_accepts_nothing() -> None:
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_scope([], delegated_role("beta", [new_key()]))
    assert caught.value.rule == "delegation-scope"


def test_delegation_scope_refuses_a_bare_string_as_patterns() -> None:
    # A string is a Sequence[str]: "pump-x100/*" would become ["p", "u", ...].
    with pytest.raises(TypeError):
        check_delegation_scope("pump-x100/*", delegated_role("beta", [new_key()]))


def test_product_line_patterns_of_directory_form_are_accepted() -> None:
    check_product_line_patterns(["pump-x100/*", "vendor/pump-x200/*"])


@pytest.mark.parametrize(
    "pattern",
    ["*", "/*", "pump*", "pump-x*/*", "pump-x100/*.bin", "pump-x100", "../pump/*", "a\\b/*"],
    ids=str,
)
def test_product_line_pattern_not_a_directory_is_rejected_cross_line_signing(
    pattern: str,
) -> None:
    with pytest.raises(InvalidMetadataError) as caught:
        check_product_line_patterns(["pump-x200/*", pattern])
    assert caught.value.rule == "delegation-scope"
    assert repr(pattern) in str(caught.value)


def test_product_line_with_no_pattern_is_rejected() -> None:
    with pytest.raises(InvalidMetadataError) as caught:
        check_product_line_patterns([])
    assert caught.value.rule == "delegation-scope"
    with pytest.raises(TypeError):
        check_product_line_patterns("pump-x100/*")


# --- delegation graph -------------------------------------------------------------


def test_delegation_graph_of_a_tree_is_accepted() -> None:
    check_delegation_graph(
        {
            "targets": delegating("pump-x100", "pump-x200"),
            "pump-x100": delegating("pump-x100-beta"),
            "pump-x200": with_delegations(succinct_delegations(bit_length=8)),
            "pump-x100-beta": delegating(),
        }
    )


def test_delegation_cycle_is_rejected_endless_delegation_walk() -> None:
    graph = {"targets": delegating("a"), "a": delegating("b"), "b": delegating("a")}
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_graph(graph)
    assert caught.value.rule == "delegation-cycle"
    assert "a -> b -> a" in str(caught.value)


def test_delegation_cycle_of_a_role_delegating_itself_is_rejected_endless_walk() -> None:
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_graph({"targets": delegating("a"), "a": delegating("a")})
    assert caught.value.rule == "delegation-cycle"
    assert "a -> a" in str(caught.value)


def test_delegated_twice_by_two_delegators_is_rejected_role_confusion() -> None:
    graph = {"targets": delegating("a", "b"), "a": delegating("c"), "b": delegating("c")}
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_graph(graph)
    assert caught.value.rule == "delegated-twice"
    assert "role 'c' is delegated twice, by both 'a' and 'b'" in str(caught.value)


def test_delegated_twice_by_one_delegator_is_rejected_role_confusion() -> None:
    targets = delegating("a")
    assert targets.delegations is not None
    assert targets.delegations.roles is not None
    targets.delegations.roles["a2"] = targets.delegations.roles["a"]
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_graph({"targets": targets})
    assert caught.value.rule == "delegated-twice"
    assert "role 'a' is delegated twice, by 'targets'" in str(caught.value)


def test_delegated_twice_as_succinct_bin_and_named_role_is_rejected_role_confusion() -> None:
    graph = {
        "targets": delegating("pump-x100", "bin-3"),
        "pump-x100": with_delegations(succinct_delegations(bit_length=2)),
    }
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_graph(graph)
    assert caught.value.rule == "delegated-twice"
    assert "'bin-3'" in str(caught.value)


def test_succinct_too_large_in_graph_is_rejected_before_enumeration() -> None:
    graph = {"targets": with_delegations(succinct_delegations(bit_length=32))}
    with pytest.raises(InvalidMetadataError) as caught:
        check_delegation_graph(graph)
    assert caught.value.rule == "succinct-too-large"
    assert "'bin'" in str(caught.value)
