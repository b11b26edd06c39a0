"""``fwserver sbom match``: the published releases and devices that run a vulnerable component.

Thin over ``update_server.sbom`` (R41: the components of each release are
known and checked against advisories; R56: the devices that run an
affected release are found, to move them to a fixed one). The advisories
file is read first: a file outside the supported OSV subset exits 2 before
anything else is opened. Then each published release's SBOM, verified
against the signed targets metadata (``inventory`` I2), and the registry's
devices, in one read-only transaction. Nothing is changed, so nothing is
audited (like ``fwserver device list``). Exit status: ``report`` R3.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fwcommon.cli import say
from update_server.cli_common import command_now, data_dir_option, database, load_config
from update_server.publication.errors import PublicationError
from update_server.publication.repository import OnlineRepository
from update_server.sbom import matching
from update_server.sbom.advisories import Advisory, load_advisories
from update_server.sbom.errors import AdvisoryError
from update_server.sbom.inventory import devices_running, published_releases
from update_server.sbom.report import Report


@click.group("sbom")
def sbom() -> None:
    """The firmware releases' SBOMs held against vulnerability advisories."""


@sbom.command("match")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.argument(
    "advisories_file",
    metavar="ADVISORIES.json",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.pass_context
def match(ctx: click.Context, data_dir: Path, as_json: bool, advisories_file: Path) -> None:
    """List the releases and devices that run a component ADVISORIES.json names (OSV JSON).

    Exit status 0: nothing found and every release checked; 3: a finding
    (affected, or a version that cannot be ruled out); 4: nothing found but
    some release could not be checked (no SBOM, or one that does not verify);
    2: the advisories file is refused.
    """
    advisories = _advisories(ctx, advisories_file)
    repository = OnlineRepository(load_config(data_dir).repository_dir, now=command_now())
    try:
        releases = published_releases(repository)
    except PublicationError as exc:
        raise click.ClickException(f"{exc.message} [rule: {exc.rule}]") from None
    with database(data_dir) as db:
        devices = devices_running(db, releases)
    checked = {r.path: r.components for r in releases if r.components is not None}
    report = Report(matching.match(checked, advisories), releases, devices, len(advisories))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.lines():
            click.echo(line)
    ctx.exit(int(report.status))


def _advisories(ctx: click.Context, file: Path) -> tuple[Advisory, ...]:
    try:
        return load_advisories(file.read_bytes())
    except AdvisoryError as exc:
        say("error", f"{file}: {exc}")
        say("hint", "give OSV JSON: see 'Vulnerable components' in docs/operations.md")
        ctx.exit(2)
