"""Transactions over loopback: confluent-kafka's transactional producer
against the real broker (commit, abort, fencing, timeout), and raw
requests for the bad cases a client will not send (EndTxn without a
transaction, a stale epoch, an unknown transactional id, a transactional
batch for a partition not in the transaction). Markers are checked in the
partition logs themselves: read_committed is another part's."""

import datetime
import struct
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from strom.embedded import EmbeddedBroker
from strom.protocol.build import build
from strom.protocol.schemas import encode, request_class
from strom.records import Record, build_batch
from strom.records.batch import iter_batches
from strom.records.control import ABORT, COMMIT, marker_of
from tests.faults.test_bad_input import call, connect, read_frame, request_bytes
from tests.integration.conftest import wait_for

E = ErrorCode


@pytest.fixture
def txn_broker(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), storage="disk",
                        **{"transaction.abort.timed.out.transaction.cleanup.interval.ms": 100}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        admin.create_topics([NewTopic("t", 2, 1)])["t"].result(10)
        yield b


def batches(broker, topic="t", partition=0):
    """(is_control, marker kind or None, producer_id, producer_epoch, record count)."""
    plog = broker.broker.logs.get_log(topic, partition)
    data = plog.read(plog.log_start_offset, 1 << 24) if plog.log_end_offset else b""
    return [(h.is_control, marker_of(data, pos)[0] if h.is_control else None,
             h.producer_id, h.producer_epoch, h.records_count)
            for pos, h in iter_batches(data)]


def txn_state(broker, tid):
    meta = broker.broker.txns.transactions.get(tid)
    return None if meta is None else meta.state


def producer(broker, tid, **extra):
    return Producer({"bootstrap.servers": broker.bootstrap_servers, "transactional.id": tid,
                     "linger.ms": 5, **extra})


def test_commit_writes_the_data_then_a_commit_marker(txn_broker):
    p = producer(txn_broker, "copier")
    p.init_transactions(10)
    p.begin_transaction()
    for i in range(20):
        p.produce("t", value=b"v%d" % i, partition=i % 2)
    p.commit_transaction(10)  # answered once PrepareCommit is durable; markers follow
    wait_for(lambda: txn_state(txn_broker, "copier") == "CompleteCommit", message="markers")
    meta = txn_broker.broker.txns.transactions["copier"]
    for partition in (0, 1):
        got = batches(txn_broker, partition=partition)
        assert sum(n for control, _, _, _, n in got if not control) == 10
        assert got[-1][:4] == (True, COMMIT, meta.producer_id, meta.producer_epoch)
        assert all(pid == meta.producer_id for _, _, pid, _, _ in got)
    # A second transaction on the same producer, to one partition only.
    p.begin_transaction()
    p.produce("t", value=b"again", partition=1)
    p.commit_transaction(10)
    wait_for(lambda: txn_state(txn_broker, "copier") == "CompleteCommit", message="markers")
    assert [k for c, k, *_ in batches(txn_broker, partition=0) if c] == [COMMIT]
    assert [k for c, k, *_ in batches(txn_broker, partition=1) if c] == [COMMIT, COMMIT]


def test_abort_writes_an_abort_marker(txn_broker):
    p = producer(txn_broker, "aborter")
    p.init_transactions(10)
    p.begin_transaction()
    for i in range(5):
        p.produce("t", value=b"doomed", partition=0)
    p.flush(10)
    p.abort_transaction(10)
    wait_for(lambda: txn_state(txn_broker, "aborter") == "CompleteAbort", message="markers")
    got = batches(txn_broker)
    assert got[-1][:2] == (True, ABORT)
    assert sum(n for control, _, _, _, n in got if not control) == 5
    assert txn_state(txn_broker, "aborter") == "CompleteAbort"
    # The producer goes on with a committed transaction after the abort.
    p.begin_transaction()
    p.produce("t", value=b"kept", partition=0)
    p.commit_transaction(10)
    wait_for(lambda: txn_state(txn_broker, "aborter") == "CompleteCommit", message="markers")
    assert [k for c, k, *_ in batches(txn_broker) if c] == [ABORT, COMMIT]


def test_a_second_producer_fences_the_first(txn_broker):
    first = producer(txn_broker, "shared")
    first.init_transactions(10)
    first.begin_transaction()
    first.produce("t", value=b"before", partition=0)
    first.flush(10)
    old = txn_broker.broker.txns.transactions["shared"]

    second = producer(txn_broker, "shared")
    second.init_transactions(10)  # aborts the first's transaction, then gets its epoch
    fenced_epoch = old.producer_epoch + 1
    assert txn_broker.broker.txns.transactions["shared"].producer_epoch == fenced_epoch + 1
    assert batches(txn_broker)[-1][:4] == (True, ABORT, old.producer_id, fenced_epoch)
    end = txn_broker.broker.logs.get_log("t", 0).log_end_offset

    first.produce("t", value=b"zombie", partition=0)
    with pytest.raises(KafkaException) as e:
        first.commit_transaction(10)
    error = e.value.args[0]
    assert error.fatal(), error
    assert error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                            KafkaError.INVALID_PRODUCER_EPOCH), error
    # Nothing the fenced producer sent afterwards reached the log.
    assert txn_broker.broker.logs.get_log("t", 0).log_end_offset == end

    second.begin_transaction()
    second.produce("t", value=b"winner", partition=0)
    second.commit_transaction(10)
    wait_for(lambda: txn_state(txn_broker, "shared") == "CompleteCommit", message="markers")
    got = batches(txn_broker)
    assert got[-1][:4] == (True, COMMIT, old.producer_id, fenced_epoch + 1)
    assert not [b for b in got if not b[0] and b[3] == old.producer_epoch
                and got.index(b) > 1]  # no data of the fenced epoch after the abort


def test_a_stalled_transaction_is_aborted_after_its_timeout(txn_broker):
    p = producer(txn_broker, "staller", **{"transaction.timeout.ms": 1000})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("t", value=b"stalled", partition=0)
    p.flush(10)
    epoch = txn_broker.broker.txns.transactions["staller"].producer_epoch
    wait_for(lambda: txn_state(txn_broker, "staller") == "CompleteAbort", timeout=10,
             message="the coordinator's abort")
    assert batches(txn_broker)[-1][:2] == (True, ABORT)
    assert batches(txn_broker)[-1][3] == epoch + 1  # fenced
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_init_with_a_timeout_above_the_max_is_refused(txn_broker):
    p = producer(txn_broker, "greedy", **{"transaction.timeout.ms": 900_001})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(10)
    assert e.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, e.value
    assert txn_state(txn_broker, "greedy") is None


# -- raw requests: what a client will not send --------------------------------------------


def find_coordinator(broker, key, version=3):
    return call(broker, 10, version, build(request_class(10, version),
                                           {"key": key, "key_type": 1}))


def init(broker, tid, timeout_ms=60_000, version=4):
    r = call(broker, 22, version, build(request_class(22, version), {
        "transactional_id": tid, "transaction_timeout": timeout_ms,
        "producer_id": -1, "producer_epoch": -1}))
    return r.error_code, r.producer_id, r.producer_epoch


def add_partitions(broker, tid, pid, epoch, partitions, version=3):
    topics = {}
    for topic, partition in partitions:
        topics.setdefault(topic, []).append(partition)
    r = call(broker, 24, version, build(request_class(24, version), {
        "v3_and_below_transactional_id": tid, "v3_and_below_producer_id": pid,
        "v3_and_below_producer_epoch": epoch,
        "v3_and_below_topics": [{"name": t, "partitions": ps} for t, ps in topics.items()]}))
    return {(t.name, p.partition_index): p.partition_error_code
            for t in r.results_by_topic_v3_and_below for p in t.results_by_partition}


def end_txn(broker, tid, pid, epoch, commit=True, version=3):
    return call(broker, 26, version, build(request_class(26, version), {
        "transactional_id": tid, "producer_id": pid, "producer_epoch": epoch,
        "committed": commit})).error_code


def produce_txn(broker, pid, epoch, partition=0, sequence=0, tid="raw"):
    batch = build_batch([Record(b"k", b"v", int(time.time() * 1000))], producer_id=pid,
                        producer_epoch=epoch, base_sequence=sequence, is_transactional=True)
    r = call(broker, 0, 9, build(request_class(0, 9), {
        "transactional_id": tid, "acks": -1, "timeout": datetime.timedelta(seconds=5),
        "topic_data": [{"name": "t", "partition_data": [{"index": partition, "records": batch}]}]}))
    return r.responses[0].partition_responses[0].error_code


def test_find_coordinator_for_a_transactional_id(txn_broker):
    for version in (1, 3):
        r = find_coordinator(txn_broker, "any", version)
        assert (r.error_code, r.node_id, r.port) == (E.none, 0, txn_broker.port)
    r = call(txn_broker, 10, 4, build(request_class(10, 4), {"key_type": 1,
                                                              "coordinator_keys": ["a", "b"]}))
    assert [(c.key, c.error_code, c.port) for c in r.coordinators] == [
        ("a", E.none, txn_broker.port), ("b", E.none, txn_broker.port)]
    r = call(txn_broker, 10, 4, build(request_class(10, 4), {"key_type": 2,
                                                              "coordinator_keys": ["s"]}))
    assert r.coordinators[0].error_code == E.invalid_request


def test_end_txn_without_a_transaction(txn_broker):
    error, pid, epoch = init(txn_broker, "raw")
    assert error == E.none
    assert end_txn(txn_broker, "raw", pid, epoch, True) == E.invalid_txn_state
    assert end_txn(txn_broker, "raw", pid, epoch, False) == E.invalid_txn_state
    assert txn_state(txn_broker, "raw") == "Empty"
    assert batches(txn_broker) == []


def test_unknown_transactional_id(txn_broker):
    assert end_txn(txn_broker, "ghost", 5, 0) == E.invalid_producer_id_mapping
    assert add_partitions(txn_broker, "ghost", 5, 0, [("t", 0)]) == {
        ("t", 0): E.invalid_producer_id_mapping}
    # kio cannot read the -1 start time Kafka sends for it: the error code
    # is the first field of the first state (after throttle and array length).
    body = encode(build(request_class(65, 0), {"transactional_ids": ["ghost"]}))
    with connect(txn_broker) as s:
        s.sendall(request_bytes(65, 0, body))
        frame = read_frame(s)
    assert struct.unpack_from(">h", frame, 5 + 4 + 1)[0] == E.transactional_id_not_found
    assert produce_txn(txn_broker, 12345, 0) == E.invalid_producer_id_mapping
    assert batches(txn_broker) == []


def test_a_stale_epoch_is_refused_everywhere(txn_broker):
    _, pid, old = init(txn_broker, "raw")
    _, same_pid, epoch = init(txn_broker, "raw")
    assert (same_pid, epoch) == (pid, old + 1)
    assert add_partitions(txn_broker, "raw", pid, old, [("t", 0)]) == {("t", 0): E.producer_fenced}
    # Versions before PRODUCER_FENCED existed get INVALID_PRODUCER_EPOCH, as from Kafka.
    assert add_partitions(txn_broker, "raw", pid, old, [("t", 0)], version=1) == {
        ("t", 0): E.invalid_producer_epoch}
    assert add_partitions(txn_broker, "raw", pid, epoch, [("t", 0)]) == {("t", 0): E.none}
    assert produce_txn(txn_broker, pid, old) == E.invalid_producer_epoch
    assert end_txn(txn_broker, "raw", pid, old) == E.producer_fenced
    assert end_txn(txn_broker, "raw", pid, old, version=1) == E.invalid_producer_epoch
    assert batches(txn_broker) == []  # the log is unchanged
    assert produce_txn(txn_broker, pid, epoch) == E.none
    assert end_txn(txn_broker, "raw", pid, epoch) == E.none
    wait_for(lambda: txn_state(txn_broker, "raw") == "CompleteCommit", message="commit")
    assert [b[:2] for b in batches(txn_broker)] == [(False, None), (True, COMMIT)]
    assert end_txn(txn_broker, "raw", pid, epoch) == E.none  # a retry of the commit
    assert end_txn(txn_broker, "raw", pid, epoch, False) == E.invalid_txn_state


def test_transactional_produce_to_a_partition_not_added(txn_broker):
    _, pid, epoch = init(txn_broker, "raw")
    assert produce_txn(txn_broker, pid, epoch, partition=0) == E.invalid_txn_state  # no txn
    assert add_partitions(txn_broker, "raw", pid, epoch, [("t", 1)]) == {("t", 1): E.none}
    assert produce_txn(txn_broker, pid, epoch, partition=0) == E.invalid_txn_state
    assert batches(txn_broker, partition=0) == []
    assert produce_txn(txn_broker, pid, epoch, partition=1) == E.none
    assert len(batches(txn_broker, partition=1)) == 1


def test_add_partitions_refuses_unknown_and_internal_topics_as_a_whole(txn_broker):
    _, pid, epoch = init(txn_broker, "raw")
    assert add_partitions(txn_broker, "raw", pid, epoch, [("t", 0), ("t", 7), ("nope", 0)]) == {
        ("t", 0): E.operation_not_attempted, ("t", 7): E.unknown_topic_or_partition,
        ("nope", 0): E.unknown_topic_or_partition}
    assert add_partitions(txn_broker, "raw", pid, epoch, [("t", 0), ("__consumer_offsets", 0)]) == {
        ("t", 0): E.operation_not_attempted, ("__consumer_offsets", 0): E.topic_authorization_failed}
    assert txn_state(txn_broker, "raw") == "Empty"


def test_batched_add_partitions_adds_and_verifies(txn_broker):
    _, pid, epoch = init(txn_broker, "raw")
    request = build(request_class(24, 5), {"transactions": [
        {"transactional_id": "raw", "producer_id": pid, "producer_epoch": epoch,
         "verify_only": False, "topics": [{"name": "t", "partitions": [0]}]}]})
    r = call(txn_broker, 24, 5, request)
    assert r.error_code == E.none
    assert r.results_by_transaction[0].topic_results[0].results_by_partition[0].partition_error_code == E.none
    request = build(request_class(24, 5), {"transactions": [
        {"transactional_id": "raw", "producer_id": pid, "producer_epoch": epoch,
         "verify_only": True, "topics": [{"name": "t", "partitions": [0, 1]}]},
        {"transactional_id": "ghost", "producer_id": 99, "producer_epoch": 0,
         "verify_only": True, "topics": [{"name": "t", "partitions": [0]}]}]})
    r = call(txn_broker, 24, 5, request)
    verified = {(t.transactional_id, p.partition_index): p.partition_error_code
                for t in r.results_by_transaction for topic in t.topic_results
                for p in topic.results_by_partition}
    assert verified == {("raw", 0): E.none, ("raw", 1): E.transaction_abortable,
                        ("ghost", 0): E.invalid_producer_id_mapping}
    assert txn_broker.broker.txns.transactions["raw"].partitions == {("t", 0)}


def test_add_offsets_and_describe_and_list(txn_broker):
    _, pid, epoch = init(txn_broker, "raw")
    r = call(txn_broker, 25, 3, build(request_class(25, 3), {
        "transactional_id": "raw", "producer_id": pid, "producer_epoch": epoch, "group_id": "g"}))
    assert r.error_code == E.none
    r = call(txn_broker, 65, 0, build(request_class(65, 0), {"transactional_ids": ["raw"]}))
    state = r.transaction_states[0]
    assert (state.error_code, state.transaction_state, state.producer_id) == (E.none, "Ongoing", pid)
    assert [(t.topic, list(t.partitions)) for t in state.topics] == [("__consumer_offsets", [0])]
    assert state.transaction_timeout == datetime.timedelta(seconds=60)
    for version in (0, 1, 2):
        r = call(txn_broker, 66, version, build(request_class(66, version),
                                                {"state_filters": ["Ongoing"]}))
        assert r.error_code == E.none
        assert [(s.transactional_id, s.producer_id) for s in r.transaction_states] == [("raw", pid)]
    assert end_txn(txn_broker, "raw", pid, epoch, False) == E.none
    wait_for(lambda: txn_state(txn_broker, "raw") == "CompleteAbort", message="abort")
    assert [b[:2] for b in batches(txn_broker, "__consumer_offsets")][-1] == (True, ABORT)


def test_a_transactional_batch_must_be_alone_in_its_partition_data(txn_broker):
    _, pid, epoch = init(txn_broker, "raw")
    assert add_partitions(txn_broker, "raw", pid, epoch, [("t", 0)]) == {("t", 0): E.none}
    plain = build_batch([Record(b"k", b"v", 1)])
    txn = build_batch([Record(b"k", b"v", 1)], producer_id=pid, producer_epoch=epoch,
                      base_sequence=0, is_transactional=True)
    for records in (plain + txn, txn + txn):
        r = call(txn_broker, 0, 9, build(request_class(0, 9), {
            "transactional_id": "raw", "acks": -1, "timeout": datetime.timedelta(seconds=5),
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": records}]}]}))
        assert r.responses[0].partition_responses[0].error_code == E.invalid_record
    assert batches(txn_broker) == []


def test_kafka_python_and_aiokafka_transactional_producers(txn_broker):
    """Older request versions (InitProducerId v1, AddPartitions/EndTxn v0-1)."""
    import asyncio

    from aiokafka import AIOKafkaProducer
    from kafka import KafkaProducer

    kp = KafkaProducer(bootstrap_servers=txn_broker.bootstrap_servers, transactional_id="kp")
    kp.init_transactions()
    kp.begin_transaction()
    kp.send("t", b"kp", partition=0)
    kp.commit_transaction()
    kp.close()

    async def aio():
        p = AIOKafkaProducer(bootstrap_servers=txn_broker.bootstrap_servers,
                             transactional_id="aio")
        await p.start()
        try:
            await p.begin_transaction()
            await p.send_and_wait("t", b"aio", partition=1)
            await p.abort_transaction()
        finally:
            await p.stop()
    asyncio.run(aio())
    wait_for(lambda: txn_state(txn_broker, "kp") == "CompleteCommit", message="kafka-python commit")
    wait_for(lambda: txn_state(txn_broker, "aio") == "CompleteAbort", message="aiokafka abort")
    kp_pid = txn_broker.broker.txns.transactions["kp"].producer_id
    aio_pid = txn_broker.broker.txns.transactions["aio"].producer_id
    assert [b[:3] for b in batches(txn_broker, partition=0)] == [(False, None, kp_pid),
                                                                 (True, COMMIT, kp_pid)]
    assert [b[:3] for b in batches(txn_broker, partition=1)] == [(False, None, aio_pid),
                                                                 (True, ABORT, aio_pid)]
