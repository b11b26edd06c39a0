"""Audit entries as RFC 5424 syslog messages, for the hospital's SIEM (R31).

``format_message`` is pure: one committed entry in, one datagram out::

    <PRI>1 TIMESTAMP HOSTNAME fwserver PROCID MSGID [fwaudit@32473 seq=".." ...] BOM MSG

Facility 13 ("log audit"); severity notice for a success, warning for a
failure or refusal, and a critical entry's own (``alerts.critical``: from
alert, 1, to warning, 4); MSGID is the action. ``SyslogSender`` delivers over UDP
(RFC 5426) or to a local datagram socket (``/dev/log``).

Invariants:

* the database is the record; syslog is a copy sent only after the commit,
  and sending never waits on the receiver or fails the action: errors are
  logged, not raised;
* header fields hold printable US-ASCII only; SD-PARAM values escape ``"``,
  ``\\`` and ``]``; control characters anywhere become U+FFFD, so a hostile
  user name cannot forge a second log line in a line-based receiver;
* a message is at most 2048 octets (what every receiver must accept), cut
  inside MSG on a UTF-8 boundary if need be.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from update_server.alerts.critical import classify, detail_of
from update_server.audit.chain import ChainedEntry, canonical_time
from update_server.config import ConfigError

logger = logging.getLogger(__name__)

FACILITY_LOG_AUDIT = 13
SEVERITY_NOTICE, SEVERITY_WARNING = 5, 4
APP_NAME = "fwserver"
SD_ID = "fwaudit@32473"
MAX_OCTETS = 2048
BOM = "\ufeff".encode()
#: Where datagrams go: a socket path, or an address from getaddrinfo.
_Peer = str | tuple[Any, ...]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def format_message(
    entry: ChainedEntry,
    *,
    hostname: str,
    procid: int | str,
    facility: int = FACILITY_LOG_AUDIT,
) -> bytes:
    """The RFC 5424 message of one audit entry."""
    severity = severity_of(entry)
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",
            canonical_time(entry.time),
            _header_field(hostname, 255),
            APP_NAME,
            _header_field(str(procid), 128),
            _header_field(entry.action, 32),
        )
    )
    params = {
        "seq": str(entry.seq),
        "actor": entry.actor,
        "role": entry.role,
        "outcome": entry.outcome,
        "object": entry.object,
        "source": entry.source,
        "hash": entry.hash,
    }
    data = "".join(f' {name}="{_param_value(value)}"' for name, value in params.items())
    text = f"{entry.actor} ({entry.role}) {entry.action} {entry.object}: {entry.outcome}"
    text += f" from {entry.source}" + ("" if entry.detail == "{}" else f" {entry.detail}")
    prefix = f"{header} [{SD_ID}{data}] ".encode() + BOM
    return prefix + _cut(_CONTROL.sub("\ufffd", text), MAX_OCTETS - len(prefix))


def severity_of(entry: ChainedEntry) -> int:
    """An alert's own severity (``alerts.critical``); else notice for a success, warning if not."""
    alert = classify(entry.action, entry.outcome, detail_of(entry.detail))
    if alert is not None:
        return int(alert.severity)
    return SEVERITY_NOTICE if entry.outcome == "success" else SEVERITY_WARNING


def _header_field(value: str, limit: int) -> str:
    """PRINTUSASCII (33 to 126), at most ``limit`` octets; NILVALUE if empty."""
    clean = "".join(char if 33 <= ord(char) <= 126 else "_" for char in value)[:limit]
    return clean or "-"


def _param_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return _CONTROL.sub("\ufffd", escaped)


def _cut(text: str, limit: int) -> bytes:
    data = text.encode()
    if len(data) <= limit:
        return data
    return data[: max(limit, 0)].decode("utf-8", "ignore").encode()


class SyslogSender:
    """Best-effort delivery to ``udp://host:port`` or a local socket path.

    Each batch (one commit's entries) goes through its own non-blocking
    socket, closed right after: nothing is shared across gunicorn's fork or
    threads, and nothing is left open. A full or absent receiver loses the
    message and logs a warning. Use an IP literal: a host name is resolved
    once, on first use, and that lookup may wait.
    """

    def __init__(self, address: str, *, hostname: str | None = None) -> None:
        self.address = address
        self._target = parse_address(address)
        self._hostname = hostname or socket.gethostname()
        self._resolved: tuple[int, int, int, _Peer] | None = None
        self._lock = threading.Lock()

    def send_entries(self, entries: Iterable[ChainedEntry]) -> None:
        """``AuditSink.committed``: one datagram per entry; never raises."""
        procid = os.getpid()
        messages = [format_message(e, hostname=self._hostname, procid=procid) for e in entries]
        try:
            family, kind, proto, peer = self._resolve()
            with socket.socket(family, kind, proto) as sock:
                sock.setblocking(False)
                for message in messages:
                    sock.sendto(message, peer)
        except OSError as exc:
            logger.warning("audit entry not delivered to syslog %s: %s", self.address, exc)

    def _resolve(self) -> tuple[int, int, int, _Peer]:
        with self._lock:
            if self._resolved is None:
                self._resolved = _resolve(self._target)
            return self._resolved


def parse_address(address: str) -> tuple[str, int] | str:
    """``udp://host:port`` as (host, port), or an absolute socket path as is."""
    if address.startswith("/"):
        return address
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or not parts.hostname or port is None or parts.path:
        raise ConfigError(
            f"syslog_address: {address!r} is neither udp://host:port nor an absolute socket path"
        )
    return parts.hostname, port


def _resolve(target: tuple[str, int] | str) -> tuple[int, int, int, _Peer]:
    if isinstance(target, str):
        return socket.AF_UNIX, socket.SOCK_DGRAM, 0, target
    host, port = target
    family, kind, proto, _name, peer = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, kind, proto, peer


def sender_for(address: str) -> SyslogSender | None:
    """The sender configured by ``syslog_address``; None when it is empty."""
    return SyslogSender(address) if address else None
