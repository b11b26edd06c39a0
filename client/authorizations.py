"""What the device keeps of technicians' authorizations: the nonces it accepted (R25).

``repo_metadata.authorization`` decides whether a document allows an
install; this module keeps what that decision needs to remember, in
``STATE/authorizations.json``, outside the metadata cache: wiping the
cache, restarting or re-provisioning nothing here forgets a nonce.

Rules:

- N1: a nonce is recorded, bound to the install it allows (target path and
  SHA-256) and with the time it may be used until (expiry plus grace), before
  any byte of that install is written (``accept``, logged first as
  ``authorization_accepted``, so a rebuild knows it); an interrupted or
  deferred install may finish with the same document within that time, no
  other install ever can. The document itself is kept with the record while
  it is bound and unused (``Store.held_with``): a device that picked it up at a
  poll still holds it at the next, after the server stopped offering it.
- N2: just before the install is marked pending, the record is marked used
  (``mark_used``, logged ``authorization_used``): the document never allows
  anything again.
- N3: a record is dropped only once its time has passed at the device's
  trusted time, which never goes back (the time floor): a replayed document
  is then refused as expired by the same rule that drops the record.
- N4 (fail closed, R33): a record file that cannot be read is rebuilt from
  the event log's ``authorization_accepted`` entries (each carries its
  record), every one marked used, and the damage is logged; an update is
  never stopped by it, and no nonce it held becomes usable again.
- Every change is written atomically under the state directory's lock
  (the caller holds it, as every writer of the state directory does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from client.errors import ClientError
from client.events import EventType
from client.state import StateDir
from fwcommon.files import atomic_write
from repo_metadata.authorization import (
    AuthorizationError,
    NonceRecord,
    SignedAuthorization,
)

logger = logging.getLogger(__name__)

FILE_NAME = "authorizations.json"
#: A document handed over as a file larger than this is refused unread.
MAX_FILE = 16 * 1024


def store_path(state: StateDir) -> Path:
    return state.root / FILE_NAME


@dataclass(frozen=True)
class Store:
    """What ``authorizations.json`` holds, read once: the records and the bound documents."""

    #: N3: those past their time are dropped.
    records: dict[str, NonceRecord]
    #: N1: the documents of records bound to an install and not used yet.
    documents: dict[str, SignedAuthorization]

    def held_with(self, given: Iterable[SignedAuthorization]) -> tuple[SignedAuthorization, ...]:
        """``given``, plus the documents bound to an install not finished yet (N1), once each."""
        held = {document.authorization.nonce: document for document in given}
        for nonce, document in self.documents.items():
            held.setdefault(nonce, document)
        return tuple(held.values())


def load(state: StateDir, *, at: datetime) -> Store:
    """The store (N3: records past their time dropped); a damaged file is rebuilt (N4)."""
    path = store_path(state)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Store({}, {})
    try:
        records, documents = _parse(raw)
    except (ValueError, KeyError, TypeError):
        records, documents = _rebuild(state), {}
        state.events.append(
            EventType.INTEGRITY_FAILURE,
            f"{FILE_NAME} could not be read; rebuilt from the event log with every accepted"
            " authorization marked used (none can be used again)",
            now=at,
            file=FILE_NAME,
            rebuilt=len(records),
        )
        _save(state, records, documents)
    kept = {nonce: r for nonce, r in records.items() if r.usable_until >= at}
    bound = {n: d for n, d in documents.items() if n in kept and kept[n].used_at is None}
    return Store(kept, bound)


def accept(
    state: StateDir,
    document: SignedAuthorization,
    *,
    at: datetime,
    store: Store,
) -> Store:
    """N1: bind ``document``'s nonce to the install it allows; log ``authorization_accepted``."""
    auth = document.authorization
    if auth.nonce in store.records:
        return store  # the same install, resumed within its grace (already logged)
    record = NonceRecord(
        nonce=auth.nonce,
        target_path=auth.target_path,
        sha256=auth.sha256,
        accepted_at=at,
        usable_until=auth.usable_until,
    )
    state.events.append(
        EventType.AUTHORIZATION_ACCEPTED,
        f"technician {auth.technician}'s authorization for {auth.target_path} accepted"
        f" (valid until {_iso(auth.expires)}, an install begun in time may finish until"
        f" {_iso(auth.usable_until)})",
        now=at,
        **_record_detail(record),
        technician=auth.technician,
        issued=_iso(auth.issued),
    )
    accepted = Store(
        {**store.records, record.nonce: record}, {**store.documents, record.nonce: document}
    )
    _save(state, accepted.records, accepted.documents)
    return accepted


def mark_used(state: StateDir, nonce: str, *, at: datetime, store: Store) -> None:
    """N2: the install this nonce allowed is being activated; the document is spent."""
    record = store.records.get(nonce)
    if record is None:
        raise ClientError(f"no accepted authorization with nonce {nonce[:16]}...")
    state.events.append(
        EventType.AUTHORIZATION_USED,
        f"the authorization for {record.target_path} is spent: its install is being activated",
        now=at,
        nonce=nonce,
        target=record.target_path,
    )
    records = {**store.records, nonce: replace(record, used_at=at)}
    _save(state, records, {n: d for n, d in store.documents.items() if n != nonce})


def read_file(path: Path) -> SignedAuthorization:
    """A document a technician handed over (``fwclient update --authorization FILE``)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise ClientError(f"cannot read the authorization {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE:
        raise ClientError(f"{path} is larger than {MAX_FILE} bytes: not an authorization")
    try:
        return SignedAuthorization.from_bytes(data)
    except AuthorizationError as exc:
        raise ClientError(f"{path} is not a valid authorization: {exc}") from None


def pick_up(
    fetch: Callable[[], list[Any]], state: StateDir, *, at: datetime
) -> list[SignedAuthorization]:
    """The documents the server holds for this device (flow 4: picked up at each poll).

    Nothing here is trusted: each document is only a candidate for policy
    rule 5. A server that cannot be reached gives none (the device keeps
    working and waits); a document that cannot be parsed is logged
    (``authorization_malformed``) and left out.
    """
    try:
        found = fetch()
    except (ClientError, OSError) as exc:
        logger.warning("no authorizations picked up: %s", exc)
        return []
    documents = []
    for item in found:
        try:
            documents.append(SignedAuthorization.from_dict(item))
        except AuthorizationError as exc:
            state.events.append(
                EventType.AUTHORIZATION_MALFORMED,
                f"an authorization the server delivered is not valid: {exc}",
                now=at,
            )
    return documents


def _record_detail(record: NonceRecord) -> dict[str, Any]:
    return {
        "nonce": record.nonce,
        "target": record.target_path,
        "sha256": record.sha256,
        "accepted_at": _iso(record.accepted_at),
        "usable_until": _iso(record.usable_until),
    }


def _parse(raw: bytes) -> tuple[dict[str, NonceRecord], dict[str, SignedAuthorization]]:
    tree = json.loads(raw)
    if not isinstance(tree, dict) or not isinstance(tree.get("nonces"), dict):
        raise TypeError("not a record file")
    out = {}
    for nonce, item in tree["nonces"].items():
        used = item["used_at"]
        out[nonce] = NonceRecord(
            nonce=nonce,
            target_path=str(item["target"]),
            sha256=str(item["sha256"]),
            accepted_at=datetime.fromisoformat(item["accepted_at"]),
            usable_until=datetime.fromisoformat(item["usable_until"]),
            used_at=None if used is None else datetime.fromisoformat(used),
        )
    documents = {}
    for nonce, item in tree.get("documents", {}).items():
        try:
            documents[nonce] = SignedAuthorization.from_dict(item)
        except AuthorizationError:
            continue  # an unreadable document is simply not kept (its record still is)
    return out, documents


def _rebuild(state: StateDir) -> dict[str, NonceRecord]:
    """N4: every accepted authorization the log remembers, marked used."""
    found: dict[str, NonceRecord] = {}
    for entry in state.events.entries():
        detail = entry.get("detail")
        if entry.get("type") != EventType.AUTHORIZATION_ACCEPTED.value or not isinstance(
            detail, dict
        ):
            continue
        try:
            accepted = datetime.fromisoformat(detail["accepted_at"])
            record = NonceRecord(
                nonce=str(detail["nonce"]),
                target_path=str(detail["target"]),
                sha256=str(detail["sha256"]),
                accepted_at=accepted,
                usable_until=datetime.fromisoformat(detail["usable_until"]),
                used_at=accepted,
            )
        except (KeyError, TypeError, ValueError):
            continue
        found[record.nonce] = record
    return found


def _save(
    state: StateDir,
    records: Mapping[str, NonceRecord],
    documents: Mapping[str, SignedAuthorization],
) -> None:
    """Write the records, and the documents of those still bound and unused (N1)."""
    unused = {n for n, r in records.items() if r.used_at is None}
    tree: dict[str, Any] = {
        "nonces": {
            nonce: {
                "target": r.target_path,
                "sha256": r.sha256,
                "accepted_at": _iso(r.accepted_at),
                "usable_until": _iso(r.usable_until),
                "used_at": None if r.used_at is None else _iso(r.used_at),
            }
            for nonce, r in sorted(records.items())
        },
        "documents": {
            nonce: document.to_dict()
            for nonce, document in sorted(documents.items())
            if nonce in unused
        },
    }
    atomic_write(store_path(state), (json.dumps(tree, indent=1) + "\n").encode(), mode=0o600)


def _iso(moment: datetime) -> str:
    return moment.isoformat()
