"""The device-side updater: never installs unverified bytes, never goes
below its security floor, never bricks, and can always say what it runs.

It imports nothing from the server, Flask or the signing tools; of the
repository core it uses only the firmware schema (``repo_metadata``)."""
