"""The delivery clients (aiohttp) classify real loopback failures correctly."""

from __future__ import annotations

import pytest

from bridge.delivery.sender import PartnerSender, PreparedPush, build_clients, close_clients
from bridge.urlpolicy import UrlPolicy
from tests.fixtures.partner import FakePartner, closed_port

pytestmark = pytest.mark.integration


def push(url: str, timeout: float = 2.0) -> PreparedPush:
    return PreparedPush(url, b'{"method":"OnEventNotify"}', {"Content-Type": "application/json"}, timeout)


@pytest.fixture
async def sender() -> PartnerSender:
    client, insecure = build_clients(None)
    yield PartnerSender(client, insecure, UrlPolicy(allow_cidrs=("127.0.0.0/8",)))
    await close_clients(client, insecure)


async def test_real_failures_classified(sender: PartnerSender, fake_partner: FakePartner) -> None:
    ok = await sender.send(push(fake_partner.url("/ok/t")))
    assert ok.kind == "delivered" and ok.status_code == 200
    refused = await sender.send(push(f"http://127.0.0.1:{closed_port()}/x"))
    assert (refused.kind, refused.error) == ("retry", "connect_error")
    slow = await sender.send(push(fake_partner.url("/slow/3/t"), timeout=0.5))
    assert (slow.kind, slow.error) == ("retry", "timeout")
    failing = await sender.send(push(fake_partner.url("/status/503/t")))
    assert (failing.kind, failing.error, failing.status_code) == ("retry", "http_503", 503)
    tls = await sender.send(push(f"https://127.0.0.1:{fake_partner.port}/ok/t"))
    assert (tls.kind, tls.error) == ("retry", "tls")  # https to a plain-http port
    metadata = await sender.send(push("http://169.254.169.254/latest"))
    assert (metadata.kind, metadata.error) == ("dead", "url_policy")
