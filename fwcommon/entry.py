"""The console entry points of the four tools.

A tool's imports take a moment (cryptography, SQLAlchemy, tuf); Ctrl-C in
that moment would print a traceback from deep inside an import. Each entry
point here imports its tool only inside a guard, so an interrupt at any time
ends in the house style's one line and exit status 130. This module imports
nothing heavy itself.
"""

from __future__ import annotations

import importlib
import sys

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it; every tool's.
INTERRUPTED_STATUS = 130
#: What Ctrl-C says unless the command knows better (fwcommon.cli.on_interrupt).
NOTHING_CHANGED = "nothing was changed"


def run(tool: str, target: str) -> None:
    """Import ``target`` ("module:attribute") and call it; Ctrl-C ends in one line."""
    try:
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        command()
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # ends the line the terminal's ^C is on
        sys.stderr.write(f"{tool}: interrupted: {NOTHING_CHANGED}\n")
        sys.exit(INTERRUPTED_STATUS)


def fwsign() -> None:
    run("fwsign", "signer.cli:main")


def fwhsm() -> None:
    run("fwhsm", "hsm_mock.cli:main")


def fwserver() -> None:
    run("fwserver", "update_server.cli:main")


def fwclient() -> None:
    run("fwclient", "client.cli:main")
