"""Adding one person's signature to roles (threshold signing, R9).

Two engineers on two machines sign the same role files in turn; each run
adds the signatures of the keys given, verifies them at once, and leaves the
signed content untouched, so every signature is over the same bytes. Before
a key signs, the role passes the server's rules (``check_proposed``) against
what the repository already trusts, its kept versions included: a
signature never lands on a rewound role (TUF rollback).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from signer.errors import KeyNotAuthorizedError, SignerError
from signer.repository import OfflineRepository


@dataclass(frozen=True)
class SignResult:
    """``role`` now carries ``signed`` valid signatures of ``threshold``."""

    role: str
    version: int
    signed: int
    threshold: int
    keys: int


def sign_roles(repo: OfflineRepository, *, roles: Sequence[str] = ()) -> list[SignResult]:
    """Sign ``roles`` (default: every role the session's keys may sign).

    A role that already carries a valid signature by the key is left as it
    is; an empty result means there was nothing left to sign.
    """
    candidates = list(roles) or list(repo.role_names())
    results = []
    authorized = False
    for role in candidates:
        if not repo.exists(role):
            raise SignerError(f"no role {role!r} in this repository; see 'fwsign status'")
        if not repo.session_keys_for(role):
            continue
        authorized = True
        if repo.keys_to_sign(role):
            repo.check_signable(role)  # TUF rollback: never sign a rewound role
            repo.sign_available(role)
            results.append(_result(repo, role))
    if not authorized:
        target = ", ".join(roles) if roles else "any role"
        raise KeyNotAuthorizedError(
            f"none of the keys given may sign {target}; 'fwsign status' lists each role's keys"
        )
    if results:
        repo.commit()
    return results


def _result(repo: OfflineRepository, role: str) -> SignResult:
    # Report the tightest threshold: for a rotated root, the one still lacking most.
    parts = [part for _who, part in repo.signature_status(role)]
    worst = max(parts, key=lambda part: part.missing)
    return SignResult(
        role,
        repo.open(role).signed.version,
        len(worst.signed),
        worst.threshold,
        len(worst.signed) + len(worst.unsigned),
    )
