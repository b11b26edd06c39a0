"""The fixed vocabulary of audit actions (style rule 11: logging is not audit).

Every security event the server records uses one of these names, so the
notified body, the SIEM and ``fwserver audit`` read one stable vocabulary.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    #: R27: a request the access layer refused (401, 403), coalesced per window.
    ACCESS_REFUSED = "access.refused"
    LOGIN = "login"
    LOGIN_LOCKED = "login.locked"
    LOGOUT = "logout"
    PASSWORD_CHANGE = "password.change"  # noqa: S105 - an action name, not a secret
    TOTP_ENROL = "totp.enrol"
    OTP_CONFIRM = "otp.confirm"
    USER_CREATE = "user.create"
    USER_CHANGE = "user.change"
    UPLOAD = "release.upload"
    UPLOAD_TARGET = "release.upload_target"
    UPLOAD_EXPIRE = "release.expire"
    PUBLISH = "release.publish"
    RENEW = "repository.renew"
    KEY_USE = "key.use"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    AUDIT_EXPORT = "audit.export"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    SERVER_INIT = "server.init"
