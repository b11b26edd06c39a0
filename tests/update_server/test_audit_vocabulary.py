"""One audit vocabulary: the field list is defined once, one builder makes every event.

The next issues add audit events by adding ``Action`` members: these tests
show such a name needs no code, and that no copy of the field list can drift
from ``vocabulary.FIELDS`` (the hashed fields, the export, the table).
"""

from __future__ import annotations

import ast
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import String, Text

from tests.clocks import RUN_START
from update_server import users
from update_server.audit import export, vocabulary
from update_server.audit.actions import Action
from update_server.audit.chain import (
    GENESIS,
    ChainedEntry,
    EntryRecord,
    entry_hash,
    event_fields,
    verify_chain,
)
from update_server.audit.vocabulary import (
    ENTRY_COLUMNS,
    FIELD_NAMES,
    FIELDS,
    Actor,
    Event,
    Outcome,
    audit_event,
)
from update_server.models import AuditEntry
from update_server.publication import publish

SERVER = Path(__file__).resolve().parents[2] / "update_server"
ALICE = Actor(name="alice", role="release_manager", source="192.0.2.7")


def test_export_and_chain_read_the_one_field_list() -> None:
    assert export.COLUMNS is ENTRY_COLUMNS
    assert ("seq", "time", *FIELD_NAMES, "prev_hash", "hash") == ENTRY_COLUMNS


def test_the_audit_table_has_the_field_lists_columns_in_its_order() -> None:
    """Schema unchanged: the table's columns and lengths are what ``FIELDS`` says."""
    assert tuple(AuditEntry.__table__.columns.keys()) == ENTRY_COLUMNS
    for spec in FIELDS:
        column_type = AuditEntry.__table__.c[spec.name].type
        if spec.length is None:
            assert isinstance(column_type, Text), spec.name
        else:
            assert isinstance(column_type, String), spec.name
            assert column_type.length == spec.length, spec.name


def test_the_typed_declarations_follow_the_field_list() -> None:
    assert tuple(f.name for f in dataclasses.fields(Event)) == ("time", *FIELD_NAMES)
    assert tuple(f.name for f in dataclasses.fields(EntryRecord)) == ENTRY_COLUMNS
    properties = tuple(
        name for name, value in vars(ChainedEntry).items() if isinstance(value, property)
    )
    assert properties == ENTRY_COLUMNS


def _name(node: ast.expr | None) -> str | None:
    """A string literal, or the first argument of a call (``Field("actor", 64)``)."""
    if isinstance(node, ast.Call) and node.args:
        node = node.args[0]
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _literals(tree: ast.AST) -> list[set[str]]:
    """The names in every tuple, list, set and dict-key literal in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            found.append({name for item in node.elts if (name := _name(item))})
        elif isinstance(node, ast.Dict):
            found.append({name for item in node.keys if (name := _name(item))})
    return found


def test_no_module_but_the_vocabulary_writes_the_field_list_out() -> None:
    spelled = []
    for path in sorted(SERVER.rglob("*.py")):
        for strings in _literals(ast.parse(path.read_text(encoding="utf-8"))):
            if set(FIELD_NAMES) <= strings:
                spelled.append(path.relative_to(SERVER).as_posix())
    assert spelled == ["audit/vocabulary.py"]


def test_one_builder_fills_every_field_from_an_actor() -> None:
    event = audit_event(
        Action.LOGIN,
        actor=ALICE,
        object="user:alice",
        outcome=Outcome.SUCCESS,
        time=RUN_START,
        detail={"n": 1},
    )
    assert event_fields(event) == {
        "actor": "alice",
        "role": "release_manager",
        "action": "login",
        "object": "user:alice",
        "outcome": "success",
        "source": "192.0.2.7",
        "detail": '{"n":1}',
    }
    assert list(event_fields(event)) == list(FIELD_NAMES)


def test_users_actor_is_the_audit_actor() -> None:
    assert users.Actor is vocabulary.Actor
    assert publish.Actor is vocabulary.Actor


def _callee(call: ast.Call) -> str:
    """A call's callee as written: ``Event``, ``audit.Event``, ``threading.Event``."""
    return ast.unparse(call.func)


def _server_trees() -> list[tuple[str, ast.AST]]:
    return [
        (path.relative_to(SERVER).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(SERVER.rglob("*.py"))
    ]


def test_only_the_vocabulary_constructs_an_event() -> None:
    """Every audit event comes from ``audit_event``: no module builds ``Event`` itself."""
    built = sorted(
        f"{module}:{node.lineno}"
        for module, tree in _server_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and _callee(node).rpartition(".")[2] == "Event"
        and _callee(node) != "threading.Event"
    )
    assert [where.partition(":")[0] for where in built] == ["audit/vocabulary.py"], built


def test_only_the_vocabulary_declares_an_actor_class() -> None:
    """One ``Actor`` for the audit trail; other modules may only alias it."""
    declared = [
        module
        for module, tree in _server_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "Actor"
    ]
    assert declared == ["audit/vocabulary.py"]


def _chained(events: list[Event]) -> list[EntryRecord]:
    records, prev = [], GENESIS
    for seq, event in enumerate(events, start=1):
        fields = event_fields(event)
        digest = entry_hash(seq=seq, prev_hash=prev, time=event.time, fields=fields)
        records.append(EntryRecord(seq=seq, time=event.time, prev_hash=prev, hash=digest, **fields))
        prev = digest
    return records


def test_every_action_is_an_event_the_chain_takes_with_no_code_of_its_own() -> None:
    """A new ``Action`` member is all a new kind of audit event needs."""
    events = [
        audit_event(
            action,
            actor=ALICE,
            object="obj",
            outcome=Outcome.SUCCESS,
            time=RUN_START + timedelta(seconds=n),
        )
        for n, action in enumerate(Action)
    ]
    report = verify_chain(_chained(events))
    assert (report.ok, report.head_seq) == (True, len(Action))


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_the_hash_covers_every_field(name: str) -> None:
    """R28: an edit to any field of the list breaks the chain at that entry."""
    event = audit_event(
        Action.PUBLISH, actor=ALICE, object="targets", outcome=Outcome.SUCCESS, time=RUN_START
    )
    records = _chained([event, event])
    edited = dataclasses.replace(records[0], **{name: "edited"})
    report = verify_chain([edited, records[1]])
    assert report.first_bad == 1
