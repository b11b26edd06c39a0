"""Child process: one ``fwclient`` command, reporting its own peak memory.

Run by ``benchmarks.delta`` as ``python -m benchmarks._delta_child REPORT ARGS...``:
it runs ``fwclient ARGS...`` as the command line does, and on its way out
writes its peak RSS (``VmHWM`` of ``/proc/self/status``, KiB) to REPORT as
JSON. ``VmHWM`` is this process's own: the ``ru_maxrss`` a parent reads with
``wait4`` also keeps the parent's peak, which Linux carries over ``exec``. The
mark is reset first (writing 5 to ``/proc/self/clear_refs``), so nothing
from before the command counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmHWM":
            return int(value.split()[0])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main() -> None:
    report, args = Path(sys.argv[1]), sys.argv[2:]
    reset = _reset_peak()
    sys.argv = ["fwclient", *args]
    try:
        from client.cli import main as fwclient  # noqa: PLC0415  imports count in the peak

        fwclient()
    finally:
        report.write_text(json.dumps({"peak_kib": _peak_kib(), "peak_reset": reset}))


if __name__ == "__main__":
    main()
