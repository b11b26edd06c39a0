"""``/metrics`` of the real ``fwserver serve`` (gunicorn, 2 workers, TLS): the server's totals.

Each worker counts into its own file of the run's metrics directory
(``observability.metrics`` P2); the test reads those files itself, with
prometheus_client's own reader, to see that both workers answered requests,
and checks that ``/metrics`` (answered by whichever worker) shows their sum.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningServer, new_data_dir, start_server, stop_server

REQUESTS = 240
HEALTH = "/api/v1/health"
COUNTER = "fwserver_http_requests_total"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("metrics"))
    with start_server(data_dir, workers=2) as running:
        yield running


def _metrics_dir(server: RunningServer) -> Path:
    found = re.search(r"^metrics: every worker counts in (\S+)", server.stdout.read_text(), re.M)
    assert found, server.stdout.read_text()
    return Path(found[1])


def _health_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == COUNTER
                and labels.get("route") == HEALTH
                and labels["status"] == "2xx"
            ):
                return sample.value
    return 0.0


def _per_worker(directory: Path) -> dict[int, float]:
    """Each worker's own count of 2xx health checks, read from its file."""
    counts = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        counts[pid] = sum(
            value
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(file))
            if _is_health(json.loads(key))
        )
    return counts


def _is_health(key: list[object]) -> bool:
    """A sample key of the mmap file: [metric, sample name, labels, help]."""
    _metric, name, labels, _help = key
    wanted = {"route": HEALTH, "method": "GET", "status": "2xx"}
    return name == COUNTER and isinstance(labels, dict) and labels == wanted


def _get(server: RunningServer, path: str) -> urllib3.BaseHTTPResponse:
    """One request on a connection of its own, so that any worker may accept it."""
    with server.pool() as pool:
        return pool.request("GET", f"{server.url}{path}", headers={"Connection": "close"})


def test_counts_from_both_workers_add_up_in_metrics_p2(server: RunningServer) -> None:
    before = _health_count(_get(server, "/metrics").data.decode())
    with ThreadPoolExecutor(max_workers=8) as threads:
        statuses = list(threads.map(lambda _: _get(server, HEALTH).status, range(REQUESTS)))
    assert statuses == [200] * REQUESTS
    per_worker = _per_worker(_metrics_dir(server))
    workers = set(server.worker_pids())
    assert {pid for pid, count in per_worker.items() if count} == workers, per_worker
    for _ in range(4):  # whichever worker answers the scrape, it shows the server's total
        total = _health_count(_get(server, "/metrics").data.decode())
        assert total == sum(per_worker.values()) == before + REQUESTS


def test_the_metrics_directory_is_fresh_per_run_and_removed_at_exit_p2(tmp_path: Path) -> None:
    data_dir = new_data_dir(tmp_path)
    with start_server(data_dir, workers=2) as running:
        directory = _metrics_dir(running)
        first = _health_count(_get(running, "/metrics").data.decode())
        assert directory.is_dir()
        assert stop_server(running.process) == 0
    assert not directory.exists()
    assert first <= 2  # only the harness's own health checks of this run
