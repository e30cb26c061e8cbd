"""Consumer-group timings against `strom serve`:

- subscribe to first record for a lone consumer (classic and KIP-848);
- rebalance time of a 3-member group when one member leaves: from the
  leaver's close() until the two others own all 6 partitions.

    python -m bench.groups [--rounds 5]
"""

import argparse
import signal
import statistics
import tempfile
import threading
import time

from bench.broker import start_broker


def _first_record(bs: str, topic: str, protocol: str) -> float:
    from confluent_kafka import Consumer

    extra = {"group.protocol": "consumer"} if protocol == "consumer" else {}
    c = Consumer({"bootstrap.servers": bs, "group.id": f"lone-{protocol}-{time.time_ns()}",
                  "auto.offset.reset": "earliest", **extra})
    t = time.perf_counter()
    c.subscribe([topic])
    while True:
        m = c.poll(0.01)
        if m is not None and not m.error():
            elapsed = time.perf_counter() - t
            break
    c.close()
    return elapsed


def _rebalance(bs: str, topic: str, protocol: str) -> float:
    from confluent_kafka import Consumer

    extra = ({"group.protocol": "consumer"} if protocol == "consumer"
             else {"session.timeout.ms": 10000, "heartbeat.interval.ms": 200})
    group = f"reb-{protocol}-{time.time_ns()}"
    consumers = [Consumer({"bootstrap.servers": bs, "group.id": group, **extra}) for _ in range(3)]
    owned = [set() for _ in consumers]
    stop = [threading.Event() for _ in consumers]

    def run(i):
        c = consumers[i]
        c.subscribe([topic])
        while not stop[i].is_set():
            c.poll(0.01)
            owned[i] = {tp.partition for tp in c.assignment()}
        c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    while sorted(len(o) for o in owned) != [2, 2, 2]:
        time.sleep(0.005)
    t0 = time.perf_counter()
    stop[0].set()
    threads[0].join()
    while len(owned[1]) + len(owned[2]) != 6 or owned[1] & owned[2]:
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    for i in (1, 2):
        stop[i].set()
        threads[i].join()
    return elapsed


def main() -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        proc, port, _ = start_broker(d)
        bs = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic("g", 6, 1)])["g"].result(10)
        p = Producer({"bootstrap.servers": bs})
        for i in range(60):
            p.produce("g", b"x", partition=i % 6)
        p.flush(10)
        for _ in range(args.rounds):
            for protocol in ("classic", "consumer"):
                results.setdefault(f"subscribe -> first record, {protocol} (ms)", []).append(
                    _first_record(bs, "g", protocol) * 1000)
                results.setdefault(f"3 -> 2 members rebalance, {protocol} (ms)", []).append(
                    _rebalance(bs, "g", protocol) * 1000)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(f"\ngroup benchmark: confluent-kafka, {args.rounds} rounds, medians (min-max)\n")
    for k, v in results.items():
        print(f"  {k:46s} {statistics.median(v):8.0f}   ({min(v):.0f} - {max(v):.0f})")


if __name__ == "__main__":
    main()
