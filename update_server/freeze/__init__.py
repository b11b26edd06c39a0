"""The failsafe freeze: one security officer stops every change, two lift it.

R24, R33, R34, R40, R59.

``rules`` is the pure core (F1-F4: who enters, who leaves, what a frozen
system refuses); ``state`` reads and writes the one row that holds the
server's mode and the pending vote to leave it; ``views`` is the API. Other
parts ask ``state.current_mode`` / ``state.is_frozen`` (the device poll, the
status) or call ``state.refuse_if_frozen`` before a change the freeze stops
(publication, authorizations, deployments).
"""
