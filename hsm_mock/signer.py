"""The token as a securesystemslib ``Signer`` with its own URI scheme.

URI format: ``fwhsm:<percent-quoted absolute token path>?label=<label>``, for
example ``fwhsm:/srv/tokens/release%201?label=targets-2026``. Importing
``hsm_mock`` registers the scheme in ``SIGNER_FOR_URI_SCHEME``, so callers
sign through ``Signer.from_priv_key_uri`` and a real PKCS#11 token
(``hsm:`` URIs, ``HSMSigner``) is only a configuration change.

The user PIN is asked through the secrets handler (with
``SECRETS_HANDLER_MSG``) on the first ``sign``, not before; the session it
opens is kept in the signer, like a PKCS#11 session, for later signatures.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode

from securesystemslib.signer import (
    SIGNER_FOR_URI_SCHEME,
    Key,
    SecretsHandler,
    Signature,
    Signer,
    SSlibKey,
)

from hsm_mock._store import check_label
from hsm_mock.errors import InvalidURIError, KeyMismatchError, TokenError
from hsm_mock.token import Session, Token

SCHEME = "fwhsm"


def private_key_uri(token_dir: Path | str, label: str) -> str:
    """Return the ``fwhsm:`` URI of key ``label`` on the token at ``token_dir``."""
    path = Path(token_dir).absolute()
    return f"{SCHEME}:{quote(str(path))}?{urlencode({'label': check_label(label)})}"


def parse_uri(uri: str) -> tuple[Path, str]:
    """Return (absolute token path, label) of a ``fwhsm:`` URI; ``InvalidURIError`` if bad."""
    scheme, colon, rest = uri.partition(":")
    if scheme != SCHEME or not colon:
        raise InvalidURIError(f"not a {SCHEME}: URI: {uri!r}")
    quoted_path, _, query = rest.partition("?")
    path = unquote(quoted_path)
    if not path.startswith("/"):
        raise InvalidURIError(f"{SCHEME}: URI must name an absolute token path: {uri!r}")
    try:
        params = parse_qs(query, strict_parsing=True)
    except ValueError as exc:
        raise InvalidURIError(f"{SCHEME}: URI has a malformed query: {uri!r}") from exc
    labels = params.pop("label", [])
    if params or len(labels) != 1:
        raise InvalidURIError(f"{SCHEME}: URI needs exactly one ?label= and nothing else: {uri!r}")
    try:
        return Path(path), check_label(labels[0])
    except TokenError as exc:
        raise InvalidURIError(str(exc)) from exc


def public_key_from_uri(uri: str) -> SSlibKey:
    """Read the public key a ``fwhsm:`` URI names from its token (no PIN needed)."""
    path, label = parse_uri(uri)
    return Token.open(path).public_key(label)


def _same_key(first: SSlibKey, second: SSlibKey) -> bool:
    return (first.keytype, first.scheme, first.keyval) == (
        second.keytype,
        second.scheme,
        second.keyval,
    )


class MockHSMSigner(Signer):
    """Signs with one key of a software token; the private key never leaves it.

    Invariants: the public key given at construction is the token's key for
    the label (else ``KeyMismatchError``); every ``sign`` goes through the
    token's checks (lockout, R47 purpose, usage log) and the signature carries
    the caller's ``public_key.keyid``.
    """

    SCHEME = SCHEME
    SECRETS_HANDLER_MSG = "user PIN"

    def __init__(
        self,
        token: Token,
        label: str,
        public_key: SSlibKey,
        secrets_handler: SecretsHandler,
    ) -> None:
        self._token = token
        self._label = label
        self._public_key = public_key
        self._secrets_handler = secrets_handler
        self._session: Session | None = None

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> MockHSMSigner:
        if not isinstance(public_key, SSlibKey):
            raise KeyMismatchError(f"expected an SSlibKey for {priv_key_uri}")
        if secrets_handler is None:
            raise InvalidURIError(f"{SCHEME}: signer needs a secrets handler for the user PIN")
        path, label = parse_uri(priv_key_uri)
        token = Token.open(path)
        if not _same_key(token.public_key(label), public_key):
            raise KeyMismatchError(f"key {label!r} on {path} is not the public key given")
        return cls(token, label, public_key, secrets_handler)

    @property
    def public_key(self) -> SSlibKey:
        return self._public_key

    def sign(self, payload: bytes) -> Signature:
        """Sign ``payload`` on the token; log in with the user PIN on first use."""
        raw = self._login().sign(label=self._label, payload=payload)
        return Signature(self._public_key.keyid, raw.hex())

    def _login(self) -> Session:
        if self._session is None:
            self._session = self._token.login(self._secrets_handler(self.SECRETS_HANDLER_MSG))
        return self._session


SIGNER_FOR_URI_SCHEME[SCHEME] = MockHSMSigner
