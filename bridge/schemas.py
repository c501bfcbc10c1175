"""Avro schemas of the records whose shape the bridge owns (``schemas/*.avsc``), loaded once.

Records are written schemaless (fastavro) with the schema's fingerprint in the
``bridge-schema`` header, so any Avro reader with the ``.avsc`` files can decode them.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_HEADER = "bridge-schema"


def schema_dir() -> Path:
    # Installed wheels carry the schemas as package data; a source checkout has them at the top.
    packaged = Path(str(resources.files("bridge") / "resources" / "schemas"))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "schemas"


@lru_cache(maxsize=None)
def load(name: str) -> Any:
    """The parsed schema ``schemas/<name>.avsc``."""
    return fastavro.parse_schema(json.loads((schema_dir() / f"{name}.avsc").read_text()))


@lru_cache(maxsize=None)
def schema_fingerprint(name: str) -> str:
    return f"{name}@{fingerprint(to_parsing_canonical_form(load(name)), 'CRC-64-AVRO')}"


def encode(name: str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, load(name), record)
    return out.getvalue()


def decode(name: str, data: bytes) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(data), load(name))  # type: ignore[return-value]
