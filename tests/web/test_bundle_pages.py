"""The technician's offline bundle page (BP1-BP5 of ``web.bundle_pages``), as a browser drives it.

Issue 13 on the device's page: a technician downloads the bundle for the
device in front of them, with the authorization its release requires,
after a fresh one-time code (R9: the login's code cannot confirm, a code
is spent once, R25). The bundle's authorization is issued by the same call
as the technician's authorize form, bound to this device and to the
SHA-256 the published metadata signs (R58); nothing is issued when the code
is refused. The technician's codes are real TOTP codes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from fwcommon.bundle import AUTHORIZATION, Bundle
from repo_metadata.authorization import DEFAULT_GRACE, SignedAuthorization
from tests.clocks import FakeClock
from tests.update_server.people import otp_at
from tests.update_server.repo_world import make_world
from tests.web.pages import BASE, Browser, WebPerson, csrf_token
from tests.web.test_technician_pages import add_device, audit, issued, logged_in
from update_server.audit.actions import Action
from update_server.config import ServerConfig
from update_server.models import Role
from update_server.web import bundle_pages

TARGET = "pump-x100/fw-2.0.0.bin"
PAGE = "/technician/devices/pump-1/bundle"
BOUND = 64 * 1024 * 1024


@pytest.fixture
def published(
    app: Flask, config: ServerConfig, clock: FakeClock, tmp_path: Path
) -> Iterator[bytes]:
    """Release 2.0.0 of the pump line (requires an authorization); yields its bytes."""
    with pytest.MonkeyPatch.context() as patch:  # alice's code is a stand-in; tom's are real
        world = make_world(app, config, clock, tmp_path, patch)
        upload = world.release("alice", "2.0.0", requires_authorization=True)
        assert world.publish("alice", upload).status_code == 200
        data = (tmp_path / "pump-x100-2.0.0.bin").read_bytes()
    yield data


@pytest.fixture
def ward(app: Flask, clock: FakeClock, published: bytes) -> bytes:
    add_device(app, clock, "pump-1", "ward-3")
    add_device(app, clock, "pump-far", "other-hospital")
    add_device(app, clock, "pump-new", "ward-3", state="pending")
    return published


def download(
    browser: Browser, clock: FakeClock, person: WebPerson, code: str | None = None
) -> TestResponse:
    """Open the device's page, then confirm with ``code`` (default: the next step's)."""
    assert browser.get(PAGE).status_code == 200, browser.last_page
    if code is None:
        clock.advance(seconds=30)
        code = otp_at(person.totp, clock)
    response = browser.client.post(
        PAGE,
        data={"csrf_token": csrf_token(browser.last_page), "minutes": "30", "otp": code},
        base_url=BASE,
        headers={"Referer": f"{BASE}/"},
    )
    response.get_data()  # read whole, then closed: the streamed file is closed with it
    response.close()
    return response


def opened(response: TestResponse, tmp_path: Path) -> Bundle:
    file = tmp_path / "downloaded.tar"
    file.write_bytes(response.get_data())
    return Bundle.open(file, max_bytes=BOUND)


def test_the_devices_page_links_each_accepted_device_to_its_bundle(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes
) -> None:
    """BP1: the devices page links each accepted device to its bundle page."""
    logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    assert browser.get("/technician/devices").status_code == 200
    assert f'href="{PAGE}"' in browser.last_page
    assert browser.get(PAGE).status_code == 200
    page = browser.last_page
    assert TARGET in page and "required: one is issued for this device" in page
    assert 'name="otp"' in page and 'autocomplete="one-time-code"' in page


def test_a_fresh_code_downloads_the_bundle_with_its_authorization_r9_r13_r58(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes, tmp_path: Path
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    answer = download(browser, clock, tom)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:2000]
    assert answer.mimetype == "application/x-tar"
    assert answer.headers["Content-Disposition"].startswith("attachment;")
    assert "bundle-pump-1-2.0.0.tar" in answer.headers["Content-Disposition"]
    assert answer.headers["Cache-Control"] == "no-store"
    (row,) = issued(app)
    with opened(answer, tmp_path) as bundle:
        manifest = bundle.manifest
        document = bundle.read(AUTHORIZATION, limit=16 * 1024)
        firmware = [name for name in bundle.names() if name.endswith(".fw-2.0.0.bin")]
        carried = bundle.read(firmware[0], limit=BOUND)
    signed = SignedAuthorization.from_bytes(document).authorization
    sha256 = hashlib.sha256(ward).hexdigest()
    assert (signed.device_id, signed.target_path, signed.sha256) == ("pump-1", TARGET, sha256)
    assert document == row.document.encode("utf-8"), "the document exactly as issued"
    assert (signed.expires - signed.issued).total_seconds() == 30 * 60
    assert (manifest.device, manifest.release, manifest.authorization) == (
        "pump-1",
        TARGET,
        AUTHORIZATION,
    )
    assert carried == ward
    (entry,) = audit(app, Action.BUNDLE_CREATE)
    detail = json.loads(entry.detail)
    assert (entry.actor, entry.outcome, entry.object) == ("tom", "success", "device:pump-1")
    assert detail["sha256"] == hashlib.sha256(answer.get_data()).hexdigest()
    assert detail["authorization"] == signed.nonce[:16]
    assert [e.actor for e in audit(app, Action.AUTHORIZATION_ISSUE)] == ["tom"]


def test_the_login_code_or_a_spent_code_issues_nothing_r9_r25(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    login_code = otp_at(tom.totp, clock)
    refused = download(browser, clock, tom, code=login_code)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 401
    assert refused.mimetype == "text/html"
    assert "No bundle was made: one-time code refused" in page
    assert "Your next code can be used in" in page
    wrong = download(browser, clock, tom, code="000000")
    assert wrong.status_code == 401
    assert download(browser, clock, tom).status_code == 200
    spent = otp_at(tom.totp, clock)
    replayed = download(browser, clock, tom, code=spent)
    assert replayed.status_code == 401
    assert len(issued(app)) == 1, "only the one fresh code issued anything"
    assert len(audit(app, Action.BUNDLE_CREATE)) == 1


def test_a_device_out_of_scope_is_404_and_nothing_is_issued_r6(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes
) -> None:
    logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    assert browser.get("/technician/devices/pump-far/bundle").status_code == 404
    assert browser.get("/technician/devices/pump-none/bundle").status_code == 404
    assert issued(app) == []


def test_an_admin_makes_no_bundle_on_the_page_r9(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes
) -> None:
    logged_in(app, browser, clock, "ada", Role.ADMIN)
    assert browser.get(PAGE).status_code == 403
    assert 'href="/technician/devices/pump-1/bundle"' not in browser.get(
        "/technician/devices"
    ).get_data(as_text=True)


def test_a_forged_form_spends_no_code_w3(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes
) -> None:
    """CSRF first: a form without this site's token is refused before the code is read (R9)."""
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    clock.advance(seconds=30)
    code = otp_at(tom.totp, clock)
    forged = browser.client.post(
        PAGE, data={"minutes": "15", "otp": code}, base_url=BASE, headers={"Referer": f"{BASE}/"}
    )
    assert forged.status_code == 400
    assert issued(app) == []
    assert download(browser, clock, tom, code=code).status_code == 200, "the code is unspent"


def test_a_bundle_refused_after_its_authorization_issues_nothing_bp4(
    app: Flask,
    browser: Browser,
    clock: FakeClock,
    ward: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All or nothing: a bundle over its bound rolls its authorization back, the refusal is
    audited, the page says why, and the code stays spent (R25)."""
    monkeypatch.setattr(bundle_pages, "DEFAULT_MAX_BYTES", 16 * 1024)
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    refused = download(browser, clock, tom)
    assert refused.status_code == 409
    assert "No bundle was made:" in refused.get_data(as_text=True)
    assert issued(app) == []
    assert audit(app, Action.AUTHORIZATION_ISSUE) == []
    (entry,) = audit(app, Action.BUNDLE_CREATE)
    assert (entry.actor, entry.outcome, entry.object) == ("tom", "refused", "device:pump-1")
    spent = otp_at(tom.totp, clock)
    assert download(browser, clock, tom, code=spent).status_code == 401


def test_the_bundles_authorization_keeps_its_grace_for_a_device_in_use_r52(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes, tmp_path: Path
) -> None:
    """A device in clinical use defers the install (R52): the document carries the grace
    the authorize form gives, so the deferred install may still complete."""
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    answer = download(browser, clock, tom)
    with opened(answer, tmp_path) as bundle:
        document = bundle.read(AUTHORIZATION, limit=16 * 1024)
    signed = SignedAuthorization.from_bytes(document).authorization
    assert signed.grace == DEFAULT_GRACE


def test_a_pending_device_gets_no_bundle_and_nothing_is_issued_bp1(
    app: Flask, browser: Browser, clock: FakeClock, ward: bytes
) -> None:
    """BP1: a device not yet accepted gets no bundle; nothing is issued (R10)."""
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    assert 'id="bundle-pump-new"' not in browser.get("/technician/devices").get_data(as_text=True)
    page = "/technician/devices/pump-new/bundle"
    assert browser.get(page).status_code == 200
    assert "Nothing to bundle: device pump-new is pending" in browser.last_page
    assert 'id="bundle-form"' not in browser.last_page
    clock.advance(seconds=30)
    refused = browser.client.post(
        page,
        data={"csrf_token": csrf_token(browser.last_page), "minutes": "15",
              "otp": otp_at(tom.totp, clock)},
        base_url=BASE,
        headers={"Referer": f"{BASE}/"},
    )  # fmt: skip
    assert refused.status_code == 409
    assert issued(app) == []
