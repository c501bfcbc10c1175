"""A partner endpoint for `make test-deploy`: answers 200 to every POST and lists what it got.

GET /received answers the eventIds of every push received, in order (duplicates kept).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received: list[str] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            ids = [e["eventId"] for e in json.loads(body)["params"]["events"]]
        except (ValueError, KeyError, TypeError):
            ids = []
        with lock:
            received.extend(ids)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def do_GET(self) -> None:
        with lock:
            body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
