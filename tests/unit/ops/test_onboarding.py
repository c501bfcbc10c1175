"""The onboarding helper: the requests it builds and the answers it reads (httpx.MockTransport)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from bridge.ops.onboarding import PARTNERS, SUBSCRIBE, Onboarded, OnboardingError, onboard
from bridge.platform.artemis import SignedRequest, verify

SECRET = "s3cret-s3cret-s3cret"


def _api(seen: list[httpx.Request], subscribe_code: str = "0") -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == PARTNERS:
            return httpx.Response(201, json={"id": "p-1", "appKey": "24681357", "appSecret": SECRET})
        return httpx.Response(200, json={"code": subscribe_code, "msg": "m", "data": None})
    return httpx.MockTransport(handle)


async def test_onboard_creates_then_subscribes_with_a_signature_the_server_accepts() -> None:
    seen: list[httpx.Request] = []
    async with httpx.AsyncClient(base_url="http://api", transport=_api(seen)) as client:
        partner = await onboard(client, "admin-token", "acme", [196893, 198914], "http://10.0.0.5/cb",
                                permitted=[196893, 198914], delivery={"maxBatch": 5}, sub_type=2)
    assert partner == Onboarded("p-1", "24681357", SECRET) and SECRET not in repr(partner)
    create, subscribe = seen
    assert create.headers["authorization"] == "Bearer admin-token"
    assert json.loads(create.content) == {"name": "acme", "userId": "admin",
                                          "eventTypes": [196893, 198914], "delivery": {"maxBatch": 5}}
    assert subscribe.url.path == SUBSCRIBE
    assert json.loads(subscribe.content) == {"eventTypes": [196893, 198914],
                                             "eventDest": "http://10.0.0.5/cb", "subType": 2}
    signed = SignedRequest(method="POST", path=SUBSCRIBE, query=(), headers=dict(subscribe.headers),
                           body=subscribe.content)
    assert verify(signed, lambda key: [SECRET] if key == "24681357" else None,
                  now=time.time(), nonces=None).app_key == "24681357"


@pytest.mark.parametrize("code", ["0x02401004", "500"])
async def test_a_refused_subscription_is_an_error_with_the_answer(code: str) -> None:
    async with httpx.AsyncClient(base_url="http://api", transport=_api([], code)) as client:
        with pytest.raises(OnboardingError, match=code):
            await onboard(client, "t", "acme", [1], "http://10.0.0.5/cb")


async def test_a_refused_creation_is_an_error_with_the_answer() -> None:
    refuse = httpx.MockTransport(lambda r: httpx.Response(401, json={"error": {"code": "bad_admin_token"}}))
    async with httpx.AsyncClient(base_url="http://api", transport=refuse) as client:
        with pytest.raises(OnboardingError, match="HTTP 401 .*bad_admin_token"):
            await onboard(client, "wrong", "acme", [1], "http://10.0.0.5/cb")
