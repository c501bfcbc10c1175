"""Summaries of py-spy profiles (``py-spy record --format raw``) for the report.

``python -m bench --profile`` records the delivery worker (and in 2 the api) with py-spy during scenarios 1-3 (py-spy
is not a project dependency: ``pip install py-spy``); ``python -m bench.profile RAW`` prints the
summary of one raw file. Committed summaries live in ``bench/profiles/`` and the report includes
them.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "profiles"

#: Where the worker's samples go, by the first matching frame (checked innermost first).
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("PartnerSender", "delivery: HTTP POST to the partner (sender.py)"),
    ("DeliveryTask.encode", "routing: DeliveryTask encoding (json)"),
    ("encode_tasks", "routing: DeliveryTask encoding (json)"),
    ("DeliveryTask.decode", "delivery: DeliveryTask.decode"),
    ("encode_outcome", "delivery: outcome record encoding (Avro)"),
    ("AsyncProducer", "Kafka writes (confluent-kafka producer + its poll thread)"),
    ("TransactionalLoop", "routing and analytics loops (consume, transactions, commits)"),
    ("Router.process", "routing (matching, correlation, tasks)"),
    ("Dispatcher", "delivery loop (dispatch, settle, offsets, consumer calls)"),
    ("DeliveryConsumer", "delivery loop (dispatch, settle, offsets, consumer calls)"),
    ("RegistryView._run", "registry view thread"),
    ("bridge/ingest.py", "api: ingest (envelope checks, records)"),
    ("bridge/api/", "api: bridge endpoints (signature, nonce, routing of requests)"),
    ("bridge/nonces.py", "api: nonce store"),
    ("_worker (concurrent/futures/thread.py", "consumer/executor threads (confluent-kafka calls)"),
    ("EpollSelector.select", "event loop waiting (select)"),
    # Stacks py-spy could not unwind up to a bridge frame:
    ("_asdict_inner", "routing: DeliveryTask encoding (json)"),
    ("starlette/", "api: ASGI framework (starlette/FastAPI)"),
    ("fastapi/", "api: ASGI framework (starlette/FastAPI)"),
    ("uvicorn/", "api: HTTP server (uvicorn, h11/httptools)"),
    ("pydantic", "api: validation (pydantic)"),
    ("aiohttp/", "delivery: HTTP POST to the partner (sender.py)"),
    ("httpx", "delivery: HTTP POST to the partner (sender.py)"),
    ("_read_ready", "event loop I/O callbacks"),
    ("Handle._run", "event loop callbacks (call_soon_threadsafe wake-ups, task steps)"),
)


def _strip(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def summarize(raw: Path, top: int = 12) -> str:
    """A markdown summary: samples by component, and the hottest functions (self time)."""
    by_component: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_strip(f) for f in stack.split(";")]
        self_time[frames[-1]] += n
        joined = ";".join(frames)
        for needle, component in COMPONENTS:
            if needle in joined:
                by_component[component] += n
                break
        else:
            by_component["other"] += n
    if not total:
        return "_(empty profile)_\n"
    lines = [f"{total:,} samples (py-spy, 50 Hz, all threads, idle excluded).", "",
             "| share | where the samples are (each stack counted once, under the first rule of `bench.profile.COMPONENTS` it matches) |", "|---:|---|"]
    for component, n in by_component.most_common():
        lines.append(f"| {100 * n / total:.1f} % | {component} |")
    lines += ["", "| self | hottest functions |", "|---:|---|"]
    for frame, n in self_time.most_common(top):
        lines.append(f"| {100 * n / total:.1f} % | `{frame}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print("usage: python -m bench.profile RAW [TOP]")
        return 2
    print(summarize(Path(args[0]), int(args[1]) if len(args) > 1 else 12))
    return 0


if __name__ == "__main__":
    sys.exit(main())
