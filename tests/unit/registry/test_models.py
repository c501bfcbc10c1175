"""Registry records as pydantic models: the compacted topics' format, bounds, secrets kept out of sight."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.errors import InvalidInput
from bridge.registry.models import (
    DeliveryChanges,
    DeliveryPrefs,
    EncryptedSecret,
    Partner,
    PartnerChanges,
    Subscription,
)
from bridge.registry.partners import delivery_prefs, validated
from tests.fixtures.registry_records import (
    V_PARTNER_BEFORE_MAX_BATCH,
    V_PARTNER_FULL,
    V_PARTNER_MINIMAL,
    V_SUB_DEFAULTS,
    V_SUB_FULL,
)

def test_decodes_records_written_by_the_previous_codec() -> None:
    full = Partner.model_validate_json(V_PARTNER_FULL)
    assert full.id == "p-0123456789ab" and full.user_id == "admin" and full.app_key == "24681357"
    assert full.event_types == (196893, 198914) and full.state == "disabled"
    assert full.allow_unsigned_timestamp is True
    assert (full.created_at, full.updated_at) == (1764000000.0, 1764633600.25)
    assert full.secrets == (
        EncryptedSecret(token="gAAAAABnew-token", created_at=1764633600.25),
        EncryptedSecret(token="gAAAAABold-token", created_at=1764000000.0, expires_at=1764720000.5),
    )
    assert full.delivery == DeliveryPrefs(
        timeout_s=2.5, max_in_flight=4, push_statuses=(0, 1, 2, 4), linkage_mode="merged",
        merge_wait_s=30.0, picture_mode="attach", signing=True, ordered=True, verify_tls=False,
        max_batch=50)

    minimal = Partner.model_validate_json(V_PARTNER_MINIMAL)
    assert minimal.event_types is None and minimal.delivery == DeliveryPrefs()
    assert minimal.state == "active" and minimal.allow_unsigned_timestamp is False

    old = Partner.model_validate_json(V_PARTNER_BEFORE_MAX_BATCH)
    assert old.delivery.max_batch == 1 and old.allow_unsigned_timestamp is False
    assert old.delivery.push_statuses == (0, 1, 2, 4) and old.delivery.timeout_s == 5.0

    assert Subscription.model_validate_json(V_SUB_DEFAULTS) == Subscription(
        partner_id="p-0123456789ab", event_type=196893, event_dest="http://10.0.0.5:8080/eventRcv")
    full_sub = Subscription.model_validate_json(V_SUB_FULL)
    assert full_sub == Subscription(
        partner_id="p-0123456789ab", event_type=131329, event_dest="https://partner.example/push?x=1",
        sub_type=2, event_lvl=(1, 3), token="tok-\u00e9", pass_back=1, updated_at=1764633600.5)
    assert full_sub.key == "p-0123456789ab:131329"


@pytest.mark.parametrize("record", [V_PARTNER_FULL, V_PARTNER_MINIMAL, V_SUB_DEFAULTS, V_SUB_FULL],
                         ids=["partner-full", "partner-minimal", "sub-defaults", "sub-full"])
def test_encodes_what_the_previous_codec_wrote(record: bytes) -> None:
    # The same field names and values (an older reader in a rolling upgrade decodes them too).
    model = Partner if record.startswith(b'{"id"') else Subscription
    assert json.loads(model.model_validate_json(record).model_dump_json()) == json.loads(record)


def test_unknown_fields_in_a_stored_record_are_ignored() -> None:
    newer = json.loads(V_SUB_DEFAULTS) | {"added_later": 1}
    assert Subscription.model_validate_json(json.dumps(newer)) == Subscription.model_validate_json(V_SUB_DEFAULTS)


def test_records_are_frozen_and_hashable() -> None:
    sub = Subscription.model_validate_json(V_SUB_FULL)
    with pytest.raises(ValidationError):
        sub.event_dest = "http://elsewhere/"  # type: ignore[misc]
    assert len({sub, Subscription.model_validate_json(V_SUB_FULL)}) == 1


def test_secret_tokens_never_show_in_reprs_or_the_public_view() -> None:
    partner = Partner.model_validate_json(V_PARTNER_FULL)
    for text in (repr(partner), str(partner), repr(partner.secrets[0])):
        assert "gAAAAAB" not in text
    public = partner.public()
    assert "gAAAAAB" not in json.dumps(public) and "secrets" not in public
    assert public["secretRotation"] == [{"createdAt": 1764633600.25, "expiresAt": None},
                                        {"createdAt": 1764000000.0, "expiresAt": 1764720000.5}]


def test_public_view_speaks_camel_case() -> None:
    public = Partner.model_validate_json(V_PARTNER_FULL).public()
    assert public == {
        "id": "p-0123456789ab", "name": "Acme Security", "userId": "admin", "appKey": "24681357",
        "eventTypes": [196893, 198914], "state": "disabled",
        "delivery": {"timeoutS": 2.5, "maxInFlight": 4, "pushStatuses": [0, 1, 2, 4],
                     "linkageMode": "merged", "mergeWaitS": 30.0, "pictureMode": "attach",
                     "signing": True, "ordered": True, "verifyTls": False, "maxBatch": 50},
        "allowUnsignedTimestamp": True,
        "secretRotation": public["secretRotation"],
        "createdAt": 1764000000.0, "updatedAt": 1764633600.25,
    }


@pytest.mark.parametrize(("changes", "field"), [
    ({"timeoutS": 0}, "delivery.timeoutS"),
    ({"timeoutS": 120.5}, "delivery.timeoutS"),
    ({"timeoutS": "5"}, "delivery.timeoutS"),
    ({"timeoutS": None}, "delivery.timeoutS"),
    ({"maxInFlight": 0}, "delivery.maxInFlight"),
    ({"maxInFlight": 1001}, "delivery.maxInFlight"),
    ({"maxInFlight": 2.0}, "delivery.maxInFlight"),
    ({"maxInFlight": True}, "delivery.maxInFlight"),
    ({"pushStatuses": [9]}, "delivery.pushStatuses"),
    ({"pushStatuses": ["0"]}, "delivery.pushStatuses.0"),
    ({"pushStatuses": 0}, "delivery.pushStatuses"),
    ({"linkageMode": "other"}, "delivery.linkageMode"),
    ({"pictureMode": "inline"}, "delivery.pictureMode"),
    ({"mergeWaitS": 3601}, "delivery.mergeWaitS"),
    ({"mergeWaitS": -1}, "delivery.mergeWaitS"),
    ({"signing": "yes"}, "delivery.signing"),
    ({"ordered": 1}, "delivery.ordered"),
    ({"verifyTls": None}, "delivery.verifyTls"),
    ({"maxBatch": 51}, "delivery.maxBatch"),
    ({"unknownPref": 1}, "delivery.unknownPref"),
])
def test_bad_delivery_changes_name_their_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        delivery_prefs(DeliveryPrefs(), changes)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


def test_delivery_changes_touch_only_what_they_name() -> None:
    base = DeliveryPrefs(timeout_s=2.0, push_statuses=(0, 4), signing=True)
    changed = delivery_prefs(base, {"pushStatuses": [4, 1, 1, 0], "maxBatch": 50, "timeoutS": 7})
    assert changed == DeliveryPrefs(timeout_s=7.0, push_statuses=(0, 1, 4), signing=True, max_batch=50)
    assert delivery_prefs(changed, {"pushStatuses": None}).push_statuses is None
    assert delivery_prefs(base, {}) == base
    # Field names work as well as the admin API's aliases (the CLI and tests use either).
    assert DeliveryChanges.model_validate({"max_batch": 3}).apply(base).max_batch == 3


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": "  "}, "name"),
    ({"name": 5}, "name"),
    ({"userId": ""}, "userId"),
    ({"eventTypes": [-1]}, "eventTypes.0"),
    ({"eventTypes": [True]}, "eventTypes.0"),
    ({"eventTypes": "all"}, "eventTypes"),
    ({"state": "deleted"}, "state"),
    ({"allowUnsignedTimestamp": "true"}, "allowUnsignedTimestamp"),
    ({"delivery": None}, "delivery"),
    ({"delivery": []}, "delivery"),
    ({"delivery": {"maxBatch": 0}}, "delivery.maxBatch"),
    ({"appKey": "12345678"}, "appKey"),
])
def test_bad_partner_changes_name_their_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validated(PartnerChanges, changes)
    assert caught.value.field == field


def test_partner_changes_keep_what_was_sent() -> None:
    changes = validated(PartnerChanges, {"name": " Acme ", "eventTypes": [3, 1, 3], "state": "disabled"})
    assert changes.model_fields_set == {"name", "event_types", "state"}
    assert (changes.name, changes.event_types, changes.state) == ("Acme", (1, 3), "disabled")
    assert validated(PartnerChanges, {"eventTypes": None}).model_fields_set == {"event_types"}
