"""The simulator's traffic follows the platform's patterns."""

from __future__ import annotations

from collections import defaultdict

import pytest

from bridge.ops.simulate import Simulator
from bridge.platform.notify import parse_notify


def test_patterns_and_rate() -> None:
    pushes = list(Simulator(rate=40, seed=3).pushes(duration=20))
    assert [p.at for p in pushes] == sorted(p.at for p in pushes)
    statuses: dict[str, list[int]] = defaultdict(list)
    ability: dict[str, str] = {}
    for push in pushes:
        result = parse_notify(push.body)
        assert not result.errors and len(result.valid) == push.events <= 50
        for event in result.valid:
            statuses[event.event_id].append(event.status)
            ability[event.event_id] = result.notify.ability
    follow_ups = {"event_pms": [0, 5], "event_vss": [1, 2], "event_rule": [0, 4], "event_acs": [0]}
    for event_id, seen in statuses.items():
        assert seen == follow_ups[ability[event_id]], (event_id, seen)
    started = sum(p.events for p in pushes if p.at < 20)
    assert 0.6 * 40 * 20 < started < 1.4 * 40 * 20  # about the asked rate (seeded: deterministic)
    assert {ability[e] for e in statuses} == set(follow_ups)


def test_families_filter_and_errors() -> None:
    pushes = list(Simulator(rate=20, families=["video"], seed=1).pushes(duration=5))
    assert {p.body["params"]["ability"] for p in pushes} == {"event_vss"}
    with pytest.raises(ValueError, match="unknown families"):
        Simulator(rate=1, families=["gps"])
