"""The web pages: server-rendered HTML in the same app, for people on a phone or a laptop.

``init_app`` wires them: the ``web`` blueprint (``views``), Flask-WTF's
CSRF protection on its forms, and the cookie settings. The rules:

W1 A page reads the session from the ``__Host-fw_session`` cookie, the
   same ``SessionToken`` as the API's bearer token (``access``: the same
   default-deny decorators, role checks and refusal audit); a cookie never
   opens an API route, and the API never checks CSRF (it takes no cookie).
W2 Cookies are ``Secure; HttpOnly; SameSite=Strict``, ``__Host-`` named
   (no Domain, Path=/). Every login makes a new session token and a new
   CSRF token (the old ones end); logout revokes the session.
W3 Every POST to a page carries a valid CSRF token (``CSRFProtect``, which
   also checks that the Referer is this server over HTTPS), else 400 and
   nothing is done. Its key (``SECRET_KEY``) is a 0600 file in the data
   directory (``setup.web_secret_key``), never logged.
W4 Every page carries ``PAGE_CSP``: nothing inline, nothing evaluated, no
   frames, forms posting only here; the JSON API keeps its stricter policy.
W5 A page asked for without a valid session redirects to the login page;
   any other refusal is an HTML page with the refusal's status.
"""

from __future__ import annotations

from flask import Flask

from update_server.config import ServerConfig
from update_server.setup import web_secret_key
from update_server.web.views import blueprint, csrf

#: The Flask session cookie carries only the CSRF token (and the R11 notice).
CSRF_COOKIE = "__Host-fw_csrf"


def init_app(app: Flask, config: ServerConfig) -> None:
    """Register the pages on ``app``, with CSRF protection and the cookie settings (W2, W3)."""
    app.config.update(
        SECRET_KEY=web_secret_key(config),
        SESSION_COOKIE_NAME=CSRF_COOKIE,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/",
        # W3: checked for the web blueprint only (``views.check_csrf``), never the API.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_SSL_STRICT=True,
        WTF_CSRF_TIME_LIMIT=int(config.session_absolute.total_seconds()),
    )
    csrf.init_app(app)
    app.register_blueprint(blueprint)
