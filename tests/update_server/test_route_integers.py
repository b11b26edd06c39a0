"""An integer in a route beyond the tables' ids is not found, never a 500 (R42).

Found by the API fuzz (tests/attack/test_api_fuzz.py): werkzeug's ``int``
converter takes any number of digits, and PostgreSQL (``integer out of
range`` past 2**31 - 1, the ids being Integer columns) and SQLite
(``OverflowError`` past 2**63 - 1) fail on the query, so
``GET /api/v1/deployments/12860858957469805707264`` answered 500. The app's
``int`` converter is bounded to the ids' range (``app.LARGEST_ID``): a larger
id matches no route (404, as an unknown id does), on every route that takes
one (API and web pages alike).
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.clocks import FakeClock
from tests.update_server.people import bearer, enrolled_user
from update_server.models import Role

pytestmark = pytest.mark.usefixtures("fast_hashing")

LARGEST = 2**31 - 1
ROUTES = (
    ("GET", "/api/v1/deployments/{}", Role.RELEASE_MANAGER),
    ("POST", "/api/v1/deployments/{}/resume", Role.RELEASE_MANAGER),
    ("GET", "/api/v1/authorizations/{}", Role.TECHNICIAN),
)


@pytest.mark.parametrize(("method", "route", "role"), ROUTES, ids=[r[1] for r in ROUTES])
def test_an_id_past_the_databases_integers_is_not_found_never_a_500_r42(
    app: Flask, client: FlaskClient, clock: FakeClock, method: str, route: str, role: Role
) -> None:
    person = enrolled_user(app, client, clock, "pat", role)
    for number in (LARGEST + 1, 2**63, 12860858957469805707264, 10**40):
        answer = client.open(route.format(number), method=method, headers=bearer(person.token))
        assert answer.status_code == 404, (number, answer.get_json())
        assert answer.mimetype == "application/problem+json"
    largest = client.open(route.format(LARGEST), method=method, headers=bearer(person.token))
    assert largest.status_code != 500, largest.get_json()
