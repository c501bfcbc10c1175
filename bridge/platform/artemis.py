"""Hikvision Artemis gateway request signing: build, sign and verify (spec §2.1–2.4).

The Artemis gateway derives from the Aliyun API gateway: a client signs a canonical
"string-to-sign" with HMAC-SHA256 under its appSecret and sends the Base64 result in
``X-Ca-Signature``. The layout (spec §2.2)::

    METHOD\\n
    Accept\\n  Content-MD5\\n  Content-Type\\n  Date\\n     (each line only if the header is sent)
    name:value\\n ...                                        (signed custom headers, sorted)
    path[?k=v&k=v...]                                        (no trailing newline)

Client families disagree on details (spec §2.3, §5), so the verifier is deliberately tolerant
where tolerance costs no security: it takes the signed header set from
``X-Ca-Signature-Headers`` (not from "every x-ca-* header present"), accepts second or
millisecond timestamps, accepts both encodings of empty query values, and optionally the
Aliyun empty-line layout. Every variant still requires a valid HMAC under a known secret.

This module is pure logic: no I/O and no framework imports. Callers turn an HTTP request
into a :class:`SignedRequest` (raw path, decoded query pairs, header values, body bytes)
and map :class:`~bridge.errors.AuthError` reasons to responses. Over 400 lines on purpose: the
signer and the verifier must build the same string-to-sign, so they share one module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from bridge.errors import AuthError

__all__ = [
    "REASONS",
    "NonceCache",
    "NonceStore",
    "SignedRequest",
    "Verified",
    "content_md5",
    "parse_timestamp_ms",
    "sign",
    "signed_headers",
    "string_to_sign",
    "verify",
]

REASONS: tuple[str, ...] = (
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

#: Longest ``x-ca-nonce`` accepted (a UUID is 36 characters): the replay cache keeps every nonce.
MAX_NONCE_LENGTH = 128
#: Most names, and longest value, of ``X-Ca-Signature-Headers``.
MAX_SIGNED_HEADERS = 16
MAX_SIGNATURE_HEADERS_LENGTH = 512

# Headers with a fixed slot in the string-to-sign, in slot order (spec §2.2).
_FIXED_SLOTS: tuple[str, ...] = ("accept", "content-md5", "content-type", "date")
# Never signed as custom "name:value" lines: the two signature headers are set after signing,
# and the fixed-slot headers already have their own lines.
_NOT_CUSTOM: frozenset[str] = frozenset({"x-ca-signature", "x-ca-signature-headers", *_FIXED_SLOTS})
# What the official Java SDK signs for every request (spec §2.1), already sorted.
_SDK_SIGNED_NAMES: tuple[str, ...] = ("x-ca-key", "x-ca-nonce", "x-ca-timestamp")

_INTEGER = re.compile(r"[+-]?[0-9]+")
# Epoch milliseconds passed 1e12 in 2001; any smaller value is a seconds timestamp (WUWX, PHP `time()`).
_SECONDS_BELOW = 1_000_000_000_000


# --------------------------------------------------------------------------- primitives


def sign(secret: str, string: str) -> str:
    """Return Base64(HMAC-SHA256(secret, string)), standard alphabet with padding (spec §2.2)."""
    # "surrogatepass" keeps the function total: a lone surrogate can only come from odd decoding
    # upstream, and raising UnicodeEncodeError in the middle of verification would turn a
    # malformed request into a server error instead of a clean bad_signature.
    digest = hmac.new(
        secret.encode("utf-8", "surrogatepass"),
        string.encode("utf-8", "surrogatepass"),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def content_md5(body: bytes) -> str:
    """Return Base64(MD5(body)), the value of the ``Content-MD5`` header."""
    # MD5 here is an integrity checksum defined by the protocol, not a security primitive.
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


def parse_timestamp_ms(value: str) -> int:
    """Parse an ``x-ca-timestamp`` value to epoch milliseconds.

    The SDK sends milliseconds; WUWX (PHP) sends seconds, so values below 1e12 are read as
    seconds. Raises :class:`ValueError` unless the value is a plain ASCII integer.
    """
    text = value.strip()
    # int() alone would also accept "1_700" and non-ASCII digits; no client sends those.
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"not an integer timestamp: {value!r}")
    number = int(text)
    return number * 1000 if number < _SECONDS_BELOW else number


# --------------------------------------------------------------------------- string-to-sign


def _lower_view(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names are case-insensitive on the wire; look them up by lower-case name."""
    return {name.lower(): value for name, value in headers.items()}


def _strip_boundary(content_type: str) -> str:
    """Drop the multipart ``boundary`` parameter exactly as the Java SDK does.

    The SDK splits on ";" (Java's split drops trailing empty parts), skips every part that
    contains "boundary" and re-joins the rest with ";", without trimming spaces.
    """
    if "boundary" not in content_type:
        return content_type
    parts = content_type.split(";")
    while parts and parts[-1] == "":
        parts.pop()
    return ";".join(part for part in parts if "boundary" not in part)


def _custom_header_names(view: Mapping[str, str], signed_header_names: Iterable[str] | None) -> list[str]:
    """Lower-cased, de-duplicated, sorted names of the signed custom headers."""
    if signed_header_names is None:
        # The verifier trusts the client's list rather than "every x-ca-* present": APU and
        # several Python clients send x-ca-* headers they did not sign (spec §2.2).
        signed_header_names = view.get("x-ca-signature-headers", "").split(",")
    names = {name.strip().lower() for name in signed_header_names}
    names.discard("")
    return sorted(names - _NOT_CUSTOM)


def _query_pairs(query: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query pairs sorted by key, then value; blank keys are dropped as the SDK drops them."""
    items: Iterable[tuple[str, str]] = query.items() if isinstance(query, Mapping) else query
    return sorted((key, value) for key, value in items if key.strip())


def _build(
    method: str,
    path: str,
    pairs: Sequence[tuple[str, str]],
    view: Mapping[str, str],
    names: Sequence[str],
    *,
    keep_empty_lines: bool,
    bare_empty_values: bool,
) -> str:
    """Assemble the string-to-sign from already-normalised parts (see :func:`string_to_sign`)."""
    lines = [method.upper()]
    for slot in _FIXED_SLOTS:
        value = view.get(slot)
        if value is None:
            # The Artemis SDK omits the line; the stock Aliyun gateway keeps it empty (ONL).
            if keep_empty_lines:
                lines.append("")
            continue
        lines.append(_strip_boundary(value) if slot == "content-type" else value)
    for name in names:
        lines.append(f"{name}:{view.get(name, '').strip()}")

    resource = path
    if pairs:
        # SDK 1.1.6 writes "k=" for an empty value; SDK-old wrote the bare "k".
        resource += "?" + "&".join(
            key if bare_empty_values and value == "" else f"{key}={value}" for key, value in pairs
        )
    lines.append(resource)
    return "\n".join(lines)


def string_to_sign(
    method: str,
    path: str,
    query: Mapping[str, str] | Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    *,
    signed_header_names: Sequence[str] | None = None,
    keep_empty_lines: bool = False,
) -> str:
    """Build the Artemis string-to-sign (spec §2.2, §2.4).

    ``headers`` may use any casing. The signed custom headers are ``signed_header_names`` when
    given, else the comma-separated ``X-Ca-Signature-Headers`` value. ``query`` holds decoded
    parameters (query string plus urlencoded form fields); values are used raw, un-encoded.
    ``keep_empty_lines`` selects the Aliyun layout, where an absent Accept, Content-MD5,
    Content-Type or Date still leaves an empty line.
    """
    view = _lower_view(headers)
    return _build(
        method,
        path,
        _query_pairs(query),
        view,
        _custom_header_names(view, signed_header_names),
        keep_empty_lines=keep_empty_lines,
        bare_empty_values=False,
    )


# --------------------------------------------------------------------------- replay cache


class NonceStore(Protocol):
    """Where :func:`verify` records the nonces of verified requests.

    :class:`NonceCache` keeps them in this process; ``bridge.nonces.KafkaNonceStore`` shares
    them between every api replica. ``seen`` may block (the shared store waits for Kafka) and
    may raise :class:`~bridge.errors.KafkaUnavailable` when it cannot decide.
    """

    def seen(self, app_key: str, nonce: str, now: float) -> bool:
        """True if (app_key, nonce) was already used within the window; otherwise record it."""
        ...


class NonceCache:
    """Remembers nonces seen within the window; bounded (max_entries, default 100_000, evicting the oldest) so memory cannot grow without limit.

    A nonce is remembered from the time it is first seen. To close the replay gap completely,
    the window should cover the whole timestamp window on both sides (2 * the verifier's
    ``window_s``), because a request stamped up to ``window_s`` in the future stays acceptable
    that much longer. Safe to share between threads.
    """

    def __init__(self, window_s: float = 900.0, max_entries: int = 100_000) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._window_s = window_s
        self._max_entries = max_entries
        # Insertion order is (almost always) first-seen order, so expiry and eviction pop from
        # the front in O(1) per entry. (Not cachetools: this package is standard library only,
        # and a TTLCache's window would end just before window_s, where this one includes it.)
        self._first_seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Sync route handlers run in a thread pool; OrderedDict mutation is not atomic.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._first_seen)

    def seen(self, app_key: str, nonce: str, now: float) -> bool:
        """Return True if (app_key, nonce) was seen within the window; otherwise record it."""
        key = (app_key, nonce)
        with self._lock:
            self._expire(now)
            first_seen = self._first_seen.get(key)
            # Checked explicitly: if the clock stepped back, an expired entry may sit behind a
            # newer one and survive _expire.
            if first_seen is not None and now - first_seen <= self._window_s:
                return True
            self._first_seen[key] = now
            self._first_seen.move_to_end(key)
            while len(self._first_seen) > self._max_entries:
                self._first_seen.popitem(last=False)
            return False

    def _expire(self, now: float) -> None:
        cutoff = now - self._window_s
        while self._first_seen:
            key, first_seen = next(iter(self._first_seen.items()))
            if first_seen >= cutoff:
                break
            del self._first_seen[key]


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an incoming HTTP request that the signature covers."""

    method: str
    path: str  # raw path as received, including /artemis
    query: Sequence[tuple[str, str]]  # decoded query (and urlencoded form) pairs
    headers: Mapping[str, str]  # any casing
    body: bytes


@dataclass(frozen=True)
class Verified:
    """A request whose signature matched one of the app key's secrets."""

    app_key: str
    secret_index: int  # which of the candidate secrets matched (0 = current, 1+ = older ones in rotation grace)


def _check_timestamp(raw: str, *, now: float, window_s: float) -> None:
    try:
        timestamp_ms = parse_timestamp_ms(raw)
    except ValueError:
        raise AuthError("expired_timestamp", "x-ca-timestamp is not an integer") from None
    skew_ms = now * 1000 - timestamp_ms
    if abs(skew_ms) > window_s * 1000:
        direction = "in the past" if skew_ms > 0 else "in the future"
        raise AuthError(
            "expired_timestamp",
            f"x-ca-timestamp is {abs(skew_ms) / 1000:.3f} s {direction}; "
            f"the allowed window is ±{window_s:g} s "
            "(send epoch milliseconds, or seconds, from a synchronised clock)",
        )


def _candidate_strings(
    request: SignedRequest, view: Mapping[str, str], *, accept_empty_line_variant: bool
) -> list[str]:
    """Every string-to-sign layout a legitimate client family may have used, canonical first."""
    pairs = _query_pairs(request.query)
    names = _custom_header_names(view, None)
    layouts = [False, True] if accept_empty_line_variant else [False]
    bare_forms = [False, True] if any(value == "" for _, value in pairs) else [False]
    strings = [
        _build(
            request.method,
            request.path,
            pairs,
            view,
            names,
            keep_empty_lines=keep_empty_lines,
            bare_empty_values=bare,
        )
        for keep_empty_lines in layouts
        for bare in bare_forms
    ]
    return list(dict.fromkeys(strings))


def _check_header_sizes(view: Mapping[str, str]) -> None:
    listed = view.get("x-ca-signature-headers", "")
    if len(listed) > MAX_SIGNATURE_HEADERS_LENGTH or listed.count(",") >= MAX_SIGNED_HEADERS:
        raise AuthError(
            "bad_signature_headers",
            f"X-Ca-Signature-Headers may name at most {MAX_SIGNED_HEADERS} headers in "
            f"{MAX_SIGNATURE_HEADERS_LENGTH} characters",
        )
    if len(view.get("x-ca-nonce", "").strip()) > MAX_NONCE_LENGTH:
        raise AuthError("bad_nonce", f"x-ca-nonce may be at most {MAX_NONCE_LENGTH} characters")


def _never(app_key: str) -> bool:
    return False


def verify(
    request: SignedRequest,
    secrets_for_key: Callable[[str], Sequence[str] | None],
    *,
    now: float,
    nonces: NonceStore | None,
    window_s: float = 900.0,
    accept_empty_line_variant: bool = False,
    allows_unsigned_timestamp: Callable[[str], bool] = _never,
) -> Verified:
    """Authenticate an Artemis-signed request or raise :class:`AuthError`.

    ``secrets_for_key`` maps an appKey to its candidate secrets, current first, then older
    ones still in a rotation grace period; None (or no secret at all) means the key is unknown.
    ``now`` is the epoch time in seconds. Checks run in a fixed order: headers present and of
    bounded size, key known, a signed timestamp within the window, Content-MD5, signature, and
    only then the nonce, so unsigned requests cannot fill the replay cache.

    The timestamp must be sent and signed (named in ``X-Ca-Signature-Headers``): the JSON body
    is not signed, so without it a captured request stays valid for ever. Only an appKey for
    which ``allows_unsigned_timestamp`` says so (the operator's legacy opt-in for minimal
    clients) may go without; a timestamp it sends is then still checked. The nonce is checked
    for replay only when signed: an unsigned one could be changed at will.
    """
    view = _lower_view(request.headers)

    app_key = view.get("x-ca-key", "").strip()
    if not app_key:
        raise AuthError("missing_key", "the x-ca-key header (the appKey) is missing")
    signature = view.get("x-ca-signature", "").strip()
    if not signature:
        raise AuthError("missing_signature", "the x-ca-signature header is missing")
    _check_header_sizes(view)

    secrets = secrets_for_key(app_key)
    if not secrets:
        raise AuthError("unknown_key", f"appKey {app_key!r} is not known")

    signed_names = _custom_header_names(view, None)
    raw_timestamp = view.get("x-ca-timestamp")
    if raw_timestamp is None or "x-ca-timestamp" not in signed_names:
        if not allows_unsigned_timestamp(app_key):
            missing = "is missing" if raw_timestamp is None else "is not signed"
            raise AuthError(
                "missing_timestamp",
                f"x-ca-timestamp {missing}: send it and name it in X-Ca-Signature-Headers "
                "(as the official SDKs do); without a signed timestamp a request never expires",
            )
    if raw_timestamp is not None:
        _check_timestamp(raw_timestamp, now=now, window_s=window_s)

    declared_md5 = view.get("content-md5")
    if declared_md5 is not None:
        actual_md5 = content_md5(request.body)
        if declared_md5.strip() != actual_md5:
            raise AuthError(
                "content_md5_mismatch",
                f"Content-MD5 {declared_md5.strip()!r} does not match the body "
                f"(Base64 of the MD5 of the {len(request.body)} body bytes is {actual_md5!r})",
            )

    candidates = _candidate_strings(request, view, accept_empty_line_variant=accept_empty_line_variant)
    provided = signature.encode("utf-8", "surrogatepass")
    matched: int | None = None
    for index, secret in enumerate(secrets):
        # compare_digest on bytes: on str it raises TypeError for non-ASCII input.
        if any(hmac.compare_digest(sign(secret, candidate).encode("ascii"), provided) for candidate in candidates):
            matched = index
            break
    if matched is None:
        # The string-to-sign holds no secret, and showing it is the fastest way for a client
        # author to find which line they built differently.
        raise AuthError(
            "bad_signature",
            f"signature mismatch: the server computed the string-to-sign as {candidates[0]!r}",
        )

    nonce = view.get("x-ca-nonce", "").strip() if "x-ca-nonce" in signed_names else ""
    # An empty nonce carries no uniqueness; recording it would reject every later such request.
    if nonce and nonces is not None and nonces.seen(app_key, nonce, now):
        raise AuthError("replayed_nonce", f"x-ca-nonce {nonce!r} was already used within the replay window")

    return Verified(app_key=app_key, secret_index=matched)


# --------------------------------------------------------------------------- client side


def signed_headers(
    app_key: str,
    secret: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    accept: str = "*/*",
    timestamp_ms: int | None = None,
    nonce: str | None = None,
    with_content_md5: bool = False,
) -> dict[str, str]:
    """Headers for a request signed exactly like the official Java SDK (spec §2.1).

    ``path`` includes ``/artemis`` and may carry a query string; its parameters are decoded
    and sorted into the string-to-sign the way the server will see them. An empty
    ``content_type`` or ``accept`` leaves that header out (e.g. for a GET). The nonce defaults
    to a random UUID and the timestamp to the current time in epoch milliseconds.
    """
    resource, _, query_string = path.partition("?")
    query = parse_qsl(query_string, keep_blank_values=True)

    headers: dict[str, str] = {}
    if accept:
        headers["Accept"] = accept
    if with_content_md5:
        headers["Content-MD5"] = content_md5(body)
    if content_type:
        headers["Content-Type"] = content_type
    headers["x-ca-key"] = app_key
    headers["x-ca-nonce"] = nonce if nonce is not None else str(uuid.uuid4())
    headers["x-ca-timestamp"] = str(timestamp_ms if timestamp_ms is not None else time.time_ns() // 1_000_000)
    headers["x-ca-signature-headers"] = ",".join(_SDK_SIGNED_NAMES)
    headers["x-ca-signature"] = sign(secret, string_to_sign(method, resource, query, headers))
    return headers
