"""Parse and rebuild the platform's ``OnEventNotify`` push (artemis-eventservice.md §3).

The platform (Hikvision iSC / HikCentral) POSTs one JSON envelope per push::

    {"method": "OnEventNotify",
     "params": {"ability": "event_acs", "sendTime": "...", "events": [{...}, ...]}}

The bridge is a pass-through: a partner must later receive what the platform sent, unknown
fields and odd spellings (``srcParentIdex``) included. So this module

* keeps every event object verbatim in :attr:`PlatformEvent.raw`, every ``params`` field it does
  not model in :attr:`Notify.params_extra` and every other top-level field in
  :attr:`Notify.envelope_extra`;
* validates only the fields the bridge itself reads, and reports a bad event as an
  :class:`EventError` value instead of raising, so one malformed event never costs the other
  events of the same push (architecture.md §5). Only an unusable envelope raises
  :class:`~bridge.errors.InvalidInput`.

Per-event rules:

* ``eventId``: required, a non-blank string of at most :data:`MAX_EVENT_ID_LENGTH` characters.
* ``eventType``: required integer; a decimal integer string (``"196883"``) is accepted and
  converted. JSON ``true``/``false`` is refused although ``bool`` subclasses ``int``. It must fit
  the Avro ``long`` the feeds carry it in (:data:`EVENT_TYPE_RANGE`).
* ``status``: required integer (same string tolerance) in ``0..``:data:`MAX_STATUS`.
* ``eventLvl``: optional integer (same string tolerance); absent or ``null`` gives ``None``; it
  must fit the Avro ``int`` of the feed (:data:`EVENT_LVL_RANGE`).
* Nesting: the event object may nest at most :data:`MAX_EVENT_DEPTH` levels of objects and
  arrays (the event itself is level 1), and so may ``params`` without ``events``; deeper
  structures are refused per event, so that no stage ever recurses through an unbounded depth.
* ``srcIndex``: a string; absent or ``null`` gives ``""``. The spec calls it required, but dropping
  an event over a missing source id loses data the partner may still want; a value of any other
  type is an error.
* ``srcType`` and ``happenTime``: descriptive only. Exposed when they are strings, ``None``
  otherwise, never an error. ``happenTime`` is kept as sent and not parsed here: the bridge
  forwards it, it does not compute with it (:func:`parse_time` is there for callers that do).

:func:`build_push` is the inverse of :func:`parse_notify`: when every event is valid,
``build_push(n.ability, n.send_time, [e.raw for e in n.events], n.params_extra)`` equals the
received envelope apart from ``envelope_extra``.

Pure logic: no I/O, stdlib only. One module over 400 lines on purpose: parse and rebuild are
inverses of each other and share every field rule above; split, they would drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from bridge.errors import InvalidInput

__all__ = [
    "EVENT_LVL_RANGE",
    "EVENT_TYPE_RANGE",
    "MAX_EVENTS_PER_PUSH",
    "MAX_EVENT_DEPTH",
    "MAX_EVENT_ID_LENGTH",
    "MAX_STATUS",
    "NOTIFY_METHOD",
    "EventError",
    "Notify",
    "ParseResult",
    "PlatformEvent",
    "build_push",
    "parse_notify",
    "parse_time",
]

#: The only ``method`` a push may carry (receivers in the wild reject anything else).
NOTIFY_METHOD = "OnEventNotify"

#: The platform's documented ceiling of events per push (最多50条). Producers of pushes (the
#: simulator, delivery batching) respect it; the parser does not enforce it, because refusing an
#: oversized push would lose events the platform already sent.
MAX_EVENTS_PER_PUSH = 50

#: Longest ``eventId`` accepted. The spec says 64 bytes; four times that leaves room for platforms
#: that exceed it while still refusing garbage that would bloat Kafka keys and dedupe state.
MAX_EVENT_ID_LENGTH = 256

#: Highest ``status`` accepted. Known values are 0-5 and 8; the rest of a nibble is tolerated so
#: that a status added by a newer platform is routed (and filtered by configuration), not lost.
MAX_STATUS = 15

#: ``eventType`` values carried: the Avro ``long`` of the analytics and lifecycle feeds.
EVENT_TYPE_RANGE = (-(2**63), 2**63 - 1)

#: ``eventLvl`` values carried: the Avro ``int`` of the analytics feed.
EVENT_LVL_RANGE = (-(2**31), 2**31 - 1)

#: Deepest nesting of objects and arrays accepted in one event (the event object is level 1) and
#: in ``params`` without ``events``. Real events nest about six levels; the bound keeps every
#: recursive encoder far from Python's recursion limit.
MAX_EVENT_DEPTH = 32

#: The ability under which the platform sends rule and linkage events (§3.1).
LINKAGE_ABILITY = "event_rule"

#: ``srcType`` of an event whose source is a linkage rule rather than a device (§3.2).
LINKAGE_SRC_TYPE = "eventRule"

#: ``status`` of a linkage-result update (§3.2, §3.3).
LINKAGE_UPDATE_STATUS = 4

#: Fields that only linkage events carry (§3.3). ``linkageAcion`` is the platform's own
#: misspelling; both spellings are looked for.
LINKAGE_MARKERS = (
    "eventDetails",
    "linkageResult",
    "linkageAcion",
    "linkageAction",
    "eventName",
    "ruleDescription",
)

# Envelope fields modelled by Notify; everything else in ``params`` lands in params_extra.
_MODELLED_PARAMS = frozenset({"ability", "sendTime", "events"})

# Longest piece of an offending string quoted in an error message, so a megabyte of junk does not
# end up in logs and HTTP problem responses.
_QUOTE_LIMIT = 80


@dataclass(frozen=True, slots=True)
class PlatformEvent:
    """One valid event of a push: the typed fields the bridge reads, plus the object as received."""

    event_id: str
    event_type: int
    status: int
    src_index: str
    src_type: str | None
    event_lvl: int | None
    #: ``happenTime`` exactly as sent; not parsed (see :func:`parse_time`).
    happen_time: str | None
    #: The event object exactly as received: every field, unknown ones included. Shared with the
    #: decoded body rather than copied; treat it as read-only. Left out of the hash because a dict
    #: is unhashable (equality still compares it).
    raw: Mapping[str, Any] = field(hash=False)

    def is_linkage(self, ability: str) -> bool:
        """Tell whether this is a linkage event (subType 1) rather than a raw event (subType 0).

        ``ability`` is the push's ``params.ability``. The event is a linkage event when any of
        these holds:

        1. ``srcType`` is exactly ``"eventRule"`` (the source is a rule, not a device);
        2. ``status`` is 4 (linkage-result update) and the event carries ``linkageResult``;
        3. ``ability`` is exactly ``"event_rule"`` and the event carries at least one of
           ``eventDetails``, ``linkageResult``, ``linkageAcion``, ``linkageAction``,
           ``eventName`` or ``ruleDescription``.

        "Carries" means the key is present, at event level or inside a ``data`` object, with a
        value other than ``null``, ``""``, ``[]`` or ``{}``: serialisers that emit every bean
        field write empty linkage fields on raw events too.

        ``ability == "event_rule"`` alone is not enough: the iSC 1.x ``event_rule`` push carries a
        raw 131588 field-detection event with none of these fields (§3.3), and that is raw.
        """
        if self.src_type == LINKAGE_SRC_TYPE:
            return True
        if self.status == LINKAGE_UPDATE_STATUS and _carries(self.raw, "linkageResult"):
            return True
        if ability != LINKAGE_ABILITY:
            return False
        return any(_carries(self.raw, key) for key in LINKAGE_MARKERS)


@dataclass(frozen=True, slots=True)
class Notify:
    """A usable ``OnEventNotify`` envelope and its valid events."""

    method: str
    ability: str
    #: ``params.sendTime`` as sent when it is a string; otherwise ``None`` and, if the key was
    #: present at all (``null``, a number...), the value stays in :attr:`params_extra` so that
    #: :func:`build_push` reproduces it.
    send_time: str | None
    #: Every ``params`` field other than ability, string sendTime and events (``uids``,
    #: ``dataProcInterval``, unknown ones), verbatim and in their original order.
    params_extra: Mapping[str, Any] = field(hash=False)
    #: Top-level fields other than ``method`` and ``params``, verbatim.
    envelope_extra: Mapping[str, Any] = field(hash=False)
    #: The valid events in push order; the same tuple as :attr:`ParseResult.valid`, kept here so
    #: a Notify alone is a complete, routable push.
    events: tuple[PlatformEvent, ...]


@dataclass(frozen=True, slots=True)
class EventError:
    """Why one event of a push was not accepted. An event may have several."""

    #: Position in ``params.events``.
    index: int
    #: Path of the offending value, e.g. ``params.events[3].eventType``; ``params.events[3]``
    #: when the event itself is not an object.
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Outcome of :func:`parse_notify`: the envelope, the valid events and the rejected ones."""

    #: Always set: an unusable envelope raises InvalidInput instead of returning a result.
    notify: Notify
    valid: tuple[PlatformEvent, ...]
    #: Every problem found, in push order; several entries may share an index.
    errors: tuple[EventError, ...]
    #: ``params.events`` as received, valid and invalid ones (for keeping the rejected ones).
    raw_events: Sequence[Any] = ()


# The shapes the platform sends, checked before the standard library parses: fromisoformat also
# takes date-only, basic (20190523T095105), week and hour-only forms, any separator character,
# offsets with seconds, and normalises an offset of +08:60 to +09:00; none of those is a
# platform's time, so they stay errors.
_TIME_SHAPE = re.compile(
    r"""
    [0-9]{4}-[0-9]{2}-[0-9]{2}
    (?P<sep>[Tt][ ]?|[ ])   # 'T'; the doc samples' 'T ' typo; or a space (yyyy-MM-dd HH:mm:ss)
    [0-9]{2}:[0-9]{2}:[0-9]{2}
    (?:\.[0-9]{1,9})?        # Java may send nanoseconds; fromisoformat truncates to microseconds
    (?P<zone>[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?
    """,
    re.VERBOSE,
)


def parse_time(value: str) -> datetime:
    """Parse a platform time string.

    Accepted, all anchored at both ends:

    * ``2019-05-23T09:51:05.000+08:00`` and the same without fraction;
    * ``Z`` instead of an offset, and offsets written ``+08:00``, ``+0800`` or ``+08``;
    * ``2018-08-15T 15:53:47.000+08:00`` (space after the ``T``, as in the doc samples);
    * ``2019-03-13 17:38:34`` and ``2019-03-13 17:38:34.123`` (older platforms).

    The fraction may have 1 to 9 digits (Java may send nanoseconds); digits past microseconds
    are truncated. ``T`` and ``Z`` may be lower case, as RFC 3339 allows.

    Returns an aware datetime when the string has a zone and a naive one when it has none: the
    platform's zone is not known here, and inventing one would silently shift the time.

    Raises:
        ValueError: naming the value, for anything else (including impossible dates such as
            month 13 and offsets of 24 hours or more).
    """
    match = _TIME_SHAPE.fullmatch(value)
    if match is None:
        _bad_time(value)
    # The quirks fromisoformat does not take: 'T ' and lower-case 't' and 'z'.
    text = value
    if match["sep"] != " ":
        text = f"{value[:10]}T{value[match.end('sep'):]}"
    if match["zone"] == "z":
        text = text[:-1] + "Z"
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # well-formed but impossible: 2019-02-30, 25:00:00, year 0000
        _bad_time(value)


def _bad_time(value: str) -> NoReturn:
    raise ValueError(
        f"unrecognised time {_quote(value)}: expected ISO-8601 such as "
        "'2019-05-23T09:51:05.000+08:00' or 'yyyy-MM-dd HH:mm:ss'"
    )


def parse_notify(body: bytes | bytearray | str | Any, nesting_bound: int | None = None) -> ParseResult:
    """Parse one push body.

    ``body`` is JSON text (``bytes``, ``bytearray`` or ``str``; bytes may be UTF-8, -16 or -32) or
    an already-decoded object. A ``str`` is always taken as JSON text, never as a decoded value.
    Decoded objects are used as they are, not copied.

    ``nesting_bound``: an upper bound, known to the caller, of how deep the body nests (the
    count of ``[`` and ``{`` in its text is one). When it is at most :data:`MAX_EVENT_DEPTH`
    nothing in the body can nest too deeply, and the per-event depth walks are skipped.

    Raises:
        InvalidInput: when the envelope is unusable, with ``field`` naming the culprit:
            ``"body"`` (not JSON, ``NaN``/``Infinity``, or not an object), ``"method"`` (not
            ``"OnEventNotify"``), ``"params"`` (not an object), ``"params.events"`` (missing
            or not an array) or ``"params.ability"`` (missing or not a string).

    Invalid events do not raise: they are reported in :attr:`ParseResult.errors` and the other
    events stay in :attr:`ParseResult.valid`. An empty ``events`` array is a valid push, and more
    than :data:`MAX_EVENTS_PER_PUSH` events are accepted.
    """
    document = _decode(body)
    if not isinstance(document, Mapping):
        raise InvalidInput(f"body must be a JSON object, got {_kind(document)}", "body")

    method = document.get("method")
    if method != NOTIFY_METHOD:
        raise InvalidInput(
            f"method must be {NOTIFY_METHOD!r}, got {_got(document, 'method')}", "method"
        )

    params = document.get("params")
    if not isinstance(params, Mapping):
        raise InvalidInput(
            f"params must be a JSON object, got {_got(document, 'params')}", "params"
        )

    raw_events = params.get("events")
    # A tuple only arrives in an already-decoded body; it is as much an array as a list.
    if not isinstance(raw_events, (list, tuple)):
        raise InvalidInput(
            f"params.events must be a JSON array, got {_got(params, 'events')}", "params.events"
        )

    ability = params.get("ability")
    # Routing and linkage classification key on the ability, so a push without one is unusable.
    if not isinstance(ability, str):
        raise InvalidInput(
            f"params.ability must be a string, got {_got(params, 'ability')}", "params.ability"
        )

    send_time = params.get("sendTime")
    if not isinstance(send_time, str):
        send_time = None
    params_extra = {
        key: value
        for key, value in params.items()
        if key not in _MODELLED_PARAMS or (key == "sendTime" and send_time is None)
    }
    envelope_extra = {
        key: value for key, value in document.items() if key not in ("method", "params")
    }

    # Every event record carries params, so params nested too deeply spoils each event.
    walk = nesting_bound is None or nesting_bound > MAX_EVENT_DEPTH
    params_too_deep = walk and _deeper_than(params_extra, MAX_EVENT_DEPTH)
    valid: list[PlatformEvent] = []
    errors: list[EventError] = []
    for index, raw in enumerate(raw_events):
        parsed = _parse_event(index, raw, walk)
        if params_too_deep:
            problem = EventError(index, "params", f"params nests deeper than {MAX_EVENT_DEPTH} levels")
            parsed = [*([] if isinstance(parsed, PlatformEvent) else parsed), problem]
        if isinstance(parsed, PlatformEvent):
            valid.append(parsed)
        else:
            errors.extend(parsed)

    events = tuple(valid)
    notify = Notify(
        method=NOTIFY_METHOD,
        ability=ability,
        send_time=send_time,
        params_extra=params_extra,
        envelope_extra=envelope_extra,
        events=events,
    )
    return ParseResult(notify=notify, valid=events, errors=tuple(errors), raw_events=raw_events)


def build_push(
    ability: str,
    send_time: str | None,
    events: Sequence[Mapping[str, Any]],
    params_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Rebuild the ``OnEventNotify`` envelope a partner receives from the platform.

    Key order follows the platform's: ``method`` then ``params``; inside ``params``: ``ability``,
    ``sendTime`` (left out when ``None``), the ``params_extra`` fields in their order, and
    ``events`` last. The event objects are placed as given, neither copied nor changed.

    Raises:
        ValueError: when ``params_extra`` holds ``ability`` or ``events``, or holds ``sendTime``
            while ``send_time`` is given: one of the two would silently overwrite the other.
    """
    extra = dict(params_extra or {})
    reserved = {"ability", "events"} if send_time is None else _MODELLED_PARAMS
    clashing = sorted(extra.keys() & reserved)
    if clashing:
        raise ValueError(f"params_extra must not contain {', '.join(clashing)}")
    params: dict[str, Any] = {"ability": ability}
    if send_time is not None:
        params["sendTime"] = send_time
    params.update(extra)
    params["events"] = list(events)
    return {"method": NOTIFY_METHOD, "params": params}


def _decode(body: object) -> object:
    """JSON text to a value; anything else is taken as already decoded."""
    if not isinstance(body, (bytes, bytearray, str)):
        return body
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    # JSONDecodeError and UnicodeDecodeError are ValueErrors, as is the int-digit limit;
    # RecursionError comes from absurdly deep nesting.
    except ValueError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", "body") from exc
    except RecursionError as exc:
        raise InvalidInput(
            "body nests deeper than the JSON decoder takes (about 900 levels); an event may nest "
            f"at most {MAX_EVENT_DEPTH} levels", "body") from exc


def _refuse_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity, but they are not JSON: forwarding them would hand
    # partners a body their parsers reject.
    raise ValueError(f"{name} is not a JSON value")


def _parse_event(index: int, raw: object, walk: bool = True) -> PlatformEvent | list[EventError]:
    """Validate one event; return it typed, or every problem found in it (``walk``: whether
    its depth may exceed the bound and must be measured)."""
    where = f"params.events[{index}]"
    if not isinstance(raw, Mapping):
        return [EventError(index, where, f"event must be a JSON object, got {_kind(raw)}")]

    errors: list[EventError] = []

    def fail(key: str, problem: str) -> None:
        got = "it is missing" if key not in raw else f"got {_quote(raw[key])}"
        errors.append(EventError(index, f"{where}.{key}", f"{key} {problem}, {got}"))

    event_id = raw.get("eventId")
    if not isinstance(event_id, str) or not event_id.strip():
        fail("eventId", "must be a non-blank string")
    elif len(event_id) > MAX_EVENT_ID_LENGTH:
        errors.append(
            EventError(
                index,
                f"{where}.eventId",
                f"eventId must be at most {MAX_EVENT_ID_LENGTH} characters, "
                f"got {len(event_id)}",
            )
        )

    event_type = _as_int(raw.get("eventType"))
    if event_type is None:
        fail("eventType", "must be an integer")
    elif not EVENT_TYPE_RANGE[0] <= event_type <= EVENT_TYPE_RANGE[1]:
        fail("eventType", "must fit a 64-bit signed integer")
        event_type = None

    status = _as_int(raw.get("status"))
    if status is None or not 0 <= status <= MAX_STATUS:
        fail("status", f"must be an integer from 0 to {MAX_STATUS}")

    event_lvl: int | None = None
    if raw.get("eventLvl") is not None:
        event_lvl = _as_int(raw["eventLvl"])
        if event_lvl is None:
            fail("eventLvl", "must be an integer when present")
        elif not EVENT_LVL_RANGE[0] <= event_lvl <= EVENT_LVL_RANGE[1]:
            fail("eventLvl", "must fit a 32-bit signed integer when present")

    src_index = raw.get("srcIndex")
    if src_index is None:
        src_index = ""
    elif not isinstance(src_index, str):
        fail("srcIndex", "must be a string when present")

    if walk and _deeper_than(raw, MAX_EVENT_DEPTH):
        errors.append(EventError(index, where, f"event nests deeper than {MAX_EVENT_DEPTH} levels"))

    if errors:
        return errors
    # The checks above guarantee these; the asserts tell the type checker.
    assert isinstance(event_id, str) and isinstance(src_index, str)
    assert event_type is not None and status is not None
    return PlatformEvent(
        event_id=event_id,
        event_type=event_type,
        status=status,
        src_index=src_index,
        src_type=_str_or_none(raw.get("srcType")),
        event_lvl=event_lvl,
        happen_time=_str_or_none(raw.get("happenTime")),
        raw=raw,
    )


_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _as_int(value: object) -> int | None:
    """``value`` as an int, or ``None`` when it is not one.

    Decimal integer strings are accepted because some integrations serialise codes as strings.
    ``bool`` is refused although it subclasses ``int``: ``true`` is no event type. Floats are
    refused too: a real platform sends integers, and ``1.5`` has no meaning as a code.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)  # normalise int subclasses (IntEnum and the like)
    # The explicit pattern keeps int()'s extras out: whitespace, '_' separators, non-ASCII digits.
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        try:
            return int(value)
        except ValueError:  # longer than sys.get_int_max_str_digits()
            return None
    return None


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels (iteratively: the
    value may be nested far beyond the recursion limit)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item
        for child in children:  # type: ignore[union-attr]
            # Most values are scalars: the exact type test skips the slower ABC check for them.
            if type(child) not in _SCALARS and isinstance(child, (Mapping, list, tuple)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _carries(raw: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` has a non-empty value at event level or inside a ``data`` object."""
    data = raw.get("data")
    places = (raw, data) if isinstance(data, Mapping) else (raw,)
    return any(_non_empty(place.get(key)) for place in places)


def _non_empty(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value) > 0
    return True


def _got(container: Mapping[str, Any], key: str) -> str:
    """What was found under ``key``, for messages: ``nothing`` when the key is absent."""
    return _quote(container[key]) if key in container else "nothing"


def _kind(value: object) -> str:
    """JSON-ish name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _quote(value: object) -> str:
    """A short, safe rendering of ``value`` for messages.

    Only scalars are quoted. Containers are named by kind: their repr may be huge or nested deeper
    than the recursion limit, and ``repr`` of an int beyond the digit limit raises.
    """
    if isinstance(value, str):
        text = repr(value[:_QUOTE_LIMIT])
        return text if len(value) <= _QUOTE_LIMIT else text + "..."
    if value is None or isinstance(value, (bool, float)):
        return "null" if value is None else repr(value)
    if isinstance(value, int):
        try:
            return repr(value)
        except ValueError:
            return "a very long number"
    return _kind(value)
