"""Transactions benchmark against `strom serve` (disk, acks=all), with
confluent-kafka, in one run:

- transactional produce: transactions of --txn-records x 100 B records to
  one partition, one commit each, against idempotent produce of the same
  records (the baseline, measured in the same run, alternating order),
  as msg/s and their ratio (issue 13's goal: >= 0.8);
- commit latency: commit_transaction() after the transaction's records are
  flushed (EndTxn: PrepareCommit fsynced, answered; markers after), p50/p99;
- for reference, idempotent produce of the same records waiting for their
  acknowledgements every --txn-records (flush), as the transactional
  producer must before each commit: the ratio to it is what the
  transactions themselves cost (AddPartitionsToTxn, EndTxn, markers),
  without the wait for durability once per transaction;
- a consume-transform-produce copier (read_committed consumer in a group,
  transactional producer, send_offsets_to_transaction, a commit per poll of
  up to --txn-records records) from a 3-partition topic: records/s.

    python -m bench.txn [--records 200000] [--txn-records 1000] [--rounds 3] [--linger-ms 5]

Every producer (both sides, the copier) gets the same settings, printed.

Prints medians and min-max over rounds.
"""

import argparse
import signal
import statistics
import sys
import tempfile
import time

from bench.broker import quantile, start_broker

VALUE = b"x" * 100
PRODUCER = {"acks": "all", "linger.ms": 5, "batch.size": 1_000_000,
            "queue.buffering.max.messages": 2_000_000, "enable.idempotence": True}


def _create(bs: str, topics: dict[str, int]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bs})
    for fut in admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()]).values():
        fut.result(15)


def _send(p, topic: str, partition: int = 0) -> None:
    try:
        p.produce(topic, VALUE, partition=partition)
    except BufferError:
        p.poll(0.01)
        p.produce(topic, VALUE, partition=partition)


def idempotent(bs: str, topic: str, n: int) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bs, **PRODUCER})
    _send(p, topic)  # warm-up, not timed: metadata, connection, producer id
    assert p.flush(30) == 0
    t = time.perf_counter()
    for _ in range(n):
        _send(p, topic)
    assert p.flush(120) == 0
    return n / (time.perf_counter() - t)


def idempotent_flushed(bs: str, topic: str, n: int, per_txn: int) -> float:
    """Idempotent produce that waits for its acknowledgements every
    `per_txn` records."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bs, **PRODUCER})
    _send(p, topic)
    assert p.flush(30) == 0
    t = time.perf_counter()
    for start in range(0, n, per_txn):
        for _ in range(min(per_txn, n - start)):
            _send(p, topic)
        assert p.flush(60) == 0
    return n / (time.perf_counter() - t)


def transactional(bs: str, topic: str, n: int, per_txn: int, txn_id: str) -> tuple[float, list]:
    """(msg/s, commit latencies in ms)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bs, "transactional.id": txn_id, **PRODUCER})
    p.init_transactions(30)
    p.begin_transaction()  # warm-up, not timed: metadata, connection, AddPartitionsToTxn
    _send(p, topic)
    p.commit_transaction(30)
    commits = []
    t = time.perf_counter()
    for start in range(0, n, per_txn):
        p.begin_transaction()
        for _ in range(min(per_txn, n - start)):
            _send(p, topic)
        assert p.flush(60) == 0
        c = time.perf_counter()
        p.commit_transaction(60)
        commits.append((time.perf_counter() - c) * 1000)
    return n / (time.perf_counter() - t), commits


def copier(bs: str, source: str, sink: str, n: int, per_txn: int, name: str) -> float:
    """records/s of a consume-transform-produce loop copying `n` records,
    from its first record to the commit of its last."""
    from confluent_kafka import Consumer, Producer

    consumer = Consumer({"bootstrap.servers": bs, "group.id": name, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "fetch.queue.backoff.ms": 10})
    producer = Producer({"bootstrap.servers": bs, "transactional.id": name, **PRODUCER})
    producer.init_transactions(30)
    consumer.subscribe([source])
    copied, first = 0, None
    deadline = time.monotonic() + 300
    while copied < n and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(per_txn, 1.0) if not m.error()]
        if not msgs:
            continue
        if first is None:
            first = time.perf_counter()
        producer.begin_transaction()
        for m in msgs:
            try:
                producer.produce(sink, m.value(), key=m.key(), partition=m.partition())
            except BufferError:
                producer.poll(0.01)
                producer.produce(sink, m.value(), key=m.key(), partition=m.partition())
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(60)
        copied += len(msgs)
    elapsed = time.perf_counter() - first
    consumer.close()
    if copied < n:
        raise RuntimeError(f"the copier copied {copied} of {n} records in 300 s")
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--txn-records", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--linger-ms", type=int, default=PRODUCER["linger.ms"])
    args = ap.parse_args()
    PRODUCER["linger.ms"] = args.linger_ms
    n, per_txn = args.records, args.txn_records
    results: dict[str, list[float]] = {}
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        proc, port, _ = start_broker(d)
        bs = f"127.0.0.1:{port}"
        try:
            for r in range(args.rounds):
                _create(bs, {f"idem-{r}": 1, f"txn-{r}": 1, f"in-{r}": 3, f"out-{r}": 3,
                             f"flushed-{r}": 1})
                # alternate which goes first: neither always gets the warmer broker
                order = ("idem", "txn", "flushed") if r % 2 == 0 else ("flushed", "txn", "idem")
                for kind in order:
                    if kind == "idem":
                        rate = idempotent(bs, f"idem-{r}", n)
                        results.setdefault("idempotent produce (msg/s)", []).append(rate)
                    elif kind == "flushed":
                        rate = idempotent_flushed(bs, f"flushed-{r}", n, per_txn)
                        results.setdefault(f"idempotent, flush per {per_txn} (msg/s)",
                                           []).append(rate)
                    else:
                        rate, commits = transactional(bs, f"txn-{r}", n, per_txn, f"bench-{r}")
                        results.setdefault("transactional produce (msg/s)", []).append(rate)
                        results.setdefault("commit latency p50 (ms)", []).append(
                            quantile(sorted(commits), 0.5))
                        results.setdefault("commit latency p99 (ms)", []).append(
                            quantile(sorted(commits), 0.99))
                        latencies += commits
                txn, idem = (results[k][-1] for k in ("transactional produce (msg/s)",
                                                      "idempotent produce (msg/s)"))
                results.setdefault("transactional / idempotent", []).append(txn / idem)
                flushed = results[f"idempotent, flush per {per_txn} (msg/s)"][-1]
                results.setdefault(f"transactional / flush per {per_txn}", []).append(txn / flushed)
                from confluent_kafka import Producer

                p = Producer({"bootstrap.servers": bs, **PRODUCER})
                for i in range(n):
                    _send(p, f"in-{r}", i % 3)
                assert p.flush(120) == 0
                results.setdefault("copier (records/s)", []).append(
                    copier(bs, f"in-{r}", f"out-{r}", n, per_txn, f"copier-{r}"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(f"\ncommand: python -m bench.txn --records {n} --txn-records {per_txn} "
          f"--rounds {args.rounds} --linger-ms {args.linger_ms}")
    print(f"transactions benchmark: {n} x 100 B per round, transactions of {per_txn}, "
          f"confluent-kafka, acks=all, `strom serve` on disk, {args.rounds} rounds")
    print("producer settings (every producer): "
          + ", ".join(f"{k}={v}" for k, v in PRODUCER.items()) + "\n")
    for k, v in results.items():
        digits = 0 if k.endswith("/s)") else 2  # rates whole, ratios and ms to 2 places
        print(f"  {k:34s} {statistics.median(v):12,.{digits}f}   "
              f"({min(v):,.{digits}f} - {max(v):,.{digits}f})")
    ordered = sorted(latencies)
    print(f"\n  all {len(ordered)} commits: p50 {quantile(ordered, 0.5):.2f} ms, "
          f"p99 {quantile(ordered, 0.99):.2f} ms, max {ordered[-1]:.2f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
