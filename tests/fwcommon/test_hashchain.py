"""The one hash-chain core: digest, walk, and that the three logs own no chain of their own.

Every tampering of a chain (R27, R28: edit, delete, insert, reorder) is
refused by the walker at a named sequence number.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from client import events
from fwcommon import hashchain
from fwcommon.hashchain import (
    GENESIS,
    START,
    Break,
    ChainBreakError,
    ChainWalker,
    Entry,
    Link,
    compact_json,
    entry_digest,
    verify_chain,
)
from hsm_mock import usage_log
from update_server.audit import chain as audit_chain

ROOT = Path(__file__).resolve().parents[2]


def _chain(length: int) -> list[Entry]:
    entries, prev = [], GENESIS
    for seq in range(1, length + 1):
        body = {"n": seq, "text": f"entry {seq}"}
        digest = entry_digest(seq=seq, prev=prev, body=body, canonical=compact_json)
        entries.append(Entry(seq, prev, digest, body))
        prev = digest
    return entries


def test_digest_is_sha256_over_seq_prev_and_the_canonical_body() -> None:
    body = {"b": "é", "a": [1, None]}
    expected = hashlib.sha256(
        b'{"a":[1,null],"b":"\\u00e9","prev":"' + GENESIS.encode() + b'","seq":1}'
    ).hexdigest()
    assert entry_digest(seq=1, prev=GENESIS, body=body, canonical=compact_json) == expected


def test_digest_uses_the_canonical_form_it_is_given() -> None:
    def upper(document: object) -> bytes:
        return json.dumps(document, sort_keys=True).upper().encode()

    body = {"a": "x"}
    one = entry_digest(seq=1, prev=GENESIS, body=body, canonical=compact_json)
    other = entry_digest(seq=1, prev=GENESIS, body=body, canonical=upper)
    assert one != other


@pytest.mark.parametrize("name", ["seq", "prev"])
def test_a_body_holding_seq_or_prev_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must not hold 'seq' or 'prev'"):
        entry_digest(seq=1, prev=GENESIS, body={name: 1}, canonical=compact_json)


def test_an_intact_chain_walks_to_its_head() -> None:
    entries = _chain(5)
    assert verify_chain(entries, canonical=compact_json) == Link(5, entries[-1].digest)
    assert verify_chain([], canonical=compact_json) == START


def test_a_walk_may_start_after_entries_rotated_out() -> None:
    entries = _chain(5)
    start = Link(2, entries[1].digest)
    assert verify_chain(entries[2:], canonical=compact_json, start=start).seq == 5
    with pytest.raises(ChainBreakError) as broken:
        verify_chain(entries[3:], canonical=compact_json, start=start)
    assert (broken.value.seq, broken.value.kind) == (3, Break.SEQUENCE)


def _edited(entries: list[Entry]) -> list[Entry]:
    bad = entries[2]
    return [*entries[:2], Entry(bad.seq, bad.prev, bad.digest, {"n": 99}), *entries[3:]]


def _rehashed_edit(entries: list[Entry]) -> list[Entry]:
    """Entry 3 edited and its digest recomputed: entry 4 no longer follows it."""
    bad = entries[2]
    body = {"n": 99}
    digest = entry_digest(seq=3, prev=bad.prev, body=body, canonical=compact_json)
    return [*entries[:2], Entry(3, bad.prev, digest, body), *entries[3:]]


def _forged_genesis(entries: list[Entry]) -> list[Entry]:
    """A new first entry chained to a made-up start, its digest recomputed (R28)."""
    body, prev = {"n": 0}, "f" * 64
    digest = entry_digest(seq=1, prev=prev, body=body, canonical=compact_json)
    return [Entry(1, prev, digest, body), *entries[1:]]


def _no_canonical_form(entries: list[Entry]) -> list[Entry]:
    """Entry 2 holds a value the log's canonical form cannot encode (raises ValueError)."""
    bad = entries[1]
    return [entries[0], Entry(2, bad.prev, bad.digest, {"n": 1.5}), *entries[2:]]


def _integers_only(document: Mapping[str, Any]) -> bytes:
    """``compact_json`` that, like TUF's canonical JSON, has no form for a float."""
    if any(isinstance(value, float) for value in document.values()):
        raise ValueError("no canonical form for a float")
    return compact_json(document)


TAMPERING = {
    "a forged genesis (R28)": (_forged_genesis, 1, Break.LINK),
    "a value with no canonical form": (_no_canonical_form, 2, Break.DIGEST),
    "edit (R28)": (_edited, 3, Break.DIGEST),
    "edit with its digest recomputed (R28)": (_rehashed_edit, 4, Break.LINK),
    "delete (R28)": (lambda e: [*e[:2], *e[3:]], 3, Break.SEQUENCE),
    "reorder (R28)": (lambda e: [e[0], e[2], e[1], *e[3:]], 2, Break.SEQUENCE),
    "insert a copy (R28)": (lambda e: [*e[:3], e[2], *e[3:]], 4, Break.SEQUENCE),
    "a boolean sequence number": (
        lambda e: [Entry(True, e[0].prev, e[0].digest, e[0].body), *e[1:]],
        1,
        Break.SEQUENCE,
    ),
    "a float sequence number": (
        lambda e: [Entry(1.0, e[0].prev, e[0].digest, e[0].body), *e[1:]],
        1,
        Break.SEQUENCE,
    ),
}


@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_is_named_at_its_first_bad_sequence_number(name: str) -> None:
    tamper, first_bad, kind = TAMPERING[name]
    walker = ChainWalker(canonical=_integers_only)
    with pytest.raises(ChainBreakError) as broken:
        for entry in tamper(_chain(5)):
            walker.step(entry)
    assert (broken.value.seq, broken.value.kind) == (first_bad, kind)
    assert str(broken.value).startswith(f"entry {first_bad}: ")
    assert walker.head.seq == first_bad - 1  # the head is the last entry proven intact


def test_the_walker_keeps_constant_state() -> None:
    """A log of any length is checked streaming: the walker holds two links, not entries."""
    walker = ChainWalker(canonical=compact_json)
    for entry in _chain(50):
        walker.step(entry)
    assert set(vars(walker)) == {"_canonical", "head", "before"}
    assert walker.before.seq == 49


# --- one owner ------------------------------------------------------------------------

LOGS = {
    "the server's audit log": audit_chain,
    "the device's event log": events,
    "the token's usage log": usage_log,
}


def _tree(module: ModuleType) -> ast.Module:
    assert module.__file__ is not None
    return ast.parse(Path(module.__file__).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", LOGS)
def test_each_log_imports_the_one_core(name: str) -> None:
    """Done when: the genesis value and entry digest are defined in one module the logs import."""
    imported = {
        node.module
        for node in ast.walk(_tree(LOGS[name]))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        f"{node.module}.{alias.name}"
        for node in ast.walk(_tree(LOGS[name]))
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert "fwcommon.hashchain" in imported


@pytest.mark.parametrize("name", LOGS)
def test_no_log_hashes_its_chain_or_spells_a_genesis_itself(name: str) -> None:
    tree = _tree(LOGS[name])
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) if node.module
    }
    assert "hashlib" not in modules
    zeros = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch("0+", node.value)
    ]
    assert zeros == []


def test_every_genesis_the_logs_name_is_the_cores() -> None:
    assert audit_chain.GENESIS is hashchain.GENESIS
    assert events.GENESIS is hashchain.GENESIS
    assert usage_log.GENESIS.hash is hashchain.GENESIS


def test_no_other_module_defines_a_genesis() -> None:
    """The only ``GENESIS = ...`` assignment in the product is the core's."""
    owners = []
    for package in ("fwcommon", "repo_metadata", "hsm_mock", "signer", "update_server", "client"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if any(isinstance(t, ast.Name) and t.id == "GENESIS" for t in targets):
                        owners.append(path.relative_to(ROOT).as_posix())
    assert owners == ["fwcommon/hashchain.py", "hsm_mock/usage_log.py"]
    assert "hashchain.GENESIS" in (ROOT / "hsm_mock/usage_log.py").read_text(encoding="utf-8")
