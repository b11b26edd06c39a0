"""A device's view, for the demo: a stock ``tuf.ngclient`` updater over HTTPS.

It trusts only the root it was provisioned with and the server's CA file,
refreshes the metadata, and downloads and verifies one firmware target. It
shows that an unmodified python-tuf client accepts the repository, so it uses
ngclient's own fetcher; the product's device client, ``fwclient``, runs next
in the demo. The end-to-end release test (``tests/e2e/test_release_story.py``)
runs the same device.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

from tuf.ngclient import Updater, Urllib3Fetcher

from repo_metadata.firmware import FirmwareInfo


class CAFetcher(Urllib3Fetcher):
    """ngclient's own fetcher, verifying the server against one CA file.

    tuf 7.0.1's ``Urllib3Fetcher`` takes no CA: this adds ``ca_certs`` to the
    settings of the urllib3 pools it makes at the first request, and changes
    nothing else. Should a later tuf build its pools otherwise, the server's
    certificate no longer verifies and the device fails closed.
    """

    def __init__(self, ca: Path) -> None:
        super().__init__()
        self._proxy_env._kw_args["ca_certs"] = str(ca)


def stock_updater(server: str, *, ca: Path, root: bytes, workdir: Path) -> Updater:
    """An ngclient updater trusting ``root`` and ``ca``, its files under ``workdir``."""
    metadata, targets = workdir / "metadata", workdir / "targets"
    metadata.mkdir(parents=True)
    targets.mkdir(parents=True)
    return Updater(
        metadata_dir=str(metadata),
        metadata_base_url=f"{server}/metadata/",
        target_dir=str(targets),
        target_base_url=f"{server}/targets/",
        fetcher=CAFetcher(ca),
        bootstrap=root,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--server", "--ca", "--root", "--target"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = Path(args.root).read_bytes()
        updater = stock_updater(args.server, ca=Path(args.ca), root=root, workdir=Path(work))
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
