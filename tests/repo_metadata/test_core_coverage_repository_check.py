"""The whole-repository rule ``delegation-broken`` when delegations do not change (R36).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``):
a change that leaves a role's delegations as they were takes no trust from
the roles it delegates to, so they are not checked again (a release of
targets that only extends its expiry must not fail on a line's own state).
"""

from __future__ import annotations

from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Targets

from repo_metadata.repository_check import Completeness, check_repository
from tests.repo_metadata.test_repository_check import (
    EXPIRES,
    _targets,
    keys,  # noqa: F401 - the fixture
)


def test_a_change_keeping_the_delegations_takes_no_trust_and_checks_no_child(
    keys: dict[str, Signer],  # noqa: F811 - the fixture
) -> None:
    """delegation-broken looks only where the change rewrites delegations."""
    unsigned_line: Metadata[Any] = Metadata(Targets(expires=EXPIRES))
    before = {"targets": _targets(keys, "alice"), "pump-x100": unsigned_line}
    renewed = _targets(keys, "alice", version=2)  # same delegations, a new version
    after = {**before, "targets": renewed}
    result = check_repository(
        {"targets": renewed},
        before=before.get,
        after=after.get,
        completeness=Completeness.RELEASE,
    )
    assert result.to_resign == ()
    rotated = _targets(keys, "carol", version=2)  # the control: delegations rewritten
    drafted = check_repository(
        {"targets": rotated},
        before=before.get,
        after={**before, "targets": rotated}.get,
        completeness=Completeness.DRAFT,
    )
    assert drafted.to_resign == ()  # never signed: it had no trust to lose either way
