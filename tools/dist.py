"""Build the product's wheels from this checkout: ``fwupdate`` and ``fwupdate-device``.

Rules:

- W1 ``fwupdate`` (the repository's ``pyproject.toml``) ships every package:
  the signer, the software token, the server, the client and their shared
  core. ``fwupdate-device`` (``packaging/device/pyproject.toml``) ships what a
  device runs and nothing else: the client and the shared packages it
  imports, with its own, smaller dependency list (R3).
- W2 Each wheel is built from a staged copy of the sources, in a temporary
  directory: the checkout is left without ``build/`` or ``*.egg-info``
  (an egg-info beside the packages would show as a second installed
  distribution to the development environment), and a module deleted from
  the tree can never reach a wheel through setuptools' build cache.
- W3 The build runs this interpreter's setuptools, the one the development
  lock pins, without build isolation: no network, no unlocked backend.

Usage: ``python tools/dist.py [--device-only] [OUTDIR]`` (default
``build/dist``); prints the path of each wheel it wrote.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVICE = Path("packaging/device")
#: Every package of the full distribution (pyproject's packages.find).
PACKAGES = ("fwcommon", "repo_metadata", "hsm_mock", "signer", "update_server", "client")
#: What a device runs (packaging/device/pyproject.toml's packages.find).
DEVICE_PACKAGES = ("client", "fwcommon", "repo_metadata")
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")
DEVICE_FILES = ("pyproject.toml", "setup.cfg", "README.md", "LICENSE")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")


def stage(into: Path, *, device: bool) -> Path:
    """Copy the sources one distribution needs into ``into``; the directory to build."""
    for package in DEVICE_PACKAGES if device else PACKAGES:
        shutil.copytree(ROOT / package, into / package, ignore=IGNORED)
    project = into / DEVICE if device else into
    project.mkdir(parents=True, exist_ok=True)
    for name in DEVICE_FILES if device else PROJECT_FILES:
        source = ROOT / DEVICE / name if device else ROOT / name
        shutil.copyfile(source, project / name)  # follows the device's LICENSE link
    return project


def build(out: Path, *, device: bool) -> Path:
    """Build one distribution's wheel into ``out`` and return its path (W2, W3)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fwupdate-dist-") as work:
        project = stage(Path(work), device=device)
        wheels = Path(work) / "wheels"
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index"]
        subprocess.run(  # nosec B603 # this interpreter's pip, fixed argv, no shell
            [*pip, "--no-build-isolation", "--wheel-dir", str(wheels), str(project)], check=True
        )
        (wheel,) = wheels.glob("*.whl")
        target = out / wheel.name
        shutil.copyfile(wheel, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "build" / "dist")
    parser.add_argument("--device-only", action="store_true", help="only fwupdate-device")
    args = parser.parse_args(argv)
    kinds = (True,) if args.device_only else (False, True)
    for device in kinds:
        print(build(args.out, device=device))  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
