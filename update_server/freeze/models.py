"""The table of the failsafe freeze: one row, the server's mode and the pending vote to leave.

One row (``id`` 1), so that every change of mode is one conditional write
under one row lock (``state``): two officers entering at once, or two votes
at once, are serialised, never both applied. No row means the server was
never frozen (normal). The history is the audit log (``freeze.*`` entries).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base
from update_server.freeze.rules import REASON_LENGTH

#: The one row's id.
ROW_ID = 1


class FreezeState(Base):
    __tablename__ = "freeze_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: ``normal`` or ``frozen`` (``rules.Mode``).
    mode: Mapped[str] = mapped_column(String(16))
    #: When the current mode began.
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Who froze the system (the current freeze, or the last one while normal).
    frozen_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH), nullable=True)
    #: The two officers who lifted the last freeze, "first,second" (None while frozen).
    lifted_by: Mapped[str | None] = mapped_column(String(130), nullable=True)
    #: The pending first vote to leave the freeze: who, and when (F2).
    vote_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vote_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
