"""Live map: a page with the city grid, one marker per driver, each zone
coloured by its surge multiplier, updated through server-sent events.

GET /        the page (an SVG map, no external assets)
GET /events  text/event-stream of {"type": "driver"|"surge", ...} lines

A consumer (no group: it reads from the latest offsets) feeds every
connected browser.
"""

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Strom rides: live map</title>
<style>body{font-family:sans-serif;margin:16px} .zone{stroke:#999;stroke-width:.002}
.driver{fill:#1565c0;stroke:white;stroke-width:.003;transition:cx .4s,cy .4s}
text{font-size:.025px;fill:#333}</style></head>
<body><h1>Live map</h1><p id="status">connecting…</p>
<svg id="map" viewBox="0 0 1 1" width="600" height="600" style="border:1px solid #ccc">
<g id="zones"></g><g id="drivers"></g></svg>
<script>
const G = 4, zones = document.getElementById('zones'), drivers = document.getElementById('drivers');
const NS = 'http://www.w3.org/2000/svg';
for (let r = 0; r < G; r++) for (let c = 0; c < G; c++) {
  const rect = document.createElementNS(NS, 'rect');
  rect.setAttribute('id', `zone-z${r}${c}`); rect.setAttribute('class', 'zone');
  rect.setAttribute('x', c / G); rect.setAttribute('y', r / G);
  rect.setAttribute('width', 1 / G); rect.setAttribute('height', 1 / G);
  rect.setAttribute('fill', '#f5f5f5'); zones.appendChild(rect);
  const label = document.createElementNS(NS, 'text');
  label.setAttribute('id', `surge-z${r}${c}`); label.setAttribute('x', c / G + .01);
  label.setAttribute('y', r / G + .03); label.textContent = `z${r}${c} x1.0`; zones.appendChild(label);
}
let updates = 0;
const source = new EventSource('/events');
source.onopen = () => document.getElementById('status').textContent = 'live';
source.onmessage = (e) => {
  const ev = JSON.parse(e.data);
  if (ev.type === 'driver') {
    let dot = document.getElementById(ev.driver_id);
    if (!dot) {
      dot = document.createElementNS(NS, 'circle'); dot.setAttribute('id', ev.driver_id);
      dot.setAttribute('class', 'driver'); dot.setAttribute('r', .012); drivers.appendChild(dot);
    }
    dot.setAttribute('cx', ev.x); dot.setAttribute('cy', ev.y);
    document.getElementById('status').textContent = `live: ${++updates} updates`;
  } else if (ev.type === 'surge') {
    const heat = Math.min(1, (ev.multiplier - 1) / 2);
    document.getElementById(`zone-${ev.zone}`).setAttribute('fill', `rgba(229,57,53,${0.1 + 0.7 * heat})`);
    document.getElementById(`surge-${ev.zone}`).textContent = `${ev.zone} x${ev.multiplier}`;
  }
};
</script></body></html>
"""


class Dashboard:
    def __init__(self, bootstrap: str, port: int = 8000, host: str = "127.0.0.1"):
        self.bootstrap = bootstrap
        self.clients: list[queue.Queue] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/":
                    body = PAGE.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/events":
                    dashboard._stream(self)
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def _stream(self, handler) -> None:
        q: queue.Queue = queue.Queue(maxsize=1000)
        with self.lock:
            self.clients.append(q)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        try:
            while not self._stop.is_set():
                try:
                    event = q.get(timeout=1.0)
                    handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                except queue.Empty:
                    handler.wfile.write(b": keep-alive\n\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.lock:
                self.clients.remove(q)

    def _broadcast(self, event: dict) -> None:
        with self.lock:
            for q in self.clients:
                try:
                    q.put_nowait(event)
                except queue.Full:
                    pass

    def _consume(self) -> None:
        from examples.rideshare.app import LOCATIONS, SURGE

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"dashboard-{time.time_ns()}",
                      "enable.auto.commit": False})
        topics = c.list_topics(timeout=10).topics
        c.assign([TopicPartition(t, p, OFFSET_END) for t in (LOCATIONS, SURGE)
                  for p in topics[t].partitions])
        while not self._stop.is_set():
            m = c.poll(0.1)
            if m is None or m.error():
                continue
            p = json.loads(m.value())["payload"]
            if m.topic() == LOCATIONS:
                self._broadcast({"type": "driver", "driver_id": p["driver_id"], "x": p["x"], "y": p["y"]})
            else:
                self._broadcast({"type": "surge", "zone": p["zone"], "multiplier": p["multiplier"]})
        c.close()

    def start(self) -> "Dashboard":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._consume, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
