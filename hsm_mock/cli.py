"""``fwhsm``: administer a software HSM token.

Commands are thin: they read PINs, call ``Token``/``Session`` and print. PINs
are prompted hidden (new ones with confirmation) or, for automation, read
from environment variables; there is deliberately no command-line option
for a PIN (it would show in ``ps`` and shell history):

    FWHSM_SO_PIN         security officer PIN (init, unlock, change-pin --so)
    FWHSM_USER_PIN       user PIN (init, generate, change-pin)
    FWHSM_NEW_USER_PIN   the new user PIN (unlock, change-pin)
    FWHSM_NEW_SO_PIN     the new SO PIN (change-pin --so)

``init --kdf-memory-kib`` sets the Argon2id memory cost of every PIN check
(default 65536 KiB = 64 MiB; the floor, 8192, exists so test suites stay
fast and should not be used for real tokens).

Every ``HSMError`` becomes one line on stderr and a non-zero exit status
(``EXIT_CODES``), never a traceback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from fwcommon.cli import Failure, ToolGroup, ask
from hsm_mock._crypto import (
    DEFAULT_MEMORY_KIB,
    MAX_MEMORY_KIB,
    MIN_MEMORY_KIB,
    Algorithm,
    KdfParams,
)
from hsm_mock.errors import (
    HSMError,
    PayloadRefusedError,
    PinIncorrectError,
    PurposeMismatchError,
    TokenLockedError,
    UsageLogError,
)
from hsm_mock.purpose import Purpose
from hsm_mock.signer import private_key_uri
from hsm_mock.token import Role, Token

EXIT_CODES: dict[type[HSMError], int] = {
    PinIncorrectError: 3,
    TokenLockedError: 4,
    PurposeMismatchError: 5,
    PayloadRefusedError: 5,
    UsageLogError: 6,
}


class _Group(ToolGroup):
    """``HSMError`` and ``OSError`` become one line on stderr and an exit status (EXIT_CODES)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, tool="fwhsm", errors=(HSMError, OSError), **kwargs)

    def failure(self, exc: Exception) -> Failure:
        reported = super().failure(exc)
        status = EXIT_CODES.get(type(exc), 1) if isinstance(exc, HSMError) else 1
        return replace(reported, status=status)


def _pin(env: str, prompt: str, *, confirm: bool = False) -> str:
    return ask(prompt, envvar=env, confirm=confirm)


_ENVIRONMENT = """\b
PINs come from a hidden prompt or, with no terminal, from the environment:
  FWHSM_SO_PIN        security officer PIN (init, unlock, change-pin --so)
  FWHSM_USER_PIN      user PIN (init, generate, change-pin)
  FWHSM_NEW_USER_PIN  the new user PIN (unlock, change-pin)
  FWHSM_NEW_SO_PIN    the new SO PIN (change-pin --so)
"""

token_option = click.option(
    "--token",
    "token_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Token directory.",
)
label_option = click.option("--label", required=True, help="Key label (unique on the token).")


@click.group(cls=_Group, epilog=_ENVIRONMENT)
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr (-vv: debug).")
def main(verbose: int) -> None:
    """Software HSM: keys generated inside, PIN-protected, one purpose each, never exported."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@token_option
@click.option(
    "--kdf-memory-kib",
    type=click.IntRange(MIN_MEMORY_KIB, MAX_MEMORY_KIB),
    default=DEFAULT_MEMORY_KIB,
    show_default=True,
    help="Argon2id memory per PIN check. Keep the default; tests use 8192 to stay fast.",
)
def init(token_dir: Path, kdf_memory_kib: int) -> None:
    """Create a token: set the SO PIN and the user PIN (no default PIN exists)."""
    so_pin = _pin("FWHSM_SO_PIN", "New SO PIN", confirm=True)
    user_pin = _pin("FWHSM_USER_PIN", "New user PIN", confirm=True)
    kdf = KdfParams(memory_kib=kdf_memory_kib)
    token = Token.init(token_dir, so_pin=so_pin, user_pin=user_pin, kdf=kdf)
    click.echo(f"initialised token {token.path} (argon2id, {kdf.memory_kib} KiB)")


@main.command()
@token_option
@label_option
@click.option("--purpose", required=True, type=click.Choice([p.value for p in Purpose]))
@click.option("--algorithm", required=True, type=click.Choice([a.value for a in Algorithm]))
def generate(token_dir: Path, label: str, purpose: str, algorithm: str) -> None:
    """Generate a key inside the token for exactly one purpose (R47)."""
    token = Token.open(token_dir)
    session = token.login(_pin("FWHSM_USER_PIN", "User PIN"))
    info = session.generate(label=label, purpose=Purpose(purpose), algorithm=Algorithm(algorithm))
    click.echo(f"generated {info.algorithm.value} key {info.label!r} for {info.purpose.value}")
    click.echo(f"keyid {info.keyid}")
    click.echo(f"uri   {private_key_uri(token.path, info.label)}")


@main.command(name="list")
@token_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_keys(token_dir: Path, as_json: bool) -> None:
    """List keys: label, purpose, algorithm, keyid (no PIN needed)."""
    keys = Token.open(token_dir).keys()
    if as_json:
        rows = [
            {"label": k.label, "purpose": k.purpose.value, "algorithm": k.algorithm.value}
            | {"keyid": k.keyid}
            for k in keys
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for k in keys:
        click.echo(f"{k.label:<24} {k.purpose.value:<14} {k.algorithm.value:<11} {k.keyid}")


@main.command(name="export-public")
@token_option
@label_option
def export_public(token_dir: Path, label: str) -> None:
    """Print the public key as securesystemslib JSON (keyid, keytype, scheme, keyval)."""
    key = Token.open(token_dir).public_key(label)
    click.echo(json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=2, sort_keys=True))


@main.command()
@token_option
@label_option
def uri(token_dir: Path, label: str) -> None:
    """Print the fwhsm: private key URI of a key (for Signer.from_priv_key_uri)."""
    token = Token.open(token_dir)
    click.echo(private_key_uri(token.path, token.key(label).label))


@main.command()
@token_option
def status(token_dir: Path) -> None:
    """Show PIN failure counters, lock state and the usage log head."""
    state = Token.open(token_dir).status()
    locked = "permanently" if state.permanently_locked else "yes" if state.user_locked else "no"
    click.echo(f"locked: {locked}")
    click.echo(f"wrong user PINs: {state.user_failures}, wrong SO PINs: {state.so_failures}")
    click.echo(f"usage log head: seq {state.log_head.seq} {state.log_head.hash}")


@main.command()
@token_option
def unlock(token_dir: Path) -> None:
    """Security officer: reset the user PIN and unlock the token."""
    token = Token.open(token_dir)
    so_pin = _pin("FWHSM_SO_PIN", "SO PIN")
    new_pin = _pin("FWHSM_NEW_USER_PIN", "New user PIN", confirm=True)
    token.unlock(so_pin=so_pin, new_user_pin=new_pin)
    click.echo("token unlocked; user PIN reset")


@main.command(name="change-pin")
@token_option
@click.option("--so", "as_so", is_flag=True, help="Change the SO PIN instead of the user PIN.")
def change_pin(token_dir: Path, as_so: bool) -> None:
    """Change the user PIN (or, with --so, the SO PIN)."""
    token = Token.open(token_dir)
    role = Role.SO if as_so else Role.USER
    env = "SO" if as_so else "USER"
    old_pin = _pin(f"FWHSM_{env}_PIN", f"Current {role.pin_name}")
    new_pin = _pin(f"FWHSM_NEW_{env}_PIN", f"New {role.pin_name}", confirm=True)
    token.change_pin(role=role, old_pin=old_pin, new_pin=new_pin)
    click.echo(f"{role.pin_name} changed")


@main.group()
def log() -> None:
    """The token's hash-chained usage log."""


@log.command()
@token_option
def verify(token_dir: Path) -> None:
    """Verify the usage log chain and its recorded head; name the first bad entry."""
    head = Token.open(token_dir).verify_log()
    click.echo(f"usage log intact: {head.seq} entries, head {head.hash}")
