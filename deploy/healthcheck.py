"""Container health probe: exit 0 when BRIDGE_HEALTH_URL (default: the api's /healthz) answers 2xx."""

import os
import sys
import urllib.request

port = os.environ.get("BRIDGE_HTTP_PORT", "8080")
url = os.environ.get("BRIDGE_HEALTH_URL", f"http://127.0.0.1:{port}/healthz")
try:
    with urllib.request.urlopen(url, timeout=4) as answer:
        sys.exit(0 if 200 <= answer.status < 300 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", with the reason in the log
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
