"""`strom txn` (kafka-transactions.sh) and the transactional columns of
`strom group describe`, against a real broker, with real transactional
producers (confluent-kafka), as an operator runs them."""

import asyncio
import json
import subprocess
import sys
import time

from tests.cli.test_cli import strom


def _topic(bootstrap, name, partitions=2):
    strom("topic", "create", name, "-p", str(partitions), "-b", bootstrap)


def _txn_producer(bootstrap, txn_id, **extra):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 0,
                  **extra})
    p.init_transactions(15)
    return p


def _read_committed(bootstrap, topic, partition, until, timeout=20.0):
    """Values of topic-partition read with isolation.level=read_committed from
    offset 0, until `until(values)` holds (or the deadline passes)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"rc-{time.time_ns()}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    values = []
    deadline = time.monotonic() + timeout
    try:
        while not until(values) and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                values.append(m.value())
    finally:
        c.close()
    return values


def _rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_list_and_describe_follow_a_transaction(broker):
    bs = broker.bootstrap_servers
    _topic(bs, "orders")
    p = _txn_producer(bs, "tx-orders", **{"transaction.timeout.ms": 45000})
    p.begin_transaction()
    p.produce("orders", b"a", partition=0)
    p.produce("orders", b"b", partition=1)
    p.flush(10)

    listed = _rows(strom("txn", "list", "--json", "-b", bs).stdout)
    assert [(r["transactional_id"], r["state"]) for r in listed] == [("tx-orders", "Ongoing")]
    assert "tx-orders" in strom("txn", "list", "-b", bs).stdout
    ongoing = _rows(strom("txn", "describe", "--transactional-id", "tx-orders", "--json",
                          "-b", bs).stdout)[0]
    assert ongoing["state"] == "Ongoing" and ongoing["transaction_timeout_ms"] == 45000
    assert ongoing["partitions"] == "orders-0,orders-1"
    assert ongoing["producer_id"] == listed[0]["producer_id"] >= 0
    assert ongoing["transaction_start_time_ms"] > 0 and ongoing["duration_ms"] >= 0
    none_ongoing = strom("txn", "list", "--state", "CompleteCommit", "--json", "-b", bs).stdout
    assert _rows(none_ongoing) == []
    young = strom("txn", "list", "--duration-filter", "3600000", "--json", "-b", bs).stdout
    assert _rows(young) == []  # open for less than an hour

    p.commit_transaction(15)
    done = _rows(strom("txn", "describe", "tx-orders", "--json", "-b", bs).stdout)[0]
    assert done["state"] == "CompleteCommit" and done["partitions"] is None

    mixed = strom("txn", "describe", "tx-orders", "no-such-id", "-b", bs, check=False)
    assert mixed.returncode == 1 and "tx-orders" in mixed.stdout  # the known one is shown
    assert mixed.stderr.strip() == "error: unknown transactional id 'no-such-id'"


def _inject_hanging(embedded, topic, partition, producer_id, values, age_ms):
    """A transactional batch written straight into the partition, by a
    producer the transaction coordinator never heard of: the state a
    coordinator that lost its records leaves behind (Kafka's KAFKA-12671),
    which only an operator's abort can end. Run on the broker's loop, like
    every append."""
    from strom.records.batch import build_batch
    from strom.records.record import Record

    ts = int(time.time() * 1000) - age_ms
    batch = build_batch([Record(None, v, ts) for v in values], producer_id=producer_id,
                        producer_epoch=0, base_sequence=0, is_transactional=True,
                        base_timestamp=ts)

    async def append():
        plog = embedded.broker.logs.get_log(topic, partition)
        result = plog.append(batch)
        embedded.broker.notifier.notify(plog)
        await embedded.broker.wait_durable(plog, result.last_offset + 1)
        return result.base_offset

    return asyncio.run_coroutine_threadsafe(append(), embedded._loop).result(10)


def test_find_hanging_and_abort_clear_a_hanging_transaction(broker):
    bs = broker.bootstrap_servers
    _topic(bs, "payments")
    # A live transaction on payments-0: open, but its coordinator will end
    # it, so it is not hanging even with a zero timeout.
    live = _txn_producer(bs, "tx-live")
    live.begin_transaction()
    live.produce("payments", b"live", partition=0)
    live.flush(10)
    start = _inject_hanging(broker, "payments", 1, 987_654, [b"h1", b"h2"], age_ms=20 * 60_000)
    plain = _producer(bs)
    plain.produce("payments", b"after", partition=1)
    plain.flush(10)

    producers = _rows(strom("txn", "describe-producers", "-t", "payments", "-p", "1", "--json",
                            "-b", bs).stdout)
    assert {(r["producer_id"], r["current_txn_start_offset"]) for r in producers} >= {
        (987_654, start)}
    hanging = _rows(strom("txn", "find-hanging", "-t", "payments", "--json", "-b", bs).stdout)
    assert [(r["partition"], r["producer_id"], r["start_offset"]) for r in hanging] == [
        (1, 987_654, start)]
    assert hanging[0]["duration_min"] >= 19
    # the live one is older than 0 minutes, but its coordinator lists payments-0
    zero = strom("txn", "find-hanging", "--broker-id", "0", "--max-transaction-timeout", "0",
                 "--json", "-b", bs).stdout
    assert {(r["topic"], r["partition"]) for r in _rows(zero)} == {("payments", 1)}
    # read_committed readers are held at the hanging transaction's start
    assert _read_committed(bs, "payments", 1, lambda v: v, timeout=2) == []

    out = strom("txn", "abort", "-t", "payments", "-p", "1", "--start-offset", str(start), "-b", bs)
    assert "987654" in out.stdout
    assert _read_committed(bs, "payments", 1, lambda v: b"after" in v) == [b"after"]
    assert _rows(strom("txn", "find-hanging", "-t", "payments", "--json", "-b", bs).stdout) == []
    plog = broker.broker.logs.get_log("payments", 1)
    assert plog.last_stable_offset == plog.high_watermark
    again = strom("txn", "abort", "-t", "payments", "-p", "1", "--start-offset", str(start),
                  "-b", bs, check=False)
    assert again.returncode == 1
    assert "no open transaction starts at offset" in again.stderr
    live.abort_transaction(10)


def _producer(bs):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bs, "linger.ms": 0})


def test_abort_with_a_stale_epoch_is_refused_and_writes_nothing(broker):
    bs = broker.bootstrap_servers
    _topic(bs, "ledger", 1)
    p = _txn_producer(bs, "tx-ledger")
    p.begin_transaction()
    p.produce("ledger", b"x", partition=0)
    p.flush(10)
    [row] = _rows(strom("txn", "describe-producers", "-t", "ledger", "-p", "0", "--json",
                        "-b", bs).stdout)
    assert row["current_txn_start_offset"] == 0
    p.abort_transaction(10)
    p2 = _txn_producer(bs, "tx-ledger")  # same id: the epoch is bumped
    p2.begin_transaction()
    p2.produce("ledger", b"y", partition=0)
    p2.flush(10)
    [row] = _rows(strom("txn", "describe-producers", "-t", "ledger", "-p", "0", "--json",
                        "-b", bs).stdout)
    assert row["producer_epoch"] >= 1
    plog = broker.broker.logs.get_log("ledger", 0)
    end = plog.high_watermark
    stale = strom("txn", "abort", "-t", "ledger", "-p", "0", "--producer-id",
                  str(row["producer_id"]), "--producer-epoch", str(row["producer_epoch"] - 1),
                  "--coordinator-epoch", "0", "-b", bs, check=False)
    assert stale.returncode == 1 and "Traceback" not in stale.stderr
    assert stale.stderr.startswith("error: ") and "INVALID_PRODUCER_EPOCH" in stale.stderr
    assert plog.high_watermark == end and plog.last_stable_offset < end  # nothing written
    p2.commit_transaction(10)
    assert _read_committed(bs, "ledger", 0, lambda v: b"y" in v) == [b"y"]


def test_group_describe_flags_pending_transactional_offsets(broker):
    from confluent_kafka import TopicPartition

    bs = broker.bootstrap_servers
    _topic(bs, "input", 2)
    plain = _producer(bs)
    for i in range(10):
        plain.produce("input", str(i).encode(), partition=i % 2)
    plain.flush(10)
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bs, "group.id": "copier", "enable.auto.commit": False})
    c.assign([TopicPartition("input", 0, 0), TopicPartition("input", 1, 0)])
    c.commit(offsets=[TopicPartition("input", 0, 1), TopicPartition("input", 1, 1)],
             asynchronous=False)
    p = _txn_producer(bs, "tx-copier")
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition("input", 1, 4)],
                                  c.consumer_group_metadata(), 10)
    c.close()
    fresh = Consumer({"bootstrap.servers": bs, "group.id": "fresh", "enable.auto.commit": False})
    p.send_offsets_to_transaction([TopicPartition("input", 0, 2)],
                                  fresh.consumer_group_metadata(), 10)
    fresh.close()

    def table(group):
        out = strom("group", "describe", group, "-b", bs).stdout
        return {tuple(line.split()[:2]): line.split() for line in out.splitlines()
                if line.startswith("input ")}

    rows = table("copier")
    assert rows[("input", "1")][-1] == "pending" and rows[("input", "1")][2] == "1"
    assert rows[("input", "0")][-1] == "-"
    # no member, nothing committed yet: known by its pending offset alone
    assert table("fresh") == {("input", "0"): ["input", "0", "-", "5", "-", "-", "pending"]}
    p.commit_transaction(10)
    rows = table("copier")
    assert rows[("input", "1")][-1] == "-" and rows[("input", "1")][2] == "4"
    assert table("fresh")[("input", "0")][2:4] == ["2", "5"]


def test_txn_errors_are_one_line(broker):
    bs = broker.bootstrap_servers
    _topic(bs, "t", 1)
    cases = [
        (("txn", "list", "-b", "127.0.0.1:1"), "cannot reach a Kafka broker"),
        (("txn", "abort", "-t", "t", "-p", "0", "-b", bs), "--start-offset"),
        (("txn", "abort", "-t", "t", "-p", "0", "--producer-id", "5", "-b", bs),
         "--producer-epoch"),
        (("txn", "describe-producers", "-t", "nope", "-p", "0", "-b", bs), "unknown topic 'nope'"),
        (("txn", "describe-producers", "-t", "t", "-p", "3", "-b", bs), "no partition 3"),
        (("txn", "find-hanging", "-b", bs), "--topic or --broker-id"),
        (("txn", "describe", "-b", bs), "at least one transactional id"),
        (("txn", "abort", "-t", "t", "-p", "0", "--start-offset", "0", "-b", bs),
         "no open transaction starts at offset 0"),
    ]
    for args, message in cases:
        proc = strom(*args, check=False)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (
            args, proc.stderr)


def test_strom_commands_do_not_import_kafka_python():
    """kafka-python costs ~0.3 s of start-up: only `strom txn` may load it."""
    code = ("import sys; import strom.cli.main as m; m.parser(); import strom.broker; "
            "print(sorted(n for n in sys.modules if n == 'kafka' or n.startswith('kafka.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
