"""The network: ngclient's ``FetcherInterface``, plus resuming at an offset.

``ResumableFetcher`` adds one operation to ngclient's fetcher: start a
download at a byte offset (an HTTP ``Range`` request), which is how an
interrupted firmware download continues. Every byte stream it returns, for
metadata as for firmware, is paced: after a grace period, a stream slower on
average than ``min_rate`` ends with ``SlowRetrievalError`` (TUF's slow
retrieval attack: a mirror trickling bytes to hold a device on old firmware).
Any other failure while reading becomes a ``DownloadError``.

``fetch_unless`` fetches a small file with a validator (an HTTP
``If-None-Match`` with the ETag from the last answer): a long-running
client asks "has ``timestamp.json`` changed?" in one request, and a ``304``
answers it with no body. A fetcher without validators (this base class)
just downloads the body; the caller compares bytes.

``HttpsFetcher`` is the device's only network client: one urllib3
``PoolManager`` (so a long-running agent reuses one connection), the server
certificate verified against the configured CA file, no automatic retries
(the agent has its own back-off), and plain ``http://`` refused. Its wire
code is ``PooledFetcher``'s, which leaves to each subclass the one decision
of which URLs it may request (``_check_url``, before any connection): the
conformance entry point's fetcher (``client.conformance``) is the other one.

A certificate that fails verification raises ``CertificateRefusedError``
naming OpenSSL's reason (an unknown CA, an expiry): the device's answer is
still ``unreachable``, but a person reading it knows it was the certificate.
"""

from __future__ import annotations

import abc
import re
import ssl
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import urllib3
from tuf.api.exceptions import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    SlowRetrievalError,
)
from tuf.ngclient import FetcherInterface

#: What one network read asks for, and the largest block handed on at once.
BLOCK = 256 * 1024
#: The longest a gathered block waits before it is handed on (and paced).
BATCH_WAIT = 0.1
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)\Z")
#: A strong or weak entity tag (RFC 9110 8.8.3), short: anything else is not kept.
_ETAG = re.compile(r'^(?:W/)?"[\x21\x23-\x7e]{0,128}"\Z')


@dataclass(frozen=True)
class Pace:
    """The slowest stream accepted: ``min_rate`` bytes/s on average after ``grace`` s."""

    min_rate: float = 1024.0
    grace: float = 30.0


@dataclass(frozen=True)
class Fetched:
    """A small file fetched with a validator: its bytes, or ``None`` when unchanged."""

    data: bytes | None
    etag: str | None


class ResumableFetcher(FetcherInterface):
    """A ``FetcherInterface`` that can also fetch from an offset, both paced."""

    def __init__(
        self, *, pace: Pace | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.pace = pace or Pace()
        self._clock = clock

    @abc.abstractmethod
    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        """The bytes of ``url`` from ``offset`` on (raise ``DownloadHTTPError`` on a status)."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._fetch_from(url, 0)

    def fetch(self, url: str) -> Iterator[bytes]:
        return self._paced(super().fetch(url))

    def fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        """Like ``fetch()``, starting at byte ``offset``."""
        if offset < 0:
            raise ValueError("offset must be zero or more")
        with _download_errors(url):
            chunks = self._fetch_from(url, offset)
        return self._paced(chunks)

    def fetch_unless(self, url: str, etag: str | None, *, max_length: int) -> Fetched:
        """``url``'s body (at most ``max_length`` bytes), or ``None`` if its ETag is ``etag``.

        This base class has no validators: it downloads the body every time
        and returns no ETag.
        """
        return Fetched(self.download_bytes(url, max_length), None)

    def _paced(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        started, received = self._clock(), 0
        try:
            for chunk in chunks:
                received += len(chunk)
                self._check_pace(received, self._clock() - started)
                yield chunk
        except DownloadError:
            raise
        except Exception as exc:
            raise DownloadError(f"the download broke off: {exc}") from exc
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # now, not when collected: the connection closes with it

    def _check_pace(self, received: int, elapsed: float) -> None:
        if elapsed > self.pace.grace and received / elapsed < self.pace.min_rate:
            raise SlowRetrievalError(
                f"{received} bytes in {elapsed:.1f} s, below {self.pace.min_rate:.0f} B/s"
            )


@dataclass
class Traffic:
    """What the fetcher did on the wire (for status and benchmarks)."""

    requests: int = 0
    bytes: int = 0


class PooledFetcher(ResumableFetcher):
    """HTTP(S) over one urllib3 pool; ``_check_url`` says which URLs may be requested.

    ``ca_certs`` is the CA file HTTPS certificates are checked against
    (``None``: the system's trust store, for a subclass that allows no HTTPS).
    """

    def __init__(
        self,
        *,
        ca_certs: str | None,
        timeout: float,
        pace: Pace | None,
        user_agent: str,
    ) -> None:
        super().__init__(pace=pace)
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            headers={"User-Agent": user_agent},
        )
        self.traffic = Traffic()

    @property
    def connections(self) -> int:
        """TLS connections opened so far (a poll that reuses one opens none)."""
        pools = self._pool.pools
        return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118

    def close(self) -> None:
        self._pool.clear()

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        response = self._request(url, {"Range": f"bytes={offset}-"} if offset else {})
        skip = _check_status(url, response, offset)
        return self._chunks(response, skip)

    def fetch_unless(self, url: str, etag: str | None, *, max_length: int) -> Fetched:
        """One ``GET`` with ``If-None-Match: etag``; a ``304`` costs no body."""
        with _download_errors(url):
            response = self._request(url, {"If-None-Match": etag} if etag else {})
        if etag and response.status == 304:
            _discard(response)
            return Fetched(None, etag)
        _check_status(url, response, 0)
        data = _bounded(url, self._paced(self._chunks(response, 0)), max_length)
        validator = response.headers.get("ETag", "")
        return Fetched(data, validator if _ETAG.match(validator) else None)

    @abc.abstractmethod
    def _check_url(self, url: str) -> None:
        """Raise ``DownloadError`` unless this fetcher may request ``url``."""

    def _request(self, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        self._check_url(url)
        try:
            response = self._pool.request("GET", url, headers=headers, preload_content=False)
        except urllib3.exceptions.SSLError as exc:
            raise CertificateRefusedError(f"{url}: {_certificate_problem(exc)}") from exc
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise DownloadError(f"{url}: no connection within the timeout") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise SlowRetrievalError(f"{url}: no answer within the timeout") from exc
        self.traffic.requests += 1
        return response

    def _chunks(self, response: urllib3.BaseHTTPResponse, skip: int) -> Iterator[bytes]:
        # read1: whatever has arrived (about one TLS record). A read that waits
        # for a full block would let a trickle (a byte just inside each socket
        # timeout) hold one read for days without the pace check ever running.
        # The pieces (about one TLS record each) are gathered into blocks of up
        # to BLOCK bytes, handed on at once when the wait passes BATCH_WAIT: the
        # pace check still sees a trickle within that wait, while a fast stream
        # costs one write and one pass through the layers above per block.
        complete = False
        pending: list[bytes] = []
        size, since = 0, self._clock()
        try:
            while piece := response.read1(BLOCK):
                self.traffic.bytes += len(piece)
                dropped = min(skip, len(piece))
                skip -= dropped
                if dropped < len(piece):
                    pending.append(piece[dropped:] if dropped else piece)
                    size += len(piece) - dropped
                if size >= BLOCK or (pending and self._clock() - since >= BATCH_WAIT):
                    yield b"".join(pending)
                    pending, size, since = [], 0, self._clock()
            if pending:
                yield b"".join(pending)
            complete = True
        except urllib3.exceptions.TimeoutError as exc:
            raise SlowRetrievalError("the server stopped sending") from exc
        finally:
            if complete:
                response.release_conn()
            else:  # a body broken off (pace, bound, stop): its connection is not reused
                response.close()


class HttpsFetcher(PooledFetcher):
    """HTTPS with the server certificate checked against one CA file."""

    def __init__(
        self,
        *,
        ca: Path,
        timeout: float = 30.0,
        pace: Pace | None = None,
        user_agent: str = "fwclient",
    ) -> None:
        if not ca.is_file():
            raise FileNotFoundError(f"CA certificate {ca} not found")
        super().__init__(ca_certs=str(ca), timeout=timeout, pace=pace, user_agent=user_agent)

    def _check_url(self, url: str) -> None:
        if not url.startswith("https://"):
            raise DownloadError(f"refusing {url}: only HTTPS is allowed")


class CertificateRefusedError(DownloadError):
    """The server's TLS certificate failed verification (R21): named, never just "unreachable"."""


def _certificate_problem(exc: BaseException) -> str:
    """What OpenSSL found wrong (an unknown CA, an expiry, a name), in its own words."""
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, *seen.args):
            if isinstance(candidate, ssl.SSLCertVerificationError):
                reason = candidate.verify_message or candidate.reason or str(candidate)
                return (
                    f"TLS certificate refused ({reason}): the server's certificate does not"
                    " verify against the CA file (--ca); check both"
                )
        seen = seen.__cause__ or seen.__context__
    return f"TLS handshake failed ({exc}): check the server's certificate and the CA file (--ca)"


@contextmanager
def _download_errors(url: str) -> Iterator[None]:
    """Any failure to start a download is a ``DownloadError`` (what ngclient expects)."""
    try:
        yield
    except DownloadError:
        raise
    except Exception as exc:
        raise DownloadError(f"failed to download {url}: {exc}") from exc


def _bounded(url: str, chunks: Iterator[bytes], max_length: int) -> bytes:
    """The whole body, refused past ``max_length`` bytes (endless data)."""
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > max_length:
            raise DownloadLengthMismatchError(f"{url}: more than {max_length} bytes")
    return bytes(data)


def _check_status(url: str, response: urllib3.BaseHTTPResponse, offset: int) -> int:
    """Bytes to drop from the body (a server that ignored ``Range``); raise on an error status."""
    if response.status == 200:
        return offset
    if response.status == 206 and offset:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return 0
        _discard(response)
        raise DownloadError(f"{url}: the server answered another range than bytes={offset}-")
    _discard(response)
    raise DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    # Read an error body off the connection before it goes back to the pool:
    # the next request on it would read it as its own answer.
    response.drain_conn()
    response.release_conn()
