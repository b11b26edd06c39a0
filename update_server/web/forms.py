"""The pages' forms (Flask-WTF): fields and their CSRF token, no rules of their own.

The rules (login, lockout, password policy, codes) are the API's, applied
by ``auth.views``; a form only carries what the person typed. Every form
has a CSRF token (``FlaskForm``), checked before any view runs (W3).
"""

from __future__ import annotations

from flask_wtf import FlaskForm  # type: ignore[import-untyped]
from wtforms import (  # type: ignore[import-untyped]
    BooleanField,
    IntegerField,
    PasswordField,
    StringField,
)


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField("User name")
    password = PasswordField("Password")
    otp = StringField("One-time code")


class FirstLoginForm(FlaskForm):  # type: ignore[misc]
    current_password = PasswordField("One-time password you were given")
    new_password = PasswordField("New password")
    new_password_again = PasswordField("New password again")
    otp = StringField("Code your authenticator app shows")


class LogoutForm(FlaskForm):  # type: ignore[misc]
    """Nothing but the CSRF token: logging out is a POST from this site only."""


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that changes something (accept, reject): only the CSRF token."""


class EnrolmentTokenForm(FlaskForm):  # type: ignore[misc]
    """What ``POST /api/v1/enrolment-tokens`` takes, and the fresh code it needs."""

    hardware_model = StringField("Hardware model")
    device_id = StringField("Device id (optional: binds the token to one device)")
    site = StringField("Site (optional)")
    accept = BooleanField("Accept the device at once when it registers")
    hours = IntegerField("Valid for (hours)", default=24)
    otp = StringField("A new one-time code, to confirm")
