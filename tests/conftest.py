"""Shared fixtures. Every test starts from a clean environment (no BRIDGE_* leaks in)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bridge.settings import get_settings

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.partner"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Strip BRIDGE_* (except the test harness's own BRIDGE_TEST_*) and reset cached settings."""
    for name in list(os.environ):
        if name.startswith("BRIDGE_") and not name.startswith("BRIDGE_TEST_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
