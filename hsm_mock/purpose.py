"""Key purposes and payload classification ("one key, one use", ANSM R47).

Pure: bytes in, a payload type out, or an exception. Invariants:

* every key has exactly one ``Purpose``; it signs only payloads whose
  top-level ``_type`` that purpose covers (``PAYLOAD_TYPES_FOR``);
* a payload must be canonical JSON (securesystemslib's ``encode_canonical``,
  the bytes TUF signs): a JSON object, no duplicate keys, no floats, and
  byte-for-byte equal to its own canonical re-encoding. Anything else, and any
  unknown ``_type``, is refused for every purpose, so the token is never a
  signing oracle for arbitrary bytes and two parsers can never disagree about
  what was signed (duplicate-key smuggling);
* ``targets`` and ``delegation`` keys both sign ``_type: targets``: the bytes of
  top-level targets and of a delegated role look alike, so the token cannot
  tell them apart. ``fwsign`` enforces that distinction when it picks the key
  for a role; the token only guarantees that neither signs root, snapshot,
  timestamp, authorizations or audit checkpoints.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from securesystemslib.formats import encode_canonical

from hsm_mock.errors import PayloadRefusedError, PurposeMismatchError


class Purpose(StrEnum):
    """The one use a key is generated for (R47)."""

    ROOT = "root"
    TARGETS = "targets"
    DELEGATION = "delegation"
    SNAPSHOT = "snapshot"
    TIMESTAMP = "timestamp"
    AUTHORIZATION = "authorization"
    AUDIT = "audit"


PAYLOAD_TYPES_FOR: dict[Purpose, frozenset[str]] = {
    Purpose.ROOT: frozenset({"root"}),
    Purpose.TARGETS: frozenset({"targets"}),
    Purpose.DELEGATION: frozenset({"targets"}),
    Purpose.SNAPSHOT: frozenset({"snapshot"}),
    Purpose.TIMESTAMP: frozenset({"timestamp"}),
    Purpose.AUTHORIZATION: frozenset({"authorization"}),
    Purpose.AUDIT: frozenset({"audit-checkpoint"}),
}
KNOWN_PAYLOAD_TYPES = frozenset().union(*PAYLOAD_TYPES_FOR.values())


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise PayloadRefusedError("payload has a duplicate JSON key")
    return dict(pairs)


def _refuse_number(text: str) -> Any:
    raise PayloadRefusedError(f"payload has a non-integer number {text!r}")


def _parse(payload: bytes) -> Any:
    try:
        return json.loads(
            payload.decode("utf-8"),
            # Canonical JSON escapes only quote and backslash: raw control
            # characters (newlines in PEM keys) are legal inside its strings.
            strict=False,
            object_pairs_hook=_refuse_duplicates,
            parse_float=_refuse_number,
            parse_constant=_refuse_number,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadRefusedError("payload is not JSON") from exc


def payload_type(payload: bytes) -> str:
    """Return the ``_type`` of a canonical JSON payload, or raise ``PayloadRefusedError``."""
    document = _parse(payload)
    if not isinstance(document, dict):
        raise PayloadRefusedError("payload is not a JSON object")
    if encode_canonical(document) != payload.decode("utf-8"):
        raise PayloadRefusedError("payload is not in canonical JSON form")
    kind = document.get("_type")
    if not isinstance(kind, str) or kind not in KNOWN_PAYLOAD_TYPES:
        raise PayloadRefusedError(f"payload _type {kind!r} is not one this token signs")
    return kind


def require_purpose(purpose: Purpose, kind: str) -> None:
    """Raise ``PurposeMismatchError`` unless a ``purpose`` key may sign a ``kind`` payload (R47)."""
    if kind not in PAYLOAD_TYPES_FOR[purpose]:
        raise PurposeMismatchError(
            f"R47 one key, one use: a {purpose.value} key may not sign a {kind!r} payload"
        )
