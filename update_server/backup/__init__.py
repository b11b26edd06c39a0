"""Backup and restore of a whole server (R32, R61): ``fwserver backup`` and ``fwserver restore``.

- ``archive``: the one-file archive and its manifest of SHA-256 hashes (A1-A3);
- ``database``: the database's consistent snapshot, the same for both engines (D1-D4);
- ``make``: what a backup holds and how it stays consistent while the server runs (B1-B4);
- ``restore``: into an empty data directory and database only, checked, atomic (R1-R5).
"""
