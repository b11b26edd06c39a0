"""A ward for the technician's tests: the real server, a release that needs an authorization.

The officers list the server's authorization key in root; release 2.0.0 of
``pump-x100`` requires a technician's authorization; pumps of ward 3 are
provisioned and registered with pre-authorized enrolment tokens. Used by the
end-to-end API story and by the browser's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import RunningServer, fwclient, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.unprivileged import invoke_fwserver
from update_server.config import ServerConfig

TARGET = f"{LINE}/pump-fw-2.0.0.bin"


@dataclass(frozen=True)
class Ward:
    server: RunningServer
    root: Path
    work: Path


def fwserver_cli(server: RunningServer, *args: str) -> str:
    argv = [args[0], args[1], "--data-dir", str(server.data_dir), *args[2:]]
    result = invoke_fwserver(argv)
    assert result.exit_code == 0, result.output
    return result.output


@contextlib.contextmanager
def serve_ward(work: Path, *, image_size: int = 64 * 1024) -> Iterator[Ward]:
    """The server of the ward in ``work``, publishing 2.0.0; stopped on leaving."""
    data_dir = new_data_dir(work)
    config = ServerConfig.load(data_dir)
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(image_size))
    offline = work / "offline"
    info = FirmwareInfo(
        version="2.0.0", security_version=1, hardware_models=(LINE,), requires_authorization=True
    )
    make_repository(offline, config, image, info, authorization=True)
    import_repository(data_dir, offline, targets_dir=work)
    with start_server(data_dir) as server:
        # The ward's pumps take the newest release a technician authorizes, with no
        # deployment (issue 11: an explicit per-fleet setting; "assigned" by default).
        fwserver_cli(server, "fleet", "install", LINE, "newest")
        yield Ward(server, offline / "metadata" / "1.root.json", work)


def pump(ward: Ward, device_id: str) -> list[str]:
    """A pump of ward 3: provisioned, registered with a pre-authorized token."""
    state = ward.work / device_id
    remote = ["--server", ward.server.url, "--ca", str(ward.server.ca)]
    provisioned = fwclient(
        "provision", "--state", str(state), "--root", str(ward.root),
        "--hardware-model", LINE, "--device-id", device_id,
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    output = fwserver_cli(
        ward.server, "device", "enrol-token", "--model", LINE, "--device-id", device_id,
        "--site", "ward-3", "--accept",
    )  # fmt: skip
    token = ward.work / f"{device_id}.token"
    token.write_text(output.strip().splitlines()[-1])
    registered = fwclient("register", "--state", str(state), *remote, "--token-file", str(token))
    assert registered.returncode == 0, registered.stderr
    return ["--state", str(state), *remote]
