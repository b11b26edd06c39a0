"""The head anchored outside the database (R27, R28), on both databases.

The story of the issue: the default cadence signs a checkpoint at entry 100;
128 entries later someone deletes the newest ones from the database, and
``fwserver audit verify`` must name the cut. Then what keeps the anchor
honest: several workers writing it at once, a late writer, a damaged file.
"""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from securesystemslib.signer import CryptoSigner
from sqlalchemy import text

from tests.clocks import RUN_START
from update_server.app import build_services
from update_server.audit import Event, append, bind_sessions
from update_server.audit.anchor import anchor_file, raise_anchor, read_anchor
from update_server.audit.checkpoint import AuditReport, sign_head, verify_database
from update_server.audit.public_key import audit_public_key
from update_server.audit.store import head
from update_server.cli import main
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.keys import signer_loader

CADENCE, ENTRIES = 100, 128
WORKERS, PER_WORKER = 3, 6


def event(number: int, now: datetime, actor: str = "dave") -> Event:
    return Event(
        time=now,
        actor=actor,
        role="release_manager",
        action="release.publish",
        object=f"targets v{number}",
        outcome="success",
        source="192.0.2.44",
    )


def run_verify(config: ServerConfig) -> Result:
    env = {"FWSERVER_AUDIT_CHECKPOINT_EVERY": str(CADENCE), "FWSERVER_DATA_DIR": None}
    args = ["audit", "verify", "--data-dir", str(config.data_dir)]
    return CliRunner().invoke(main, args, env=env)


def verify(app: Flask, config: ServerConfig) -> AuditReport:
    anchor = read_anchor(anchor_file(config.data_dir))
    with app.extensions["fw"].sessions() as db:
        return verify_database(db, audit_public_key(config), anchor=anchor, every=CADENCE)


@pytest.fixture
def config(config: ServerConfig) -> ServerConfig:
    return config.with_changes(audit_checkpoint_every=CADENCE)


@pytest.fixture
def log(app: Flask, config: ServerConfig) -> Flask:
    """128 entries written by one batch: checkpoint at 100, head 128 anchored at commit."""
    services = app.extensions["fw"]
    with transaction(services.sessions) as db:
        for number in range(1, ENTRIES + 1):
            append(db, event(number, services.clock()))
    return app


def test_deleting_the_newest_entries_is_named_by_fwserver_audit_verify_r27_r28(
    log: Flask, config: ServerConfig
) -> None:
    """R27/R28: a cut tail after the last checkpoint (3 entries, then all 28) is named.

    The old verify walked 1 to 125 (or 100), found the checkpoint at 100
    held, and said "intact".
    """
    intact = run_verify(config)
    assert intact.exit_code == 0, intact.output
    assert "128 entries, signed up to entry 100, head anchored at entry 128" in intact.output

    cuts = {126: "entries 126 to 128 are missing", 101: "entries 101 to 128 are missing"}
    for first, missing in cuts.items():
        with log.extensions["fw"].engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_log WHERE seq >= :first"), {"first": first})
        result = run_verify(config)
        assert result.exit_code == 1, result.output
        assert f"audit log NOT intact: first bad entry {first}: log truncated" in result.stderr
        assert "the head anchored outside the database at entry 128" in result.stderr
        assert missing in result.stderr


def _worker(data_dir: str, worker: int) -> None:
    """One gunicorn worker's worth of requests, in its own process and engine."""
    config = ServerConfig.load(Path(data_dir))
    services = build_services(config, clock=lambda: RUN_START, signer_loader=signer_loader(config))
    bind_sessions(services.sessions, config, lambda: services.signer("audit"))
    try:
        for number in range(PER_WORKER):
            with transaction(services.sessions) as db:
                append(db, event(number, services.clock(), actor=f"worker{worker}"))
    finally:
        services.engine.dispose()


def test_concurrent_workers_leave_the_anchor_at_the_head_r28(
    app: Flask, config: ServerConfig
) -> None:
    """Several processes append and anchor at once: the anchor ends at the log's head.

    Each commit anchors its own head after the database lock is released,
    so workers race to write the file: the lock file serialises them and a
    head older than the anchored one is never written back.
    """
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(str(config.data_dir), worker))
        for worker in range(WORKERS)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * WORKERS
    with app.extensions["fw"].sessions() as db:
        head_seq, head_hash = head(db)
    anchored = read_anchor(anchor_file(config.data_dir))
    assert anchored is not None
    assert (head_seq, anchored.seq, anchored.head_hash) == (
        WORKERS * PER_WORKER,
        head_seq,
        head_hash,
    )
    report = verify(app, config)
    assert (report.ok, report.warnings) == (True, ())
    assert not list(config.data_dir.glob(f".{anchor_file(config.data_dir).name}.*"))


def test_a_late_writer_never_moves_the_anchor_back_r28(app: Flask, config: ServerConfig) -> None:
    """A worker that signed head 3 but writes after head 5 was anchored leaves 5 in place."""
    services = app.extensions["fw"]
    for number in range(1, 6):
        with transaction(services.sessions) as db:
            append(db, event(number, services.clock()))
    path = anchor_file(config.data_dir)
    before = path.read_bytes()
    with services.sessions() as db:
        _seq, third = db.execute(text("SELECT seq, hash FROM audit_log WHERE seq = 3")).one()
    late = sign_head(services.signer("audit"), seq=3, head_hash=third, now=services.clock())
    assert raise_anchor(path, late) is False
    assert path.read_bytes() == before
    assert json.loads(before)["seq"] == 5


def test_a_damaged_anchor_fails_verify_r28(log: Flask, config: ServerConfig) -> None:
    """An anchor that cannot be read is not a missing one: verify says which file and exits 1."""
    anchor_file(config.data_dir).write_text('{"seq": 128}')
    result = run_verify(config)
    assert result.exit_code == 1
    assert f"the head anchor {anchor_file(config.data_dir)} is damaged" in result.stderr


def test_a_forged_anchor_over_a_cut_tail_is_refused_r28(log: Flask, config: ServerConfig) -> None:
    """A shorter head anchored with a key that is not the audit key does not hide a cut."""
    services = log.extensions["fw"]
    with services.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq > 120"))
    with services.sessions() as db:
        seq, hash_120 = head(db)
    later = services.clock() + timedelta(minutes=1)
    forged = sign_head(CryptoSigner.generate_ed25519(), seq=seq, head_hash=hash_120, now=later)
    anchor_file(config.data_dir).write_text(json.dumps(forged.to_json()))
    result = run_verify(config)
    assert result.exit_code == 1
    assert "first bad entry 120" in result.stderr
    assert "not by the audit key" in result.stderr
