"""``fwsign add --delta-from``: signed delta targets beside a release (issue 13).

A delta is made only from the signed bytes of an earlier release of the same
product line (its local file checked against the signed length and SHA-256),
is signed in the line with the ``delta`` field, lands in ``--targets-dir``
where ``verify`` and ``publish`` look for it, and goes when either release it
names is withdrawn. Any refusal changes nothing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from fwcommon.delta import apply_delta
from tests.signer import test_cli
from tests.signer.test_cli import Run

# fwsign add's own fixtures: tokens with one key per person, a repository with pump-x100.
uris, online_keys, fwsign, repo = (
    test_cli.uris,
    test_cli.online_keys,
    test_cli.fwsign,
    test_cli.repo,
)
_snapshot = test_cli._snapshot

BASE = "pump-x100/pump-fw-2.4.0.bin"
IMAGE = "pump-x100/pump-fw-2.5.0.bin"
DELTA = "pump-x100/pump-fw-2.5.0.bin.from-2.4.0.bsdiff"


def _add(fwsign: Run, repo: Path, image: Path, version: str, *extra: str) -> Any:
    return fwsign(
        "add", "--repo", str(repo), str(image), "--name", "pump-fw", "--version", version,
        "--security-version", "3", "--hardware-model", "pump-x100", *extra,
    )  # fmt: skip


def _line(repo: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((repo / "metadata" / "pump-x100.json").read_bytes())
    targets: dict[str, Any] = document["signed"]["targets"]
    return targets


def _from_2_4_0(firmware: Path) -> tuple[str, str, str, str]:
    """The options that add 2.5.0 with its delta from 2.4.0, files in ``firmware``."""
    return ("--targets-dir", str(firmware), "--delta-from", "2.4.0")


def _builds(tmp_path: Path, fwsign: Run, repo: Path) -> tuple[Path, bytes, Path]:
    """Release 2.4.0 added with --targets-dir; the 2.5.0 build (1 byte in 200 changed)."""
    firmware = tmp_path / "firmware"
    old = bytes(range(256)) * 400
    (tmp_path / "old.bin").write_bytes(old)
    added = _add(fwsign, repo, tmp_path / "old.bin", "2.4.0", "--targets-dir", str(firmware))
    assert added.exit_code == 0, added.output
    new = bytearray(old)
    new[::200] = bytes(len(new[::200]))
    (tmp_path / "new.bin").write_bytes(bytes(new))
    return firmware, old, tmp_path / "new.bin"


def test_add_with_delta_from_signs_a_delta_that_rebuilds_the_release(
    fwsign: Run, repo: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    """Issue 13: the delta target names its image and the signed base; verify checks its file.

    Answers R13.
    """
    firmware, old, new = _builds(tmp_path, fwsign, repo)
    result = _add(fwsign, repo, new, "2.5.0", *_from_2_4_0(firmware))
    assert result.exit_code == 0, result.output
    assert f"added {DELTA}" in result.output
    targets = _line(repo)
    delta = targets[DELTA]
    assert delta["custom"] == {
        "delta": {
            "image": IMAGE,
            "base": BASE,
            "base_sha256": targets[BASE]["hashes"]["sha256"],
            "base_length": len(old),
            "format": "bsdiff4",
        }
    }
    delta_file = firmware / DELTA
    assert delta["length"] == delta_file.stat().st_size < new.stat().st_size // 5
    out = io.BytesIO()
    apply_delta(firmware / BASE, delta_file, out, max_output=new.stat().st_size)
    assert out.getvalue() == new.read_bytes()
    for person in ("alice", "bob"):
        assert fwsign("sign", "--repo", str(repo), "--key", uris[person]).exit_code == 0
    verified = fwsign("verify", "--repo", str(repo), "--targets-dir", str(firmware))
    assert verified.exit_code == 0, verified.output
    assert "3 target(s), 3 file(s): OK" in verified.output


def test_delta_base_dir_finds_the_base_in_a_flat_build_directory(
    fwsign: Run, repo: Path, tmp_path: Path
) -> None:
    """--delta-from finds the base's file in a flat build directory too."""
    firmware, old, new = _builds(tmp_path, fwsign, repo)
    builds = tmp_path / "builds"
    builds.mkdir()
    (builds / "pump-fw-2.4.0.bin").write_bytes(old)
    (firmware / BASE).unlink()
    result = _add(
        fwsign, repo, new, "2.5.0", *_from_2_4_0(firmware), "--delta-base-dir", str(builds)
    )
    assert result.exit_code == 0, result.output
    assert (firmware / DELTA).is_file()


def _refused(fwsign: Run, repo: Path, new: Path, message: str, *extra: str) -> None:
    before = _snapshot(repo)
    result = _add(fwsign, repo, new, "2.5.0", *extra)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert _snapshot(repo) == before


def test_a_base_file_that_is_not_the_signed_base_is_refused_and_nothing_changes(
    fwsign: Run, repo: Path, tmp_path: Path
) -> None:
    """A delta against the wrong base would never apply: refused before anything is made (R13)."""
    firmware, _, new = _builds(tmp_path, fwsign, repo)
    (firmware / BASE).write_bytes(b"a rebuilt 2.4.0 that is not the signed one")
    message = "is not the signed base release pump-x100/pump-fw-2.4.0.bin"
    _refused(fwsign, repo, new, message, *_from_2_4_0(firmware))
    assert not (firmware / IMAGE).exists()
    assert not (firmware / DELTA).exists()


def test_a_missing_base_file_is_refused_naming_where_it_was_looked_for(
    fwsign: Run, repo: Path, tmp_path: Path
) -> None:
    """--delta-from: a missing base file is named with where it was looked for."""
    firmware, _, new = _builds(tmp_path, fwsign, repo)
    (firmware / BASE).unlink()
    message = "give the build directory that holds it with --delta-base-dir"
    _refused(fwsign, repo, new, message, *_from_2_4_0(firmware))


def test_delta_from_without_targets_dir_is_refused(fwsign: Run, repo: Path, tmp_path: Path) -> None:
    """--delta-from needs --targets-dir, where verify and publish look."""
    _, _, new = _builds(tmp_path, fwsign, repo)
    _refused(fwsign, repo, new, "--delta-from needs --targets-dir", "--delta-from", "2.4.0")


def test_delta_from_a_release_not_signed_later_or_twice_is_refused(
    fwsign: Run, repo: Path, tmp_path: Path
) -> None:
    """--delta-from names one earlier signed release, once; anything else is refused."""
    firmware, _, new = _builds(tmp_path, fwsign, repo)
    where = ("--targets-dir", str(firmware))
    _refused(fwsign, repo, new, "no release of version 2.3.0", *where, "--delta-from", "2.3.0")
    _refused(fwsign, repo, new, "earlier than 2.5.0", *where, "--delta-from", "2.6.0")
    _refused(fwsign, repo, new, "not a semantic version", *where, "--delta-from", "2.4")
    _refused(
        fwsign, repo, new, "names a release twice",
        *where, "--delta-from", "2.4.0", "--delta-from", "2.4.0",
    )  # fmt: skip


def test_a_delta_file_already_in_targets_dir_is_not_overwritten(
    fwsign: Run, repo: Path, tmp_path: Path
) -> None:
    """--delta-from: a delta file already in --targets-dir is never overwritten."""
    firmware, _, new = _builds(tmp_path, fwsign, repo)
    (firmware / DELTA).write_bytes(b"someone else's file")
    _refused(fwsign, repo, new, "already exists; move it away", *_from_2_4_0(firmware))
    assert (firmware / DELTA).read_bytes() == b"someone else's file"


def test_withdrawing_the_base_release_withdraws_its_deltas_r56(
    fwsign: Run, repo: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    """R56: no delta is left naming a release that is no longer signed."""
    firmware, _, new = _builds(tmp_path, fwsign, repo)
    added = _add(fwsign, repo, new, "2.5.0", *_from_2_4_0(firmware))
    assert added.exit_code == 0, added.output
    result = fwsign("revoke-release", "--repo", str(repo), BASE, "--key", uris["alice"])
    assert result.exit_code == 0, result.output
    assert DELTA in result.output
    assert set(_line(repo)) == {IMAGE}
