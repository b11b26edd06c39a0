"""The install policy: which signed firmware a device takes, and why it refuses others."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from securesystemslib.signer import CryptoSigner

from client import policy
from client.directive import NEWEST, Selection
from client.events import AUTHORIZATION_REFUSALS, EventType
from client.policy import Candidate, Choice
from client.state import Floor
from repo_metadata.authorization import (
    Authorization,
    AuthorizationContext,
    AuthorizationKeys,
    NonceRecord,
    Problem,
    SignedAuthorization,
    sign,
)
from repo_metadata.firmware import FirmwareInfo

MODEL = "pump-x100"
DEVICE = "pump-0001"
AT = datetime(2030, 5, 4, 10, 0, tzinfo=UTC)
KEY = CryptoSigner.generate_ed25519()
TRUSTED = AuthorizationKeys({KEY.public_key.keyid: KEY.public_key})
#: Rule 5's input when the device holds no authorization.
NOTHING_HELD = AuthorizationContext(TRUSTED, DEVICE, AT)


def choose(
    candidates: Iterable[Candidate],
    *,
    authorizations: AuthorizationContext = NOTHING_HELD,
    selection: Selection = NEWEST,
    running_entry: policy.RunningEntry | None = None,
    **kwargs: Any,
) -> Choice:
    """``policy.choose`` with no authorization held, the newest selected and no rule 7 lookup,
    unless a test says."""
    return policy.choose(
        candidates,
        authorizations=authorizations,
        selection=selection,
        running_entry=running_entry,
        **kwargs,
    )


def authorized(
    target: Candidate, *, device: str = DEVICE, nonce: str = "0f" * 32
) -> SignedAuthorization:
    return sign(
        Authorization(
            device_id=device,
            target_path=target.path,
            sha256=target.sha256,
            nonce=nonce,
            issued=AT - timedelta(minutes=1),
            expires=AT + timedelta(minutes=14),
            technician="tom",
        ),
        KEY,
    )


def holding(*documents: SignedAuthorization, **nonces: NonceRecord) -> AuthorizationContext:
    return AuthorizationContext(TRUSTED, DEVICE, AT, held=documents, nonces=nonces)


def candidate(
    version: str,
    security_version: int = 1,
    *,
    models: tuple[str, ...] = (MODEL,),
    **fields: object,
) -> Candidate:
    info = FirmwareInfo(
        version=version,
        security_version=security_version,
        hardware_models=models,
        **fields,  # type: ignore[arg-type]
    )
    digest = hashlib.sha256(version.encode()).hexdigest()
    return Candidate(f"{models[0]}/fw-{version}.bin", 1000, digest, info, MODEL)


def pick(*candidates: Candidate, floor: Floor | None = None, **kwargs: object) -> str | None:
    choice = choose(
        candidates,
        hardware_model=MODEL,
        running_sha256=None,
        floor=floor or Floor(),
        **kwargs,  # type: ignore[arg-type]
    )
    return choice.chosen.info.version if choice.chosen else None


def test_the_newest_version_is_chosen_in_semver_order() -> None:
    assert pick(candidate("1.9.0"), candidate("1.10.0"), candidate("1.2.0")) == "1.10.0"


def test_a_release_outranks_its_prereleases_and_prereleases_are_skipped_by_default() -> None:
    assert pick(candidate("2.0.0-rc.1"), candidate("1.0.0")) == "1.0.0"
    assert pick(candidate("2.0.0-rc.1"), candidate("1.0.0"), prereleases=True) == "2.0.0-rc.1"
    assert pick(candidate("2.0.0-rc.1"), candidate("2.0.0"), prereleases=True) == "2.0.0"


def test_nothing_newer_than_the_installed_version_is_no_update_and_no_refusal() -> None:
    choice = choose(
        [candidate("1.0.0"), candidate("1.1.0")],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(1, "1.1.0"),
    )
    assert choice.chosen is None
    assert choice.refused == ()
    assert choice.considered == 2


def test_hardware_mismatch_is_refused_r15() -> None:
    other_model = candidate("2.0.0", models=("pump-x200",))
    choice = choose([other_model], hardware_model=MODEL, running_sha256=None, floor=Floor())
    assert choice.chosen is None
    assert [r.event for r in choice.refused] == [EventType.HARDWARE_MISMATCH]
    assert "pump-x200" in choice.refused[0].reason


def test_a_firmware_for_several_models_fits_each_of_them() -> None:
    assert pick(candidate("2.0.0", models=("pump-x200", MODEL))) == "2.0.0"


def test_security_version_below_the_floor_is_a_firmware_downgrade_r25() -> None:
    choice = choose(
        [candidate("9.0.0", 2)], hardware_model=MODEL, running_sha256=None, floor=Floor(3, "2.0.0")
    )
    assert choice.chosen is None
    assert [r.event for r in choice.refused] == [EventType.FIRMWARE_DOWNGRADE]
    assert "below this device's floor 3" in choice.refused[0].reason


def test_security_version_equal_to_the_floor_is_allowed() -> None:
    assert pick(candidate("2.1.0", 3), floor=Floor(3, "2.0.0")) == "2.1.0"


def test_an_older_acceptable_release_is_chosen_and_the_newer_refusal_reported() -> None:
    choice = choose(
        [candidate("3.0.0", 1), candidate("2.5.0", 3)],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(3, "2.0.0"),
    )
    assert choice.chosen is not None
    assert choice.chosen.info.version == "2.5.0"
    assert [r.candidate.info.version for r in choice.refused] == ["3.0.0"]


def test_min_installed_version_must_be_met() -> None:
    needs = candidate("3.0.0", min_installed_version="2.0.0")
    assert pick(needs, floor=Floor(1, "2.0.0")) == "3.0.0"
    choice = choose([needs], hardware_model=MODEL, running_sha256=None, floor=Floor(1, "1.5.0"))
    assert choice.chosen is None
    assert choice.refused[0].event is EventType.PREREQUISITE_MISSING
    assert "needs version 2.0.0 or later" in choice.refused[0].reason
    unknown = choose([needs], hardware_model=MODEL, running_sha256=None, floor=Floor())
    assert "unknown version" in unknown.refused[0].reason


def test_firmware_that_failed_its_health_check_here_is_not_reinstalled() -> None:
    bad = candidate("2.0.0")
    choice = choose(
        [bad, candidate("1.5.0")],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(1, "1.0.0"),
        known_bad={bad.sha256},
    )
    assert choice.chosen is not None
    assert choice.chosen.info.version == "1.5.0"
    assert [r.event for r in choice.refused] == [EventType.KNOWN_BAD]


def test_a_release_requiring_authorization_waits_for_one_r9() -> None:
    choice = choose(
        [candidate("2.0.0", requires_authorization=True)],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(),
    )
    assert choice.chosen is None
    assert choice.refused[0].event is EventType.AWAITING_AUTHORIZATION


def test_a_release_requiring_authorization_is_chosen_with_the_document_that_allows_it_r58() -> None:
    needs = candidate("2.0.0", requires_authorization=True)
    document = authorized(needs)
    choice = choose(
        [needs, candidate("1.5.0")],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(1, "1.0.0"),
        authorizations=holding(document),
    )
    assert choice.chosen == needs
    assert choice.authorization == document


def test_an_authorization_for_another_device_leaves_the_release_refused_and_says_why() -> None:
    needs = candidate("2.0.0", requires_authorization=True)
    choice = choose(
        [needs, candidate("1.5.0")],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(1, "1.0.0"),
        authorizations=holding(authorized(needs, device="pump-0002")),
    )
    assert choice.chosen is not None and choice.chosen.info.version == "1.5.0"
    assert [r.event for r in choice.refused] == [EventType.AUTHORIZATION_WRONG_DEVICE]
    assert choice.authorization is None


def test_an_authorization_already_used_here_is_a_replay_r25() -> None:
    needs = candidate("2.0.0", requires_authorization=True)
    used = NonceRecord("0f" * 32, needs.path, needs.sha256, AT, AT + timedelta(hours=1), AT)
    choice = choose(
        [needs],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(1, "1.0.0"),
        authorizations=holding(authorized(needs), **{used.nonce: used}),
    )
    assert choice.chosen is None
    assert [r.event for r in choice.refused] == [EventType.AUTHORIZATION_REPLAYED]


def test_the_authorization_rule_comes_after_the_others() -> None:
    """A document never overrides the floor or the model (one more rule, not a bypass)."""
    below_floor = candidate("2.0.0", 1, requires_authorization=True)
    choice = choose(
        [below_floor],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(3, "1.0.0"),
        authorizations=holding(authorized(below_floor)),
    )
    assert choice.chosen is None
    assert [r.event for r in choice.refused] == [EventType.FIRMWARE_DOWNGRADE]


def test_a_recovery_may_reinstall_the_installed_version_but_never_below_the_floor() -> None:
    same = candidate("2.0.0", 3)
    assert pick(same, floor=Floor(3, "2.0.0")) is None
    assert pick(same, floor=Floor(3, "2.0.0"), recovery=True) == "2.0.0"
    assert pick(candidate("2.0.0", 2), floor=Floor(3, "2.0.0"), recovery=True) is None


def test_an_empty_repository_chooses_nothing() -> None:
    choice = choose([], hardware_model=MODEL, running_sha256=None, floor=Floor())
    assert (choice.chosen, choice.refused, choice.considered) == (None, (), 0)


def test_one_mis_signed_build_of_the_running_version_does_not_freeze_a_newer_release_r29() -> None:
    """R29: the same version, other bytes, is reported; the newer release is still chosen.

    One signing mistake must not keep a fleet from a security fix: each
    release is verified on its own, the contradiction is reported beside it.
    """
    rebuilt = candidate("1.1.0")
    choice = choose(
        [rebuilt, candidate("1.2.0", 2)],
        hardware_model=MODEL,
        running_sha256="0" * 64,
        floor=Floor(1, "1.1.0"),
    )
    assert choice.chosen is not None and choice.chosen.info.version == "1.2.0"
    assert [(r.candidate, r.event) for r in choice.contradicted] == [
        (rebuilt, EventType.INTEGRITY_FAILURE)
    ]
    assert "the same version, other bytes" in choice.contradicted[0].reason
    assert choice.refused == ()


def test_the_running_version_signed_with_other_bytes_is_never_chosen_r29() -> None:
    """R29: with nothing newer, the contradiction is the result; not even a recovery takes it."""
    rebuilt = candidate("1.1.0")
    for recovery in (False, True):
        choice = choose(
            [rebuilt, candidate("1.0.0")],
            hardware_model=MODEL,
            running_sha256="0" * 64,
            floor=Floor(1, "1.1.0"),
            recovery=recovery,
        )
        assert choice.chosen is None
        assert [r.candidate for r in choice.contradicted] == [rebuilt]
        assert not choice.unlisted
    same_bytes = choose(
        [rebuilt], hardware_model=MODEL, running_sha256=rebuilt.sha256, floor=Floor(1, "1.1.0")
    )
    assert (same_bytes.chosen, same_bytes.contradicted) == (None, ())


def test_a_set_older_than_the_running_release_is_unlisted_replay_or_withdrawal() -> None:
    """TUF rollback after a cache wipe, or a withdrawal: the set stops before what runs."""
    older = [candidate("1.0.0"), candidate("1.1.0")]
    running = candidate("1.1.0").sha256
    assert choose(
        older, hardware_model=MODEL, running_sha256=running, floor=Floor(1, "2.0.0")
    ).unlisted
    assert not choose(
        older, hardware_model=MODEL, running_sha256=running, floor=Floor(1, "1.1.0")
    ).unlisted
    assert not choose(older, hardware_model=MODEL, running_sha256=None, floor=Floor()).unlisted


def test_a_replay_is_not_hidden_by_a_newer_release_this_device_never_takes_r25() -> None:
    """R25: a replayed or withdrawn set with a newer pre-release or another model's release.

    Neither is a release this device would install (it takes no
    pre-release, R15 another model's firmware), so neither counts as newer:
    the running release is still unlisted, never a silent "no update".
    """
    running = Floor(1, "2.0.0")
    older = candidate("1.0.0")
    prerelease = candidate("2.1.0-rc.1")
    other_model = candidate("3.0.0", models=("pump-x200",))
    for newer in (prerelease, other_model):
        choice = choose([older, newer], hardware_model=MODEL, running_sha256=None, floor=running)
        assert choice.unlisted, newer.info.version
        assert choice.chosen is None
    asked_for = choose(
        [older, prerelease],
        hardware_model=MODEL,
        running_sha256=None,
        floor=running,
        prereleases=True,
    )
    assert not asked_for.unlisted
    running_prerelease = choose(
        [older, prerelease],
        hardware_model=MODEL,
        running_sha256=None,
        floor=Floor(1, "2.1.0-rc.1"),
    )
    assert not running_prerelease.unlisted, "the running pre-release is listed"


def test_every_refused_authorization_has_its_own_event_type() -> None:
    """One event per threat, so the server and a person can tell them apart."""
    assert set(policy.AUTHORIZATION_EVENTS) == set(Problem)
    assert set(policy.AUTHORIZATION_EVENTS.values()) == AUTHORIZATION_REFUSALS
    assert len(set(policy.AUTHORIZATION_EVENTS.values())) == len(Problem)
