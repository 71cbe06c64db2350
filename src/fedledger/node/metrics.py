"""A node's health endpoint, Prometheus metrics and structured logs.

`--metrics HOST:PORT` serves
- `GET /metrics`: the Prometheus text exposition format, version 0.0.4
  (https://prometheus.io/docs/instrumenting/exposition_formats/): counters `fedledger_node_rounds_seen_total`,
  `fedledger_node_rounds_acted_total` (attempts in which one of this node's roles acted),
  `fedledger_node_steps_acted_total`, `fedledger_node_bytes_sent_total`, `fedledger_node_bytes_received_total`,
  `fedledger_node_blob_bytes_fetched_total`, `fedledger_node_errors_total{kind}`, and the summary
  `fedledger_node_stage_seconds{stage}` (`_sum`, `_count`: wall seconds per stage, training, secagg, chain,
  validation, ...). Written here rather than with prometheus-client: the format is a few lines of text and
  the node needs no dependency for it;
- `GET /healthz`: JSON {ok, address, role, tasks, block, last_progress_seconds_ago, errors}; HTTP 200 while
  the node follows the chain, 503 once it has not read the chain for `stale` seconds.

Logs: one JSON object per line on stderr ({"ts", "level", "event", ...}), never a key or a password.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from fedledger.core.errors import ConfigError


class Log:
    """JSON-lines logger."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, float] = defaultdict(float)
        self.errors: dict[str, int] = defaultdict(int)
        self.stage_sum: dict[str, float] = defaultdict(float)
        self.stage_count: dict[str, int] = defaultdict(int)
        self.health: dict[str, Any] = {}
        self.last_chain_read = time.monotonic()
        self.last_progress = time.monotonic()

    def inc(self, name: str, by: float = 1.0) -> None:
        with self._lock:
            self.counters[name] += by

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self.counters[name] = value

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def stages(self, seconds: dict[str, float]) -> None:
        with self._lock:
            for stage, s in seconds.items():
                self.stage_sum[stage] += s
                self.stage_count[stage] += 1

    def render(self) -> str:
        with self._lock:
            lines = []
            for name in sorted(self.counters):
                lines += [f"# TYPE fedledger_node_{name} counter", f"fedledger_node_{name} {self.counters[name]:g}"]
            lines.append("# TYPE fedledger_node_errors_total counter")
            for kind in sorted(self.errors):
                lines.append(f'fedledger_node_errors_total{{kind="{_label(kind)}"}} {self.errors[kind]}')
            lines.append("# TYPE fedledger_node_stage_seconds summary")
            for stage in sorted(self.stage_sum):
                lines.append(f'fedledger_node_stage_seconds_sum{{stage="{_label(stage)}"}} {self.stage_sum[stage]:.6f}')
                lines.append(f'fedledger_node_stage_seconds_count{{stage="{_label(stage)}"}} {self.stage_count[stage]}')
            return "\n".join(lines) + "\n"

    def healthz(self, stale: float) -> tuple[int, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            body = {**self.health, "errors": sum(self.errors.values()),
                    "last_chain_read_seconds_ago": round(now - self.last_chain_read, 3),
                    "last_progress_seconds_ago": round(now - self.last_progress, 3)}
        ok = now - self.last_chain_read < stale
        body["ok"] = ok
        return (200 if ok else 503), body


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def serve(metrics: Metrics, listen: str, *, stale: float = 60.0) -> ThreadingHTTPServer:
    """Start the health and metrics server on `listen` (HOST:PORT, port 0 for any) in a daemon thread."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--metrics {listen!r}: use HOST:PORT")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                code, body, kind = 200, metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
            elif self.path in ("/healthz", "/health"):
                code, payload = metrics.healthz(stale)
                body, kind = json.dumps(payload).encode(), "application/json"
            else:
                code, body, kind = 404, b"not found\n", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    try:
        server = ThreadingHTTPServer((host, int(port)), Handler)
    except OSError as e:
        raise ConfigError(f"--metrics {listen}: cannot listen ({e.strerror})") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fl-metrics", daemon=True).start()
    return server
