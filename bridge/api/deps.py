"""Request dependencies: services, admin bearer auth, Artemis signature auth."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bridge.errors import AuthError, InvalidInput
from bridge.platform.artemis import SignedRequest, verify
from bridge.registry.models import Partner

log = logging.getLogger("bridge.api")
_bearer = HTTPBearer(auto_error=False, description="BRIDGE_ADMIN_TOKEN")


async def services(request: Request) -> Any:
    """The services, once the registry view has loaded (else 503)."""
    svc = request.app.state.services
    if not svc.view.ready:
        # Right after start-up (or topic creation) the view may need a moment to load.
        await asyncio.to_thread(svc.view.wait_ready, 15.0)
    return svc


ServicesDep = Annotated[Any, Depends(services)]


async def admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer ``BRIDGE_ADMIN_TOKEN``, compared in constant time."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise AuthError("admin_disabled", "the admin API is disabled: BRIDGE_ADMIN_TOKEN is not set")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise AuthError("bad_admin_token", "missing or wrong bearer token")


AdminDep = Depends(admin)


async def artemis_partner(request: Request, svc: ServicesDep) -> Partner:
    """The partner whose Artemis signature this request carries (spec §2.4), or 401."""
    body = await request.body()
    found: dict[str, Partner] = {}

    def allows_unsigned_timestamp(app_key: str) -> bool:
        partner = found.get("partner")
        return partner is not None and partner.allow_unsigned_timestamp

    def secrets_for_key(app_key: str) -> list[str] | None:
        match = svc.partners.secrets_for_key(app_key)
        if match is None:
            return None
        found["partner"] = match[0]
        return match[1]

    signed = SignedRequest(
        method=request.method,
        path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
        query=request.query_params.multi_items(),
        headers=dict(request.headers),
        body=body,
    )
    try:
        # In a thread: the shared nonce store waits for Kafka (a few ms), the loop must not.
        await asyncio.to_thread(verify, signed, secrets_for_key, now=time.time(), nonces=svc.nonces,
                                window_s=svc.settings.signature_window_s,
                                allows_unsigned_timestamp=allows_unsigned_timestamp)
    except AuthError as exc:
        log.info("artemis auth failed: %s (appKey %s)", exc.reason, request.headers.get("x-ca-key"))
        raise
    partner = found["partner"]
    if partner.state != "active":
        raise AuthError("disabled_partner", f"partner {partner.id} is disabled")
    return partner


PartnerDep = Annotated[Partner, Depends(artemis_partner)]


async def json_body(request: Request) -> Any:
    """The body as JSON; an empty body is ``{}`` (the view call is sent with none)."""
    import json

    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", "body") from None
    except RecursionError:
        raise InvalidInput("the body is nested too deeply", "body") from None
