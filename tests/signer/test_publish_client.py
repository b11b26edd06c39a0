"""``fwsign publish`` against a stub of the server's contract (docs/api.md), over TLS.

The stub answers as the real server does and records every request, so these
tests check the client's side: the order of calls, what goes in each, that
firmware is streamed with its length declared, that the second code goes in
``X-OTP``, that failures cancel the upload and log out, and that no secret
reaches the output. The same command runs against the real server in
``tests/e2e/``.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fwcommon.entry import INTERRUPTED_STATUS
from signer import publish, publish_cli
from signer.cli import main
from tests.signer.test_publish import TARGET, Opener, added_by_alice, signed_release
from update_server.tls import generate_self_signed

PASSWORD = "correct horse battery"
LOGIN_OTP = "123456"
PUBLISH_OTP = "654321"
TOKEN = "session-token-0123456789"
RELEASE_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    """The server's answers; tests change them to script a failure."""

    url: str = ""
    published: dict[str, Any] = field(
        default_factory=lambda: {
            "root": {"version": 1},
            "targets": {"version": 2},
            "pump-x100": None,
        }
    )
    login: dict[str, Any] = field(
        default_factory=lambda: {
            "token": TOKEN,
            "must_change_password": False,
            "totp_enrolled": True,
            "last_login": {"at": "2026-11-22T08:00:00Z", "source": "10.0.0.7"},
            "failed_attempts_since_last_login": 2,
        }
    )
    publish_answer: tuple[int, dict[str, Any]] = (
        200,
        {"published": {"pump-x100": 1}, "snapshot": 3, "timestamp": 4},
    )
    requests: list[Recorded] = field(default_factory=list)
    #: Publications refused as a wrong X-OTP code before the answer above.
    wrong_codes: int = 0
    #: Consistent-snapshot paths (/targets/...) the server has no file for.
    missing_files: set[str] = field(default_factory=set)
    #: Whether it has PUT /api/v1/targets/<path> (the file of a published target).
    takes_published_files: bool = True

    def answer(self, request: Recorded) -> tuple[int, dict[str, Any] | None]:  # noqa: PLR0911
        route = (request.method, request.path)
        if route == ("POST", "/api/v1/auth/login"):
            return 200, self.login
        if request.method == "HEAD" and request.path.startswith("/targets/"):
            return (404 if request.path in self.missing_files else 200), None
        if route == ("POST", "/api/v1/auth/logout"):
            return 204, None
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"title": "Authentication failed", "detail": "log in first"}
        if route == ("GET", "/api/v1/repository"):
            return 200, {"roles": self.published}
        if route == ("POST", "/api/v1/releases"):
            return 201, self.release(json.loads(request.body))
        if request.method == "PUT" and request.path.startswith(f"/api/v1/releases/{RELEASE_ID}/"):
            return 201, {"length": len(request.body)}
        if route == ("POST", f"/api/v1/releases/{RELEASE_ID}/publish"):
            if self.wrong_codes:
                self.wrong_codes -= 1
                return 401, {"title": "Authentication failed", "detail": "one-time code refused"}
            return self.publish_answer
        targets = request.method == "PUT" and request.path.startswith("/api/v1/targets/")
        if targets and self.takes_published_files:
            return 201, {"length": len(request.body)}
        if route == ("DELETE", f"/api/v1/releases/{RELEASE_ID}"):
            return 204, None
        return 404, {"title": "Not found", "detail": request.path}

    def release(self, body: dict[str, Any]) -> dict[str, Any]:
        targets = body["metadata"]["pump-x100"]["signed"]["targets"]
        expected = [
            {"path": path, "length": t["length"], "sha256": t["hashes"]["sha256"]}
            for path, t in targets.items()
        ]
        roles = {name: md["signed"]["version"] for name, md in body["metadata"].items()}
        return {"id": RELEASE_ID, "roles": roles, "expected_targets": expected}

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
            stub.requests.append(recorded)
            status, answer = stub.answer(recorded)
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            kind = "application/problem+json" if status >= 400 else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    generate_self_signed(directory, names=["localhost", "127.0.0.1"], now=datetime.now(UTC))
    return directory / "server.crt", directory / "server.key"


@contextmanager
def serving_tls(
    handler: type[BaseHTTPRequestHandler], tls_files: tuple[Path, Path]
) -> Iterator[str]:
    """``handler`` served over TLS on a free loopback port; yields its https:// URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def stub(tls_files: tuple[Path, Path]) -> Iterator[Stub]:
    state = Stub()
    with serving_tls(_handler(state), tls_files) as state.url:
        yield state


@pytest.fixture
def firmware_dir(tmp_path: Path, image: Path) -> Path:
    directory = tmp_path / "firmware"
    (directory / "pump-x100").mkdir(parents=True)
    (directory / TARGET).write_bytes(image.read_bytes())
    return directory


Run = Callable[..., Any]


@pytest.fixture
def run(stub: Stub, tls_files: tuple[Path, Path]) -> Run:
    def invoke(repo: Path, *extra: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        secrets = {
            "FWSIGN_PASSWORD": PASSWORD,
            "FWSIGN_OTP": LOGIN_OTP,
            "FWSIGN_PUBLISH_OTP": PUBLISH_OTP,
        }
        args = ["--repo", str(repo), "--server", stub.url, "--ca", str(tls_files[0])]
        return CliRunner().invoke(
            main,
            ["publish", *args, "--user", "alice", *extra],
            env=secrets if env is None else env,
            **kw,
        )

    return invoke


def _no_secret_in(output: str) -> None:
    for secret in (PASSWORD, LOGIN_OTP, PUBLISH_OTP, TOKEN):
        assert secret not in output


def test_a_signed_release_is_uploaded_streamed_and_published(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    repo = signed_release(line, open_repo, image)
    result = run(repo, "--targets-dir", str(firmware_dir))
    assert result.exit_code == 0, result.output
    assert stub.calls() == [
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/repository"),
        ("POST", "/api/v1/releases"),
        ("PUT", f"/api/v1/releases/{RELEASE_ID}/targets/{TARGET}"),
        ("POST", f"/api/v1/releases/{RELEASE_ID}/publish"),
        ("POST", "/api/v1/auth/logout"),
    ]
    login, _status, release, put, publish, logout = stub.requests
    assert json.loads(login.body) == {"username": "alice", "password": PASSWORD, "otp": LOGIN_OTP}
    assert set(json.loads(release.body)["metadata"]) == {"pump-x100"}
    assert put.headers["Content-Length"] == str(image.stat().st_size)
    assert "Transfer-Encoding" not in put.headers
    assert put.headers["Content-Type"] == "application/octet-stream"
    assert hashlib.sha256(put.body).digest() == hashlib.sha256(image.read_bytes()).digest()
    assert publish.headers["X-OTP"] == PUBLISH_OTP
    assert logout.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "published: pump-x100 v1" in result.output
    assert "snapshot v3, timestamp v4" in result.output
    assert "last login: 2026-11-22T08:00:00Z from 10.0.0.7; failed attempts since: 2" in (
        result.output
    )
    _no_secret_in(result.output)


def test_secrets_are_prompted_hidden_and_the_second_code_is_asked_as_a_new_one(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    repo = signed_release(line, open_repo, image)
    answers = f"{PASSWORD}\n{LOGIN_OTP}\n{PUBLISH_OTP}\n"
    result = run(repo, "--targets-dir", str(firmware_dir), env={}, input=answers)
    assert result.exit_code == 0, result.output
    assert "Password for alice" in result.output
    assert "New one-time code to publish (not the login's)" in result.output
    assert stub.requests[4].headers["X-OTP"] == PUBLISH_OTP
    _no_secret_in(result.output)


def test_the_servers_refusal_is_shown_and_the_upload_cancelled(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    stub.publish_answer = (409, {"title": "Conflict", "detail": "the trusted state changed"})
    repo = signed_release(line, open_repo, image)
    result = run(repo, "--targets-dir", str(firmware_dir))
    assert result.exit_code == 1
    assert "error: the server refused (409): the trusted state changed" in result.output
    assert stub.calls()[-2:] == [
        ("DELETE", f"/api/v1/releases/{RELEASE_ID}"),
        ("POST", "/api/v1/auth/logout"),
    ]
    assert "Traceback" not in result.output
    _no_secret_in(result.output)


def test_a_rejected_role_names_the_rule(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    stub.publish_answer = (
        422,
        {"title": "Unprocessable", "detail": "version 1 is not above 1", "rule": "rollback"},
    )
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == 1
    assert "version 1 is not above 1 [rule: rollback]" in result.output


def test_a_missing_firmware_file_cancels_the_upload(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"{TARGET}: not found" in result.output
    assert ("PUT", f"/api/v1/releases/{RELEASE_ID}/targets/{TARGET}") not in stub.calls()
    assert stub.calls()[-2:] == [
        ("DELETE", f"/api/v1/releases/{RELEASE_ID}"),
        ("POST", "/api/v1/auth/logout"),
    ]


def test_an_unsigned_release_is_refused_before_the_password_is_asked(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    """R9 four eyes, checked locally first: no password, no code, no request."""
    repo = added_by_alice(line, open_repo, image)
    result = run(repo, "--targets-dir", str(firmware_dir), env={}, input="")
    assert result.exit_code == 1
    assert "pump-x100 needs 1 more signature" in result.output
    assert "Password" not in result.output
    assert stub.calls() == []


def test_nothing_newer_means_nothing_sent(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path
) -> None:
    stub.published["pump-x100"] = {"version": 1}
    result = run(signed_release(line, open_repo, image))
    assert result.exit_code == 0, result.output
    assert "nothing to publish" in result.output
    assert stub.calls() == [
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/repository"),
        ("POST", "/api/v1/auth/logout"),
    ]


def test_an_unfinished_first_login_is_refused_and_its_session_ended(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path
) -> None:
    stub.login["totp_enrolled"] = False
    result = run(signed_release(line, open_repo, image))
    assert result.exit_code == 1
    assert "first login is not finished" in result.output
    assert stub.calls() == [("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout")]


def test_a_failed_login_shows_the_servers_generic_message(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path
) -> None:
    stub.login = {}
    stub.answer = lambda request: (  # type: ignore[method-assign]
        401,
        {"title": "Authentication failed", "detail": "wrong user name, password or code"},
    )
    result = run(signed_release(line, open_repo, image))
    assert result.exit_code == 1
    assert "the server refused (401): wrong user name, password or code" in result.output
    assert stub.calls() == [("POST", "/api/v1/auth/login")]
    _no_secret_in(result.output)


def test_a_server_not_matching_the_ca_is_refused(
    stub: Stub, line: Path, tmp_path: Path, open_repo: Opener, image: Path
) -> None:
    signed_release(line, open_repo, image)
    other = tmp_path / "other"
    generate_self_signed(other, names=["127.0.0.1"], now=datetime.now(UTC))
    result = CliRunner().invoke(
        main,
        ["publish", "--repo", str(line), "--server", stub.url, "--ca", str(other / "server.crt")],
        env={"FWSIGN_PASSWORD": PASSWORD, "FWSIGN_OTP": LOGIN_OTP, "FWSIGN_USER": "alice"},
    )
    assert result.exit_code == 1
    assert "is --ca the server's certificate?" in result.output
    assert stub.requests == []
    _no_secret_in(result.output)


def test_an_unreachable_server_is_one_line(
    line: Path, tls_files: tuple[Path, Path], open_repo: Opener, image: Path
) -> None:
    signed_release(line, open_repo, image)
    result = CliRunner().invoke(
        main,
        [
            "publish",
            "--repo",
            str(line),
            "--server",
            "https://127.0.0.1:1",
            "--ca",
            str(tls_files[0]),
        ],
        env={"FWSIGN_PASSWORD": PASSWORD, "FWSIGN_OTP": LOGIN_OTP, "FWSIGN_USER": "alice"},
    )
    assert result.exit_code == 1
    assert result.output.startswith(
        "fwsign: error: POST https://127.0.0.1:1/api/v1/auth/login failed"
    )
    assert "Traceback" not in result.output


def test_an_unreachable_server_names_the_url_of_a_file_check(
    tls_files: tuple[Path, Path],
) -> None:
    """The published-file check asks /targets/..., not /api/v1/targets/...: the error says so."""
    session = publish.ServerSession("https://127.0.0.1:1", ca=tls_files[0])
    target = publish.ExpectedTarget(TARGET, 4, "ab" * 32)
    with pytest.raises(publish.PublishError) as failed:
        session.has_target_file(target)
    assert str(failed.value).startswith(
        f"HEAD https://127.0.0.1:1/targets/pump-x100/{'ab' * 32}.pump-fw-2.4.0.bin failed"
    )


def test_a_wrong_confirmation_code_is_asked_again_before_the_upload_is_cancelled(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    """One mistyped code no longer throws away the upload: the third code publishes."""
    stub.wrong_codes = 2
    repo = signed_release(line, open_repo, image)
    answers = f"{PASSWORD}\n{LOGIN_OTP}\n111111\n222222\n{PUBLISH_OTP}\n"
    result = run(repo, "--targets-dir", str(firmware_dir), env={}, input=answers)
    assert result.exit_code == 0, result.output
    publish = ("POST", f"/api/v1/releases/{RELEASE_ID}/publish")
    assert stub.calls().count(publish) == 3
    assert ("DELETE", f"/api/v1/releases/{RELEASE_ID}") not in stub.calls()
    assert "try 2 of 3" in result.output and "try 3 of 3" in result.output
    assert "published: pump-x100 v1" in result.output
    _no_secret_in(result.output)


def test_three_wrong_confirmation_codes_cancel_the_upload(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    stub.wrong_codes = 3
    repo = signed_release(line, open_repo, image)
    answers = f"{PASSWORD}\n{LOGIN_OTP}\n111111\n222222\n333333\n"
    result = run(repo, "--targets-dir", str(firmware_dir), env={}, input=answers)
    assert result.exit_code == 1
    assert "one-time code refused" in result.output
    assert stub.calls()[-2:] == [
        ("DELETE", f"/api/v1/releases/{RELEASE_ID}"),
        ("POST", "/api/v1/auth/logout"),
    ]


def test_ctrl_c_at_the_confirmation_code_says_nothing_was_published(
    run: Run,
    stub: Stub,
    line: Path,
    open_repo: Opener,
    image: Path,
    firmware_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(_attempt: int) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(publish_cli, "_publish_code", interrupted)
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == INTERRUPTED_STATUS
    assert "interrupted: nothing was published" in result.output
    assert "Traceback" not in result.output
    assert stub.calls()[-2:] == [
        ("DELETE", f"/api/v1/releases/{RELEASE_ID}"),
        ("POST", "/api/v1/auth/logout"),
    ]


def test_ctrl_c_after_a_refused_confirmation_code_says_nothing_was_published(
    run: Run,
    stub: Stub,
    line: Path,
    open_repo: Opener,
    image: Path,
    firmware_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server refused the first code, so Ctrl-C at the second leaves nothing published."""
    stub.wrong_codes = 1

    def second_interrupted(attempt: int) -> str:
        if attempt > 1:
            raise KeyboardInterrupt
        return "111111"

    monkeypatch.setattr(publish_cli, "_publish_code", second_interrupted)
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == INTERRUPTED_STATUS
    assert "fwsign: interrupted: nothing was published" in result.output
    assert "may have published" not in result.output
    assert stub.calls()[-2:] == [
        ("DELETE", f"/api/v1/releases/{RELEASE_ID}"),
        ("POST", "/api/v1/auth/logout"),
    ]


def test_ctrl_c_once_a_code_was_sent_says_it_may_have_published(
    run: Run,
    stub: Stub,
    line: Path,
    open_repo: Opener,
    image: Path,
    firmware_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A code on its way: the server may publish, so the message never says it did not."""

    def interrupted_publish(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(publish.ServerSession, "publish", interrupted_publish)
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == INTERRUPTED_STATUS
    assert "fwsign: interrupted: the server may have published" in result.output
    assert "nothing was published" not in result.output


def _published_file_path(image: Path) -> str:
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    return f"/targets/pump-x100/{digest}.pump-fw-2.4.0.bin"


def test_the_missing_file_of_a_published_release_is_uploaded(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    """An import published the signed release without its file: publish sends the file."""
    stub.published["pump-x100"] = {"version": 1}
    stub.missing_files = {_published_file_path(image)}
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == 0, result.output
    put = [r for r in stub.requests if r.method == "PUT"]
    assert [r.path for r in put] == [f"/api/v1/targets/{TARGET}"]
    assert put[0].body == image.read_bytes()
    assert f"firmware of releases published before: {TARGET}" in result.output
    assert "nothing to publish" not in result.output


def test_a_server_that_cannot_take_the_missing_file_says_which_release_lacks_it(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    stub.published["pump-x100"] = {"version": 1}
    stub.missing_files = {_published_file_path(image)}
    stub.takes_published_files = False
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == 1
    assert f"published release(s) have no file on the server: {TARGET}" in result.output


def test_a_published_release_whose_file_is_there_sends_nothing(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    stub.published["pump-x100"] = {"version": 1}
    result = run(signed_release(line, open_repo, image), "--targets-dir", str(firmware_dir))
    assert result.exit_code == 0, result.output
    assert "nothing to publish" in result.output
    assert [r.method for r in stub.requests if r.method == "PUT"] == []


def test_help_names_the_environment_variables() -> None:
    result = CliRunner().invoke(main, ["publish", "--help"])
    for name in (
        "FWSIGN_PASSWORD", "FWSIGN_OTP", "FWSIGN_PUBLISH_OTP",
        "FWSIGN_SERVER", "FWSIGN_CA", "FWSIGN_USER",
    ):  # fmt: skip
        assert name in result.output


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "FWSIGN_PASSWORD"),
        ({"FWSIGN_PASSWORD": PASSWORD}, "FWSIGN_OTP"),
        ({"FWSIGN_PASSWORD": PASSWORD, "FWSIGN_OTP": LOGIN_OTP}, "FWSIGN_PUBLISH_OTP"),
    ],
)
def test_with_no_terminal_the_missing_secret_is_named_and_nothing_is_published(
    run: Run,
    stub: Stub,
    line: Path,
    open_repo: Opener,
    image: Path,
    firmware_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    given: dict[str, str],
    missing: str,
) -> None:
    """Automation without a terminal is told which variable to set, not "Aborted!"."""
    for name in ("FWSIGN_PASSWORD", "FWSIGN_OTP", "FWSIGN_PUBLISH_OTP"):
        monkeypatch.delenv(name, raising=False)
    repo = signed_release(line, open_repo, image)
    result = run(repo, "--targets-dir", str(firmware_dir), env=given, input="")
    assert result.exit_code == 1
    what = {
        "FWSIGN_PASSWORD": "password for alice",
        "FWSIGN_OTP": "one-time code",
        "FWSIGN_PUBLISH_OTP": "new one-time code to publish (not the login's)",
    }[missing]
    assert f"fwsign: error: no terminal to ask for the {what}\n" in result.stderr
    assert f"fwsign: hint: set {missing}, or run the command in a terminal\n" in result.stderr
    assert "Aborted" not in result.output
    assert ("POST", f"/api/v1/releases/{RELEASE_ID}/publish") not in stub.calls()
    if missing == "FWSIGN_PUBLISH_OTP":  # asked after the upload: it is cancelled
        assert stub.calls()[-2:] == [
            ("DELETE", f"/api/v1/releases/{RELEASE_ID}"),
            ("POST", "/api/v1/auth/logout"),
        ]
    else:
        assert stub.calls() == []
    _no_secret_in(result.output)


def test_an_empty_secret_variable_is_refused_before_anything_is_sent(
    run: Run, stub: Stub, line: Path, open_repo: Opener, image: Path, firmware_dir: Path
) -> None:
    repo = signed_release(line, open_repo, image)
    given = {"FWSIGN_PASSWORD": "", "FWSIGN_OTP": LOGIN_OTP, "FWSIGN_PUBLISH_OTP": PUBLISH_OTP}
    result = run(repo, "--targets-dir", str(firmware_dir), env=given, input="")
    assert result.exit_code == 1
    assert "fwsign: error: FWSIGN_PASSWORD is set but empty" in result.stderr
    assert stub.calls() == []


def test_a_request_after_a_pause_opens_a_new_connection_not_one_the_server_may_be_closing(
    tls_files: tuple[Path, Path],
) -> None:
    """A code typed after a pause is never sent on a connection the server is closing.

    The server closes an idle kept-alive connection after 2 s; a POST sent on
    it in that moment gets no answer and is not retried (it carried a
    one-time code). Seen in the demo as 'Remote end closed connection without
    response' on the enrolment's confirmation.
    """
    ports: list[int] = []

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            ports.append(self.client_address[1])
            data = json.dumps({"roles": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    now = [0.0]
    with serving_tls(KeepAlive, tls_files) as url:
        session = publish.ServerSession(url, ca=tls_files[0], monotonic=lambda: now[0])
        try:
            session.published_versions()
            session.published_versions()  # at once: the kept-alive connection
            now[0] += publish.REUSE_IDLE_SECONDS + 0.1
            session.published_versions()  # after a pause: a new one
        finally:
            session.close()
    assert ports[0] == ports[1]
    assert ports[2] != ports[1]
