"""The release manager's deployment pages, nested in the ``web`` blueprint (``deployments``).

They orchestrate what the deployments API does (``deployments.views``),
calling the same steps (``rollout`` D1-D8, ``waves`` W1-W5, the freeze's
F3) with the same audit entries. Rules:

DP1 The API's readers (release manager, release engineer, security
    officer, auditor, administrator) see every deployment: its target,
    state, waves started and status counts; and each one's plan, approver,
    waves and devices. Only a release manager gets the forms. Each read
    lets the deployments progress first (D5, D6), as the API's reads do.
DP2 Creating takes a target chosen from those the published metadata signs,
    groups and/or fleets, waves typed as percentages or counts ("10%, 50%,
    100%", "1, 5"; none: one wave of every device) and both thresholds. A
    refused form (a wave or threshold that does not read or is out of
    range, no device left, a device in another open deployment...) creates
    nothing, is audited as the API's refusal, and shows the form again, as
    typed, with what to fix and the refusal's status.
DP3 (R9) Approving and aborting take a fresh one-time code typed in the
    form; pausing and resuming take none (the API's rules). A code is spent
    whatever happens next (R25). A refused code or step (the creator's own
    approval, a state that does not allow it, the freeze) changes nothing,
    is audited, and shows the deployment's page again with the reason and
    the refusal's status; a step done redirects to the page (303) saying
    what it did.
DP4 While the system is frozen, every deployment page says so with the
    freeze's own message (who, since when, why: ``freeze.rules.refusal``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm  # type: ignore[import-untyped]
from wtforms import StringField  # type: ignore[import-untyped]

from update_server.access import allow
from update_server.app import Services
from update_server.audit import Actor
from update_server.audit.actions import Action
from update_server.authorizations import offers
from update_server.authorizations.issuing import Release, published_release
from update_server.deployments import groups, rollout
from update_server.deployments.models import Deployment
from update_server.deployments.views import READERS
from update_server.errors import AuthenticationError, BadRequestError, ServerError
from update_server.freeze import rules as freeze_rules
from update_server.freeze import state as freeze_state
from update_server.models import Role
from update_server.publication.repository import OnlineRepository
from update_server.web.forms import ActionForm

blueprint = Blueprint("deployments", __name__, url_prefix="/deployments")

#: DP2: a wave as typed: a count, or a percentage ("10%").
_WAVE = re.compile(r"([0-9]{1,7})\s*(%?)")
_PERCENT = re.compile(r"[0-9]{1,3}")
#: DP3: the steps a page takes, the action each is audited as, what it says once done.
STEPS: dict[str, tuple[Action, str]] = {
    "approve": (Action.DEPLOYMENT_APPROVE, "You approved deployment {id}: it is {state}."),
    "pause": (
        Action.DEPLOYMENT_PAUSE,
        "Deployment {id} is paused: no wave starts and its devices are assigned nothing"
        " until it is resumed.",
    ),
    "resume": (Action.DEPLOYMENT_RESUME, "Deployment {id} runs again."),
    "abort": (
        Action.DEPLOYMENT_ABORT,
        "Deployment {id} is aborted: its devices are assigned nothing more.",
    ),
}


class CreateForm(FlaskForm):  # type: ignore[misc]
    """What ``POST /api/v1/deployments`` takes; ``groups`` and ``fleets`` come as lists."""

    target_path = StringField("Published release")
    waves = StringField("Waves")
    success_percent = StringField("Success threshold (%)", default="90")
    failure_percent = StringField("Failure threshold (%)", default="5")


class CodeForm(FlaskForm):  # type: ignore[misc]
    """Approve or abort: the fresh one-time code that confirms it (R9)."""

    otp = StringField("A new one-time code, to confirm")


def read_waves(text: str) -> list[dict[str, int]]:
    """DP2: "10%, 50%, 100%" or "1, 5" as the API's waves; empty: no wave asked for.

    Only the reading: the ranges are the core's (``waves.check_waves``, W1).
    """
    found = []
    for part in text.replace(";", ",").split(","):
        item = part.strip()
        if not item:
            continue
        matched = _WAVE.fullmatch(item)
        if matched is None:
            raise BadRequestError(
                f"waves: {item[:40]!r} is neither a number of devices nor a percentage;"
                " type them in order, such as 10%, 50%, 100% or 1, 5"
            )
        number, percent = int(matched.group(1)), matched.group(2)
        found.append({"percent": number} if percent else {"count": number})
    return found


def read_percent(text: str, name: str) -> int:
    """DP2: a threshold as typed: a whole number of percent (the range is the core's)."""
    value = text.strip().removesuffix("%").strip()
    if _PERCENT.fullmatch(value) is None:
        raise BadRequestError(f"{name}: type a whole number of percent, such as 90")
    return int(value)


@blueprint.get("")
@allow(*READERS)
def listed() -> ResponseReturnValue:
    """DP1: every deployment, newest first, once each has progressed."""
    now = _services().clock()
    rollout.evaluate_live(g.db, now=now, signed=_signed(), frozen=freeze_state.is_frozen(g.db))
    g.db.commit()
    shown = [rollout.summary(g.db, deployment) for deployment in rollout.listed(g.db)]
    return render_template(
        "deployments.html",
        deployments=shown,
        manager=g.user.role == Role.RELEASE_MANAGER,
        frozen=_frozen_message(),
        logout=ActionForm(),
    )


@blueprint.get("/new")
@allow(Role.RELEASE_MANAGER)
def new() -> ResponseReturnValue:
    return _new_page(CreateForm())


@blueprint.post("")
@allow(Role.RELEASE_MANAGER)
def create() -> ResponseReturnValue:
    """DP2: the API's create (D1, D2, W1), or the form again with what to fix."""
    form = CreateForm()
    path = (form.target_path.data or "").strip()
    try:
        deployment = _create(form, path)
    except ServerError as refused:
        _audit_refusal(Action.DEPLOYMENT_CREATE, f"new:{path[:300]}", refused)
        return _new_page(form, error=refused.detail, status=refused.status)
    g.db.commit()
    flash(
        f"Deployment {deployment.id} created: {sum(deployment.wave_sizes)} devices in"
        f" {len(deployment.wave_sizes)} waves of {_sizes(deployment.wave_sizes)}. It waits for"
        " another release manager's approval."
    )
    return redirect(url_for("web.deployments.show", deployment_id=deployment.id), 303)


@blueprint.get("/<int:deployment_id>")
@allow(*READERS)
def show(deployment_id: int) -> ResponseReturnValue:
    return _page(deployment_id)


@blueprint.post("/<int:deployment_id>/approve")
@allow(Role.RELEASE_MANAGER, fresh_otp=True)
def approve(deployment_id: int) -> ResponseReturnValue:
    """DP3, D3 (R9): another release manager approves; the first wave starts (D7: not frozen)."""
    g.db.commit()  # R25: the fresh code is spent whatever happens next

    def approved(deployment: Deployment) -> None:
        freeze_state.refuse_if_frozen(g.db)  # D7: an approval would start a wave
        rollout.approve(
            g.db, deployment, actor=_actor(), now=_now(), signed=_signed(), frozen=False
        )

    return _step(deployment_id, "approve", approved)


@blueprint.post("/<int:deployment_id>/pause")
@allow(Role.RELEASE_MANAGER)
def pause(deployment_id: int) -> ResponseReturnValue:
    return _step(deployment_id, "pause", _change("pause"))


@blueprint.post("/<int:deployment_id>/resume")
@allow(Role.RELEASE_MANAGER)
def resume(deployment_id: int) -> ResponseReturnValue:
    return _step(deployment_id, "resume", _change("resume"))


@blueprint.post("/<int:deployment_id>/abort")
@allow(Role.RELEASE_MANAGER, fresh_otp=True)
def abort(deployment_id: int) -> ResponseReturnValue:
    g.db.commit()  # R25: the fresh code is spent whatever happens next
    return _step(deployment_id, "abort", _change("abort"))


def refused_code(exc: AuthenticationError) -> ResponseReturnValue | None:
    """DP3: a refused fresh code shows the deployment's page again, else None.

    Only for a person with a session (no session: the login page, W5).
    """
    endpoints = {"web.deployments.approve", "web.deployments.abort"}
    if request.endpoint not in endpoints or g.get("user") is None or request.view_args is None:
        return None
    return _page(int(request.view_args["deployment_id"]), error=exc.detail, status=exc.status)


def _create(form: CreateForm, path: str) -> Deployment:
    if not path:
        raise BadRequestError("choose the published release to deploy")
    plan = rollout.plan_of(
        group_names=request.form.getlist("groups"),
        fleets=request.form.getlist("fleets"),
        wave_list=read_waves(form.waves.data or ""),
        success_percent=read_percent(form.success_percent.data or "", "success threshold"),
        failure_percent=read_percent(form.failure_percent.data or "", "failure threshold"),
    )
    repository = _repository()
    repository.require_initialised()
    release = published_release(repository, path)
    return rollout.create(g.db, release=release, plan=plan, actor=_actor(), now=_now())


def _change(change: str) -> Callable[[Deployment], None]:
    def apply(deployment: Deployment) -> None:
        if change == "resume":
            freeze_state.refuse_if_frozen(g.db)  # D7: resuming is progress
        rollout.change(
            g.db,
            deployment,
            change,
            actor=_actor(),
            now=_now(),
            signed=_signed(),
            frozen=freeze_state.is_frozen(g.db),
        )

    return apply


def _step(
    deployment_id: int, step: str, apply: Callable[[Deployment], None]
) -> ResponseReturnValue:
    """DP3: the step as a whole, or its refusal audited and the page shown with the reason."""
    action, done = STEPS[step]
    try:
        deployment = rollout.get(g.db, deployment_id)
        apply(deployment)
    except ServerError as refused:
        _audit_refusal(action, deployment_id, refused)
        return _page(deployment_id, error=refused.detail, status=refused.status)
    g.db.commit()
    flash(done.format(id=deployment.id, state=_words(deployment.state)))
    return redirect(url_for("web.deployments.show", deployment_id=deployment_id), 303)


def _audit_refusal(action: Action, deployment: int | str, refused: ServerError) -> None:
    """D3, D4: nothing of the step is kept; its refusal is, committed on its own."""
    g.db.rollback()
    rollout.audit_refusal(
        g.db, action, deployment, reason=refused.detail, actor=_actor(), now=_now()
    )
    g.db.commit()


def _page(
    deployment_id: int, *, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    """DP1, DP4: the deployment once it has progressed, and a release manager's forms."""
    deployment = rollout.get(g.db, deployment_id)
    frozen = freeze_state.is_frozen(g.db)
    rollout.evaluate(g.db, deployment, now=_now(), signed=_signed(), frozen=frozen)
    g.db.commit()
    shown = rollout.summary(g.db, deployment)
    devices = [rollout.device_summary(row) for row in rollout.devices_of(g.db, deployment)]
    by_wave: dict[int, list[dict[str, Any]]] = {}
    for device in devices:
        by_wave.setdefault(device["wave"], []).append(device)
    page = render_template(
        "deployment.html",
        deployment=shown,
        by_wave=by_wave,
        manager=g.user.role == Role.RELEASE_MANAGER,
        creator=g.user.name == deployment.created_by,
        can=_possible(rollout.State(deployment.state)),
        frozen=_frozen_message(),
        error=error,
        shown=shown_time,
        words=_words,
        code_form=CodeForm(),
        action=ActionForm(),
        logout=ActionForm(),
    )
    return page, status


def _new_page(
    form: CreateForm, *, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    """DP2: the form, with the published releases, the groups and the fleets to choose."""
    releases = _published()
    page = render_template(
        "deployment_new.html",
        form=form,
        releases=releases,
        groups=[groups.summary(group) for group in groups.all_groups(g.db)],
        fleets=sorted({model for release in releases for model in release.info.hardware_models}),
        chosen_groups=set(request.form.getlist("groups")),
        chosen_fleets=set(request.form.getlist("fleets")),
        frozen=_frozen_message(),
        error=error,
        logout=ActionForm(),
    )
    return page, status


def _possible(state: rollout.State) -> set[str]:
    """The steps the deployment's state allows (D3, D4): the buttons shown."""
    steps = {step for step, (sources, _, _) in rollout.CHANGES.items() if state in sources}
    return steps | ({"approve"} if state is rollout.State.AWAITING_APPROVAL else set())


def _published() -> list[Release]:
    repository = _repository()
    if not repository.is_initialised():
        return []
    return sorted(offers.published_releases(repository), key=lambda release: release.path)


def _frozen_message() -> str | None:
    """DP4: the freeze's own words while frozen, else None."""
    current = freeze_state.current(g.db)
    return freeze_rules.refusal(current) if current.mode is freeze_rules.Mode.FROZEN else None


def shown_time(moment: str | None) -> str:
    """An ISO time of a summary, as the pages show times."""
    if moment is None:
        return "never"
    return datetime.fromisoformat(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _words(name: str) -> str:
    return name.replace("_", " ")


def _sizes(sizes: list[int]) -> str:
    return ", ".join(str(size) for size in sizes)


def _repository() -> OnlineRepository:
    return OnlineRepository(_services().config.repository_dir, now=_now())


def _signed() -> rollout.SignedTargets:
    """The published targets, read once per request (``g``), as the API's."""
    if "fw_signed_targets" not in g:
        g.fw_signed_targets = rollout.SignedTargets(_repository())
    signed: rollout.SignedTargets = g.fw_signed_targets
    return signed


def _actor() -> Actor:
    return Actor(g.user.name, g.user.role, (request.remote_addr or "-")[:64])


def _now() -> datetime:
    return _services().clock()


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
