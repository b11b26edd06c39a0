"""``fwsign`` as people run it, with keys in mock-HSM tokens.

Each person has a token with one key for one purpose (R47); PINs come from
``FWSIGN_PIN`` as automation would give them. Every refused command must
exit non-zero with a message naming what to fix, print no traceback, and
leave the repository byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tuf.api.metadata import Metadata, Root

from hsm_mock import Algorithm, KdfParams, Purpose, Token, private_key_uri
from repo_metadata.authorization import AuthorizationKeys
from signer.cli import main

PIN = "user-pin-0815"
FAST_KDF = KdfParams(memory_kib=8192, iterations=1, lanes=1)
PEOPLE = {
    "officer1": Purpose.ROOT,
    "officer2": Purpose.ROOT,
    "officer3": Purpose.ROOT,
    "manager": Purpose.TARGETS,
    "alice": Purpose.DELEGATION,
    "bob": Purpose.DELEGATION,
    "carol": Purpose.DELEGATION,
    "snapshot": Purpose.SNAPSHOT,
    "timestamp": Purpose.TIMESTAMP,
}


@pytest.fixture(scope="module")
def uris(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One token per person, each with one key of that person's purpose."""
    base = tmp_path_factory.mktemp("tokens")
    result = {}
    for person, purpose in PEOPLE.items():
        token = Token.init(base / person, so_pin="so-pin-4711", user_pin=PIN, kdf=FAST_KDF)
        token.login(PIN).generate(label=person, purpose=purpose, algorithm=Algorithm.ED25519)
        result[person] = private_key_uri(token.path, person)
    return result


@pytest.fixture(scope="module")
def online_keys(tmp_path_factory: pytest.TempPathFactory, uris: dict[str, str]) -> dict[str, str]:
    """The server's online public keys as files, as 'fwhsm export-public' writes them."""
    base = tmp_path_factory.mktemp("pub")
    files = {}
    for role in ("snapshot", "timestamp"):
        token_dir = Path(uris[role].split(":", 1)[1].split("?", 1)[0])
        key = Token.open(token_dir).public_key(role)
        files[role] = str(base / f"{role}.json")
        Path(files[role]).write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}))
    return files


Run = Callable[..., Result]


@pytest.fixture
def fwsign() -> Run:
    runner = CliRunner()

    def run(*args: str, pin: str = PIN) -> Result:
        return runner.invoke(main, list(args), env={"FWSIGN_PIN": pin})

    return run


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _init(fwsign: Run, repo: Path, uris: dict[str, str], online: dict[str, str]) -> None:
    result = fwsign(
        "init", "--repo", str(repo),
        "--root-key", uris["officer1"], "--root-key", uris["officer2"],
        "--root-key", uris["officer3"], "--targets-key", uris["manager"],
        "--snapshot-key", online["snapshot"], "--timestamp-key", online["timestamp"],
        "--key", uris["officer1"], "--key", uris["officer2"], "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = fwsign(
        "delegate", "--repo", str(repo), "--name", "pump-x100", "--path-prefix", "pump-x100/",
        "--engineer-key", uris["alice"], "--engineer-key", uris["bob"], "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.fixture
def repo(tmp_path: Path, fwsign: Run, uris: dict[str, str], online_keys: dict[str, str]) -> Path:
    path = tmp_path / "repo"
    _init(fwsign, path, uris, online_keys)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "pump-fw.bin"
    path.write_bytes(b"firmware" * 4096)
    return path


def _add(fwsign: Run, repo: Path, image: Path, *extra: str) -> Result:
    return fwsign(
        "add", "--repo", str(repo), str(image), "--name", "pump-fw", "--version", "2.4.0",
        "--security-version", "3", "--hardware-model", "pump-x100", *extra,
    )  # fmt: skip


def test_release_engineer_flow_two_signatures_then_verify_accepts(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    """The README's story (R9, R13): add, two engineers sign, verify accepts."""
    assert _add(fwsign, repo, image).exit_code == 0
    signed = fwsign("sign", "--repo", str(repo), "--key", uris["alice"])
    assert "pump-x100 v1: 1 of 2 signatures, threshold 2 (needs more signatures)" in signed.output

    blocked = fwsign("status", "--repo", str(repo), "--check")
    assert blocked.exit_code == 1
    assert "needs 1 more signature(s)" in blocked.output
    refused = fwsign("verify", "--repo", str(repo))
    assert refused.exit_code == 1
    assert "signature-threshold" in refused.output

    second = fwsign("sign", "--repo", str(repo), "--key", uris["bob"])
    assert "pump-x100 v1: 2 of 2 signatures, threshold 2 (ready)" in second.output
    firmware = tmp_path / "firmware" / "pump-x100"
    firmware.mkdir(parents=True)
    (firmware / "pump-fw-2.4.0.bin").write_bytes(image.read_bytes())
    accepted = fwsign("verify", "--repo", str(repo), "--targets-dir", str(tmp_path / "firmware"))
    assert accepted.exit_code == 0, accepted.output
    assert "1 target(s), 1 file(s): OK" in accepted.output
    assert fwsign("status", "--repo", str(repo), "--check").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--version", "2.4"), "version: not a semantic version"),
        (("--security-version", "-1"), "security_version: must be zero or more"),
        (("--hardware-model", "../etc"), "hardware_models"),
        (("--min-installed-version", "9.0.0"), "min_installed_version: is above"),
        (("--target-path", "other-line/pump-fw.bin"), "no product line is delegated"),
        (("--target-path", "/abs/pump-fw.bin"), "absolute"),
    ],
)
def test_bad_firmware_fields_exit_nonzero_naming_the_field_and_change_nothing(
    fwsign: Run, repo: Path, image: Path, args: tuple[str, ...], message: str
) -> None:
    """Bad input gets a clear error and changes nothing (no half-written file)."""
    before = _snapshot(repo)
    # Later options override the defaults _add gives.
    result = fwsign(
        "add", "--repo", str(repo), str(image), "--name", "pump-fw", "--version", "2.4.0",
        "--security-version", "3", "--hardware-model", "pump-x100", *args,
    )  # fmt: skip
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert _snapshot(repo) == before


def test_missing_image_is_refused_and_nothing_changes(
    fwsign: Run, repo: Path, tmp_path: Path
) -> None:
    before = _snapshot(repo)
    result = _add(fwsign, repo, tmp_path / "nope.bin")
    assert result.exit_code == 1
    assert "no such firmware file" in result.output
    assert _snapshot(repo) == before


def test_wrong_pin_is_refused_and_nothing_is_signed(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    """A wrong PIN signs nothing; the message never echoes the PIN."""
    assert _add(fwsign, repo, image).exit_code == 0
    before = _snapshot(repo)
    result = fwsign("sign", "--repo", str(repo), "--key", uris["alice"], pin="wrong-pin-1234")
    assert result.exit_code != 0
    assert "wrong-pin-1234" not in result.output
    assert _snapshot(repo) == before


def test_one_key_one_use_a_delegation_key_cannot_sign_root_r47(
    fwsign: Run, tmp_path: Path, uris: dict[str, str], online_keys: dict[str, str]
) -> None:
    """R47: a token key made for delegations refuses to sign root metadata."""
    repo = tmp_path / "repo"
    result = fwsign(
        "init", "--repo", str(repo),
        "--root-key", uris["alice"], "--root-key", uris["officer1"],
        "--targets-key", uris["manager"],
        "--snapshot-key", online_keys["snapshot"], "--timestamp-key", online_keys["timestamp"],
        "--key", uris["alice"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "root" in result.output
    assert not repo.exists() or _snapshot(repo) == {}


def test_sign_with_a_key_no_role_lists_is_refused(
    fwsign: Run, repo: Path, uris: dict[str, str]
) -> None:
    before = _snapshot(repo)
    result = fwsign("sign", "--repo", str(repo), "--key", uris["carol"])
    assert result.exit_code == 1
    assert "none of the keys given may sign" in result.output
    assert _snapshot(repo) == before


def test_not_a_repository_says_how_to_create_one(fwsign: Run, tmp_path: Path) -> None:
    result = fwsign("status", "--repo", str(tmp_path))
    assert result.exit_code == 1
    assert "fwsign init" in result.output


def test_revoke_key_by_prefix_removes_a_compromised_engineer_key_r5(
    fwsign: Run, repo: Path, uris: dict[str, str]
) -> None:
    """R5: after rotating carol in, bob's stolen key is removed everywhere."""
    rotated = fwsign(
        "rotate", "--repo", str(repo), "--role", "pump-x100", "--add-key", uris["carol"],
        "--key", uris["manager"],
    )  # fmt: skip
    assert rotated.exit_code == 0, rotated.output
    token_dir = Path(uris["bob"].split(":", 1)[1].split("?", 1)[0])
    bob_keyid = Token.open(token_dir).public_key("bob").keyid
    result = fwsign("revoke-key", "--repo", str(repo), bob_keyid[:12], "--key", uris["manager"])
    assert result.exit_code == 0, result.output
    targets = json.loads((repo / "metadata" / "targets.json").read_text())
    assert bob_keyid not in targets["signed"]["delegations"]["keys"]


def test_revoke_release_withdraws_it_r56(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    assert _add(fwsign, repo, image).exit_code == 0
    path = "pump-x100/pump-fw-2.4.0.bin"
    result = fwsign("revoke-release", "--repo", str(repo), path)
    assert result.exit_code == 0, result.output
    role = json.loads((repo / "metadata" / "pump-x100.json").read_text())
    assert path not in role["signed"]["targets"]
    again = fwsign("revoke-release", "--repo", str(repo), path)
    assert again.exit_code == 1
    assert "is not a signed target" in again.output


def test_a_release_manager_key_cannot_become_an_engineer_key_r47(
    fwsign: Run, repo: Path, uris: dict[str, str]
) -> None:
    """R47: the token cannot tell targets from a delegation, so fwsign keeps them apart."""
    before = _snapshot(repo)
    result = fwsign(
        "delegate", "--repo", str(repo), "--name", "monitor-m2", "--path-prefix", "monitor-m2/",
        "--engineer-key", uris["manager"], "--engineer-key", uris["carol"],
        "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "is already a targets key" in result.output
    assert "R47" in result.output
    assert _snapshot(repo) == before


@pytest.mark.parametrize("threshold", ["0", "-1", "3"])
def test_delegate_with_an_invalid_threshold_is_refused_never_replaced_r9(
    fwsign: Run, repo: Path, uris: dict[str, str], threshold: str
) -> None:
    """R9 four eyes: a threshold the keys cannot meet, or none at all, is an error.

    ``--threshold 0`` once fell back to the policy's threshold (2-of-2) and
    exited 0; with a policy of 1 it would have been one engineer alone. An
    operator's explicit, invalid threshold is refused and nothing is written.
    """
    before = _snapshot(repo)
    result = fwsign(
        "delegate", "--repo", str(repo), "--name", "monitor-m2", "--path-prefix", "monitor-m2/",
        "--engineer-key", uris["alice"], "--engineer-key", uris["carol"],
        "--threshold", threshold, "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"threshold {threshold} needs between 1 and 2 keys" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(repo) == before


def test_rollback_attack_bob_refuses_a_role_rewound_in_a_repository_fwsign_made(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    """TUF rollback, the reviewer's proof: only fwsign has written this repository.

    Release 2.4.0 is added and signed by alice (v1), then the fix 2.5.0 (v2);
    pump-x100.json is put back to the v1 she signed alone. fwsign kept v2 when
    alice signed it, so bob's sign refuses v1, names the kept file, writes nothing.
    """
    metadata = repo / "metadata"
    alice = ("sign", "--repo", str(repo), "--key", uris["alice"])
    assert _add(fwsign, repo, image).exit_code == 0
    assert fwsign(*alice).exit_code == 0
    alice_only_v1 = (metadata / "pump-x100.json").read_bytes()
    fix = tmp_path / "pump-fw-2.5.0.bin"
    fix.write_bytes(image.read_bytes() + b"fix")
    added = fwsign(
        "add", "--repo", str(repo), str(fix), "--name", "pump-fw", "--version", "2.5.0",
        "--security-version", "4", "--hardware-model", "pump-x100",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "pump-x100 v2: 1 of 2" in fwsign(*alice).output
    (metadata / "pump-x100.json").write_bytes(alice_only_v1)
    before = _snapshot(repo)
    result = fwsign("sign", "--repo", str(repo), "--key", uris["bob"])
    assert result.exit_code == 1
    assert "refusing to sign pump-x100: pump-x100 v1 is not newer than the trusted v2" in (
        result.output
    )
    assert "keeps pump-x100 v2 (2.pump-x100.json): pump-x100.json was rewound" in result.output
    assert "Traceback" not in result.output
    assert _snapshot(repo) == before
    assert [p.name for p in metadata.glob("*.pump-x100.json")] == ["2.pump-x100.json"]


def test_status_and_verify_read_each_role_once_beside_its_kept_version(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    """Kept files (N.<role>.json) are not roles: status lists each role once, verify passes."""
    assert _add(fwsign, repo, image, "--key", uris["alice"]).exit_code == 0
    assert fwsign("sign", "--repo", str(repo), "--key", uris["bob"]).exit_code == 0
    metadata = repo / "metadata"
    kept = sorted(p.name for p in metadata.glob("*.json") if p.name[0].isdigit())
    assert kept == ["1.pump-x100.json", "1.root.json", "2.targets.json"]
    status = fwsign("status", "--repo", str(repo), "--check")
    assert status.exit_code == 0, status.output
    listed = [line.split()[0] for line in status.output.splitlines() if " signatures " in line]
    assert listed == ["root", "targets", "pump-x100"]
    verified = fwsign("verify", "--repo", str(repo))
    assert verified.exit_code == 0, verified.output
    assert "checked 3 role(s)" in verified.output


def test_add_prints_the_target_path_its_hash_and_what_needs_signing(
    fwsign: Run, repo: Path, image: Path
) -> None:
    """add says where the release is signed and where verify/publish look for its file."""
    result = _add(fwsign, repo, image)
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert (
        f"added pump-x100/pump-fw-2.4.0.bin (sha256 {digest}, {len(image.read_bytes())} bytes)"
        " to role pump-x100"
    ) in result.output
    assert "look for it at DIR/pump-x100/pump-fw-2.4.0.bin" in result.output
    assert "not at pump-fw.bin" in result.output
    assert (
        "pump-x100 v1 needs 2 more signature(s) (threshold 2 of its delegation in targets)"
    ) in result.output


def test_add_with_targets_dir_copies_the_image_where_verify_finds_it(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    """The README's layout: the build is copied to DIR/<target path>; verify checks it."""
    firmware = tmp_path / "firmware"
    result = _add(fwsign, repo, image, "--targets-dir", str(firmware))
    assert result.exit_code == 0, result.output
    copy = firmware / "pump-x100" / "pump-fw-2.4.0.bin"
    assert copy.read_bytes() == image.read_bytes()
    assert f"copied to {copy}" in result.output
    for person in ("alice", "bob"):
        assert fwsign("sign", "--repo", str(repo), "--key", uris[person]).exit_code == 0
    verified = fwsign("verify", "--repo", str(repo), "--targets-dir", str(firmware))
    assert verified.exit_code == 0, verified.output
    assert "1 target(s), 1 file(s): OK" in verified.output


def test_add_refuses_to_overwrite_another_file_in_targets_dir(
    fwsign: Run, repo: Path, image: Path, tmp_path: Path
) -> None:
    other = tmp_path / "firmware" / "pump-x100" / "pump-fw-2.4.0.bin"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another build")
    before = _snapshot(repo)
    result = _add(fwsign, repo, image, "--targets-dir", str(tmp_path / "firmware"))
    assert result.exit_code == 1
    assert "already exists with other content" in result.output
    assert other.read_bytes() == b"another build"
    assert _snapshot(repo) == before


def test_verify_finds_a_flat_build_directory_by_file_name(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    """DIR/<file name of the target path> is the fall-back when DIR/<target path> is absent."""
    assert _add(fwsign, repo, image, "--key", uris["alice"]).exit_code == 0
    assert fwsign("sign", "--repo", str(repo), "--key", uris["bob"]).exit_code == 0
    build = tmp_path / "build"
    build.mkdir()
    (build / "pump-fw-2.4.0.bin").write_bytes(image.read_bytes())
    verified = fwsign("verify", "--repo", str(repo), "--targets-dir", str(build))
    assert verified.exit_code == 0, verified.output
    assert "1 file(s): OK" in verified.output


def test_verify_with_a_targets_dir_that_matches_nothing_fails_naming_the_layout(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    """Never "0 file(s): OK": the engineer's build/pump-fw.bin is not where verify looks."""
    assert _add(fwsign, repo, image, "--key", uris["alice"]).exit_code == 0
    assert fwsign("sign", "--repo", str(repo), "--key", uris["bob"]).exit_code == 0
    result = fwsign("verify", "--repo", str(repo), "--targets-dir", str(image.parent))
    assert result.exit_code == 1
    assert "none of the 1 signed target(s) has a file there" in result.output
    assert "pump-x100/pump-fw-2.4.0.bin" in result.output
    assert "FAILED" in result.output


def test_verify_lists_the_targets_it_found_no_file_for(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    firmware = tmp_path / "firmware"
    assert _add(fwsign, repo, image, "--targets-dir", str(firmware)).exit_code == 0
    other = tmp_path / "other.bin"
    other.write_bytes(b"2.5.0")
    added = fwsign(
        "add", "--repo", str(repo), str(other), "--name", "pump-fw", "--version", "2.5.0",
        "--security-version", "3", "--hardware-model", "pump-x100",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    for person in ("alice", "bob"):
        assert fwsign("sign", "--repo", str(repo), "--key", uris[person]).exit_code == 0
    result = fwsign("verify", "--repo", str(repo), "--targets-dir", str(firmware))
    assert result.exit_code == 0, result.output
    assert "no file under" in result.output
    assert "1 target(s), not checked: pump-x100/pump-fw-2.5.0.bin" in result.output
    assert "2 target(s), 1 file(s): OK" in result.output


def test_add_below_a_signed_security_version_warns_naming_both_r25(
    fwsign: Run, repo: Path, image: Path, tmp_path: Path
) -> None:
    """R25 anti-rollback: a device that installed 2.4.0 (floor 3) never installs sv 2."""
    assert _add(fwsign, repo, image).exit_code == 0
    older = tmp_path / "pump-fw-2.3.1.bin"
    older.write_bytes(b"hotfix for old devices")
    result = fwsign(
        "add", "--repo", str(repo), str(older), "--name", "pump-fw", "--version", "2.3.1",
        "--security-version", "2", "--hardware-model", "pump-x100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "warning: pump-x100/pump-fw-2.3.1.bin has security version 2, below 3 of"
        " pump-x100/pump-fw-2.4.0.bin (2.4.0)"
    ) in result.output
    assert "never installs 2.3.1" in result.output


def test_add_at_or_above_the_signed_security_versions_does_not_warn(
    fwsign: Run, repo: Path, image: Path, tmp_path: Path
) -> None:
    assert _add(fwsign, repo, image).exit_code == 0
    newer = tmp_path / "pump-fw-2.5.0.bin"
    newer.write_bytes(b"2.5.0")
    result = fwsign(
        "add", "--repo", str(repo), str(newer), "--name", "pump-fw", "--version", "2.5.0",
        "--security-version", "3", "--hardware-model", "pump-x100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_revoke_release_says_what_it_removed_and_what_needs_signing_r56(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str], tmp_path: Path
) -> None:
    sbom = tmp_path / "sbom.json"
    sbom.write_bytes(b'{"spdxVersion": "SPDX-2.3"}')
    assert _add(fwsign, repo, image, "--sbom", str(sbom), "--key", uris["alice"]).exit_code == 0
    assert fwsign("sign", "--repo", str(repo), "--key", uris["bob"]).exit_code == 0
    result = fwsign("revoke-release", "--repo", str(repo), "pump-x100/pump-fw-2.4.0.bin")
    assert result.exit_code == 0, result.output
    assert (
        "removed pump-x100/pump-fw-2.4.0.bin, pump-x100/pump-fw-2.4.0.sbom.json from pump-x100"
    ) in result.output
    assert (
        "pump-x100 v2 needs 2 more signature(s) (threshold 2 of its delegation in targets)"
    ) in result.output


def test_rotate_removes_a_key_named_by_a_six_digit_prefix_r5(
    fwsign: Run, repo: Path, uris: dict[str, str]
) -> None:
    """The help says "unique prefix": 'fwsign rotate --remove-key 5b31f7' works (R5)."""
    token_dir = Path(uris["bob"].split(":", 1)[1].split("?", 1)[0])
    bob_keyid = Token.open(token_dir).public_key("bob").keyid
    result = fwsign(
        "rotate", "--repo", str(repo), "--role", "pump-x100", "--add-key", uris["carol"],
        "--remove-key", bob_keyid[:6], "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    targets = json.loads((repo / "metadata" / "targets.json").read_text())
    assert bob_keyid not in targets["signed"]["delegations"]["keys"]
    short = fwsign("revoke-key", "--repo", str(repo), bob_keyid[:5], "--key", uris["manager"])
    assert short.exit_code == 1
    assert "at least 6 hex digits" in short.output


@pytest.mark.parametrize("command", ["add", "sign", "rotate", "revoke-key", "revoke-release"])
def test_help_of_commands_that_sign_names_the_pin_variable(fwsign: Run, command: str) -> None:
    result = fwsign(command, "--help")
    assert result.exit_code == 0
    assert "FWSIGN_PIN" in result.output


def _signed_line(fwsign: Run, repo: Path, image: Path, uris: dict[str, str]) -> None:
    """pump-x100 v1 with release 2.4.0, signed by alice and bob (as it would be published)."""
    assert _add(fwsign, repo, image, "--key", uris["alice"]).exit_code == 0
    assert fwsign("sign", "--repo", str(repo), "--key", uris["bob"]).exit_code == 0


def test_rotate_names_the_line_that_must_be_signed_again_and_how_r5(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    """R5: bob leaves; the follow-up says pump-x100 needs a new version signed, and how."""
    _signed_line(fwsign, repo, image, uris)
    token_dir = Path(uris["bob"].split(":", 1)[1].split("?", 1)[0])
    bob_keyid = Token.open(token_dir).public_key("bob").keyid
    result = fwsign(
        "rotate", "--repo", str(repo), "--role", "pump-x100", "--add-key", uris["carol"],
        "--remove-key", bob_keyid[:12], "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "pump-x100 v2 must be signed again (its keys changed in targets): needs 2 more"
        " signature(s) (threshold 2 of its delegation in targets);"
        f" fwsign sign --repo {repo} --role pump-x100 --key URI"
    ) in result.output
    signed = fwsign("sign", "--repo", str(repo), "--key", uris["alice"], "--key", uris["carol"])
    assert "pump-x100 v2: 2 of 2 signatures, threshold 2 (ready)" in signed.output
    assert fwsign("verify", "--repo", str(repo)).exit_code == 0


def test_revoke_key_names_the_line_that_must_be_signed_again_r5(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    """R5, a stolen key: the line it left short of its threshold is named with the command."""
    _signed_line(fwsign, repo, image, uris)
    token_dir = Path(uris["bob"].split(":", 1)[1].split("?", 1)[0])
    bob_keyid = Token.open(token_dir).public_key("bob").keyid
    rotated = fwsign(
        "rotate", "--repo", str(repo), "--role", "pump-x100", "--add-key", uris["carol"],
        "--key", uris["manager"],
    )  # fmt: skip
    assert rotated.exit_code == 0, rotated.output
    assert "must be signed again" not in rotated.output  # alice and bob still meet 2 of 3
    result = fwsign("revoke-key", "--repo", str(repo), bob_keyid[:12], "--key", uris["manager"])
    assert result.exit_code == 0, result.output
    assert "pump-x100 v2 must be signed again (its keys changed in targets)" in result.output
    assert f"fwsign sign --repo {repo} --role pump-x100 --key URI" in result.output


def test_rotate_counts_the_hashed_bins_that_must_be_signed_again_r5(
    fwsign: Run, repo: Path, image: Path, uris: dict[str, str]
) -> None:
    """A line may have thousands of bins: the follow-up counts them instead of listing each."""
    delegated = fwsign(
        "delegate", "--repo", str(repo), "--name", "monitor-m20", "--path-prefix", "monitor-m20/",
        "--engineer-key", uris["alice"], "--engineer-key", uris["bob"], "--bin-bits", "2",
        "--key", uris["manager"],
    )  # fmt: skip
    assert delegated.exit_code == 0, delegated.output
    assert "monitor-m20 v1 needs 2 more signature(s)" in delegated.output
    signed = fwsign("sign", "--repo", str(repo), "--key", uris["alice"], "--key", uris["bob"])
    assert signed.exit_code == 0, signed.output
    token_dir = Path(uris["bob"].split(":", 1)[1].split("?", 1)[0])
    bob_keyid = Token.open(token_dir).public_key("bob").keyid
    result = fwsign(
        "rotate", "--repo", str(repo), "--role", "monitor-m20", "--add-key", uris["carol"],
        "--remove-key", bob_keyid[:12], "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "4 hashed bin(s) (monitor-m20-bins-0, ...) must be signed again (their keys changed):"
        f" fwsign sign --repo {repo} --key URI"
    ) in result.output
    assert "monitor-m20-bins-1" not in result.output.split("to sign")[-1]


def test_init_and_authorization_keys_command_put_the_servers_key_in_root_r47(
    fwsign: Run, tmp_path: Path, uris: dict[str, str], online_keys: dict[str, str]
) -> None:
    """The officers list the server's authorization key in root; rotating it is a new root."""
    token = Token.init(tmp_path / "authz", so_pin="so-pin-4711", user_pin=PIN, kdf=FAST_KDF)
    keys = []
    for label in ("authorization-1", "authorization-2"):
        token.login(PIN).generate(
            label=label, purpose=Purpose.AUTHORIZATION, algorithm=Algorithm.ED25519
        )
        key = Token.open(token.path).public_key(label)
        keys.append(key)
        (tmp_path / f"{label}.json").write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}))
    repo = tmp_path / "repo"
    result = fwsign(
        "init", "--repo", str(repo),
        "--root-key", uris["officer1"], "--root-key", uris["officer2"],
        "--targets-key", uris["manager"],
        "--snapshot-key", online_keys["snapshot"], "--timestamp-key", online_keys["timestamp"],
        "--authorization-key", str(tmp_path / "authorization-1.json"),
        "--key", uris["officer1"], "--key", uris["officer2"], "--key", uris["manager"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    def listed() -> set[str]:
        root = Metadata[Root].from_bytes((repo / "metadata" / "root.json").read_bytes())
        found = AuthorizationKeys.from_root(root.signed)
        return set(found.keys) if found else set()

    assert listed() == {keys[0].keyid}
    rotated = fwsign(
        "authorization-keys", "--repo", str(repo),
        "--add-key", str(tmp_path / "authorization-2.json"), "--remove-key", keys[0].keyid[:8],
        "--key", uris["officer1"],
    )  # fmt: skip
    assert rotated.exit_code == 0, rotated.output
    assert listed() == {keys[1].keyid}
    assert "root" in rotated.output
    refused = fwsign(
        "authorization-keys", "--repo", str(repo), "--add-key", online_keys["snapshot"],
        "--key", uris["officer1"],
    )  # fmt: skip
    assert refused.exit_code != 0
    assert "R47" in refused.output
