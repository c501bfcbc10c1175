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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, ValidationError

from bridge.errors import ConfigError, InvalidInput, NotFound
from bridge.registry.models import (
    DeliveryChanges,
    DeliveryPrefs,
    EncryptedSecret,
    NewPartner,
    Partner,
    PartnerChanges,
    with_updates,
)
from bridge.registry.view import RegistryView
from bridge.registry.writer import RegistryWriter
from bridge.settings import Settings

_ALPHABET = string.ascii_letters + string.digits

M = TypeVar("M", bound=BaseModel)


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


def validated(model: type[M], data: Any, prefix: str = "") -> M:
    """``data`` as ``model``, or :class:`InvalidInput` naming the first field it breaks."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc, prefix) from None


def invalid_input(exc: ValidationError, prefix: str = "") -> InvalidInput:
    """The first error of ``exc`` as :class:`InvalidInput`, its field as the admin API names it
    (the camelCase path: ``delivery.maxBatch``)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in ((prefix,) if prefix else ()) + tuple(first["loc"]))
    return InvalidInput(f"{field or 'body'}: {first['msg']}", field or "body")


def delivery_prefs(base: DeliveryPrefs, changes: DeliveryChanges | Mapping[str, Any]) -> DeliveryPrefs:
    """``base`` with the admin API's delivery ``changes`` (camelCase), each validated."""
    return validated(DeliveryChanges, changes, "delivery").apply(base)


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

    async def create(self, new: NewPartner | Mapping[str, Any]) -> tuple[Partner, str]:
        """A new active partner and its appSecret (the only time the secret is returned)."""
        new = validated(NewPartner, new)
        app_key = new_app_key()
        while self.view.partner_by_app_key(app_key) is not None:
            app_key = new_app_key()
        secret = new_app_secret()
        now = self.clock()
        partner = Partner(
            id=f"p-{uuid.uuid4().hex[:12]}",
            name=new.name,
            user_id=new.user_id,
            app_key=app_key,
            secrets=(EncryptedSecret(token=self.box.seal(secret), created_at=now),),
            event_types=new.event_types,
            delivery=(new.delivery or DeliveryChanges()).apply(DeliveryPrefs()),
            created_at=now,
            updated_at=now,
        )
        await self.writer.put_partner(partner)
        return partner, secret

    async def update(self, partner_id: str, changes: PartnerChanges | Mapping[str, Any]) -> Partner:
        """Apply the admin API's ``changes`` (only the fields they name)."""
        partner = self.get(partner_id)
        changes = validated(PartnerChanges, changes)
        updates = {name: getattr(changes, name) for name in changes.model_fields_set}
        if changes.delivery is not None:
            updates["delivery"] = changes.delivery.apply(partner.delivery)
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
            s if s.expires_at is not None
            else s.model_copy(update={"expires_at": now + self.grace_s})
            for s in partner.secrets
            if s.expires_at is None or s.expires_at > now
        ]
        updated = with_updates(
            partner, secrets=(EncryptedSecret(token=self.box.seal(secret), created_at=now), *kept)
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
