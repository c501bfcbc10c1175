"""What one attempt to push came to: a value, never an exception (style rule 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True)
class SendResult:
    """The result of one attempt."""

    kind: Kind
    #: HTTP status when the partner answered, else None.
    status_code: int | None
    #: Short class of the failure: ``http_500``, ``timeout``, ``connect_refused``, ``dns``, ``tls``,
    #: ``url_policy``, ``breaker_open``…; None when delivered.
    error: str | None
    #: Human-readable detail for logs and the admin API (never a secret).
    detail: str
    latency_s: float
    #: Seconds the partner asked us to wait (Retry-After on 429/503).
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls, status_code: int, latency_s: float) -> SendResult:
        return cls("delivered", status_code, None, f"HTTP {status_code}", latency_s)

    @classmethod
    def retry(cls, error: str, detail: str, latency_s: float, status_code: int | None = None,
              retry_after_s: float | None = None) -> SendResult:
        return cls("retry", status_code, error, detail, latency_s, retry_after_s)

    @classmethod
    def dead(cls, error: str, detail: str, latency_s: float = 0.0,
             status_code: int | None = None) -> SendResult:
        return cls("dead", status_code, error, detail, latency_s)
