"""Standard Webhooks signatures (https://www.standardwebhooks.com), optional per partner.

``webhook-signature`` is a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
``{id}.{timestamp}.{body}``; during a secret rotation both the new and the old secret sign, so a
receiver that knows either verifies.

The HMAC key is the partner's appSecret (UTF-8). The official Standard Webhooks libraries take a
``whsec_``-prefixed base64 secret and decode it to the key, so a partner configures them with
:func:`webhook_secret` of its appSecret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def webhook_secret(app_secret: str) -> str:
    """The secret to give a Standard Webhooks library: ``whsec_`` + base64(appSecret)."""
    return "whsec_" + base64.b64encode(app_secret.encode()).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def sign_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True if any signature in ``headers`` was made with ``secret`` (for receivers and tests)."""
    expected = signature(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return any(hmac.compare_digest(expected, given)
               for given in headers.get("webhook-signature", "").split())
