"""Ride-sharing analytics: driver locations feed ETAs, surge pricing and a
live map.

    driver-location-updates (keyed by driver) --> ETA service   --> ride-etas
    ride-requests (keyed by zone)             --> surge pricing --> surge-prices
                                              --> live map (server-sent events)

The city is a 4 x 4 grid of zones on the unit square. Surge pricing counts
demand (ride requests) against supply (distinct drivers seen) per zone in
tumbling windows of event time (60 s by default), and publishes a
multiplier when a window closes: a window closes once an event at or past
its end has been seen.
"""

import math
import random
import threading
import time
from collections import defaultdict

from examples.common import Service, arguments, broker, ensure_topics, envelope, parse, producer

GRID = 4
LOCATIONS, REQUESTS, SURGE, ETAS = "driver-location-updates", "ride-requests", "surge-prices", "ride-etas"
SPEED = 0.01  # grid units per second


def zone_of(x: float, y: float) -> str:
    return f"z{min(int(y * GRID), GRID - 1)}{min(int(x * GRID), GRID - 1)}"


class Drivers:
    """Simulated drivers, each publishing its position every `interval` s."""

    def __init__(self, bootstrap: str, count: int = 12, interval: float = 1.0, seed: int = 1):
        self.rng = random.Random(seed)
        self.out = producer(bootstrap, **{"linger.ms": 0})
        self.interval = interval
        self.positions = {f"driver-{i:02d}": [self.rng.random(), self.rng.random()] for i in range(count)}
        self.heading = {d: self.rng.random() * 2 * math.pi for d in self.positions}
        self._stop = threading.Event()
        self.sent = 0

    def step(self) -> None:
        now = int(time.time() * 1000)
        for driver, pos in self.positions.items():
            self.heading[driver] += self.rng.uniform(-0.6, 0.6)
            for axis, f in ((0, math.cos), (1, math.sin)):
                pos[axis] += 0.03 * f(self.heading[driver])
                if not 0 <= pos[axis] < 1:
                    pos[axis] = min(max(pos[axis], 0.0), 0.999)
                    self.heading[driver] += math.pi
            self.out.produce(LOCATIONS, key=driver, value=envelope("DriverLocationUpdated", {
                "driver_id": driver, "x": round(pos[0], 4), "y": round(pos[1], 4),
                "zone": zone_of(*pos), "at_ms": now}))
            self.sent += 1
        for _ in range(self.rng.randrange(5)):  # riders ask for rides, mostly in the centre
            x, y = self.rng.betavariate(3, 3), self.rng.betavariate(3, 3)
            self.out.produce(REQUESTS, key=zone_of(x, y), value=envelope("RideRequested", {
                "request_id": f"ride-{now}-{self.rng.randrange(10**6)}", "x": x, "y": y,
                "zone": zone_of(x, y), "at_ms": now}))
        self.out.poll(0)

    def run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.interval)
        self.out.flush(10)

    def start(self) -> "Drivers":
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()


class SurgePricing:
    """Tumbling windows of event time: demand vs supply per zone."""

    def __init__(self, out, window_ms: int = 60_000):
        self.out, self.window_ms = out, window_ms
        self.windows: dict[int, dict] = defaultdict(lambda: {"demand": defaultdict(int),
                                                             "supply": defaultdict(set)})
        self.published: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, msg) -> None:
        event = parse(msg.value())
        p = event["payload"]
        start = p["at_ms"] - p["at_ms"] % self.window_ms
        with self.lock:
            if event["event_type"] == "RideRequested":
                self.windows[start]["demand"][p["zone"]] += 1
            else:
                self.windows[start]["supply"][p["zone"]].add(p["driver_id"])
            for done in sorted(w for w in self.windows if w + self.window_ms <= p["at_ms"]):
                self._close(done, self.windows.pop(done))

    def _close(self, start: int, window: dict) -> None:
        zones = set(window["demand"]) | set(window["supply"])
        for zone in sorted(zones):
            demand, supply = window["demand"][zone], len(window["supply"][zone])
            multiplier = round(min(3.0, max(1.0, demand / max(supply, 1))), 2)
            price = {"zone": zone, "window_start_ms": start, "window_end_ms": start + self.window_ms,
                     "demand": demand, "supply": supply, "multiplier": multiplier}
            self.published.append(price)
            self.out.produce(SURGE, key=zone, value=envelope("SurgePriceUpdated", price))
        self.out.poll(0)


class EtaService:
    """Latest driver positions; for each ride request, the nearest driver's ETA."""

    def __init__(self, out):
        self.out, self.drivers, self.etas = out, {}, []

    def __call__(self, msg) -> None:
        event = parse(msg.value())
        p = event["payload"]
        if event["event_type"] == "DriverLocationUpdated":
            self.drivers[p["driver_id"]] = (p["x"], p["y"])
            return
        if not self.drivers:
            return
        driver, (x, y) = min(self.drivers.items(),
                             key=lambda d: math.dist(d[1], (p["x"], p["y"])))
        eta = {"request_id": p["request_id"], "driver_id": driver,
               "eta_seconds": round(math.dist((x, y), (p["x"], p["y"])) / SPEED)}
        self.etas.append(eta)
        self.out.produce(ETAS, key=p["request_id"], value=envelope("EtaEstimated", eta))
        self.out.poll(0)


def setup(bootstrap: str) -> None:
    ensure_topics(bootstrap, {LOCATIONS: (4, {}), REQUESTS: (4, {}), SURGE: (1, {}), ETAS: (1, {})})


def run(bootstrap: str, seconds: float = 130, window_ms: int = 60_000, interval: float = 1.0,
        port: int = 8000, say=print) -> dict:
    from examples.rideshare.dashboard import Dashboard

    setup(bootstrap)
    out = producer(bootstrap)
    surge, eta = SurgePricing(out, window_ms), EtaService(out)
    services = [Service(bootstrap, "surge-pricing", [LOCATIONS, REQUESTS], surge).start(),
                Service(bootstrap, "eta", [LOCATIONS, REQUESTS], eta).start()]
    dashboard = Dashboard(bootstrap, port=port).start()
    say(f"live map on http://127.0.0.1:{dashboard.port}/")
    drivers = Drivers(bootstrap, interval=interval).start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(5)
        with surge.lock:
            latest = surge.published[-3:]
        say(f"{drivers.sent} location updates, {len(eta.etas)} ETAs, "
            f"{len(surge.published)} surge prices; latest: "
            + ", ".join(f"{p['zone']} x{p['multiplier']}" for p in latest))
    drivers.stop()
    for s in services:
        s.stop()
    dashboard.stop()
    out.flush(10)
    return {"surge": surge.published, "etas": eta.etas, "updates": drivers.sent}


def main() -> None:
    ap = arguments("Ride-sharing: ETAs, surge pricing and a live map")
    ap.add_argument("--seconds", type=float, default=130)
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    with broker(args.bootstrap_server) as bootstrap:
        run(bootstrap, seconds=args.seconds, port=args.port)


if __name__ == "__main__":
    main()

