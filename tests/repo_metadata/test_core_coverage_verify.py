"""``repo_metadata.verify`` at its edges: each public entry point refuses on its own.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36). The entry points are called directly, as the server and the signer do,
so each check is proven where it stands and not only behind another one.
"""

from __future__ import annotations

import pytest
from tuf.api.metadata import Metadata, Root, Snapshot, Targets

from repo_metadata.errors import UpdateRejectedError
from repo_metadata.verify import (
    check_signatures,
    path_granted,
    verify_metadata,
    verify_root_chain,
    verify_update,
)
from tests.repo_metadata.test_verify import (
    LATER,
    MONITOR,
    NOW,
    PUMP,
    TOP,
    delegating,
    line,
    root,
    signed,
)

ROOT = root(1, ("o1", "o2")).signed


def test_top_level_targets_is_granted_any_path_root_delegates_it_everything() -> None:
    """TUF: root delegates every path to top-level targets; only ancestors narrow it."""
    assert path_granted(PUMP, role="targets", delegator=ROOT, ancestor_patterns=())
    assert not path_granted(
        PUMP, role="targets", delegator=ROOT, ancestor_patterns=[["monitor-m20/*"]]
    )


def test_top_level_targets_without_delegations_is_accepted() -> None:
    """Rule delegation-scope at the top holds vacuously when nothing is delegated."""
    top = Metadata(Targets(version=2, expires=LATER))
    result = verify_update(
        signed(top, "targets"),
        role="targets",
        trusted=None,
        delegator=ROOT,
        now=NOW,
        ancestor_patterns=(),
    )
    assert result.signed.delegations is None


def test_top_level_targets_delegating_product_lines_by_prefix_is_accepted() -> None:
    """Rule delegation-scope: each line by ``<prefix>/*`` is exactly what the top may do."""
    top = Metadata(Targets(version=2, expires=LATER, delegations=TOP.delegations))
    result = verify_update(
        signed(top, "targets"),
        role="targets",
        trusted=None,
        delegator=ROOT,
        now=NOW,
        ancestor_patterns=(),
    )
    assert result.signed.delegations is not None
    assert set(result.signed.delegations.roles or {}) == {"pump-x100", "monitor-m20"}


def test_a_product_line_delegating_inside_its_own_prefix_is_accepted() -> None:
    """Rule delegation-scope: pump-x100 may hand part of pump-x100/* to another key."""
    sub = delegating(("beta", ("dave",), 1, ["pump-x100/beta-*"]))
    proposed = signed(line(2, delegations=sub.delegations), "alice", "bob")
    result = verify_update(
        proposed, role="pump-x100", trusted=None, delegator=TOP, now=NOW, ancestor_patterns=()
    )
    assert result.signed.delegations is not None


def test_verify_metadata_refuses_metadata_of_another_type_for_the_role() -> None:
    """Role confusion, checked again for metadata parsed elsewhere (verify_metadata's own rule)."""
    snapshot = Metadata(Snapshot(version=2, expires=LATER))
    with pytest.raises(UpdateRejectedError) as caught:
        verify_metadata(
            snapshot,
            role="pump-x100",
            trusted=None,
            delegator=TOP,
            now=NOW,
            ancestor_patterns=(),
        )
    assert caught.value.rule == "unexpected-type"
    assert "expected targets metadata, got snapshot" in str(caught.value)


def test_check_signatures_refuses_a_root_that_skips_a_version_on_its_own() -> None:
    """TUF spec 5.3.4: the signature check itself refuses v3 after v1, not only the version rule."""
    trusted = root(1, ("o1", "o2"))
    proposed = Metadata.from_bytes(signed(root(3, ("o1", "o2")), "o1", "o2"))
    with pytest.raises(UpdateRejectedError) as caught:
        check_signatures(proposed, role=Root.type, trusted=trusted, delegator=ROOT)
    assert caught.value.rule == "version"


def test_root_chain_refuses_bytes_that_are_not_root_metadata() -> None:
    """The strict parser's rule comes through the chain walk unchanged."""
    with pytest.raises(UpdateRejectedError) as caught:
        verify_root_chain([b"{not json"], trusted=None, now=NOW)
    assert caught.value.rule == "json-invalid"
    targets = signed(line(1, MONITOR), "carol")
    with pytest.raises(UpdateRejectedError) as caught:
        verify_root_chain([targets], trusted=None, now=NOW)
    assert caught.value.rule == "unexpected-type"


def test_root_chain_with_nothing_to_walk_and_nothing_trusted_is_malformed() -> None:
    with pytest.raises(UpdateRejectedError) as caught:
        verify_root_chain([], trusted=None, now=NOW)
    assert caught.value.rule == "malformed"
    assert "no root metadata" in str(caught.value)
