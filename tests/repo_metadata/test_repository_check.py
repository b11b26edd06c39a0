"""``repo_metadata.repository_check``: the whole-repository rules, in one home (issue 9).

The signer and the server run the same check, so they cannot disagree on
what a valid repository is; these tests hold that in place (no caller
orchestrates the rules itself) and pin the check's own contract. The
behaviour of both callers on the same broken repositories is in
``tests/update_server/test_publication_shared_check.py``.
"""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Root, Targets

from repo_metadata.errors import UpdateRejectedError
from repo_metadata.repository_check import (
    RULES,
    Completeness,
    RepositoryCheck,
    check_repository,
)
from tests.clocks import RUN_START

ROOT = Path(__file__).resolve().parents[2]
#: The modules that apply the whole-repository rules: a change (commit, upload,
#: publish, import) or the whole repository (``fwsign verify``).
CALLERS = ("signer/repository.py", "signer/inspect.py", "update_server/publication/release.py")
#: Where the rule functions are defined, and the one module that orchestrates them.
RULE_HOMES = frozenset(
    {
        "repo_metadata/frontier.py",
        "repo_metadata/validation.py",
        "repo_metadata/verify.py",
        "repo_metadata/repository_check.py",
        "repo_metadata/delta.py",
    }
)
PACKAGES = ("repo_metadata", "signer", "update_server", "client", "fwcommon", "hsm_mock")
#: The rule functions the shared check orchestrates: no caller may call them itself.
RULE_FUNCTIONS = frozenset(
    {
        "check_delegation_graph",
        "check_line_change",
        "check_copies",
        "check_covered",
        "check_complete",
        "check_signatures",
        "check_delta_target",
    }
)
EXPIRES = RUN_START + timedelta(days=30)


def _imported_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)  # frontier.check_line_change and the like
    return names


@pytest.mark.parametrize("caller", CALLERS)
def test_the_whole_repository_rules_are_called_only_from_the_shared_check(caller: str) -> None:
    """Issue 9, one rule one home: the signer and the server call the shared check alone."""
    names = _imported_names(ROOT / caller)
    assert "check_repository" in names
    assert not names & RULE_FUNCTIONS, sorted(names & RULE_FUNCTIONS)


def test_no_other_module_calls_the_rule_functions() -> None:
    """Issue 9's "done when": the rules are called only from the shared check in repo_metadata."""
    offenders = {
        str(module.relative_to(ROOT)): sorted(names & RULE_FUNCTIONS)
        for package in PACKAGES
        for module in sorted((ROOT / package).rglob("*.py"))
        if str(module.relative_to(ROOT)) not in RULE_HOMES
        and (names := _imported_names(module)) & RULE_FUNCTIONS
    }
    assert offenders == {}


def test_the_shared_check_is_where_the_rule_functions_are_orchestrated() -> None:
    names = _imported_names(ROOT / "repo_metadata" / "repository_check.py")
    assert {
        "check_delegation_graph",
        "check_line_change",
        "check_signatures",
        "check_delta_target",
    } <= names


# --- the check's contract, on plain python-tuf metadata ----------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, Signer]:
    return {name: CryptoSigner.generate_ed25519() for name in ("manager", "alice", "carol")}


def _signed(signed: Root | Targets, *signers: Signer) -> Metadata[Any]:
    md: Metadata[Any] = Metadata(signed)
    for signer in signers:
        md.sign(signer, append=True)
    return md


def _targets(keys: dict[str, Signer], line_key: str, version: int = 1) -> Metadata[Any]:
    key = keys[line_key].public_key
    line = DelegatedRole("pump-x100", [key.keyid], 1, True, ["pump-x100/*"])
    delegations = Delegations({key.keyid: key}, roles={"pump-x100": line})
    return _signed(
        Targets(version=version, expires=EXPIRES, delegations=delegations), keys["manager"]
    )


def _lookup(roles: dict[str, Metadata[Any]]) -> Any:
    return roles.get


def test_a_rotation_that_leaves_a_line_unsigned_is_refused_in_a_release(
    keys: dict[str, Signer],
) -> None:
    """delegation-broken: devices would stop trusting pump-x100 (re-sign what a rotation hits)."""
    before = {
        "targets": _targets(keys, "alice"),
        "pump-x100": _signed(Targets(expires=EXPIRES), keys["alice"]),
    }
    rotated = _targets(keys, "carol", version=2)
    after = {**before, "targets": rotated}
    with pytest.raises(UpdateRejectedError) as caught:
        check_repository(
            {"targets": rotated},
            before=_lookup(before),
            after=_lookup(after),
            completeness=Completeness.RELEASE,
        )
    assert caught.value.rule == "delegation-broken"
    assert "pump-x100 v1" in str(caught.value)


def test_a_draft_lists_the_left_out_role_to_resign_instead(keys: dict[str, Signer]) -> None:
    """fwsign commits drafts: the same finding is returned, for the next signer to act on."""
    before = {
        "targets": _targets(keys, "alice"),
        "pump-x100": _signed(Targets(expires=EXPIRES), keys["alice"]),
    }
    rotated = _targets(keys, "carol", version=2)
    result = check_repository(
        {"targets": rotated},
        before=_lookup(before),
        after=_lookup({**before, "targets": rotated}),
        completeness=Completeness.DRAFT,
    )
    assert [role for role, _why in result.to_resign] == ["pump-x100"]
    assert "signature" in result.to_resign[0][1]


def test_a_draft_never_signed_is_not_listed_to_resign(keys: dict[str, Signer]) -> None:
    """Only trust the change takes counts: a line nobody signed yet had none to lose."""
    before = {"targets": _targets(keys, "alice"), "pump-x100": _signed(Targets(expires=EXPIRES))}
    rotated = _targets(keys, "carol", version=2)
    result = check_repository(
        {"targets": rotated},
        before=_lookup(before),
        after=_lookup({**before, "targets": rotated}),
        completeness=Completeness.DRAFT,
    )
    assert result.to_resign == ()


def test_a_change_that_keeps_every_role_trusted_passes(keys: dict[str, Signer]) -> None:
    before = {
        "targets": _targets(keys, "alice"),
        "pump-x100": _signed(Targets(expires=EXPIRES), keys["alice"]),
    }
    line = _signed(Targets(version=2, expires=EXPIRES), keys["alice"])
    result = check_repository(
        {"pump-x100": line},
        before=_lookup(before),
        after=_lookup({**before, "pump-x100": line}),
        completeness=Completeness.RELEASE,
    )
    assert result == RepositoryCheck(tree_checked=False, lines_checked=())


def test_a_delegation_cycle_is_refused_naming_the_rule(keys: dict[str, Signer]) -> None:
    """delegation-cycle: a walk pump-x100 -> beta -> pump-x100 would never end."""
    alice = keys["alice"].public_key

    def to(name: str) -> Delegations:
        entry = DelegatedRole(name, [alice.keyid], 1, False, ["pump-x100/beta/*"])
        return Delegations({alice.keyid: alice}, roles={name: entry})

    pump = _signed(Targets(version=2, expires=EXPIRES, delegations=to("beta")), keys["alice"])
    beta = _signed(Targets(expires=EXPIRES, delegations=to("pump-x100")), keys["alice"])
    after = {"targets": _targets(keys, "alice"), "pump-x100": pump, "beta": beta}
    with pytest.raises(UpdateRejectedError) as caught:
        check_repository(
            {"pump-x100": pump, "beta": beta},
            before=_lookup({}),
            after=_lookup(after),
            completeness=Completeness.DRAFT,
        )
    assert caught.value.rule == "delegation-cycle"
    assert str(caught.value).count("[rule:") == 1
    assert caught.value.rule in RULES


def test_the_policy_is_required_and_typed(keys: dict[str, Signer]) -> None:
    """Security policy has no default: a caller that passes something else fails at once."""
    with pytest.raises(TypeError, match="Completeness"):
        check_repository(
            {},
            before=_lookup({}),
            after=_lookup({}),
            completeness="release",  # type: ignore[arg-type]
        )
