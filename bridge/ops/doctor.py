"""``event-bridge doctor PARTNER``: the seed FAQ as an automatic check list (B8).

Each check answers one troubleshooting question of the platform's FAQ with facts from the
registry, the network and the bridge's own topics, instead of log-diving.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from bridge.delivery import readback
from bridge.delivery.breaker import destination_of
from bridge.events import EventRecord
from bridge.registry.view import RegistryView
from bridge.routing.matching import effective_statuses
from bridge.settings import Settings
from bridge.topics import topic_table
from bridge.urlpolicy import UrlPolicy, check_resolved

Verdict = Literal["ok", "warn", "fail"]
STATUS_NAMES = {0: "instant", 1: "start", 2: "stop", 3: "pulse", 4: "linkage update", 5: "picture", 8: "remark"}


@dataclass(frozen=True)
class Check:
    question: str
    verdict: Verdict
    detail: str


async def _reachable(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return False, f"TCP connect to {parts.hostname}:{port} failed: {type(exc).__name__} {exc}".strip()
    writer.close()
    return True, f"TCP connect to {parts.hostname}:{port} works"


async def diagnose(settings: Settings, view: RegistryView, partner_id: str,
                   sample_per_partition: int = 2000) -> list[Check]:
    checks: list[Check] = []
    partner = view.partner(partner_id)
    if partner is None:
        return [Check("Does the partner exist?", "fail", f"no partner {partner_id!r}")]
    checks.append(Check("Is the partner active?", "ok" if partner.state == "active" else "fail",
                        f"state {partner.state}" + ("" if partner.state == "active"
                                                    else ": no API calls, no pushes")))
    checks.append(Check(
        "Must its Artemis calls sign x-ca-timestamp?",
        "warn" if partner.allow_unsigned_timestamp else "ok",
        "no: unsigned timestamps allowed (legacy opt-in); a captured call can be replayed later"
        if partner.allow_unsigned_timestamp else "yes: a call without a signed timestamp gets 401"))
    subs = view.subscriptions_of(partner.id)
    if not subs:
        checks.append(Check("Is it subscribed to anything?", "fail",
                            "no subscriptions: call eventSubscriptionByEventTypes"))
        return checks
    types = sorted({s.event_type for s in subs})
    forbidden = [t for t in types if not partner.permits(t)]
    checks.append(Check("Is its user (FAQ 1.1c) permitted the subscribed types?",
                        "fail" if forbidden else "ok",
                        f"user {partner.user_id} may not receive {forbidden}" if forbidden
                        else f"user {partner.user_id} may receive all {len(types)} subscribed types"))
    linkage_only = [s.event_type for s in subs if s.sub_type == 1]
    checks.append(Check("Does subType (FAQ 1.1a) let raw events through?",
                        "warn" if linkage_only else "ok",
                        f"types {linkage_only} have subType 1: linkage events only, no raw events; "
                        "subscribe with subType 2 for both" if linkage_only
                        else "every subscription takes raw events (subType 0 or 2)"))
    narrow = [(s.event_type, list(s.event_lvl)) for s in subs
              if s.sub_type in (1, 2) and set(s.event_lvl) != {0, 1, 2, 3}]
    checks.append(Check("Do eventLvl filters (FAQ 1.1b) drop linkage levels?", "warn" if narrow else "ok",
                        "; ".join(f"type {t} takes levels {lv} only" for t, lv in narrow) if narrow
                        else "all linkage levels pass"))
    statuses = sorted(effective_statuses(partner, view.setting("push_statuses", settings.push_statuses)))
    filtered = [f"{s} {STATUS_NAMES[s]}" for s in (3, 4, 5) if s not in statuses]
    checks.append(Check("Which statuses (FAQ 5) are pushed?", "warn" if filtered else "ok",
                        f"pushed: {statuses}" + (f"; filtered out: {', '.join(filtered)} "
                                                 "(add them with `partner set --push-statuses` or "
                                                 "globally, no re-subscription needed)" if filtered else "")))
    policy = UrlPolicy.from_settings(settings)
    for dest in sorted({s.event_dest for s in subs}):
        verdict = await check_resolved(dest, policy)
        if not verdict.ok:
            reason = ("cannot be resolved by the bridge (FAQ: configure DNS or use an IP)"
                      if verdict.reason == "unresolvable" else f"refused by the URL policy: {verdict.message}")
            checks.append(Check(f"Can the bridge reach {dest}?", "fail", reason))
            continue
        ok, detail = await _reachable(dest)
        breaker = view.breakers.get(destination_of(dest), {}).get("state", "closed")
        checks.append(Check(f"Can the bridge reach {dest}?", "ok" if ok and breaker != "open" else "fail",
                            f"{detail}; circuit breaker {breaker}"))
    seen = await asyncio.to_thread(_recent_types, settings, set(types), sample_per_partition)
    missing = [t for t in types if seen[t] == 0]
    checks.append(Check("Did the bridge receive these event types recently?", "warn" if missing else "ok",
                        ", ".join(f"{t}: {seen[t]}" for t in types)
                        + (f" (none of {missing} in the last {sample_per_partition} events per partition: "
                           "is the platform subscribed to them with the bridge's /eventRcv?)" if missing else "")))
    outcomes = await asyncio.to_thread(readback.recent_outcomes, settings, partner.id, 200)
    results = Counter(o["result"] for o in outcomes)
    last_failure = next((o for o in outcomes if o["result"] != "delivered"), None)
    checks.append(Check("What did we send and what did the partner answer?",
                        "ok" if outcomes and not last_failure else ("warn" if outcomes else "warn"),
                        (f"last {len(outcomes)} attempts: {dict(results)}"
                         + (f"; latest failure: {last_failure['error']} ({last_failure['detail']})"
                            if last_failure else "")) if outcomes else "no delivery attempts recorded yet"))
    return checks


def _recent_types(settings: Settings, types: set[int], per_partition: int) -> Counter[int]:
    counts: Counter[int] = Counter({t: 0 for t in types})
    topic = topic_table(settings)["events"].name
    for message in readback.scan(settings, topic, tail=per_partition):
        try:
            record = EventRecord.decode(message.value())
        except (ValueError, TypeError, KeyError):
            continue
        if record.event_type in types:
            counts[record.event_type] += 1
    return counts

