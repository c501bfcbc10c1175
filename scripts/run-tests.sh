#!/usr/bin/env bash
# Start a local broker (unless BRIDGE_TEST_BOOTSTRAP names a running one), run every test against
# it, and stop the broker this script started, also when the tests fail.
set -euo pipefail
BIN=${BIN:-.venv/bin}
PORT=${TEST_KAFKA_PORT:-19092}
started=""
if [[ -z "${BRIDGE_TEST_BOOTSTRAP:-}" ]]; then
  if ! "$BIN/event-bridge" kafka status --port "$PORT" >/dev/null 2>&1; then
    "$BIN/event-bridge" kafka start --port "$PORT" --fresh
    started=1
  fi
  export BRIDGE_TEST_BOOTSTRAP="127.0.0.1:$PORT"
fi
cleanup() {
  if [[ -n "$started" ]]; then "$BIN/event-bridge" kafka stop --port "$PORT" || true; fi
}
trap cleanup EXIT
"$BIN/lint-imports"
# -p no:cacheprovider: CI runs from a read-only-ish fresh clone; nothing to cache between runs.
"$BIN/python" -m pytest -p no:cacheprovider "$@"
