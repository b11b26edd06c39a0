"""The TUF conformance protocol (``client.conformance``) against a repository over HTTP.

The repository is built by the client tests' one builder
(``tests/client/tuf_repo.py``: tuf's Metadata API, CryptoSigner keys,
consistent snapshots), published as the update server publishes it
(``tests/tuf_mirror.py``), and served on 127.0.0.1 by a threaded
``http.server`` that records every request (and can trickle a file). The
client runs as the tuf-conformance suite runs it, one command line at a
time; what counts is what the suite sees: the exit status, the files left in
the metadata and target directories, and the requests made. The tests under
"the device's own code" show what a stock ngclient ``Updater`` would not do:
that is how they prove the entry point runs the device client's code.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.exceptions import DownloadError

from client import provisioning
from client.conformance import PRIVATE_DIR, LoopbackHttpFetcher, main
from client.events import EventType
from client.fetcher import HttpsFetcher, Pace
from client.state import StateDir
from tests.client.tuf_repo import TufRepo
from tests.hsm_mock.helpers import skip_or_fail
from tests.tuf_mirror import publication, target_url

TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")
#: A trickle: one byte per ``GAP`` s, far below ``PACE`` (and a stock client's socket timeout).
GAP = 0.05
PACE = Pace(min_rate=1000, grace=0.3)
ROOT = Path(__file__).resolve().parents[2]


def _now() -> datetime:
    # ngclient checks expiry against the real clock (the suite fakes it with faketime).
    return datetime.now(UTC)


class Repository:
    """A TUF repository with consistent snapshots, as the HTTP server serves it.

    Its roles are built and signed by the client tests' one builder
    (``tests.client.tuf_repo``, python-tuf's Metadata API; one key per role,
    named after it) under ``path``, and served as the update server publishes
    them (``tests.tuf_mirror.publication``). ``files`` maps URL paths to
    bytes; ``served`` maps each role's metadata file name, as a client stores
    it, to the bytes last published for it. A root (``rotate_root``) is
    published at once; every other change when ``publish()`` is called.
    """

    def __init__(self, path: Path) -> None:
        self.signers: dict[str, Signer] = {
            role: CryptoSigner.generate_ed25519() for role in TOP_LEVEL
        }
        self.tuf = TufRepo(path, self.signers, now=_now)
        self.tuf.create_one_key_per_role()
        self.files: dict[str, bytes] = {}
        self.target_urls: dict[str, str] = {}
        self.served: dict[str, bytes] = {}
        self.publications = 0
        self.requests: list[str] = []
        #: URL paths served one byte per ``GAP`` seconds.
        self.trickle: set[str] = set()
        self.url = ""
        self.publish()

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/metadata"

    @property
    def targets_url(self) -> str:
        return f"{self.url}/targets"

    def version(self, role: str) -> int:
        """The version of ``role`` as last signed."""
        return int(self.tuf.read(role).signed.version)

    def rotate_root(self, *, signers: tuple[str, ...] = ("root", "root-2")) -> bytes:
        """Replace the root key by ``root-2``: version N+1 signed by ``signers``, published."""
        self.signers["root-2"] = CryptoSigner.generate_ed25519()
        self.tuf.rotate("root", add=["root-2"], remove=["root"], signers=signers)
        self.publish()
        return self.served["root.json"]

    def delegate(self, role: str, prefix: str, *, terminating: bool = True) -> None:
        """Delegate ``prefix*`` from targets to ``role``, with a key of its own."""
        self.signers[role] = CryptoSigner.generate_ed25519()
        self.tuf.delegate_line(
            role,
            prefix=prefix,
            keys=(role,),
            threshold=1,
            bin_bits=None,
            signers=("targets",),
            terminating=terminating,
        )

    def add_target(self, path: str, data: bytes, *, role: str = "targets") -> str:
        """Sign ``path`` in ``role`` and serve its file; returns the URL path it is served at."""
        self.tuf.add_target(role, path, data, None, role)
        url_path = target_url(path, data)
        self.files[url_path] = data
        self.target_urls[path] = url_path
        return url_path

    def expire(self, role: str) -> None:
        """Sign ``role`` again, expired a day ago."""
        with self.tuf.edit(role, role, expires=_now().replace(microsecond=0) - timedelta(days=1)):
            pass

    def publish(self, *, timestamp_expires: timedelta = timedelta(days=1)) -> None:
        """Serve every role as signed, with a new snapshot and timestamp."""
        self.publications += 1
        published = publication(
            self.tuf.path,
            version=self.publications,
            snapshot_signer=self.signers["snapshot"],
            timestamp_signer=self.signers["timestamp"],
            now=_now().replace(microsecond=0),
            timestamp_expires=timestamp_expires,
        )
        self.files |= published
        self.served = {
            **self.tuf.role_files(),
            "snapshot.json": published[f"/metadata/{self.publications}.snapshot.json"],
            "timestamp.json": published["/metadata/timestamp.json"],
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    repository: Repository


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        repository = self.server.repository
        repository.requests.append(self.path)
        data = repository.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.path not in repository.trickle:
            self.wfile.write(data)
            return
        for byte in data:
            time.sleep(GAP)
            try:
                self.wfile.write(bytes([byte]))
            except OSError:  # the client hung up: what a trickle test wants
                return

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    """A published repository served over plain HTTP on 127.0.0.1."""
    repository = Repository(tmp_path / "repository")
    repository.add_target("pump/fw-1.bin", b"firmware one")
    repository.add_target("pump/fw-2.bin", b"firmware two")
    repository.add_target("notes.txt", b"release notes")
    repository.publish()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.repository = repository
    repository.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield repository
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class Client:
    """The client's command lines, exactly as the conformance suite spells them."""

    def __init__(self, workdir: Path, repository: Repository) -> None:
        self.repository = repository
        self.pace: Pace | None = None  # the device's own unless a test sets one
        self.root_file = workdir / "initial_root.json"
        self.metadata_dir = workdir / "metadata"
        self.target_dir = workdir / "targets"
        self.metadata_dir.mkdir()
        self.target_dir.mkdir()

    def init(self, root: bytes | None = None) -> int:
        self.root_file.write_bytes(root or self.repository.files["/metadata/1.root.json"])
        return main(["--metadata-dir", str(self.metadata_dir), "init", str(self.root_file)])

    def refresh(self, *, metadata_url: str | None = None) -> int:
        return main(
            [
                *("--metadata-url", metadata_url or self.repository.metadata_url),
                *("--metadata-dir", str(self.metadata_dir)),
                "refresh",
            ],
            pace=self.pace,
        )

    def download(self, *names: str, targets_url: str | None = None) -> int:
        return main(
            [
                *("--metadata-url", self.repository.metadata_url),
                *("--metadata-dir", str(self.metadata_dir)),
                *(arg for name in names for arg in ("--target-name", name)),
                *("--target-dir", str(self.target_dir)),
                *("--target-base-url", targets_url or self.repository.targets_url),
                "download",
            ],
            pace=self.pace,
        )

    @property
    def time_floor(self) -> StateDir:
        """Where the client keeps its time floor, beside (not among) the trusted roles."""
        return StateDir(self.metadata_dir / PRIVATE_DIR)

    def trusted(self) -> dict[str, bytes]:
        """The files of the metadata directory; anything else there must be a directory."""
        entries = sorted(self.metadata_dir.iterdir())
        assert all(entry.is_dir() for entry in entries if not entry.name.endswith(".json"))
        return {entry.name: entry.read_bytes() for entry in entries if entry.is_file()}

    def downloaded(self) -> dict[str, bytes]:
        return {file.name: file.read_bytes() for file in sorted(self.target_dir.iterdir())}


@pytest.fixture
def client(tmp_path: Path, repo: Repository) -> Client:
    return Client(tmp_path, repo)


def _target_requests(repository: Repository) -> list[str]:
    return [path for path in repository.requests if path.startswith("/targets/")]


# init


def test_init_trusts_the_root_file_byte_for_byte_without_a_request(
    client: Client, repo: Repository
) -> None:
    assert client.init() == 0
    assert client.trusted() == {"root.json": repo.files["/metadata/1.root.json"]}
    assert repo.requests == []


@pytest.mark.parametrize(
    "content", [None, b"not json", b"timestamp"], ids=["missing", "not json", "timestamp"]
)
def test_init_refuses_what_is_not_root_metadata(
    client: Client, repo: Repository, content: bytes | None
) -> None:
    if content == b"timestamp":
        content = repo.files["/metadata/timestamp.json"]
    args = ["--metadata-dir", str(client.metadata_dir), "init", str(client.root_file)]
    if content is not None:
        client.root_file.write_bytes(content)
    assert main(args) == 1
    assert client.trusted() == {}


# refresh


def test_refresh_keeps_only_the_trusted_roles_as_served(client: Client, repo: Repository) -> None:
    assert client.init() == 0
    assert client.refresh() == 0
    assert client.trusted() == repo.served
    assert set(repo.served) == {f"{role}.json" for role in TOP_LEVEL}


def test_refresh_without_init_trusts_nothing_on_first_use(client: Client, repo: Repository) -> None:
    assert client.refresh() == 1
    assert repo.requests == []
    assert client.trusted() == {}


def test_refresh_from_an_unreachable_repository_fails(client: Client, repo: Repository) -> None:
    assert client.init() == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo.url = f"http://127.0.0.1:{port}"  # closed: the connection is refused
    assert client.refresh() == 1
    assert client.trusted() == {"root.json": repo.served["root.json"]}


def test_expired_timestamp_fails_and_is_not_kept(client: Client, repo: Repository) -> None:
    repo.publish(timestamp_expires=timedelta(days=-1))
    assert client.init() == 0
    assert client.refresh() == 1
    assert "timestamp.json" not in client.trusted()


def test_root_rotation_replaces_root_json(client: Client, repo: Repository) -> None:
    assert client.init() == 0
    assert client.refresh() == 0
    root_v2 = repo.rotate_root()
    assert client.refresh() == 0
    assert client.trusted()["root.json"] == root_v2
    assert "/metadata/2.root.json" in repo.requests


def test_root_signed_only_by_a_new_key_is_refused(client: Client, repo: Repository) -> None:
    root_v1 = repo.files["/metadata/1.root.json"]
    assert client.init() == 0
    repo.rotate_root(signers=("root-2",))
    assert client.refresh() == 1
    assert client.trusted() == {"root.json": root_v1}


# download


def test_download_stores_each_verified_target_under_its_encoded_path(
    client: Client, repo: Repository
) -> None:
    assert client.init() == 0
    assert client.download("pump/fw-1.bin", "notes.txt") == 0
    assert client.downloaded() == {
        "pump%2Ffw-1.bin": b"firmware one",
        "notes.txt": b"release notes",
    }
    assert client.trusted() == repo.served


def test_download_again_fetches_no_target(client: Client, repo: Repository) -> None:
    assert client.init() == 0
    assert client.download("pump/fw-1.bin", "pump/fw-2.bin") == 0
    repo.requests.clear()
    assert client.download("pump/fw-1.bin", "pump/fw-2.bin") == 0
    assert _target_requests(repo) == []
    assert len(client.downloaded()) == 2


def test_changed_target_lands_again_under_the_same_name(client: Client, repo: Repository) -> None:
    assert client.init() == 0
    assert client.download("pump/fw-1.bin") == 0
    repo.add_target("pump/fw-1.bin", b"firmware one, fixed")
    repo.publish()
    assert client.download("pump/fw-1.bin") == 0
    assert client.downloaded() == {"pump%2Ffw-1.bin": b"firmware one, fixed"}


@pytest.mark.parametrize("failure", ["not listed", "not served", "tampered"])
def test_download_stops_at_the_first_failing_target(
    client: Client, repo: Repository, failure: str
) -> None:
    second = "pump/fw-9.bin" if failure == "not listed" else "pump/fw-2.bin"
    if failure == "not served":
        del repo.files[repo.target_urls[second]]
    elif failure == "tampered":
        repo.files[repo.target_urls[second]] = b"firmware 2wo"  # same length, other hash
    assert client.init() == 0
    assert client.download("pump/fw-1.bin", second, "notes.txt") == 1
    assert client.downloaded() == {"pump%2Ffw-1.bin": b"firmware one"}
    assert not any(path.endswith("notes.txt") for path in _target_requests(repo))


def test_download_with_expired_targets_fetches_nothing(client: Client, repo: Repository) -> None:
    repo.expire("targets")
    repo.publish()
    assert client.init() == 0
    assert client.download("pump/fw-1.bin") == 1
    assert client.downloaded() == {}
    assert _target_requests(repo) == []


def test_delegated_role_is_kept_under_its_percent_encoded_name(
    client: Client, repo: Repository
) -> None:
    repo.delegate("fw/pump", "pump/delegated/")
    repo.add_target("pump/delegated/fw-3.bin", b"firmware three", role="fw/pump")
    repo.publish()
    assert client.init() == 0
    assert client.download("pump/delegated/fw-3.bin") == 0
    assert client.trusted()["fw%2Fpump.json"] == repo.served["fw%2Fpump.json"]
    assert client.trusted() == repo.served
    assert client.downloaded() == {"pump%2Fdelegated%2Ffw-3.bin": b"firmware three"}


# the device's own code, which a stock ngclient Updater would not run


@pytest.mark.parametrize("slow", ["timestamp", "target"])
def test_slow_retrieval_is_cut_off_by_the_devices_pace_check(
    client: Client, repo: Repository, slow: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trickle well inside every socket timeout: a stock client waits it out, ours stops."""
    repo.add_target("pump/fw-3.bin", bytes(400))  # 20 s at one byte per GAP
    repo.publish()
    path = "/metadata/timestamp.json" if slow == "timestamp" else repo.target_urls["pump/fw-3.bin"]
    repo.trickle.add(path)
    client.pace = PACE
    assert client.init() == 0
    started = time.monotonic()
    assert client.download("pump/fw-3.bin") == 1
    assert time.monotonic() - started < len(repo.files[path]) * GAP / 2
    assert "below 1000 B/s" in capsys.readouterr().err
    assert client.downloaded() == {}


def test_a_clock_behind_the_time_floor_checks_expiry_at_the_floor(
    client: Client, repo: Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    """The timestamp is valid by the clock (a stock client accepts it), expired at the floor."""
    assert client.init() == 0
    client.time_floor.raise_time_floor(datetime.now(UTC) + timedelta(days=2))
    assert client.refresh() == 1
    assert "before the trusted time" in capsys.readouterr().err


def test_a_successful_refresh_raises_the_time_floor_outside_the_trusted_roles(
    client: Client, repo: Repository
) -> None:
    assert client.init() == 0
    before = datetime.now(UTC)
    assert client.refresh() == 0
    floor = client.time_floor.time_floor()
    assert floor is not None and before <= floor <= datetime.now(UTC)
    assert client.trusted() == repo.served, "the floor lives in a subdirectory"


def test_a_clock_reset_before_the_build_time_is_never_trusted_without_a_floor_r52(
    client: Client, repo: Repository
) -> None:
    """R52, TUF freeze: with no time floor recorded, the device's own: the client's build time.

    The entry point runs as the suite runs it, with its clock a day behind
    ``BUILT`` (datefudge): the refresh is checked at the build time and the
    floor raised to it, as in a device session (``update.session_time``),
    not at the clock, as a time rule of its own would.
    """
    if shutil.which("datefudge") is None:
        skip_or_fail("datefudge is not installed (apt-get install datefudge)")
    assert client.init() == 0
    behind = provisioning.BUILT - timedelta(days=1)
    refresh = subprocess.run(
        [
            *("datefudge", f"{behind:%Y-%m-%d %H:%M:%S}"),
            *(sys.executable, "-m", "client.conformance"),
            *("--metadata-url", repo.metadata_url, "--metadata-dir", str(client.metadata_dir)),
            "refresh",
        ],
        capture_output=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "TZ": "UTC"},
    )
    assert refresh.returncode == 0, refresh.stderr
    assert b"behind the time floor" in refresh.stderr
    assert client.time_floor.time_floor() == provisioning.BUILT


def test_a_damaged_time_floor_is_rebuilt_as_on_the_device_never_a_stop_r52(
    client: Client, repo: Repository
) -> None:
    """R52, R33: a truncated time floor is rebuilt from the build time and logged, not a stop."""
    assert client.init() == 0
    floor = client.time_floor
    floor.root.mkdir()
    floor.time_floor_file.write_text('{"time": "20')
    before = datetime.now(UTC)
    assert client.refresh() == 0
    entry = floor.events.last(EventType.INTEGRITY_FAILURE)
    assert entry is not None and entry["detail"]["file"] == "time_floor.json"
    assert entry["detail"]["time_floor"] == provisioning.BUILT.isoformat()
    moved = floor.time_floor()
    assert moved is not None and moved >= before, "the refresh raised the rebuilt floor"
    assert client.trusted() == repo.served


def test_a_role_past_a_terminating_delegation_is_walked_but_never_trusted_for_a_target(
    client: Client, repo: Repository
) -> None:
    """Discovery (docs/adr/0003) reads every role for the directory; ngclient's walk decides.

    ``fw/a`` is terminating for ``pump/``: ngclient never looks past it, so a
    target only ``fw/b`` lists is not found, although the discovery walk
    fetched and verified ``fw/b`` (the request a stock client would not make).
    """
    repo.delegate("fw/a", "pump/", terminating=True)
    repo.delegate("fw/b", "pump/", terminating=False)
    repo.add_target("pump/fw-b.bin", b"past the terminating role", role="fw/b")
    repo.publish()
    assert client.init() == 0
    assert client.download("pump/fw-b.bin") == 1
    assert f"/metadata/{repo.version('fw/b')}.fw%2Fb.json" in repo.requests
    assert _target_requests(repo) == []
    assert client.downloaded() == {}


@pytest.mark.parametrize(
    "url",
    [
        "http://updates.example/metadata/",
        "http://192.0.2.1:8080/metadata/",
        "LOCALHOST",  # a name, resolved after the check: refused though it is this host
        "HTTPS",  # the device's scheme, but not what this entry point is for
    ],
)
def test_a_metadata_url_other_than_plain_http_to_loopback_is_refused_before_any_request(
    client: Client, repo: Repository, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if url == "LOCALHOST":
        url = repo.metadata_url.replace("127.0.0.1", "localhost")
    elif url == "HTTPS":
        url = repo.metadata_url.replace("http://", "https://")
    assert client.init() == 0
    assert client.refresh(metadata_url=url) == 1
    assert "plain HTTP from a loopback address only" in capsys.readouterr().err
    assert repo.requests == []


def test_a_target_base_url_off_loopback_is_refused_before_any_request(
    client: Client, repo: Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client.init() == 0
    assert client.download("notes.txt", targets_url="http://192.0.2.1/targets/") == 1
    assert "refusing http://192.0.2.1/targets/" in capsys.readouterr().err
    assert repo.requests == []


def test_the_conformance_fetcher_itself_refuses_plain_http_off_loopback() -> None:
    """The rule holds inside the fetcher too, for any URL ngclient builds, before connecting."""
    fetcher = LoopbackHttpFetcher(pace=Pace())
    with pytest.raises(DownloadError, match="loopback address only"):
        list(fetcher.fetch("http://192.0.2.1/metadata/timestamp.json"))


def test_the_devices_fetcher_still_refuses_plain_http_even_to_loopback(
    repo: Repository, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not used: no connection is made\n")
    with pytest.raises(DownloadError, match="only HTTPS"):
        list(HttpsFetcher(ca=ca).fetch(f"{repo.metadata_url}/timestamp.json"))
    assert repo.requests == []


# decision records and expected failures


def _adr(name: str) -> Path:
    return ROOT / "docs" / "adr" / name


def test_each_expected_conformance_failure_cites_a_decision_record() -> None:
    """``client/conformance.xfails``: test ids, each after a comment naming its ADR."""
    cited: str | None = None
    failures = 0
    for line in (ROOT / "client" / "conformance.xfails").read_text().splitlines():
        if line.startswith("#"):
            found = re.search(r"docs/adr/(\S+\.md)", line)
            cited = found.group(1) if found else cited
            continue
        if line.strip():
            assert cited is not None and _adr(cited).is_file(), f"{line}: no decision record"
            failures += 1
    assert failures > 0


def test_each_decision_record_names_tests_that_exist() -> None:
    records = sorted((ROOT / "docs" / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert len(records) >= 3
    for record in records:
        text = record.read_text()
        for heading in ("## Context", "## Decision", "## Security argument", "## Guarded by"):
            assert heading in text, f"{record.name}: no {heading!r}"
        guards = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", text)
        assert guards, f"{record.name}: names no test"
        for module, test in guards:
            source = (ROOT / module).read_text()
            assert re.search(rf"^def {test}\(", source, re.M), f"{record.name}: {module}::{test}"


# the command line


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["refresh"],
        ["--metadata-dir", "D"],
        ["--metadata-dir", "D", "init"],
        ["--metadata-dir", "D", "refresh"],
        ["--metadata-dir", "D", "--metadata-url", "http://127.0.0.1:9", "download"],
        ["--metadata-dir", "D", "frobnicate"],
        ["--metadata-dir", "D", "--bogus", "refresh"],
    ],
    ids=" ".join,
)
def test_bad_arguments_exit_1_not_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 1


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "download" in capsys.readouterr().out


def test_runs_as_a_module(client: Client, repo: Repository) -> None:
    module = [
        sys.executable,
        "-m",
        "client.conformance",
        "--metadata-dir",
        str(client.metadata_dir),
    ]
    client.root_file.write_bytes(repo.files["/metadata/1.root.json"])
    init = subprocess.run([*module, "init", str(client.root_file)], check=False, timeout=60)
    assert init.returncode == 0
    refresh = subprocess.run(
        [*module, "--metadata-url", repo.metadata_url, "refresh"], check=False, timeout=60
    )
    assert refresh.returncode == 0
    assert client.trusted() == repo.served
    usage = subprocess.run([*module, "--bogus"], capture_output=True, check=False, timeout=60)
    assert usage.returncode == 1
    assert b"usage:" in usage.stderr
