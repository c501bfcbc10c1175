"""Onboard a partner as an operator and a partner do: the admin API creates it, a signed Artemis
``eventSubscriptionByEventTypes`` subscribes it.

One helper for the demo, the benchmark and the tests. The requests are built and the answers read
apart from the sending (``httpx.Client.build_request`` exists on the sync and the async client,
and FastAPI's ``TestClient`` is a sync one), so a caller sends them with whichever client it has;
:func:`onboard` does both steps on an ``httpx.AsyncClient``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bridge.platform.artemis import signed_headers

__all__ = [
    "Onboarded",
    "OnboardingError",
    "PARTNERS",
    "SUBSCRIBE",
    "create_request",
    "created",
    "onboard",
    "subscribe_request",
    "subscribed",
]

PARTNERS = "/admin/v1/partners"
SUBSCRIBE = "/artemis/api/eventService/v1/eventSubscriptionByEventTypes"


class OnboardingError(RuntimeError):
    """The api refused a step; the message carries its answer."""


@dataclass(frozen=True)
class Onboarded:
    """A partner the admin API created (or re-keyed), with the appSecret it showed once."""

    id: str
    app_key: str
    app_secret: str = field(repr=False)


def create_request(client: httpx.Client | httpx.AsyncClient, admin_token: str, name: str, *,
                   user_id: str = "admin", event_types: Sequence[int] | None = None,
                   delivery: Mapping[str, Any] | None = None) -> httpx.Request:
    """``POST /admin/v1/partners``: a new partner (``event_types`` None: every type permitted)."""
    body: dict[str, Any] = {"name": name, "userId": user_id,
                            "eventTypes": None if event_types is None else list(event_types)}
    if delivery:
        body["delivery"] = dict(delivery)
    return client.build_request("POST", PARTNERS, json=body,
                                headers={"Authorization": f"Bearer {admin_token}"})


def created(response: httpx.Response) -> Onboarded:
    """The partner in an answer of create (201) or rotate-secret (200), or :class:`OnboardingError`."""
    if response.status_code not in (200, 201):
        raise OnboardingError(f"{response.request.method} {response.request.url.path}: "
                              f"HTTP {response.status_code} {response.text}")
    body = response.json()
    return Onboarded(body["id"], body["appKey"], body["appSecret"])


def subscribe_request(client: httpx.Client | httpx.AsyncClient, partner: Onboarded,
                      event_types: Sequence[int], event_dest: str, *, sub_type: int = 0,
                      **fields: Any) -> httpx.Request:
    """The partner's signed ``eventSubscriptionByEventTypes`` (``fields``: eventLvl, token…)."""
    body = json.dumps({"eventTypes": list(event_types), "eventDest": event_dest,
                       "subType": sub_type, **fields}).encode()
    return client.build_request("POST", SUBSCRIBE, content=body, headers=signed_headers(
        partner.app_key, partner.app_secret, "POST", SUBSCRIBE, body))


def subscribed(response: httpx.Response) -> None:
    """Nothing if the platform envelope says success, else :class:`OnboardingError`."""
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    if response.status_code != 200 or code != "0":
        raise OnboardingError(f"subscribe: HTTP {response.status_code} {response.text}")


async def onboard(client: httpx.AsyncClient, admin_token: str, name: str,
                  event_types: Sequence[int], event_dest: str, *, user_id: str = "admin",
                  permitted: Sequence[int] | None = None, delivery: Mapping[str, Any] | None = None,
                  sub_type: int = 0) -> Onboarded:
    """Create a partner (``permitted`` types, None: all) and subscribe it to ``event_types``."""
    partner = created(await client.send(create_request(
        client, admin_token, name, user_id=user_id, event_types=permitted, delivery=delivery)))
    subscribed(await client.send(subscribe_request(client, partner, event_types, event_dest,
                                                   sub_type=sub_type)))
    return partner
