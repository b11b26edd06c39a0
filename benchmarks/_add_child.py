"""Child process: one ``add`` of a large image, reporting its own memory.

Run by ``large_image`` as ``python -m benchmarks._add_child REPO IMAGE VERSION``.
After every import is done it resets the kernel's peak-RSS mark (writing 5
to ``/proc/self/clear_refs``), reads its baseline RSS, runs ``add_firmware``
and reads the peak (``VmHWM``): the difference is what the add itself needed.
Prints one JSON object on stdout (sizes in KiB).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.fixtures import IMAGE_NAME, release_info
from signer.authoring import add_firmware
from signer.repository import OfflineRepository


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0])
    return fields


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main(argv: list[str]) -> int:
    repo, image, version = Path(argv[0]), Path(argv[1]), argv[2]
    gc.collect()
    after_imports = _status()
    reset = _reset_peak()
    baseline = _status()["VmRSS"]
    start = time.perf_counter()
    written = add_firmware(
        OfflineRepository(repo, now=datetime.now(UTC)),
        image=image,
        name=IMAGE_NAME,
        info=release_info(version),
    )
    elapsed = time.perf_counter() - start
    result = {
        "import_peak_kib": after_imports["VmHWM"],
        "peak_reset": reset,
        "baseline_kib": baseline,
        "peak_kib": _status()["VmHWM"],
        "seconds": elapsed,
        "written": written,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
