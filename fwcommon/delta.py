"""Binary deltas between two firmware images (issue 13: thin links).

A delta carries the bytes of a full image as the difference from an earlier
image the device already runs. It is only another way to carry those bytes:
a delta is a TUF target signed like any other, and the image it rebuilds is
verified against the FULL image's signed length and hashes before anything
uses it. This module trusts nothing: it only makes a delta and rebuilds an
image from one, within bounds, and fails with ``DeltaError`` otherwise.

Library: bsdiff4 1.3.2 (``import bsdiff4``), Colin Percival's bsdiff
algorithm, the one behind many OTA systems; maintained, with manylinux wheels
for CPython 3.11 so a device installs it from the locked wheels with
``--no-index``. detools ships only an sdist (a compiler on the device), and
``zstd --patch-from`` means a second tool and format. The format (BSDIFF40):
an 8-byte magic, three signed 64-bit lengths (compressed control block,
compressed diff block, size of the new file), then three bz2 streams. See
docs/adr/0008-delta-updates-with-bsdiff.md for the choice and its memory cost
(bsdiff holds the base, the image and the patch in memory; measured on a
64 MiB image: applying peaks at 210 MiB RSS, about three times the image, in
1.5 s; making a delta at 1,165 MiB, about eighteen times the image, in 89 s).

We do not use bsdiff4's own reader (``bsdiff4.patch``): it checks only seven
bytes of the magic, decompresses each block without a bound (a bz2 bomb) and
allocates the declared new size before looking at anything else. We parse the
header ourselves and hand bsdiff4's C core only bounded, decompressed blocks;
the core checks every control entry against the base, the blocks and the
output (D5).

Rules of ``apply_delta`` (each refusal is a ``DeltaError`` naming the rule):
- D1: the patch starts with exactly ``BSDIFF40`` and its three lengths are
  zero or more.
- D2: the new size the header declares is at most ``max_output``, checked
  before anything is allocated for it; a patch declaring a huge output costs
  32 bytes of reading.
- D3: the patch itself is bounded (``max_patch_bytes(max_output)``): its
  declared compressed blocks must fit in it, and nothing is read beyond it.
- D4: each bz2 block decompresses within its bound (control: at most
  ``_MAX_CONTROL_ENTRIES`` entries of 24 bytes for the new size; diff and
  extra together: the new size), is one complete stream, and nothing follows
  the last one.
- D5: the control entries stay inside the base, the diff and extra blocks and
  the output, and consume them exactly (bsdiff4's core checks; its
  ``ValueError`` becomes a ``DeltaError``).
- D6: nothing but ``DeltaError`` leaves ``apply_delta`` for a bad patch, an
  unreadable base or patch, or too little memory to rebuild the image (a
  ``MemoryError`` while rebuilding: the caller takes the full image, which
  streams); the caller's stream ``out`` is written only once the whole image
  is rebuilt, so a refused patch writes nothing to it.
- D7: ``make_delta`` checks its own delta: it rebuilds the image through
  ``apply_delta`` and compares it with the image before the delta file
  appears, so every delta signed is one a device accepts.
"""

from __future__ import annotations

import bz2
import io
from pathlib import Path
from typing import BinaryIO

import bsdiff4
from bsdiff4 import core as _bsdiff_core

from fwcommon.files import atomic_write

FORMAT = "bsdiff4"
MAGIC = b"BSDIFF40"
HEADER_SIZE = 32
_CONTROL_ENTRY = 24
_READ_CHUNK = 1024 * 1024
_UNUSABLE = "the delta bsdiff4 made is unusable (D7); publish the release without it"


class DeltaError(Exception):
    """A delta cannot be made or applied; the message says why and what to do."""


def max_patch_bytes(max_output: int) -> int:
    """The largest patch ``apply_delta`` reads for an image of ``max_output`` bytes (D3).

    bz2 expands incompressible data by well under 1%; the control block of
    an honest patch is a small fraction of the image. Twice the image plus
    1 MiB leaves room for both and still bounds what a patch may cost.
    """
    return 2 * max_output + 1024 * 1024


def _max_control_entries(new_size: int) -> int:
    # bsdiff emits a control entry only for a match longer than 8 bytes past
    # the previous one, so an honest patch has about one entry per 8 bytes of
    # output at most; D7 guarantees every delta we sign meets this bound.
    return new_size // 8 + 16


def make_delta(base: Path, image: Path, out: Path) -> int:
    """Write the delta that rebuilds ``image`` from ``base`` to ``out``; return its size.

    The file is written atomically (whole or not at all) and only after the
    delta has been checked to rebuild ``image`` exactly (D7).
    """
    try:
        old, new = base.read_bytes(), image.read_bytes()
    except OSError as exc:
        raise DeltaError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        patch = bsdiff4.diff(old, new)
    except MemoryError:
        raise DeltaError(
            f"not enough memory to make a delta of {len(new)} bytes (bsdiff needs about"
            " 18 times the image); publish the release without it"
        ) from None
    try:
        check = _Source(io.BytesIO(patch), limit=max_patch_bytes(len(new)))
        rebuilt = _rebuild(old, check, _Header.read(check, len(new)))
    except DeltaError as exc:
        raise DeltaError(f"{_UNUSABLE}: a device would refuse it: {exc}") from None
    if rebuilt != new:
        raise DeltaError(f"{_UNUSABLE}: it does not rebuild the image")
    atomic_write(out, patch)
    return len(patch)


def apply_delta(base: Path, delta: BinaryIO | Path, out: BinaryIO, *, max_output: int) -> int:
    """Rebuild an image from ``base`` and ``delta`` into ``out``; return its length.

    The result is NOT verified here: the caller checks it against the full
    image's signed length and hashes. Raises ``DeltaError`` (rules D1 to D6)
    for anything malformed, oversized or not matching the base; an error
    writing to ``out`` (the caller's stream) passes through as it is.
    """
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 0:
        raise DeltaError("max_output must be an integer, zero or more")
    if isinstance(delta, Path):
        try:
            with delta.open("rb") as stream:
                image = _apply(base, stream, max_output)
        except OSError as exc:
            raise DeltaError(f"cannot read the delta {delta}: {exc.strerror}") from None
    else:
        image = _apply(base, delta, max_output)
    out.write(image)
    return len(image)


def _apply(base: Path, stream: BinaryIO, max_output: int) -> bytes:
    source = _Source(stream, limit=max_patch_bytes(max_output))
    header = _Header.read(source, max_output)  # D1, D2: before the base is read
    try:
        try:
            old = base.read_bytes()
        except OSError as exc:
            raise DeltaError(f"cannot read the base image {base}: {exc.strerror}") from None
        return _rebuild(old, source, header)
    except MemoryError:  # D6: the base, the blocks and the image did not fit
        raise DeltaError(
            f"not enough memory to rebuild {header.new_size} bytes from the delta (D6);"
            " take the full image"
        ) from None


class _Source:
    """The patch's bytes, read through a bound (D3)."""

    def __init__(self, stream: BinaryIO, *, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int, what: str) -> bytes:
        if size > self._left:
            raise DeltaError(f"the delta's {what} is larger than a delta may be (D3)")
        data = self._read(size)
        if len(data) != size:
            raise DeltaError(f"the delta is truncated in its {what} (D3)")
        return data

    def read_rest(self, what: str) -> bytes:
        data = self._read(self._left + 1)
        if len(data) > self._left:
            raise DeltaError(f"the delta's {what} is larger than a delta may be (D3)")
        return data

    def _read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        left = size
        try:
            while left > 0:
                chunk = self._stream.read(min(left, _READ_CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise DeltaError(f"cannot read the delta: {exc}") from None
        data = b"".join(chunks)
        self._left -= len(data)
        return data


class _Header:
    """The 32-byte BSDIFF40 header, checked (D1, D2)."""

    def __init__(self, control: int, diff: int, new_size: int) -> None:
        self.control, self.diff, self.new_size = control, diff, new_size

    @classmethod
    def read(cls, source: _Source, max_output: int) -> _Header:
        raw = source.read(HEADER_SIZE, "header")
        if raw[:8] != MAGIC:
            raise DeltaError("not a bsdiff4 delta: it does not start with BSDIFF40 (D1)")
        control, diff, new_size = (_bsdiff_core.decode_int64(raw[i : i + 8]) for i in (8, 16, 24))
        if min(control, diff, new_size) < 0:
            raise DeltaError("the delta's header states a negative length (D1)")
        if new_size > max_output:
            raise DeltaError(
                f"the delta rebuilds {new_size} bytes, more than the {max_output} "
                "allowed for this image (D2)"
            )
        return cls(control, diff, new_size)


def _rebuild(old: bytes, source: _Source, header: _Header) -> bytes:
    new_size = header.new_size
    control = _inflate(
        source.read(header.control, "control block"),
        _CONTROL_ENTRY * _max_control_entries(new_size),
        "control block",
    )
    if len(control) % _CONTROL_ENTRY:
        raise DeltaError("the delta's control block is not whole 24-byte entries (D4)")
    diff = _inflate(source.read(header.diff, "diff block"), new_size, "diff block")
    extra = _inflate(source.read_rest("extra block"), new_size - len(diff), "extra block")
    try:
        image: bytes = _bsdiff_core.patch(old, new_size, control, diff, extra)
    except ValueError as exc:
        raise DeltaError(f"the delta does not apply to this base: {exc} (D5)") from None
    return image


def _inflate(compressed: bytes, limit: int, what: str) -> bytes:
    decompressor = bz2.BZ2Decompressor()
    try:
        data = decompressor.decompress(compressed, max_length=limit + 1)
    except (OSError, EOFError, ValueError) as exc:
        raise DeltaError(f"the delta's {what} is not valid bz2 data: {exc} (D4)") from None
    if len(data) > limit:
        raise DeltaError(f"the delta's {what} expands beyond {limit} bytes (D4)")
    if not decompressor.eof:
        raise DeltaError(f"the delta's {what} is truncated (D4)")
    if decompressor.unused_data:
        raise DeltaError(f"the delta has data after its {what} (D4)")
    return data
