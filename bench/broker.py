"""Broker benchmark: start-up, idle RSS, and produce/consume throughput of
N x 100 B records with confluent-kafka against `strom serve` (disk,
acks=all), in a child process like a user would run it.

    python -m bench.broker [--records 1000000] [--rounds 3]

Prints medians and min-max over rounds.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def status_kb(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status memory field (VmRSS: resident now, VmHWM: its
    peak) in KiB. Raises OSError when the process is gone."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    try:
        return status_kb(pid) / 1024
    except OSError:
        return float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of an ascending list (nearest rank)."""
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(data_dir: str):
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strom.cli.main", "serve", "--port", str(port), "--data-dir", data_dir,
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("broker exited")
            time.sleep(0.002)
    return proc, port, time.perf_counter() - t0


def produce(bootstrap: str, topic: str, n: int) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000,
                  "enable.idempotence": False})
    value = b"x" * 100
    t = time.perf_counter()
    for _ in range(n):
        try:
            p.produce(topic, value, partition=0)
        except BufferError:
            p.poll(0.01)
            p.produce(topic, value, partition=0)
    assert p.flush(120) == 0
    return n / (time.perf_counter() - t)


def consume(bootstrap: str, topic: str, n: int) -> float:
    from confluent_kafka import Consumer, TopicPartition

    # fetch.queue.backoff.ms: see bench/peers.py (librdkafka pauses 1 s
    # whenever its queue holds 100,000 messages the app has not read yet).
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.queue.backoff.ms": 10})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    t = time.perf_counter()
    while got < n:
        msgs = c.consume(10000, 1.0)
        got += sum(1 for m in msgs if not m.error())
    rate = n / (time.perf_counter() - t)
    c.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            proc, port, startup = start_broker(d)
            results.setdefault("process start to accepting (ms)", []).append(startup * 1000)
            time.sleep(0.5)
            results.setdefault("idle RSS (MB)", []).append(rss_mb(proc.pid))
            bs = f"127.0.0.1:{port}"
            cpu0 = cpu_seconds(proc.pid)
            results.setdefault("produce msg/s (acks=all)", []).append(produce(bs, "bench", args.records))
            cpu1 = cpu_seconds(proc.pid)
            results.setdefault("consume msg/s", []).append(consume(bs, "bench", args.records))
            cpu2 = cpu_seconds(proc.pid)
            results.setdefault("RSS after load (MB)", []).append(rss_mb(proc.pid))
            per_m = 1_000_000 / args.records
            results.setdefault("broker CPU s per 1M produced", []).append((cpu1 - cpu0) * per_m)
            results.setdefault("broker CPU s per 1M consumed", []).append((cpu2 - cpu1) * per_m)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"\nbroker benchmark: {args.records} x 100 B, confluent-kafka, {args.rounds} rounds\n")
    for k, v in results.items():
        print(f"  {k:34s} {statistics.median(v):12,.1f}   ({min(v):,.1f} - {max(v):,.1f})")


if __name__ == "__main__":
    main()
