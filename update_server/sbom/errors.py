"""Errors of the SBOM matcher: a refused advisories file, an unreadable SBOM."""

from __future__ import annotations


class SbomMatchError(Exception):
    """Base of the matcher's errors; the message says what was wrong."""


class AdvisoryError(SbomMatchError):
    """The advisories file is not the supported OSV subset (``advisories`` A1-A6)."""


class DocumentError(SbomMatchError):
    """An SBOM is neither CycloneDX JSON nor SPDX JSON as ``documents`` reads them."""


class UncheckedError(SbomMatchError):
    """A release's SBOM cannot be trusted or read (``inventory`` I3); the message says why."""
