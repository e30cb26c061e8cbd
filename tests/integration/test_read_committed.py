"""read_committed over loopback: Fetch stops at the last stable offset and
names the aborted transactions, ListOffsets answers the LSO, a parked
read_committed Fetch answers when the LSO moves (not when an open
transaction grows), and real read_committed consumers (librdkafka,
kafka-python, aiokafka) never surface a control record or an aborted one.

The partition is written the way the transaction coordinator and Produce
write it (transactional batches, then PartitionLog.append_marker and a
notify), on the broker's loop, so these tests pin the read side alone;
tests/integration/test_txn_*.py drive whole transactions through clients.

Layout of the partition every test starts from:
    0-1 plain        a0 a1
    2-3 producer 1   c0 c1   4 COMMIT
    5-6 producer 2   x0 x1   7 ABORT
    8   plain        a2
    9   producer 3   o0      (open: the LSO is 9)
"""

import asyncio
import shutil
import socket
import subprocess
import threading
import time

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from strom.embedded import EmbeddedBroker
from strom.protocol.build import build
from strom.protocol.schemas import encode, request_class, response_class
from strom.records import Record, build_batch
from strom.records.batch import iter_batches

from tests.faults.test_bad_input import read_frame, request_bytes
from tests.integration.conftest import wait_for

TOPIC = "rc"
EPOCH = 0
VISIBLE = [b"a0", b"a1", b"c0", b"c1", b"a2"]


@pytest.fixture
def broker(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk") as b:
        b.broker.logs.create_topic(TOPIC, 1)
        writer = Writer(b)
        writer.plain(b"a0", b"a1")
        writer.txn(1, b"c0", b"c1")
        writer.end(1, commit=True)
        writer.txn(2, b"x0", b"x1")
        writer.end(2, commit=False)
        writer.plain(b"a2")
        writer.txn(3, b"o0")
        b.writer = writer
        yield b


class Writer:
    """Appends to partition 0 on the broker's loop and notifies, as
    Produce and the transaction coordinator do."""

    def __init__(self, embedded):
        self.embedded = embedded
        self.plog = embedded.broker.logs.get_log(TOPIC, 0)
        self.sequences: dict[int, int] = {}
        # Ahead of the markers' (append time) timestamps, so that timestamp
        # lookups find data batches only.
        self.timestamp = int(time.time() * 1000) + 3_600_000

    def _on_loop(self, fn):
        async def call():
            result = fn()
            self.embedded.broker.notifier.notify(self.plog)
            return result
        return asyncio.run_coroutine_threadsafe(call(), self.embedded._loop).result(10)

    def _records(self, values):
        self.timestamp += 1
        return [Record(None, v, self.timestamp) for v in values]

    def plain(self, *values):
        return self._on_loop(lambda: self.plog.append(build_batch(self._records(values))))

    def txn(self, producer_id, *values):
        sequence = self.sequences.get(producer_id, 0)
        self.sequences[producer_id] = sequence + len(values)
        batch = build_batch(self._records(values), producer_id=producer_id,
                            producer_epoch=EPOCH, base_sequence=sequence, is_transactional=True)
        return self._on_loop(lambda: self.plog.append(batch))

    def end(self, producer_id, commit):
        return self._on_loop(lambda: self.plog.append_marker(producer_id, EPOCH, commit, 0))


def _call(port, api_key, version, values, timeout=10):
    request = build(request_class(api_key, version), values)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes(api_key, version, encode(request)))
        frame = read_frame(s)
    cls = response_class(api_key, version)
    return entity_reader(cls)(frame, 5 if cls.__flexible__ else 4)[0]


def fetch(broker, isolation_level, offset=0, version=12, max_wait=0, min_bytes=1, timeout=10):
    response = _call(broker.port, 1, version, {
        "replica_id": -1, "max_wait": max_wait, "min_bytes": min_bytes, "max_bytes": 1 << 20,
        "isolation_level": isolation_level, "topics": [{
            "topic": TOPIC, "topic_id": broker.broker.logs.topics[TOPIC].topic_id,
            "partitions": [{"partition": 0, "fetch_offset": offset,
                            "partition_max_bytes": 1 << 20}]}]}, timeout)
    [topic] = response.responses
    [part] = topic.partitions
    return part


def batches(part):
    """(base_offset, last_offset, is_control) of the batches a Fetch returned."""
    data = part.records or b""
    return [(h.base_offset, h.last_offset, h.is_control) for _, h in iter_batches(data)]


def list_offset(broker, isolation_level, timestamp):
    response = _call(broker.port, 2, 7, {
        "replica_id": -1, "isolation_level": isolation_level, "topics": [{
            "name": TOPIC, "partitions": [{"partition_index": 0, "timestamp": timestamp}]}]})
    [part] = response.topics[0].partitions
    assert part.error_code == ErrorCode.none
    return part.offset


@pytest.mark.parametrize("version", [4, 11, 12, 16])
def test_fetch_read_committed_stops_at_the_lso_with_the_aborted_transactions(broker, version):
    part = fetch(broker, 1, version=version)
    assert (part.high_watermark, part.last_stable_offset) == (10, 9)
    assert batches(part) == [(0, 1, False), (2, 3, False), (4, 4, True), (5, 6, False),
                             (7, 7, True), (8, 8, False)]
    assert [(a.producer_id, a.first_offset) for a in part.aborted_transactions] == [(2, 5)]
    # From past the aborted transaction it is no longer listed.
    part = fetch(broker, 1, offset=8, version=version)
    assert batches(part) == [(8, 8, False)] and list(part.aborted_transactions) == []
    # At the LSO: nothing yet, and an empty list (not null), as Kafka answers.
    part = fetch(broker, 1, offset=9, version=version)
    assert batches(part) == [] and part.aborted_transactions == ()
    assert part.error_code == ErrorCode.none


def test_fetch_read_uncommitted_is_unchanged(broker):
    part = fetch(broker, 0)
    # The hot path does not look the LSO up: clients read it only at read_committed.
    assert (part.high_watermark, part.last_stable_offset) == (10, 10)
    assert batches(part)[-1] == (9, 9, False)  # the open transaction's batch too
    assert part.aborted_transactions is None  # null at read_uncommitted, as Kafka


def test_fetch_read_committed_out_of_range_is_still_an_error(broker):
    assert fetch(broker, 1, offset=11).error_code == ErrorCode.offset_out_of_range


def test_list_offsets_read_committed_answers_the_lso(broker):
    assert list_offset(broker, 1, -1) == 9
    assert list_offset(broker, 0, -1) == 10
    open_ts = broker.writer.timestamp  # o0, in the open transaction
    assert list_offset(broker, 0, open_ts) == 9
    assert list_offset(broker, 1, open_ts) == -1  # at or past the LSO: nothing yet
    assert list_offset(broker, 1, open_ts - 1) == 8  # a2, below the LSO
    assert list_offset(broker, 0, -3) == 9
    assert list_offset(broker, 1, -3) == -1


def _parked(broker):
    plog = broker.writer.plog
    return lambda: broker.broker.notifier._waiters.get(plog)


def test_a_parked_read_committed_fetch_answers_when_the_lso_moves(broker):
    result = {}

    def reader():
        start = time.monotonic()
        result["part"] = fetch(broker, 1, offset=9, max_wait=20000, timeout=30)
        result["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=reader)
    t.start()
    wait_for(_parked(broker), message="the fetch to park")
    # A write inside the open transaction wakes the fetch, which must park
    # again: nothing more is stable.
    broker.writer.txn(3, b"o1")
    wait_for(_parked(broker), message="the fetch to park again")
    assert "part" not in result
    broker.writer.end(3, commit=True)
    t.join(15)
    assert not t.is_alive()
    part = result["part"]
    assert result["elapsed"] < 15  # answered by the marker, not by max_wait
    assert part.last_stable_offset == part.high_watermark == 12
    assert batches(part) == [(9, 9, False), (10, 10, False), (11, 11, True)]


def _expected_after_commit():
    return VISIBLE + [b"o0"]


def consume_confluent(bootstrap, count, deadline_s=20):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rc-confluent",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(TOPIC, 0, 0)])

    def take(n, until):
        out = []
        while len(out) < n and time.monotonic() < until:
            m = c.poll(0.1)
            if m is not None:
                assert not m.error(), m.error()
                out.append((m.offset(), m.value()))
        return out
    return c, take


def consume_kafka_python(bootstrap, count, deadline_s=20):
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      isolation_level="read_committed")
    tp = TopicPartition(TOPIC, 0)
    c.assign([tp])
    c.seek(tp, 0)

    def take(n, until):
        out = []
        while len(out) < n and time.monotonic() < until:
            for msgs in c.poll(timeout_ms=100).values():
                out += [(m.offset, m.value) for m in msgs]
        return out
    return c, take


class _AioConsumer:
    """aiokafka on its own loop thread, driven synchronously."""

    def __init__(self, bootstrap):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 isolation_level="read_committed")
            await c.start()
            tp = TopicPartition(TOPIC, 0)
            c.assign([tp])
            c.seek(tp, 0)
            return c
        self.c = self.run(start())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def take(self, n, until):
        async def go():
            out = []
            while len(out) < n and time.monotonic() < until:
                for msgs in (await self.c.getmany(timeout_ms=100)).values():
                    out += [(m.offset, m.value) for m in msgs]
            return out
        return self.run(go())

    def close(self):
        self.run(self.c.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def consume_aiokafka(bootstrap, count, deadline_s=20):
    consumer = _AioConsumer(bootstrap)
    return consumer, consumer.take


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_read_committed_consumers_skip_aborted_and_control_records(broker, client):
    make = {"confluent": consume_confluent, "kafka-python": consume_kafka_python,
            "aiokafka": consume_aiokafka}[client]
    consumer, take = make(broker.bootstrap_servers, len(VISIBLE))
    try:
        got = take(len(VISIBLE), time.monotonic() + 20)
        assert [v for _, v in got] == VISIBLE
        assert [o for o, _ in got] == [0, 1, 2, 3, 8]
        # The open transaction holds the reader back: o0 (offset 9) is not
        # delivered, however long it polls, until the transaction ends.
        assert take(1, time.monotonic() + 1.0) == []
        broker.writer.end(3, commit=True)
        broker.writer.plain(b"a3")
        got = take(2, time.monotonic() + 20)
        assert got == [(9, b"o0"), (11, b"a3")]
    finally:
        consumer.close()


def test_a_read_committed_group_consumer_waits_for_pending_transactional_offsets(broker):
    """librdkafka's read_committed consumer sends OffsetFetch with
    require_stable: while the group's offset is pending in a transaction
    it gets UNSTABLE_OFFSET_COMMIT and retries, rather than starting from
    auto.offset.reset; after the commit marker it starts at that offset."""
    from confluent_kafka import Consumer, TopicPartition

    groups = broker.broker.groups

    def on_loop(coro):
        return asyncio.run_coroutine_threadsafe(coro, broker._loop).result(10)

    errors = on_loop(groups.txn_commit("rc-group", 7, 0, "", -1, None, [(TOPIC, 0, 8, -1, "")]))
    assert errors == {(TOPIC, 0): ErrorCode.none}
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "rc-group",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(TOPIC, 0)])  # from the committed offset
        m = c.poll(1.5)
        assert m is None, (m.offset(), m.value())  # not from earliest: the offset is unstable
        on_loop(groups.complete_txn(7, 0, True, 0))
        deadline = time.monotonic() + 20
        while m is None and time.monotonic() < deadline:
            m = c.poll(0.2)
        assert m is not None and not m.error()
        assert (m.offset(), m.value()) == (8, b"a2")
    finally:
        c.close()


def _transactional_producer(bootstrap, transactional_id):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                  "linger.ms": 5})
    p.init_transactions(20)
    return p


def _send(p, topic, values):
    for v in values:
        p.produce(topic, value=v, partition=0)
    assert p.flush(20) == 0


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_a_transactional_producers_aborts_and_open_transaction_through_each_reader(tmp_path,
                                                                                  client):
    """librdkafka's transactional producer commits, aborts, and leaves one
    transaction open; each client's read_committed consumer gets exactly
    the committed records, and the open one only after its commit."""
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk") as b:
        b.broker.logs.create_topic(TOPIC, 1)
        p = _transactional_producer(b.bootstrap_servers, "rc-e2e")
        p.begin_transaction()
        _send(p, TOPIC, [b"c0", b"c1"])
        p.commit_transaction(20)
        p.begin_transaction()
        _send(p, TOPIC, [b"x0", b"x1", b"x2"])
        p.abort_transaction(20)
        p.begin_transaction()
        _send(p, TOPIC, [b"c2"])
        p.commit_transaction(20)
        p.begin_transaction()
        _send(p, TOPIC, [b"o0"])  # left open
        make = {"confluent": consume_confluent, "kafka-python": consume_kafka_python,
                "aiokafka": consume_aiokafka}[client]
        consumer, take = make(b.bootstrap_servers, 3)
        try:
            got = take(3, time.monotonic() + 20)
            assert [v for _, v in got] == [b"c0", b"c1", b"c2"]
            assert take(1, time.monotonic() + 1.0) == []  # held back by the open transaction
            p.commit_transaction(20)
            got = take(1, time.monotonic() + 20)
            assert [v for _, v in got] == [b"o0"]
        finally:
            consumer.close()


def test_send_offsets_to_transaction_pending_until_commit(broker):
    """send_offsets_to_transaction (AddOffsetsToTxn + TxnOffsetCommit):
    the group's offset is UNSTABLE for require_stable readers while the
    transaction is open, absent for everyone else, then committed."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient

    p = _transactional_producer(broker.bootstrap_servers, "rc-offsets")
    p.begin_transaction()
    _send(p, TOPIC, [b"out"])
    # A group that exists (the metadata is all librdkafka needs here).
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "rc-copier"})
    metadata = c.consumer_group_metadata()
    c.close()
    p.send_offsets_to_transaction([TopicPartition(TOPIC, 0, 5)], metadata, 20)
    groups = broker.broker.groups
    assert groups.pending_txn_partitions("rc-copier") == {(TOPIC, 0)}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})

    def committed_offset(require_stable):
        request = [ConsumerGroupTopicPartitions("rc-copier", [TopicPartition(TOPIC, 0)])]
        future = admin.list_consumer_group_offsets(request, require_stable=require_stable,
                                                   request_timeout=10)["rc-copier"]
        [tp] = future.result(15).topic_partitions
        return tp.offset, tp.error

    offset, error = committed_offset(False)
    assert offset < 0 and error is None  # not committed yet
    offset, error = committed_offset(True)
    assert error is not None and error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT
    p.commit_transaction(20)
    # EndTxn is answered before the markers are written: stable soon after.
    wait_for(lambda: committed_offset(True) == (5, None), timeout=15,
             message="the committed offset once the marker is written")
    assert groups.committed("rc-copier")[(TOPIC, 0)]["offset"] == 5
    assert groups.pending_txn_partitions("rc-copier") == set()


def test_describe_producers_shows_the_open_transaction(broker):
    """DescribeProducers (KIP-664): the producers of the partition, with the
    first offset of producer 3's open transaction (what holds the LSO)."""
    response = _call(broker.port, 61, 0, {"topics": [
        {"name": TOPIC, "partition_indexes": [0, 5]},
        {"name": "no-such-topic", "partition_indexes": [0]},
        {"name": "bad/name", "partition_indexes": [0]}]})
    [ours, unknown, bad] = response.topics
    [p0, p5] = ours.partitions
    assert p0.error_code == ErrorCode.none
    producers = {p.producer_id: p for p in p0.active_producers}
    assert set(producers) == {1, 2, 3}
    assert [producers[i].current_txn_start_offset for i in (1, 2, 3)] == [-1, -1, 9]
    assert producers[3].last_sequence == 0 and producers[1].last_sequence == 1
    assert all(p.producer_epoch == EPOCH for p in producers.values())
    assert p5.error_code == ErrorCode.unknown_topic_or_partition and not p5.active_producers
    assert unknown.partitions[0].error_code == ErrorCode.unknown_topic_or_partition
    assert bad.partitions[0].error_code == ErrorCode.invalid_topic_exception


def test_shutdown_answers_a_parked_read_committed_fetch_at_once(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk") as b:
        b.broker.logs.create_topic(TOPIC, 1)
        b.writer = writer = Writer(b)
        writer.txn(1, b"o0")  # open: a read_committed fetch from 0 parks
        result = {}

        def reader():
            try:
                result["part"] = fetch(b, 1, offset=0, max_wait=30000, timeout=40)
            except ConnectionError as e:
                result["error"] = e

        t = threading.Thread(target=reader)
        t.start()
        wait_for(_parked(b), message="the fetch to park")
        start = time.monotonic()
        b.stop()
        stopped_in = time.monotonic() - start
        t.join(10)
    assert stopped_in < 3  # not held by the parked fetch (stop aborts after 5 s)
    assert batches(result["part"]) == [] and result["part"].last_stable_offset == 0


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_read_committed(broker):
    """Debian's kcat (an older librdkafka): read_committed to the end of
    what is stable, without the aborted records, the markers or the open
    transaction."""
    out = subprocess.run(
        ["kcat", "-C", "-b", broker.bootstrap_servers, "-t", TOPIC, "-p", "0", "-o", "beginning",
         "-e", "-q", "-f", "%o %s\\n", "-X", "isolation.level=read_committed"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:-1] == ["0 a0", "1 a1", "2 c0", "3 c1", "8 a2"]
