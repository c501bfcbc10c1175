"""Partner registry operations, shared by the admin API and the CLI.

appSecrets are generated here, shown once, and stored only as Fernet tokens encrypted with
``BRIDGE_SECRET_KEY``. Rotation keeps the previous secret valid for ``secret_grace_hours`` so a
partner can switch its clients without a gap.
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from bridge.errors import ConfigError, InvalidInput, NotFound
from bridge.registry.models import DeliveryPrefs, EncryptedSecret, Partner, with_updates
from bridge.registry.view import RegistryView
from bridge.registry.writer import RegistryWriter
from bridge.settings import KNOWN_STATUSES, Settings

_ALPHABET = string.ascii_letters + string.digits


class SecretBox:
    """Encrypts appSecrets at rest; the key never leaves this object."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "BRIDGE_SECRET_KEY is not a valid key (32 url-safe base64 bytes); "
                "generate one with `event-bridge secret-key`"
            ) from exc

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError(
                "a stored appSecret cannot be decrypted: BRIDGE_SECRET_KEY differs from the key "
                "it was written with"
            ) from exc

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"


def new_app_key() -> str:
    """8 digits, the shape Artemis appKeys have (clients sometimes store them as numbers)."""
    return str(secrets.randbelow(90_000_000) + 10_000_000)


def new_app_secret() -> str:
    """20 alphanumerics, the shape Artemis appSecrets have."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


def _event_types(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise InvalidInput("eventTypes must be null (all types) or a list of non-negative integers",
                           "eventTypes")
    return tuple(sorted(set(value)))


#: Events per push at most: the platform's own limit for one OnEventNotify.
MAX_BATCH = 50

_PREF_FIELDS = {
    "timeoutS": ("timeout_s", (int, float)),
    "maxInFlight": ("max_in_flight", int),
    "pushStatuses": ("push_statuses", (list, type(None))),
    "linkageMode": ("linkage_mode", str),
    "mergeWaitS": ("merge_wait_s", (int, float)),
    "pictureMode": ("picture_mode", str),
    "signing": ("signing", bool),
    "ordered": ("ordered", bool),
    "verifyTls": ("verify_tls", bool),
    "maxBatch": ("max_batch", int),
}


def delivery_prefs(base: DeliveryPrefs, changes: dict[str, Any]) -> DeliveryPrefs:
    """Apply camelCase admin-API changes to ``base``, validating each."""
    updates: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in _PREF_FIELDS:
            raise InvalidInput(f"unknown delivery setting {name!r}; known: {sorted(_PREF_FIELDS)}",
                               f"delivery.{name}")
        attr, kind = _PREF_FIELDS[name]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise InvalidInput(f"delivery.{name} has the wrong type", f"delivery.{name}")
        updates[attr] = value
    if "push_statuses" in updates and updates["push_statuses"] is not None:
        statuses = updates["push_statuses"]
        if any(not isinstance(v, int) or v not in KNOWN_STATUSES for v in statuses):
            raise InvalidInput(f"delivery.pushStatuses must be a list of {sorted(KNOWN_STATUSES)}",
                               "delivery.pushStatuses")
        updates["push_statuses"] = tuple(sorted(set(statuses)))
    if updates.get("linkage_mode", "separate") not in ("separate", "merged"):
        raise InvalidInput("delivery.linkageMode is 'separate' or 'merged'", "delivery.linkageMode")
    if updates.get("picture_mode", "passthrough") not in ("passthrough", "attach"):
        raise InvalidInput("delivery.pictureMode is 'passthrough' or 'attach'", "delivery.pictureMode")
    if not 0 < float(updates.get("merge_wait_s", 1)) <= 3600:
        raise InvalidInput("delivery.mergeWaitS must be in (0, 3600]", "delivery.mergeWaitS")
    if not 0 < float(updates.get("timeout_s", 1)) <= 120:
        raise InvalidInput("delivery.timeoutS must be in (0, 120]", "delivery.timeoutS")
    if not 1 <= int(updates.get("max_in_flight", 1)) <= 1000:
        raise InvalidInput("delivery.maxInFlight must be in [1, 1000]", "delivery.maxInFlight")
    if not 1 <= int(updates.get("max_batch", 1)) <= MAX_BATCH:
        raise InvalidInput(f"delivery.maxBatch must be in [1, {MAX_BATCH}] (events per push)",
                           "delivery.maxBatch")
    return replace(base, **updates)


class PartnerService:
    """Create, read, change, rotate and delete partners."""

    def __init__(self, settings: Settings, view: RegistryView, writer: RegistryWriter,
                 clock: Callable[[], float] = time.time) -> None:
        if settings.secret_key is None:
            raise ConfigError("BRIDGE_SECRET_KEY must be set to manage partners")
        self.box = SecretBox(settings.secret_key.get_secret_value())
        self.grace_s = settings.secret_grace_hours * 3600
        self.view = view
        self.writer = writer
        self.clock = clock

    def get(self, partner_id: str) -> Partner:
        partner = self.view.partner(partner_id)
        if partner is None:
            raise NotFound(f"no partner {partner_id!r}")
        return partner

    def list(self) -> list[Partner]:
        return self.view.all_partners()

    async def create(self, name: str, user_id: str, event_types: Any,
                     delivery: dict[str, Any] | None = None) -> tuple[Partner, str]:
        """A new active partner and its appSecret (the only time the secret is returned)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInput("name must be a non-empty string of at most 200 characters", "name")
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 200:
            raise InvalidInput("userId must be a non-empty string of at most 200 characters", "userId")
        app_key = new_app_key()
        while self.view.partner_by_app_key(app_key) is not None:
            app_key = new_app_key()
        secret = new_app_secret()
        now = self.clock()
        partner = Partner(
            id=f"p-{uuid.uuid4().hex[:12]}",
            name=name.strip(),
            user_id=user_id.strip(),
            app_key=app_key,
            secrets=(EncryptedSecret(self.box.seal(secret), now),),
            event_types=_event_types(event_types),
            delivery=delivery_prefs(DeliveryPrefs(), delivery or {}),
            created_at=now,
            updated_at=now,
        )
        await self.writer.put_partner(partner)
        return partner, secret

    async def update(self, partner_id: str, changes: dict[str, Any]) -> Partner:
        partner = self.get(partner_id)
        updates: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "name":
                if not isinstance(value, str) or not value.strip():
                    raise InvalidInput("name must be a non-empty string", "name")
                updates["name"] = value.strip()
            elif name == "userId":
                if not isinstance(value, str) or not value.strip():
                    raise InvalidInput("userId must be a non-empty string", "userId")
                updates["user_id"] = value.strip()
            elif name == "eventTypes":
                updates["event_types"] = _event_types(value)
            elif name == "state":
                if value not in ("active", "disabled"):
                    raise InvalidInput("state is 'active' or 'disabled'", "state")
                updates["state"] = value
            elif name == "allowUnsignedTimestamp":
                if not isinstance(value, bool):
                    raise InvalidInput("allowUnsignedTimestamp must be true or false", name)
                updates["allow_unsigned_timestamp"] = value
            elif name == "delivery":
                if not isinstance(value, dict):
                    raise InvalidInput("delivery must be an object", "delivery")
                updates["delivery"] = delivery_prefs(partner.delivery, value)
            else:
                raise InvalidInput(f"{name!r} cannot be changed", name)
        updated = with_updates(partner, **updates)
        await self.writer.put_partner(updated)
        return updated

    async def delete(self, partner_id: str) -> None:
        self.get(partner_id)
        await self.writer.delete_partner(partner_id)

    async def rotate_secret(self, partner_id: str) -> tuple[Partner, str]:
        """A new current secret; the previous one stays valid for the grace period."""
        partner = self.get(partner_id)
        now = self.clock()
        secret = new_app_secret()
        kept = [
            s if s.expires_at is not None else replace(s, expires_at=now + self.grace_s)
            for s in partner.secrets
            if s.expires_at is None or s.expires_at > now
        ]
        updated = with_updates(
            partner, secrets=(EncryptedSecret(self.box.seal(secret), now), *kept)
        )
        await self.writer.put_partner(updated)
        return updated, secret

    def secrets_for_key(self, app_key: str) -> tuple[Partner, list[str]] | None:
        """The partner with ``app_key`` and its valid secrets (current first), decrypted."""
        partner = self.view.partner_by_app_key(app_key)
        if partner is None:
            return None
        now = self.clock()
        valid = [self.box.open(s.token) for s in partner.secrets
                 if s.expires_at is None or s.expires_at > now]
        return partner, valid
