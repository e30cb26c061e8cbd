"""Fuzz a real broker (a child process) with hostile input, and report
what it did to the broker.

    .venv/bin/python -m bench.fuzz --inputs 100000 --seed 1

Inputs (bench/fuzz_inputs.py makes them, seeded): random bytes; frames
captured from confluent-kafka, kafka-python and aiokafka
(tests/faults/corpus/, made by bench/fuzz_capture.py), mutated; random
requests of every API key and version kio knows (served or not), some
mutated; Produce requests carrying crafted record batches; and, from one
"abuser" process throughout the run, decompression bombs (256 MiB of
zeros, zstd and gzip, in a CRC-valid batch, then read back by Fetch and
ListOffsets by timestamp), clients that pipeline 40 large Fetches and
never read, clients that send a frame a byte at a time, and partial
99 MiB frames.

Each worker process sends an input, then an ApiVersions probe on the same
connection: the probe's answer (the connection survived) or the
connection's close (it was refused) ends the input; neither within 10 s
is counted as a hang. A canary process produces a record every 20 ms and
consumes it, measuring produce-to-consume latency throughout.

A silence in the broker's log is not a stall of the broker: only refused
inputs are logged, and inputs the broker rightly holds (a Fetch
long-polling its max_wait_ms, a JoinGroup awaiting its rebalance, a
partial frame until the broker gives up on it) can hold all the workers at
once. The canary, on connections of its own, measures the broker; the
report's slow_inputs tells what held the workers.

Reported: inputs sent, broker crashes (process exits; the broker is
restarted to go on), "Traceback" lines in the broker's log (with the
distinct errors), hangs, RSS at start, peak and end, and the canary's
p50/p99/max latency. `--json` prints the figures as one JSON object.
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import fuzz_inputs as fi
from bench.broker import status_kb

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "faults" / "corpus"
PROBE_ID = 0x7FFFFF00
MB = 1 << 20
BIG_TOPIC = "fuzz-big"
CANARY_TOPIC = "fuzz-canary"
SLOW_INPUT_S = 0.25


# -- the broker ---------------------------------------------------------------------------


class Broker:
    def __init__(self, data_dir: str, log_path: str):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = 0
        self.proc = None
        self.crashes: list[int] = []

    def start(self):
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "STROM_AUTO_CREATE_TOPICS_ENABLE": "false",
               "STROM_CONNECTIONS_MAX_UNREAD_MS": "3000"}
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "strom.cli.main", "serve", "--port", str(self.port),
             "--data-dir", self.data_dir], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = re.findall(r"bootstrap\.servers=[\w.]+:(\d+)", Path(self.log_path).read_text())
            if m and self.proc.poll() is None and len(m) > len(self.crashes):
                self.port = int(m[-1])
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker did not start (exit {self.proc.returncode})")
            time.sleep(0.05)
        raise RuntimeError("broker did not start in 60 s")

    def check(self) -> bool:
        """True when it is running; a dead broker is counted and restarted."""
        code = self.proc.poll()
        if code is None:
            return True
        self.crashes.append(code)
        with open(self.log_path, "a") as f:
            f.write(f"\n#### fuzz: broker exited with {code}; restarting\n")
        self.start()
        return False

    def rss(self) -> int:
        try:
            return status_kb(self.proc.pid) * 1024
        except OSError:
            return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def topic_ids(port: int) -> list:
    """The ids of the pool's topics, from a Metadata v12 request."""
    from kio.serial import entity_reader

    from strom.protocol.build import build
    from strom.protocol.schemas import encode, request_class, response_class

    body = encode(build(request_class(3, 12), {"topics": [{"name": t} for t in fi.TOPICS]}))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(fi.frame(3, 12, body, 1))
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        data = s.recv(size, socket.MSG_WAITALL)
    response, _ = entity_reader(response_class(3, 12))(data, 5)
    return [t.topic_id for t in response.topics if t.topic_id]


def setup_topics(port: int):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [*fi.TOPICS, BIG_TOPIC, CANARY_TOPIC]
    for f in admin.create_topics([NewTopic(n, 2 if n in fi.TOPICS else 1) for n in names]).values():
        f.result(20)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": MB,
                  "message.max.bytes": 2 * MB})
    for i in range(64):  # 16 MiB for the Fetches nobody reads
        p.produce(BIG_TOPIC, b"b" * (256 * 1024))
    for t in fi.TOPICS:
        for i in range(50):
            p.produce(t, key=b"k%d" % (i % 5), value=b"v%d" % i)
    p.flush(30)


# -- one input on the wire --------------------------------------------------------------


def _probe() -> bytes:
    return fi.frame(18, 0, b"", PROBE_ID, client_id="probe", flexible=False)


PROBE = _probe()


class Wire:
    """A worker's connection: send an input and a probe, see what happens."""

    def __init__(self, port: int):
        self.port = port
        self.sock = None
        self.stats = Counter()
        self.slow = {}  # kind -> (inputs, seconds) of inputs slower than SLOW_INPUT_S

    def _connect(self):
        for attempt in range(200):  # the broker may be restarting after a crash
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("cannot connect to the broker")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data: bytes, probe: bool = True):
        started = time.monotonic()
        if self.sock is None:
            self._connect()
        try:
            self.sock.sendall(data + PROBE if probe else data)
            if not probe:
                self.sock.shutdown(socket.SHUT_WR)
            outcome = self._await_probe()
        except socket.timeout:
            outcome = "hang"
        except OSError:
            outcome = "closed"
        self.stats[outcome] += 1
        waited = time.monotonic() - started
        if waited > SLOW_INPUT_S:  # see slow_inputs in the report
            key, version = struct.unpack_from(">hh", data, 4) if len(data) >= 8 else (-1, -1)
            kind = f"api {key} v{version} {outcome}" if 0 <= key < 100 else f"unframed {outcome}"
            n, secs = self.slow.get(kind, (0, 0.0))
            self.slow[kind] = (n + 1, secs + waited)
        if outcome != "answered":
            self.close()

    def _await_probe(self) -> str:
        buf = b""
        while True:
            while len(buf) >= 8:
                size = struct.unpack_from(">i", buf)[0]
                if len(buf) < 4 + size:
                    break
                if struct.unpack_from(">i", buf, 4)[0] == PROBE_ID:
                    return "answered"
                buf = buf[4 + size:]
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return "closed"
            buf += chunk


def _corpus_frames() -> list[bytes]:
    frames = []
    for path in sorted(CORPUS.glob("*.bin")):
        data = path.read_bytes()
        pos = 0
        while pos + 4 <= len(data):
            size = struct.unpack_from(">i", data, pos)[0]
            frames.append(data[pos:pos + 4 + size])
            pos += 4 + size
    return frames


def _all_versions():
    from kio.schema.index import api_key_map

    from strom.protocol.schemas import known_versions

    out = []
    for key in sorted(api_key_map):
        lo, hi = known_versions(key)
        out += [(key, v) for v in range(lo, hi + 1)]
    return out


class Pools:
    """Inputs drawn fresh are slow to make in Python (~0.5 ms): a worker
    draws a pool once and mutates from it, drawing fresh one time in ten."""

    def __init__(self, rng: random.Random, served, versions, size: int = 1500):
        self.corpus = _corpus_frames()
        self.served = served
        self.versions = versions
        self.requests = [self.fresh_request(rng) for _ in range(size)]
        self.batches = [fi.random_batch(rng) for _ in range(size // 3)]

    def fresh_request(self, rng):
        key, version = rng.choice(self.served)
        return key, version, fi.random_request(rng, key, version)

    def request(self, rng):
        if rng.random() < 0.1:
            item = self.fresh_request(rng)
            self.requests[rng.randrange(len(self.requests))] = item
            return item
        return rng.choice(self.requests)

    def batch(self, rng):
        if rng.random() < 0.1:
            return fi.random_batch(rng)
        return rng.choice(self.batches)


def make_input(rng: random.Random, pools: Pools, cid: int) -> tuple[bytes, bool]:
    """One input: (bytes to send, whether a probe may follow it)."""
    r = rng.random()
    if r < 0.05:  # random bytes, sometimes behind a plausible size
        body = rng.randbytes(rng.randint(0, 200))
        if rng.random() < 0.5:
            return fi.reframe(body), True
        return body, False
    if r < 0.30:  # a real client's frame, mutated
        original = rng.choice(pools.corpus)
        data = fi.mutate(rng, original[4:], keep=rng.choice((0, 8, 8, 8)))
        return fi.reframe(data), True
    if r < 0.75:  # a random request of a served API and version, sometimes mutated
        key, version, body = pools.request(rng)
        if rng.random() < 0.5:
            body = fi.mutate(rng, body)
        return fi.frame(key, version, body, cid), True
    if r < 0.80:  # any API key and version kio knows, random body
        key, version = rng.choice(pools.versions)
        body = rng.choice(pools.requests)[2]  # another API's body
        if rng.random() < 0.2:
            try:
                body = fi.random_request(rng, key, version)
            except Exception:  # noqa: BLE001  a schema kio cannot fill at random
                body = rng.randbytes(rng.randint(0, 64))
        return fi.frame(key, version, body, cid), True
    # Produce of crafted record batches
    version = rng.randint(3, 9)
    batch = pools.batch(rng)
    if rng.random() < 0.3:
        batch = fi.mutate(rng, batch, keep=0)
        if rng.random() < 0.5:
            batch = fi.fix_crc(batch)
    body = fi.produce_body(rng.choice(fi.TOPICS), batch, version=version,
                           acks=rng.choice((1, -1, 0)))
    return fi.frame(0, version, body, cid), True


def worker(port: int, seed: int, count: int, deadline: float, ids, ready, progress,
           results):
    from strom.broker import router

    router.load_handlers()
    fi.TOPIC_IDS[:] = ids
    rng = random.Random(seed)
    served = [(a.key, v) for a in router.HANDLERS.values()
              for v in range(a.min_version, a.max_version + 1)]
    pools = Pools(rng, served, _all_versions())
    ready.put(1)
    wire = Wire(port)
    sent = 0
    for i in range(count):
        data, probe = make_input(rng, pools, i)
        wire.send(data, probe)
        sent += 1
        if sent % 200 == 0:
            progress.put(200)
            if time.time() > deadline:
                break
    progress.put(sent % 200)
    wire.close()
    results.put({**wire.stats, "slow_inputs": wire.slow})


# -- the abuser: bombs, slow and non-reading clients, partial frames -------------------------


def _big_fetch(topic: str, cid: int) -> bytes:
    from strom.protocol.build import build
    from strom.protocol.schemas import encode, request_class

    body = encode(build(request_class(1, 11), {
        "max_wait": 0, "min_bytes": 1, "max_bytes": 50 * MB, "topics": [
            {"topic": topic, "partitions": [
                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 50 * MB}]}]}))
    return fi.frame(1, 11, body, cid)


def _list_offsets_by_time(topic: str) -> bytes:
    from strom.protocol.build import build
    from strom.protocol.schemas import encode, request_class

    body = encode(build(request_class(2, 5), {"replica_id": -1, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "timestamp": 0}]}]}))
    return fi.frame(2, 5, body, 1)


def abuser(port: int, seed: int, stop, results):
    from strom.broker import router

    router.load_handlers()
    rng = random.Random(seed)
    wire = Wire(port)
    stats = Counter()
    events = []
    scenarios = ["nonreader", "slow", "partial", "bomb-zstd", "bomb-gzip"]
    n = 0
    while not stop.is_set():
        scenario = scenarios[n % len(scenarios)]
        n += 1
        stats[scenario] += 1
        events.append((round(time.time(), 2), scenario))
        try:
            if scenario == "nonreader":
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(b"".join(_big_fetch(BIG_TOPIC, i) for i in range(40)))
                stop.wait(rng.uniform(1, 5))
                s.close()
            elif scenario == "slow":
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                for byte in fi.frame(3, 4, struct.pack(">i", -1) + b"\x00", 1, flexible=False):
                    s.sendall(bytes([byte]))
                    time.sleep(0.03)
                s.recv(4)
                s.close()
            elif scenario == "partial":
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                try:
                    s.sendall(struct.pack(">i", 99 * MB) + bytes(8 * MB))
                except OSError:
                    pass
                stop.wait(2)
                s.close()
            else:
                codec = scenario.split("-")[1]
                topic = rng.choice(fi.TOPICS)
                batch = fi.bomb(codec)
                wire.send(fi.frame(0, 9, fi.produce_body(topic, batch), 1))
                wire.send(_list_offsets_by_time(topic))
                wire.send(_big_fetch(topic, 2))
        except OSError:
            stats["abuser-oserror"] += 1
        stop.wait(0.5)
    wire.close()
    stats.update({f"abuser-{k}": v for k, v in wire.stats.items()})
    results.put({**stats, "events": events})


# -- the canary -----------------------------------------------------------------------------


def canary(port: int, stop, results):
    """Produce a timestamped record every 20 ms; consume each; latencies."""
    import threading

    from confluent_kafka import Consumer, Producer, TopicPartition

    bootstrap = f"127.0.0.1:{port}"
    latencies = []
    slow = []  # (sent at, latency) over 50 ms
    errors = Counter()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all",
                  "reconnect.backoff.max.ms": 200})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fuzz-canary-group",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                  "reconnect.backoff.max.ms": 200})
    c.assign([TopicPartition(CANARY_TOPIC, 0, -1)])  # from the end
    consuming = threading.Event()

    def consume():
        while not stop.is_set() or consuming.is_set():
            m = c.poll(0.05)
            if m is None:
                continue
            if m.error():
                errors[str(m.error().code())] += 1
                continue
            sent = struct.unpack(">q", m.value())[0]
            latencies.append((time.time_ns() - sent) / 1e6)
            if latencies[-1] > 50:
                slow.append((round(sent / 1e9, 2), round(latencies[-1], 1)))

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(1)  # the consumer's first fetch
    sent = 0
    while not stop.is_set():
        p.produce(CANARY_TOPIC, struct.pack(">q", time.time_ns()), partition=0)
        sent += 1
        p.poll(0)
        time.sleep(0.02)
    p.flush(10)
    consuming.set()
    deadline = time.monotonic() + 10
    while len(latencies) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    consuming.clear()
    t.join()
    c.close()
    results.put({"sent": sent, "latencies": latencies, "errors": dict(errors), "slow": slow})


# -- the run ----------------------------------------------------------------------------------


def tracebacks(log_text: str) -> tuple[int, Counter]:
    count = 0
    kinds = Counter()
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if "Traceback" not in line:
            continue
        count += 1
        j, where = i + 1, ""
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            if lines[j].strip().startswith("File "):
                where = lines[j].strip()
            j += 1
        last = lines[j] if j < len(lines) else "?"
        kinds[f"{last[:160]}  <- {where[:160]}"] += 1
    return count, kinds


def _percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def run(inputs: int, seed: int, workers: int = 2, verbose: bool = True,
        max_seconds: float = 1e9) -> dict:
    tmp = tempfile.mkdtemp(prefix="strom-fuzz-")
    broker = Broker(os.path.join(tmp, "data"), os.path.join(tmp, "broker.log"))
    ctx = mp.get_context("spawn")
    try:
        broker.start()
        setup_topics(broker.port)
        stop = ctx.Event()
        progress, results, canary_q, ready = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Queue()
        share = [inputs // workers + (1 if i < inputs % workers else 0) for i in range(workers)]
        deadline = time.time() + max_seconds
        ids = topic_ids(broker.port)
        procs = [ctx.Process(target=worker, args=(broker.port, seed * 1000 + i + 1, share[i],
                                                  deadline, ids, ready, progress, results))
                 for i in range(workers)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=300)  # each has drawn its pools
        started = time.monotonic()
        canary_p = ctx.Process(target=canary, args=(broker.port, stop, canary_q))
        canary_p.start()
        abuse_p = ctx.Process(target=abuser, args=(broker.port, seed, stop, results))
        abuse_p.start()
        rss_start = broker.rss()
        rss_peak = rss_start
        done = 0
        last_report = time.monotonic()
        while any(p.is_alive() for p in procs) or not progress.empty():
            try:
                done += progress.get(timeout=0.5)
            except Exception:  # noqa: BLE001  queue.Empty
                pass
            broker.check()
            rss_peak = max(rss_peak, broker.rss())
            if verbose and time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                rate = done / (last_report - started)
                print(f"  {done:,} inputs, {rate:,.0f}/s, RSS {broker.rss() / MB:.0f} MB, "
                      f"crashes {len(broker.crashes)}", flush=True)
        elapsed = time.monotonic() - started
        stop.set()
        outcomes = Counter()
        events = []
        slow: dict[str, list] = {}
        for _ in range(workers + 1):
            r = results.get(timeout=60)
            events = r.pop("events", events)
            for kind, (n, secs) in r.pop("slow_inputs", {}).items():
                entry = slow.setdefault(kind, [0, 0.0])
                entry[0] += n
                entry[1] += secs
            outcomes.update(r)
        latency = canary_q.get(timeout=60)
        for p in (*procs, canary_p, abuse_p):
            p.join(30)
        broker.check()
        rss_end = broker.rss()
        abuse_inputs = sum(v for k, v in outcomes.items()
                           if k in ("nonreader", "slow", "partial", "bomb-zstd", "bomb-gzip"))
        broker.stop()
        count, kinds = tracebacks(Path(broker.log_path).read_text(errors="replace"))
        lat = latency["latencies"]
        report = {
            "inputs": done + abuse_inputs,
            "seconds": round(elapsed, 1),
            "rate_per_s": round((done + abuse_inputs) / elapsed),
            "crashes": len(broker.crashes),
            "crash_exit_codes": broker.crashes,
            "tracebacks": count,
            "traceback_kinds": dict(kinds.most_common(20)),
            "outcomes": dict(outcomes),
            "rss_start_mb": round(rss_start / MB, 1),
            "rss_peak_mb": round(rss_peak / MB, 1),
            "rss_end_mb": round(rss_end / MB, 1),
            "rss_growth_mb": round((rss_end - rss_start) / MB, 1),
            "canary_sent": latency["sent"],
            "canary_received": len(lat),
            "canary_errors": latency["errors"],
            "canary_p50_ms": _percentile(lat, 0.5),
            "canary_p99_ms": _percentile(lat, 0.99),
            "canary_max_ms": round(max(lat), 1) if lat else None,
            # the slowest canary records, each with the abuser scenario begun last before it
            "canary_slowest": [
                (ms, next((f"{e} {at - t:+.2f}s" for t, e in reversed(events) if t <= at + 0.5),
                          "-"))
                for at, ms in sorted(latency["slow"], key=lambda x: -x[1])[:8]],
            # inputs the broker legitimately held (long-poll Fetch, JoinGroup
            # awaiting its rebalance, partial frames): (count, seconds) by kind
            "slow_inputs": {k: (n, round(secs, 1)) for k, (n, secs) in
                            sorted(slow.items(), key=lambda kv: -kv[1][1])[:10]},
            "broker_log": broker.log_path,
        }
        return report
    finally:
        if broker.proc is not None and broker.proc.poll() is None:
            broker.proc.kill()
        shutil.rmtree(os.path.join(tmp, "data"), ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=1e9,
                    help="stop sending when this long has passed (fewer inputs than asked)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = ap.parse_args(argv)
    report = run(args.inputs, args.seed, args.workers, verbose=not args.json,
                 max_seconds=args.max_seconds)
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")
    ok = report["crashes"] == 0 and report["tracebacks"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
