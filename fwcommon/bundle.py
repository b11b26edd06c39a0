"""Offline update bundles: one file that carries a repository's bytes on removable media.

A bundle is only another way to carry bytes: the device trusts what it holds
exactly as much as TUF says (R13), so this module decides nothing about trust.
What it does decide is that a file from a USB key (ANSM R46, R51: removable
media carry accidents and attacks) can be read without ever touching the file
system or reading more than it should. The rules, cited by the tests and by
docs/bundle-format.md:

* B1 Format: one uncompressed POSIX tar (pax), so ``tar tvf`` inspects it. The
  reader opens it with ``tarfile`` mode ``"r:"`` only: a compressed file is
  refused, never inflated (no decompression bomb).
* B2 Whole-file bound: the bundle must be a regular file, and its size, read
  with ``fstat`` on the opened descriptor before any byte of it is read, must
  not exceed ``max_bytes``. The writer refuses a member that would take the
  bundle over its bound before writing that member.
* B3 Names: every member name matches ``NAME`` (``bundle.json``,
  ``authorization.json``, or ``metadata/...`` and ``targets/...`` of letters,
  digits and ``. _ + -``, no segment starting with a dot), is at most
  ``MAX_NAME`` characters, is relative and has no ``.`` or ``..`` component.
  The writer and the reader apply the same check.
* B4 Regular files only: a member is of tar type REGTYPE or AREGTYPE; symbolic
  and hard links, devices, FIFOs, directories, contiguous and sparse files
  are refused; pax ``GNU.sparse.*`` records are refused as soon as their
  header is read, before ``tarfile`` would read a sparse map.
* B5 One member per name: a duplicate name is refused (tar would keep the
  last, another reader the first).
* B6 Whole members, whole file: a member's declared size is not negative and
  its data ends inside the file, and the archive ends with tar's end-of-archive
  block. A truncated or damaged copy is refused, not read as a shorter bundle.
* B7 Bounded headers: indexing reads headers only, no read of them larger than
  ``MAX_HEADER_BYTES`` (one pax or GNU long-name header) and at most
  ``MAX_INDEX_BYTES`` in all, each refused before it is read, and a bundle
  holds at most ``MAX_MEMBERS`` members (the writer refuses more); a header with a run of more than
  ``MAX_DIGITS`` digits, or naming ``hdrcharset`` more than once, is refused
  before any pattern searches it (``tarfile``'s pax parsing backtracks over
  either, CVE-2024-6232): indexing costs little time
  and memory whatever the file holds (a crafted sparse map or header chain included).
* B8 Manifest: ``bundle.json`` is the first member, at most
  ``MAX_MANIFEST_BYTES``, of exactly the fields of ``Manifest``, with a known
  ``format`` and ``format_version``; it names ``authorization.json`` exactly
  when the bundle holds that member. It is untrusted and informational only.
* B9 Never extracted: the reader indexes member headers and hands out a
  member's bytes by exact name lookup, as a stream bounded to that member or as
  bytes up to the caller's limit, so path traversal is impossible by
  construction (and still refused, B3, when seen).
* B10 Atomic writes: the writer writes ``bundle.json`` first, into a temporary
  file in the target's directory, syncs it and renames it over the target; on
  any failure neither the bundle nor the temporary file is left. Its headers
  are deterministic (mtime ``created``, owner 0, mode 0644).

Every refusal is a ``BundleError`` whose message says what was wrong and what
to do.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from fwcommon.files import fsync_dir

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

FORMAT: Final = "fwupdate-bundle"
FORMAT_VERSION: Final = 1
MANIFEST: Final = "bundle.json"
AUTHORIZATION: Final = "authorization.json"
DEFAULT_MAX_BYTES: Final = 4 * 1024**3  # the default bound of a whole bundle (B2)

#: B3: the names a bundle may hold (``\Z``: ``$`` would accept a final newline).
NAME: Final = re.compile(
    r"^(bundle\.json|authorization\.json|(metadata|targets)(/[A-Za-z0-9][A-Za-z0-9._+-]*)+)\Z"
)
MAX_NAME: Final = 512  # "targets/" + a 64-hex prefix + a 255-character target path fits
MAX_HEADER_BYTES: Final = 64 * 1024  # B7: one pax or GNU long-name header
MAX_INDEX_BYTES: Final = 2 * 1024**2  # B7: every header together (1,000 pax members fit)
#: B7: the longest run of digits a header may hold (a name segment, a pax number).
MAX_DIGITS: Final = 128
MAX_MEMBERS: Final = 1_000  # B7: a root chain, the roles, a release and its SBOM fit many times
MAX_MANIFEST_BYTES: Final = 64 * 1024  # B8
MAX_TEXT: Final = 255  # a manifest text field

REMAKE: Final = "make the bundle again with fwserver bundle"
_BLOCK: Final = tarfile.BLOCKSIZE
_RECORD: Final = tarfile.RECORDSIZE
_REGULAR: Final = (tarfile.REGTYPE, tarfile.AREGTYPE)
_SPARSE_RECORD: Final = re.compile(rb"[0-9]+ GNU\.sparse\.")  # B4: a pax record's start
_DIGITS: Final = re.compile(rb"[0-9]+")  # B7: runs of digits, found in linear time
_KIND: Final = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.DIRTYPE: "a directory",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_FIELDS: Final = frozenset(
    {
        "format",
        "format_version",
        "created",
        "hardware_model",
        "device",
        "root_from",
        "release",
        "authorization",
    }
)


class BundleError(Exception):
    """A bundle that cannot be written or read; ``str(e)`` says what is wrong and what to do."""


# --- B3: names -------------------------------------------------------------------------


def check_member_name(name: str) -> str:
    """Return ``name`` if a bundle may hold a member of that name (B3), else raise."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"bundle member name {name!r} is not a non-empty string; {REMAKE}")
    if name.startswith("/"):
        raise BundleError(
            f"bundle member {name!r} has an absolute name: bundle names are relative; {REMAKE}"
        )
    if any(part in (".", "..") for part in name.split("/")):
        raise BundleError(
            f"bundle member {name!r} has a '.' or '..' component (path traversal): "
            f"refused; {REMAKE}"
        )
    if len(name) > MAX_NAME or not NAME.match(name):
        raise BundleError(
            f"bundle member {name!r} is not a bundle name (bundle.json, authorization.json, "
            f"metadata/... or targets/... of letters, digits and . _ + -, at most {MAX_NAME} "
            f"characters); {REMAKE}"
        )
    return name


# --- B8: the manifest ------------------------------------------------------------------


def _text(field: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT or not value.isprintable():
        kind = "null or " if optional else ""
        raise BundleError(
            f"bundle.json field {field!r} must be {kind}printable text of 1 to {MAX_TEXT} "
            f"characters, not {value!r:.80}; {REMAKE}"
        )


def _created(value: object) -> datetime:
    """An ISO-8601 UTC time, as ``Manifest.to_json`` writes it."""
    try:
        created = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        created = None
    if created is None or created.utcoffset() != timedelta(0):
        raise BundleError(
            f"bundle.json field 'created' must be an ISO-8601 UTC time such as "
            f"2026-12-03T17:00:00Z, not {value!r:.80}; {REMAKE}"
        )
    return created


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BundleError(f"bundle.json holds a field twice; {REMAKE}")
    return dict(pairs)


def _document(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"bundle.json is not valid JSON ({exc}); {REMAKE}") from None
    if not isinstance(document, dict):
        raise BundleError(f"bundle.json is not a JSON object; {REMAKE}")
    _check_format(document)
    return document


def _check_format(document: dict[str, Any]) -> None:
    if document.get("format") != FORMAT:
        raise BundleError(
            f"bundle.json names format {document.get('format')!r:.80}, not {FORMAT!r}: this "
            f"file is not an update bundle; use a bundle made with fwserver bundle"
        )
    version = document.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {version!r:.80} is unknown: this software reads version "
            f"{FORMAT_VERSION}; make the bundle with a server of the device's release, or update "
            f"the device's software first"
        )
    if set(document) != _FIELDS:
        missing, unknown = sorted(_FIELDS - set(document)), sorted(set(document) - _FIELDS)
        raise BundleError(
            f"bundle.json fields do not match format version {FORMAT_VERSION} (missing "
            f"{missing}, unknown {unknown}); {REMAKE}"
        )


@dataclass(frozen=True)
class Manifest:
    """The bundle's ``bundle.json`` (B8): untrusted, for messages and choosing members only.

    It checks itself when built, so a manifest read and a manifest written
    pass the same checks; ``created`` is any timezone-aware time, written in UTC.
    """

    hardware_model: str
    device: str | None
    created: datetime
    root_from: int
    release: str | None
    authorization: str | None

    def __post_init__(self) -> None:
        _text("hardware_model", self.hardware_model, optional=False)
        _text("device", self.device, optional=True)
        if not isinstance(self.created, datetime) or self.created.utcoffset() is None:
            raise BundleError(
                f"bundle.json field 'created' must be a timezone-aware time; {REMAKE}"
            )
        if type(self.root_from) is not int or self.root_from < 1:
            raise BundleError(
                f"bundle.json field 'root_from' must be a root version (an integer of at least "
                f"1), not {self.root_from!r:.80}; {REMAKE}"
            )
        _text("release", self.release, optional=True)
        if self.authorization not in (None, AUTHORIZATION):
            raise BundleError(
                f"bundle.json field 'authorization' must be null or {AUTHORIZATION!r}, not "
                f"{self.authorization!r:.80}; {REMAKE}"
            )

    def to_json(self) -> bytes:
        """The manifest as ``bundle.json`` holds it: indented, sorted keys, a final newline."""
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": self.created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "hardware_model": self.hardware_model,
            "device": self.device,
            "root_from": self.root_from,
            "release": self.release,
            "authorization": self.authorization,
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse ``bundle.json``; ``BundleError`` on anything malformed or unknown (B8)."""
        document = _document(data)
        return cls(
            hardware_model=document["hardware_model"],
            device=document["device"],
            created=_created(document["created"]),
            root_from=document["root_from"],
            release=document["release"],
            authorization=document["authorization"],
        )


# --- B2: opening a file -----------------------------------------------------------------


def _not_regular(what: str, path: Path) -> BundleError:
    return BundleError(f"{what} {path} is not a regular file; give the path of the file")


def _open_regular(path: Path, what: str) -> tuple[int, int]:
    """A descriptor on ``path`` and its size, refused unless a regular file (B2).

    A device is refused before it is opened (opening some, a watchdog or a
    tape, acts); ``fstat`` on the descriptor is the check that holds if the
    path changes in between, and ``O_NONBLOCK`` makes a FIFO swapped in then
    a refusal instead of an open that blocks.
    """
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            raise _not_regular(what, path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"cannot open {what} {path}: {exc.strerror}; check the path") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise _not_regular(what, path)
    os.set_blocking(fd, True)
    return fd, status.st_size


class _Source:
    """The opened bundle: positional reads inside the size seen at opening."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size, self.closed = fd, size, False

    def pread(self, offset: int, count: int) -> bytes:
        """Exactly ``count`` bytes at ``offset``; a file that shrank since opening is refused."""
        if self.closed:
            raise BundleError("the bundle is closed; open it again to read its members")
        chunks, done = [], 0
        while done < count:
            chunk = os.pread(self.fd, count - done, offset + done)
            if not chunk:
                raise BundleError(
                    "the bundle file became shorter while it was read (media removed or the "
                    "file replaced?); copy the bundle again and retry"
                )
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class _HeaderReader:
    """The file object ``tarfile`` indexes through: reads bounded to one header (B7)."""

    def __init__(self, source: _Source) -> None:
        self._source, self._position, self._spent = source, 0, 0

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_HEADER_BYTES:
            raise BundleError(
                f"bundle holds a tar header of {size} bytes at byte {self._position}, more than "
                f"the {MAX_HEADER_BYTES} bytes a bundle's header may have; {REMAKE}"
            )
        self._spent += size
        if self._spent > MAX_INDEX_BYTES:
            raise BundleError(
                f"bundle's tar headers take more than {MAX_INDEX_BYTES} bytes (too many members "
                f"or a crafted header); {REMAKE}"
            )
        count = max(0, min(size, self._source.size - self._position))
        data = self._source.pread(self._position, count)
        if any(len(run) > MAX_DIGITS for run in _DIGITS.findall(data)):  # before any search
            raise BundleError(
                f"bundle holds a tar header with more than {MAX_DIGITS} digits in a row at byte "
                f"{self._position} (a crafted header, slow to parse); {REMAKE}"
            )
        if data.count(b"hdrcharset=") > 1:  # each one is a search to the header's end
            raise BundleError(
                f"bundle holds a tar header that names its charset more than once at byte "
                f"{self._position} (a crafted header, slow to parse); {REMAKE}"
            )
        if _SPARSE_RECORD.search(data):
            raise BundleError(
                f"bundle holds a sparse member (pax GNU.sparse record at byte {self._position}): "
                f"a bundle holds regular files only; {REMAKE}"
            )
        self._position += count
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._position = offset  # tarfile seeks only to absolute offsets when reading
        return offset

    def tell(self) -> int:
        return self._position


# --- B3-B7: the index -------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    name: str
    offset: int  # of its first data byte
    size: int


def _checked(info: tarfile.TarInfo, file_size: int) -> _Member:
    name = info.name
    # B4; a pax sparse map is refused when read (_HeaderReader), sparse here only as a 2nd check
    if info.type not in _REGULAR or info.sparse is not None:
        kind = "a sparse file" if info.type in _REGULAR else _KIND.get(info.type)
        kind = kind or f"of tar type {info.type!r}"
        raise BundleError(
            f"bundle member {name!r} is {kind}: a bundle holds regular files only; {REMAKE}"
        )
    check_member_name(name)
    if info.size < 0 or info.offset_data + info.size > file_size:
        raise BundleError(
            f"bundle member {name!r} declares {info.size} bytes at byte {info.offset_data}, "
            f"past the end of the {file_size}-byte file: the bundle is truncated or damaged; "
            f"copy it again"
        )
    return _Member(name, info.offset_data, info.size)


def _members(tar: tarfile.TarFile, file_size: int) -> Iterator[_Member]:
    while (info := tar.next()) is not None:
        yield _checked(info, file_size)


def _check_end(source: _Source, offset: int) -> None:
    """B6: the archive ends with a zero block, not with the end of a cut copy."""
    block = source.pread(offset, min(_BLOCK, source.size - offset))
    if block != bytes(_BLOCK):
        raise BundleError(
            f"bundle has no tar end-of-archive block at byte {offset} (a truncated copy, or a "
            f"damaged header): copy the bundle again"
        )


def _index(source: _Source) -> dict[str, _Member]:
    index: dict[str, _Member] = {}
    try:
        with tarfile.open(
            fileobj=_HeaderReader(source),  # type: ignore[call-overload]
            mode="r:",
            encoding="utf-8",
        ) as tar:
            for member in _members(tar, source.size):
                if member.name in index:
                    raise BundleError(f"bundle member {member.name!r} appears twice; {REMAKE}")
                if len(index) == MAX_MEMBERS:
                    raise BundleError(f"bundle holds more than {MAX_MEMBERS} members; {REMAKE}")
                index[member.name] = member
            _check_end(source, tar.offset)
    except (tarfile.TarError, RecursionError, ValueError, IndexError) as exc:
        raise BundleError(
            f"bundle is not an uncompressed tar file ({exc}); use the .tar file fwserver bundle "
            f"makes, not a compressed or damaged copy"
        ) from None
    return index


def _manifest(source: _Source, index: dict[str, _Member]) -> Manifest:
    first = next(iter(index), None)
    if first != MANIFEST:
        raise BundleError(
            f"bundle's first member is {first!r}, not {MANIFEST!r}: not an update bundle; {REMAKE}"
        )
    manifest = Manifest.from_json(_read(source, index[MANIFEST], limit=MAX_MANIFEST_BYTES))
    if (manifest.authorization is not None) != (AUTHORIZATION in index):
        raise BundleError(
            f"bundle.json and the bundle's members disagree about {AUTHORIZATION}; {REMAKE}"
        )
    return manifest


def _read(source: _Source, member: _Member, *, limit: int) -> bytes:
    if member.size > limit:
        raise BundleError(
            f"bundle member {member.name!r} is {member.size} bytes, more than the {limit} bytes "
            f"expected of it; {REMAKE}"
        )
    return source.pread(member.offset, member.size)


# --- B9: the reader ---------------------------------------------------------------------


class _MemberStream(io.RawIOBase):
    """One member's bytes and nothing past them (B9)."""

    def __init__(self, source: _Source, member: _Member) -> None:
        super().__init__()
        self._source, self._member, self._position = source, member, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self._member.size - self._position)
        data = self._source.pread(self._member.offset + self._position, count)
        view[:count] = data
        self._position += count
        return count


def _check_bound(max_bytes: int) -> None:
    if type(max_bytes) is not int or max_bytes <= 0:
        raise BundleError(f"max_bytes must be a positive number of bytes, not {max_bytes!r}")


class Bundle:
    """A bundle opened for reading (B1-B9); a context manager that closes it."""

    def __init__(self, source: _Source, index: dict[str, _Member], manifest: Manifest) -> None:
        self._source, self._index, self.manifest = source, index, manifest

    @classmethod
    def open(cls, path: Path, *, max_bytes: int) -> Bundle:
        """Open, bound (B2), index (B3-B7) and read the manifest of the bundle at ``path``."""
        _check_bound(max_bytes)
        fd, size = _open_regular(path, "bundle")
        if size > max_bytes:
            os.close(fd)
            raise BundleError(
                f"bundle {path} is {size} bytes, more than the bound of {max_bytes} bytes: "
                f"refused before reading it; use the bundle made for this device"
            )
        source = _Source(fd, size)
        try:
            index = _index(source)
            return cls(source, index, _manifest(source, index))
        except BaseException:
            source.close()
            raise

    def names(self) -> list[str]:
        """The member names, in the bundle's order (``bundle.json`` first)."""
        return list(self._index)

    def _member(self, name: str) -> _Member:
        member = self._index.get(name)
        if member is None:
            raise BundleError(
                f"the bundle holds no member {name!r}; make a bundle that carries it "
                f"({REMAKE} for this device)"
            )
        return member

    def size(self, name: str) -> int:
        """The size of member ``name``; ``BundleError`` when the bundle has none."""
        return self._member(name).size

    def open_member(self, name: str) -> BinaryIO:
        """A stream of member ``name``'s bytes, ending where the member ends."""
        return io.BufferedReader(_MemberStream(self._source, self._member(name)))

    def read(self, name: str, *, limit: int) -> bytes:
        """Member ``name``'s bytes; ``BundleError`` when it is larger than ``limit``."""
        return _read(self._source, self._member(name), limit=limit)

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- B10: the writer --------------------------------------------------------------------


def _final_size(offset: int) -> int:
    """The file's size once ``TarFile.close`` adds the end blocks and pads to a record."""
    end = offset + 2 * _BLOCK
    return -(-end // _RECORD) * _RECORD


def _data_size(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


class _Writer:
    """The tar being written, refusing a member that would pass the bound (B2)."""

    def __init__(self, tar: tarfile.TarFile, *, mtime: int, max_bytes: int) -> None:
        self._tar, self._mtime, self._max_bytes = tar, mtime, max_bytes
        self.names: set[str] = set()

    def add(self, name: str, handle: BinaryIO, size: int) -> None:
        if name in self.names:
            raise BundleError(f"bundle member {name!r} given twice; give each member once")
        if len(self.names) == MAX_MEMBERS:  # B7: the reader's bound, so never a dead bundle
            raise BundleError(
                f"the bundle would hold more than {MAX_MEMBERS} members, more than a device "
                f"reads; make a bundle for one device, or for fewer releases"
            )
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self._mtime, 0o644
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")
        total = _final_size(self._tar.offset + len(header) + _data_size(size))
        if total > self._max_bytes:
            raise BundleError(
                f"the bundle would be {total} bytes with member {name!r} ({size} bytes), more "
                f"than the bound of {self._max_bytes} bytes; leave members out or raise the bound"
            )
        self._tar.addfile(info, handle)
        self.names.add(name)

    def add_source(self, name: str, source: Path | bytes) -> None:
        check_member_name(name)
        if name == MANIFEST:
            raise BundleError(
                f"{MANIFEST} is written from the manifest; do not pass it as a member"
            )
        if isinstance(source, bytes):
            self.add(name, io.BytesIO(source), len(source))
            return
        fd, size = _open_regular(source, f"member source for {name!r}")
        with os.fdopen(fd, "rb") as handle:
            self.add(name, handle, size)


def _write_tar(
    handle: BinaryIO,
    manifest: Manifest,
    members: Iterable[tuple[str, Path | bytes]],
    max_bytes: int,
) -> None:
    mtime = int(manifest.created.timestamp())
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        writer = _Writer(tar, mtime=mtime, max_bytes=max_bytes)
        data = manifest.to_json()
        writer.add(MANIFEST, io.BytesIO(data), len(data))
        for name, source in members:
            writer.add_source(name, source)
        if (manifest.authorization is not None) != (AUTHORIZATION in writer.names):
            raise BundleError(
                f"the manifest's authorization ({manifest.authorization!r}) and the members "
                f"disagree about {AUTHORIZATION}; name it in the manifest exactly when it is given"
            )


def write_bundle(
    path: Path,
    manifest: Manifest,
    members: Iterable[tuple[str, Path | bytes]],
    *,
    max_bytes: int,
) -> int:
    """Write the bundle atomically at ``path`` (B10) and return its size in bytes.

    ``members`` are (name, bytes or a file to stream) in the order to write
    them; ``bundle.json`` is written first, from ``manifest``. Any refusal
    (B2, B3, B5) or failure leaves no file at ``path`` changed and no
    temporary file behind.
    """
    _check_bound(max_bytes)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BundleError(f"cannot write a bundle in {path.parent}: {exc.strerror}") from None
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_tar(handle, manifest, members, max_bytes)
            handle.flush()
            os.fsync(handle.fileno())
            size = os.fstat(handle.fileno()).st_size
        temporary.chmod(0o644)
        temporary.replace(path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BundleError(
                f"cannot write the bundle {path}: {exc}; check the member files, the free space "
                f"and the directory, then make it again"
            ) from exc
        raise
    fsync_dir(path.parent)
    return size
