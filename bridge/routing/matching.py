"""Which partner subscriptions an event matches: a pure function, with the reason when it does not.

A subscription of partner P to the event's type matches when, in this order:

1. P exists and is active;
2. P's user is permitted the event type (B4);
3. ``subType`` fits: 0 takes raw events only, 1 linkage events only, 2 both (B2). Whether an event
   is a linkage event is decided once at ingest (``bridge.notify.PlatformEvent.is_linkage``);
4. for a linkage event, its ``eventLvl`` is in the subscription's levels (B3); an event without
   ``eventLvl`` counts as level 0, "not configured". Raw events ignore levels;
5. the event's ``status`` is in P's push statuses, else in the global set (B6). Both are read at
   each event, so an operator's change applies at once without re-subscription (seed FAQ 5).

The reasons are the seed FAQ's troubleshooting answers, returned as values so that the doctor
and the admin API can say why a partner did not get an event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bridge.events import DeliveryTask, EventRecord, delivery_id
from bridge.platform.notify import build_push
from bridge.registry.models import Partner, Subscription


def effective_statuses(partner: Partner, global_statuses: Collection[int]) -> Collection[int]:
    statuses = (partner.delivery.push_statuses if partner.delivery.push_statuses is not None
                else global_statuses)
    if partner.delivery.linkage_mode == "merged" and 4 not in statuses:
        # Merged mode exists to deliver linkage results: the update is needed to merge it.
        return (*statuses, 4)
    return statuses


def mismatch(record: EventRecord, sub: Subscription, partner: Partner | None,
             global_statuses: Collection[int]) -> str | None:
    """``None`` when ``sub`` should receive ``record``, else why not."""
    if sub.event_type != record.event_type:
        return f"subscribed to event type {sub.event_type}, not {record.event_type}"
    if partner is None:
        return "partner no longer exists"
    if partner.state != "active":
        return "partner is disabled"
    if not partner.permits(record.event_type):
        return f"user {partner.user_id} is not permitted event type {record.event_type}"
    if sub.sub_type == 0 and record.linkage:
        return "linkage event, but the subscription has subType 0 (raw events only)"
    if sub.sub_type == 1 and not record.linkage:
        return "raw event, but the subscription has subType 1 (linkage events only)"
    if record.linkage:
        level = record.event_lvl if record.event_lvl is not None else 0
        if level not in sub.event_lvl:
            return f"eventLvl {level} is not in the subscription's levels {list(sub.event_lvl)}"
    statuses = effective_statuses(partner, global_statuses)
    if record.status not in statuses:
        return f"status {record.status} is not pushed (push statuses {sorted(statuses)})"
    return None


def matching(record: EventRecord, subs: Collection[Subscription], partners: Mapping[str, Partner],
             global_statuses: Collection[int]) -> list[Subscription]:
    """The subscriptions (one per partner and type) that receive ``record``."""
    return [s for s in subs
            if mismatch(record, s, partners.get(s.partner_id), global_statuses) is None]


def push_body(record: EventRecord) -> dict[str, object]:
    """The ``OnEventNotify`` message carrying this one event, as the platform sent it."""
    return build_push(record.ability, record.send_time, [record.raw], record.params_extra)


def route(record: EventRecord, subs: Collection[Subscription], partners: Mapping[str, Partner],
          global_statuses: Collection[int], now: float) -> list[DeliveryTask]:
    """One task per matching subscription; they share one push body (never mutated: a task
    that needs another body gets a copy, see ``correlation``)."""
    subs = matching(record, subs, partners, global_statuses)
    if not subs:
        return []
    body = push_body(record)
    return [
        DeliveryTask(
            delivery_id=delivery_id(sub.partner_id, record),
            partner_id=sub.partner_id,
            event_dest=sub.event_dest,
            event_ids=(record.event_id,),
            event_type=record.event_type,
            status=record.status,
            body=body,
            created_at=now,
            ingest_ts=record.ingest_ts,
        )
        for sub in subs
    ]
