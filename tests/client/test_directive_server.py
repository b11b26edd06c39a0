"""A compromised update server directs a registered device; the real ``fwclient`` refuses.

Issue 11 (R13, R25; ``client.directive`` P2, policy rule 8): the server's
poll can delay an update or name one the device refuses, never downgrade or
corrupt it. ``LyingServer`` is the whole server side over real HTTPS on
127.0.0.1: it serves a validly published repository (``tests.client.sim``),
answers the device's poll with whatever the test tells it, and keeps the
reports the device sends. It checks no signature, as a compromised server
would not. The device is ``fwclient`` itself (its HTTPS fetcher, its signed
device API, its event log and report), run through click's test runner.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections import ChainMap
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from client import cli, device_api
from client.state import StateDir
from tests.client.sim import DEVICE, MODEL, Sim, sha256
from update_server.tls import CERT_FILE, KEY_FILE, generate_self_signed

POLL = "/api/v1/device/poll"


class LyingServer(ThreadingHTTPServer):
    """HTTPS: the simulated repository's files, a poll answer set by the test, kept reports."""

    daemon_threads = True

    def __init__(self, sim: Sim, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        generate_self_signed(directory, names=("127.0.0.1",), now=datetime.now(UTC))
        self.ca = directory / CERT_FILE
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.sim = sim
        self.poll: dict[str, Any] = {}
        self.reported: list[dict[str, Any]] = []
        self.fetched: list[str] = []
        self.url = f"https://127.0.0.1:{self.server_address[1]}"

    def assign(self, path: str, *, sha: str | None = None, version: str = "9.9.9") -> None:
        """Answer the next polls with an assignment of ``path`` (its real SHA-256 if signed)."""
        image = self.sim.images.get(path, b"")
        self.poll = {
            "mode": "normal",
            "install": "assigned",
            "assignment": {
                "deployment": 41,
                "target_path": path,
                "sha256": sha or sha256(image),
                "version": version,
            },
            "window": None,
        }

    def reported_events(self) -> list[dict[str, Any]]:
        return [entry for report in self.reported for entry in report["entries"]]


class _Handler(BaseHTTPRequestHandler):
    server: LyingServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.fetched.append(self.path)
        if self.path == POLL:
            self._json(200, self.server.poll)
        elif self.path == device_api.AUTHORIZATIONS:
            self._json(200, {"authorizations": []})
        else:
            files = ChainMap(self.server.sim.override, self.server.sim.files)
            data = files.get(self.path)
            if data is None:
                self._json(404, {"detail": "not found"})
            else:
                self._send(200, data, "application/octet-stream")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != device_api.REPORTS:
            self._json(404, {"detail": "not found"})
            return
        self.server.reported.append(body)
        last = body["entries"][-1]
        self._json(200, {"acked_seq": last["seq"], "acked_hash": last["hash"]})

    def _json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: the test reads what was asked from the server's records."""


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def server(sim: Sim, tmp_path: Path) -> Iterator[LyingServer]:
    lying = LyingServer(sim, tmp_path / "tls")
    thread = threading.Thread(target=lying.serve_forever, daemon=True)
    thread.start()
    yield lying
    lying.shutdown()
    lying.server_close()
    thread.join(timeout=10)


@pytest.fixture
def device(tmp_path: Path, sim: Sim, server: LyingServer) -> list[str]:
    """A pump provisioned and registered with ``server``: the arguments of its updates."""
    root = tmp_path / "1.root.json"
    root.write_bytes(sim.root(1))
    state = tmp_path / "pump"
    provisioned = fwclient(
        "provision", "--state", str(state), "--root", str(root),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    assert provisioned.exit_code == 0, provisioned.output
    answer = {"device_id": DEVICE, "state": "accepted"}
    device_api.mark_registered(StateDir(state), answer, server=server.url)
    return ["--state", str(state), "--server", server.url, "--ca", str(server.ca)]


def fwclient(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def refused(result: Result) -> str:
    """The one line ``fwclient`` prints for a refused assignment (its reason: in the report)."""
    assert result.exit_code == 1, result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("fwclient: assignment_")]
    assert line.startswith("fwclient: assignment_refused: "), line
    assert "Traceback" not in result.output
    return line


def running(state: str) -> tuple[str | None, str | None, str | None]:
    device = StateDir(Path(state))
    env = device.bootenv()
    return device.floor().installed_version, env.active, env.pending


def test_a_compromised_server_cannot_downgrade_or_plant_unsigned_firmware_r13_r25(
    sim: Sim, server: LyingServer, device: list[str]
) -> None:
    old = sim.release("1.0.0", 1)
    withdrawn = sim.release("1.5.0", 2)
    current = sim.release("2.0.0", 2)
    sim.repo.remove_target(MODEL, withdrawn, "alice", "bob")
    sim.publish()

    server.assign(current, version="2.0.0")  # honest first: the device takes its deployment
    installed = fwclient("update", *device, "--boot")
    assert installed.exit_code == 0, installed.output
    state = device[1]
    assert running(state) == ("2.0.0", "b", None)

    server.assign(old, version="1.0.0")  # an older release, validly signed
    line = refused(fwclient("update", *device))
    assert "1.0.0 is not newer than the installed 2.0.0" in line

    server.assign(withdrawn, sha="5a" * 32, version="1.5.0")  # withdrawn from the signed set
    line = refused(fwclient("update", *device))
    assert "never signed, or withdrawn" in line

    planted = f"{MODEL}/fw-9.9.9.bin"  # bytes the server holds, signed by no one
    server.sim.override[f"/targets/{MODEL}/{'77' * 32}.fw-9.9.9.bin"] = b"\x90" * 4096
    server.assign(planted, sha="77" * 32)
    refused(fwclient("update", *device))

    server.assign(current, sha="66" * 32, version="2.0.0")  # a signed path, other bytes
    refused(fwclient("update", *device))

    assert running(state) == ("2.0.0", "b", None), "the device still runs what it verified"
    targets = {path for path in server.fetched if path.startswith("/targets/")}
    assert targets == {sim.target_url(current)}, "only the verified firmware was downloaded"
    reasons = [
        entry["detail"]["reason"]
        for entry in server.reported_events()
        if entry["type"] == "assignment_refused"
    ]
    assert reasons == ["not_newer", "not_signed", "not_signed", "other_sha256"]
    [first] = [e for e in server.reported_events() if e["type"] == "assignment_refused"][:1]
    assert (first["detail"]["deployment"], first["detail"]["target"]) == (41, old)


def test_a_poll_without_a_valid_answer_installs_nothing_and_exits_1_p3(
    sim: Sim, server: LyingServer, device: list[str]
) -> None:
    sim.release("1.0.0", 1)
    server.poll = {"mode": "normal", "install": "sometimes", "assignment": None, "window": None}
    result = fwclient("update", *device)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()  # one line naming the event, as every refusal
    assert line.startswith("fwclient: poll_unanswered: ")
    assert "install 'sometimes' is not one of: assigned, newest" in result.stderr
    assert running(device[1]) == (None, "a", None)
    assert [e["type"] for e in server.reported_events()][-1] == "poll_unanswered"


def test_a_frozen_server_reaches_the_device_which_installs_nothing_and_exits_0_p5(
    sim: Sim, server: LyingServer, device: list[str]
) -> None:
    path = sim.release("1.0.0", 1)
    server.assign(path, version="1.0.0")
    server.poll["mode"] = "frozen"
    result = fwclient("update", *device)
    assert result.exit_code == 0, result.output
    assert "failsafe freeze" in result.output
    assert running(device[1]) == (None, "a", None)
    polled = fwclient("run", *device, "--max-polls", "1")  # the agent asks too
    assert polled.exit_code == 0, polled.output
    assert server.fetched.count(POLL) == 2
    assert [e["type"] for e in server.reported_events()][-2:] == ["server_frozen"] * 2
    server.poll["mode"] = "normal"
    assert fwclient("update", *device).exit_code == 0
    assert running(device[1]) == (None, "a", "b")
