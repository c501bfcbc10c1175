"""Every schema parses, documents every field, round-trips, and evolves only compatibly."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CURRENT = sorted(SCHEMAS.glob("*.avsc"))
HISTORY = sorted((SCHEMAS / "history").glob("*.avsc"))


def test_schema_files_exist() -> None:
    assert {p.stem for p in CURRENT} >= {"platform_event", "delivery_outcome", "lifecycle"}
    assert HISTORY, "previous schema versions are kept in schemas/history for the evolution check"


@pytest.mark.parametrize("path", CURRENT, ids=lambda p: p.stem)
def test_every_record_and_field_is_documented(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema.get("doc"), f"{path.name}: the record has no doc"
    for field in schema["fields"]:
        assert field.get("doc"), f"{path.name}: field {field['name']} has no doc"


def _sample(schema: Any) -> Any:
    """A value for any (simple) Avro type, deterministic."""
    if isinstance(schema, list):
        return _sample(next(t for t in schema if t != "null"))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return {f["name"]: _sample(f["type"]) for f in schema["fields"]}
        if kind == "array":
            return [_sample(schema["items"])]
        if kind == "enum":
            return schema["symbols"][0]
        return _sample(kind)
    return {"string": "x", "long": 7, "int": 3, "double": 1.5, "boolean": True, "null": None}[schema]


@pytest.mark.parametrize("path", CURRENT, ids=lambda p: p.stem)
def test_round_trip(path: Path) -> None:
    raw = json.loads(path.read_text())
    schema = fastavro.parse_schema(raw)
    record = _sample(raw)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, schema)
    assert set(decoded) == set(record)


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in schema["fields"]}


@pytest.mark.parametrize("old_path", HISTORY, ids=lambda p: p.stem)
def test_evolution_adds_fields_with_defaults_only(old_path: Path) -> None:
    name = old_path.stem.rsplit(".v", 1)[0]
    old, new = json.loads(old_path.read_text()), json.loads((SCHEMAS / f"{name}.avsc").read_text())
    old_fields, new_fields = _fields(old), _fields(new)
    assert set(old_fields) <= set(new_fields), f"{name}: fields removed: {set(old_fields) - set(new_fields)}"
    for field_name, field in old_fields.items():
        assert new_fields[field_name]["type"] == field["type"], f"{name}.{field_name}: type changed"
    for field_name in set(new_fields) - set(old_fields):
        assert "default" in new_fields[field_name], f"{name}.{field_name}: added without a default"
    # And for real: data written with the old schema reads with the new one, and vice versa.
    record = _sample(old)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), record)
    buffer.seek(0)
    upgraded = fastavro.schemaless_reader(buffer, fastavro.parse_schema(old), fastavro.parse_schema(new))
    assert set(upgraded) == set(new_fields)


def test_evolution_check_catches_a_field_added_without_default(tmp_path: Path) -> None:
    old = json.loads((SCHEMAS / "history" / "platform_event.v1.avsc").read_text())
    bad = json.loads(json.dumps(old))
    bad["fields"].append({"name": "new_field", "type": "string", "doc": "no default"})
    with pytest.raises(Exception):  # noqa: B017 - fastavro's SchemaResolutionError
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), _sample(old))
        buffer.seek(0)
        fastavro.schemaless_reader(buffer, fastavro.parse_schema(old), fastavro.parse_schema(bad))
