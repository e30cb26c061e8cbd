"""Kafka's transaction semantics as real clients see them: aborted records
reach read_uncommitted readers only, an open transaction holds
read_committed readers at the LSO, a second producer with the same
transactional.id fences the first, the broker aborts a transaction older
than its timeout, and transactional offsets stay pending until the
transaction ends."""

import asyncio
import json
import time

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kio.schema.errors import ErrorCode

from strom.embedded import EmbeddedBroker
from tests.faults.txn_raw import RawClient
from tests.integration.conftest import wait_for

END = b"end"  # the last record, committed: a reader that has it has everything before


def create_topic(bs, name, partitions=1):
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def txn_producer(bs, transactional_id, **config):
    p = Producer({"bootstrap.servers": bs, "transactional.id": transactional_id,
                  "linger.ms": 1, **config})
    p.init_transactions(10)
    return p


def produce_in_txn(p, topic, values, commit, partition=0):
    p.begin_transaction()
    for v in values:
        p.produce(topic, key=v, value=v, partition=partition)
    assert p.flush(10) == 0
    if commit:
        p.commit_transaction(10)
    else:
        p.abort_transaction(10)


def plain_produce(bs, topic, values, partition=0):
    p = Producer({"bootstrap.servers": bs, "linger.ms": 1})
    for v in values:
        p.produce(topic, key=v, value=v, partition=partition)
    assert p.flush(10) == 0


def latest(bs, topic, isolation, partition=0):
    """ListOffsets latest: the high watermark, or the LSO for read_committed."""
    admin = AdminClient({"bootstrap.servers": bs})
    tp = TopicPartition(topic, partition)
    result = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation)
    return result[tp].result(10).offset


# -- readers: every record of partition 0 up to END, as [(offset, key, value)] -----------

def read_confluent(bs, topic, isolation):
    c = Consumer({"bootstrap.servers": bs, "group.id": "r", "enable.auto.commit": False,
                  "isolation.level": isolation})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 10
    try:
        while not out or out[-1][2] != END:
            assert time.monotonic() < deadline, f"no {END!r} in 10 s; got {out}"
            m = c.poll(0.2)
            if m is None:
                continue
            assert not m.error(), m.error()
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def read_kafka_python(bs, topic, isolation):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, isolation_level=isolation)
    tp = KTP(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    out = []
    deadline = time.monotonic() + 10
    try:
        while not out or out[-1][2] != END:
            assert time.monotonic() < deadline, f"no {END!r} in 10 s; got {out}"
            for msgs in c.poll(timeout_ms=200).values():
                out += [(m.offset, m.key, m.value) for m in msgs]
    finally:
        c.close()
    return out


def read_aiokafka(bs, topic, isolation):
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False,
                             isolation_level=isolation)
        await c.start()
        out = []
        try:
            tp = ATP(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            deadline = time.monotonic() + 10
            while not out or out[-1][2] != END:
                assert time.monotonic() < deadline, f"no {END!r} in 10 s; got {out}"
                for msgs in (await c.getmany(timeout_ms=200)).values():
                    out += [(m.offset, m.key, m.value) for m in msgs]
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


READERS = {"confluent": read_confluent, "kafka-python": read_kafka_python,
           "aiokafka": read_aiokafka}


# -- aborts --------------------------------------------------------------------------

@pytest.mark.parametrize("reader", sorted(READERS))
def test_aborted_records_reach_only_read_uncommitted_readers(broker, reader):
    bs = broker.bootstrap_servers
    create_topic(bs, "aborts")
    p = txn_producer(bs, "aborter")
    committed1 = [b"c1-%d" % i for i in range(5)]
    aborted = [b"a-%d" % i for i in range(5)]
    committed2 = [b"c2-%d" % i for i in range(4)] + [END]
    produce_in_txn(p, "aborts", committed1, commit=True)
    produce_in_txn(p, "aborts", aborted, commit=False)
    produce_in_txn(p, "aborts", committed2, commit=True)

    got = READERS[reader](bs, "aborts", "read_committed")
    assert [v for _, _, v in got] == committed1 + committed2
    everything = READERS[reader](bs, "aborts", "read_uncommitted")
    assert [v for _, _, v in everything] == committed1 + aborted + committed2
    # Each transaction's marker takes the offset after its records and is
    # never handed to the application (no record with the marker's key).
    assert [o for o, _, _ in everything] == [*range(0, 5), *range(6, 11), *range(12, 17)]
    assert [o for o, _, _ in got] == [*range(0, 5), *range(12, 17)]
    assert latest(bs, "aborts", IsolationLevel.READ_COMMITTED) == 18
    assert latest(bs, "aborts", IsolationLevel.READ_UNCOMMITTED) == 18


def test_open_transaction_holds_read_committed_readers_at_its_first_offset(broker):
    bs = broker.bootstrap_servers
    create_topic(bs, "lso")
    plain_produce(bs, "lso", [b"before"])                  # offset 0
    p = txn_producer(bs, "holder")
    p.begin_transaction()
    for v in (b"open-0", b"open-1"):                       # offsets 1, 2
        p.produce("lso", value=v, partition=0)
    assert p.flush(10) == 0
    plain_produce(bs, "lso", [b"after"])                   # offset 3, past the open txn
    assert latest(bs, "lso", IsolationLevel.READ_UNCOMMITTED) == 4
    assert latest(bs, "lso", IsolationLevel.READ_COMMITTED) == 1

    stats = {}

    def on_stats(text):
        part = json.loads(text)["topics"].get("lso", {}).get("partitions", {}).get("0", {})
        stats.update(ls_offset=part.get("ls_offset"), hi_offset=part.get("hi_offset"))

    c = Consumer({"bootstrap.servers": bs, "group.id": "r", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "fetch.wait.max.ms": 50,
                  "statistics.interval.ms": 100, "stats_cb": on_stats})
    c.assign([TopicPartition("lso", 0, 0)])
    seen = []

    def poll_until(predicate):
        m = c.poll(0.05)
        if m is not None and not m.error():
            seen.append(m.value())
        return predicate()

    # librdkafka's statistics show what its last Fetch answered: LSO 1 and
    # high watermark 4 while the transaction is open, and it hands out
    # nothing past the LSO.
    wait_for(lambda: poll_until(lambda: seen == [b"before"]), timeout=10, message="'before'")
    wait_for(lambda: poll_until(lambda: stats.get("ls_offset") == 1
                                and stats.get("hi_offset") == 4),
             timeout=10, message=f"a Fetch answering LSO 1, high watermark 4 (stats {stats})")
    assert seen == [b"before"]
    p.commit_transaction(10)
    wait_for(lambda: poll_until(lambda: len(seen) == 4), timeout=10, message="the rest")
    c.close()
    assert seen == [b"before", b"open-0", b"open-1", b"after"]
    assert latest(bs, "lso", IsolationLevel.READ_COMMITTED) == 5  # 4 records and a marker


# -- fencing -------------------------------------------------------------------------

FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def test_second_producer_fences_the_first(broker):
    bs = broker.bootstrap_servers
    create_topic(bs, "fence")
    first = txn_producer(bs, "fenced-id")
    first.begin_transaction()
    first.produce("fence", value=b"first-open", partition=0)
    assert first.flush(10) == 0

    second = txn_producer(bs, "fenced-id")  # bumps the epoch, aborts first's transaction
    produce_in_txn(second, "fence", [b"second", END], commit=True)

    with pytest.raises(KafkaException) as raised:
        first.produce("fence", value=b"first-late", partition=0)
        first.flush(10)
        first.commit_transaction(10)
    err = raised.value.args[0]
    assert err.fatal() and err.code() in FENCED, err

    assert [v for _, _, v in read_confluent(bs, "fence", "read_committed")] == [b"second", END]
    everything = [v for _, _, v in read_confluent(bs, "fence", "read_uncommitted")]
    assert everything[0] == b"first-open" and b"first-late" not in everything, everything
    # The fenced producer left nothing open: the LSO is the high watermark.
    hwm = latest(bs, "fence", IsolationLevel.READ_UNCOMMITTED)
    assert latest(bs, "fence", IsolationLevel.READ_COMMITTED) == hwm


def test_second_producer_fences_the_first_kafka_python(broker):
    from kafka import KafkaProducer
    from kafka.errors import InvalidProducerEpochError, KafkaError as KPError, ProducerFencedError

    bs = broker.bootstrap_servers
    create_topic(bs, "fence-kp")
    first = KafkaProducer(bootstrap_servers=bs, transactional_id="fenced-kp")
    first.init_transactions()
    first.begin_transaction()
    first.send("fence-kp", value=b"first-open", partition=0).get(10)
    second = KafkaProducer(bootstrap_servers=bs, transactional_id="fenced-kp")
    second.init_transactions()
    second.begin_transaction()
    for v in (b"second", END):
        second.send("fence-kp", value=v, partition=0)
    second.commit_transaction()
    with pytest.raises(KPError) as raised:
        first.send("fence-kp", value=b"first-late", partition=0).get(10)
        first.commit_transaction()
    assert isinstance(raised.value, (ProducerFencedError, InvalidProducerEpochError)) or \
        isinstance(getattr(raised.value, "__cause__", None),
                   (ProducerFencedError, InvalidProducerEpochError)), repr(raised.value)
    first.close(timeout=5)
    second.close(timeout=5)
    assert [v for _, _, v in read_confluent(bs, "fence-kp", "read_committed")] == [b"second", END]
    everything = [v for _, _, v in read_confluent(bs, "fence-kp", "read_uncommitted")]
    assert b"first-late" not in everything, everything


def test_fenced_producer_cannot_write_with_its_old_epoch(broker):
    """The broker itself refuses the old epoch (the client may give up
    before sending): InitProducerId again bumps the epoch, and the old
    epoch's AddPartitions and EndTxn are fenced."""
    broker.broker.logs.create_topic("fence-raw", 1)
    with RawClient(broker.port) as raw:
        error, pid, epoch = raw.init_producer_id("raw-fenced", 10_000)
        assert error == ErrorCode.none
        assert raw.add_partitions("raw-fenced", pid, epoch, {"fence-raw": [0]}) == {
            ("fence-raw", 0): ErrorCode.none}
        # Kafka answers CONCURRENT_TRANSACTIONS while it aborts the open
        # transaction, and may bump the epoch twice (fence, then init).
        again = wait_for(lambda: (r := raw.init_producer_id("raw-fenced", 10_000))[0]
                         != ErrorCode.concurrent_transactions and r,
                         timeout=10, message="InitProducerId past CONCURRENT_TRANSACTIONS")
        assert again[0] == ErrorCode.none and again[1] == pid and again[2] > epoch, again
        assert raw.add_partitions("raw-fenced", pid, epoch, {"fence-raw": [0]}) == {
            ("fence-raw", 0): ErrorCode.producer_fenced}
        assert raw.end_txn("raw-fenced", pid, epoch, True) == ErrorCode.producer_fenced


# -- timeout -------------------------------------------------------------------------

@pytest.fixture
def fast_abort_broker(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk", **{
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 100}) as b:
        yield b


def test_timed_out_transaction_is_aborted_and_its_producer_fenced(fast_abort_broker):
    bs = fast_abort_broker.bootstrap_servers
    create_topic(bs, "stall")
    stalled = txn_producer(bs, "staller", **{"transaction.timeout.ms": 2000})
    stalled.begin_transaction()
    stalled.produce("stall", value=b"stalled", partition=0)
    assert stalled.flush(10) == 0
    plain_produce(bs, "stall", [b"after", END])
    assert latest(bs, "stall", IsolationLevel.READ_COMMITTED) == 0  # held by the stalled txn

    # The broker aborts it after ~2 s: read_committed readers move on.
    started = time.monotonic()
    got = [v for _, _, v in read_confluent(bs, "stall", "read_committed")]
    assert got == [b"after", END]
    assert time.monotonic() - started < 6
    hwm = latest(bs, "stall", IsolationLevel.READ_UNCOMMITTED)
    assert hwm == 4  # stalled, after, end and the ABORT marker (wherever it fell)
    assert latest(bs, "stall", IsolationLevel.READ_COMMITTED) == hwm

    with pytest.raises(KafkaException) as raised:
        stalled.commit_transaction(10)
    err = raised.value.args[0]
    assert err.fatal() and err.code() in FENCED, err
    assert [v for _, _, v in read_confluent(bs, "stall", "read_committed")] == [b"after", END]


# -- offsets -------------------------------------------------------------------------

def _group_metadata(bs, group):
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    return c, c.consumer_group_metadata()


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_transactional_offsets_are_pending_until_the_transaction_ends(broker, commit):
    bs = broker.bootstrap_servers
    create_topic(bs, "in")
    create_topic(bs, "out")
    plain_produce(bs, "in", [b"x"] * 50)
    consumer, metadata = _group_metadata(bs, "txn-group")
    consumer.commit(offsets=[TopicPartition("in", 0, 10)], asynchronous=False)

    p = txn_producer(bs, "offsets")
    p.begin_transaction()
    p.produce("out", value=b"copied", partition=0)
    p.send_offsets_to_transaction([TopicPartition("in", 0, 42)], metadata, 10)
    assert p.flush(10) == 0
    with RawClient(broker.port) as raw:
        assert raw.offset_fetch("txn-group", [("in", 0)], require_stable=True) == {
            ("in", 0): (ErrorCode.unstable_offset_commit, -1)}
        # Without require_stable the last stable commit is answered.
        assert raw.offset_fetch("txn-group", [("in", 0)], require_stable=False) == {
            ("in", 0): (ErrorCode.none, 10)}
        if commit:
            p.commit_transaction(10)
        else:
            p.abort_transaction(10)
        # The markers are written after EndTxn is answered: unstable until then.
        stable = wait_for(lambda: (r := raw.offset_fetch("txn-group", [("in", 0)]))[("in", 0)][0]
                          != ErrorCode.unstable_offset_commit and r,
                          timeout=10, message="a stable offset")
        assert stable == {("in", 0): (ErrorCode.none, 42 if commit else 10)}

    admin = AdminClient({"bootstrap.servers": bs})
    request = ConsumerGroupTopicPartitions("txn-group", [TopicPartition("in", 0)])
    result = admin.list_consumer_group_offsets([request], require_stable=True)
    answer = result["txn-group"].result(10).topic_partitions[0]
    assert answer.error is None and answer.offset == (42 if commit else 10)
    assert consumer.committed([TopicPartition("in", 0)], 10)[0].offset == (42 if commit else 10)
    consumer.close()
