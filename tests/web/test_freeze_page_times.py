"""The freeze page's times: UTC, to the second, labelled (``web.freeze_pages`` FP1).

The clock stands at times with microseconds when the freeze is entered and
when the first vote to lift it is cast; the page shows none of them (the
API keeps its ISO 8601 fields, with the times as stored).
"""

from __future__ import annotations

import re

from flask import Flask

from tests.clocks import FakeClock
from tests.update_server.people import otp_at
from tests.web.pages import Browser, web_person
from update_server.models import Role

REASON = "suspected leak of the timestamp key"


def _shown(moment: object) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")  # type: ignore[attr-defined]


def test_fp1_the_freeze_and_the_pending_vote_show_utc_times_to_the_second(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    olga = web_person(app, browser, clock, "olga", Role.SECURITY_OFFICER)
    assert browser.log_in("olga", olga.password, otp_at(olga.totp, clock)).status_code == 302
    browser.get("/freeze")
    frozen_at = clock.advance(seconds=30, microseconds=123456)
    entered = browser.post("/freeze/enter", {"reason": REASON, "otp": otp_at(olga.totp, clock)})
    assert entered.status_code == 303, browser.last_page
    browser.get("/freeze")
    voted_at = clock.advance(seconds=30, microseconds=654321)
    voted = browser.post("/freeze/lift", {"otp": otp_at(olga.totp, clock)})
    assert voted.status_code == 303, browser.last_page
    window = app.extensions["fw"].config.unfreeze_window

    browser.get("/freeze")

    page = browser.last_page
    assert f'<span id="since">{_shown(frozen_at)}</span>' in page
    assert f"olga voted to lift it at {_shown(voted_at)}" in page
    assert f"before {_shown(voted_at + window)}" in page
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", page)  # no fraction of a second anywhere
    assert "+00:00" not in page
