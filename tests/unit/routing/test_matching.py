"""Unit tests of bridge.routing.matching and the pure part of routing: who receives which event.

The cases are the behaviours of architecture.md §2 (B2 subType, B3 eventLvl, B4 permissions,
B6 statuses, B7 isolation) and the troubleshooting items of the seed FAQ
(seed-event-subscription-faq.txt §四): 1.1a wrong subType, 1.1b wrong eventLvl, 1.1c missing
permission, 2 "no picture URL" on a raw subscription, 3 two messages with the same eventId
(status 0, then status 4 with ``linkageResult``), 5 status 5 async pictures filtered by
configuration (here: applied without re-subscription, as B6 requires).

Records are built the way ingest builds them (``to_records(parse_notify(...))``), so the
linkage/raw classification under test is the real one, not a hand-set flag.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bridge.events import DeliveryTask, EventRecord, delivery_id
from bridge.registry.models import Partner, Subscription
from bridge.registry.subscriptions import DEFAULT_LEVELS
from bridge.routing.matching import effective_statuses, matching, mismatch, push_body, route
from bridge.settings import Settings
from tests.fixtures.builders import (
    ACS,
    DEFAULT_GLOBAL,
    DEST_A,
    DEST_B,
    DROP,
    INTRUSION,
    NOW,
    PARKING_ENTRY,
    PAYLOADS,
    VIDEO,
    WITH_4,
    WITH_5,
    linkage_event,
    partner,
    payload_bytes,
    raw_event,
    receivers,
    record_from_file,
    records_from,
    sub,
    subscribed,
)


@pytest.mark.parametrize(
    ("record", "linkage"),
    [
        pytest.param(raw_event(), False, id="camera-event-is-raw"),
        pytest.param(raw_event(ability="event_rule"), False,
                     id="spec3.3-event_rule-ability-without-linkage-fields-is-raw"),
        pytest.param(linkage_event(), True, id="rule-sourced-event-is-linkage"),
        pytest.param(linkage_event(status=4), True, id="status4-update-is-linkage"),
        pytest.param(record_from_file("linkage_event_rule_status0_SYNTHETIC.json"), True,
                     id="payload-linkage-status0"),
        pytest.param(record_from_file("linkage_event_rule_status4_update_SYNTHETIC.json"), True,
                     id="payload-linkage-status4"),
        pytest.param(record_from_file("acs_card_196883_event_acs.json"), False, id="payload-acs"),
    ],
)
def test_ingest_classification_used_by_the_cases(record: EventRecord, linkage: bool) -> None:
    assert record.linkage is linkage


# --- B2: subType × raw/linkage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sub_type", "record", "delivered"),
    [
        pytest.param(0, raw_event(), True, id="B2-subType0-raw-delivered"),
        pytest.param(0, linkage_event(), False, id="B2-subType0-linkage-refused"),
        pytest.param(1, raw_event(), False, id="B2-subType1-raw-refused"),
        pytest.param(1, linkage_event(), True, id="B2-subType1-linkage-delivered"),
        pytest.param(2, raw_event(), True, id="B2-subType2-raw-delivered"),
        pytest.param(2, linkage_event(), True, id="B2-subType2-linkage-delivered"),
        pytest.param(0, raw_event(ability="event_rule"), True,
                     id="B2-subType0-event_rule-raw-fielddetection-delivered"),
        pytest.param(1, raw_event(ability="event_rule"), False,
                     id="B2-subType1-event_rule-raw-fielddetection-refused"),
    ],
)
def test_b2_sub_type(sub_type: int, record: EventRecord, delivered: bool) -> None:
    p = partner()
    s = sub(sub_type=sub_type)
    reason = mismatch(record, s, p, DEFAULT_GLOBAL)
    assert (reason is None) is delivered, reason
    assert matching(record, [s], {p.id: p}, DEFAULT_GLOBAL) == ([s] if delivered else [])
    if not delivered:
        assert f"subType {sub_type}" in reason


def test_b2_absent_sub_type_means_raw_only() -> None:
    p = partner()
    s = subscribed(p, {"eventTypes": [INTRUSION], "eventDest": DEST_A})
    assert s.sub_type == 0
    assert mismatch(raw_event(), s, p, DEFAULT_GLOBAL) is None
    assert "subType 0" in mismatch(linkage_event(), s, p, DEFAULT_GLOBAL)


# --- B3: eventLvl for linkage subscriptions ---------------------------------------------------


@pytest.mark.parametrize(
    ("sub_type", "levels", "record", "delivered"),
    [
        pytest.param(1, (1, 2, 3), linkage_event(event_lvl=2), True, id="B3-level-in-list"),
        pytest.param(1, (3,), linkage_event(event_lvl=2), False, id="B3-level-not-in-list"),
        pytest.param(2, (1,), linkage_event(event_lvl=1), True, id="B3-subType2-level-in-list"),
        pytest.param(2, (2, 3), linkage_event(event_lvl=1), False,
                     id="B3-subType2-level-not-in-list"),
        pytest.param(1, (0,), linkage_event(event_lvl=0), True, id="B3-explicit-level0"),
        pytest.param(1, (1, 2, 3), linkage_event(event_lvl=DROP), False,
                     id="B3-no-eventLvl-counts-as-0-not-in-1-2-3"),
        pytest.param(1, (0,), linkage_event(event_lvl=DROP), True,
                     id="B3-no-eventLvl-counts-as-0-in-0"),
        pytest.param(2, (0, 1, 2, 3), linkage_event(event_lvl=None), True,
                     id="B3-null-eventLvl-counts-as-0-in-0-1-2-3"),
        pytest.param(1, (1, 2, 3), linkage_event(event_lvl="3"), True,
                     id="B3-eventLvl-as-string-is-read-as-int"),
        pytest.param(2, (1,), raw_event(event_lvl=3), True,
                     id="B3-raw-event-ignores-levels-subType2"),
        pytest.param(0, (1,), raw_event(event_lvl=3), True,
                     id="B3-raw-event-ignores-levels-subType0"),
        pytest.param(2, (3,), raw_event(), True, id="B3-raw-event-without-eventLvl-ignores-levels"),
    ],
)
def test_b3_event_levels(sub_type: int, levels: tuple[int, ...], record: EventRecord,
                         delivered: bool) -> None:
    p = partner()
    reason = mismatch(record, sub(sub_type=sub_type, levels=levels), p, DEFAULT_GLOBAL)
    assert (reason is None) is delivered, reason
    if not delivered:
        level = record.event_lvl if record.event_lvl is not None else 0
        assert f"eventLvl {level}" in reason
        assert str(list(levels)) in reason


def test_b3_default_levels_follow_the_compatibility_spec() -> None:
    # Spec §1.1: default [1,2,3] when subType = 1 and [0,1,2,3] when subType = 2;
    # FAQ 1.4: "不传默认接收低中高全部等级事件" (absent = low, medium and high).
    assert tuple(DEFAULT_LEVELS[1]) == (1, 2, 3)
    assert tuple(DEFAULT_LEVELS[2]) == (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("body", "event_lvl", "delivered"),
    [
        pytest.param({"subType": 1}, 0, False, id="B3-default-subType1-excludes-level0"),
        pytest.param({"subType": 1}, DROP, False, id="B3-default-subType1-excludes-absent-level"),
        pytest.param({"subType": 1}, 1, True, id="B3-default-subType1-low"),
        pytest.param({"subType": 1}, 3, True, id="B3-default-subType1-high"),
        pytest.param({"subType": 2}, 0, True, id="B3-default-subType2-includes-level0"),
        pytest.param({"subType": 2}, DROP, True, id="B3-default-subType2-includes-absent-level"),
        pytest.param({"subType": 2}, 3, True, id="B3-default-subType2-high"),
        pytest.param({"subType": 1, "eventLvl": [3]}, 3, True, id="B3-explicit-eventLvl-3-high"),
        pytest.param({"subType": 1, "eventLvl": [3]}, 1, False, id="B3-explicit-eventLvl-3-low"),
        pytest.param({"subType": 2, "eventLevel": [0, 1, 2]}, 3, False,
                     id="B3-eventLevel-alias-Odoo-excludes-3"),
        pytest.param({"subType": 2, "eventLevel": [0, 1, 2]}, 0, True,
                     id="B3-eventLevel-alias-Odoo-includes-0"),
    ],
)
def test_b3_levels_from_a_subscribe_request(body: dict[str, Any], event_lvl: Any,
                                            delivered: bool) -> None:
    p = partner()
    s = subscribed(p, {"eventTypes": [INTRUSION], "eventDest": DEST_A, **body})
    reason = mismatch(linkage_event(event_lvl=event_lvl), s, p, DEFAULT_GLOBAL)
    assert (reason is None) is delivered, reason
    if not delivered:
        assert "eventLvl" in reason


# --- B4: permissions, partner state ----------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "partners_has_it", "delivered", "reason_part"),
    [
        pytest.param(partner(event_types=None), True, True, None, id="B4-event_types-None-means-all"),
        pytest.param(partner(event_types=(ACS, INTRUSION)), True, True, None,
                     id="B4-explicit-list-permits-type"),
        pytest.param(partner(event_types=(ACS,)), True, False, "not permitted",
                     id="B4-FAQ1.1c-explicit-list-forbids-type"),
        pytest.param(partner(event_types=()), True, False, "not permitted",
                     id="B4-empty-list-permits-nothing"),
        pytest.param(partner(state="disabled"), True, False, "disabled", id="B4-disabled-partner"),
        pytest.param(partner(), False, False, "no longer exists", id="B4-partner-missing"),
    ],
)
def test_b4_permissions_and_partner_state(p: Partner, partners_has_it: bool, delivered: bool,
                                          reason_part: str | None) -> None:
    record = raw_event(event_type=INTRUSION)
    s = sub(p.id, sub_type=2)
    partners = {p.id: p} if partners_has_it else {}
    reason = mismatch(record, s, partners.get(p.id), DEFAULT_GLOBAL)
    assert (reason is None) is delivered, reason
    assert matching(record, [s], partners, DEFAULT_GLOBAL) == ([s] if delivered else [])
    assert len(route(record, [s], partners, DEFAULT_GLOBAL, NOW)) == (1 if delivered else 0)
    if reason_part is not None:
        assert reason_part in reason


def test_b4_permission_reason_names_user_and_type() -> None:
    p = partner("p-x", event_types=(ACS,))
    reason = mismatch(raw_event(event_type=VIDEO), sub("p-x", VIDEO), p, DEFAULT_GLOBAL)
    assert reason is not None
    assert "user-p-x" in reason and str(VIDEO) in reason and "not permitted" in reason


def test_b4_disabled_is_reported_even_when_everything_else_matches() -> None:
    p = partner(state="disabled", push_statuses=(0, 1, 2, 3, 4, 5))
    assert "disabled" in mismatch(raw_event(), sub(sub_type=2, levels=(0, 1, 2, 3)), p, WITH_4)


# --- B6: statuses, global and per partner -----------------------------------------------------


ALL_STATUSES = [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("global_statuses", "override", "pushed"),
    [
        pytest.param(DEFAULT_GLOBAL, None, {0, 1, 2}, id="B6-default-global-0-1-2"),
        pytest.param(WITH_4, None, {0, 1, 2, 4}, id="B6-global-with-4"),
        pytest.param(WITH_5, None, {0, 1, 2, 5}, id="B6-global-with-5"),
        pytest.param(DEFAULT_GLOBAL, (0,), {0}, id="B6-override-narrower-than-global"),
        pytest.param(DEFAULT_GLOBAL, (0, 1, 2, 4, 5), {0, 1, 2, 4, 5},
                     id="B6-override-wider-than-global"),
        pytest.param(WITH_4, (0, 1, 2), {0, 1, 2}, id="B6-override-removes-global-4"),
        pytest.param(ALL_STATUSES, (), set(), id="B6-empty-override-pushes-nothing"),
    ],
)
@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: f"status{s}")
def test_b6_statuses(global_statuses: list[int], override: tuple[int, ...] | None,
                     pushed: set[int], status: int) -> None:
    p = partner(push_statuses=override)
    assert set(effective_statuses(p, global_statuses)) == pushed
    # A raw event of any status, to a subscription that takes everything else.
    record = raw_event(status=status)
    reason = mismatch(record, sub(sub_type=2, levels=(0, 1, 2, 3)), p, global_statuses)
    assert (reason is None) is (status in pushed), reason
    if status not in pushed:
        assert f"status {status}" in reason


def test_b6_default_global_setting_is_0_1_2() -> None:
    # Settings out of the box (clean env from conftest): FAQ 5's default, 0-instant, 1-start, 2-stop.
    assert sorted(Settings().push_statuses) == DEFAULT_GLOBAL


@pytest.mark.parametrize(
    ("global_statuses", "override", "delivered"),
    [
        pytest.param(DEFAULT_GLOBAL, None, False, id="B6-linkage-update-not-pushed-by-default"),
        pytest.param(WITH_4, None, True, id="B6-linkage-update-pushed-with-global-4"),
        pytest.param(DEFAULT_GLOBAL, (0, 1, 2, 4), True, id="B6-linkage-update-partner-adds-4"),
        pytest.param(WITH_4, (0, 1, 2), False, id="B6-linkage-update-partner-drops-4"),
    ],
)
def test_b6_linkage_update(global_statuses: list[int], override: tuple[int, ...] | None,
                           delivered: bool) -> None:
    record = record_from_file("linkage_event_rule_status4_update_SYNTHETIC.json")
    p = partner(push_statuses=override)
    reason = mismatch(record, sub(sub_type=1), p, global_statuses)
    assert (reason is None) is delivered, reason
    if not delivered:
        assert "status 4" in reason


def test_b6_override_is_per_partner() -> None:
    # One partner's override changes nothing for a partner that follows the global set.
    record = raw_event(status=5)
    wide = partner("p-wide", push_statuses=(0, 1, 2, 5))
    follows = partner("p-global")
    subs = [sub("p-wide"), sub("p-global")]
    partners = {wide.id: wide, follows.id: follows}
    assert receivers(record, subs, partners, DEFAULT_GLOBAL) == ["p-wide"]
    assert receivers(record, subs, partners, WITH_5) == ["p-wide", "p-global"]


# --- mismatch reasons -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "s", "p", "statuses", "parts"),
    [
        pytest.param(linkage_event(), sub(sub_type=0), partner(), DEFAULT_GLOBAL,
                     ["subType 0", "linkage", "raw events only"], id="reason-subType0-vs-linkage"),
        pytest.param(raw_event(), sub(sub_type=1), partner(), DEFAULT_GLOBAL,
                     ["subType 1", "raw event", "linkage events only"],
                     id="reason-subType1-vs-raw"),
        pytest.param(linkage_event(event_lvl=2), sub(sub_type=1, levels=(3,)), partner(),
                     DEFAULT_GLOBAL, ["eventLvl 2", "[3]"], id="reason-eventLvl"),
        pytest.param(linkage_event(status=4), sub(sub_type=1), partner(), DEFAULT_GLOBAL,
                     ["status 4", "[0, 1, 2]"], id="reason-status-4-global"),
        pytest.param(raw_event(status=5), sub(), partner(push_statuses=(0,)), WITH_5,
                     ["status 5", "[0]"], id="reason-status-5-partner-override"),
        pytest.param(raw_event(event_type=ACS), sub(event_type=ACS), partner(event_types=(VIDEO,)),
                     DEFAULT_GLOBAL, ["not permitted", str(ACS)], id="reason-not-permitted"),
        pytest.param(raw_event(), sub(), partner(state="disabled"), DEFAULT_GLOBAL, ["disabled"],
                     id="reason-disabled"),
        pytest.param(raw_event(), sub(), None, DEFAULT_GLOBAL, ["partner", "no longer exists"],
                     id="reason-partner-missing"),
    ],
)
def test_mismatch_reasons_name_the_cause(record: EventRecord, s: Subscription, p: Partner | None,
                                         statuses: list[int], parts: list[str]) -> None:
    reason = mismatch(record, s, p, statuses)
    assert isinstance(reason, str) and reason.strip()
    for part in parts:
        assert part in reason, (part, reason)


def test_mismatch_is_none_when_everything_fits() -> None:
    assert mismatch(linkage_event(), sub(sub_type=2), partner(), DEFAULT_GLOBAL) is None


def test_subscription_to_another_event_type_does_not_match() -> None:
    p = partner()
    other = sub(event_type=ACS, sub_type=2)
    record = raw_event(event_type=INTRUSION)
    assert matching(record, [other], {p.id: p}, DEFAULT_GLOBAL) == []
    reason = mismatch(record, other, p, DEFAULT_GLOBAL)
    assert reason is not None and str(INTRUSION) in reason


# --- seed FAQ scenarios -----------------------------------------------------------------------


def test_faq_1_1a_doc_example_subtype_1_gets_only_linkage_events() -> None:
    """FAQ 1.1a / spec §1.1 (YZS): following the doc example (subType 1) yields no raw events."""
    p = partner()
    from_example = subscribed(p, {"eventTypes": [INTRUSION], "eventDest": DEST_A, "subType": 1})
    device_event = raw_event(event_type=INTRUSION)
    rule_event = record_from_file("linkage_event_rule_status0_SYNTHETIC.json")
    partners = {p.id: p}

    assert matching(device_event, [from_example], partners, DEFAULT_GLOBAL) == []
    assert "subType 1" in mismatch(device_event, from_example, p, DEFAULT_GLOBAL)
    assert matching(rule_event, [from_example], partners, DEFAULT_GLOBAL) == [from_example]

    # The fix the FAQ gives: re-subscribe with subType 2 (both) -- or 0/absent for raw only.
    fixed = subscribed(p, {"eventTypes": [INTRUSION], "eventDest": DEST_A, "subType": 2})
    assert matching(device_event, [fixed], partners, DEFAULT_GLOBAL) == [fixed]
    assert matching(rule_event, [fixed], partners, DEFAULT_GLOBAL) == [fixed]


@pytest.mark.parametrize(
    ("body", "delivered"),
    [
        pytest.param({}, True, id="FAQ1.1a-acs-card-event-subType-absent"),
        pytest.param({"subType": 0}, True, id="FAQ1.1a-acs-card-event-subType0"),
        pytest.param({"subType": 1}, False, id="FAQ1.1a-acs-card-event-subType1-wrong"),
        pytest.param({"subType": 2}, True, id="FAQ1.1a-acs-card-event-subType2"),
    ],
)
def test_faq_1_1a_raw_business_events_need_subtype_0_or_absent(body: dict[str, Any],
                                                                delivered: bool) -> None:
    p = partner()
    s = subscribed(p, {"eventTypes": [ACS], "eventDest": DEST_A, **body})
    record = record_from_file("acs_card_196883_event_acs.json")
    assert (mismatch(record, s, p, DEFAULT_GLOBAL) is None) is delivered


@pytest.mark.parametrize(
    ("levels", "delivered"),
    [
        pytest.param([2], True, id="FAQ1.1b-eventLvl-matches-platform-level"),
        pytest.param([3], False, id="FAQ1.1b-eventLvl-high-only-misses-medium-event"),
        pytest.param([0, 1], False, id="FAQ1.1b-eventLvl-low-misses-medium-event"),
        pytest.param(None, True, id="FAQ1.1b-eventLvl-absent-takes-low-medium-high"),
    ],
)
def test_faq_1_1b_event_level_must_match_the_platform(levels: list[int] | None,
                                                      delivered: bool) -> None:
    p = partner()
    body: dict[str, Any] = {"eventTypes": [INTRUSION], "eventDest": DEST_A, "subType": 1}
    if levels is not None:
        body["eventLvl"] = levels
    s = subscribed(p, body)
    record = record_from_file("linkage_event_rule_status0_SYNTHETIC.json")  # eventLvl 2 (medium)
    reason = mismatch(record, s, p, DEFAULT_GLOBAL)
    assert (reason is None) is delivered, reason
    if not delivered:
        assert "eventLvl 2" in reason


@pytest.mark.parametrize("statuses", [DEFAULT_GLOBAL, WITH_4], ids=["default", "with-4"])
def test_faq_2_raw_subscription_never_gets_the_linkage_snapshot(statuses: list[int]) -> None:
    """FAQ 2: linkage snapshot URLs only come in linkage messages, which subType 0 never gets."""
    p = partner()
    raw_only = subscribed(p, {"eventTypes": [INTRUSION], "eventDest": DEST_A})
    linkage = subscribed(partner("p-l"), {"eventTypes": [INTRUSION], "eventDest": DEST_B,
                                          "subType": 1})
    update = record_from_file("linkage_event_rule_status4_update_SYNTHETIC.json")
    partners = {p.id: p, "p-l": partner("p-l")}
    tasks = route(update, [raw_only, linkage], partners, statuses, NOW)
    assert all(t.partner_id != p.id for t in tasks)
    assert "subType 0" in mismatch(update, raw_only, p, statuses)
    if 4 in statuses:
        (task,) = tasks
        (event,) = task.body["params"]["events"]
        assert event["linkageResult"][0]["picUrls"] == ["http://10.10.20.5:6120/pic?linkage-snapshot-1"]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        pytest.param(DEFAULT_GLOBAL, [0], id="FAQ3-default-only-status0-routed"),
        pytest.param(WITH_4, [0, 4], id="FAQ3-with-4-both-routed"),
    ],
)
@pytest.mark.parametrize("sub_type", [1, 2], ids=lambda t: f"subType{t}")
def test_faq_3_same_event_id_status_0_then_4(statuses: list[int], expected: list[int],
                                              sub_type: int) -> None:
    first = record_from_file("linkage_event_rule_status0_SYNTHETIC.json")
    update = record_from_file("linkage_event_rule_status4_update_SYNTHETIC.json")
    assert first.event_id == update.event_id and (first.status, update.status) == (0, 4)
    assert "linkageResult" not in first.raw and "linkageResult" in update.raw

    p = partner()
    s = sub(sub_type=sub_type)
    tasks = [t for r in (first, update) for t in route(r, [s], {p.id: p}, statuses, NOW)]
    assert [t.status for t in tasks] == expected
    assert {t.event_ids for t in tasks} == {(first.event_id,)}
    # Two reports of one event are two deliveries, not duplicates of each other.
    assert len({t.delivery_id for t in tasks}) == len(tasks)


@pytest.mark.parametrize(
    ("record_kind", "added_status"),
    [
        pytest.param("parking-status5", 5, id="FAQ5-parking-async-picture-status5"),
        pytest.param("linkage-status4", 4, id="FAQ5-linkage-update-status4"),
    ],
)
def test_faq_5_status_change_applies_without_resubscription(record_kind: str,
                                                            added_status: int) -> None:
    if record_kind == "parking-status5":
        record = record_from_file("parking_771760130_entry_event_pms_SYNTHETIC.json", status=5)
        assert not record.linkage
        p = partner()
        subs = (subscribed(p, {"eventTypes": [PARKING_ENTRY], "eventDest": DEST_A}),)
    else:
        record = record_from_file("linkage_event_rule_status4_update_SYNTHETIC.json")
        p = partner()
        subs = (subscribed(p, {"eventTypes": [INTRUSION], "eventDest": DEST_A, "subType": 2}),)
    partners = {p.id: p}
    before = copy.deepcopy(subs)

    assert matching(record, subs, partners, DEFAULT_GLOBAL) == []
    assert f"status {added_status}" in mismatch(record, subs[0], p, DEFAULT_GLOBAL)

    # The operator adds the status globally: the very same subscription objects now receive it.
    assert matching(record, subs, partners, [*DEFAULT_GLOBAL, added_status]) == list(subs)
    # ... or for this partner only, again without touching the subscription.
    widened = p.model_copy(update={
        "delivery": p.delivery.model_copy(update={"push_statuses": (0, 1, 2, added_status)})})
    assert matching(record, subs, {p.id: widened}, DEFAULT_GLOBAL) == list(subs)
    # And back: removing it stops the pushes at once.
    assert matching(record, subs, partners, DEFAULT_GLOBAL) == []
    assert subs == before


# --- B7 / FAQ 4: partners are independent -----------------------------------------------------


def _other_changes() -> list[Any]:
    """Ways partner A can differ; none may change what partner B receives."""
    return [
        pytest.param(lambda ps, ss: (ps, ss), id="B7-baseline"),
        pytest.param(lambda ps, ss: ({**ps, "p-a": partner("p-a", state="disabled")}, ss),
                     id="B7-FAQ4-other-partner-disabled"),
        pytest.param(lambda ps, ss: (ps, [s for s in ss if s.partner_id != "p-a"]),
                     id="B7-FAQ4-other-partner-unsubscribed"),
        pytest.param(lambda ps, ss: ({k: v for k, v in ps.items() if k != "p-a"}, ss),
                     id="B7-other-partner-deleted"),
        pytest.param(lambda ps, ss: ({**ps, "p-a": partner("p-a", event_types=(ACS,))}, ss),
                     id="B7-other-partner-not-permitted"),
        pytest.param(lambda ps, ss: ({**ps, "p-a": partner("p-a", push_statuses=(3,))}, ss),
                     id="B7-other-partner-narrow-statuses"),
        pytest.param(lambda ps, ss: (ps, [s.model_copy(update={"sub_type": 1})
                                          if s.partner_id == "p-a" else s for s in ss]),
                     id="B7-other-partner-wrong-subType"),
    ]


@pytest.mark.parametrize("change", _other_changes())
@pytest.mark.parametrize(
    "record",
    [
        pytest.param(raw_event(event_type=INTRUSION), id="raw"),
        pytest.param(record_from_file("linkage_event_rule_status0_SYNTHETIC.json"), id="linkage"),
    ],
)
def test_b7_partners_on_the_same_type_are_independent(change: Any, record: EventRecord) -> None:
    partners = {"p-a": partner("p-a"), "p-b": partner("p-b")}
    subs = [sub("p-a", sub_type=2, dest=DEST_A), sub("p-b", sub_type=2, dest=DEST_B)]
    partners, subs = change(partners, subs)
    tasks = route(record, subs, partners, DEFAULT_GLOBAL, NOW)
    b_tasks = [t for t in tasks if t.partner_id == "p-b"]
    assert [(t.partner_id, t.event_dest) for t in b_tasks] == [("p-b", DEST_B)]
    assert mismatch(record, subs[-1], partners["p-b"], DEFAULT_GLOBAL) is None


# --- route(): tasks, bodies, delivery ids -----------------------------------------------------


PAYLOAD_FILES = sorted(p.name for p in PAYLOADS.glob("*.json"))

#: For each payload file, which of the subscriptions (subType 0, 1, 2) receive it: by default,
#: and with status 4 added globally.
ROUTE_TABLE = {
    "acs_card_196883_event_acs.json": ({0, 2}, {0, 2}),
    "video_131330_event_vss_start.json": ({0, 2}, {0, 2}),
    "parking_771760130_entry_event_pms_SYNTHETIC.json": ({0, 2}, {0, 2}),
    "linkage_event_rule_status0_SYNTHETIC.json": ({1, 2}, {1, 2}),
    "linkage_event_rule_status4_update_SYNTHETIC.json": (set(), {1, 2}),
}


def test_route_table_covers_every_payload_file() -> None:
    assert set(ROUTE_TABLE) == set(PAYLOAD_FILES)


def _three_subscribers(event_type: int) -> tuple[dict[str, Partner], list[Subscription]]:
    partners = {f"p-st{t}": partner(f"p-st{t}") for t in (0, 1, 2)}
    subs = [sub(f"p-st{t}", event_type, sub_type=t, levels=(0, 1, 2, 3),
                dest=f"http://10.0.0.{t + 1}:9000/eventRcv") for t in (0, 1, 2)]
    return partners, subs


@pytest.mark.parametrize("statuses", [DEFAULT_GLOBAL, WITH_4], ids=["default", "with-4"])
@pytest.mark.parametrize("name", PAYLOAD_FILES)
def test_route_payload_files(name: str, statuses: list[int]) -> None:
    raw_bytes = payload_bytes(name)
    original = json.loads(raw_bytes)
    (record,) = records_from(raw_bytes, now=123.0)
    partners, subs = _three_subscribers(record.event_type)
    expected = ROUTE_TABLE[name][0 if statuses == DEFAULT_GLOBAL else 1]

    tasks = route(record, subs, partners, statuses, NOW)

    # One task per matching subscription, in subscription order.
    assert [t.partner_id for t in tasks] == [f"p-st{t}" for t in sorted(expected)]
    for task, s in zip(tasks, [s for s in subs if s.partner_id in {t.partner_id for t in tasks}]):
        assert isinstance(task, DeliveryTask)
        assert task.event_dest == s.event_dest
        assert task.event_ids == (record.event_id,)
        assert (task.event_type, task.status) == (record.event_type, record.status)
        assert task.delivery_id == delivery_id(s.partner_id, record)
        assert (task.created_at, task.ingest_ts) == (NOW, 123.0)
        assert (task.attempt, task.trigger, task.not_before) == (0, "live", 0.0)
        # The body is exactly what the platform sent (one event per file), key order included.
        assert task.body == original
        assert json.dumps(task.body, ensure_ascii=False) == json.dumps(original, ensure_ascii=False)
        assert DeliveryTask.decode(task.encode()) == task


def test_route_splits_a_push_into_one_body_per_event_verbatim() -> None:
    push = {
        "method": "OnEventNotify",
        "params": {
            "ability": "event_vss",
            "sendTime": "2019-03-13 17:38:34",
            "uids": "",
            "dataProcInterval": 5,
            "events": [
                {"eventId": "E-1", "eventType": "131330", "status": "1", "srcIndex": "cam-1",
                 "srcType": "camera", "srcParentIdex": "nvr-1", "timeout": 30,
                 "happenTime": "2019-03-13 17:38:33", "vendorField": {"x": [1, None, "y"]}},
                {"eventId": "E-2", "eventType": 131330, "status": 2, "srcIndex": "cam-1",
                 "srcType": "camera", "timeout": 0, "happenTime": "2019-03-13 17:38:40",
                 "data": {"channelID": 3}},
            ],
        },
    }
    records = records_from(push)
    assert [r.event_id for r in records] == ["E-1", "E-2"]
    p = partner()
    s = sub(event_type=VIDEO)
    for record, event in zip(records, push["params"]["events"]):
        (task,) = route(record, [s], {p.id: p}, DEFAULT_GLOBAL, NOW)
        assert task.body == {
            "method": "OnEventNotify",
            "params": {"ability": "event_vss", "sendTime": "2019-03-13 17:38:34", "uids": "",
                       "dataProcInterval": 5, "events": [event]},
        }
        assert task.body == push_body(record)
    # Values stay as sent: string codes, the misspelled srcParentIdex, unknown fields.
    (first,) = route(records[0], [s], {p.id: p}, DEFAULT_GLOBAL, NOW)
    (sent,) = first.body["params"]["events"]
    assert sent["eventType"] == "131330" and sent["status"] == "1"
    assert sent["srcParentIdex"] == "nvr-1" and sent["vendorField"] == {"x": [1, None, "y"]}
    assert first.event_type == 131330 and first.status == 1


def test_route_without_matches_is_empty() -> None:
    assert route(raw_event(), [], {}, DEFAULT_GLOBAL, NOW) == []
    p = partner()
    assert route(linkage_event(status=4), [sub(sub_type=1)], {p.id: p}, DEFAULT_GLOBAL, NOW) == []


# delivery_id: deterministic, distinct for each (partner, eventId, eventType, status), and the same
# whatever the destination (a partner that moves its endpoint keeps its ids).


def _base_id() -> str:
    return delivery_id("p-a", record_from_file("linkage_event_rule_status0_SYNTHETIC.json"))


@pytest.mark.parametrize(
    ("make", "same"),
    [
        pytest.param(lambda: delivery_id(
            "p-a", record_from_file("linkage_event_rule_status0_SYNTHETIC.json")),
            True, id="id-same-event-same-partner-dest"),
        pytest.param(lambda: delivery_id(
            "p-a", records_from(payload_bytes("linkage_event_rule_status0_SYNTHETIC.json"),
                                        now=NOW + 3600)[0]),
            True, id="id-independent-of-ingest-time-resend-replay"),
        pytest.param(lambda: delivery_id(
            "p-a", record_from_file("linkage_event_rule_status4_update_SYNTHETIC.json")),
            False, id="id-differs-by-status-FAQ3-0-vs-4"),
        pytest.param(lambda: delivery_id(
            "p-b", record_from_file("linkage_event_rule_status0_SYNTHETIC.json")),
            False, id="id-differs-by-partner"),
        pytest.param(lambda: delivery_id(
            "p-a", record_from_file("linkage_event_rule_status0_SYNTHETIC.json",
                                            eventType=131589)),
            False, id="id-differs-by-eventType"),
        pytest.param(lambda: delivery_id(
            "p-a", record_from_file("linkage_event_rule_status0_SYNTHETIC.json",
                                            eventId="OTHER-ID")),
            False, id="id-differs-by-eventId"),
    ],
)
def test_delivery_id(make: Any, same: bool) -> None:
    base = _base_id()
    other = make()
    assert len(base) == 32 and int(base, 16) >= 0
    assert (other == base) is same


def test_delivery_id_is_the_same_after_the_partner_moves_its_endpoint() -> None:
    record = record_from_file("linkage_event_rule_status0_SYNTHETIC.json")
    p = partner()
    (before,) = route(record, [sub(sub_type=2, dest=DEST_A)], {p.id: p}, WITH_4, NOW)
    (after,) = route(record, [sub(sub_type=2, dest=DEST_B)], {p.id: p}, WITH_4, NOW)
    assert (before.event_dest, after.event_dest) == (DEST_A, DEST_B)
    assert before.delivery_id == after.delivery_id


@pytest.mark.parametrize("name", PAYLOAD_FILES)
def test_route_delivery_ids_are_deterministic_and_distinct(name: str) -> None:
    partners, subs = _three_subscribers(json.loads(payload_bytes(name))["params"]["events"][0]
                                        ["eventType"])
    first = route(records_from(payload_bytes(name), now=1.0)[0], subs, partners, WITH_4, NOW)
    again = route(records_from(payload_bytes(name), now=2.0)[0], subs, partners, WITH_4, NOW + 5)
    assert first  # every file reaches someone with status 4 enabled
    assert [t.delivery_id for t in first] == [t.delivery_id for t in again]
    assert len({t.delivery_id for t in first}) == len(first)  # one id per partner/dest
