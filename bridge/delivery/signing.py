"""Standard Webhooks signatures (https://www.standardwebhooks.com), optional per partner.

``webhook-signature`` is a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
``{id}.{timestamp}.{body}``; during a secret rotation both the new and the old secret sign, so a
receiver that knows either verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


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
