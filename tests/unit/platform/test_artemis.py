"""Tests of bridge.platform.artemis against the spec (docs: artemis-eventservice.md §2.1–2.4, §5).

Client requests are built by an independent reference signer written here from the spec
(plain hmac/hashlib/base64, one small function per client family), so a shared mistake in
the module's string builder cannot make both sides agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from email.utils import formatdate

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import AuthError
from bridge.platform.artemis import (
    REASONS,
    NonceCache,
    SignedRequest,
    Verified,
    content_md5,
    parse_timestamp_ms,
    sign,
    signed_headers,
    string_to_sign,
    verify,
)

# Test-vector credentials of spec §2.4.
KEY = "12345678"
SECRET = "abcdefghijklmnopqrst"
OLD_SECRET = "old-secret-QWERTYUIOPASDF"
OTHER_SECRET = "wrong-secret-ZXCVBNMLKJH"
ALL_SECRETS = (SECRET, OLD_SECRET, OTHER_SECRET)

T_MS = 1_700_000_000_000
T_S = 1_700_000_000
NOW = 1_700_000_000.0
NONCE = "3f1a7c52-0d4e-4b8e-9a61-2b7f0c9d1e55"

SUBSCRIBE = "/artemis/api/eventService/v1/eventSubscriptionByEventTypes"
VIEW = "/artemis/api/eventService/v1/eventSubscriptionView"
BODY = b'{"eventTypes":[196893],"eventDest":"http://10.0.0.5:8080/eventRcv"}'
BODY_MD5 = "HV6J+mLUCWAIOn95BNrlRg=="


def _secrets(key: str) -> Sequence[str] | None:
    return [SECRET] if key == KEY else None


def _verify(request: SignedRequest, **kwargs: object) -> Verified:
    options: dict[str, object] = {"now": NOW, "nonces": None}
    options.update(kwargs)
    secrets = options.pop("secrets_for_key", _secrets)
    return verify(request, secrets, **options)  # type: ignore[arg-type]


def _auth_error(request: SignedRequest, **kwargs: object) -> AuthError:
    with pytest.raises(AuthError) as caught:
        _verify(request, **kwargs)
    error = caught.value
    assert error.reason in REASONS
    # No secret may ever leak into a message, whatever went wrong.
    for secret in ALL_SECRETS:
        assert secret not in str(error)
    return error


# --------------------------------------------------------------------------- reference signer


def ref_signature(secret: str, text: str) -> str:
    """Base64(HMAC-SHA256(secret, text)), written straight from spec §2.2."""
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


def ref_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def java_sdk_request(
    path: str = SUBSCRIBE,
    body: bytes = BODY,
    *,
    secret: str = SECRET,
    nonce: str = NONCE,
    timestamp_ms: int = T_MS,
) -> SignedRequest:
    """Official Java SDK 1.1.6, doPostStringArtemis: ms timestamp, nonce, signed x-ca-* list."""
    text = (
        f"POST\n*/*\napplication/json\nx-ca-key:{KEY}\nx-ca-nonce:{nonce}\n"
        f"x-ca-timestamp:{timestamp_ms}\n{path}"
    )
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "x-ca-key": KEY,
        "x-ca-nonce": nonce,
        "x-ca-timestamp": str(timestamp_ms),
        "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp",
        "x-ca-signature": ref_signature(secret, text),
        "Hik-Request-ID": "artemis&artemis-http-client&1.1.6",
    }
    return SignedRequest("POST", path, [], headers, body)


def wuwx_request(path: str = VIEW, *, timestamp_s: int = T_S) -> SignedRequest:
    """PHP wuwx/hikvision: seconds timestamp; signs only x-ca-key and x-ca-timestamp; no body for view."""
    text = f"POST\n*/*\napplication/json\nx-ca-key:{KEY}\nx-ca-timestamp:{timestamp_s}\n{path}"
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "X-Ca-Key": KEY,
        "X-Ca-Timestamp": str(timestamp_s),
        "X-Ca-Signature-Headers": "x-ca-key,x-ca-timestamp",
        "X-Ca-Signature": ref_signature(SECRET, text),
    }
    return SignedRequest("POST", path, [], headers, b"")


def apu_request(path: str = "/artemis/api/example", body: bytes = BODY) -> SignedRequest:
    """Minimal HCP 2.4.1 form (APU): only key and signature, no custom lines, no signature-headers."""
    text = f"POST\n*/*\napplication/json\n{path}"  # APU's own example string, spec §2.2
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "X-Ca-Key": KEY,
        "X-Ca-Signature": ref_signature(SECRET, text),
    }
    return SignedRequest("POST", path, [], headers, body)


def acc_request(path: str = SUBSCRIBE, body: bytes = BODY) -> SignedRequest:
    """Accurio Python signer: Content-MD5, RFC-1123 Date, nonce; list Title-Cased, lines lower-case."""
    md5 = ref_md5(body)
    date = formatdate(NOW, usegmt=True)
    text = (
        f"POST\n*/*\n{md5}\napplication/json\n{date}\n"
        f"x-ca-key:{KEY}\nx-ca-nonce:{NONCE}\nx-ca-timestamp:{T_MS}\n{path}"
    )
    headers = {
        "Accept": "*/*",
        "Content-MD5": md5,
        "Content-Type": "application/json",
        "Date": date,
        "X-Ca-Key": KEY,
        "X-Ca-Nonce": NONCE,
        "X-Ca-Timestamp": str(T_MS),
        "X-Ca-Signature-Headers": "X-Ca-Key,X-Ca-Nonce,X-Ca-Timestamp",
        "X-Ca-Signature": ref_signature(SECRET, text),
    }
    return SignedRequest("POST", path, [], headers, body)


def unlisted_python_request(path: str = SUBSCRIBE, body: bytes = BODY) -> SignedRequest:
    """Python client (id 60821697871): sends timestamp and nonce but signs neither, no signature-headers."""
    text = f"POST\n*/*\napplication/json\n{path}"
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "X-Ca-Key": KEY,
        "X-Ca-Timestamp": str(T_MS),
        "X-Ca-Nonce": NONCE,
        "X-Ca-Signature": ref_signature(SECRET, text),
    }
    return SignedRequest("POST", path, [], headers, body)


def multipart_request(content_type: str, signed_content_type: str) -> SignedRequest:
    """SDK-style request with a multipart body: the boundary parameter is not signed."""
    path = "/artemis/api/upload"
    text = f"POST\n*/*\n{signed_content_type}\nx-ca-key:{KEY}\nx-ca-timestamp:{T_MS}\n{path}"
    headers = {
        "Accept": "*/*",
        "Content-Type": content_type,
        "x-ca-key": KEY,
        "x-ca-timestamp": str(T_MS),
        "x-ca-signature-headers": "x-ca-key,x-ca-timestamp",
        "x-ca-signature": ref_signature(SECRET, text),
    }
    return SignedRequest("POST", path, [], headers, b"--xyz\r\n...\r\n--xyz--\r\n")


def script_request(method: str, path: str = SUBSCRIBE) -> SignedRequest:
    """Python scripts of §5 #10: f"{method}\\n*/*\\n{ct}\\nx-ca-key:..\\nx-ca-timestamp:..\\n{path}"."""
    text = f"{method}\n*/*\napplication/json\nx-ca-key:{KEY}\nx-ca-timestamp:{T_MS}\n{path}"
    headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "X-Ca-Key": KEY,
        "X-Ca-Timestamp": str(T_MS),
        "X-Ca-Signature-Headers": "x-ca-key,x-ca-timestamp",
        "X-Ca-Signature": ref_signature(SECRET, text),
    }
    return SignedRequest(method, path, [], headers, BODY)


def aliyun_request(path: str = SUBSCRIBE) -> SignedRequest:
    """ONL-style stock Aliyun layout: absent Content-MD5 and Date leave empty lines."""
    content_type = "application/json;charset=UTF-8"
    text = f"POST\n*/*\n\n{content_type}\n\nx-ca-key:{KEY}\nx-ca-timestamp:{T_MS}\n{path}"
    headers = {
        "Accept": "*/*",
        "Content-Type": content_type,
        "x-ca-key": KEY,
        "x-ca-timestamp": str(T_MS),
        "x-ca-signature-headers": "x-ca-key,x-ca-timestamp",
        "x-ca-signature": ref_signature(SECRET, text),
    }
    return SignedRequest("POST", path, [], headers, BODY)


def query_request(query: list[tuple[str, str]], signed_resource: str, method: str = "GET") -> SignedRequest:
    """GET with query parameters; `signed_resource` is what the client put after the header lines."""
    text = f"{method}\n*/*\nx-ca-key:{KEY}\nx-ca-timestamp:{T_MS}\n{signed_resource}"
    headers = {
        "Accept": "*/*",
        "x-ca-key": KEY,
        "x-ca-timestamp": str(T_MS),
        "x-ca-signature-headers": "x-ca-key,x-ca-timestamp",
        "x-ca-signature": ref_signature(SECRET, text),
    }
    return SignedRequest(method, "/artemis/api/example", query, headers, b"")


def _replace_header(request: SignedRequest, name: str, value: str | None) -> SignedRequest:
    headers = {k: v for k, v in request.headers.items() if k.lower() != name.lower()}
    if value is not None:
        headers[name] = value
    return SignedRequest(request.method, request.path, request.query, headers, request.body)


# --------------------------------------------------------------------------- spec §2.4 vectors

VECTORS = {
    "A": (
        "POST",
        SUBSCRIBE,
        [],
        {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "x-ca-key": KEY,
            "x-ca-nonce": NONCE,
            "x-ca-timestamp": str(T_MS),
            "x-ca-signature-headers": "x-ca-key,x-ca-nonce,x-ca-timestamp",
        },
        b"",
        "POST\n*/*\napplication/json\nx-ca-key:12345678\n"
        "x-ca-nonce:3f1a7c52-0d4e-4b8e-9a61-2b7f0c9d1e55\nx-ca-timestamp:1700000000000\n"
        "/artemis/api/eventService/v1/eventSubscriptionByEventTypes",
        "GMIA0b97GdQQ0hf9JfBx/2Q0Cc/ADupb9qyeNIenxAk=",
    ),
    "B": (
        "POST",
        VIEW,
        [],
        {"Accept": "*/*", "Content-Type": "application/json", "X-Ca-Key": KEY},
        b"",
        "POST\n*/*\napplication/json\n/artemis/api/eventService/v1/eventSubscriptionView",
        "yYhDCg29M7ZyAI2ZHiOnntj3G6EnFNhGazPhb73oPrc=",
    ),
    "C": (
        "POST",
        SUBSCRIBE,
        [],
        {
            "Accept": "*/*",
            "Content-MD5": BODY_MD5,
            "Content-Type": "application/json",
            "x-ca-key": KEY,
            "x-ca-timestamp": str(T_MS),
            "x-ca-signature-headers": "x-ca-key,x-ca-timestamp",
        },
        BODY,
        "POST\n*/*\nHV6J+mLUCWAIOn95BNrlRg==\napplication/json\nx-ca-key:12345678\n"
        "x-ca-timestamp:1700000000000\n/artemis/api/eventService/v1/eventSubscriptionByEventTypes",
        "Js0raV+FM9rqYKV8rtMRTo42j1ioFi2AvGnb/W6NYns=",
    ),
    "D": (
        "GET",
        "/artemis/api/example",
        [("b", "2"), ("a", "1")],
        {
            "Accept": "*/*",
            "x-ca-key": KEY,
            "x-ca-timestamp": str(T_MS),
            "x-ca-signature-headers": "x-ca-key,x-ca-timestamp",
        },
        b"",
        "GET\n*/*\nx-ca-key:12345678\nx-ca-timestamp:1700000000000\n/artemis/api/example?a=1&b=2",
        "kCLRQ/WtjaQusXE3j6Max+f2k5n5YpYzlK/+Jj6n9NY=",
    ),
}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_spec_vector_string_and_signature(name: str) -> None:
    method, path, query, headers, _body, expected_string, expected_signature = VECTORS[name]
    built = string_to_sign(method, path, query, headers)
    assert built == expected_string
    assert not built.endswith("\n")
    assert sign(SECRET, built) == expected_signature


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_spec_vector_verifies(name: str) -> None:
    method, path, query, headers, body, _string, expected_signature = VECTORS[name]
    request = SignedRequest(method, path, query, {**headers, "x-ca-signature": expected_signature}, body)
    if "x-ca-timestamp" not in headers:  # vector B: the minimal form, a legacy opt-in
        assert _auth_error(request, nonces=NonceCache()).reason == "missing_timestamp"
        assert _verify(request, nonces=NonceCache(), allows_unsigned_timestamp=_legacy) == Verified(KEY, 0)
        return
    assert _verify(request, nonces=NonceCache()) == Verified(app_key=KEY, secret_index=0)


def _legacy(app_key: str) -> bool:
    return app_key == KEY


def test_content_md5_matches_vector_c() -> None:
    assert content_md5(BODY) == BODY_MD5


# --------------------------------------------------------------------------- client families


@pytest.mark.parametrize(
    "request_factory",
    [
        pytest.param(java_sdk_request, id="java-sdk"),
        pytest.param(wuwx_request, id="php-wuwx-seconds"),
        pytest.param(acc_request, id="acc-python-md5-date"),
        pytest.param(lambda: script_request("POST"), id="python-script"),
        pytest.param(lambda: script_request("DELETE"), id="python-script-delete"),
    ],
)
def test_client_family_is_accepted(request_factory: Callable[[], SignedRequest]) -> None:
    assert _verify(request_factory(), nonces=NonceCache()) == Verified(app_key=KEY, secret_index=0)


@pytest.mark.parametrize(
    ("request_factory", "missing"),
    [
        pytest.param(apu_request, "is missing", id="minimal-apu"),
        pytest.param(unlisted_python_request, "is not signed", id="python-unsigned-ts-nonce"),
    ],
)
def test_unsigned_timestamp_families_need_the_partners_opt_in(
    request_factory: Callable[[], SignedRequest], missing: str
) -> None:
    error = _auth_error(request_factory(), nonces=NonceCache())
    assert error.reason == "missing_timestamp"
    assert f"x-ca-timestamp {missing}" in str(error) and "X-Ca-Signature-Headers" in str(error)
    assert _verify(request_factory(), nonces=NonceCache(), allows_unsigned_timestamp=_legacy) == Verified(KEY, 0)
    # The opt-in is per appKey: another key's answer does not open it.
    assert _auth_error(request_factory(), allows_unsigned_timestamp=lambda key: False).reason == "missing_timestamp"


def test_an_unsigned_timestamp_sent_under_the_opt_in_is_still_checked() -> None:
    stale = _replace_header(unlisted_python_request(), "X-Ca-Timestamp", "1000")
    assert _auth_error(stale, allows_unsigned_timestamp=_legacy).reason == "expired_timestamp"


def test_signature_headers_without_the_timestamp_is_refused() -> None:
    """The captured-request attack: signed without x-ca-timestamp, replayable for ever."""
    text = f"POST\n*/*\napplication/json\nx-ca-key:{KEY}\n{SUBSCRIBE}"
    request = SignedRequest("POST", SUBSCRIBE, [], {
        "Accept": "*/*", "Content-Type": "application/json", "X-Ca-Key": KEY,
        "X-Ca-Timestamp": str(T_MS), "X-Ca-Signature-Headers": "x-ca-key",
        "X-Ca-Signature": ref_signature(SECRET, text)}, BODY)
    assert _auth_error(request).reason == "missing_timestamp"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("x-ca-nonce", "n" * 129, "bad_nonce"),
        ("x-ca-signature-headers", ",".join(f"x-ca-h{i}" for i in range(17)), "bad_signature_headers"),
        ("x-ca-signature-headers", "x-ca-key," + "x" * 600, "bad_signature_headers"),
    ],
)
def test_header_sizes_are_bounded(name: str, value: str, reason: str) -> None:
    nonces = NonceCache()
    assert _auth_error(_replace_header(java_sdk_request(), name, value), nonces=nonces).reason == reason
    assert len(nonces) == 0


def test_nonce_at_its_bound_is_accepted() -> None:
    nonce = "n" * 128
    assert _verify(java_sdk_request(nonce=nonce), nonces=NonceCache()).app_key == KEY


@pytest.mark.parametrize(
    ("content_type", "signed_content_type"),
    [
        ("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk", "multipart/form-data"),
        ("multipart/form-data;boundary=xyz", "multipart/form-data"),
        ("multipart/form-data;charset=UTF-8;boundary=xyz", "multipart/form-data;charset=UTF-8"),
    ],
)
def test_multipart_boundary_is_not_signed(content_type: str, signed_content_type: str) -> None:
    request = multipart_request(content_type, signed_content_type)
    assert _verify(request) == Verified(app_key=KEY, secret_index=0)
    built = string_to_sign("POST", "/p", [], {"Content-Type": content_type})
    assert built == f"POST\n{signed_content_type}\n/p"


def test_method_is_upper_cased() -> None:
    request = script_request("POST")
    lower = SignedRequest("post", request.path, request.query, request.headers, request.body)
    assert _verify(lower).app_key == KEY


def test_header_names_any_casing_build_same_string() -> None:
    _m, path, query, headers, _b, expected, _s = VECTORS["A"]
    assert string_to_sign("POST", path, query, {k.upper(): v for k, v in headers.items()}) == expected
    assert string_to_sign("POST", path, query, {k.title(): v for k, v in headers.items()}) == expected


def test_signed_header_names_argument_overrides_header() -> None:
    headers = {"x-ca-key": KEY, "x-ca-timestamp": "1", "x-ca-signature-headers": "x-ca-key"}
    assert string_to_sign("GET", "/p", [], headers) == "GET\nx-ca-key:12345678\n/p"
    built = string_to_sign(
        "GET",
        "/p",
        [],
        headers,
        signed_header_names=[" X-Ca-Timestamp ", "x-ca-key", "x-ca-key", "", "Accept", "x-ca-signature"],
    )
    assert built == "GET\nx-ca-key:12345678\nx-ca-timestamp:1\n/p"


def test_listed_but_missing_header_signs_empty_value() -> None:
    headers = {"x-ca-signature-headers": "x-ca-nonce , x-ca-key,,", "x-ca-key": "  k  "}
    assert string_to_sign("GET", "/p", [], headers) == "GET\nx-ca-key:k\nx-ca-nonce:\n/p"


def test_unsigned_extra_headers_may_change() -> None:
    # Hik-Request-ID carries no x-ca- prefix and is not listed, so it is not covered.
    request = _replace_header(java_sdk_request(), "Hik-Request-ID", "something else")
    assert _verify(request).app_key == KEY


def test_json_body_is_not_covered_without_content_md5() -> None:
    # Spec §2.2: JSON bodies are not part of the string; only Content-MD5 protects them.
    original = java_sdk_request()
    swapped = SignedRequest(original.method, original.path, original.query, original.headers, b"{}")
    assert _verify(swapped).app_key == KEY


# --------------------------------------------------------------------------- signed_headers helper


def test_signed_headers_matches_java_sdk_reference() -> None:
    headers = signed_headers(KEY, SECRET, "POST", SUBSCRIBE, BODY, timestamp_ms=T_MS, nonce=NONCE)
    reference = java_sdk_request()
    assert headers == {k: v for k, v in reference.headers.items() if k != "Hik-Request-ID"}
    assert headers["x-ca-signature"] == VECTORS["A"][6]


def test_signed_headers_defaults_and_content_md5() -> None:
    headers = signed_headers(KEY, SECRET, "post", SUBSCRIBE, BODY, with_content_md5=True)
    assert headers["Content-MD5"] == BODY_MD5
    assert len(headers["x-ca-nonce"]) == 36
    assert int(headers["x-ca-timestamp"]) >= 1_000_000_000_000  # epoch milliseconds, like the SDK
    assert headers["x-ca-signature-headers"] == "x-ca-key,x-ca-nonce,x-ca-timestamp"
    now = int(headers["x-ca-timestamp"]) / 1000
    request = SignedRequest("POST", SUBSCRIBE, [], headers, BODY)
    assert _verify(request, now=now).app_key == KEY


def test_signed_headers_with_query_in_path() -> None:
    headers = signed_headers(
        KEY, SECRET, "GET", "/artemis/api/example?b=2&a=1&c=", content_type="", timestamp_ms=T_MS, nonce=NONCE
    )
    assert "Content-Type" not in headers
    request = SignedRequest("GET", "/artemis/api/example", [("b", "2"), ("a", "1"), ("c", "")], headers, b"")
    assert _verify(request).app_key == KEY


# --------------------------------------------------------------------------- failures


def test_missing_key() -> None:
    error = _auth_error(_replace_header(java_sdk_request(), "x-ca-key", None))
    assert error.reason == "missing_key"
    assert "x-ca-key" in str(error)


def test_blank_key_counts_as_missing() -> None:
    assert _auth_error(_replace_header(java_sdk_request(), "x-ca-key", "  ")).reason == "missing_key"


def test_missing_signature() -> None:
    error = _auth_error(_replace_header(java_sdk_request(), "x-ca-signature", None))
    assert error.reason == "missing_signature"


def test_missing_key_is_reported_before_missing_signature() -> None:
    request = _replace_header(_replace_header(java_sdk_request(), "x-ca-key", None), "x-ca-signature", None)
    assert _auth_error(request).reason == "missing_key"


@pytest.mark.parametrize("answer", [None, []])
def test_unknown_key(answer: Sequence[str] | None) -> None:
    error = _auth_error(java_sdk_request(), secrets_for_key=lambda key: answer)
    assert error.reason == "unknown_key"
    assert KEY in str(error)


def test_bad_signature_wrong_secret() -> None:
    error = _auth_error(java_sdk_request(secret=OTHER_SECRET))
    assert error.reason == "bad_signature"
    # The message shows the server's string-to-sign, with newlines escaped, to help client authors.
    assert "signature mismatch" in str(error)
    assert repr(VECTORS["A"][5]) in str(error)
    assert "\n" not in str(error)


def test_bad_signature_tampered_path() -> None:
    original = java_sdk_request()
    tampered = SignedRequest("POST", VIEW, original.query, original.headers, original.body)
    assert _auth_error(tampered).reason == "bad_signature"


def test_bad_signature_tampered_method() -> None:
    original = java_sdk_request()
    tampered = SignedRequest("PUT", original.path, original.query, original.headers, original.body)
    assert _auth_error(tampered).reason == "bad_signature"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-ca-nonce", "00000000-0000-0000-0000-000000000000"),
        ("x-ca-timestamp", str(T_MS + 1)),
        ("Accept", "application/json"),
        ("Content-Type", "text/plain"),
        ("x-ca-signature-headers", "x-ca-key,x-ca-timestamp"),
    ],
)
def test_bad_signature_tampered_signed_header(name: str, value: str) -> None:
    assert _auth_error(_replace_header(java_sdk_request(), name, value)).reason == "bad_signature"


def test_bad_signature_tampered_query() -> None:
    request = query_request([("a", "1"), ("b", "2")], "/artemis/api/example?a=1&b=2")
    tampered = SignedRequest(request.method, request.path, [("a", "1"), ("b", "3")], request.headers, b"")
    assert _auth_error(tampered).reason == "bad_signature"


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(str(T_MS - 901_000), id="ms-past"),
        pytest.param(str(T_MS + 901_000), id="ms-future"),
        pytest.param(str(T_S - 901), id="seconds-past"),
        pytest.param(str(T_S + 901), id="seconds-future"),
        pytest.param("0", id="zero"),
    ],
)
def test_expired_timestamp(timestamp: str) -> None:
    request = _replace_header(java_sdk_request(), "x-ca-timestamp", timestamp)
    error = _auth_error(request)
    assert error.reason == "expired_timestamp"
    assert "900" in str(error)
    expected_direction = "future" if int(timestamp) in (T_MS + 901_000, T_S + 901) else "past"
    assert expected_direction in str(error)


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param(T_MS - 900_000, id="ms-edge-past"),
        pytest.param(T_MS + 900_000, id="ms-edge-future"),
        pytest.param(T_S - 900, id="seconds-edge-past"),
        pytest.param(T_S + 900, id="seconds-edge-future"),
    ],
)
def test_timestamp_at_window_edge_is_accepted(timestamp: int) -> None:
    assert _verify(java_sdk_request(timestamp_ms=timestamp)).app_key == KEY


def test_custom_window() -> None:
    request = java_sdk_request(timestamp_ms=T_MS - 60_000)
    assert _verify(request, window_s=120).app_key == KEY
    assert _auth_error(request, window_s=30).reason == "expired_timestamp"


@pytest.mark.parametrize("timestamp", ["", "abc", "1.7e12", "1700000000000.5", "0x10", "1_700_000_000"])
def test_non_integer_timestamp(timestamp: str) -> None:
    error = _auth_error(_replace_header(java_sdk_request(), "x-ca-timestamp", timestamp))
    assert error.reason == "expired_timestamp"
    assert str(error) == "x-ca-timestamp is not an integer"


def test_timestamp_is_checked_before_signature() -> None:
    request = java_sdk_request(secret=OTHER_SECRET, timestamp_ms=T_MS - 10_000_000)
    assert _auth_error(request).reason == "expired_timestamp"


def test_replayed_nonce() -> None:
    nonces = NonceCache()
    assert _verify(java_sdk_request(), nonces=nonces).app_key == KEY
    error = _auth_error(java_sdk_request(), nonces=nonces, now=NOW + 1)
    assert error.reason == "replayed_nonce"
    assert NONCE in str(error)


def test_nonce_accepted_again_after_window() -> None:
    nonces = NonceCache(window_s=60)
    assert _verify(java_sdk_request(), nonces=nonces).app_key == KEY
    assert _auth_error(java_sdk_request(), nonces=nonces, now=NOW + 60).reason == "replayed_nonce"
    assert _verify(java_sdk_request(), nonces=nonces, now=NOW + 61).app_key == KEY


def test_unsigned_nonce_is_not_tracked() -> None:
    """Anyone can change an unsigned nonce, so it neither protects nor fills the cache."""
    nonces = NonceCache()
    assert _verify(unlisted_python_request(), nonces=nonces, allows_unsigned_timestamp=_legacy).app_key == KEY
    assert _verify(unlisted_python_request(), nonces=nonces, allows_unsigned_timestamp=_legacy).app_key == KEY
    assert len(nonces) == 0


def test_bad_signature_does_not_poison_nonce_cache() -> None:
    nonces = NonceCache()
    assert _auth_error(java_sdk_request(secret=OTHER_SECRET), nonces=nonces).reason == "bad_signature"
    assert len(nonces) == 0
    assert _verify(java_sdk_request(), nonces=nonces).app_key == KEY


def test_no_nonce_cache_means_no_replay_check() -> None:
    assert _verify(java_sdk_request()).app_key == KEY
    assert _verify(java_sdk_request()).app_key == KEY


def test_content_md5_mismatch() -> None:
    original = acc_request()
    tampered = SignedRequest(original.method, original.path, original.query, original.headers, b'{"eventTypes":[1]}')
    error = _auth_error(tampered)
    assert error.reason == "content_md5_mismatch"
    assert "Content-MD5" in str(error)


def test_no_secret_in_any_message() -> None:
    failing: list[tuple[SignedRequest, dict[str, object]]] = [
        (_replace_header(java_sdk_request(), "x-ca-key", None), {}),
        (_replace_header(java_sdk_request(), "x-ca-signature", None), {}),
        (java_sdk_request(), {"secrets_for_key": lambda key: None}),
        (java_sdk_request(secret=OTHER_SECRET), {}),
        (java_sdk_request(secret=OLD_SECRET), {"secrets_for_key": lambda key: [SECRET, OTHER_SECRET]}),
        (java_sdk_request(timestamp_ms=0), {}),
        (_replace_header(java_sdk_request(), "x-ca-timestamp", "x"), {}),
        (_replace_header(acc_request(), "Content-MD5", ref_md5(b"other")), {}),
        (apu_request(), {}),
        (_replace_header(java_sdk_request(), "x-ca-nonce", "n" * 200), {}),
        (_replace_header(java_sdk_request(), "x-ca-signature-headers", "x" * 600), {}),
    ]
    reasons = {_auth_error(request, **kwargs).reason for request, kwargs in failing}
    assert reasons == set(REASONS) - {"disabled_partner", "replayed_nonce"}
    nonces = NonceCache()
    _verify(java_sdk_request(), nonces=nonces)
    assert _auth_error(java_sdk_request(), nonces=nonces).reason == "replayed_nonce"


def test_reasons_are_the_documented_codes() -> None:
    assert REASONS == (
        "missing_key",
        "unknown_key",
        "disabled_partner",
        "bad_signature",
        "expired_timestamp",
        "replayed_nonce",
        "content_md5_mismatch",
        "missing_signature",
        "missing_timestamp",
        "bad_nonce",
        "bad_signature_headers",
    )


# --------------------------------------------------------------------------- rotation


def test_rotation_old_secret_matches_index_1() -> None:
    rotating: Callable[[str], Sequence[str] | None] = lambda key: [SECRET, OLD_SECRET]  # noqa: E731
    assert _verify(java_sdk_request(secret=OLD_SECRET), secrets_for_key=rotating) == Verified(KEY, 1)
    assert _verify(java_sdk_request(secret=SECRET), secrets_for_key=rotating) == Verified(KEY, 0)


def test_rotation_retired_secret_is_rejected() -> None:
    error = _auth_error(java_sdk_request(secret=OLD_SECRET), secrets_for_key=lambda key: [SECRET])
    assert error.reason == "bad_signature"


# --------------------------------------------------------------------------- query


def test_query_params_are_sorted_by_key() -> None:
    request = query_request([("z", "9"), ("b", "2"), ("a", "1")], "/artemis/api/example?a=1&b=2&z=9")
    assert _verify(request).app_key == KEY


def test_query_values_are_raw_decoded() -> None:
    query = [("name", "a b&c"), ("city", "北京")]
    request = query_request(query, "/artemis/api/example?city=北京&name=a b&c")
    assert _verify(request).app_key == KEY


def test_query_repeated_key_sorted_by_value() -> None:
    built = string_to_sign("GET", "/p", [("k", "2"), ("k", "1")], {})
    assert built == "GET\n/p?k=1&k=2"


def test_query_accepts_mapping() -> None:
    assert string_to_sign("GET", "/p", {"b": "2", "a": ""}, {}) == "GET\n/p?a=&b=2"
    assert string_to_sign("GET", "/p", {}, {}) == "GET\n/p"


@pytest.mark.parametrize(
    "signed_resource",
    [
        pytest.param("/artemis/api/example?a=&b=2&c=", id="sdk-1.1.6-k="),
        pytest.param("/artemis/api/example?a&b=2&c", id="sdk-old-bare-k"),
    ],
)
def test_query_empty_value_both_forms(signed_resource: str) -> None:
    request = query_request([("b", "2"), ("c", ""), ("a", "")], signed_resource)
    assert _verify(request).app_key == KEY


def test_query_blank_keys_are_dropped_like_the_sdk() -> None:
    assert string_to_sign("GET", "/p", [("", "x"), (" ", "y"), ("a", "1")], {}) == "GET\n/p?a=1"
    assert string_to_sign("GET", "/p", [("", "x")], {}) == "GET\n/p"


def test_query_empty_value_canonical_form_is_k_equals() -> None:
    assert string_to_sign("GET", "/p", [("a", ""), ("b", "2")], {}) == "GET\n/p?a=&b=2"


# --------------------------------------------------------------------------- Aliyun empty lines


def test_aliyun_empty_line_variant_rejected_by_default() -> None:
    assert _auth_error(aliyun_request()).reason == "bad_signature"


def test_aliyun_empty_line_variant_accepted_when_enabled() -> None:
    assert _verify(aliyun_request(), accept_empty_line_variant=True) == Verified(KEY, 0)
    # Leniency adds a layout; the Artemis layout keeps working.
    assert _verify(java_sdk_request(), accept_empty_line_variant=True) == Verified(KEY, 0)


def test_keep_empty_lines_layout() -> None:
    built = string_to_sign("POST", "/p", [], {"Accept": "*/*", "Content-Type": "a/b"}, keep_empty_lines=True)
    assert built == "POST\n*/*\n\na/b\n\n/p"


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000000", T_MS),
        ("1700000000", T_MS),
        (" 1700000000123 ", T_MS + 123),
        ("999999999999", 999_999_999_999_000),
        ("1000000000000", 1_000_000_000_000),
    ],
)
def test_parse_timestamp_ms(value: str, expected: int) -> None:
    assert parse_timestamp_ms(value) == expected


# "\uff11\uff17..." are full-width digits: int() accepts them, the protocol does not.
@pytest.mark.parametrize("value", ["", " ", "1.5", "abc", "-", "\uff11\uff17\uff10\uff10"])
def test_parse_timestamp_ms_rejects_non_integers(value: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp_ms(value)


def test_nonce_cache_scopes_by_app_key() -> None:
    cache = NonceCache()
    assert not cache.seen("k1", "n", NOW)
    assert not cache.seen("k2", "n", NOW)
    assert cache.seen("k1", "n", NOW + 1)


def test_nonce_cache_expires_after_window() -> None:
    cache = NonceCache(window_s=10)
    assert not cache.seen("k", "n", NOW)
    assert cache.seen("k", "n", NOW + 10)
    assert not cache.seen("k", "n", NOW + 10.5)
    assert cache.seen("k", "n", NOW + 11)


def test_nonce_cache_is_bounded() -> None:
    cache = NonceCache(window_s=900, max_entries=100)
    for i in range(1_000):
        assert not cache.seen("k", f"n{i}", NOW + i / 1000)
        assert len(cache) <= 100
    assert len(cache) == 100
    # The oldest were evicted; the newest are still remembered.
    assert cache.seen("k", "n999", NOW + 1)
    assert not cache.seen("k", "n0", NOW + 1)


def test_nonce_cache_drops_expired_entries() -> None:
    cache = NonceCache(window_s=10)
    for i in range(50):
        cache.seen("k", f"n{i}", NOW)
    cache.seen("k", "later", NOW + 11)
    assert len(cache) == 1


@pytest.mark.parametrize(("window_s", "max_entries"), [(0, 10), (-1, 10), (10, 0)])
def test_nonce_cache_rejects_bad_limits(window_s: float, max_entries: int) -> None:
    with pytest.raises(ValueError):
        NonceCache(window_s=window_s, max_entries=max_entries)


# --------------------------------------------------------------------------- properties

_NO_QUERY_TEXT = st.text(alphabet=st.characters(exclude_characters="?"), max_size=40)
_HEADER_NAMES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "Accept",
            "content-md5",
            "CONTENT-TYPE",
            "Date",
            "x-ca-key",
            "X-Ca-Signature",
            "X-Ca-Signature-Headers",
            "x-ca-timestamp",
            "x-ca-nonce",
        ]
    ),
)
_PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY_SETTINGS
@given(
    app_key=st.text(min_size=1, max_size=20).filter(lambda k: k.strip() != ""),
    secret=st.text(max_size=30),
    method=st.text(max_size=10),
    path=_NO_QUERY_TEXT,
    body=st.binary(max_size=200),
    content_type=st.text(max_size=40),
    accept=st.text(max_size=20),
    with_md5=st.booleans(),
)
def test_property_signed_headers_verify(
    app_key: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    accept: str,
    with_md5: bool,
) -> None:
    headers = signed_headers(
        app_key,
        secret,
        method,
        path,
        body,
        content_type=content_type,
        accept=accept,
        timestamp_ms=T_MS,
        with_content_md5=with_md5,
    )
    request = SignedRequest(method, path, [], headers, body)
    result = verify(
        request,
        lambda key: [secret] if key == app_key.strip() else None,
        now=NOW,
        nonces=NonceCache(),
    )
    assert result == Verified(app_key=app_key.strip(), secret_index=0)


@_PROPERTY_SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=_NO_QUERY_TEXT,
    body=st.binary(max_size=100),
    data=st.data(),
)
def test_property_flipped_signature_character_fails(method: str, path: str, body: bytes, data: st.DataObject) -> None:
    headers = signed_headers(KEY, SECRET, method, path, body, timestamp_ms=T_MS)
    signature = headers["x-ca-signature"]
    index = data.draw(st.integers(min_value=0, max_value=len(signature) - 1), label="index")
    replacement = data.draw(st.characters().filter(lambda c: c != signature[index]), label="replacement")
    headers["x-ca-signature"] = signature[:index] + replacement + signature[index + 1 :]
    error = _auth_error(SignedRequest(method, path, [], headers, body))
    assert error.reason == "bad_signature"


@_PROPERTY_SETTINGS
@given(
    method=st.text(max_size=10),
    path=st.text(max_size=40),
    query=st.one_of(
        st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=5),
        st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5),
    ),
    headers=st.dictionaries(_HEADER_NAMES, st.text(max_size=30), max_size=10),
    signed_header_names=st.one_of(st.none(), st.lists(st.one_of(_HEADER_NAMES, st.just(" , ")), max_size=5)),
    keep_empty_lines=st.booleans(),
)
def test_property_string_to_sign_never_raises(
    method: str,
    path: str,
    query: list[tuple[str, str]] | dict[str, str],
    headers: dict[str, str],
    signed_header_names: list[str] | None,
    keep_empty_lines: bool,
) -> None:
    built = string_to_sign(
        method,
        path,
        query,
        headers,
        signed_header_names=signed_header_names,
        keep_empty_lines=keep_empty_lines,
    )
    assert isinstance(built, str)
    assert built.startswith(method.upper() + "\n")
    assert path in built


@_PROPERTY_SETTINGS
@given(
    headers=st.dictionaries(_HEADER_NAMES, st.text(max_size=30), max_size=10),
    query=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=3),
    body=st.binary(max_size=50),
    lenient=st.booleans(),
)
def test_property_verify_only_raises_auth_error(
    headers: dict[str, str], query: list[tuple[str, str]], body: bytes, lenient: bool
) -> None:
    request = SignedRequest("POST", "/artemis/api/x", query, headers, body)
    try:
        verify(
            request,
            lambda key: [SECRET],
            now=NOW,
            nonces=NonceCache(),
            accept_empty_line_variant=lenient,
        )
    except AuthError as error:
        assert error.reason in REASONS
        assert SECRET not in str(error)
