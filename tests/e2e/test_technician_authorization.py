"""A technician authorizes one pump's update, end to end on the real server over TLS.

Issue 10's "done when" (R9, R25, R58): the officers list the server's
authorization key in root; release 2.0.0 requires an authorization; two
pumps of ward 3 are registered. Without an authorization a pump waits
(exit 0). Tom, a technician of ward 3, logs in with password and code and
authorizes pump 1 with a fresh code; pump 1 picks it up at its next update,
installs it, and reports; the server shows who authorized what and that it
was used. The same document handed to pump 2 is refused; pump 1 cannot use
it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import fwclient
from tests.e2e.people import call, enrolled
from tests.e2e.ward import TARGET, Ward, fwserver_cli, pump, serve_ward


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    with serve_ward(tmp_path_factory.mktemp("technician-e2e")) as served:
        yield served


def test_a_technician_authorizes_one_pump_with_a_fresh_code_and_only_that_pump_installs_it(
    ward: Ward,
) -> None:
    pump1, pump2 = pump(ward, "pump-0001"), pump(ward, "pump-0002")

    waiting = fwclient("update", *pump1)
    assert waiting.returncode == 0, waiting.stderr
    assert "needs a technician's authorization" in waiting.stdout

    tom = enrolled(ward.server, "tom", role="technician")
    fwserver_cli(ward.server, "user", "scope", "tom", "--site", "ward-3")
    body = {"device_ids": ["pump-0001"], "target_path": TARGET}
    status, answer, _ = call(ward.server, "POST", "/api/v1/authorizations", body, tom.headers)
    assert status == 401, "a fresh code is required (R9)"
    headers = {**tom.headers, "X-OTP": tom.unused_code()}
    status, answer, _ = call(ward.server, "POST", "/api/v1/authorizations", body, headers)
    assert status == 201, answer
    document = answer["authorizations"][0]["document"]

    installed = fwclient("update", *pump1)
    assert installed.returncode == 0, installed.stderr
    assert "in slot b" in installed.stdout
    booted = fwclient("boot", "--state", pump1[1])
    assert booted.returncode == 0, booted.stderr
    reported = fwclient("report", *pump1)
    assert reported.returncode == 0, reported.stderr

    status, listed, _ = call(ward.server, "GET", "/api/v1/authorizations", None, tom.headers)
    assert status == 200
    [issued] = listed["authorizations"]
    assert (issued["device_id"], issued["technician"], issued["status"]) == (
        "pump-0001",
        "tom",
        "used",
    )
    shown = fwserver_cli(ward.server, "device", "show", "pump-0001")
    assert "2.0.0" in shown

    handed = ward.work / "authorization.json"
    handed.write_text(json.dumps(document))
    refused = fwclient("update", *pump2, "--authorization", str(handed))
    assert refused.returncode == 1
    assert "authorization_wrong_device" in refused.stderr
    again = fwclient("update", *pump1, "--authorization", str(handed))
    assert again.returncode == 0
    assert "no newer firmware" in again.stdout
