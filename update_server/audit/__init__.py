"""The server's tamper-evident audit log (R27, R28, R31)."""

from update_server.audit.chain import Event, verify_chain
from update_server.audit.store import append

__all__ = ["Event", "append", "verify_chain"]
