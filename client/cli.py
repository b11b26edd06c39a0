"""``fwclient``: the device's updater, one command per decision.

Each command is thin: it opens the state directory, calls one function of
``client`` and prints one line. Success exits 0; a refusal or an error
exits 1 with one line on stderr naming the event type and what it means,
never a traceback. Time is the system clock (``faketime`` moves it).

A device's life: ``provision`` (once, at the factory), then ``update``
(or the ``run`` agent) and ``boot`` (which stands for a reboot), with
``status``, ``verify`` and ``log verify`` to see what it runs and why.

Every command that writes to the state directory holds its lock for its
whole run (the agent, for each poll), so two of them never interleave: the
second waits up to ``--lock-wait`` seconds, then fails naming the holder.
``status`` and ``log verify`` only read, and need no lock.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import click
from tuf.api.exceptions import RepositoryError

from client import authorizations, bundle_source, device_api, offline, provisioning
from client import boot as boot_module
from client import identity as identity_module
from client import sbom as sbom_module
from client.agent import Agent, Schedule
from client.boot import Outcome as BootOutcome
from client.directive import STANDALONE, Directive, obtain
from client.errors import ClientError
from client.events import EventType
from client.fetcher import HttpsFetcher
from client.readiness import Guard, ReadyCheck
from client.report import Reporter, Sent
from client.state import DEFAULT_SLOT_CAPACITY, LOCK_WAIT, DeviceIdentity, StateDir
from client.update import DEFAULT_TRIES, Outcome, Remote, UpdateResult, check, explain, update
from fwcommon import bundle as bundle_format
from fwcommon.cli import Failure, ToolGroup, warn
from fwcommon.files import atomic_write
from repo_metadata.errors import InvalidFieldError

_ERRORS = (ClientError, OSError, RepositoryError, InvalidFieldError, ValueError)
_LOCK_WAIT = "fwclient.lock_wait"


class _Group(ToolGroup):
    """Every expected error becomes one line naming its event, and exit status 1."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, tool="fwclient", errors=_ERRORS, **kwargs)

    def failure(self, exc: Exception) -> Failure:
        if not isinstance(exc, ClientError) or exc.event is EventType.ERROR:
            return super().failure(exc)
        return Failure(explain(exc.event, str(exc)), kind=str(exc.event))


def _now() -> datetime:
    return datetime.now(UTC)


def _open(path: Path) -> StateDir:
    return StateDir(path, lock_wait=click.get_current_context().meta.get(_LOCK_WAIT, LOCK_WAIT))


def _state(path: Path) -> StateDir:
    state = _open(path)
    state.require_provisioned()
    return state


@contextmanager
def _writing(path: Path) -> Iterator[StateDir]:
    """The provisioned state directory, held against every other writer until the block ends."""
    state = _state(path)
    with state.lock():
        yield state


def _argv(command: str | None) -> list[str] | None:
    if command is None:
        return None
    argv = shlex.split(command)
    if not argv:
        raise click.BadParameter("give a command", param_hint="--health-check")
    return argv


def _guard(command: str | None, *, ignore: bool = False) -> Guard:
    """The clinical-use guard (R52) from ``--ready-check`` and ``--ignore-ready-check``."""
    if command is None:
        return Guard(ignore_for_recovery=ignore)
    argv = shlex.split(command)
    if not argv:
        raise click.BadParameter("give a command", param_hint="--ready-check")
    return Guard(ReadyCheck(tuple(argv)), ignore_for_recovery=ignore)


def _remote(server: str, ca: Path, timeout: float) -> Remote:
    if not server.startswith("https://"):
        raise ClientError(f"--server {server}: the update server is reached over HTTPS only")
    return Remote(server, HttpsFetcher(ca=ca, timeout=timeout))


def _finish(result: UpdateResult) -> None:
    if not result.ok:
        click.echo(f"fwclient: {result.event}: {result.message}", err=True)
        sys.exit(1)
    click.echo(result.message)


state_option = click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The device's state directory.",
)
server_options = [
    click.option("--server", required=True, metavar="URL", help="The update server (https://)."),
    click.option(
        "--ca",
        required=True,
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="CA certificate the server's certificate must chain to.",
    ),
    click.option("--timeout", default=30.0, show_default=True, help="Network timeout, seconds."),
]
health_option = click.option(
    "--health-check",
    metavar="CMD",
    help="The firmware's health check, run on the trial boot (exit 0: healthy).",
)
ready_option = click.option(
    "--ready-check",
    metavar="CMD",
    envvar="FWCLIENT_READY_CHECK",
    help="R52: asked before an install is activated and before a trial boot (exit 0:"
    " idle; anything else, a hang or a missing command: in use, deferred).",
)
ignore_ready_option = click.option(
    "--ignore-ready-check",
    is_flag=True,
    help="Activate a signed recovery even if the device says it is in use (logged).",
)


def _with_server(func: Any) -> Any:
    for option in reversed(server_options):
        func = option(func)
    return func


class _MaxAge(click.ParamType[timedelta]):
    """``client.offline`` O3's duration (``30d``, ``36h``; a number alone is days).

    At provisioning, within both bounds; for one run, at least the shortest
    (the longest there is the device's own setting, checked by the command).
    """

    name = "duration"

    def __init__(self, *, provisioning: bool) -> None:
        self.provisioning = provisioning

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            max_age = offline.parse(str(value))
            if self.provisioning or max_age < offline.SHORTEST_MAX_AGE:
                offline.check_max_age(max_age)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return max_age


def _narrowed(state: StateDir, requested: timedelta | None) -> timedelta:
    """O3: this run's offline bound; a longer one than the device's is a usage error (exit 2)."""
    try:
        return offline.session_max_age(
            setting=state.identity().offline_max_age, requested=requested
        )
    except offline.WiderMaxAgeError as exc:
        raise click.UsageError(str(exc)) from None


#: ``update``'s server options: required, unless it installs from a bundle (no network).
update_server_options = [
    click.option("--server", metavar="URL", help="The update server (https://)."),
    click.option(
        "--ca",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="CA certificate the server's certificate must chain to.",
    ),
    click.option("--timeout", default=30.0, show_default=True, help="Network timeout, seconds."),
    click.option(
        "--bundle",
        "bundle_file",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Install from an offline bundle (removable media), with no network at all.",
    ),
    click.option(
        "--bundle-max-bytes",
        default=bundle_format.DEFAULT_MAX_BYTES,
        show_default=True,
        type=click.IntRange(min=1),
        help="A bundle larger than this is refused before it is read.",
    ),
    click.option(
        "--offline-max-age",
        envvar="FWCLIENT_OFFLINE_MAX_AGE",
        type=_MaxAge(provisioning=False),
        help="Narrow, for this run, how long ago a bundle's metadata may have expired (30d,"
        " 36h; a number alone is days): at most the device's setting, which 'fwclient"
        " provision' fixed (client.offline O3; 'fwclient status' shows it). Never before the"
        " device's time floor (O2).",
    ),
]


def _with_update_source(func: Any) -> Any:
    for option in reversed(update_server_options):
        func = option(func)
    return func


def _no_server_with_bundle(server: str | None, ca: Path | None) -> None:
    """``update --bundle`` uses no network: a server named with it is a mistake."""
    if server is not None or ca is not None:
        raise click.UsageError(
            "--bundle installs with no network: leave out --server and --ca"
            " (the next 'fwclient report' carries the install to the server)"
        )


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr.")
@click.option(
    "--lock-wait",
    default=LOCK_WAIT,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait while another fwclient changes the same state directory.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, lock_wait: float) -> None:
    """Verified, rollback-proof, power-safe firmware updates for this device."""
    logging.basicConfig(level=logging.WARNING - 10 * verbose, stream=sys.stderr)
    ctx.meta[_LOCK_WAIT] = lock_wait


@main.command()
@state_option
@click.option(
    "--root",
    "root_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The repository's root metadata (1.root.json) shipped with the device.",
)
@click.option("--hardware-model", required=True, help="This device's hardware model.")
@click.option("--device-id", required=True, help="This device's identifier.")
@click.option(
    "--slot-capacity",
    default=DEFAULT_SLOT_CAPACITY,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bytes one firmware slot holds; a larger signed firmware is refused.",
)
@click.option(
    "--offline-max-age",
    default=offline.describe(offline.DEFAULT_MAX_AGE),
    show_default=True,
    type=_MaxAge(provisioning=True),
    help="How long after its expiry a bundle's metadata is still accepted (30d, 36h; a"
    f" number alone is days; {offline.describe(offline.SHORTEST_MAX_AGE)} to"
    f" {offline.describe(offline.LONGEST_MAX_AGE)}): fixed for the device's life; an"
    " update may only narrow it (client.offline O3).",
)
@click.option(
    "--device-key",
    metavar="URI",
    help="PKCS#11 signer URI (hsm:...) of the device key in a secure element"
    f" (its PIN from {identity_module.PIN_ENV}); default: a new Ed25519 key in the state"
    " directory.",
)
def provision(
    state_dir: Path,
    root_file: Path,
    hardware_model: str,
    device_id: str,
    slot_capacity: int,
    offline_max_age: timedelta,
    device_key: str | None,
) -> None:
    """Write the trusted root, the device's identity and its key (once: no re-provisioning).

    The time floor starts at the later of this clock and the client's build
    time: the device never trusts a clock older than its provisioning. The
    private key never leaves the device (client.identity, K1). The offline
    maximum age is stored with the identity, for the device's life.
    """
    identity = DeviceIdentity(
        device_id, hardware_model, slot_capacity, offline_max_age=offline_max_age
    )
    state = _open(state_dir)
    now = _now()
    root = provisioning.provision(
        state,
        root=root_file.read_bytes(),
        identity=identity,
        now=now,
        built=provisioning.BUILT,
        device_key=device_key,
    )
    expired = provisioning.expired_root_warning(root, now=now, built=provisioning.BUILT)
    if expired is not None:
        warn(expired)
    click.echo(f"provisioned {device_id} ({hardware_model}) with root v{root.version}")
    key = identity_module.device_key(state)
    click.echo(f"device key {key.public_key.keyid} ({key.public_key.keytype}, {key.uri})")


@main.command("register")
@state_option
@_with_server
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help=f"File holding the enrolment token (else {device_api.TOKEN_ENV}; never argv).",
)
def register_command(
    state_dir: Path, server: str, ca: Path, timeout: float, token_file: Path | None
) -> None:
    """Register this device with the server once, with an enrolment token (R10).

    The request is signed with the device key, proving the device holds it;
    the server records the device pending (an administrator accepts it) or,
    with a pre-authorized token, accepted.
    """
    token = device_api.enrolment_token(token_file, os.environ)
    api = device_api.DeviceApi(_state(state_dir), server=server, ca=ca, timeout=timeout)
    try:
        answer = api.register(token)
    finally:
        api.close()
    with _writing(state_dir) as state:
        device_api.mark_registered(state, answer, server=server)
    click.echo(f"registered {answer.get('device_id')}: {answer.get('state')}")


def _device_api(
    state: StateDir, server: str, ca: Path, timeout: float
) -> device_api.DeviceApi | None:
    """The signed device API, once the device is registered (else None: nothing to ask)."""
    if not device_api.is_registered(state):
        return None
    return device_api.DeviceApi(state, server=server, ca=ca, timeout=timeout)


def _directive(api: device_api.DeviceApi | None) -> Directive:
    """Issue 11: what the server directs (registered), else ``STANDALONE``."""
    return STANDALONE if api is None else obtain(api.poll)


def _report_quietly(state: StateDir, api: device_api.DeviceApi) -> None:
    """Report after an update; a failure is a warning (the device keeps working, R38)."""
    result = Reporter(state, api.send_report).report(now=_now())
    if result.outcome is not Sent.ACKNOWLEDGED:
        warn(f"report {result.outcome}: {result.message} (sent again with the next report)")


@main.command("report")
@state_option
@_with_server
def report_command(state_dir: Path, server: str, ca: Path, timeout: float) -> None:
    """Report what the device runs and its new log entries, signed, on one connection (R38)."""
    state = _state(state_dir)
    api = device_api.DeviceApi(state, server=server, ca=ca, timeout=timeout)
    try:
        result = Reporter(state, api.send_report).report(now=_now())
    finally:
        api.close()
    if result.outcome is not Sent.ACKNOWLEDGED:
        click.echo(f"fwclient: report {result.outcome}: {result.message}", err=True)
        sys.exit(1)
    click.echo(f"reported: {result.message}")


@main.command("check")
@state_option
@_with_server
def check_command(state_dir: Path, server: str, ca: Path, timeout: float) -> None:
    """Refresh the metadata and say which firmware would be installed.

    A registered device asks the server for its directive first, as an
    update does.
    """
    with _writing(state_dir) as state:  # it writes the metadata cache and the time floor
        api = _device_api(state, server, ca, timeout)
        try:
            directive = _directive(api)
        finally:
            if api is not None:
                api.close()
        _finish(check(state, _remote(server, ca, timeout), directive=directive))


@main.command("update")
@state_option
@_with_update_source
@click.option("--tries", default=DEFAULT_TRIES, show_default=True, help="Trial boots allowed.")
@click.option("--recovery", is_flag=True, help="Install a signed recovery in failsafe mode.")
@click.option("--boot", "then_boot", is_flag=True, help="Reboot into it once installed.")
@health_option
@ready_option
@ignore_ready_option
@click.option(
    "--authorization",
    "authorization_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="FILE",
    help="A technician's authorization handed over as a file (no route to the server); repeatable.",
)
def update_command(
    state_dir: Path,
    server: str | None,
    ca: Path | None,
    timeout: float,
    bundle_file: Path | None,
    bundle_max_bytes: int,
    offline_max_age: timedelta | None,
    tries: int,
    recovery: bool,
    then_boot: bool,
    health_check: str | None,
    ready_check: str | None,
    ignore_ready_check: bool,
    authorization_files: tuple[Path, ...],
) -> None:
    """Download, verify and install the newest allowed firmware in the inactive slot.

    With --boot or --health-check, the device then reboots into it (as
    'fwclient boot' does), running the health check on the trial boot.
    With --ready-check, a device in use keeps the verified firmware without
    activating it (deferred_in_use, exit 0); the next update activates it.
    A release that requires a technician's authorization installs only with
    one that verifies for this device and this release (--authorization
    FILE); without one the device waits (awaiting_authorization, exit 0).
    A registered device first asks the server for its directive: the
    release a deployment assigns (or the newest, as its fleet is set), a
    freeze (server_frozen, exit 0), a maintenance window (outside it:
    deferred_window, exit 0); no valid answer installs nothing new
    (poll_unanswered, exit 1). A device not registered takes the newest.

    With --bundle FILE instead of --server and --ca, the same update runs
    from a bundle on removable media with no network (client.bundle_source,
    client.offline): the bundle's release, verified as online, its metadata
    expired at most the device's offline maximum age ago (set at
    provisioning; --offline-max-age narrows it for this run, never widens
    it: exit 2) and never before the device's time floor; its
    authorization, if the release requires one.
    """
    documents = [authorizations.read_file(path) for path in authorization_files]
    argv = _argv(health_check)
    if ignore_ready_check and not recovery:
        raise click.BadParameter("only a signed recovery (--recovery) may ignore the ready-check")
    guard = _guard(ready_check, ignore=ignore_ready_check)
    if bundle_file is not None:
        _no_server_with_bundle(server, ca)
        with _writing(state_dir) as state:
            result = bundle_source.update_from_bundle(
                state,
                bundle_file,
                max_bytes=bundle_max_bytes,
                max_age=_narrowed(state, offline_max_age),
                recovery=recovery,
                tries=tries,
                guard=guard,
                authorizations=documents,
            )
            _finish(result)
            if result.outcome is Outcome.INSTALLED and (then_boot or argv is not None):
                _boot(state, argv, guard)
        return
    if server is None or ca is None:
        raise click.UsageError("give --server URL and --ca FILE, or --bundle FILE")
    with _writing(state_dir) as state:  # install and reboot: no other command in between
        remote = _remote(server, ca, timeout)
        api = _device_api(state, server, ca, timeout)
        directive = _directive(api)
        if api is not None:  # flow 4: what the server holds for this device
            documents += authorizations.pick_up(api.authorizations, state, at=_now())
        result = update(
            state,
            remote,
            directive=directive,
            recovery=recovery,
            tries=tries,
            guard=guard,
            authorizations=documents,
        )
        try:
            _finish(result)
            if result.outcome is Outcome.INSTALLED and (then_boot or argv is not None):
                _boot(state, argv, guard)
        finally:
            if api is not None:  # R38: the outcome (and the boot's) reaches the server now
                _report_quietly(state, api)
                api.close()


@main.command()
@state_option
@_with_server
@click.option("--interval", default=3600.0, show_default=True, help="Seconds between polls.")
@click.option("--jitter", default=0.1, show_default=True, help="Random spread of the interval.")
@click.option("--backoff", default=30.0, show_default=True, help="First wait after a failure.")
@click.option("--backoff-max", default=6 * 3600.0, show_default=True, help="Longest wait.")
@click.option("--max-polls", type=click.IntRange(min=1), help="Stop after this many polls.")
@health_option
@ready_option
def run(
    state_dir: Path,
    server: str,
    ca: Path,
    timeout: float,
    interval: float,
    jitter: float,
    backoff: float,
    backoff_max: float,
    max_polls: int | None,
    health_check: str | None,
    ready_check: str | None,
) -> None:
    """Poll for updates until SIGTERM, installing and rebooting into each one.

    With --ready-check, an install or a trial boot that finds the device in
    use waits for a later poll (R52).
    """
    state = _state(state_dir)
    argv = _argv(health_check)
    guard = _guard(ready_check)
    schedule = Schedule(interval, jitter, backoff, backoff_max)
    remote = _remote(server, ca, timeout)
    api = _device_api(state, server, ca, timeout)
    agent = Agent(
        state,
        remote,
        schedule,
        after_install=lambda: _boot(state, argv, guard),
        guard=guard,
        reporter=None if api is None else Reporter(state, api.send_report),
        pickup=None
        if api is None
        else lambda: authorizations.pick_up(api.authorizations, state, at=_now()),
        poll=None if api is None else api.poll,
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        click.echo(f"fwclient: {signal.Signals(signum).name}: stopping", err=True)
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    report = agent.run(max_polls=max_polls)
    if isinstance(remote.fetcher, HttpsFetcher):
        traffic = remote.fetcher.traffic
        click.echo(
            f"stopped after {report.polls} poll(s): {traffic.requests} request(s),"
            f" {traffic.bytes} bytes, {remote.fetcher.connections} connection(s)"
        )
        remote.fetcher.close()


@main.command("boot")
@state_option
@health_option
@ready_option
@ignore_ready_option
def boot_command(
    state_dir: Path, health_check: str | None, ready_check: str | None, ignore_ready_check: bool
) -> None:
    """Reboot: try the pending firmware (health check, commit or fall back), else verify.

    With --ready-check, a device in use boots its active firmware and keeps
    the pending one for the next boot (deferred_in_use, exit 0, no try spent).
    """
    argv = _argv(health_check)
    guard = _guard(ready_check, ignore=ignore_ready_check)
    with _writing(state_dir) as state:
        _boot(state, argv, guard)


#: Boot outcomes that are not a success, and the event each one stands for.
_BOOT_PROBLEMS = {
    BootOutcome.RETRY: EventType.HEALTH_CHECK_FAILED,
    BootOutcome.ROLLED_BACK: EventType.ROLLED_BACK,
    BootOutcome.SWITCHED: EventType.INTEGRITY_FAILURE,
    BootOutcome.FAILSAFE: EventType.FAILSAFE_ENTERED,
}


def _boot(state: StateDir, argv: Sequence[str] | None, guard: Guard) -> None:
    result = boot_module.boot(state, health_check=argv, now=_now(), guard=guard)
    problem = _BOOT_PROBLEMS.get(result.outcome)
    if problem is not None:
        click.echo(f"fwclient: {problem}: slot {result.slot} runs: {result.message}", err=True)
        sys.exit(1)
    click.echo(f"slot {result.slot}: {result.outcome.value}: {result.message}")


@main.command()
@state_option
def verify(state_dir: Path) -> None:
    """Re-hash the running firmware against the signed metadata it was installed from."""
    with _writing(state_dir) as state:  # it logs what it found
        result = boot_module.verify_active(state, now=_now())
    if not result.ok:
        event = result.event or EventType.INTEGRITY_FAILURE
        click.echo(
            f"fwclient: {event}: slot {result.slot} does not verify: {result.reason}", err=True
        )
        sys.exit(1)
    version = result.record.version if result.record else "?"
    click.echo(f"slot {result.slot}: firmware {version} verified")


@main.command("sbom")
@state_option
@_with_server
@click.option("--release", metavar="TARGET_PATH", help="The release [the running one].")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the SBOM to this file instead of standard output.",
)
def sbom_command(
    state_dir: Path, server: str, ca: Path, timeout: float, release: str | None, output: Path | None
) -> None:
    """Fetch a release's SBOM, verified like any signed target (R41, R56).

    The SBOM the release's signed metadata names, downloaded and checked
    against its signed length and hashes (client.sbom B1-B6); refused, and
    logged, if the metadata does not sign it.
    """
    with _writing(state_dir) as state:  # it writes the metadata cache and the time floor
        found = sbom_module.fetch_sbom(
            state, _remote(server, ca, timeout), release=release, clock=_now()
        )
    if output is None:
        click.echo(found.data, nl=False)  # bytes: written as they were verified
        return
    atomic_write(output, found.data)
    click.echo(
        f"{found.path} (SBOM of {found.release}, version {found.version}) verified,"
        f" written to {output}"
    )


@main.command()
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(state_dir: Path, as_json: bool) -> None:
    """What runs, from which slot, the floors, metadata expiries, mode, last update (R37, R38).

    Also the device's settings that bound its trust: the offline maximum
    age (client.offline O3), fixed at provisioning.

    Exits 0 whenever the report is made, damaged records included: like
    failsafe mode, a damaged record is a fact about the device, not a failure
    of this read-only command. Its 'damaged' field names each record that
    cannot be read, why, and what the next boot or update does about it ({}
    when none); scripts read it from --json. What depends on a damaged
    record shows as null.
    """
    report = boot_module.status(_state(state_dir))
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    for line in _status_lines(report):
        click.echo(line)


#: How the text status shows a field that is null in --json (others: "none", or
#: "unknown" when a record is damaged).
_ABSENT = {
    "pending": "none",
    "slots": "empty",
    "metadata_expires": "not cached",
    "last_update": "never",
}
#: Fields that map names to items: one line each, named ``field.name``.
_LISTS = ("slots", "metadata_expires", "damaged")


def _status_lines(report: dict[str, Any]) -> Iterator[str]:
    """The status as ``key: value`` lines a person reads: no null, no dict literal."""
    unknown = "none, or unknown: see 'damaged'" if report.get("damaged") else "none"
    for key, value in report.items():
        if key in _LISTS and isinstance(value, dict):
            if not value:
                yield f"{key}: none"
            for name, item in value.items():
                yield f"{key}.{name}: {_shown(key, item, unknown)}"
        else:
            yield f"{key}: {_shown(key, value, unknown)}"


def _shown(key: str, value: object, unknown: str) -> str:
    if value is None:
        return _ABSENT.get(key, unknown)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _record(key, value) if isinstance(value, dict) else str(value)


def _record(key: str, value: dict[str, Any]) -> str:
    if key == "pending":
        recovery = ", a recovery" if value.get("recovery") else ""
        return f"slot {value.get('slot')}, {value.get('tries_left')} trial boot(s) left{recovery}"
    if key == "slots":
        failed = ", marked failed" if value.get("failed") else ""
        return (
            f"{value.get('version')} (security version {value.get('security_version')}),"
            f" {value.get('target')}{failed}"
        )
    if key == "last_update":
        return f"{value.get('time')} {value.get('type')}: {value.get('message')}"
    return ", ".join(f"{name} {_shown(name, item, 'none')}" for name, item in value.items())


@main.group("log")
def log_group() -> None:
    """The device's hash-chained event log."""


@log_group.command("verify")
@state_option
def log_verify(state_dir: Path) -> None:
    """Check the chain: an edited, deleted, inserted or reordered entry is found.

    The chain runs through the archives the log's bounded retention keeps,
    oldest first; entries older than those were rotated out, and a recorded
    rotation (``log_rotated``) must name the archive that held them.
    """
    report = _state(state_dir).events.verify()
    if not report.ok:
        click.echo(
            f"fwclient: integrity_failure: event log entry {report.first_bad}: {report.reason}"
            f" ({report.entries} entries before it verify)",
            err=True,
        )
        sys.exit(1)
    rotated = report.first_seq > 1
    span = f" (seq {report.first_seq} to {report.last_seq}; older entries rotated out)"
    click.echo(f"event log verifies: {report.entries} entries{span if rotated else ''}")
