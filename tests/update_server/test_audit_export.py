"""Export of the audit log for backup, and its offline check (R28, R32, R61)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from securesystemslib.signer import CryptoSigner, Key

from tests.update_server.audit_events import append_events
from update_server.audit import Event
from update_server.audit.checkpoint import AuditReport, sign_head
from update_server.audit.errors import ExportFormatError
from update_server.audit.export import atomic_output, verify_export, write_export
from update_server.audit.public_key import audit_public_key
from update_server.config import ServerConfig

EVERY, ENTRIES = 5, 12
FORGED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def config(config: ServerConfig) -> ServerConfig:
    return config.with_changes(audit_checkpoint_every=EVERY)


@pytest.fixture
def key(config: ServerConfig) -> Key:
    return audit_public_key(config)


@pytest.fixture
def exported(app: Flask, tmp_path: Path) -> Path:
    """An export of 12 entries; its checkpoint is the one made at entry 10."""

    def user_change(number: int, now: datetime) -> Event:
        return Event(
            time=now,
            actor="carol",
            role="security_officer",
            action="user.change",
            object=f"user{number}",
            outcome="success",
            source="203.0.113.9",
            detail={"disabled": number % 2 == 0},
        )

    append_events(app, range(1, ENTRIES + 1), user_change)
    services = app.extensions["fw"]
    path = tmp_path / "audit.jsonl"
    with services.sessions() as db, atomic_output(path) as out:
        write_export(db, out)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(new_lines))


def test_export_then_verify_offline_r61(exported: Path, key: Key) -> None:
    report = verify_export(exported, key)
    assert report.ok, report.reason
    assert report.head_seq == ENTRIES
    assert report.checkpoint is not None
    assert report.checkpoint.seq == 10
    # Written without a fresh checkpoint (the CLI signs the head first by default).
    assert report.warnings == (
        "no signed checkpoint covers entries 11 to 12: a cut there would not show",
    )


def test_export_holds_every_field_and_the_signed_checkpoint(exported: Path, key: Key) -> None:
    rows = [json.loads(line) for line in lines(exported)]
    assert len(rows) == ENTRIES + 1
    assert [row["seq"] for row in rows[:-1]] == list(range(1, ENTRIES + 1))
    assert set(rows[0]) == {
        "seq",
        "time",
        "actor",
        "role",
        "action",
        "object",
        "outcome",
        "source",
        "detail",
        "prev_hash",
        "hash",
    }
    assert rows[0]["prev_hash"] == "0" * 64
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    checkpoint = rows[-1]["checkpoint"]
    assert checkpoint["_type"] == "audit-checkpoint"
    assert (checkpoint["seq"], checkpoint["head_hash"]) == (10, rows[9]["hash"])
    assert checkpoint["keyid"] == key.keyid


def test_export_is_readable_by_its_owner_only(exported: Path) -> None:
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600


def test_failed_export_leaves_the_previous_file_and_no_temporary(
    exported: Path, tmp_path: Path
) -> None:
    before = exported.read_bytes()
    with pytest.raises(RuntimeError), atomic_output(exported) as out:
        out.write(b"partial")
        raise RuntimeError("disk full")
    assert exported.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def failed(report: AuditReport, first_bad: int, words: str) -> None:
    assert not report.ok
    assert report.first_bad == first_bad, report.reason
    assert words in report.reason


def test_edited_line_in_export_is_named(exported: Path, key: Key) -> None:
    content = lines(exported)
    content[6] = content[6].replace('"carol"', '"mallory"')
    rewrite(exported, content)
    failed(verify_export(exported, key), 7, "content altered")


def test_deleted_line_in_export_is_named(exported: Path, key: Key) -> None:
    content = lines(exported)
    del content[6]
    rewrite(exported, content)
    failed(verify_export(exported, key), 7, "expected entry 7 but found entry 8")


def test_reordered_lines_in_export_are_named(exported: Path, key: Key) -> None:
    content = lines(exported)
    content[6], content[7] = content[7], content[6]
    rewrite(exported, content)
    failed(verify_export(exported, key), 7, "expected entry 7 but found entry 8")


def test_export_cut_before_its_checkpoint_is_named(exported: Path, key: Key) -> None:
    """Entries 9 to 12 dropped, the checkpoint line kept: the signed head 10 is gone."""
    content = lines(exported)
    rewrite(exported, content[:8] + content[-1:])
    failed(verify_export(exported, key), 9, "truncated")


def test_export_without_its_checkpoint_line_is_named(exported: Path, key: Key) -> None:
    rewrite(exported, lines(exported)[:-1])
    failed(verify_export(exported, key), ENTRIES + 1, "signed checkpoint, is missing")


def test_export_with_a_half_written_last_line_is_named(exported: Path, key: Key) -> None:
    content = lines(exported)
    rewrite(exported, [*content[:-1], content[-1][:40]])
    failed(verify_export(exported, key), ENTRIES + 1, "export truncated or damaged")


def test_export_with_a_forged_checkpoint_is_named(exported: Path, key: Key) -> None:
    content = lines(exported)
    line = json.loads(content[-1])
    line["checkpoint"]["head_hash"] = json.loads(content[11])["hash"]
    line["checkpoint"]["seq"] = 12
    rewrite(exported, [*content[:-1], json.dumps(line) + "\n"])
    failed(verify_export(exported, key), 12, "does not verify with the audit key")


def test_export_checked_with_another_key_fails(exported: Path) -> None:
    other = CryptoSigner.generate_ed25519().public_key
    failed(verify_export(exported, other), 10, "not by the audit key")


def test_export_resigned_by_another_key_fails(exported: Path, key: Key) -> None:
    content = lines(exported)
    head = json.loads(content[11])
    foreign = sign_head(
        CryptoSigner.generate_ed25519(), seq=12, head_hash=head["hash"], now=FORGED_AT
    )
    rewrite(exported, [*content[:-1], json.dumps({"checkpoint": foreign.to_json()}) + "\n"])
    failed(verify_export(exported, key), 12, "not by the audit key")


def test_garbage_line_in_export_is_named(exported: Path, key: Key) -> None:
    content = lines(exported)
    content[3] = "not json\n"
    rewrite(exported, content)
    failed(verify_export(exported, key), 4, "line 4 is not an audit entry")


def test_empty_file_is_not_an_export(tmp_path: Path, key: Key) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ExportFormatError, match="empty"):
        verify_export(empty, key)
