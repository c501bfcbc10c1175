"""The registry's records (partners, their delivery settings, subscriptions) and the changes the
admin API accepts, as pydantic models.

The compacted topics hold each record as the JSON of its model under the Python field names
(``user_id``, ``max_in_flight``…): ``Partner.model_dump_json()`` and
``Partner.model_validate_json()`` are the codec. The admin API reads and writes the same models
under their camelCase aliases (``userId``, ``maxInFlight``…). Bounds live on the fields, so a
record cannot be built, decoded or changed out of range, and a change names the field it breaks.
So a bound (or KNOWN_STATUSES) may only widen: a stored record outside a narrowed one would no
longer decode, and the view would skip that partner (reporting its key).
Unknown fields in a stored record are ignored (a newer version may add some); unknown fields in
an admin change are refused.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from bridge.settings import KNOWN_STATUSES

__all__ = [
    "DeliveryChanges",
    "DeliveryPrefs",
    "EncryptedSecret",
    "LinkageMode",
    "MAX_BATCH",
    "NewPartner",
    "Partner",
    "PartnerChanges",
    "PartnerState",
    "PictureMode",
    "Subscription",
    "with_updates",
]

PartnerState = Literal["active", "disabled"]
LinkageMode = Literal["separate", "merged"]
PictureMode = Literal["passthrough", "attach"]

#: Events per push at most: the platform's own limit for one OnEventNotify.
MAX_BATCH = 50


def _sorted_unique(values: tuple[int, ...] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(sorted(set(values)))


def _known_statuses(values: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if values is not None and not set(values) <= KNOWN_STATUSES:
        # A custom error: its message reads as written, without pydantic's "Value error, ".
        raise PydanticCustomError("unknown_status", "must be a list of {known}",
                                  {"known": str(sorted(KNOWN_STATUSES))})
    return _sorted_unique(values)


# Strict: a JSON true is not the integer 1 and "5" is not a number, as the admin API always
# answered; an integer is still a valid number of seconds.
TimeoutS = Annotated[float, Field(strict=True, gt=0, le=120, description="Push timeout, seconds.")]
MaxInFlight = Annotated[int, Field(strict=True, ge=1, le=1000, description="Pushes in flight at once.")]
PushStatuses = Annotated[
    tuple[Annotated[int, Field(strict=True)], ...] | None,
    AfterValidator(_known_statuses),
    Field(description="Statuses pushed to this partner; null follows the global setting."),
]
MergeWaitS = Annotated[float, Field(
    strict=True, gt=0, le=3600,
    description="Merged mode: how long a linkage status 0 waits for its status-4 update, seconds.")]
MaxBatch = Annotated[int, Field(
    strict=True, ge=1, le=MAX_BATCH,
    description="Events one push may carry when several wait for this partner (1: one event per "
                "push, as the platform pushes; at most 50, the platform's own limit per push).")]
Flag = Annotated[bool, Field(strict=True)]
EventTypes = Annotated[
    tuple[Annotated[int, Field(strict=True, ge=0)], ...] | None,
    AfterValidator(_sorted_unique),
    Field(description="Event types the partner's user may receive; null means all."),
]
Name = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=200)]


class _Model(BaseModel):
    # validate_by_name: the topics hold field names, the admin API their camelCase aliases.
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, validate_by_name=True,
                              validate_by_alias=True, extra="ignore")


class EncryptedSecret(_Model):
    """One appSecret, encrypted with ``BRIDGE_SECRET_KEY`` (Fernet token)."""

    #: Encrypted, and still kept out of reprs and logs.
    token: str = Field(repr=False)
    created_at: float
    #: After rotation the old secret stays valid until this time; ``None`` for the current one.
    expires_at: float | None = None


class DeliveryPrefs(_Model):
    """Per-partner delivery settings (used by routing, correlation and delivery)."""

    timeout_s: TimeoutS = 5.0
    max_in_flight: MaxInFlight = 16
    push_statuses: PushStatuses = None
    linkage_mode: LinkageMode = "separate"
    merge_wait_s: MergeWaitS = 10.0
    #: ``attach``: a status-5 picture is pushed as an update of the original event.
    picture_mode: PictureMode = "passthrough"
    #: Standard Webhooks signatures on pushes (off: receivers see exactly the platform's push).
    signing: Flag = False
    #: One push in flight at a time, in order.
    ordered: Flag = False
    #: TLS verification of https destinations; off only by this explicit setting.
    verify_tls: Flag = True
    max_batch: MaxBatch = 1


class Partner(_Model):
    """A third party, bound to one appKey/appSecret and one platform ``userId``."""

    id: str
    name: str
    user_id: str
    app_key: str
    secrets: tuple[EncryptedSecret, ...]
    event_types: EventTypes
    state: PartnerState = "active"
    delivery: DeliveryPrefs = Field(default_factory=DeliveryPrefs)
    #: Legacy opt-in: its Artemis calls may go without a signed ``x-ca-timestamp`` (minimal
    #: clients); off by default, because such a call can be replayed at any later time.
    allow_unsigned_timestamp: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def permits(self, event_type: int) -> bool:
        return self.event_types is None or event_type in self.event_types

    def public(self) -> dict[str, Any]:
        """The partner as the admin API shows it: never the secrets."""
        shown = self.model_dump(mode="json", by_alias=True, exclude={"secrets"})
        shown["secretRotation"] = [
            {"createdAt": s.created_at, "expiresAt": s.expires_at} for s in self.secrets
        ]
        return shown


class Subscription(_Model):
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


class _Changes(_Model):
    # A change names only what it changes (``model_fields_set``); anything else is a mistake.
    model_config = ConfigDict(extra="forbid")


class DeliveryChanges(_Changes):
    """Delivery settings to change; the others keep their values."""

    # Defaults are not validated: an absent setting stays unset, an explicit null is refused
    # (except pushStatuses, where null means "follow the global setting").
    timeout_s: TimeoutS = Field(default=None)
    max_in_flight: MaxInFlight = Field(default=None)
    push_statuses: PushStatuses = None
    linkage_mode: LinkageMode = Field(default=None)
    merge_wait_s: MergeWaitS = Field(default=None)
    picture_mode: PictureMode = Field(default=None)
    signing: Flag = Field(default=None)
    ordered: Flag = Field(default=None)
    verify_tls: Flag = Field(default=None)
    max_batch: MaxBatch = Field(default=None)

    def apply(self, base: DeliveryPrefs) -> DeliveryPrefs:
        return base.model_copy(update=self.model_dump(include=self.model_fields_set))


class NewPartner(_Model):
    """A new partner (``POST /admin/v1/partners``); its keys and secret are generated."""

    name: Name
    user_id: Name
    event_types: EventTypes = None
    delivery: DeliveryChanges | None = None


class PartnerChanges(_Changes):
    """Partner fields to change (``PATCH /admin/v1/partners/{id}``)."""

    name: Name = Field(default=None)
    user_id: Name = Field(default=None)
    event_types: EventTypes = None
    state: PartnerState = Field(default=None)
    allow_unsigned_timestamp: Flag = Field(default=None)
    delivery: DeliveryChanges = Field(default=None)


def with_updates(partner: Partner, **changes: Any) -> Partner:
    """A copy of ``partner`` with ``changes`` and a fresh ``updated_at``."""
    return partner.model_copy(update={**changes, "updated_at": time.time()})
