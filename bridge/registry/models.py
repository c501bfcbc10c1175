"""The registry's records (partners, their delivery settings, subscriptions) and their JSON codecs."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

PartnerState = Literal["active", "disabled"]


LinkageMode = Literal["separate", "merged"]


PictureMode = Literal["passthrough", "attach"]


@dataclass(frozen=True)
class EncryptedSecret:
    """One appSecret, encrypted with ``BRIDGE_SECRET_KEY`` (Fernet token)."""

    token: str
    created_at: float
    #: After rotation the old secret stays valid until this time; ``None`` for the current one.
    expires_at: float | None = None


@dataclass(frozen=True)
class DeliveryPrefs:
    """Per-partner delivery settings (used by routing, correlation and delivery)."""

    timeout_s: float = 5.0
    max_in_flight: int = 16
    #: Statuses pushed to this partner; ``None`` follows the global setting.
    push_statuses: tuple[int, ...] | None = None
    linkage_mode: LinkageMode = "separate"
    #: Merged mode: how long a linkage status 0 waits for its status-4 update, in seconds.
    merge_wait_s: float = 10.0
    #: ``attach``: a status-5 picture is pushed as an update of the original event.
    picture_mode: PictureMode = "passthrough"
    #: Standard Webhooks signatures on pushes (off: receivers see exactly the platform's push).
    signing: bool = False
    #: One push in flight at a time, in order.
    ordered: bool = False
    #: TLS verification of https destinations; off only by this explicit setting.
    verify_tls: bool = True
    #: Events one push may carry when several wait for this partner (1: one event per push, as
    #: the platform pushes; at most 50, the platform's own limit per push). Never waited for.
    max_batch: int = 1


@dataclass(frozen=True)
class Partner:
    """A third party, bound to one appKey/appSecret and one platform ``userId``."""

    id: str
    name: str
    user_id: str
    app_key: str
    secrets: tuple[EncryptedSecret, ...]
    #: Event types the partner's user may receive; ``None`` means all.
    event_types: tuple[int, ...] | None
    state: PartnerState = "active"
    delivery: DeliveryPrefs = field(default_factory=DeliveryPrefs)
    #: Legacy opt-in: its Artemis calls may go without a signed ``x-ca-timestamp`` (minimal
    #: clients); off by default, because such a call can be replayed at any later time.
    allow_unsigned_timestamp: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def permits(self, event_type: int) -> bool:
        return self.event_types is None or event_type in self.event_types

    def public(self) -> dict[str, Any]:
        """The partner as the admin API shows it: never the secrets."""
        return {
            "id": self.id,
            "name": self.name,
            "userId": self.user_id,
            "appKey": self.app_key,
            "eventTypes": list(self.event_types) if self.event_types is not None else None,
            "state": self.state,
            "delivery": _camel(asdict(self.delivery)),
            "allowUnsignedTimestamp": self.allow_unsigned_timestamp,
            "secretRotation": [
                {"createdAt": s.created_at, "expiresAt": s.expires_at} for s in self.secrets
            ],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True)
class Subscription:
    """One partner's subscription to one event type (Artemis ``eventSubscriptionByEventTypes``)."""

    partner_id: str
    event_type: int
    event_dest: str
    #: 0 raw events only, 1 linkage events only, 2 both (B2).
    sub_type: int = 0
    #: Linkage levels; meaningful only for sub_type 1 and 2 (B3).
    event_lvl: tuple[int, ...] = (0, 1, 2, 3)
    token: str | None = None
    pass_back: int | None = None
    updated_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.partner_id}:{self.event_type}"


def _camel(values: Mapping[str, Any]) -> dict[str, Any]:
    def conv(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {conv(k): list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def encode_partner(partner: Partner) -> bytes:
    return json.dumps(asdict(partner), separators=(",", ":")).encode()


def decode_partner(data: bytes) -> Partner:
    raw = json.loads(data)
    prefs = raw.pop("delivery", {}) or {}
    if prefs.get("push_statuses") is not None:
        prefs["push_statuses"] = tuple(prefs["push_statuses"])
    return Partner(
        **{
            **raw,
            "secrets": tuple(EncryptedSecret(**s) for s in raw["secrets"]),
            "event_types": tuple(raw["event_types"]) if raw["event_types"] is not None else None,
            "delivery": DeliveryPrefs(**prefs),
        }
    )


def encode_subscription(sub: Subscription) -> bytes:
    return json.dumps(asdict(sub), separators=(",", ":")).encode()


def decode_subscription(data: bytes) -> Subscription:
    raw = json.loads(data)
    return Subscription(**{**raw, "event_lvl": tuple(raw["event_lvl"])})


def with_updates(partner: Partner, **changes: Any) -> Partner:
    """A copy of ``partner`` with ``changes`` and a fresh ``updated_at``."""
    return replace(partner, updated_at=time.time(), **changes)
