"""The Artemis subscription semantics: request parsing, subscribe, unsubscribe, view.

Parsing is lenient where real clients differ (``eventLevel`` for ``eventLvl``, nested
``[[196893]]`` type lists, unknown fields ignored) and strict where a wrong value would silently
change what a partner receives (types, ranges).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.errors import InvalidInput
from bridge.registry.models import Partner, Subscription

MAX_EVENT_TYPES = 1000
MAX_LEVELS = 32
#: Default linkage levels when ``eventLvl`` is absent (compatibility spec §1.1).
DEFAULT_LEVELS = {0: (0, 1, 2, 3), 1: (1, 2, 3), 2: (0, 1, 2, 3)}


@dataclass(frozen=True)
class SubscribeRequest:
    event_types: tuple[int, ...]
    event_dest: str
    sub_type: int
    event_lvl: tuple[int, ...]
    token: str | None
    pass_back: int | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flatten(values: Any) -> Iterable[Any]:
    # A PHP client sends [[196893]]; flatten one level of nesting, no deeper.
    for value in values:
        if isinstance(value, list):
            yield from value
        else:
            yield value


def parse_event_types(body: Any) -> tuple[int, ...]:
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", "body")
    raw = body.get("eventTypes")
    if raw is None:
        raise InvalidInput("eventTypes is required", "eventTypes")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("eventTypes must be a non-empty list of integers", "eventTypes")
    types = list(_flatten(raw))
    bad = [v for v in types if not _is_int(v) or v < 0]
    if bad:
        raise InvalidInput(f"eventTypes must be integers; not {bad[:5]!r}", "eventTypes")
    if len(types) > MAX_EVENT_TYPES:
        raise InvalidInput(f"at most {MAX_EVENT_TYPES} eventTypes per request", "eventTypes")
    return tuple(sorted(set(types)))


def parse_subscribe(body: Any) -> SubscribeRequest:
    """Validate an ``eventSubscriptionByEventTypes`` body (URL policy is checked by the caller)."""
    event_types = parse_event_types(body)
    dest = body.get("eventDest")
    if not isinstance(dest, str) or not dest.strip():
        raise InvalidInput("eventDest is required: the http(s) URL events are pushed to", "eventDest")
    sub_type = body.get("subType", 0)
    if sub_type is None:
        sub_type = 0
    if not _is_int(sub_type) or sub_type not in (0, 1, 2):
        raise InvalidInput("subType must be 0 (raw), 1 (linkage) or 2 (both)", "subType")
    field_name = "eventLvl" if "eventLvl" in body else "eventLevel"
    levels = body.get(field_name)
    if levels is None:
        event_lvl = DEFAULT_LEVELS[sub_type]
    else:
        if (not isinstance(levels, list) or len(levels) > MAX_LEVELS
                or not all(_is_int(v) and 0 <= v <= 31 for v in levels)):
            raise InvalidInput(f"{field_name} must be a list of at most {MAX_LEVELS} integers 0..31",
                               field_name)
        event_lvl = tuple(sorted(set(levels))) or DEFAULT_LEVELS[sub_type]
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > 1024):
        raise InvalidInput("token must be a string of at most 1024 characters", "token")
    pass_back = body.get("passBack")
    if pass_back is not None and (not _is_int(pass_back) or pass_back not in (0, 1)):
        raise InvalidInput("passBack must be 0 or 1", "passBack")
    return SubscribeRequest(event_types, dest.strip(), sub_type, event_lvl, token, pass_back)


def forbidden_types(partner: Partner, event_types: Sequence[int]) -> list[int]:
    """Types the partner's user is not permitted to receive (FAQ 1.1c)."""
    return [t for t in event_types if not partner.permits(t)]


def subscriptions_for(partner: Partner, request: SubscribeRequest) -> list[Subscription]:
    """One subscription per type; re-subscribing a type replaces (moves) its destination."""
    now = time.time()
    return [
        Subscription(partner_id=partner.id, event_type=event_type, event_dest=request.event_dest,
                     sub_type=request.sub_type, event_lvl=request.event_lvl, token=request.token,
                     pass_back=request.pass_back, updated_at=now)
        for event_type in request.event_types
    ]


#: ``eventLvl`` answered for a raw (subType 0) subscription.
RAW_EVENT_LVL = (0,)


def view_data(subs: Iterable[Subscription]) -> dict[str, Any]:
    """``eventSubscriptionView`` data: one detail per destination and settings (spec §1.3)."""
    groups: dict[tuple[str, int, tuple[int, ...]], list[int]] = {}
    for sub in subs:
        # subType 0 ignores levels; the platform then uses "the default value 0" (spec §1.1;
        # the Go client gq-tang/hikvision documents it), so that is what the view answers.
        levels = RAW_EVENT_LVL if sub.sub_type == 0 else sub.event_lvl
        groups.setdefault((sub.event_dest, sub.sub_type, levels), []).append(sub.event_type)
    return {
        "detail": [
            {"eventTypes": sorted(types), "eventDest": dest, "subType": sub_type,
             "eventLvl": list(levels)}
            for (dest, sub_type, levels), types in sorted(groups.items())
        ]
    }
