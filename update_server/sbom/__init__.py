"""Known-vulnerable components in the published releases (R41, R56).

Each firmware release may carry its SBOM, signed as a target of its own
(``fwsign add --sbom``; the release's firmware fields name its path and
SHA-256). ``fwserver sbom match ADVISORIES.json`` answers: which published
releases contain a component an advisory names, and which devices run them.

``advisories`` reads the supported subset of OSV; ``documents`` reads the
components of a CycloneDX or SPDX JSON document; ``versions`` decides whether
a version is in an advisory's range; ``matching`` puts the three together.
They are pure: bytes and values in, values or an error out. ``inventory``
is the only reader of the server's files and database: it reads each
published release's SBOM, checked against the signed targets metadata, and
the devices running each release.
"""
