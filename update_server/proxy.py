"""Trusted proxies: whose forwarding headers say who the client is (R6, R9, R27, R31).

Behind nginx every request reaches gunicorn from the proxy's own address;
the client's address, which the audit log records as each entry's source
(R27, R31) and the per-source login limit counts (R9), arrives only in
``X-Forwarded-For``, a header any client can also write.

P1 ``trusted_proxy_hops`` 0, the default: no forwarding header is read at
   all; the source is the peer of the TCP connection.
P2 N > 0: exactly N proxies are trusted, each appending the address it saw
   to ``X-Forwarded-For`` (nginx: ``$proxy_add_x_forwarded_for``). The
   source is the N-th address from the right, the one the outermost trusted
   proxy saw; whatever a client wrote to the left of it is ignored. The
   scheme comes from ``X-Forwarded-Proto`` the same way.
P3 A request carrying fewer forwarded addresses than N did not pass every
   trusted proxy (say, one sent straight to gunicorn's loopback port): it
   keeps its peer address.
P4 Host, port and path prefix are never taken from forwarding headers: the
   Host a client sent is checked against ``trusted_hosts`` as it is.

The headers are parsed by werkzeug's ``ProxyFix``, not by our own code.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def trust_proxies(app: Flask, *, hops: int) -> None:
    """Take the client's address and scheme from exactly ``hops`` proxies (P1 to P4)."""
    if hops == 0:  # P1: the wrapper would read nothing; leave the app as it is.
        return
    app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
        app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0
    )
