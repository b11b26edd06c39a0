"""Devices: enrolment tokens, registration, signed device requests, the registry (R10, R62).

- ``models``: the tables (tokens, devices, nonces, technicians' sites).
- ``enrolment``: issuing one-time enrolment tokens and registering a device.
- ``signatures``: the pure decision on a signed device request (RFC 9421).
- ``authentication``: that decision applied to the current request (access.py's device kind).
- ``registry``: accept, reject, decommission; what the inventory shows.
- ``scope``: which devices a technician sees (their sites).
- ``views``: the HTTP side; ``update_server.cli_devices``: ``fwserver device``.
"""
