"""Unit tests of bridge.delivery.sender: prepare, classify and the HTTP sender.

No network: HTTP answers come from ``httpx.MockTransport``; the URL policy sees only IP
literals (or a patched resolver), so nothing is resolved or contacted.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import httpx
import pytest

from bridge import urlpolicy
from bridge.delivery import sender as sender_module
from bridge.delivery import signing
from bridge.delivery.result import SendResult
from bridge.delivery.retry import MAX_RETRY_AFTER_S, RetryPolicy
from bridge.delivery.sender import (
    DELIVERY_ID_HEADER,
    MAX_RESPONSE_BYTES,
    PartnerSender,
    classify_aiohttp_exception,
    classify_exception,
    classify_response,
    prepare,
)
from bridge.delivery.signing import verify
from bridge.urlpolicy import UrlPolicy
from tests.fixtures.tasks import LOOPBACK_URL, make_task
from tests.fixtures.webhooks import reference_signature

PERMISSIVE = UrlPolicy(allow_loopback=True)


class TestPrepare:
    def test_body_is_compact_utf8_json(self) -> None:
        task = make_task()
        push = prepare(task, timeout_s=7.5)
        assert push.url == task.event_dest
        assert push.timeout_s == 7.5
        expected = json.dumps(task.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        assert push.content == expected
        assert json.loads(push.content) == task.body
        assert "Caméra Nord — 北门".encode() in push.content
        assert b"\\u" not in push.content
        assert b": " not in push.content and b", " not in push.content
        assert push.content.startswith(b'{"method":"OnEventNotify","params":{')

    def test_headers(self) -> None:
        task = make_task()
        push = prepare(task, timeout_s=5.0)
        assert push.headers["Content-Type"] == "application/json"
        assert push.headers[DELIVERY_ID_HEADER] == task.delivery_id
        assert DELIVERY_ID_HEADER == "X-Bridge-Delivery-Id"
        assert push.headers["User-Agent"].startswith("event-bridge/")
        assert "X-Bridge-Replay" not in push.headers
        assert not any(k.lower().startswith("webhook-") for k in push.headers)

    @pytest.mark.parametrize(
        ("trigger", "replay"),
        [("live", None), ("retry", None), ("replay", "replay"), ("redrive", "redrive")],
    )
    def test_replay_header(self, trigger: str, replay: str | None) -> None:
        push = prepare(make_task(trigger=trigger), timeout_s=5.0)
        assert push.headers.get("X-Bridge-Replay") == replay

    def test_signing_headers_only_with_secrets(self) -> None:
        task = make_task()
        unsigned = prepare(task, 5.0, (), now=1_700_000_000.9)
        assert not any(k.lower().startswith("webhook-") for k in unsigned.headers)
        signed = prepare(task, 5.0, ["current", "previous"], now=1_700_000_000.9)
        assert signed.content == unsigned.content
        assert signed.headers["webhook-id"] == task.delivery_id
        assert signed.headers["webhook-timestamp"] == "1700000000"
        assert signed.headers["webhook-signature"] == " ".join(
            reference_signature(s, task.delivery_id, 1_700_000_000, signed.content)
            for s in ("current", "previous"))
        assert verify("previous", signed.headers, signed.content)
        # Everything else is unchanged by signing.
        rest = {k: v for k, v in signed.headers.items() if not k.startswith("webhook-")}
        assert rest == unsigned.headers

    def test_signing_default_now_is_current_time(self) -> None:
        before = int(time.time())
        push = prepare(make_task(), 5.0, ["k"])
        assert before <= int(push.headers["webhook-timestamp"]) <= int(time.time())


def http_date(offset_s: float) -> str:
    return email.utils.formatdate(time.time() + offset_s, usegmt=True)


class TestClassifyResponse:
    @pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
    def test_2xx_delivered(self, status: int) -> None:
        r = classify_response(status, None, 0.01)
        assert (r.kind, r.status_code, r.error, r.latency_s) == ("delivered", status, None, 0.01)

    def test_410_dead(self) -> None:
        r = classify_response(410, "60", 0.02)
        assert (r.kind, r.status_code, r.error) == ("dead", 410, "http_410")

    @pytest.mark.parametrize(
        ("status", "header", "expected"),
        [
            (429, "120", 120.0),
            (503, "30", 30.0),
            (429, " 7 ", 7.0),
            (429, "0", 0.0),
            (429, None, None),
            (503, "", None),
            (429, "soon", None),
            (429, "-5", None),
        ],
    )
    def test_overload_retry_after_seconds(self, status: int, header: str | None,
                                          expected: float | None) -> None:
        r = classify_response(status, header, 0.0)
        assert (r.kind, r.status_code, r.error) == ("retry", status, f"http_{status}")
        assert r.retry_after_s == expected

    @pytest.mark.parametrize("status", [429, 503])
    def test_overload_retry_after_http_date(self, status: int) -> None:
        r = classify_response(status, http_date(120), 0.0)
        assert r.kind == "retry"
        assert r.retry_after_s == pytest.approx(120, abs=2.0)
        past = classify_response(status, http_date(-3600), 0.0)
        assert past.retry_after_s == 0.0  # a date in the past: no wait, never negative

    def test_retry_after_feeds_policy(self) -> None:
        r = classify_response(429, "900", 0.0)
        step = RetryPolicy(jitter=0.0).next_step(0, r, random.Random(0))
        assert step.delay_s == 900.0
        huge = classify_response(503, "99999999999", 0.0)
        assert RetryPolicy().next_step(0, huge, random.Random(0)).delay_s == MAX_RETRY_AFTER_S

    @pytest.mark.parametrize("status", [500, 502, 504, 404, 400, 401, 403, 301, 302, 308, 100, 418])
    def test_other_codes_retry_with_http_error(self, status: int) -> None:
        r = classify_response(status, "120", 0.3)
        assert (r.kind, r.status_code, r.error, r.retry_after_s) == (
            "retry", status, f"http_{status}", None)
        assert r.latency_s == 0.3

    @pytest.mark.parametrize("header", ["²", "1²", "³"])
    def test_non_ascii_digit_retry_after_does_not_raise(self, header: str) -> None:
        r = classify_response(429, header, 0.0)
        assert r.kind == "retry" and r.retry_after_s is None


def _ssl_verify_error(with_reason: bool) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")
    if with_reason:
        # What the C ssl module sets on the errors it raises; Python-made ones lack it.
        err.reason = "CERTIFICATE_VERIFY_FAILED"  # type: ignore[attr-defined]
        err.library = "SSL"  # type: ignore[attr-defined]
    return err


def _tls_connect_error(with_reason: bool, request: httpx.Request | None = None) -> httpx.ConnectError:
    exc = httpx.ConnectError("TLS handshake failed", request=request)
    exc.__cause__ = _ssl_verify_error(with_reason)
    return exc


class TestClassifyException:
    @pytest.mark.parametrize(
        ("exc", "error"),
        [
            (httpx.ConnectTimeout("t"), "timeout"),
            (httpx.ReadTimeout("t"), "timeout"),
            (httpx.WriteTimeout("t"), "timeout"),
            (httpx.PoolTimeout("t"), "timeout"),
            (httpx.ConnectError("refused"), "connect_error"),
            (httpx.RemoteProtocolError("peer closed"), "connection_reset"),
            (httpx.ReadError("reset"), "connection_reset"),
            (httpx.WriteError("broken pipe"), "connection_reset"),
            (httpx.UnsupportedProtocol("ftp"), "transport_error"),
        ],
        ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v,
    )
    def test_table(self, exc: httpx.HTTPError, error: str) -> None:
        r = classify_exception(exc, 1.5)
        assert (r.kind, r.error, r.status_code, r.latency_s) == ("retry", error, None, 1.5)

    @pytest.mark.parametrize("with_reason", [True, False])
    def test_tls_cause(self, with_reason: bool) -> None:
        r = classify_exception(_tls_connect_error(with_reason), 0.1)
        assert (r.kind, r.error) == ("retry", "tls")
        assert "CERTIFICATE_VERIFY_FAILED" in r.detail

    def test_tls_context_chain(self) -> None:
        """The SSL error may sit deeper in the chain (wrapped by the transport)."""
        inner = OSError("wrapped")
        inner.__cause__ = _ssl_verify_error(with_reason=True)
        exc = httpx.ConnectError("boom")
        exc.__context__ = inner
        assert classify_exception(exc, 0.0).error == "tls"

    def test_ssl_error_deeper_than_connect_error_only(self) -> None:
        """An SSL error behind a non-connect failure is not 'tls' (it happened after the handshake)."""
        exc = httpx.ReadError("reset")
        exc.__cause__ = _ssl_verify_error(with_reason=True)
        assert classify_exception(exc, 0.0).error == "connection_reset"


# --- PartnerSender with MockTransport ---------------------------------------------------------

class CountingStream(httpx.AsyncByteStream):
    """A response body of ``total`` bytes in ``chunk`` pieces; counts how much was pulled."""

    def __init__(self, total: int, chunk: int = 16 * 1024) -> None:
        self.total, self.chunk = total, chunk
        self.pulled = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.total:
            size = min(self.chunk, self.total - sent)
            sent += size
            self.pulled += size
            yield b"x" * size

    async def aclose(self) -> None:
        self.closed = True


def answer(status: int, *, headers: Any = None, text: str = "",
           content: bytes | None = None, stream: httpx.AsyncByteStream | None = None) -> httpx.Response:
    """A response as a network transport hands it over: body not yet read (``stream=``).

    ``httpx.Response(200, text=...)`` would come back already read, which the sender's
    ``aiter_raw`` refuses (see ``test_preloaded_response_does_not_raise``).
    """
    if stream is None:
        stream = httpx.ByteStream(content if content is not None else text.encode())
    return httpx.Response(status, headers=headers, stream=stream)


class Recorder:
    """A MockTransport handler that records requests and answers or raises as told."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def raising(exc_factory: Callable[[httpx.Request], BaseException]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_factory(request)
    return answer


def _sender(handler: Recorder, policy: UrlPolicy = PERMISSIVE,
            insecure: Recorder | None = None) -> tuple[PartnerSender, list[httpx.AsyncClient]]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    clients = [client]
    insecure_client = None
    if insecure is not None:
        insecure_client = httpx.AsyncClient(transport=httpx.MockTransport(insecure))
        clients.append(insecure_client)
    return PartnerSender(client, insecure_client, policy), clients


async def _send(handler: Recorder, url: str = LOOPBACK_URL, **kw: Any) -> SendResult:
    sender, clients = _sender(handler)
    try:
        push = replace(prepare(make_task(event_dest=url), 5.0, kw.pop("secrets", ())), url=url)
        return await sender.send(push, **kw)
    finally:
        for c in clients:
            await c.aclose()


class TestPartnerSender:
    @pytest.mark.parametrize("status", [200, 201, 204, 299])
    async def test_2xx_delivered(self, status: int) -> None:
        handler = Recorder(lambda r: answer(status, text="ok"))
        result = await _send(handler)
        assert (result.kind, result.status_code, result.error) == ("delivered", status, None)
        assert result.latency_s >= 0
        assert len(handler.requests) == 1

    async def test_request_is_the_prepared_push(self) -> None:
        handler = Recorder(lambda r: answer(204))
        task = make_task(trigger="replay")
        push = prepare(task, 3.0, ["sekrit"], now=1_700_000_000)
        sender, clients = _sender(handler)
        try:
            assert (await sender.send(push)).kind == "delivered"
        finally:
            await clients[0].aclose()
        (request,) = handler.requests
        assert request.method == "POST"
        assert str(request.url) == LOOPBACK_URL
        assert request.content == push.content
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-bridge-delivery-id"] == task.delivery_id
        assert request.headers["x-bridge-replay"] == "replay"
        received = {k: request.headers[k] for k in ("webhook-id", "webhook-timestamp",
                                                    "webhook-signature")}
        assert verify("sekrit", received, request.content)
        assert request.extensions["timeout"]["read"] == 3.0

    async def test_verify_tls_false_uses_insecure_client(self) -> None:
        secure = Recorder(lambda r: answer(200))
        insecure = Recorder(lambda r: answer(202))
        sender, clients = _sender(secure, insecure=insecure)
        try:
            push = prepare(make_task(), 5.0)
            assert (await sender.send(push, verify_tls=False)).status_code == 202
            assert (await sender.send(push)).status_code == 200
        finally:
            for c in clients:
                await c.aclose()
        assert len(secure.requests) == 1 and len(insecure.requests) == 1

    async def test_large_body_not_fully_read(self) -> None:
        stream = CountingStream(total=1024 * 1024)
        handler = Recorder(lambda r: answer(200, stream=stream))
        result = await _send(handler)
        assert (result.kind, result.error) == ("delivered", None)
        assert 0 < stream.pulled < 1024 * 1024
        assert stream.pulled <= MAX_RESPONSE_BYTES + stream.chunk
        assert stream.closed

    async def test_large_error_body_not_fully_read(self) -> None:
        stream = CountingStream(total=1024 * 1024)
        handler = Recorder(lambda r: answer(503, headers={"Retry-After": "42"}, stream=stream))
        result = await _send(handler)
        assert (result.kind, result.error, result.retry_after_s) == ("retry", "http_503", 42.0)
        assert stream.pulled < 1024 * 1024

    async def test_plain_megabyte_body(self) -> None:
        handler = Recorder(lambda r: answer(200, content=b"y" * (1024 * 1024)))
        assert (await _send(handler)).kind == "delivered"

    @pytest.mark.parametrize("status", [200, 500])
    async def test_preloaded_response_does_not_raise(self, status: int) -> None:
        handler = Recorder(lambda r: httpx.Response(status, text="loaded"))
        result = await _send(handler)
        assert result.status_code == status

    @pytest.mark.parametrize(
        ("status", "headers", "kind", "error", "retry_after"),
        [
            (410, {}, "dead", "http_410", None),
            (429, {"Retry-After": "17"}, "retry", "http_429", 17.0),
            (503, {}, "retry", "http_503", None),
            (500, {"Retry-After": "17"}, "retry", "http_500", None),
            (404, {}, "retry", "http_404", None),
            (301, {"Location": "http://127.0.0.1:1/elsewhere"}, "retry", "http_301", None),
        ],
    )
    async def test_status_mapping(self, status: int, headers: dict[str, str], kind: str,
                                  error: str, retry_after: float | None) -> None:
        handler = Recorder(lambda r: answer(status, headers=headers, text="nope"))
        result = await _send(handler)
        assert (result.kind, result.status_code, result.error, result.retry_after_s) == (
            kind, status, error, retry_after)
        assert len(handler.requests) == 1  # redirects are not followed

    @pytest.mark.parametrize(
        ("factory", "error"),
        [
            (lambda r: httpx.ConnectTimeout("connect timed out", request=r), "timeout"),
            (lambda r: httpx.ReadTimeout("read timed out", request=r), "timeout"),
            (lambda r: httpx.ConnectError("[Errno 111] Connection refused", request=r),
             "connect_error"),
            (lambda r: httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                 request=r), "connection_reset"),
            (lambda r: httpx.ReadError("Connection reset by peer", request=r), "connection_reset"),
        ],
        ids=["ConnectTimeout", "ReadTimeout", "ConnectError", "RemoteProtocolError", "ReadError"],
    )
    async def test_transport_failures(self, factory: Callable[[httpx.Request], BaseException],
                                      error: str) -> None:
        handler = Recorder(raising(factory))
        result = await _send(handler)  # must not raise
        assert (result.kind, result.error, result.status_code) == ("retry", error, None)
        assert len(handler.requests) == 1

    @pytest.mark.parametrize("with_reason", [True, False])
    async def test_tls_failure(self, with_reason: bool) -> None:
        handler = Recorder(raising(lambda r: _tls_connect_error(with_reason, r)))
        result = await _send(handler)  # must not raise
        assert (result.kind, result.error, result.status_code) == ("retry", "tls", None)
        assert "certificate verify failed" in result.detail

    async def test_bad_retry_after_byte_does_not_raise(self) -> None:
        handler = Recorder(lambda r: answer(429, headers=[(b"Retry-After", b"\xb2")]))
        result = await _send(handler)
        assert (result.kind, result.error, result.retry_after_s) == ("retry", "http_429", None)

    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.10.1:8080/hook",
            "http://[fe80::1]/hook",
            "http://0.0.0.0:8080/hook",
            "ftp://127.0.0.1/hook",
            "http://metadata.google.internal/computeMetadata/v1/",
        ],
    )
    async def test_url_policy_refusal_is_dead_without_request(self, url: str) -> None:
        handler = Recorder(lambda r: answer(200))
        result = await _send(handler, url=url)
        assert (result.kind, result.error, result.status_code) == ("dead", "url_policy", None)
        assert handler.requests == []

    async def test_loopback_refused_under_default_policy(self) -> None:
        handler = Recorder(lambda r: answer(200))
        sender, clients = _sender(handler, policy=UrlPolicy())
        try:
            result = await sender.send(prepare(make_task(), 5.0))
        finally:
            await clients[0].aclose()
        assert (result.kind, result.error) == ("dead", "url_policy")
        assert handler.requests == []

    async def test_unresolvable_host_is_retry_dns(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def no_dns(host: str, port: int) -> list[str]:
            raise OSError("Name or service not known")

        monkeypatch.setattr(urlpolicy, "_getaddrinfo", no_dns)
        handler = Recorder(lambda r: answer(200))
        result = await _send(handler, url="https://partner.invalid/hook")
        assert (result.kind, result.error) == ("retry", "dns")
        assert handler.requests == []

    async def test_host_resolving_to_metadata_is_dead(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def rebinding(host: str, port: int) -> list[str]:
            return ["93.184.216.34", "169.254.169.254"]

        monkeypatch.setattr(urlpolicy, "_getaddrinfo", rebinding)
        handler = Recorder(lambda r: answer(200))
        result = await _send(handler, url="https://partner.example.com/hook")
        assert (result.kind, result.error) == ("dead", "url_policy")
        assert handler.requests == []

    async def test_policy_verdict_cached(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []

        async def resolver(host: str, port: int) -> list[str]:
            calls.append(host)
            return ["127.0.0.1"]

        monkeypatch.setattr(urlpolicy, "_getaddrinfo", resolver)
        handler = Recorder(lambda r: answer(200))
        sender, clients = _sender(handler)
        try:
            push = replace(prepare(make_task(), 5.0), url="http://partner.localhost/hook")
            for _ in range(3):
                assert (await sender.send(push)).kind == "delivered"
        finally:
            await clients[0].aclose()
        assert calls == ["partner.localhost"]
        assert len(handler.requests) == 3

    async def test_send_never_raises_mixed(self) -> None:
        """One sender, a sequence of failures and successes: every call returns a SendResult."""
        answers: list[Callable[[httpx.Request], httpx.Response]] = [
            raising(lambda r: httpx.ConnectTimeout("t", request=r)),
            lambda r: answer(500),
            raising(lambda r: httpx.RemoteProtocolError("eof", request=r)),
            lambda r: answer(429, headers={"Retry-After": http_date(60)}),
            raising(lambda r: httpx.ConnectError("refused", request=r)),
            lambda r: answer(200),
        ]
        queue = list(answers)
        handler = Recorder(lambda r: queue.pop(0)(r))
        sender, clients = _sender(handler)
        results = []
        try:
            push = prepare(make_task(), 5.0)
            for _ in answers:
                results.append(await sender.send(push))
        finally:
            await clients[0].aclose()
        assert [(r.kind, r.error) for r in results] == [
            ("retry", "timeout"), ("retry", "http_500"), ("retry", "connection_reset"),
            ("retry", "http_429"), ("retry", "connect_error"), ("delivered", None)]
        assert results[3].retry_after_s == pytest.approx(60, abs=2.0)


def test_sender_module_constants() -> None:
    assert sender_module.MAX_RESPONSE_BYTES == MAX_RESPONSE_BYTES == 4096


def test_webhook_secret_works_with_the_standard_webhooks_key_derivation() -> None:
    # Standard Webhooks libraries strip "whsec_" and base64-decode the rest to get the HMAC key.
    secret = signing.webhook_secret("Xk3appSecret20chars!")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert signing.signature("Xk3appSecret20chars!", "msg_1", 1700000000, b"{}") == \
        "v1," + base64.b64encode(mac).decode()


class TestClassifyAiohttpException:
    """The partner pushes' client (aiohttp) maps onto the same classes as httpx."""

    @staticmethod
    def _key() -> Any:
        from aiohttp.client_reqrep import ConnectionKey

        return ConnectionKey("127.0.0.1", 1, False, True, None, None, None)

    @pytest.mark.parametrize(
        ("make", "error"),
        [
            (lambda key: TimeoutError(), "timeout"),
            (lambda key: aiohttp.ConnectionTimeoutError("connect"), "timeout"),
            (lambda key: aiohttp.SocketTimeoutError("read"), "timeout"),
            (lambda key: aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused")),
             "connect_error"),
            (lambda key: aiohttp.ClientConnectorSSLError(key, ssl.SSLError(1, "wrong version number")),
             "tls"),
            (lambda key: aiohttp.ServerDisconnectedError(), "connection_reset"),
            (lambda key: aiohttp.ClientOSError(104, "reset by peer"), "connection_reset"),
            (lambda key: aiohttp.ClientPayloadError("truncated"), "connection_reset"),
            (lambda key: aiohttp.InvalidURL("ftp://x"), "transport_error"),
        ],
        ids=["TimeoutError", "ConnectionTimeout", "SocketTimeout", "refused", "ssl", "disconnected",
             "os_error", "payload", "invalid_url"],
    )
    def test_table(self, make: Callable[[Any], BaseException], error: str) -> None:
        r = classify_aiohttp_exception(make(self._key()), 0.7)
        assert (r.kind, r.error, r.status_code, r.latency_s) == ("retry", error, None, 0.7)

    def test_connector_error_caused_by_ssl_is_tls(self) -> None:
        exc = aiohttp.ClientConnectorError(self._key(), OSError("handshake"))
        exc.__cause__ = _ssl_verify_error(with_reason=True)
        assert classify_aiohttp_exception(exc, 0.0).error == "tls"
