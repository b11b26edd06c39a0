"""The offline bundle format (fwcommon/bundle.py): each test names the rule B1-B10 it holds.

A bundle arrives on removable media (ANSM R46, R51), so the reader's tests
hand it tar files crafted with ``tarfile`` itself, not with ``write_bundle``:
what an attacker or a damaged USB key can produce, each refused with a
``BundleError`` that says what was wrong, and nothing extracted (R13: the
bundle only carries bytes that TUF then verifies).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import fwcommon.bundle
from fwcommon.bundle import (
    AUTHORIZATION,
    DEFAULT_MAX_BYTES,
    FORMAT,
    MANIFEST,
    MAX_DIGITS,
    MAX_HEADER_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_MEMBERS,
    Bundle,
    BundleError,
    Manifest,
    check_member_name,
    write_bundle,
)
from tests.hsm_mock.helpers import skip_or_fail

CREATED = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
BOUND = 1024 * 1024
FIRMWARE = "targets/pump-x/" + "a" * 64 + ".fw-2.0.0.bin"
MEMBERS: list[tuple[str, Path | bytes]] = [
    ("metadata/2.root.json", b'{"root": 2}'),
    ("metadata/timestamp.json", b'{"timestamp": 1}'),
    (FIRMWARE, b"\x7fFW" * 1000),
]


def manifest(**changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "hardware_model": "pump-x",
        "device": None,
        "created": CREATED,
        "root_from": 1,
        "release": "pump-x/fw-2.0.0.bin",
        "authorization": None,
    }
    fields.update(changes)
    return Manifest(**fields)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def made(tmp_path: Path, members: list[tuple[str, Path | bytes]] = MEMBERS) -> Path:
    path = tmp_path / "bundle.tar"
    write_bundle(path, manifest(), members, max_bytes=BOUND)
    return path


def regular(name: str, data: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, **attributes: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for attribute, value in attributes.items():
        setattr(info, attribute, value)
    return info, None


def crafted(
    tmp_path: Path,
    *entries: tuple[tarfile.TarInfo, bytes | None],
    form: int = tarfile.PAX_FORMAT,
    first: bytes | None = None,
) -> Path:
    """A tar written by tarfile directly: bundle.json (or ``first``), then ``entries``."""
    path = tmp_path / "crafted.tar"
    with tarfile.open(path, "w", format=form) as tar:
        for info, data in (regular(MANIFEST, first or manifest().to_json()), *entries):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def manifest_blocks() -> bytes:
    """bundle.json's header and padded data, for files built block by block."""
    info, data = regular(MANIFEST, manifest().to_json())
    assert data is not None
    return info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def refused(path: Path, *fragments: str, max_bytes: int = BOUND) -> str:
    with pytest.raises(BundleError) as caught:
        Bundle.open(path, max_bytes=max_bytes)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    return message


# --- Round trip (B1, B9, B10) --------------------------------------------------------------


def test_round_trip_gives_back_every_member_in_order_with_the_manifest_first(
    tmp_path: Path,
) -> None:
    """B10 writes bundle.json first; B9 hands each member back by exact name."""
    path = made(tmp_path)
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        assert bundle.manifest == manifest()
        assert bundle.names() == [MANIFEST, *(name for name, _ in MEMBERS)]
        for name, data in MEMBERS:
            assert isinstance(data, bytes)
            assert bundle.size(name) == len(data)
            assert bundle.read(name, limit=len(data)) == data
            with bundle.open_member(name) as stream:
                assert stream.read() == data
    assert leftovers(tmp_path) == ["bundle.tar"]


def test_write_returns_the_size_of_the_file_and_is_reproducible(tmp_path: Path) -> None:
    """B10: deterministic headers, so the same release makes the same bytes."""
    first = tmp_path / "first.tar"
    second = tmp_path / "second.tar"
    size = write_bundle(first, manifest(), MEMBERS, max_bytes=BOUND)
    write_bundle(second, manifest(), MEMBERS, max_bytes=BOUND)
    assert size == first.stat().st_size
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_mode & 0o777 == 0o644


def test_written_bundle_is_a_plain_pax_tar_with_fixed_headers(tmp_path: Path) -> None:
    """B1, B10: any tar reader sees regular files, owner 0, mode 0644, mtime = created (R2)."""
    with tarfile.open(made(tmp_path), "r:") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [MANIFEST, *(name for name, _ in MEMBERS)]
    for member in members:
        assert member.isreg()
        assert (member.uid, member.gid, member.mode) == (0, 0, 0o644)
        assert member.mtime == CREATED.timestamp()


def test_system_tar_lists_and_reads_a_bundle(tmp_path: Path) -> None:
    """B1: `tar tvf` inspects a bundle (docs/bundle-format.md; R2)."""
    tar = shutil.which("tar")
    if tar is None:
        skip_or_fail("the tar command is not installed")
    path = made(tmp_path)
    listing = subprocess.run([tar, "tf", str(path)], check=True, capture_output=True, text=True)
    assert listing.stdout.split() == [MANIFEST, *(name for name, _ in MEMBERS)]
    shown = subprocess.run([tar, "xOf", str(path), MANIFEST], check=True, capture_output=True)
    assert shown.stdout == manifest().to_json()


def test_a_bundle_made_by_gnu_tar_in_pax_format_is_read(tmp_path: Path) -> None:
    """B1: a bundle built with standard tools (as docs/bundle-format.md shows) opens (R2)."""
    tar = shutil.which("tar")
    if tar is None:
        skip_or_fail("the tar command is not installed")
    tree = tmp_path / "tree"
    (tree / "metadata").mkdir(parents=True)
    (tree / MANIFEST).write_bytes(manifest().to_json())
    (tree / "metadata" / "2.root.json").write_bytes(b"{}")
    path = tmp_path / "gnu.tar"
    command = [tar, "--format=pax", "-cf", str(path), "-C", str(tree)]
    subprocess.run([*command, MANIFEST, "metadata/2.root.json"], check=True)
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        assert bundle.names() == [MANIFEST, "metadata/2.root.json"]
        assert bundle.read("metadata/2.root.json", limit=2) == b"{}"


def test_path_sources_are_streamed_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B10: a firmware file is copied in small reads, never held whole in memory."""
    image = tmp_path / "image.bin"
    image.write_bytes(os.urandom(512 * 1024))
    reads: list[int] = []
    real_fdopen = os.fdopen

    class Spy(io.BufferedReader):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(-1 if size is None else size)
            return super().read(size)

    def spying_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "rb":
            return Spy(io.FileIO(fd, "rb"))
        return real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", spying_fdopen)
    path = tmp_path / "bundle.tar"
    write_bundle(path, manifest(), [(FIRMWARE, image)], max_bytes=2 * BOUND)
    monkeypatch.undo()
    assert reads
    assert all(0 < size <= 64 * 1024 for size in reads)
    with Bundle.open(path, max_bytes=2 * BOUND) as bundle:
        assert bundle.read(FIRMWARE, limit=BOUND) == image.read_bytes()


# --- B2: the bound of the whole file ---------------------------------------------------


def test_writer_fits_a_bundle_exactly_at_its_bound_and_refuses_one_byte_less(
    tmp_path: Path,
) -> None:
    """B2: the writer's bound is exact; over it, nothing is written."""
    size = write_bundle(tmp_path / "exact.tar", manifest(), MEMBERS, max_bytes=BOUND)
    with pytest.raises(BundleError, match=rf"more than the bound of {size - 1} bytes"):
        write_bundle(tmp_path / "over.tar", manifest(), MEMBERS, max_bytes=size - 1)
    assert leftovers(tmp_path) == ["exact.tar"]
    write_bundle(tmp_path / "again.tar", manifest(), MEMBERS, max_bytes=size)


def test_writer_refuses_a_member_over_the_bound_before_copying_it(tmp_path: Path) -> None:
    """B2: a large firmware file is refused from its size, not after filling the disk."""
    image = tmp_path / "image.bin"
    with image.open("wb") as handle:
        handle.truncate(DEFAULT_MAX_BYTES)  # sparse: no disk used
    with pytest.raises(BundleError, match=rf"{FIRMWARE!r} \({DEFAULT_MAX_BYTES} bytes\)"):
        write_bundle(tmp_path / "b.tar", manifest(), [(FIRMWARE, image)], max_bytes=BOUND)
    assert leftovers(tmp_path) == ["image.bin"]


@pytest.mark.parametrize("bound", [0, -1, True, 1.5])
def test_a_bound_that_is_not_a_positive_integer_is_refused(tmp_path: Path, bound: Any) -> None:
    """B2: the bound is required policy, never silently permissive."""
    with pytest.raises(BundleError, match="max_bytes must be a positive number"):
        write_bundle(tmp_path / "b.tar", manifest(), MEMBERS, max_bytes=bound)
    with pytest.raises(BundleError, match="max_bytes must be a positive number"):
        Bundle.open(made(tmp_path), max_bytes=bound)


def test_oversized_bundle_is_refused_before_any_byte_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B2 (R52: a USB key of garbage must not stall the device): fstat decides, no read."""
    path = tmp_path / "huge.tar"
    with path.open("wb") as handle:
        handle.write(b"garbage, not a tar header " * 40)
        handle.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: no disk used

    def no_read(*args: object) -> bytes:
        raise AssertionError("the bundle was read before its size was checked")

    with monkeypatch.context() as patch:
        patch.setattr(os, "read", no_read)
        patch.setattr(os, "pread", no_read)
        with pytest.raises(BundleError) as caught:
            Bundle.open(path, max_bytes=DEFAULT_MAX_BYTES)
    message = str(caught.value)
    assert f"is {DEFAULT_MAX_BYTES + 1} bytes" in message
    assert f"bound of {DEFAULT_MAX_BYTES} bytes" in message
    assert "before reading" in message


def test_bundle_exactly_at_the_bound_is_read(tmp_path: Path) -> None:
    """B2: the bound is inclusive."""
    path = made(tmp_path)
    with Bundle.open(path, max_bytes=path.stat().st_size) as bundle:
        assert bundle.names()[0] == MANIFEST
    refused(path, "more than the bound", max_bytes=path.stat().st_size - 1)


def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """B2: a directory, a FIFO (which would block) or a device is no bundle (R46)."""
    refused(tmp_path, "is not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(fifo, "is not a regular file")
    refused(Path("/dev/zero"), "is not a regular file")
    refused(tmp_path / "missing.tar", "cannot open bundle", "check the path")


def test_a_path_swapped_for_a_fifo_after_its_check_is_refused_by_fstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B2 (a race on the media): the check on the opened descriptor holds, and never blocks.

    Answers R46, R42.
    """
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    regular_status = made(tmp_path).stat()
    real_stat = Path.stat

    def stat_at_check(self: Path, **kwargs: Any) -> os.stat_result:
        return regular_status if self == fifo else real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat_at_check)
    refused(fifo, "is not a regular file")


# --- B1: no compression ---------------------------------------------------------------------


def test_a_compressed_bundle_is_refused_not_inflated(tmp_path: Path) -> None:
    """B1 (decompression bomb): mode "r:" reads no gzip; the refusal says what to use (R46, R42)."""
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(gzip.compress(made(tmp_path).read_bytes()))
    refused(path, "not an uncompressed tar file", "not a compressed or damaged copy")


@pytest.mark.parametrize("content", [b"", b"not a tar at all" * 64])
def test_an_empty_or_garbage_file_is_refused(tmp_path: Path, content: bytes) -> None:
    """B1: what is not a tar is said to be one of the wrong kind (R46)."""
    path = tmp_path / "bundle.tar"
    path.write_bytes(content)
    refused(path, "not an uncompressed tar file")


# --- B3: names --------------------------------------------------------------------------

BAD_NAMES = [
    ("/etc/passwd", "absolute"),
    ("../x", "'..' component"),
    ("metadata/../../x", "'..' component"),
    ("metadata/./x", "'.' or '..' component"),
    ("metadata/.hidden", "not a bundle name"),
    ("other/x.json", "not a bundle name"),
    ("metadata", "not a bundle name"),
    ("metadata//x", "not a bundle name"),
    ("metadata/x\n", "not a bundle name"),
    ("metadata\\..\\x", "not a bundle name"),
    ("metadata/a b", "not a bundle name"),
    ("bundle.json/x", "not a bundle name"),
    ("targets/" + "a" * 600, "not a bundle name"),
]


@pytest.mark.parametrize(("name", "why"), BAD_NAMES)
def test_writer_refuses_a_name_outside_the_pattern(tmp_path: Path, name: str, why: str) -> None:
    """B3 (path traversal): the writer refuses what the reader would; nothing is left."""
    with pytest.raises(BundleError, match=why):
        write_bundle(tmp_path / "b.tar", manifest(), [(name, b"{}")], max_bytes=BOUND)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("name", "why"), BAD_NAMES)
def test_reader_refuses_a_crafted_name_outside_the_pattern(
    tmp_path: Path, name: str, why: str
) -> None:
    """B3 (path traversal): a name the writer refuses is refused when read, too (R46, R42)."""
    refused(crafted(tmp_path, regular(name)), why, "make the bundle again")


@pytest.mark.parametrize(
    "name",
    [MANIFEST, AUTHORIZATION, "metadata/2.root.json", FIRMWARE, "targets/a/b/c-1.0+b2_x.bin"],
)
def test_the_names_a_repository_uses_are_accepted(name: str) -> None:
    """B3: every name the device's ngclient asks for fits the pattern."""
    assert check_member_name(name) == name


def test_a_name_that_is_not_a_string_is_refused() -> None:
    """B3: an empty name is no name."""
    with pytest.raises(BundleError, match="not a non-empty string"):
        check_member_name("")


@pytest.mark.parametrize("form", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_a_long_traversal_name_in_an_extended_header_is_refused(tmp_path: Path, form: int) -> None:
    """B3 (path traversal hidden in a pax 'path' record or a GNU long name; R46, R42)."""
    name = "metadata/" + "a" * 120 + "/../../../../etc/passwd"
    refused(crafted(tmp_path, regular(name), form=form), repr(name), "'..' component")


# --- B4: regular files only -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        (special("metadata/root.json", tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
        (special("metadata/root.json", tarfile.LNKTYPE, linkname="bundle.json"), "a hard link"),
        (special("metadata/tty", tarfile.CHRTYPE, devmajor=5, devminor=0), "character device"),
        (special("metadata/sda", tarfile.BLKTYPE, devmajor=8, devminor=0), "a block device"),
        (special("metadata/pipe", tarfile.FIFOTYPE), "a FIFO"),
        (special("metadata", tarfile.DIRTYPE), "a directory"),
        (special("metadata/x", tarfile.CONTTYPE, size=0), "a contiguous file"),
        (special("metadata/x", b"V"), "of tar type b'V'"),
    ],
)
def test_a_member_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, entry: tuple[tarfile.TarInfo, bytes | None], kind: str
) -> None:
    """B4 (link and device tricks): only REGTYPE/AREGTYPE members are read (R46, R42)."""
    message = refused(crafted(tmp_path, entry), kind, "regular files only")
    assert "fwserver bundle" in message


def test_an_aregtype_member_is_a_regular_file(tmp_path: Path) -> None:
    """B4: the old-style regular type ('\\0') is a regular file."""
    info, data = regular("metadata/2.root.json")
    info.type = tarfile.AREGTYPE
    path = crafted(tmp_path, (info, data), form=tarfile.USTAR_FORMAT)
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        assert bundle.read("metadata/2.root.json", limit=2) == b"{}"


def test_a_gnu_sparse_member_is_refused(tmp_path: Path) -> None:
    """B4: a GNU sparse member ('S') would read as other bytes than it stores (R46)."""
    entry = special("metadata/x", tarfile.GNUTYPE_SPARSE, size=0)
    refused(crafted(tmp_path, entry, form=tarfile.GNU_FORMAT), "a sparse file")


@pytest.mark.parametrize(
    "records",
    [
        {"GNU.sparse.map": "0,10", "GNU.sparse.realsize": "10"},
        {"GNU.sparse.size": "10", "GNU.sparse.numblocks": "1"},
        {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"},
    ],
)
def test_a_pax_sparse_member_is_refused_before_its_map_is_read(
    tmp_path: Path, records: dict[str, str]
) -> None:
    """B4, B7: pax sparse records (formats 0.0, 0.1, 1.0) are refused when their header is read.

    Format 1.0 keeps its map in the member's data, which tarfile would read
    block by block: a map of millions of entries would cost seconds of CPU (R46).
    """
    info, data = regular("metadata/x", b"99999999\n" + b"1\n" * 100_000)
    info.pax_headers = records
    refused(crafted(tmp_path, (info, data)), "sparse member (pax GNU.sparse record")


# --- B5: duplicates ---------------------------------------------------------------------------


def test_a_duplicate_name_is_refused_by_the_reader(tmp_path: Path) -> None:
    """B5 (tar keeps the last copy, another reader the first): refused outright (R46)."""
    path = crafted(tmp_path, regular("metadata/1.root.json"), regular("metadata/1.root.json"))
    refused(path, "'metadata/1.root.json' appears twice")


def test_a_duplicate_name_is_refused_by_the_writer(tmp_path: Path) -> None:
    """B5: and never written."""
    members: list[tuple[str, Path | bytes]] = [("metadata/x", b"1"), ("metadata/x", b"2")]
    with pytest.raises(BundleError, match="given twice"):
        write_bundle(tmp_path / "b.tar", manifest(), members, max_bytes=BOUND)
    assert leftovers(tmp_path) == []


# --- B6: whole members, whole file ---------------------------------------------------------


def test_a_bundle_cut_inside_a_member_is_refused(tmp_path: Path) -> None:
    """B6 (an interrupted copy to a USB key): the member's size runs past the end (R46, R51)."""
    path = made(tmp_path)
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        assert bundle.size(FIRMWARE) == 3000
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\x7fFW") + 100])
    refused(path, repr(FIRMWARE), "declares 3000 bytes", "past the end", "copy it again")


def test_a_bundle_cut_between_members_is_refused(tmp_path: Path) -> None:
    """B6: a copy cut at a header boundary is not read as a shorter bundle (R46, R51)."""
    one = tmp_path / "one"
    one.mkdir()
    cut = made(one, MEMBERS[:2]).read_bytes().rstrip(b"\0")
    path = made(tmp_path)
    length = -(-len(cut) // 512) * 512
    path.write_bytes(path.read_bytes()[:length])
    refused(path, f"no tar end-of-archive block at byte {length}")


def test_a_bundle_cut_inside_a_members_padding_is_refused(tmp_path: Path) -> None:
    """B6: the data is whole but the archive is not (R46, R51)."""
    path = made(tmp_path, MEMBERS[:1])
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b'{"root": 2}') + len(b'{"root": 2}')])
    refused(path, "unexpected end of data")


def test_a_damaged_header_in_the_middle_is_refused(tmp_path: Path) -> None:
    """B6: tarfile stops quietly at a bad header; the bundle reader does not (R46)."""
    path = made(tmp_path)
    data = bytearray(path.read_bytes())
    header = data.index(b"metadata/timestamp.json")
    data[header] ^= 0xFF  # the checksum no longer matches
    path.write_bytes(bytes(data))
    refused(path, "no tar end-of-archive block", "copy the bundle again")


@pytest.mark.parametrize(("size", "said"), [("-1024", "declares -1024 bytes"), ("99999", "99999")])
def test_a_member_size_outside_the_file_is_refused(tmp_path: Path, size: str, said: str) -> None:
    """B6: a pax 'size' record that points back (a loop) or past the end is refused (R46, R42)."""
    info = tarfile.TarInfo("metadata/x.json")
    info.pax_headers = {"size": size}
    refused(crafted(tmp_path, (info, None)), said, "past the end")


def test_the_file_shrinking_after_it_was_opened_is_refused(tmp_path: Path) -> None:
    """B6 (media removed mid-read): a short read is an error, never a shorter member (R46, R51)."""
    path = made(tmp_path)
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        os.truncate(path, 0)
        with pytest.raises(BundleError, match="became shorter"):
            bundle.read(FIRMWARE, limit=BOUND)


# --- B7: bounded headers ------------------------------------------------------------------


def test_an_extended_header_larger_than_its_bound_is_refused_unread(tmp_path: Path) -> None:
    """B7 (memory exhaustion): a huge pax header is refused before it is read (R46, R42)."""
    info, data = regular("metadata/x.json")
    info.pax_headers = {"comment": "x" * MAX_HEADER_BYTES}
    refused(crafted(tmp_path, (info, data)), f"more than the {MAX_HEADER_BYTES} bytes")


def test_a_long_run_of_digits_in_an_extended_header_is_refused_before_any_pattern_reads_it(
    tmp_path: Path,
) -> None:
    """B7 (CPU exhaustion, R51): ``[0-9]+ X`` searches backtrack over a run of digits.

    Python 3.11's ``tarfile`` (``\\d+ hdrcharset=``, CVE-2024-6232) and the
    reader's own sparse-record pattern take time quadratic in a run's length:
    seconds for one 64 KiB header, minutes for a bundle of them. A header
    holding a longer run than any name or number needs is refused first.
    """
    info, data = regular("metadata/x.json")
    info.pax_headers = {"comment": "1" * (MAX_HEADER_BYTES - 1024)}
    refused(crafted(tmp_path, (info, data)), f"more than {MAX_DIGITS} digits in a row")


def test_an_extended_header_naming_its_charset_again_and_again_is_refused(
    tmp_path: Path,
) -> None:
    """B7 (CPU exhaustion, R51): each ``hdrcharset=`` sends tarfile's search to the header's end.

    Thousands of them in one 64 KiB pax header took a second here (31 such
    headers fit the budget); one is all a header may name.
    """
    body = b"1 hdrcharset=" * 4000  # no newline: every match runs to the end
    pax = tarfile.TarInfo("pax")
    pax.type, pax.size = tarfile.XHDTYPE, len(body)
    member, _ = regular("metadata/x.json")
    path = tmp_path / "charset.tar"
    path.write_bytes(
        manifest_blocks()
        + pax.tobuf(tarfile.USTAR_FORMAT)
        + body.ljust(-(-len(body) // 512) * 512, b"\0")
        + member.tobuf()
        + b"{}".ljust(512, b"\0")
        + bytes(1024)
    )
    refused(path, "names its charset more than once")


def test_runs_of_digits_a_real_header_holds_are_read(tmp_path: Path) -> None:
    """B7: the bound on runs of digits leaves a numeric name segment and pax numbers alone."""
    name = "metadata/" + "7" * MAX_DIGITS + ".root.json"
    info, data = regular(name)
    info.mtime = 1_733_245_200.123456789
    with Bundle.open(crafted(tmp_path, (info, data)), max_bytes=BOUND) as bundle:
        assert bundle.names() == [MANIFEST, name]


def test_an_extended_header_of_negative_size_is_refused(tmp_path: Path) -> None:
    """B7: a base-256 negative size on a pax header is no header (R46)."""
    info = tarfile.TarInfo("pax")
    info.type = tarfile.XHDTYPE
    info.size = -512
    path = tmp_path / "negative.tar"
    path.write_bytes(manifest_blocks() + info.tobuf(tarfile.GNU_FORMAT) + bytes(1024))
    refused(path, "tar header of -512 bytes")


def test_a_long_chain_of_extended_headers_is_refused(tmp_path: Path) -> None:
    """B7: tarfile follows a pax chain by recursion; a crafted chain is a refusal, not a crash.

    Answers R46, R42.
    """
    info = tarfile.TarInfo("pax")
    info.type = tarfile.XHDTYPE
    chain = info.tobuf(tarfile.USTAR_FORMAT) * 3000
    member, _ = regular("metadata/x.json")
    path = tmp_path / "chain.tar"
    path.write_bytes(manifest_blocks() + chain + member.tobuf() + b"{}".ljust(512, b"\0"))
    refused(path, "not an uncompressed tar file", max_bytes=4 * BOUND)


def gnu_sparse_header(extension_blocks: int) -> bytes:
    """A GNU 'S' header followed by extension blocks that each say another follows."""
    info = tarfile.TarInfo("metadata/x")
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[482] = 1  # isextended
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    extension = bytearray(512)
    extension[504] = 1
    return bytes(header) + bytes(extension) * extension_blocks


def test_a_gnu_sparse_extension_chain_cannot_make_indexing_read_the_whole_file(
    tmp_path: Path,
) -> None:
    """B7: tarfile reads an 'S' header's extension chain before any type check; a budget ends it.

    Answers R46, R42.
    """
    path = tmp_path / "chain.tar"
    path.write_bytes(manifest_blocks() + gnu_sparse_header(10_000) + bytes(1024))
    refused(path, "tar headers take more than", max_bytes=16 * BOUND)


def test_a_gnu_sparse_extension_chain_cut_by_the_end_of_file_is_refused(tmp_path: Path) -> None:
    """B6, B7: the chain running off the end is a refusal, not an IndexError from tarfile (R46)."""
    path = tmp_path / "cut.tar"
    path.write_bytes(manifest_blocks() + gnu_sparse_header(3))
    refused(path, "not an uncompressed tar file")


def test_more_members_than_the_bound_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B7: the index holds at most MAX_MEMBERS members (R46, R42)."""
    monkeypatch.setattr(fwcommon.bundle, "MAX_MEMBERS", 3)
    at_bound = crafted(tmp_path, regular("metadata/a"), regular("metadata/b"))
    Bundle.open(at_bound, max_bytes=BOUND).close()
    over = crafted(tmp_path, regular("metadata/a"), regular("metadata/b"), regular("metadata/c"))
    refused(over, "more than 3 members")


def test_the_writer_refuses_more_members_than_a_device_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B7: a bundle every device would refuse is not written (nothing left behind)."""
    monkeypatch.setattr(fwcommon.bundle, "MAX_MEMBERS", 3)
    at_bound = [("metadata/a", b"{}"), ("metadata/b", b"{}")]
    write_bundle(tmp_path / "fits.tar", manifest(), at_bound, max_bytes=BOUND)
    with pytest.raises(BundleError, match="more than 3 members, more than a device reads"):
        write_bundle(
            tmp_path / "over.tar", manifest(), [*at_bound, ("metadata/c", b"{}")], max_bytes=BOUND
        )
    assert leftovers(tmp_path) == ["fits.tar"]


def test_a_bundle_of_max_members_with_long_names_fits_the_header_budget(tmp_path: Path) -> None:
    """B7: the bounds refuse crafted headers, not a real bundle at MAX_MEMBERS."""
    names = [f"targets/pump-x/{index:064x}.fw-{index}.bin" for index in range(MAX_MEMBERS - 1)]
    path = tmp_path / "full.tar"
    write_bundle(path, manifest(), [(name, b"x") for name in names], max_bytes=8 * BOUND)
    with Bundle.open(path, max_bytes=8 * BOUND) as bundle:
        assert bundle.names() == [MANIFEST, *names]


def test_a_mutated_bundle_is_refused_with_a_bundle_error_or_read(tmp_path: Path) -> None:
    """B1-B7 (fuzz): flipped bytes in the headers never raise anything but BundleError.

    Answers R46, R42.
    """
    original = made(tmp_path).read_bytes()
    rng = random.Random(13)  # noqa: S311 - a reproducible fuzz, not a secret
    path = tmp_path / "mutated.tar"
    for _ in range(400):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(0, 4096)] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with contextlib.suppress(BundleError):
            Bundle.open(path, max_bytes=BOUND).close()


# --- B8: the manifest -------------------------------------------------------------------------


def test_a_bundle_without_a_manifest_first_is_refused(tmp_path: Path) -> None:
    """B8: bundle.json is the first member, so `tar tvf` shows what the bundle is at once (R46)."""
    path = tmp_path / "late.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in (regular("metadata/1.root.json"), regular(MANIFEST, b"{}")):
            tar.addfile(info, io.BytesIO(data or b""))
    refused(path, "first member is 'metadata/1.root.json', not 'bundle.json'")


def test_an_archive_with_no_member_is_refused(tmp_path: Path) -> None:
    """B8: an empty tar holds no manifest (R46)."""
    path = tmp_path / "empty.tar"
    tarfile.open(path, "w").close()
    refused(path, "first member is None")


def test_an_oversized_manifest_is_refused(tmp_path: Path) -> None:
    """B8: bundle.json is read only up to its bound (R46)."""
    path = crafted(tmp_path, first=b" " * (MAX_MANIFEST_BYTES + 1))
    refused(path, f"'bundle.json' is {MAX_MANIFEST_BYTES + 1} bytes, more than")


def test_a_malformed_manifest_is_refused_when_the_bundle_is_opened(tmp_path: Path) -> None:
    """B8: the reader refuses a bundle whose manifest is not one (R46)."""
    refused(crafted(tmp_path, first=b"{"), "bundle.json is not valid JSON")


@pytest.mark.parametrize(
    ("authorization", "members"),
    [(AUTHORIZATION, []), (None, [regular(AUTHORIZATION)])],
)
def test_the_manifest_and_the_authorization_member_must_agree(
    tmp_path: Path, authorization: str | None, members: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    """B8 (R25): which authorization the device considers is never ambiguous."""
    first = manifest(authorization=authorization).to_json()
    refused(crafted(tmp_path, *members, first=first), "disagree about authorization.json")


def test_a_bundle_with_its_authorization_round_trips(tmp_path: Path) -> None:
    """B8: a manifest naming authorization.json with that member is read back."""
    path = tmp_path / "b.tar"
    named = manifest(authorization=AUTHORIZATION, device="dev-0001")
    write_bundle(path, named, [*MEMBERS, (AUTHORIZATION, b'{"a": 1}')], max_bytes=BOUND)
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        assert bundle.manifest == named
        assert bundle.read(AUTHORIZATION, limit=100) == b'{"a": 1}'


@pytest.mark.parametrize("authorization", [AUTHORIZATION, None])
def test_the_writer_refuses_a_manifest_that_disagrees_with_its_members(
    tmp_path: Path, authorization: str | None
) -> None:
    """B8: the writer never makes a bundle the reader would refuse."""
    members = MEMBERS if authorization else [*MEMBERS, (AUTHORIZATION, b"{}")]
    with pytest.raises(BundleError, match=r"disagree about authorization\.json"):
        write_bundle(
            tmp_path / "b.tar", manifest(authorization=authorization), members, max_bytes=BOUND
        )
    assert leftovers(tmp_path) == []


def test_the_writer_refuses_bundle_json_as_a_member(tmp_path: Path) -> None:
    """B8: the manifest is written from the Manifest, once."""
    with pytest.raises(BundleError, match="written from the manifest"):
        write_bundle(tmp_path / "b.tar", manifest(), [(MANIFEST, b"{}")], max_bytes=BOUND)


def document(**changes: Any) -> bytes:
    fields = json.loads(manifest().to_json())
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v != "<drop>"}).encode()


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"\xff", "not valid JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"format": "fwupdate-bundle", "format": "x"}', "holds a field twice"),
        (document(format="tar"), "names format 'tar'"),
        (document(format_version=2), "format version 2 is unknown"),
        (document(format_version=True), "format version True is unknown"),
        (document(root_from="<drop>"), "missing ['root_from']"),
        (document(extra=1), "unknown ['extra']"),
        (document(created="yesterday"), "ISO-8601 UTC"),
        (document(created="2026-12-03T17:00:00"), "ISO-8601 UTC"),
        (document(created="2026-12-03T18:00:00+01:00"), "ISO-8601 UTC"),
        (document(created=1796317200), "ISO-8601 UTC"),
        (document(root_from=0), "'root_from' must be a root version"),
        (document(root_from=True), "'root_from' must be a root version"),
        (document(root_from="1"), "'root_from' must be a root version"),
        (document(hardware_model=""), "'hardware_model' must be printable text"),
        (document(hardware_model=None), "'hardware_model' must be printable text"),
        (document(hardware_model="x" * 256), "'hardware_model' must be printable text"),
        (document(device="dev\x1b[2J"), "'device' must be null or printable text"),
        (document(release=7), "'release' must be null or printable text"),
        (document(authorization="other.json"), "'authorization' must be null or"),
    ],
)
def test_manifest_from_json_refuses_anything_malformed(data: bytes, said: str) -> None:
    """B8: strict fields, known format; untrusted text is printable (it reaches messages; R46)."""
    with pytest.raises(BundleError) as caught:
        Manifest.from_json(data)
    assert said in str(caught.value)


def test_manifest_json_is_readable_and_round_trips() -> None:
    """B8: indented, sorted, UTC 'Z' time; from_json(to_json(m)) == m."""
    written = manifest(device="dev-0001").to_json()
    assert b'"created": "2026-12-03T17:00:00Z"' in written
    assert b'"format": "fwupdate-bundle"' in written
    assert Manifest.from_json(written) == manifest(device="dev-0001")
    assert FORMAT in written.decode()


def test_manifest_keeps_a_time_given_in_another_zone_as_the_same_instant() -> None:
    """B8: any aware time is written in UTC."""
    paris = CREATED.astimezone(timezone(timedelta(hours=1)))
    assert Manifest.from_json(manifest(created=paris).to_json()).created == CREATED


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"created": datetime(2026, 12, 3, 17, 0)}, "timezone-aware"),
        ({"created": "2026-12-03T17:00:00Z"}, "timezone-aware"),
        ({"root_from": 0}, "root_from"),
        ({"hardware_model": "a\nb"}, "hardware_model"),
    ],
)
def test_a_manifest_checks_itself_when_built(changes: dict[str, Any], said: str) -> None:
    """B8: the writer cannot make a manifest the reader would refuse."""
    with pytest.raises(BundleError, match=said):
        manifest(**changes)


# --- B9: never extracted, bounded reads ----------------------------------------------------


def test_read_refuses_a_member_larger_than_the_limit(tmp_path: Path) -> None:
    """B9: the caller bounds what it takes into memory (R46)."""
    with Bundle.open(made(tmp_path), max_bytes=BOUND) as bundle:
        assert len(bundle.read(FIRMWARE, limit=3000)) == 3000
        with pytest.raises(BundleError, match=rf"{FIRMWARE!r} is 3000 bytes, more than the 2999"):
            bundle.read(FIRMWARE, limit=2999)


def test_a_member_stream_ends_where_the_member_ends(tmp_path: Path) -> None:
    """B9: a stream never runs into the next member's header or data (R46)."""
    with Bundle.open(made(tmp_path), max_bytes=BOUND) as bundle:
        stream = bundle.open_member("metadata/2.root.json")
        assert stream.read(4) == b'{"ro'
        assert stream.read(1000) == b'ot": 2}'
        assert stream.read(1) == b""


def test_an_absent_member_is_a_bundle_error_not_a_key_error(tmp_path: Path) -> None:
    """B9: lookup is by exact name only; a traversal name is simply absent (R46)."""
    with Bundle.open(made(tmp_path), max_bytes=BOUND) as bundle:
        for call in (bundle.size, bundle.open_member):
            with pytest.raises(BundleError, match=r"holds no member '\.\./metadata/2\.root"):
                call("../metadata/2.root.json")
        with pytest.raises(BundleError, match=r"holds no member 'metadata/3\.root\.json'"):
            bundle.read("metadata/3.root.json", limit=BOUND)


def test_a_closed_bundle_reads_nothing(tmp_path: Path) -> None:
    """B9: after close, no read can reach a reused descriptor."""
    bundle = Bundle.open(made(tmp_path), max_bytes=BOUND)
    stream = bundle.open_member(FIRMWARE)
    bundle.close()
    bundle.close()  # closing twice is harmless
    with pytest.raises(BundleError, match="the bundle is closed"):
        bundle.read(FIRMWARE, limit=BOUND)
    with pytest.raises(BundleError, match="the bundle is closed"):
        stream.read()
    assert bundle.names()[0] == MANIFEST


def test_opening_leaves_no_file_on_disk(tmp_path: Path) -> None:
    """B9: reading a bundle never extracts anything (R46)."""
    path = made(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with Bundle.open(path, max_bytes=BOUND) as bundle:
        for name in bundle.names():
            bundle.read(name, limit=BOUND)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# --- B10: atomic writes ---------------------------------------------------------------------


def failing_members() -> Iterator[tuple[str, Path | bytes]]:
    yield "metadata/2.root.json", b"{}"
    raise RuntimeError("the repository went away")


def test_a_failing_member_source_leaves_no_file_and_no_temp_file(tmp_path: Path) -> None:
    """B10: an exception mid-write leaves the directory as it was, old bundle included."""
    path = tmp_path / "bundle.tar"
    path.write_bytes(b"the previous bundle")
    with pytest.raises(RuntimeError, match="went away"):
        write_bundle(path, manifest(), failing_members(), max_bytes=BOUND)
    assert leftovers(tmp_path) == ["bundle.tar"]
    assert path.read_bytes() == b"the previous bundle"


@pytest.mark.parametrize("source", ["missing.bin", "."])
def test_a_member_source_that_is_no_file_is_refused(tmp_path: Path, source: str) -> None:
    """B10: a missing or non-regular source is named; nothing is left."""
    members: list[tuple[str, Path | bytes]] = [(FIRMWARE, tmp_path / source)]
    with pytest.raises(BundleError, match=f"member source for {FIRMWARE!r}"):
        write_bundle(tmp_path / "b.tar", manifest(), members, max_bytes=BOUND)
    assert leftovers(tmp_path) == []


def test_a_member_source_that_shrinks_while_copied_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B10: a source shorter than its size at opening fails the write, atomically."""
    image = tmp_path / "image.bin"
    image.write_bytes(b"x" * 10_000)
    real_fstat = os.fstat

    def growing_fstat(fd: int) -> os.stat_result:
        status = real_fstat(fd)
        if status.st_size == 10_000:
            return os.stat_result((*status[:6], 20_000, *status[7:]))
        return status

    monkeypatch.setattr(os, "fstat", growing_fstat)
    with pytest.raises(BundleError, match="cannot write the bundle"):
        write_bundle(tmp_path / "b.tar", manifest(), [(FIRMWARE, image)], max_bytes=BOUND)
    assert leftovers(tmp_path) == ["image.bin"]


def test_a_bundle_path_that_cannot_be_replaced_leaves_no_temp_file(tmp_path: Path) -> None:
    """B10: the rename failing (a directory in the way) leaves nothing behind."""
    (tmp_path / "bundle.tar" / "inside").mkdir(parents=True)
    with pytest.raises(BundleError, match="cannot write the bundle"):
        write_bundle(tmp_path / "bundle.tar", manifest(), MEMBERS, max_bytes=BOUND)
    assert leftovers(tmp_path) == ["bundle.tar"]


def test_a_missing_output_directory_is_refused(tmp_path: Path) -> None:
    """B10: the writer creates no directory (an unmounted USB key is a mistake to report; R51)."""
    with pytest.raises(BundleError, match="cannot write a bundle in"):
        write_bundle(tmp_path / "usb" / "b.tar", manifest(), MEMBERS, max_bytes=BOUND)
    assert leftovers(tmp_path) == []
