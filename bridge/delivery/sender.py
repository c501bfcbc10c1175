"""prepare → post → classify: one push to one partner, returned as a :class:`SendResult`.

The one place where HTTP client exceptions become failure classes (style rule 3); nothing here
raises for a partner's failure. Partner pushes go through aiohttp's own client (measured in
bench/http_clients.py: several times the POST/s of httpx's API over the same transport, at a
fraction of the CPU); an injected ``httpx.AsyncClient`` is served too, through the same
classification, for callers that hold one (tests with ``httpx.MockTransport``).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from cachetools import TTLCache
from httpx_aiohttp import AiohttpTransport

from bridge import __version__
from bridge.delivery import signing
from bridge.delivery.result import SendResult
from bridge.events import DeliveryTask, task_json
from bridge.urlpolicy import UrlPolicy, UrlVerdict, check_resolved

DELIVERY_ID_HEADER = "X-Bridge-Delivery-Id"
#: Partners answer with anything; only this much of a body is read, then ignored.
MAX_RESPONSE_BYTES = 4096
#: URL-policy verdicts (they resolve DNS) are reused this long per URL.
POLICY_TTL_S = 30.0
USER_AGENT = f"event-bridge/{__version__}"


@dataclass(frozen=True)
class PreparedPush:
    url: str
    content: bytes
    headers: dict[str, str]
    timeout_s: float


def prepare(task: DeliveryTask, timeout_s: float, signing_secrets: Sequence[str] = (),
            now: float | None = None) -> PreparedPush:
    """The exact request: the platform's push body, plus our delivery id (and signatures if on)."""
    content = task_json(task.body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_ID_HEADER: task.delivery_id,
    }
    if task.trigger in ("replay", "redrive"):
        headers["X-Bridge-Replay"] = task.trigger
    if signing_secrets:
        headers.update(signing.sign_headers(signing_secrets, task.delivery_id,
                                            int(now if now is not None else time.time()), content))
    return PreparedPush(task.event_dest, content, headers, timeout_s)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also takes "²"
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def classify_response(status: int, retry_after: str | None, latency_s: float) -> SendResult:
    if 200 <= status < 300:
        return SendResult.delivered(status, latency_s)
    if status == 410:
        return SendResult.dead("http_410", "HTTP 410 Gone: the partner retired this endpoint",
                               latency_s, status)
    return SendResult.retry(f"http_{status}", f"HTTP {status}", latency_s, status,
                            _retry_after(retry_after) if status in (429, 503) else None)


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    return cause


def classify_aiohttp_exception(exc: BaseException, latency_s: float) -> SendResult:
    """aiohttp's (and asyncio's) failures mapped onto the same classes as httpx's."""
    # The most specific class first: ConnectionTimeoutError ⊂ ServerTimeoutError ⊂ ClientConnectionError.
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return SendResult.retry("timeout", f"no answer in time ({type(exc).__name__})", latency_s)
    if isinstance(exc, aiohttp.ClientSSLError):
        return SendResult.retry("tls", f"TLS handshake failed: {_tls_cause(exc) or exc}", latency_s)
    if isinstance(exc, aiohttp.ClientConnectorError):
        tls = _tls_cause(exc)
        if tls is not None:
            return SendResult.retry("tls", f"TLS handshake failed: {tls}", latency_s)
        return SendResult.retry("connect_error", f"connection failed: {exc}", latency_s)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
                        aiohttp.ClientPayloadError, aiohttp.ClientResponseError,
                        aiohttp.ClientConnectionError)):
        return SendResult.retry("connection_reset", f"connection broken: {exc}", latency_s)
    return SendResult.retry("transport_error", f"{type(exc).__name__}: {exc}", latency_s)


def classify_exception(exc: httpx.HTTPError, latency_s: float) -> SendResult:
    # The most specific class first: httpx's exceptions form a tree (TimeoutException ⊂ TransportError).
    if isinstance(exc, httpx.TimeoutException):
        return SendResult.retry("timeout", f"no answer in time ({type(exc).__name__})", latency_s)
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLError):
            return SendResult.retry("tls", f"TLS handshake failed: {cause}", latency_s)
        return SendResult.retry("connect_error", f"connection failed: {exc}", latency_s)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return SendResult.retry("connection_reset", f"connection broken: {exc}", latency_s)
    return SendResult.retry("transport_error", f"{type(exc).__name__}: {exc}", latency_s)


Client = aiohttp.ClientSession | httpx.AsyncClient


@functools.lru_cache(maxsize=256)
def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


class PartnerSender:
    """Posts prepared pushes with injected clients (one verifying TLS, one not)."""

    def __init__(self, client: Client, insecure_client: Client | None,
                 policy: UrlPolicy) -> None:
        self.client = client
        self.insecure_client = insecure_client or client
        self.policy = policy
        # Aged from when the verdict was reached, which is what a TTL cache measures.
        self._verdicts: TTLCache[str, UrlVerdict] = TTLCache(maxsize=10_000, ttl=POLICY_TTL_S,
                                                             timer=time.monotonic)

    async def _allowed(self, url: str) -> UrlVerdict:
        cached = self._verdicts.get(url)
        if cached is not None:
            return cached
        verdict = await check_resolved(url, self.policy)
        self._verdicts[url] = verdict
        return verdict

    async def send(self, push: PreparedPush, verify_tls: bool = True) -> SendResult:
        # The cached verdict without a coroutine of its own: once per push.
        verdict = self._verdicts.get(push.url) or await self._allowed(push.url)
        if not verdict.ok:
            if verdict.permanent:
                return SendResult.dead("url_policy", f"destination refused: {verdict.message}")
            return SendResult.retry("dns", f"cannot resolve destination: {verdict.message}", 0.0)
        client = self.client if verify_tls else self.insecure_client
        if isinstance(client, aiohttp.ClientSession):
            return await self._send_aiohttp(client, push)
        started = time.perf_counter()
        try:
            async with client.stream("POST", push.url, content=push.content, headers=push.headers,
                                     timeout=push.timeout_s) as response:
                read = 0
                try:
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES:
                            break
                except httpx.StreamConsumed:  # a transport that already loaded the body
                    pass
                return classify_response(response.status_code, response.headers.get("retry-after"),
                                         time.perf_counter() - started)
        except httpx.HTTPError as exc:
            return classify_exception(exc, time.perf_counter() - started)

    @staticmethod
    async def _send_aiohttp(session: aiohttp.ClientSession, push: PreparedPush) -> SendResult:
        started = time.perf_counter()
        try:
            async with session.post(push.url, data=push.content, headers=push.headers,
                                    timeout=_timeout(push.timeout_s),
                                    allow_redirects=False) as response:
                read = 0
                while read < MAX_RESPONSE_BYTES:
                    chunk = await response.content.read(MAX_RESPONSE_BYTES - read)
                    if not chunk:
                        break
                    read += len(chunk)
                return classify_response(response.status, response.headers.get("retry-after"),
                                         time.perf_counter() - started)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return classify_aiohttp_exception(exc, time.perf_counter() - started)
        except UnicodeDecodeError as exc:  # a header aiohttp cannot decode
            return SendResult.retry("transport_error", f"{type(exc).__name__}: {exc}",
                                    time.perf_counter() - started)


class DeliveryTransport(AiohttpTransport):
    """httpx's API over aiohttp's client, which is several times faster on a small machine.

    Measured here (bench/http_clients.py, 2 cores, local receiver, 532-byte JSON): at
    concurrency 1/8/32, httpx's default transport did 1,159/1,269/407 POST/s, this transport
    2,079/3,700/2,943, aiohttp's own client 3,540/10,911/10,543. httpx-aiohttp 0.2.0 maps every
    aiohttp connection error to ``ConnectTimeout``; a refused connection is not a timeout, so the
    classes httpx itself would raise are restored here, at the one boundary.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if cause is None or isinstance(cause, aiohttp.ServerTimeoutError):
                raise
            if isinstance(cause, aiohttp.ClientConnectorError):  # refused, DNS, TLS
                raise httpx.ConnectError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError):
                raise httpx.ReadError(str(exc), request=request) from cause
            raise


def build_clients(ca_bundle: str | None, limit: int = 1024) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
    """The pooled keep-alive sessions: TLS-verifying, and one for partners that turned it off.

    The connection limit is global; per-partner limits are the worker's in-flight slots. Call
    from within the event loop that will use them; close both with ``close()``.
    """
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True

    def session(tls: ssl.SSLContext | bool) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30.0,
                                         ssl=tls, ttl_dns_cache=int(POLICY_TTL_S))
        # No cookie jar: a partner's Set-Cookie must not follow into other pushes.
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False, skip_auto_headers=("Accept-Encoding",))

    return session(verify), session(False)


async def close_clients(*clients: Client) -> None:
    for client in clients:
        if isinstance(client, aiohttp.ClientSession):
            await client.close()
        else:
            await client.aclose()
