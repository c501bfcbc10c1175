"""The rule every api replica applies to bridge.nonces in log order (no broker: records fed by hand)."""

from __future__ import annotations

import json

import pytest

from bridge.api.nonces import KafkaNonceStore, nonce_key
from bridge.errors import KafkaUnavailable
from bridge.settings import Settings

NOW = 1_700_000_000.0


def store(window_s: float = 60.0, max_entries: int = 1000) -> KafkaNonceStore:
    # Never started: no network. Records are applied as the reader thread would.
    return KafkaNonceStore(Settings(kafka_bootstrap="127.0.0.1:1"), window_s, max_entries, timeout_s=0.2)


def apply(s: KafkaNonceStore, offset: int, app_key: str, nonce: str, ts: float, partition: int = 0) -> bool:
    """Apply one record; True if the rule accepted it."""
    with s._lock:
        s._apply(partition, offset, nonce_key(app_key, nonce), json.dumps({"ts": ts}).encode())
        return s._decisions[(partition, offset)]


def test_the_first_use_in_log_order_wins() -> None:
    s = store()
    assert apply(s, 0, "k", "n", NOW)
    # A second replica's use, even one stamped earlier by a clock behind, comes later in the log.
    assert not apply(s, 1, "k", "n", NOW - 5)
    assert not apply(s, 2, "k", "n", NOW + 60)
    assert apply(s, 3, "k2", "n", NOW + 1)  # the nonce belongs to the appKey


def test_a_use_after_the_window_is_accepted_and_starts_a_new_window() -> None:
    s = store(window_s=60)
    assert apply(s, 0, "k", "n", NOW)
    assert not apply(s, 1, "k", "n", NOW + 30)  # a refused use does not extend the window
    assert apply(s, 2, "k", "n", NOW + 60.5)
    assert not apply(s, 3, "k", "n", NOW + 61)


def test_memory_is_bounded_by_the_window_and_by_size() -> None:
    s = store(window_s=60, max_entries=1000)
    for i in range(5000):
        apply(s, i, "k", f"n{i}", NOW + i / 100)
        assert len(s) <= 1000
    # By the log's time, uses older than the window are gone.
    apply(s, 5000, "k", "late", NOW + 10_000)
    assert len(s) == 1


def test_keys_are_digests_whatever_the_nonce_length() -> None:
    assert len(nonce_key("k", "n" * 100_000)) == 32
    assert nonce_key("k", "a\ud800") != nonce_key("k", "a")  # a lone surrogate cannot crash the check


def test_an_unreadable_record_is_skipped_and_named() -> None:
    s = store()
    with s._lock:
        s._apply(0, 7, b"x" * 32, b"not json")
    assert (0, 7) not in s._decisions and "@7" in (s.error or "")


def test_a_store_that_cannot_reach_kafka_fails_closed() -> None:
    s = store()
    try:
        with pytest.raises(KafkaUnavailable, match="nonce"):
            s.seen("k", "n", NOW)
    finally:
        s.stop()
