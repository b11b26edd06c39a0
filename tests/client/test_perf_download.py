"""The download's one pass into the slot: checkpoints spaced in time, bytes checked at commit.

A ``Link`` serves an image in chunks at a given rate on a simulated clock, so
a test says how fast the network is without waiting for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client import download
from client.download import download_into
from client.errors import InstallError
from client.events import EventType
from client.fetcher import ResumableFetcher
from client.slots import SlotWriter, open_inactive
from client.state import StateDir
from tests.client.helpers_state import NOW, Release, SignedLine, provision

MIB = 1024 * 1024
URL = "https://updates.test/targets/pump-x100/fw.bin"


class Link(ResumableFetcher):
    """Serves ``image`` at ``rate`` bytes/s of simulated time (``now``)."""

    def __init__(self, image: bytes, *, rate: float, chunk: int = 64 * 1024) -> None:
        super().__init__()
        self.image = image
        self.rate = rate
        self.chunk = chunk
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        for start in range(offset, len(self.image), self.chunk):
            block = self.image[start : start + self.chunk]
            self.now += len(block) / self.rate
            yield block


@pytest.fixture
def device(tmp_path: Path, line: SignedLine) -> StateDir:
    return provision(tmp_path / "device", line)


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The slot offset at each checkpoint the download makes."""
    offsets: list[int] = []
    real = SlotWriter.checkpoint

    def counted(writer: SlotWriter) -> None:
        offsets.append(writer.offset)
        real(writer)

    monkeypatch.setattr(SlotWriter, "checkpoint", counted)
    return offsets


def fetch(device: StateDir, release: Release, link: Link) -> SlotWriter:
    with open_inactive(device, release.target) as writer:
        download_into(writer, fetcher=link, url=URL, clock=link.clock)
    return writer


def test_a_fast_download_is_not_checkpointed_before_its_commit(
    device: StateDir, line: SignedLine, checkpoints: list[int]
) -> None:
    release = line.release("1.0.0", 1, size=4 * MIB)
    with open_inactive(device, release.target) as writer:
        link = Link(release.image, rate=500 * MIB)
        download_into(writer, fetcher=link, url=URL, clock=link.clock)
        assert checkpoints == [], "no fsync before the one commit makes"
        writer.commit(record=release.record, evidence=release.evidence, now=NOW)
    assert device.bootenv().pending == writer.slot


def test_a_slow_download_is_checkpointed_about_once_a_second(
    device: StateDir, line: SignedLine, checkpoints: list[int]
) -> None:
    release = line.release("1.0.0", 1, size=4 * MIB)
    fetch(device, release, Link(release.image, rate=MIB))
    assert checkpoints == [MIB, 2 * MIB, 3 * MIB, 4 * MIB]


def test_a_trickle_is_not_checkpointed_before_a_checkpoints_worth_of_bytes(
    device: StateDir, line: SignedLine, checkpoints: list[int]
) -> None:
    release = line.release("1.0.0", 1, size=download.CHECKPOINT * 3 // 2)
    fetch(device, release, Link(release.image, rate=16 * 1024, chunk=16 * 1024))
    assert checkpoints == [download.CHECKPOINT], "one per CHECKPOINT bytes, not per second"


def test_a_stopped_download_checkpoints_what_arrived(
    device: StateDir, line: SignedLine, checkpoints: list[int]
) -> None:
    release = line.release("1.0.0", 1, size=2 * MIB)
    link = Link(release.image, rate=500 * MIB)
    with (
        open_inactive(device, release.target) as writer,
        pytest.raises(download.DownloadStoppedError),
    ):
        download_into(writer, fetcher=link, url=URL, clock=link.clock, should_stop=lambda: True)
    assert checkpoints == [link.chunk]
    with open_inactive(device, release.target) as resumed:
        assert resumed.offset == link.chunk, "a resume starts from the durable offset"


def test_wrong_bytes_are_refused_by_the_commit_read_back_and_cleared(
    device: StateDir, line: SignedLine
) -> None:
    release = line.release("1.0.0", 1, size=MIB)
    wrong = bytes(len(release.image))
    with open_inactive(device, release.target) as writer:
        download_into(writer, fetcher=Link(wrong, rate=500 * MIB), url=URL)
        with pytest.raises(InstallError) as raised:
            writer.commit(record=release.record, evidence=release.evidence, now=NOW)
    assert raised.value.event is EventType.BAD_HASH
    assert device.slot_image(writer.slot).read_bytes() == b""
    assert device.bootenv().pending is None
