"""Unit tests of bridge.delivery.signing: Standard Webhooks signatures, checked against an
independent reference computation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from bridge.delivery.signing import sign_headers, signature, verify
from tests.fixtures.webhooks import reference_signature

SIGN_BODY = json.dumps({"ok": True, "name": "Caméra — 北门"}, ensure_ascii=False,
                       separators=(",", ":")).encode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f1W"
TS = 1_674_087_231


class TestSigning:
    def test_two_secrets_two_signatures(self) -> None:
        headers = sign_headers(["new-secret", "old-secret"], MSG_ID, TS, SIGN_BODY)
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert headers["webhook-id"] == MSG_ID
        assert headers["webhook-timestamp"] == str(TS)
        parts = headers["webhook-signature"].split(" ")
        assert len(parts) == 2
        assert parts == [reference_signature("new-secret", MSG_ID, TS, SIGN_BODY),
                         reference_signature("old-secret", MSG_ID, TS, SIGN_BODY)]
        assert all(p.startswith("v1,") for p in parts)
        assert len(base64.b64decode(parts[0][3:], validate=True)) == 32

    @pytest.mark.parametrize("secret", ["s3cr3t", "another secret", "ünïcode-秘密"])
    @pytest.mark.parametrize("body", [b"", b"{}", SIGN_BODY, bytes(range(256))])
    def test_matches_reference(self, secret: str, body: bytes) -> None:
        assert signature(secret, MSG_ID, TS, body) == reference_signature(secret, MSG_ID, TS, body)

    def test_known_vector(self) -> None:
        # Computed once with the reference formula above; guards against both drifting together.
        expected = "v1," + base64.b64encode(hmac.new(
            b"whsec-test", b"msg_1.1700000000.{\"a\":1}", hashlib.sha256).digest()).decode()
        assert signature("whsec-test", "msg_1", 1700000000, b'{"a":1}') == expected

    def test_verify_either_secret_not_a_third(self) -> None:
        headers = sign_headers(["new-secret", "old-secret"], MSG_ID, TS, SIGN_BODY)
        assert verify("new-secret", headers, SIGN_BODY)
        assert verify("old-secret", headers, SIGN_BODY)
        assert not verify("third-secret", headers, SIGN_BODY)
        assert not verify("", headers, SIGN_BODY)

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda h, b: (h, b + b" "),
            lambda h, b: (h, b.replace(b"true", b"false")),
            lambda h, b: ({**h, "webhook-timestamp": str(TS + 1)}, b),
            lambda h, b: ({**h, "webhook-id": MSG_ID + "x"}, b),
            lambda h, b: ({**h, "webhook-signature": ""}, b),
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
            lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
        ],
        ids=["body-appended", "body-changed", "timestamp", "id", "empty-sig", "no-sig", "version"],
    )
    def test_verify_rejects_tampering(self, tamper: Callable[..., Any]) -> None:
        headers = sign_headers(["new-secret", "old-secret"], MSG_ID, TS, SIGN_BODY)
        headers, body = tamper(headers, SIGN_BODY)
        assert not verify("new-secret", headers, body)
        assert not verify("old-secret", headers, body)

    def test_verify_accepts_reference_signed_headers(self) -> None:
        """A sender following the spec (not our sign_headers) is accepted too."""
        headers = {
            "webhook-id": MSG_ID,
            "webhook-timestamp": str(TS),
            "webhook-signature": "v1,AAAA " + reference_signature("k", MSG_ID, TS, SIGN_BODY),
        }
        assert verify("k", headers, SIGN_BODY)
