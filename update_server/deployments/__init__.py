"""Fleet operations: device groups, deployments in waves, maintenance windows, the device poll.

The pure rules are ``waves`` (what a deployment does next), ``windows``
(when a group's maintenance window is open) and ``status`` (a device's
status from its reports); ``groups``, ``rollout`` and ``poll`` apply them to
the database, auditing every change and refusal; ``views`` is the API.
"""
