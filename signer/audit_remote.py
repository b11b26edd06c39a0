"""``fwsign audit verify``: check the server's audit log from a workstation (R27, R28).

An auditor (or a security officer) logs in to the server and checks its log
with the audit public key they hold, trusting nothing the server says about
it: not its verdict, not its key.

RV1 The signed heads are fetched first (``GET /api/v1/audit/verify``: its
    latest good checkpoint and the head anchored outside the database, each
    a signed payload); the server's ``ok``, ``first_bad`` and ``reason`` are
    never read. Then every entry from the first (``GET /api/v1/audit``,
    ``PAGE`` at a time, each parsed strictly as the export's entries are),
    so the entries always reach the heads fetched.
RV2 The check is ``audit.checkpoint.verify_log``, the one used on the
    server and on exports, with the key given on the command line: the
    chain from entry 1, each signed head's signature and that the chain
    holds it. A log with entries and no anchored head is not intact (a cut
    after the last checkpoint would not show), as on the server.
RV3 The answer says how many entries, up to which entry signed and when,
    by which key; or the first bad entry and why. Exit 0 when intact, 1 when
    not; a server that cannot be read (refused login, TLS, a malformed
    answer) is an error, exit 1 with its message.

What this cannot see: a server that shows an older signed head and cuts
the log after it. The heads' signing times are printed for that reason;
the syslog copy (R31) is the witness of what came after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from securesystemslib.signer import Key

from signer.errors import SignerError
from signer.publish import PublishError, ServerSession
from signer.publish_cli import login_credentials, server_options
from update_server.audit.chain import EntryRecord, canonical_time
from update_server.audit.checkpoint import AuditReport, SignedCheckpoint, verify_log
from update_server.audit.errors import CheckpointError
from update_server.audit.export import entry_from_json
from update_server.audit.public_key import load_public_key

#: Entries per request (the API's most).
PAGE = 1000


class AuditReader(ServerSession):
    """RV1: the server's log and its signed heads, as plain data."""

    def signed_heads(self) -> tuple[SignedCheckpoint | None, SignedCheckpoint | None]:
        """The checkpoint and the anchored head the server shows (signatures checked later)."""
        answer = self._json("GET", "/audit/verify")
        return _signed(answer.get("checkpoint"), "checkpoint"), _signed(
            answer.get("anchor"), "anchor"
        )

    def entries(self, *, page: int = PAGE) -> Iterator[EntryRecord]:
        after = 0
        while True:
            answer = self._json("GET", f"/audit?after={after}&limit={page}")
            rows = answer.get("entries")
            if not isinstance(rows, list):
                raise PublishError("GET /audit: the server's answer has no list of entries")
            for row in rows:
                try:
                    entry = entry_from_json(row)
                except ValueError as exc:
                    raise PublishError(
                        f"GET /audit: an entry after {after} is malformed: {exc}"
                    ) from None
                after = entry.seq
                yield entry
            if len(rows) < page:
                return


def _signed(obj: Any, what: str) -> SignedCheckpoint | None:
    if obj is None:
        return None
    try:
        return SignedCheckpoint.from_json(obj)
    except (ValueError, TypeError, AttributeError) as exc:
        raise PublishError(f"the server's {what} is not a signed audit head: {exc}") from None


def check_server_log(reader: AuditReader, key: Key) -> AuditReport:
    """RV1, RV2: the server's log checked here, with ``key``."""
    checkpoint, anchor = reader.signed_heads()
    report = verify_log(reader.entries(), [checkpoint] if checkpoint else [], key, anchor=anchor)
    if anchor is not None or not report.ok or report.head_seq == 0:
        return report
    after = report.checkpoint.seq if report.checkpoint else 0
    return replace(
        report,
        first_bad=after + 1,
        reason=(
            "the server shows no head anchored outside its database: a cut of the entries "
            f"after entry {after} would not show"
        ),
        warnings=(),
    )


@click.group("audit")
def audit_group() -> None:
    """Check the update server's audit log with the audit public key you hold."""


@audit_group.command("verify")
@server_options
@click.option(
    "--public-key",
    "key_ref",
    required=True,
    help="The audit public key you hold: key JSON (fwhsm export-public), PEM or token URI.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify_command(
    ctx: click.Context, *, server: str, ca: Path, user: str, key_ref: str, as_json: bool
) -> None:
    """Download the server's audit log and check its hash chain and signed heads here.

    Logs in as an auditor or a security officer (password from env
    FWSIGN_PASSWORD, code from env FWSIGN_OTP, else asked), reads every
    entry and the signed heads, and checks them with --public-key: the
    server's own verdict is not used. Exit status 0 when intact, 1 when not
    (the first bad entry and why on stderr).
    """
    try:
        key = load_public_key(key_ref)
    except CheckpointError as exc:
        raise SignerError(f"--public-key: {exc}") from None
    reader = AuditReader(server, ca=ca)
    try:
        reader.login(login_credentials(user))
        report = check_server_log(reader, key)
        reader.logout()
    finally:
        reader.close()
    _show(report, key, as_json=as_json)
    if not report.ok:
        ctx.exit(1)


def _show(report: AuditReport, key: Key, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**report.to_json(), "key": key.keyid}, indent=2))
        return
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(report.summary(), err=not report.ok)
    for name, head in (("checkpoint", report.checkpoint), ("anchored head", report.anchor)):
        if head is not None:
            signed = canonical_time(head.time)
            click.echo(f"  {name}: entry {head.seq}, signed {signed} by key {head.keyid}")
    click.echo(f"  checked with the audit key {key.keyid}")
