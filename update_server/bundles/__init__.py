"""Offline update bundles, the server's side: what goes in one, and making it (issue 13).

``selection`` decides, purely, which published files a bundle for a hardware
model (or one device) carries and which release; ``making`` reads the
published repository, writes the file through ``fwcommon.bundle`` and says
what it wrote, for the audit. ``fwserver bundle`` (``cli_bundle``) and the
technician's page (``web.bundle_pages``) are thin over these.
"""
