"""Why a bundle is not made: each a ``ServerError`` leaf, so the page and the CLI say it alike.

The page answers with the leaf's status; ``fwserver bundle`` exits 2 with its
detail. Nothing is written, issued or audited as made on any of them.
"""

from __future__ import annotations

from update_server.errors import BadRequestError, ConflictError, NotFoundError


class UnknownError(NotFoundError):
    """A model, device or release this server does not know (404)."""


class BadRootError(BadRequestError):
    """A root version the chain cannot start from (400)."""


class NothingToCarryError(ConflictError):
    """No release to carry: none signed for the model, or none the device takes (409)."""


class UnusableError(ConflictError):
    """The published repository cannot make this bundle: a file or role missing (409)."""
