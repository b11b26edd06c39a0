"""``fwsign publish``: upload signed roles and firmware to the update server.

The order is the server's contract (docs/api.md): log in with password and
TOTP, learn the published versions, send the roles whose local version is
newer, stream every firmware file the server expects (hashed by the server
as it arrives), then publish with a fresh one-time code, one not used for
the login (R9 two-step confirmation). Any failure after the upload was
opened cancels it, so nothing half-sent stays on the server; the session is
always logged out.

The client verifies the server against the CA file it is given and never
disables verification; it refuses plain ``http://``. Passwords, codes and
the session token travel only in request bodies and headers: they are never
printed, logged or put into an error message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit

import urllib3
from tuf.api.metadata import Root, Snapshot, Timestamp

from repo_metadata.paths import local_target_file
from signer import layout
from signer.errors import SignerError
from signer.inspect import missing_signatures
from signer.repository import OfflineRepository

API = "/api/v1"
CONNECT_TIMEOUT = 10.0
#: The server answers a firmware upload once it has hashed the last byte,
#: and a publication once the new repository is switched in.
READ_TIMEOUT = 300.0
BLOCK_BYTES = 1024 * 1024
#: A kept-alive connection idle this long is not reused. The server closes an
#: idle connection after 2 s (gunicorn's keepalive); a request sent on one it
#: is closing at that moment fails with no answer, and a POST is never
#: retried (it may have been a one-time code). People pause longer than this
#: between prompts, so every request after a pause opens a new connection.
REUSE_IDLE_SECONDS = 1.0
#: Confirmation codes asked for one publication before it is cancelled.
CODE_TRIES = 3
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
_UNAUTHORIZED = 401

#: ``progress(label, total)`` returns a context whose value is called with
#: the bytes sent since the last call.
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


class PublishError(SignerError):
    """Publication did not happen; the message says why."""


class ServerRefusedError(PublishError):
    """The server answered with an error (its problem+json detail is shown)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        rule: str | None = None,
        field: str | None = None,
        problems: tuple[str, ...] = (),
    ) -> None:
        suffix = f" [rule: {rule}]" if rule else ""
        super().__init__(f"the server refused ({status}): {detail}{suffix}")
        self.status = status
        self.detail = detail
        self.rule = rule
        #: The request field refused (e.g. ``new_password``) and what to change in it.
        self.field = field
        self.problems = problems


@dataclass(frozen=True)
class LocalRole:
    name: str
    version: int
    path: Path


@dataclass(frozen=True)
class ExpectedTarget:
    """A firmware file the server waits for, as it listed it."""

    path: str
    length: int
    sha256: str


@dataclass(frozen=True)
class Login:
    """What the server says at login (R11: the previous login, failures since)."""

    last_login: Mapping[str, Any] | None
    failed_attempts: int


@dataclass(frozen=True)
class FirstLogin:
    """What first login still needs, as the server says at login (R47)."""

    must_change_password: bool
    totp_enrolled: bool

    @property
    def done(self) -> bool:
        return self.totp_enrolled and not self.must_change_password


@dataclass(frozen=True)
class Release:
    id: str
    roles: Mapping[str, int]
    expected_targets: tuple[ExpectedTarget, ...]


@dataclass(frozen=True)
class Published:
    roles: Mapping[str, int]
    snapshot: int
    timestamp: int


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)
    otp: str = field(repr=False)


# -- the local side ------------------------------------------------------


def local_roles(repo: Path) -> dict[str, LocalRole]:
    """Every role file of the offline repository and its version."""
    directory = layout.metadata_dir(repo)
    if not layout.role_file(repo, Root.type).is_file():
        raise PublishError(f"{repo} is not a firmware repository (no metadata/root.json)")
    roles = {}
    for file in sorted(directory.glob("*.json")):
        if layout.is_versioned_file(file.name):
            continue
        name = unquote(file.name[: -len(".json")])
        if name in (Snapshot.type, Timestamp.type):
            continue
        roles[name] = LocalRole(name, _version(file), file)
    return roles


def _version(file: Path) -> int:
    try:
        version = json.loads(file.read_bytes())["signed"]["version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PublishError(f"{file}: not readable role metadata ({exc})") from None
    if isinstance(version, bool) or not isinstance(version, int):
        raise PublishError(f"{file}: signed.version is not an integer")
    return version


def roles_to_publish(
    local: Mapping[str, LocalRole],
    published: Mapping[str, int],
    *,
    only: Collection[str] = (),
) -> list[str]:
    """Roles whose local version is newer than the server's (or that it lacks).

    Root goes one version at a time: devices walk the root chain step by
    step and the server takes one version of a role per upload.
    """
    unknown = set(only) - set(local)
    if unknown:
        raise PublishError(f"no such role in the repository: {', '.join(sorted(unknown))}")
    names = [
        name
        for name, role in local.items()
        if (not only or name in only) and role.version > published.get(name, 0)
    ]
    if Root.type in names and Root.type in published:
        step = local[Root.type].version - published[Root.type]
        if step > 1:
            raise PublishError(
                f"the server has root v{published[Root.type]}, this repository v"
                f"{local[Root.type].version}: publish each root version in turn"
            )
    # Root first, then targets, then delegations: the order trust flows in.
    return sorted(names, key=lambda n: (n != Root.type, n != "targets", n))


def check_ready(repo: Path, roles: Collection[str], *, now: datetime) -> None:
    """Refuse before uploading anything if a role lacks signatures, has expired or was rewound."""
    offline = OfflineRepository(repo, now=now)
    problems = []
    for role in roles:
        for who, part in offline.signature_status(role):
            if part.missing:
                problems.append(f"{role} {missing_signatures(role, who, part)}")
        expires = offline.open(role).signed.expires
        if expires <= now:
            problems.append(f"{role} expired on {expires:%Y-%m-%d}")
        kept = offline.rewound_from(role)
        if kept is not None:
            problems.append(f"{role} was rewound behind v{kept}, which this repository signed")
    if problems:
        raise PublishError("not ready to publish: " + "; ".join(problems))


def find_target_files(
    expected: Collection[ExpectedTarget], targets_dir: Path | None
) -> list[tuple[ExpectedTarget, Path]]:
    """The local file of each expected target; all must exist with the signed length."""
    if expected and targets_dir is None:
        raise PublishError(f"the release adds {len(expected)} firmware file(s): give --targets-dir")
    found, problems = [], []
    for target in expected:
        file = local_target_file(targets_dir or Path(), target.path)
        if file is None:
            name = target.path.rpartition("/")[2]
            problems.append(
                f"{target.path}: not found under {targets_dir} (looked for"
                f" {targets_dir}/{target.path}, then {targets_dir}/{name})"
            )
        elif file.stat().st_size != target.length:
            problems.append(
                f"{target.path}: {file.stat().st_size} bytes, the signed target has {target.length}"
            )
        else:
            found.append((target, file))
    if problems:
        raise PublishError("firmware files missing or wrong: " + "; ".join(problems))
    return found


def local_target_files(
    repo: Path, roles: Collection[LocalRole], targets_dir: Path
) -> list[tuple[ExpectedTarget, Path]]:
    """Every target ``roles`` sign whose file is under ``targets_dir`` with the signed length."""
    found: dict[str, tuple[ExpectedTarget, Path]] = {}
    for role in roles:
        if role.name == Root.type:
            continue
        targets = json.loads(role.path.read_bytes())["signed"].get("targets") or {}
        for path, entry in targets.items():
            file = local_target_file(targets_dir, path)
            sha256 = (entry.get("hashes") or {}).get("sha256")
            length = entry.get("length")
            if file is None or path in found or not isinstance(sha256, str):
                continue
            if isinstance(length, int) and file.stat().st_size == length:
                found[path] = (ExpectedTarget(path, length, sha256), file)
    return [found[path] for path in sorted(found)]


# -- the server side -----------------------------------------------------


class ServerSession:
    """One logged-in conversation with the update server, over verified TLS."""

    def __init__(
        self, url: str, *, ca: Path, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise PublishError(f"--server must be an https:// URL, got {url!r}")
        if not ca.is_file():
            raise PublishError(f"--ca {ca}: no such file")
        self.url = url.rstrip("/")
        self._token: str | None = None
        self._pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca),
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            blocksize=BLOCK_BYTES,
        )
        self._monotonic = monotonic
        self._last_answer = monotonic()

    def close(self) -> None:
        self._pool.clear()

    def login(self, credentials: Credentials) -> Login:
        body = {
            "username": credentials.user,
            "password": credentials.password,
            "otp": credentials.otp,
        }
        answer = self._json("POST", "/auth/login", body=body, auth=False)
        if answer.get("must_change_password") or not answer.get("totp_enrolled"):
            self._token = str(answer.get("token", ""))
            raise PublishError(
                "first login is not finished: set a new password and enrol TOTP first"
            )
        self._token = _field(answer, "token", str)
        return Login(
            last_login=answer.get("last_login"),
            failed_attempts=int(answer.get("failed_attempts_since_last_login") or 0),
        )

    def first_login(self, user: str, password: str, *, otp: str | None = None) -> FirstLogin:
        """Log in for first login: the password alone, or with a code once TOTP is enrolled.

        The session is restricted to finishing first login; what is left to
        do is in the answer.
        """
        body = {"username": user, "password": password, **({"otp": otp} if otp else {})}
        answer = self._json("POST", "/auth/login", body=body, auth=False)
        self._token = _field(answer, "token", str)
        state = FirstLogin(
            must_change_password=bool(answer.get("must_change_password")),
            totp_enrolled=bool(answer.get("totp_enrolled")),
        )
        if state.done:
            self.logout()
            raise PublishError(f"{user} has already finished first login; nothing to set up")
        return state

    def enroll_totp(self) -> tuple[str, str]:
        """Start TOTP enrolment: the provisioning URI and the secret."""
        answer = self._json("POST", "/auth/totp/enroll")
        return _field(answer, "provisioning_uri", str), _field(answer, "secret", str)

    def confirm_totp(self, otp: str, *, password_change: tuple[str, str] | None = None) -> bool:
        """Confirm enrolment with a code; with ``(current, new)`` also replace the password.

        The server checks the new password against its policy before the code
        and does both in one step, or neither. Returns whether the password
        was changed (then every session has ended, this one included).
        """
        body = {"otp": otp}
        if password_change is not None:
            body |= {"current_password": password_change[0], "new_password": password_change[1]}
        answer = self._json("POST", "/auth/totp/confirm", body=body)
        if answer.get("password_changed"):
            self._token = None
            return True
        return False

    def change_password(self, current: str, new: str) -> None:
        """Set a new password; the server ends every session, this one included."""
        self._json(
            "POST", "/auth/password", body={"current_password": current, "new_password": new}
        )
        self._token = None

    def logout(self) -> None:
        if self._token is None:
            return
        try:
            self._request("POST", "/auth/logout")
        finally:
            self._token = None

    def published_versions(self) -> dict[str, int]:
        roles = _field(self._json("GET", "/repository"), "roles", dict)
        return {name: int(summary["version"]) for name, summary in roles.items() if summary}

    def open_release(self, metadata: Mapping[str, Any]) -> Release:
        answer = self._json("POST", "/releases", body={"metadata": dict(metadata)})
        expected = tuple(
            ExpectedTarget(str(t["path"]), int(t["length"]), str(t["sha256"]))
            for t in _field(answer, "expected_targets", list)
        )
        return Release(_field(answer, "id", str), _field(answer, "roles", dict), expected)

    def upload_target(
        self, release: Release, target: ExpectedTarget, file: Path, *, sent: Callable[[int], None]
    ) -> None:
        """Stream ``file`` from disk (never whole in memory) with its length declared."""
        path = f"/releases/{quote(release.id, safe='')}/targets/{quote(target.path, safe='/')}"
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(target.length),
        }
        with file.open("rb") as handle:
            self._request("PUT", path, body=_blocks(handle, sent), headers=headers)

    def publish(self, release: Release, *, otp: str) -> Published:
        path = f"/releases/{quote(release.id, safe='')}/publish"
        answer = self._json("POST", path, headers={"X-OTP": otp})
        return Published(
            roles=_field(answer, "published", dict),
            snapshot=int(answer.get("snapshot") or 0),
            timestamp=int(answer.get("timestamp") or 0),
        )

    def has_target_file(self, target: ExpectedTarget) -> bool:
        """Whether devices can download ``target`` (its consistent-snapshot name answers)."""
        directory, _, name = target.path.rpartition("/")
        path = f"/targets/{quote(directory + '/' if directory else '', safe='/')}"
        try:
            self._request("HEAD", f"{path}{target.sha256}.{quote(name)}", auth=False, base="")
        except ServerRefusedError as refused:
            if refused.status == NOT_FOUND:
                return False
            raise
        return True

    def upload_published_target(
        self, target: ExpectedTarget, file: Path, *, sent: Callable[[int], None]
    ) -> None:
        """Send the missing file of a published target (the server checks it is the signed one)."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(target.length),
        }
        with file.open("rb") as handle:
            self._request(
                "PUT",
                f"/targets/{quote(target.path, safe='/')}",
                body=_blocks(handle, sent),
                headers=headers,
            )

    def cancel(self, release: Release) -> None:
        self._request("DELETE", f"/releases/{quote(release.id, safe='')}")

    def download(
        self,
        path: str,
        out: BinaryIO,
        *,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        max_bytes: int,
    ) -> str:
        """POST ``body`` to ``path`` and stream the answer into ``out`` (a file, never memory).

        Returns the answer's media type; ``PublishError`` when it is longer
        than ``max_bytes``, ``ServerRefusedError`` on a refusal (its detail).
        """
        sent = {**headers, "Content-Type": "application/json"}
        response = self._request(
            "POST", path, body=json.dumps(body).encode(), headers=sent, stream=True
        )
        try:
            written = 0
            for block in response.stream(BLOCK_BYTES):
                written += len(block)
                if written > max_bytes:
                    raise PublishError(
                        f"POST {path}: the answer is longer than {max_bytes} bytes; nothing kept"
                    )
                out.write(block)
        except urllib3.exceptions.HTTPError as exc:
            raise PublishError(f"POST {self.url}{API}{path} failed: {_reason(exc)}") from None
        finally:
            response.release_conn()
        return str(response.headers.get("Content-Type", "")).split(";")[0].strip()

    def _json(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> dict[str, Any]:
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        response = self._request(method, path, body=data, headers=all_headers, auth=auth)
        try:
            answer = json.loads(response.data)
        except ValueError:
            raise PublishError(f"{method} {path}: the server's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise PublishError(f"{method} {path}: the server's answer is not a JSON object")
        return answer

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        base: str = API,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        all_headers = {"Accept": "application/json", **(headers or {})}
        if auth and self._token is not None:
            all_headers["Authorization"] = f"Bearer {self._token}"
        if self._monotonic() - self._last_answer > REUSE_IDLE_SECONDS:
            self._pool.clear()  # the server may be closing what is pooled: start afresh
        try:
            response = self._pool.request(
                method,
                f"{self.url}{base}{path}",
                body=body,
                headers=all_headers,
                preload_content=not stream,
            )
            self._last_answer = self._monotonic()
        except urllib3.exceptions.SSLError as exc:
            raise PublishError(
                f"TLS with {self.url} failed ({_reason(exc)}); is --ca the server's certificate?"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise PublishError(f"{method} {self.url}{base}{path} failed: {_reason(exc)}") from None
        if response.status >= 400:
            raise _refusal(response)
        return response


def _blocks(handle: BinaryIO, sent: Callable[[int], None]) -> Iterator[bytes]:
    """The file in blocks as urllib3 sends them, reporting each (the progress bar)."""
    while block := handle.read(BLOCK_BYTES):
        sent(len(block))
        yield block


def _refusal(response: urllib3.BaseHTTPResponse) -> ServerRefusedError:
    detail, rule, field = response.reason or "error", None, None
    problems: tuple[str, ...] = ()
    try:
        problem = json.loads(response.data)
        detail = str(problem.get("detail") or problem.get("title") or detail)
        rule = problem.get("rule")
        field = problem.get("field")
        listed = problem.get("problems")
        problems = tuple(str(p) for p in listed) if isinstance(listed, list) else ()
    except (ValueError, AttributeError):
        pass
    return ServerRefusedError(
        response.status,
        detail,
        rule=str(rule) if rule else None,
        field=str(field) if field else None,
        problems=problems,
    )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _field(answer: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind):
        raise PublishError(f"the server's answer has no valid {name!r}")
    return value


# -- the whole round -----------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    """What happened: nothing to do (``published`` is None), or what went live."""

    login: Login
    sent_roles: tuple[str, ...] = ()
    sent_files: tuple[str, ...] = ()
    published: Published | None = None
    #: Files of targets published earlier (e.g. by an import) sent now.
    completed_files: tuple[str, ...] = ()


def _no_progress(_label: str, _total: int) -> AbstractContextManager[Callable[[int], None]]:
    return nullcontext(lambda _n: None)


def publish_repository(
    repo: Path,
    session: ServerSession,
    credentials: Credentials,
    *,
    now: datetime,
    publish_otp: Callable[[int], str],
    targets_dir: Path | None = None,
    only: Collection[str] = (),
    progress: Progress = _no_progress,
    say: Callable[[str], None] = lambda _line: None,
    on_login: Callable[[Login], None] = lambda _login: None,
) -> PublishResult:
    """Log in, send what the server lacks, publish with a fresh code, log out.

    ``publish_otp(attempt)`` gives the confirmation code; a refused one is
    asked again (attempt 2, 3) before the upload is cancelled. Then the files
    of published targets that the server still lacks (an import without
    them) are sent, from ``targets_dir``.
    """
    local = local_roles(repo)
    with _logged_in(session, credentials) as login:
        on_login(login)
        names = roles_to_publish(local, session.published_versions(), only=only)
        result = PublishResult(login=login)
        if names:
            check_ready(repo, names, now=now)
            result = _send_release(
                session, login, local, names, publish_otp, targets_dir, progress, say
            )
        if targets_dir is not None:
            chosen = [role for name, role in local.items() if not only or name in only]
            candidates = [
                (target, file)
                for target, file in local_target_files(repo, chosen, targets_dir)
                if target.path not in result.sent_files
            ]
            completed = _complete_files(session, candidates)
            for target, file in completed:
                with progress(target.path, target.length) as sent:
                    _upload_published(session, target, file, sent, [t for t, _f in completed])
                say(f"uploaded {target.path} ({target.length} bytes) of a published release")
            result = replace(result, completed_files=tuple(t.path for t, _f in completed))
        return result


def _send_release(  # noqa: PLR0917 - the round's parts, passed through
    session: ServerSession,
    login: Login,
    local: Mapping[str, LocalRole],
    names: list[str],
    publish_otp: Callable[[int], str],
    targets_dir: Path | None,
    progress: Progress,
    say: Callable[[str], None],
) -> PublishResult:
    say(f"sending {len(names)} role(s): {', '.join(names)}")
    metadata = {name: json.loads(local[name].path.read_bytes()) for name in names}
    release = session.open_release(metadata)
    try:
        files = find_target_files(release.expected_targets, targets_dir)
        for target, file in files:
            with progress(target.path, target.length) as sent:
                session.upload_target(release, target, file, sent=sent)
            say(f"uploaded {target.path} ({target.length} bytes)")
        published = _confirm(session, release, publish_otp, say)
    except BaseException:
        _quietly(session.cancel, release)
        raise
    return PublishResult(
        login=login,
        sent_roles=tuple(names),
        sent_files=tuple(target.path for target, _file in files),
        published=published,
    )


def _confirm(
    session: ServerSession,
    release: Release,
    publish_otp: Callable[[int], str],
    say: Callable[[str], None],
) -> Published:
    """Publish with a fresh code; a refused code is asked again, up to ``CODE_TRIES``."""
    for attempt in range(1, CODE_TRIES + 1):
        try:
            return session.publish(release, otp=publish_otp(attempt))
        except ServerRefusedError as refused:
            if refused.status != _UNAUTHORIZED or attempt == CODE_TRIES:
                raise
            say(f"that code was not accepted ({refused.detail}); try {attempt + 1} of {CODE_TRIES}")
    raise PublishError("no confirmation code accepted")  # not reached: the loop returns or raises


def _upload_published(
    session: ServerSession,
    target: ExpectedTarget,
    file: Path,
    sent: Callable[[int], None],
    missing: list[ExpectedTarget],
) -> None:
    try:
        session.upload_published_target(target, file, sent=sent)
    except ServerRefusedError as refused:
        if refused.status not in {NOT_FOUND, METHOD_NOT_ALLOWED} or refused.rule is not None:
            raise
        # A server without the endpoint: say what devices cannot download.
        raise PublishError(
            f"published release(s) have no file on the server:"
            f" {', '.join(t.path for t in missing)}; this server cannot receive the file of a"
            " published target (no PUT /api/v1/targets/<path>): upgrade it, or have its"
            " operator import the files"
        ) from None


def _complete_files(
    session: ServerSession, candidates: list[tuple[ExpectedTarget, Path]]
) -> list[tuple[ExpectedTarget, Path]]:
    """The candidates whose target the server publishes without its file."""
    return [(target, file) for target, file in candidates if not session.has_target_file(target)]


@contextmanager
def _logged_in(session: ServerSession, credentials: Credentials) -> Iterator[Login]:
    try:
        yield session.login(credentials)
    finally:
        _quietly(session.logout)
        session.close()


def _quietly(action: Callable[..., None], *args: Any) -> None:
    """Best-effort cleanup: the error that brought us here is the one to report."""
    with suppress(PublishError):
        action(*args)
