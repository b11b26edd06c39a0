"""A software HSM for the firmware signing system.

Keys are generated inside a token directory, sealed at rest under a key
derived from the PIN (Argon2id, AES-GCM), used for exactly one purpose
(ANSM R47) and never exported. Every use lands in the token's hash-chained
usage log. Importing this package registers the ``fwhsm:`` private key URI
scheme with securesystemslib, so callers sign with::

    Signer.from_priv_key_uri("fwhsm:/path/to/token?label=L", public_key, handler)
"""

from hsm_mock._crypto import Algorithm, KdfParams
from hsm_mock.purpose import Purpose
from hsm_mock.signer import (
    SCHEME,
    MockHSMSigner,
    parse_uri,
    private_key_uri,
    public_key_from_uri,
)
from hsm_mock.token import MAX_PIN_ATTEMPTS, MIN_PIN_LENGTH, KeyInfo, Role, Session, Token

__all__ = [
    "MAX_PIN_ATTEMPTS",
    "MIN_PIN_LENGTH",
    "SCHEME",
    "Algorithm",
    "KdfParams",
    "KeyInfo",
    "MockHSMSigner",
    "Purpose",
    "Role",
    "Session",
    "Token",
    "parse_uri",
    "private_key_uri",
    "public_key_from_uri",
]
