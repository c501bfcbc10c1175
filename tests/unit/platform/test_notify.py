"""Unit tests of bridge.platform.notify: lenient, lossless parsing of OnEventNotify pushes."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import InvalidInput
from bridge.platform.notify import (
    MAX_EVENT_ID_LENGTH,
    MAX_EVENTS_PER_PUSH,
    EventError,
    ParseResult,
    PlatformEvent,
    build_push,
    parse_notify,
    parse_time,
)

# The platform examples ship with the package (the simulator uses them); copied from shared/payloads.
PAYLOADS = Path(__file__).resolve().parents[3] / "bridge" / "resources" / "payloads"

CST = timezone(timedelta(hours=8))

# (file, ability, event count, is_linkage of the single event)
PAYLOAD_TABLE = [
    ("acs_card_196883_event_acs.json", "event_acs", 1, False),
    ("video_131330_event_vss_start.json", "event_vss", 1, False),
    ("parking_771760130_entry_event_pms_SYNTHETIC.json", "event_pms", 1, False),
    ("linkage_event_rule_status0_SYNTHETIC.json", "event_rule", 1, True),
    ("linkage_event_rule_status4_update_SYNTHETIC.json", "event_rule", 1, True),
]


def payload_files() -> list[Path]:
    # Raising here fails collection loudly: an empty parameter list would only be skipped.
    files = sorted(PAYLOADS.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no example payloads under {PAYLOADS}")
    return files


def rebuild(result: ParseResult) -> dict[str, Any]:
    notify = result.notify
    return build_push(
        notify.ability, notify.send_time, [e.raw for e in notify.events], notify.params_extra
    )


def event(**fields: Any) -> dict[str, Any]:
    """A minimal valid event, with ``fields`` overriding or adding keys (None removes one)."""
    base: dict[str, Any] = {
        "eventId": "E-1",
        "eventType": 131330,
        "srcIndex": "cam-1",
        "srcType": "camera",
        "status": 0,
        "timeout": 0,
        "happenTime": "2018-08-14T09:49:10.953+08:00",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def push(*events: Any, ability: str = "event_vss", **params: Any) -> dict[str, Any]:
    return {
        "method": "OnEventNotify",
        "params": {
            "ability": ability,
            "sendTime": "2018-08-14T09:49:10.954+08:00",
            **params,
            "events": list(events),
        },
    }


# iSC 1.x event_rule push (spec §3.3, §3.5 "event_rule legacy"; reconstructed, not a file): a raw
# 131588 field-detection event under ability event_rule, with old-style times and no linkage fields.
ISC1_EVENT_RULE_RAW = {
    "method": "OnEventNotify",
    "params": {
        "ability": "event_rule",
        "sendTime": "2019-03-13 17:38:35",
        "uids": "",
        "events": [
            {
                "eventId": "0B7A8D54-1F2E-4C3B-9A8D-7E6F5A4B3C2D",
                "eventType": 131588,
                "happenTime": "2019-03-13 17:38:34",
                "srcIndex": "a1b2c3d4e5f64789a0b1c2d3e4f5a6b7",
                "srcName": "Fence-Cam02",
                "srcParentIdex": "f0e1d2c3b4a54968877665544332211",
                "srcType": "camera",
                "status": 0,
                "timeout": 0,
                "data": {
                    "channelID": 1,
                    "dataType": "behavioralAnalysis",
                    "eventType": "fielddetection",
                    "ipAddress": "10.10.20.32",
                    "portNo": 80,
                    "recvTime": "2019-03-13T17:38:34.512+08:00",
                    "sendTime": "2019-03-13T17:38:34.540+08:00",
                    "fielddetection": [
                        {
                            "targetAttrs": {
                                "cameraIndexCode": "a1b2c3d4e5f64789a0b1c2d3e4f5a6b7",
                                "channelName": "Fence-Cam02",
                                "deviceIndexCode": "f0e1d2c3b4a54968877665544332211",
                            }
                        }
                    ],
                },
            }
        ],
    },
}


# --- example payloads ------------------------------------------------------------------------


def test_payload_directory_holds_the_documented_examples() -> None:
    names = {path.name for path in payload_files()}
    assert {row[0] for row in PAYLOAD_TABLE} <= names


@pytest.mark.parametrize("path", payload_files(), ids=lambda path: path.name)
def test_every_payload_parses_and_round_trips_losslessly(path: Path) -> None:
    original = json.loads(path.read_bytes())

    result = parse_notify(path.read_bytes())

    assert result.errors == ()
    assert len(result.valid) == len(original["params"]["events"])
    assert result.notify.events == result.valid
    assert rebuild(result) == original
    # The push a partner receives serialises to the same JSON value.
    assert json.loads(json.dumps(rebuild(result), ensure_ascii=False)) == original


@pytest.mark.parametrize(("name", "ability", "count", "linkage"), PAYLOAD_TABLE)
def test_payload_ability_count_and_classification(
    name: str, ability: str, count: int, linkage: bool
) -> None:
    result = parse_notify((PAYLOADS / name).read_text(encoding="utf-8"))

    assert result.notify.ability == ability
    assert len(result.valid) == count
    assert [e.is_linkage(ability) for e in result.valid] == [linkage] * count


def test_acs_payload_typed_fields() -> None:
    result = parse_notify((PAYLOADS / "acs_card_196883_event_acs.json").read_bytes())

    (acs,) = result.valid
    assert acs.event_id == "8E2C1F0A5B7D4C3E9A1B2C3D4E5F6071"
    assert acs.event_type == 196883
    assert acs.status == 0
    assert acs.src_index == "5a1c0e7b2f9d4e6a8b3c1d2e3f4a5b6c"
    assert acs.src_type == "door"
    assert acs.event_lvl is None
    assert acs.happen_time == "2019-05-23T09:51:09.000+08:00"
    assert acs.raw["data"]["ExtEventCode"] == 196883
    assert result.notify.send_time == "2019-05-23T09:51:05.000+08:00"
    assert result.notify.params_extra == {}
    assert result.notify.envelope_extra == {}


def test_linkage_status4_payload_keeps_event_level_and_result() -> None:
    result = parse_notify(
        (PAYLOADS / "linkage_event_rule_status4_update_SYNTHETIC.json").read_bytes()
    )

    (update,) = result.valid
    assert (update.status, update.event_lvl, update.src_type) == (4, 2, "eventRule")
    assert update.raw["linkageResult"][0]["picUrls"] == [
        "http://10.10.20.5:6120/pic?linkage-snapshot-1"
    ]


def test_utf8_bytes_str_and_decoded_objects_parse_alike() -> None:
    path = PAYLOADS / "parking_771760130_entry_event_pms_SYNTHETIC.json"
    data = path.read_bytes()

    from_bytes = parse_notify(data)

    assert from_bytes == parse_notify(data.decode("utf-8"))
    assert from_bytes == parse_notify(json.loads(data))
    assert from_bytes == parse_notify(bytearray(data))
    assert from_bytes.valid[0].raw["data"]["plateNo"] == "浙A12345"


# --- time formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-05-23T09:51:05.000+08:00", datetime(2019, 5, 23, 9, 51, 5, tzinfo=CST)),
        ("2019-05-23T09:51:05+08:00", datetime(2019, 5, 23, 9, 51, 5, tzinfo=CST)),
        ("2019-05-23T01:51:05.250Z", datetime(2019, 5, 23, 1, 51, 5, 250000, tzinfo=timezone.utc)),
        ("2019-05-23T01:51:05Z", datetime(2019, 5, 23, 1, 51, 5, tzinfo=timezone.utc)),
        ("2018-08-15T 15:53:47.000+08:00", datetime(2018, 8, 15, 15, 53, 47, tzinfo=CST)),
        ("2019-05-23T09:51:05.000+0800", datetime(2019, 5, 23, 9, 51, 5, tzinfo=CST)),
        ("2019-05-23T09:51:05+08", datetime(2019, 5, 23, 9, 51, 5, tzinfo=CST)),
        (
            "2019-05-23T09:51:05-05:30",
            datetime(2019, 5, 23, 9, 51, 5, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("2019-03-13 17:38:34", datetime(2019, 3, 13, 17, 38, 34)),
        ("2019-03-13 17:38:34.123", datetime(2019, 3, 13, 17, 38, 34, 123000)),
        ("2019-03-13T17:38:34.123456789+08:00", datetime(2019, 3, 13, 17, 38, 34, 123456, CST)),
        ("2019-03-13t17:38:34z", datetime(2019, 3, 13, 17, 38, 34, tzinfo=timezone.utc)),
    ],
)
def test_parse_time_accepts_platform_formats(text: str, expected: datetime) -> None:
    parsed = parse_time(text)

    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text", ["2019-03-13 17:38:34", "2019-03-13 17:38:34.123", "2019-03-13T17:38:34"]
)
def test_parse_time_does_not_invent_a_zone(text: str) -> None:
    assert parse_time(text).tzinfo is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2019-05-23",
        "17:38:34",
        "2019-05-23T09:51",
        "2019-5-23 09:51:05",
        "2019-05-23  09:51:05",
        "2019-05-23T09:51:05.+08:00",
        "2019-05-23T09:51:05+8:00",
        "2019-05-23T09:51:05+24:00",
        "2019-05-23T09:51:05+08:60",
        "2019-02-30 10:00:00",
        "2019-13-01 10:00:00",
        "2019-05-23 24:00:00",
        "0000-01-01 00:00:00",
        " 2019-05-23 09:51:05",
        "2019-05-23 09:51:05\n",
        "2019-05-23 09:51:05 CST",
        "١٢٣٤-05-23 09:51:05",  # Arabic-Indic digits: int() would take them
        "1558576265810791",
    ],
)
def test_parse_time_refuses_other_text_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="unrecognised time") as caught:
        parse_time(text)
    assert repr(text) in str(caught.value)


@settings(max_examples=300)
@given(st.text())
def test_parse_time_raises_only_value_error(text: str) -> None:
    try:
        parse_time(text)
    except ValueError:
        pass


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=200)
@given(st.datetimes(timezones=st.none() | offsets), st.sampled_from(["T", " ", "T "]))
def test_parse_time_reads_back_what_isoformat_writes(moment: datetime, separator: str) -> None:
    text = moment.isoformat(timespec="microseconds").replace("T", separator)

    parsed = parse_time(text)

    # Compare wall time and offset: comparing aware datetimes near year 1 can overflow.
    assert parsed.replace(tzinfo=None) == moment.replace(tzinfo=None)
    assert parsed.utcoffset() == moment.utcoffset()


# --- lenient parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "time_text",
    [
        "2019-05-23T09:51:05.000+08:00",
        "2019-05-23T09:51:05+08:00",
        "2019-05-23T01:51:05Z",
        "2018-08-15T 15:53:47.000+08:00",
        "2019-03-13 17:38:34",
        "2019-03-13 17:38:34.123",
        "2019-05-23T09:51:05.000+0800",
        "not a time at all",
    ],
)
def test_times_are_kept_verbatim_and_never_reject_an_event(time_text: str) -> None:
    body = push(event(happenTime=time_text))
    body["params"]["sendTime"] = time_text

    result = parse_notify(body)

    assert result.errors == ()
    assert result.notify.send_time == time_text
    assert result.valid[0].happen_time == time_text
    assert rebuild(result) == body


def test_misspelled_src_parent_idex_is_kept_in_raw() -> None:
    result = parse_notify(ISC1_EVENT_RULE_RAW)

    (raw_event,) = result.valid
    assert raw_event.raw["srcParentIdex"] == "f0e1d2c3b4a54968877665544332211"
    assert "srcParentIndex" not in raw_event.raw
    assert rebuild(result) == ISC1_EVENT_RULE_RAW


def test_event_without_data_is_valid() -> None:
    body = push(event())

    result = parse_notify(body)

    assert len(result.valid) == 1
    assert "data" not in result.valid[0].raw
    assert rebuild(result) == body


def test_extra_params_fields_are_kept_in_order() -> None:
    body = push(event(), ability="event_veh", uids="", dataProcInterval=5, vendorHint={"a": [1]})

    result = parse_notify(body)

    assert result.notify.params_extra == {
        "uids": "",
        "dataProcInterval": 5,
        "vendorHint": {"a": [1]},
    }
    assert list(result.notify.params_extra) == ["uids", "dataProcInterval", "vendorHint"]
    assert rebuild(result) == body
    assert list(rebuild(result)["params"]) == list(body["params"])


def test_extra_top_level_fields_are_kept() -> None:
    body = {**push(event()), "traceId": "t-1", "version": 2}

    result = parse_notify(body)

    assert result.notify.envelope_extra == {"traceId": "t-1", "version": 2}


@pytest.mark.parametrize("ability", ["event_frs", "event_xyz", "event_veh", ""])
def test_any_ability_is_accepted(ability: str) -> None:
    result = parse_notify(push(event(), ability=ability))

    assert result.notify.ability == ability
    assert len(result.valid) == 1


def test_unknown_event_fields_are_kept_in_raw() -> None:
    body = push(event(futureField={"nested": [1, None, "x"]}, eventOldId="E-0", remark=None))

    result = parse_notify(body)

    assert result.valid[0].raw["futureField"] == {"nested": [1, None, "x"]}
    assert result.valid[0].raw["eventOldId"] == "E-0"
    assert rebuild(result) == body


def test_integer_strings_are_accepted_and_stored_as_int() -> None:
    result = parse_notify(push(event(eventType="196883", status="1", eventLvl="2")))

    (parsed,) = result.valid
    assert (parsed.event_type, parsed.status, parsed.event_lvl) == (196883, 1, 2)
    assert parsed.raw["eventType"] == "196883"  # the partner still gets what was sent


def test_missing_or_null_optional_fields() -> None:
    result = parse_notify(
        push(
            event(srcIndex=None, srcType=None, happenTime=None),
            event(eventId="E-2", eventLvl=None),
        )
    )

    first, second = result.valid
    assert (first.src_index, first.src_type, first.happen_time) == ("", None, None)
    assert second.event_lvl is None


def test_null_src_index_and_event_lvl_mean_absent() -> None:
    result = parse_notify(push({**event(), "srcIndex": None, "eventLvl": None}))

    assert result.errors == ()
    assert (result.valid[0].src_index, result.valid[0].event_lvl) == ("", None)


def test_descriptive_fields_of_another_type_become_none_but_stay_in_raw() -> None:
    result = parse_notify(push(event(srcType=7, happenTime=1558576265810)))

    (parsed,) = result.valid
    assert (parsed.src_type, parsed.happen_time) == (None, None)
    assert (parsed.raw["srcType"], parsed.raw["happenTime"]) == (7, 1558576265810)


@pytest.mark.parametrize("send_time", [None, 1558576265810])
def test_non_string_send_time_survives_the_round_trip(send_time: Any) -> None:
    body = push(event())
    body["params"]["sendTime"] = send_time

    result = parse_notify(body)

    assert result.notify.send_time is None
    assert result.notify.params_extra == {"sendTime": send_time}
    assert rebuild(result) == body


def test_missing_send_time() -> None:
    body = push(event())
    del body["params"]["sendTime"]

    result = parse_notify(body)

    assert result.notify.send_time is None
    assert rebuild(result) == body


def test_empty_event_list_is_a_valid_push() -> None:
    result = parse_notify(push())

    assert (result.valid, result.errors) == ((), ())
    assert rebuild(result) == push()


def test_more_than_the_documented_maximum_is_accepted() -> None:
    count = MAX_EVENTS_PER_PUSH + 7
    body = push(*(event(eventId=f"E-{i}") for i in range(count)))

    result = parse_notify(body)

    assert len(result.valid) == count
    assert [e.event_id for e in result.valid] == [f"E-{i}" for i in range(count)]


def test_event_id_length_limit() -> None:
    longest = "x" * MAX_EVENT_ID_LENGTH
    result = parse_notify(push(event(eventId=longest), event(eventId=longest + "x")))

    assert [e.event_id for e in result.valid] == [longest]
    assert [(e.index, e.field) for e in result.errors] == [(1, "params.events[1].eventId")]
    assert str(MAX_EVENT_ID_LENGTH) in result.errors[0].message


def test_events_are_frozen_and_hashable() -> None:
    (parsed,) = parse_notify(push(event())).valid

    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.status = 1  # type: ignore[misc]
    assert hash(parsed) == hash(parse_notify(push(event())).valid[0])


# --- linkage classification --------------------------------------------------------------------


def only_event(body: dict[str, Any]) -> tuple[PlatformEvent, str]:
    result = parse_notify(body)
    assert result.errors == ()
    (parsed,) = result.valid
    return parsed, result.notify.ability


@pytest.mark.parametrize(
    ("body", "linkage"),
    [
        pytest.param(ISC1_EVENT_RULE_RAW, False, id="isc1-event_rule-raw-fielddetection"),
        pytest.param(push(event(), ability="event_rule"), False, id="event_rule-without-markers"),
        pytest.param(push(event(srcType="eventRule")), True, id="srcType-eventRule-any-ability"),
        pytest.param(
            push(event(eventName="Gate East"), ability="event_rule"),
            True,
            id="event_rule-eventName",
        ),
        pytest.param(
            push(event(linkageAcion=[{"action": "snapshot"}]), ability="event_rule"),
            True,
            id="event_rule-misspelled-linkageAcion",
        ),
        pytest.param(
            push(event(data={"eventDetails": [{"eventType": 131588}]}), ability="event_rule"),
            True,
            id="event_rule-marker-inside-data",
        ),
        pytest.param(
            push(event(ruleDescription="fence rule"), ability="event_rule"),
            True,
            id="event_rule-ruleDescription",
        ),
        pytest.param(
            push(event(eventName="", linkageResult=[], eventDetails=None), ability="event_rule"),
            False,
            id="event_rule-empty-markers-only",
        ),
        pytest.param(
            push(event(status=4, data={"linkageResult": [{"result": 0}]})),
            True,
            id="status4-linkageResult-in-data-any-ability",
        ),
        pytest.param(
            push(event(status=0, linkageResult=[{"result": 0}])),
            False,
            id="status0-linkageResult-outside-event_rule",
        ),
        pytest.param(push(event(status=4)), False, id="status4-without-linkageResult"),
        pytest.param(
            push(event(eventName="Gate East"), ability="event_vss"),
            False,
            id="marker-outside-event_rule",
        ),
    ],
)
def test_linkage_classification(body: dict[str, Any], linkage: bool) -> None:
    parsed, ability = only_event(body)

    assert parsed.is_linkage(ability) is linkage


# --- envelope errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"{not json", "body", id="not-json"),
        pytest.param(b"\xff\xfe\xfd", "body", id="not-text"),
        pytest.param("", "body", id="empty"),
        pytest.param('{"method": NaN}', "body", id="nan-is-not-json"),
        pytest.param(b"[1, 2]", "body", id="json-array"),
        pytest.param([push(event())], "body", id="decoded-list"),
        pytest.param("null", "body", id="json-null"),
        pytest.param({"params": {"ability": "x", "events": []}}, "method", id="method-missing"),
        pytest.param(
            {"method": "OnAlarmNotify", "params": {"ability": "x", "events": []}},
            "method",
            id="wrong-method",
        ),
        pytest.param({"method": "OnEventNotify"}, "params", id="params-missing"),
        pytest.param({"method": "OnEventNotify", "params": []}, "params", id="params-array"),
        pytest.param(
            {"method": "OnEventNotify", "params": {"ability": "x"}},
            "params.events",
            id="events-missing",
        ),
        pytest.param(
            {"method": "OnEventNotify", "params": {"ability": "x", "events": {"0": {}}}},
            "params.events",
            id="events-object",
        ),
        pytest.param(
            {"method": "OnEventNotify", "params": {"events": []}},
            "params.ability",
            id="ability-missing",
        ),
        pytest.param(
            {"method": "OnEventNotify", "params": {"ability": 1, "events": []}},
            "params.ability",
            id="ability-not-string",
        ),
    ],
)
def test_unusable_envelope_raises_invalid_input_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_notify(body)

    assert caught.value.field == field


def test_invalid_json_bytes_are_reported_as_body() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON") as caught:
        parse_notify(b'{"method": "OnEventNotify", ')

    assert caught.value.field == "body"


# --- per-event errors --------------------------------------------------------------------------


def test_bad_events_are_reported_while_the_others_stay_valid() -> None:
    body = push(
        event(eventId="ok-0"),
        event(eventId="bad-type-text", eventType="abc"),
        event(eventId="bad-type-bool", eventType=True),
        event(eventId="no-status", status=None),
        event(eventId=None),
        event(eventId=""),
        event(eventId=12345),
        "not an event",
        event(eventId="ok-8", status=2),
        event(eventId="bad-status-range", status=16),
        event(eventId="bad-lvl", eventLvl="high"),
        event(eventId="bad-src", srcIndex=["cam"]),
        event(eventId="   "),
    )

    result = parse_notify(body)

    assert [e.event_id for e in result.valid] == ["ok-0", "ok-8"]
    assert [(e.index, e.field) for e in result.errors] == [
        (1, "params.events[1].eventType"),
        (2, "params.events[2].eventType"),
        (3, "params.events[3].status"),
        (4, "params.events[4].eventId"),
        (5, "params.events[5].eventId"),
        (6, "params.events[6].eventId"),
        (7, "params.events[7]"),
        (9, "params.events[9].status"),
        (10, "params.events[10].eventLvl"),
        (11, "params.events[11].srcIndex"),
        (12, "params.events[12].eventId"),
    ]
    messages = {e.index: e.message for e in result.errors}
    assert "'abc'" in messages[1]
    assert "True" in messages[2]
    assert "missing" in messages[3]
    assert "missing" in messages[4]
    assert "12345" in messages[6]
    assert "string" in messages[7]


def test_every_problem_of_one_event_is_reported() -> None:
    result = parse_notify(push({"eventType": "x", "status": -1, "srcIndex": 3}))

    assert result.valid == ()
    assert [e.field for e in result.errors] == [
        "params.events[0].eventId",
        "params.events[0].eventType",
        "params.events[0].status",
        "params.events[0].srcIndex",
    ]
    assert {e.index for e in result.errors} == {0}


@pytest.mark.parametrize(
    "event_type", [1.5, 196883.0, "196 883", " 196883", "0x3012", "1_000", "", [1], None]
)
def test_event_type_must_be_an_integer(event_type: Any) -> None:
    result = parse_notify(push(event(eventType=event_type)))  # None: the key is left out

    assert result.valid == ()
    assert result.errors == (
        EventError(0, "params.events[0].eventType", result.errors[0].message),
    )


# --- build_push --------------------------------------------------------------------------------


def test_build_push_key_order_and_verbatim_events() -> None:
    events = [event(eventId="E-1"), event(eventId="E-2", unknown=1)]

    extra = {"uids": "", "dataProcInterval": 5}

    built = build_push("event_veh", "2019-03-13 17:38:35", events, extra)

    assert list(built) == ["method", "params"]
    assert built["method"] == "OnEventNotify"
    assert list(built["params"]) == ["ability", "sendTime", "uids", "dataProcInterval", "events"]
    assert built["params"]["events"] == events
    assert all(a is b for a, b in zip(built["params"]["events"], events, strict=True))


def test_build_push_omits_send_time_when_none() -> None:
    built = build_push("event_acs", None, [])

    assert built == {"method": "OnEventNotify", "params": {"ability": "event_acs", "events": []}}


@pytest.mark.parametrize(
    ("send_time", "extra"),
    [
        (None, {"ability": "other"}),
        (None, {"events": []}),
        ("2019-03-13 17:38:35", {"sendTime": "2020-01-01 00:00:00"}),
    ],
)
def test_build_push_refuses_extra_fields_that_would_overwrite(
    send_time: str | None, extra: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="params_extra"):
        build_push("event_acs", send_time, [], extra)


# --- properties --------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)
# Fully random events are practically never valid, so events are drawn from three pools:
# well-formed required keys, maybe-broken required keys, and any JSON value. Both carry optional
# and linkage keys with arbitrary values.
optional_event_keys = {
    "eventLvl": st.none() | st.integers(0, 3) | st.sampled_from(["2", "high"]),
    "srcIndex": st.text(max_size=8) | st.sampled_from([None, 7]),
    "srcType": st.sampled_from(["camera", "eventRule"]) | json_values,
    **{
        key: json_values
        for key in ("happenTime", "data", "linkageResult", "eventName", "eventDetails")
    },
}
good_ids = st.text(min_size=1, max_size=8).filter(str.strip)
good_types = st.integers(0, 2**31) | st.just("196883")
good_statuses = st.integers(0, 15) | st.just("4")
well_formed_events = st.fixed_dictionaries(
    {"eventId": good_ids, "eventType": good_types, "status": good_statuses},
    optional=optional_event_keys,
)
maybe_broken_events = st.fixed_dictionaries(
    {
        "eventId": good_ids | st.sampled_from(["", " ", 5, None, "x" * 300]),
        "eventType": good_types | st.sampled_from(["abc", True, 1.5, None]),
        "status": good_statuses | st.sampled_from([16, -1, False, None]),
    },
    optional=optional_event_keys,
)
pushes = st.fixed_dictionaries(
    {
        "method": st.just("OnEventNotify"),
        "params": st.fixed_dictionaries(
            {
                "ability": st.sampled_from(["event_rule", "event_acs"]) | st.text(),
                "events": st.lists(
                    well_formed_events | maybe_broken_events | json_values, max_size=6
                ),
            },
            optional={"sendTime": json_values, "uids": json_values},
        ),
    }
)


def check_parse(body: Any) -> ParseResult | None:
    try:
        return parse_notify(body)
    except InvalidInput as exc:
        assert exc.field in {"body", "method", "params", "params.events", "params.ability"}
        return None


@settings(max_examples=300)
@given(json_values | pushes)
def test_parse_notify_raises_only_invalid_input_on_any_json_value(body: Any) -> None:
    result = check_parse(body)
    from_text = check_parse(json.dumps(body))

    assert result == from_text


@settings(max_examples=300)
@given(st.binary())
def test_parse_notify_raises_only_invalid_input_on_any_bytes(body: bytes) -> None:
    check_parse(body)


@settings(max_examples=300)
@given(pushes)
def test_every_event_is_either_valid_or_reported(body: dict[str, Any]) -> None:
    result = parse_notify(body)
    events = body["params"]["events"]

    rejected = {error.index for error in result.errors}
    assert len(result.valid) + len(rejected) == len(events)
    assert [e.raw for e in result.valid] == [
        raw for index, raw in enumerate(events) if index not in rejected
    ]
    for parsed in result.valid:
        parsed.is_linkage(result.notify.ability)  # never raises
    if not result.errors:
        assert rebuild(result) == body


@pytest.mark.parametrize(
    "text",
    [
        # Forms datetime.fromisoformat takes that no platform sends: still refused.
        "20190523T095105",
        "2019-W21-4T09:51:05",
        "2019-05-23T09",
        "2019-05-23x09:51:05",
        "2019-05-23T09:51:05,5",
        "2019-05-23T09:51:05+08:00:30",
        "2019-05-23T09:51:05.1234567890",
    ],
)
def test_parse_time_refuses_iso_forms_the_platform_never_sends(text: str) -> None:
    with pytest.raises(ValueError, match="unrecognised time"):
        parse_time(text)


def test_parse_time_truncates_nanoseconds_rather_than_rounding() -> None:
    assert parse_time("2019-05-23T09:51:05.9999999+08:00").microsecond == 999_999


def _regex_parse_time(value: str) -> datetime | None:
    """The hand-built parser ``parse_time`` replaced (its regex and datetime construction)."""
    import re

    match = re.fullmatch(
        r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})(?:[Tt][ ]?|[ ])"
        r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?"
        r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<off_h>[0-9]{2})(?::?(?P<off_m>[0-9]{2}))?)?", value)
    if match is None:
        return None
    tz: timezone | None = None
    if match["zone"] in ("Z", "z"):
        tz = timezone.utc
    elif match["zone"]:
        hours, minutes = int(match["off_h"]), int(match["off_m"] or 0)
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if match["sign"] == "-" else offset)
    try:
        return datetime(int(match["year"]), int(match["month"]), int(match["day"]), int(match["hour"]),
                        int(match["minute"]), int(match["second"]),
                        int((match["fraction"] or "").ljust(6, "0")[:6]), tzinfo=tz)
    except ValueError:
        return None


_TIME_PARTS = st.tuples(
    st.sampled_from(["2019", "0000", "0001", "9999", "2020", "1970"]), st.sampled_from(["-"]),
    st.sampled_from(["01", "02", "12", "13", "00"]), st.sampled_from(["-"]),
    st.sampled_from(["01", "28", "29", "30", "31", "32"]), st.sampled_from(["T", "t", " ", "T ", "x", "  "]),
    st.sampled_from(["00", "09", "23", "24"]), st.sampled_from([":"]), st.sampled_from(["00", "59", "60"]),
    st.sampled_from([":", ""]), st.sampled_from(["00", "59", "60", ""]),
    st.sampled_from(["", ".", ".0", ".123", ".123456", ".1234567", ".123456789", ".1234567890", ",5"]),
    st.sampled_from(["", "Z", "z", "+08:00", "-05:30", "+0800", "+08", "+8", "+24:00", "+23:59",
                     "+08:60", "+08:00:30", "-00", " CST"]),
)


@settings(max_examples=2000)
@given(_TIME_PARTS)
def test_parse_time_accepts_exactly_what_the_hand_built_parser_did(parts: tuple[str, ...]) -> None:
    text = "".join(parts)
    expected = _regex_parse_time(text)
    try:
        parsed = parse_time(text)
    except ValueError:
        assert expected is None, text
    else:
        assert expected is not None, text
        assert parsed.replace(tzinfo=None) == expected.replace(tzinfo=None), text
        assert parsed.utcoffset() == expected.utcoffset(), text
