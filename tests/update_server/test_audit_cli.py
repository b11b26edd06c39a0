"""``fwserver audit``: verify, export, checkpoint from the command line (R27, R28, R61)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import make_url, select, text

from tests.clocks import FakeClock
from tests.update_server.audit_events import append_events
from update_server.audit import Event
from update_server.audit.public_key import audit_public_key
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.models import AuditEntry

EVERY, ENTRIES = 5, 8


@pytest.fixture
def config(config: ServerConfig) -> ServerConfig:
    return config.with_changes(audit_checkpoint_every=EVERY)


@pytest.fixture
def log(app: Flask) -> Flask:
    def publication(number: int, now: datetime) -> Event:
        return Event(
            time=now,
            actor="dave",
            role="release_manager",
            action="release.publish",
            object=f"targets v{number}",
            outcome="success",
            source="192.0.2.44",
        )

    append_events(app, range(1, ENTRIES + 1), publication)
    return app


def run(config: ServerConfig, *args: str) -> Result:
    env = {"FWSERVER_AUDIT_CHECKPOINT_EVERY": str(EVERY), "FWSERVER_DATA_DIR": None}
    return CliRunner().invoke(main, ["audit", *args, "--data-dir", str(config.data_dir)], env=env)


def actions(app: Flask) -> list[str]:
    with app.extensions["fw"].sessions() as db:
        return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def tamper(app: Flask, statement: str) -> None:
    with app.extensions["fw"].engine.begin() as connection:
        connection.execute(text(statement))


def test_verify_intact_log_exits_0(log: Flask, config: ServerConfig) -> None:
    result = run(config, "verify")
    assert result.exit_code == 0, result.output
    assert "audit log intact: 8 entries, signed up to entry 5" in result.output


def test_verify_edited_log_exits_1_naming_the_first_bad_entry(
    log: Flask, config: ServerConfig
) -> None:
    tamper(log, "UPDATE audit_log SET object = 'targets v99' WHERE seq = 3")
    result = run(config, "verify")
    assert result.exit_code == 1
    assert "audit log NOT intact: first bad entry 3: content altered" in result.stderr


def test_verify_truncated_log_exits_1(log: Flask, config: ServerConfig) -> None:
    tamper(log, "DELETE FROM audit_log WHERE seq >= 4")
    result = run(config, "verify")
    assert result.exit_code == 1
    assert "first bad entry 4: log truncated" in result.stderr


def test_verify_json_report(log: Flask, config: ServerConfig) -> None:
    result = run(config, "verify", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0
    assert (report["ok"], report["entries"], report["first_bad"]) == (True, ENTRIES, None)
    assert report["checkpoint"]["seq"] == 5


def test_checkpoint_command_signs_the_head_and_records_itself(
    log: Flask, config: ServerConfig
) -> None:
    result = run(config, "checkpoint")
    assert result.exit_code == 0, result.output
    assert f"signed the head at entry {ENTRIES + 1}" in result.output
    assert actions(log)[-1] == "audit.checkpoint"
    assert f"signed up to entry {ENTRIES + 1}" in run(config, "verify").output


def test_export_then_verify_offline_with_key_file_or_uri_r61(
    log: Flask, config: ServerConfig, tmp_path: Path
) -> None:
    output = tmp_path / "backup" / "audit.jsonl"
    output.parent.mkdir()
    result = run(config, "export", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert f"exported {ENTRIES + 1} entries to {output}, signed up to entry {ENTRIES + 1}" in (
        result.output
    )
    assert json.loads(output.read_text().splitlines()[-2])["action"] == "audit.export"

    key = audit_public_key(config)
    key_file = tmp_path / "audit.pub.json"
    key_file.write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}))
    for key_ref in (str(key_file), config.online_keys["audit"]):
        checked = CliRunner().invoke(
            main, ["audit", "verify", "--export", str(output), "--key", key_ref]
        )
        assert checked.exit_code == 0, checked.output
        assert f"audit log intact: {ENTRIES + 1} entries" in checked.output
    assert run(config, "verify", "--export", str(output)).exit_code == 0


def test_tampered_export_fails_offline(log: Flask, config: ServerConfig, tmp_path: Path) -> None:
    output = tmp_path / "audit.jsonl"
    assert run(config, "export", "--output", str(output)).exit_code == 0
    content = output.read_text().splitlines(keepends=True)
    content[1] = content[1].replace("targets v2", "targets v20")
    output.write_text("".join(content))
    result = run(config, "verify", "--export", str(output))
    assert result.exit_code == 1
    assert "first bad entry 2: content altered" in result.stderr


def test_export_without_fresh_checkpoint(log: Flask, config: ServerConfig, tmp_path: Path) -> None:
    output = tmp_path / "audit.jsonl"
    result = run(config, "export", "--no-checkpoint", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "signed up to entry 5" in result.output


def test_a_directory_that_is_not_a_data_dir_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a server data directory" in result.stderr


def test_a_bad_key_file_is_refused(log: Flask, config: ServerConfig, tmp_path: Path) -> None:
    output, bad_key = tmp_path / "audit.jsonl", tmp_path / "key.json"
    assert run(config, "export", "--output", str(output)).exit_code == 0
    bad_key.write_text('{"keytype": "ed25519"}')
    result = CliRunner().invoke(
        main, ["audit", "verify", "--export", str(output), "--key", str(bad_key)]
    )
    assert result.exit_code == 1
    assert "not a public key file" in result.stderr


def test_a_replayed_code_entry_verifies_and_exports_r25(
    log: Flask, config: ServerConfig, tmp_path: Path
) -> None:
    """R25, R27: a replay is an outcome of its own that ``verify`` and ``export`` accept."""

    def replay(_number: int, now: datetime) -> Event:
        detail = {"reason": "one-time code replayed"}
        return Event(
            time=now,
            actor="dave",
            role="release_manager",
            action="login",
            object="user:dave",
            outcome="replay",
            source="192.0.2.44",
            detail=detail,
        )

    append_events(log, range(1), replay)
    assert run(config, "verify").exit_code == 0
    output = tmp_path / "audit.jsonl"
    assert run(config, "export", "--output", str(output)).exit_code == 0
    exported = [json.loads(line) for line in output.read_text().splitlines()[:-1]]
    assert [entry["outcome"] for entry in exported].count("replay") == 1
    assert run(config, "verify", "--export", str(output)).exit_code == 0


def run_at(clock: FakeClock, config: ServerConfig, *args: str, database_url: str = "") -> Result:
    """``run`` on the test's clock (and, if given, another URL of the database)."""
    env = {"FWSERVER_AUDIT_CHECKPOINT_EVERY": str(EVERY), "FWSERVER_DATA_DIR": None}
    if database_url:
        env["FWSERVER_DATABASE_URL"] = database_url
    return CliRunner().invoke(
        main,
        ["audit", *args, "--data-dir", str(config.data_dir)],
        env=env,
        obj=CommandClock(clock),
    )


def refusal_flood(app: Flask, clock: FakeClock, config: ServerConfig) -> None:
    """Five requests without a session, then nothing until their window has ended."""
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/audit").status_code == 401
    clock.advance(seconds=config.refusal_audit_window.total_seconds())


def refusal_counts(app: Flask) -> list[int]:
    with app.extensions["fw"].sessions() as db:
        rows = db.scalars(
            select(AuditEntry.detail)
            .where(AuditEntry.action == "access.refused")
            .order_by(AuditEntry.seq)
        )
        return [json.loads(detail)["count"] for detail in rows]


def test_a_refusal_flood_on_a_quiet_server_is_in_what_audit_verify_checks_r27(
    app: Flask, clock: FakeClock, config: ServerConfig
) -> None:
    """R27: the count of a window that ended with no request after it is appended, then checked."""
    refusal_flood(app, clock, config)
    result = run_at(clock, config, "verify", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert refusal_counts(app) == [1, 4]
    assert (report["ok"], report["entries"], report["warnings"]) == (True, 2, [])
    assert report["anchor"]["seq"] == 2  # appended like the server's: anchored


def test_a_refusal_flood_on_a_quiet_server_is_in_the_export_r27(
    app: Flask, clock: FakeClock, config: ServerConfig, tmp_path: Path
) -> None:
    """R27: ``audit export`` appends the ended window's count before it writes the log."""
    refusal_flood(app, clock, config)
    output = tmp_path / "audit.jsonl"
    assert run_at(clock, config, "export", "--output", str(output)).exit_code == 0
    exported = [json.loads(line) for line in output.read_text().splitlines()[:-1]]
    assert [(entry["action"], entry["outcome"]) for entry in exported] == [
        ("access.refused", "refused"),
        ("access.refused", "refused"),
        ("audit.export", "success"),
    ]
    assert json.loads(exported[1]["detail"])["count"] == 4
    assert run_at(clock, config, "verify", "--export", str(output)).exit_code == 0


def test_audit_verify_writes_nothing_while_no_refusal_window_has_ended(
    app: Flask, clock: FakeClock, config: ServerConfig
) -> None:
    """``verify`` still only reads when there is no count to audit (a window still open)."""
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/audit").status_code == 401
    assert run_at(clock, config, "verify").exit_code == 0
    assert refusal_counts(app) == [1]
    clock.advance(seconds=config.refusal_audit_window.total_seconds())
    assert run_at(clock, config, "verify").exit_code == 0
    assert refusal_counts(app) == [1, 2]


def read_only(url: str) -> str:
    """The same database opened read-only, as a copy given to an auditor is."""
    if url.startswith("sqlite"):
        return f"sqlite:///file:{make_url(url).database}?mode=ro&uri=true"
    return url.replace("options=", "options=-cdefault_transaction_read_only%3Don%20", 1)


def test_audit_verify_of_a_read_only_copy_names_the_counts_it_could_not_append_r27(
    app: Flask, clock: FakeClock, config: ServerConfig
) -> None:
    """R27: a count that cannot be appended is a warning; the check itself goes on."""
    refusal_flood(app, clock, config)
    result = run_at(clock, config, "verify", database_url=read_only(config.database_url))
    assert result.exit_code == 0, result.output
    assert "audit log intact: 1 entry" in result.output
    assert (
        "fwserver: warning: refusal counts whose window has ended are not in the log"
        in result.stderr
    )
    assert refusal_counts(app) == [1]


@pytest.mark.parametrize("command", ["verify", "export"])
def test_audit_help_names_the_data_dirs_variable_once(command: str) -> None:
    result = CliRunner().invoke(main, ["audit", command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.count("FWSERVER_DATA_DIR") == 1
