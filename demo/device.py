"""A device's view, for the demo: a stock ``tuf.ngclient`` updater over HTTPS.

It trusts only the root it was provisioned with and the server's CA file,
refreshes the metadata, and downloads and verifies one firmware target.
(The real device client, ``fwclient``, comes with issue 4.)
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import urllib3
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from repo_metadata.firmware import FirmwareInfo


class CAFetcher(FetcherInterface):
    """HTTPS with the server certificate checked against one CA file."""

    def __init__(self, ca: Path) -> None:
        self._pool = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(ca), retries=False)

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._pool.request("GET", url, preload_content=False)
        if response.status != 200:
            response.drain_conn()
            raise DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        yield from response.stream(64 * 1024)
        response.release_conn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--server", "--ca", "--root", "--target"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        metadata, targets = Path(work, "metadata"), Path(work, "targets")
        metadata.mkdir()
        targets.mkdir()
        updater = Updater(
            metadata_dir=str(metadata),
            metadata_base_url=f"{args.server}/metadata/",
            target_dir=str(targets),
            target_base_url=f"{args.server}/targets/",
            fetcher=CAFetcher(Path(args.ca)),
            bootstrap=Path(args.root).read_bytes(),
        )
        updater.refresh()
        info = updater.get_targetinfo(args.target)
        if info is None:
            raise SystemExit(f"device: {args.target} is not signed in the repository")
        firmware = FirmwareInfo.from_target(info)
        path = Path(updater.download_target(info))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(
            f"device: verified {args.target} v{firmware.version}"
            f" (security version {firmware.security_version}), {info.length} bytes,"
            f" sha256 {digest[:16]}..., signed by the pump-x100 engineers"
        )


if __name__ == "__main__":
    main()
