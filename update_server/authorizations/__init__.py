"""Technicians' authorizations: issued by the server, checked by the device (R9, R25, R58)."""
