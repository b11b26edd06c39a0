"""The HTTPS fetcher's answers to what a server (or a man in the middle) sends.

The wire itself is tested against the real server in ``tests/e2e``; here a
stand-in pool returns the responses that are awkward to provoke there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import urllib3
from tuf.api.exceptions import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    SlowRetrievalError,
)

from client.fetcher import BLOCK, Fetched, HttpsFetcher, Pace
from client.update import classify

URL = "https://updates.test/targets/x/abc.fw.bin"
BODY = bytes(range(256)) * 10


class FakeResponse:
    def __init__(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, chunk: int = 0
    ) -> None:
        self.chunk = chunk
        self.position = 0
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.released = False
        self.closed = False

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes (``chunk`` at most: what one socket read brings)."""
        size = min(self.chunk or size, size)
        block = self.body[self.position : self.position + size]
        self.position += len(block)
        return block

    def drain_conn(self) -> None:
        pass

    def release_conn(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


class FakePool:
    def __init__(self, response: FakeResponse | Exception) -> None:
        self.response = response
        self.headers: list[dict[str, str]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.headers.append(kwargs.get("headers", {}))
        if isinstance(self.response, Exception):
            raise self.response
        self.response.position = 0  # each request reads the body anew
        return self.response


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    file = tmp_path / "ca.pem"
    file.write_text("placeholder\n")
    return file


def fetcher_with(ca: Path, response: FakeResponse | Exception) -> tuple[HttpsFetcher, FakePool]:
    fetcher = HttpsFetcher(ca=ca)
    pool = FakePool(response)
    fetcher._pool = pool  # type: ignore[assignment]
    return fetcher, pool


def test_a_range_is_asked_and_a_matching_206_is_taken_as_is(ca: Path) -> None:
    answer = FakeResponse(206, BODY[1000:], {"Content-Range": f"bytes 1000-{len(BODY) - 1}/*"})
    fetcher, pool = fetcher_with(ca, answer)
    assert b"".join(fetcher.fetch_from(URL, 1000)) == BODY[1000:]
    assert pool.headers == [{"Range": "bytes=1000-"}]
    assert answer.released


def test_a_server_that_ignores_the_range_has_the_prefix_dropped(ca: Path) -> None:
    fetcher, _ = fetcher_with(ca, FakeResponse(200, BODY))
    assert b"".join(fetcher.fetch_from(URL, 1000)) == BODY[1000:]


def test_a_206_for_another_range_is_refused(ca: Path) -> None:
    wrong = FakeResponse(206, BODY, {"Content-Range": f"bytes 0-{len(BODY) - 1}/{len(BODY)}"})
    fetcher, _ = fetcher_with(ca, wrong)
    with pytest.raises(DownloadError, match="another range"):
        list(fetcher.fetch_from(URL, 1000))


def test_an_http_error_status_is_a_download_http_error(ca: Path) -> None:
    fetcher, _ = fetcher_with(ca, FakeResponse(404, b"not found"))
    with pytest.raises(DownloadHTTPError) as raised:
        list(fetcher.fetch(URL))
    assert raised.value.status_code == 404


def test_plain_http_is_refused_before_any_request(ca: Path) -> None:
    fetcher, pool = fetcher_with(ca, FakeResponse(200, BODY))
    with pytest.raises(DownloadError, match="only HTTPS"):
        list(fetcher.fetch("http://updates.test/metadata/timestamp.json"))
    assert pool.headers == []


def test_a_connect_timeout_is_unreachable_and_a_read_timeout_slow_retrieval(ca: Path) -> None:
    connect = urllib3.exceptions.ConnectTimeoutError(None, "connect timed out")
    fetcher, _ = fetcher_with(ca, connect)
    with pytest.raises(DownloadError) as raised:
        list(fetcher.fetch(URL))
    assert classify(raised.value) == "unreachable"
    read = urllib3.exceptions.ReadTimeoutError(None, URL, "read timed out")  # type: ignore[arg-type]
    fetcher, _ = fetcher_with(ca, read)
    with pytest.raises(SlowRetrievalError):
        list(fetcher.fetch(URL))


def test_a_trickle_below_the_minimum_rate_is_slow_retrieval(ca: Path) -> None:
    ticks = iter(range(100))
    fetcher = HttpsFetcher(ca=ca, pace=Pace(min_rate=1000, grace=2))
    fetcher._clock = lambda: float(next(ticks))
    fetcher._pool = FakePool(FakeResponse(200, b"x" * 10, chunk=1))  # type: ignore[assignment]
    with pytest.raises(SlowRetrievalError, match="below 1000 B/s"):
        list(fetcher.fetch(URL))


def test_a_missing_ca_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CA certificate"):
        HttpsFetcher(ca=tmp_path / "missing.pem")


# -- conditional requests (the idle poll) -------------------------------------------------

ETAG = '"' + "ab" * 32 + '"'
TIMESTAMP_URL = "https://updates.test/metadata/timestamp.json"


def test_an_etag_is_sent_as_if_none_match_and_a_304_costs_no_body(ca: Path) -> None:
    answer = FakeResponse(304, b"", {"ETag": ETAG})
    fetcher, pool = fetcher_with(ca, answer)
    fetched = fetcher.fetch_unless(TIMESTAMP_URL, ETAG, max_length=1024)
    assert fetched == Fetched(None, ETAG)
    assert pool.headers == [{"If-None-Match": ETAG}]
    assert (fetcher.traffic.requests, fetcher.traffic.bytes) == (1, 0)
    assert answer.released


def test_a_changed_file_comes_with_its_body_and_new_etag(ca: Path) -> None:
    fetcher, pool = fetcher_with(ca, FakeResponse(200, BODY, {"ETag": ETAG}))
    assert fetcher.fetch_unless(TIMESTAMP_URL, '"old"', max_length=len(BODY)) == Fetched(BODY, ETAG)
    assert fetcher.fetch_unless(TIMESTAMP_URL, None, max_length=len(BODY)).data == BODY
    assert pool.headers[1] == {}, "no validator, no If-None-Match"


@pytest.mark.parametrize("etag", ['"a\\"b"', "unquoted", '"' + "x" * 200 + '"'])
def test_a_malformed_or_oversized_etag_is_not_kept(ca: Path, etag: str) -> None:
    fetcher, _ = fetcher_with(ca, FakeResponse(200, BODY, {"ETag": etag}))
    assert fetcher.fetch_unless(TIMESTAMP_URL, None, max_length=len(BODY)).etag is None


def test_a_conditional_body_past_its_bound_is_too_long(ca: Path) -> None:
    fetcher, _ = fetcher_with(ca, FakeResponse(200, BODY, chunk=100))
    with pytest.raises(DownloadLengthMismatchError) as raised:
        fetcher.fetch_unless(TIMESTAMP_URL, None, max_length=len(BODY) - 1)
    assert classify(raised.value) == "too_long"


def test_a_304_to_an_unconditional_request_is_an_http_error(ca: Path) -> None:
    fetcher, _ = fetcher_with(ca, FakeResponse(304, b""))
    with pytest.raises(DownloadHTTPError) as raised:
        fetcher.fetch_unless(TIMESTAMP_URL, None, max_length=1024)
    assert raised.value.status_code == 304


def test_a_conditional_request_that_cannot_connect_is_unreachable(ca: Path) -> None:
    fetcher, _ = fetcher_with(ca, urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    with pytest.raises(DownloadError) as raised:
        fetcher.fetch_unless(TIMESTAMP_URL, ETAG, max_length=1024)
    assert classify(raised.value) == "unreachable"


def test_pieces_of_a_fast_stream_are_handed_on_in_blocks(ca: Path) -> None:
    """One write per block, not per TLS record; every byte once, in order."""
    body = bytes(range(256)) * 4096  # 1 MiB
    fetcher, _ = fetcher_with(ca, FakeResponse(200, body, chunk=16 * 1024))
    blocks = list(fetcher.fetch("https://updates.test/targets/fw.bin"))
    assert b"".join(blocks) == body
    assert [len(block) for block in blocks] == [BLOCK] * 4
