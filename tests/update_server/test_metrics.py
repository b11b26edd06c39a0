"""``GET /metrics`` in one process: the text parses, counts what it names, and is closed (R38).

The app under test counts into this process's registry (``metrics`` P4),
shared by every test of the process: each test compares the counts after
with the counts before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from client.events import EventLog, EventType
from tests.clocks import FakeClock
from tests.update_server.devices_helpers import FakeDevice, audit_entries, detail, issue_token
from tests.update_server.people import enrolled_user
from tests.update_server.repo_world import World
from update_server.app import create_app
from update_server.audit.actions import Action
from update_server.config import ConfigError, ServerConfig
from update_server.keys import signer_loader
from update_server.models import Role
from update_server.observability import metrics
from update_server.observability.metrics_access import MIN_TOKEN_LENGTH, Refused

METRICS = "/metrics"
OUTSIDE = {"REMOTE_ADDR": "192.0.2.7"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient, **kwargs: object) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus_client's own parser."""
    answer = client.get(METRICS, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_rule_method_and_status_class_p1(
    client: FlaskClient,
) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/health").status_code == 200
    client.get("/metadata/no-such-role.json")
    client.get("/no/such/page/at/all")
    after = scrape(client)
    name = "fwserver_http_requests_total"
    health = {"route": "/api/v1/health", "method": "GET", "status": "2xx"}
    assert value(after, name, **health) - value(before, name, **health) == 3
    rule = {"route": "/metadata/<path:path>", "method": "GET", "status": "4xx"}
    assert value(after, name, **rule) - value(before, name, **rule) == 1
    unmatched = {"route": metrics.UNMATCHED, "method": "GET", "status": "4xx"}
    assert value(after, name, **unmatched) - value(before, name, **unmatched) == 1
    assert not any("no-such-role" in str(key) or "no/such" in str(key) for key in after)
    latency = "fwserver_http_request_duration_seconds_count"
    timed = {"route": "/api/v1/health", "method": "GET"}
    assert value(after, latency, **timed) - value(before, latency, **timed) == 3


def test_an_unknown_method_is_one_label_whatever_it_is_called_p1(client: FlaskClient) -> None:
    client.open("/api/v1/health", method="BREW")
    client.open("/api/v1/health", method="BREW2")
    samples = scrape(client)
    assert not any(dict(labels).get("method", "").startswith("BREW") for _, labels in samples)


def _log(path: Path, kinds: list[str], clock: FakeClock) -> list[dict[str, object]]:
    """A device's real event log (``client.events``) with these events."""
    log = EventLog(path / "events.log")
    for kind in kinds:
        log.append(EventType(kind), kind, now=clock.now, target="pump-x100/fw-2.0.0.bin")
    return list(log.entries())


def test_device_check_ins_and_the_reported_results_and_refusals_are_counted_h2_h3(
    app: Flask, client: FlaskClient, clock: FakeClock, tmp_path: Path
) -> None:
    admin = enrolled_user(app, client, clock, "alice", Role.ADMIN)
    device = FakeDevice("pump-1")
    device.register(client, issue_token(client, admin, clock, accept=True), now=clock.now)
    entries = _log(tmp_path, ["updated", "rollback_attack", "no_update", "bad_hash"], clock)
    before = scrape(client)
    assert device.report(client, now=clock.now, entries=entries[:2]).status_code == 200
    # The second report repeats entry 2 (a lost acknowledgement): it is not counted again.
    assert device.report(client, now=clock.now, entries=entries[1:]).status_code == 200
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    checkins = {"route": "/api/v1/device/reports", "status": "2xx"}
    assert delta("fwserver_device_checkins_total", **checkins) == 2
    assert delta("fwserver_device_update_results_total", event="updated") == 1
    assert delta("fwserver_device_update_refusals_total", event="rollback_attack") == 1
    assert delta("fwserver_device_update_refusals_total", event="bad_hash") == 1
    assert delta("fwserver_device_update_results_total", event="no_update") == 0


def test_a_refused_report_counts_no_event_h3(
    app: Flask, client: FlaskClient, clock: FakeClock, tmp_path: Path
) -> None:
    admin = enrolled_user(app, client, clock, "alice", Role.ADMIN)
    device = FakeDevice("pump-1")
    device.register(client, issue_token(client, admin, clock, accept=True), now=clock.now)
    entries = _log(tmp_path, ["updated", "updated"], clock)
    entries[1]["message"] = "edited after the fact"
    before = scrape(client)
    answer = device.report(client, now=clock.now, entries=entries)
    assert "refused" in answer.get_json()
    after = scrape(client)
    name = "fwserver_device_update_results_total"
    assert value(after, name, event="updated") == value(before, name, event="updated")


def test_every_counted_event_type_is_one_the_device_logs_p1() -> None:
    logged = {kind.value for kind in EventType}
    assert logged >= metrics.RESULT_EVENTS
    assert logged >= metrics.REFUSAL_EVENTS
    assert not metrics.RESULT_EVENTS & metrics.REFUSAL_EVENTS


def test_a_publication_is_counted(world: World) -> None:
    before = scrape(world.client)
    release = world.release("alice", "1.1.0")
    assert world.publish("alice", release).status_code == 200
    after = scrape(world.client)
    name = "fwserver_publications_total"
    assert value(after, name) - value(before, name) == 1


def test_alerts_sent_and_failed_are_counted_for_the_alert_worker(client: FlaskClient) -> None:
    before = scrape(client)
    metrics.count_alert(metrics.AlertOutcome.SENT)
    metrics.count_alert(metrics.AlertOutcome.FAILED)
    metrics.count_alert(metrics.AlertOutcome.FAILED)
    after = scrape(client)
    name = "fwserver_alerts_total"
    assert value(after, name, outcome="sent") - value(before, name, outcome="sent") == 1
    assert value(after, name, outcome="failed") - value(before, name, outcome="failed") == 2


def test_metrics_are_refused_off_the_loopback_by_default_and_the_refusal_audited_a1(
    app: Flask, client: FlaskClient
) -> None:
    answer = client.get(METRICS, environ_base=OUTSIDE)
    assert answer.status_code == 403
    assert "fwserver_" not in answer.get_data(as_text=True)
    (entry,) = audit_entries(app, Action.ACCESS_REFUSED)
    assert (entry.object, detail(entry)["reason"], detail(entry)["status"]) == (
        "GET /metrics",
        Refused.NOT_LOOPBACK.value,
        403,
    )
    assert entry.source == OUTSIDE["REMOTE_ADDR"]


def test_metrics_are_served_on_the_ipv6_loopback_a1(client: FlaskClient) -> None:
    assert client.get(METRICS, environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


TOKEN = "m" * MIN_TOKEN_LENGTH


@pytest.fixture
def token_app(config: ServerConfig, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    file = tmp_path / "metrics.token"
    file.write_text(TOKEN + "\n")
    file.chmod(0o600)
    configured = config.with_changes(metrics_access="token", metrics_token_file=file)
    app = create_app(configured, clock=clock, signer_loader=signer_loader(configured))
    app.testing = True
    yield app
    app.extensions["fw"].engine.dispose()


def test_with_a_token_the_metrics_need_it_from_anywhere_a2(token_app: Flask) -> None:
    client = token_app.test_client()
    good = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": "Bearer " + "x" * MIN_TOKEN_LENGTH}
    assert client.get(METRICS, headers=good, environ_base=OUTSIDE).status_code == 200
    assert client.get(METRICS, headers=wrong, environ_base=OUTSIDE).status_code == 401
    assert client.get(METRICS).status_code == 401  # the loopback without the token too
    refused = [detail(e) for e in audit_entries(token_app, Action.ACCESS_REFUSED)]
    assert [(d["reason"], d["status"]) for d in refused] == [(Refused.TOKEN.value, 401)] * 2


def test_a_token_file_others_can_read_stops_the_start_a2(
    config: ServerConfig, tmp_path: Path
) -> None:
    file = tmp_path / "metrics.token"
    file.write_text(TOKEN)
    file.chmod(0o644)
    configured = config.with_changes(metrics_access="token", metrics_token_file=file)
    with pytest.raises(ConfigError, match="chmod 600"):
        create_app(configured, signer_loader=signer_loader(configured))


def test_a_short_token_stops_the_start_a2(config: ServerConfig, tmp_path: Path) -> None:
    file = tmp_path / "metrics.token"
    file.write_text("short")
    file.chmod(0o600)
    configured = config.with_changes(metrics_access="token", metrics_token_file=file)
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(configured, signer_loader=signer_loader(configured))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metrics_access": "anyone"}, "metrics_access: must be one of"),
        ({"metrics_access": "token"}, "metrics_token_file"),
        ({"metrics_token_file": Path("/tmp/t")}, "metrics_token_file"),
    ],
)
def test_no_other_metrics_access_policy_is_accepted_a3(
    config: ServerConfig, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config.with_changes(**changes)


def test_a_process_that_counted_cannot_switch_to_files_p3(tmp_path: Path) -> None:
    metrics.count_publication()  # this test process counts in memory
    with pytest.raises(metrics.MetricsError, match="counted already"):
        metrics.use_multiprocess_dir(tmp_path)
