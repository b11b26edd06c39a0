"""The people-facing security cores: passwords, TOTP, secrets at rest.

Pure, like SecureDrop's two-factor module: nothing here imports Flask or the
database, and every function takes the time as a value. The callers that
persist (``update_server.auth``, ``update_server.users``) orchestrate.
"""

from update_server.mfa.passwords import PasswordPolicyError
from update_server.mfa.secretbox import SecretBox, SecretBoxError

__all__ = ["PasswordPolicyError", "SecretBox", "SecretBoxError"]
