"""A circuit breaker per destination: after N consecutive failures it opens for a cool-down,
then lets one probe through (half-open); the probe's result closes or re-opens it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

State = Literal["closed", "open", "half_open"]


@functools.lru_cache(maxsize=16384)  # once per attempt otherwise; few URLs, many attempts
def destination_of(url: str) -> str:
    """Breakers are per endpoint, ``scheme://host:port/path`` (the query is left out: it may carry
    a token). Not per host: partners often share one host behind a gateway, and one partner's
    failing path must not cut off its neighbours (B7)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}"


@dataclass
class Breaker:
    failures_to_open: int
    cooldown_s: float
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def allow(self, now: float) -> bool:
        """May an attempt go out now? Half-open admits a single probe at a time."""
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at >= self.cooldown_s:
            self.state = "half_open"
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool, now: float) -> bool:
        """Feed an attempt's result; True when the state changed."""
        before = self.state
        self.probing = False
        if ok:
            self.state, self.failures = "closed", 0
        else:
            self.failures += 1
            if self.state == "half_open" or self.failures >= self.failures_to_open:
                self.state, self.opened_at = "open", now
        return self.state != before


@dataclass
class Breakers:
    failures_to_open: int = 5
    cooldown_s: float = 30.0
    by_destination: dict[str, Breaker] = field(default_factory=dict)

    def get(self, url: str) -> Breaker:
        dest = destination_of(url)
        if dest not in self.by_destination:
            self.by_destination[dest] = Breaker(self.failures_to_open, self.cooldown_s)
        return self.by_destination[dest]
