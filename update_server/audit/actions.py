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
    #: R31: signed metadata or a TLS certificate close to its expiry, once each; detail
    #: ``what`` names it, ``metadata:<role>`` or ``tls:<certificate>`` (an alert: alerts.critical).
    EXPIRY_WARNING = "expiry.warning"
    KEY_USE = "key.use"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    AUDIT_EXPORT = "audit.export"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    SERVER_INIT = "server.init"
    #: R32, R61: ``fwserver backup`` wrote an archive (detail: its SHA-256), or failed.
    SERVER_BACKUP = "server.backup"
    #: R32: ``fwserver restore`` made this server from an archive (entry of the restored log).
    SERVER_RESTORE = "server.restore"
    #: R10: an enrolment token issued (never the token itself).
    ENROLMENT_TOKEN = "device.enrol_token"  # noqa: S105 - an action name, not a secret
    #: R10: a device registered with an enrolment token (or refused).
    DEVICE_REGISTER = "device.register"
    #: R62: a device accepted, rejected or decommissioned.
    DEVICE_CHANGE = "device.change"
    #: R38: a device's signed report.
    DEVICE_REPORT = "device.report"
    #: R6: the sites a technician's scope holds.
    USER_SCOPE = "user.scope"
    #: R9, R58: a technician's authorization signed for one device and one release.
    AUTHORIZATION_ISSUE = "authorization.issue"
    #: R27: the device picked the authorization up at a poll.
    AUTHORIZATION_DELIVER = "authorization.deliver"
    #: R27: the device reported it used (an install began) or refused it, and why.
    AUTHORIZATION_OUTCOME = "authorization.outcome"
    #: Issue 11: a device group made, deleted, its members or its maintenance window changed.
    GROUP_CHANGE = "group.change"
    #: Issue 11: a fleet's (hardware model's) install setting: assigned or newest.
    FLEET_INSTALL = "fleet.install"
    #: R9: a deployment made (waiting for another release manager's approval), or refused.
    DEPLOYMENT_CREATE = "deployment.create"
    #: R9: a deployment approved by a second release manager (the creator's own: refused).
    DEPLOYMENT_APPROVE = "deployment.approve"
    DEPLOYMENT_PAUSE = "deployment.pause"
    DEPLOYMENT_RESUME = "deployment.resume"
    DEPLOYMENT_ABORT = "deployment.abort"
    #: A wave of a deployment started (by the server, when the previous one succeeded).
    DEPLOYMENT_WAVE = "deployment.wave"
    #: A deployment stopped by the server: a wave's failures, or its release withdrawn (R56).
    DEPLOYMENT_STOPPED = "deployment.stopped"
    #: Every wave started and succeeded.
    DEPLOYMENT_COMPLETE = "deployment.complete"
    #: A device picked its assignment up at a poll for the first time.
    DEPLOYMENT_ASSIGN = "deployment.assign"
    #: R24, R33: a security officer froze the system (or was refused: already frozen, no reason).
    FREEZE_ENTER = "freeze.enter"
    #: R9: a security officer's vote to lift the freeze (first, lapsed and replaced, or refused).
    FREEZE_VOTE = "freeze.vote"
    #: R24: a second security officer's vote lifted the freeze: the system is normal again.
    FREEZE_LEAVE = "freeze.leave"
    #: R13, R27 (issue 13): an offline bundle made for a model or a device (model, device,
    #: release, the bundle's SHA-256 and size, who), or refused on the technician's page.
    BUNDLE_CREATE = "bundle.create"
