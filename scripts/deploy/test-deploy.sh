#!/usr/bin/env bash
# `make test-deploy`: the chart, the alert rules, the image and the compose stack, for real.
# Installs what it needs (scripts/deploy/tools.sh), starts dockerd if none runs, and takes
# everything it started down at the end, also on failure. Idempotent; images and tools are cached.
set -euo pipefail
cd "$(dirname "$0")/../.."
started_at=$(date +%s)
BIN=${BIN:-.venv/bin}
TOOLS="${TOOLS_DIR:-$HOME/.cache/event-bridge/tools}"
export BASE_IMAGE="${BASE_IMAGE:-event-bridge-base:bookworm}"
export KAFKA_IMAGE="${KAFKA_IMAGE:-apache/kafka:4.1.1}"
export BRIDGE_IMAGE="${BRIDGE_IMAGE:-event-bridge:test-deploy}"
export API_PORT="${TEST_DEPLOY_API_PORT:-19480}" RECEIVER_PORT="${TEST_DEPLOY_RECEIVER_PORT:-19481}"
PROJECT=event-bridge-test-deploy
step() { echo "== test-deploy: $* ($(( $(date +%s) - started_at )) s)"; }

step "tools"
bash scripts/deploy/tools.sh
HELM="$TOOLS/helm" PROMTOOL="$TOOLS/promtool"

step "chart: lint, render, validate against the Kubernetes schemas"
chart=helm/event-bridge
work="$(mktemp -d)"
dockerd_pid=""
cleanup() {
    set +e
    if [ -n "${COMPOSE:-}" ]; then
        $COMPOSE down -v --remove-orphans --timeout 20 >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
defaults=(--set secrets.adminToken=test-token --set secrets.secretKey=test-key)
"$HELM" lint --strict "$chart" "${defaults[@]}"
"$HELM" lint --strict "$chart" -f "$chart/values-external-kafka.yaml"
"$HELM" template bridge "$chart" "${defaults[@]}" > "$work/default.yaml"
"$HELM" template bridge "$chart" -f "$chart/values-external-kafka.yaml" > "$work/production.yaml"
"$BIN/python" scripts/deploy/validate_manifests.py "$work/default.yaml"
"$BIN/python" scripts/deploy/validate_manifests.py "$work/production.yaml"
grep -q "name: BRIDGE_WORKER_ID" "$work/production.yaml"
# Refusals the chart must make, each with its reason: no secrets, more workers than partitions,
# an unknown security protocol.
refuse() {  # refuse EXPECTED-TEXT HELM-ARGS...
    local expected="$1"; shift
    if "$HELM" template bridge "$chart" "$@" >/dev/null 2>"$work/err"; then
        echo "FAIL: helm template accepted: $*" >&2; exit 1
    fi
    grep -q "$expected" "$work/err" || { echo "FAIL: refusal without '$expected':" >&2; cat "$work/err" >&2; exit 1; }
    echo "refused as it should: $(grep -m1 . "$work/err")"
}
refuse "secrets.adminToken (or existingSecret) is required"
refuse "exceeds kafka.partitions" --set worker.replicas=7 "${defaults[@]}"
refuse "value must be one of" --set kafka.securityProtocol=TLS "${defaults[@]}"

step "alert rules: promtool check + test"
"$PROMTOOL" check rules "$chart/files/alerts.yml"
(cd "$chart/files" && "$PROMTOOL" test rules alerts_test.yml)

step "Docker engine"
if ! docker info >/dev/null 2>&1; then
    dockerd >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 "$work/dockerd.log"; exit 1; }
fi

step "compose config"
{
    echo "BRIDGE_ADMIN_TOKEN=$(openssl rand -hex 24)"
    echo "BRIDGE_SECRET_KEY=$("$BIN/event-bridge" secret-key)"
    echo "GRAFANA_ADMIN_PASSWORD=$(openssl rand -hex 12)"
    echo "API_PUBLISH=127.0.0.1:$API_PORT"
    echo "BRIDGE_PARTITIONS=4"
} > "$work/env"
COMPOSE="$TOOLS/docker-compose --project-name $PROJECT --project-directory . --env-file $work/env -f docker-compose.yml -f deploy/test/compose.e2e.yml"
$COMPOSE config --quiet
$COMPOSE --profile monitoring config --quiet
if $TOOLS/docker-compose --project-directory . --env-file /dev/null -f docker-compose.yml config --quiet 2>/dev/null; then
    echo "FAIL: compose accepted a stack without secrets" >&2; exit 1
fi

step "images: base and Kafka (cached), bridge image"
BIN="$BIN" bash scripts/deploy/images.sh
find deploy/wheels -name '*.whl' -delete
"$BIN/pip" wheel --quiet --disable-pip-version-check -c constraints.txt -w deploy/wheels . setuptools wheel
docker build --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg PIP_NO_INDEX=1 \
    --build-arg "REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" -t "$BRIDGE_IMAGE" . >/dev/null
echo "image $BRIDGE_IMAGE: $(docker image inspect "$BRIDGE_IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
docker run --rm --entrypoint id "$BRIDGE_IMAGE" | grep -q "uid=10001" || { echo "FAIL: image runs as root" >&2; exit 1; }

step "compose stack: kafka, topics, api, 2 workers, receiver"
$COMPOSE down -v --remove-orphans >/dev/null 2>&1 || true
$COMPOSE up -d --quiet-pull --scale worker=2
set -a; . "$work/env"; set +a
COMPOSE="$COMPOSE" "$BIN/python" scripts/deploy/compose_e2e.py || { $COMPOSE logs --tail 40; exit 1; }

step "down"
$COMPOSE down -v --remove-orphans --timeout 20
COMPOSE=""
step "passed"
