"""The device's signed requests to its server: registration, polls, reports, authorizations (R10).

Rules:

- A1 One urllib3 pool with one connection, reused for every request of a
  run (reports go on one TLS connection), HTTPS only, the server's
  certificate checked against the CA the device was given.
- A2 Every request is signed with the device key (``client.identity``) by
  the profile in ``fwcommon.message_signatures`` (RFC 9421: method, path,
  query, body digest, ``created``, a fresh ``nonce``, ``keyid`` = device id).
  Nothing is retried: a retry would be a new request, with a new nonce,
  made by the caller.
- A3 The enrolment token is read from a file or ``FWCLIENT_ENROLMENT_TOKEN``,
  never the command line (argv is visible to every user in ``ps``); it is
  sent once, in the signed registration body, and never logged.
- A4 An answer is JSON of at most ``MAX_ANSWER`` bytes; a refusal (4xx,
  5xx) raises ``DeviceApiError`` with the server's own ``detail``.
- A5 The poll's answer is read by ``client.directive.parse`` (rule P1) and
  nothing else: a directive the device still checks against its signed
  metadata and its own install policy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3

from client import directive
from client.errors import ClientError
from client.identity import device_key, device_signer
from client.state import StateDir
from fwcommon.files import atomic_write
from fwcommon.message_signatures import public_key_dict, signed_json

logger = logging.getLogger(__name__)

TOKEN_ENV = "FWCLIENT_ENROLMENT_TOKEN"  # noqa: S105 - a variable's name, not a secret
MAX_ANSWER = 1024 * 1024
#: Written once the server answered a registration: the device then reports and
#: picks up technicians' authorizations at every poll.
REGISTERED_FILE = "registered.json"
MAX_TOKEN_FILE = 4096
REGISTER = "/api/v1/devices/register"
REPORTS = "/api/v1/device/reports"
AUTHORIZATIONS = "/api/v1/device/authorizations"
POLL = "/api/v1/device/poll"


class DeviceApiError(ClientError):
    """The server refused a device request, or could not be reached; the message says which."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_registered(state: StateDir) -> bool:
    return (state.root / REGISTERED_FILE).is_file()


def mark_registered(state: StateDir, answer: Mapping[str, Any], *, server: str) -> None:
    """Record that ``server`` registered this device (atomically; the answer's state)."""
    record = {"server": server, "device_id": answer.get("device_id"), "state": answer.get("state")}
    atomic_write(state.root / REGISTERED_FILE, (json.dumps(record) + "\n").encode(), mode=0o644)


def enrolment_token(token_file: Path | None, env: Mapping[str, str]) -> str:
    """A3: the token from ``token_file``, else ``FWCLIENT_ENROLMENT_TOKEN``."""
    if token_file is not None:
        with token_file.open("rb") as handle:
            token = handle.read(MAX_TOKEN_FILE).decode("utf-8", "replace").strip()
        source = str(token_file)
    else:
        token, source = env.get(TOKEN_ENV, "").strip(), TOKEN_ENV
    if not token:
        raise ClientError(
            f"no enrolment token in {source}: give --token-file FILE or set {TOKEN_ENV}"
            " (never on the command line)"
        )
    return token


class DeviceApi:
    """Signed requests of the device in ``state`` to ``server`` (A1, A2)."""

    def __init__(
        self,
        state: StateDir,
        *,
        server: str,
        ca: Path,
        timeout: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not server.startswith("https://"):
            raise ClientError(f"--server {server}: the update server is reached over HTTPS only")
        self._base = server.rstrip("/")
        self._state = state
        self._device_id = state.identity().device_id
        self._signer = device_signer(state)
        self._clock = clock
        self._pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca),
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )

    @property
    def connections(self) -> int:
        """TLS connections opened so far (A1: one for a whole run)."""
        pools = self._pool.pools
        return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118

    def close(self) -> None:
        self._pool.clear()

    def register(self, token: str) -> dict[str, Any]:
        """Register with ``token``, proving possession of the device key (A2, A3)."""
        identity = self._state.identity()
        body = {
            "device_id": identity.device_id,
            "hardware_model": identity.hardware_model,
            "public_key": public_key_dict(device_key(self._state).public_key),
            "token": token,
        }
        return self.request("POST", REGISTER, body)

    def send_report(self, body: dict[str, Any]) -> Mapping[str, Any]:
        """``client.report``'s ``send``: the server's answer to one report."""
        return self.request("POST", REPORTS, body)

    def poll(self) -> directive.Directive:
        """What the server directs this device to do now (``client.directive``, rule P1)."""
        return directive.parse(self.request("GET", POLL, None))

    def authorizations(self) -> list[Any]:
        answer = self.request("GET", AUTHORIZATIONS, None)
        found = answer.get("authorizations")
        if not isinstance(found, list):
            raise DeviceApiError("the server's answer holds no list of authorizations")
        return found

    def request(self, method: str, path: str, body: Any | None) -> dict[str, Any]:
        """One signed request (A2); its JSON answer, or ``DeviceApiError`` (A4)."""
        url = self._base + path
        data, headers = signed_json(
            method, url, body, signer=self._signer, key_id=self._device_id, created=self._clock()
        )
        try:
            response = self._pool.request(
                method, url, body=data or None, headers=headers, preload_content=False
            )
            raw = response.read(MAX_ANSWER + 1)
            response.release_conn()
        except urllib3.exceptions.SSLError as exc:
            raise DeviceApiError(f"{url}: the server's certificate was refused ({exc})") from None
        except urllib3.exceptions.HTTPError as exc:
            raise DeviceApiError(
                f"{url}: {type(exc).__name__}: the server cannot be reached"
            ) from None
        return _answer(url, response.status, raw)


def _answer(url: str, status: int, raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_ANSWER:
        raise DeviceApiError(f"{url}: the answer is larger than {MAX_ANSWER} bytes", status=status)
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DeviceApiError(f"{url}: answered {status} without a JSON object", status=status)
    if status >= 400:
        detail = answer.get("detail") or answer.get("title") or "refused"
        raise DeviceApiError(f"the server refused it ({status}): {detail}", status=status)
    return answer
