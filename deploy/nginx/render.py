#!/usr/bin/env python3
"""Render ``fwserver.conf.in`` into an nginx configuration (standard library only).

    python3 deploy/nginx/render.py SERVER_NAME=updates.example.org \\
        CERTIFICATE=/etc/ssl/updates.crt CERTIFICATE_KEY=/etc/ssl/private/updates.key \\
        REPOSITORY=/var/lib/fwupdate/repository UPSTREAM_CA=/etc/nginx/fwupdate-ca.crt \\
        > /etc/nginx/sites-available/fwupdate

``--list`` shows every name, what it is and its default. The rules:

N1 Every ``@NAME@`` of the template gets a value (given, or its default);
   a name the template does not have is an error (a typo would otherwise be
   silently ignored).
N2 A value is one nginx word: letters, digits and ``._:/+-[]`` only. No
   space, quote, ``;``, ``{``, ``}``, ``$`` or ``#``, so no value can end a
   directive and add another.
N3 Nothing of the template is left unreplaced in the output.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).with_name("fwserver.conf.in")
_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
_WORD = re.compile(r"^[A-Za-z0-9._:/+\[\]-]+\Z")

#: name -> (what it is, default or None when it must be given)
SETTINGS: dict[str, tuple[str, str | None]] = {
    "SERVER_NAME": ("the host name devices and people use", None),
    "LISTEN": ("address and port nginx listens on for HTTPS", "443"),
    "CERTIFICATE": ("nginx's certificate chain (PEM), for SERVER_NAME", None),
    "CERTIFICATE_KEY": ("its private key (PEM; readable by nginx's master only)", None),
    "REPOSITORY": ("the server's published repository: <data-dir>/repository", None),
    "UPSTREAM": ("gunicorn's address (fwserver serve's --host and --port)", "127.0.0.1:8443"),
    "UPSTREAM_CA": ("the server's CA certificate: <data-dir>/tls/ca.crt, copied", None),
    "UPSTREAM_NAME": ("a name gunicorn's certificate is valid for", "localhost"),
    "ACCESS_LOG": ("the access log (JSON lines)", "/var/log/nginx/fwupdate.access.log"),
    "LOGIN_RATE": ("logins per source: steady rate", "10r/m"),
    "LOGIN_BURST": ("logins per source: burst above the rate before 429", "10"),
    "DEVICE_RATE": ("device requests per source (NAT: a whole site)", "50r/s"),
    "DEVICE_BURST": ("device requests per source: burst before 429", "500"),
    "MAX_UPLOAD": ("largest firmware upload (the server's max_upload_bytes)", "4g"),
}


class RenderError(ValueError):
    """A value is missing, unknown or unsafe; the message names it."""


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """The configuration for ``values`` over the defaults (N1 to N3)."""
    text = TEMPLATE.read_text() if template is None else template
    wanted = set(_PLACEHOLDER.findall(text))
    unknown = set(values) - wanted
    if unknown:
        raise RenderError(f"the template has no {', '.join(sorted(unknown))}")
    chosen = {name: default for name, (_, default) in SETTINGS.items() if default is not None}
    chosen.update(values)
    missing = wanted - set(chosen)
    if missing:
        raise RenderError(f"give a value for {', '.join(sorted(missing))} (see --list)")
    for name in sorted(wanted):
        if not _WORD.match(chosen[name]):
            raise RenderError(
                f"{name}: {chosen[name]!r} is not one nginx word"
                " (letters, digits and ._:/+-[] only)"
            )
    rendered = _PLACEHOLDER.sub(lambda match: chosen[match.group(1)], text)
    if _PLACEHOLDER.search(rendered):  # N3: a value that itself looks like @NAME@
        raise RenderError("a value left a placeholder in the output")
    return rendered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE")
    parser.add_argument("--list", action="store_true", help="show every NAME and its default")
    args = parser.parse_args(argv)
    if args.list:
        for name, (what, default) in SETTINGS.items():
            sys.stdout.write(f"{name:16} {what} [{default or 'required'}]\n")
        return 0
    values = {}
    for item in args.values:
        name, equals, value = item.partition("=")
        if not equals:
            parser.error(f"{item!r}: write NAME=VALUE")
        values[name] = value
    try:
        sys.stdout.write(render(values))
    except RenderError as exc:
        sys.stderr.write(f"render.py: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
