"""WriteTxnMarkers (27), as an operator's admin client sends it: per
partition results, markers in the log, a stale epoch refused, the offsets
topic ended through the group coordinator; every version the codec knows."""

import socket
import time

import pytest
from kio.serial import entity_reader

from strom.protocol.build import build
from strom.protocol.schemas import encode, known_versions, request_class, response_class
from strom.records.batch import build_batch
from strom.records.record import Record
from tests.faults.test_all_versions import _frame
from tests.faults.test_bad_input import read_frame

VERSIONS = range(known_versions(27)[0], known_versions(27)[1] + 1)


def _markers(port, version, markers):
    request = build(request_class(27, version), {"markers": markers})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(_frame(27, version, encode(request), 7))
        frame = read_frame(s)
    response = entity_reader(response_class(27, version))(frame, 5)[0]
    return {(m.producer_id, t.name, p.partition_index): p.error_code
            for m in response.markers for t in m.topics for p in t.partitions}


def _marker(producer_id, epoch, commit, partitions, coordinator_epoch=0):
    topics = {}
    for topic, p in partitions:
        topics.setdefault(topic, []).append(p)
    return {"producer_id": producer_id, "producer_epoch": epoch, "transaction_result": commit,
            "coordinator_epoch": coordinator_epoch,
            "topics": [{"name": t, "partition_indexes": ps} for t, ps in topics.items()]}


def _open_txn(broker, topic, partition, producer_id, epoch=0, sequence=0):
    """A transactional batch appended on the broker's loop, as Produce does."""
    import asyncio

    batch = build_batch([Record(None, b"v", int(time.time() * 1000))], producer_id=producer_id,
                        producer_epoch=epoch, base_sequence=sequence, is_transactional=True)

    async def append():
        plog = broker.broker.logs.get_log(topic, partition)
        result = plog.append(batch)
        await broker.broker.wait_durable(plog, result.last_offset + 1)
        return plog

    return asyncio.run_coroutine_threadsafe(append(), broker._loop).result(10)


@pytest.mark.parametrize("version", VERSIONS)
def test_abort_marker_ends_the_open_transaction(broker, version):
    broker.broker.logs.create_topic("m", 2)
    plog = _open_txn(broker, "m", 0, 4001)
    assert plog.last_stable_offset == 0 and plog.high_watermark == 1
    errors = _markers(broker.port, version, [
        _marker(4001, 0, False, [("m", 0), ("m", 7), ("nope", 0)]),
        _marker(4002, 0, True, [("m", 1)]),  # no open transaction there: still a marker
    ])
    assert errors == {(4001, "m", 0): 0, (4001, "m", 7): 3, (4001, "nope", 0): 3, (4002, "m", 1): 0}
    assert plog.high_watermark == 2 and plog.last_stable_offset == 2  # marker took offset 1
    assert plog.aborted_transactions(0, 2) == [(4001, 0)]
    assert 4001 not in plog.ongoing_transactions()
    assert broker.broker.logs.get_log("m", 1).high_watermark == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_stale_epoch_is_refused_and_nothing_written(broker, version):
    broker.broker.logs.create_topic("s", 1)
    plog = _open_txn(broker, "s", 0, 4100, epoch=3)
    errors = _markers(broker.port, version, [_marker(4100, 2, False, [("s", 0)])])
    assert errors == {(4100, "s", 0): 47}  # INVALID_PRODUCER_EPOCH
    assert plog.high_watermark == 1 and plog.last_stable_offset == 0
    assert plog.ongoing_transactions() == {4100: 0}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_coordinator_epoch_this_node_never_had_is_refused(broker, version):
    """Stored, coordinator epoch 5 would fence every marker the coordinator
    (epoch 0) writes for this producer: its transactions there would stay
    open for good."""
    broker.broker.logs.create_topic("c", 1)
    plog = _open_txn(broker, "c", 0, 4200)
    assert _markers(broker.port, version, [_marker(4200, 0, True, [("c", 0)], 5)]) == {
        (4200, "c", 0): 42}  # INVALID_REQUEST
    assert plog.high_watermark == 1 and plog.ongoing_transactions() == {4200: 0}
    assert _markers(broker.port, version, [_marker(4200, 0, True, [("c", 0)], 0)]) == {
        (4200, "c", 0): 0}
    assert plog.last_stable_offset == plog.high_watermark == 2


def test_a_producer_epoch_above_its_coordinators_is_refused(broker):
    """A marker may not bump a transactional producer's epoch behind its
    coordinator's back: the producer's next batch there would be fenced."""
    import asyncio

    broker.broker.logs.create_topic("e", 1)
    txns = broker.broker.txns
    error, pid, epoch = asyncio.run_coroutine_threadsafe(
        txns.init_producer_id("marked", 60_000), broker._loop).result(10)
    assert error == 0
    plog = broker.broker.logs.get_log("e", 0)
    assert _markers(broker.port, 1, [_marker(pid, epoch + 1, False, [("e", 0)])]) == {
        (pid, "e", 0): 47}  # INVALID_PRODUCER_EPOCH
    assert plog.high_watermark == 0
    assert _markers(broker.port, 1, [_marker(pid, epoch, False, [("e", 0)])]) == {
        (pid, "e", 0): 0}


def test_commit_marker_on_the_offsets_topic_commits_pending_offsets(broker):
    from confluent_kafka import Consumer, Producer, TopicPartition

    bs = broker.bootstrap_servers
    broker.broker.logs.create_topic("in", 1)
    p = Producer({"bootstrap.servers": bs, "transactional.id": "tx-off"})
    p.init_transactions(15)
    p.begin_transaction()
    c = Consumer({"bootstrap.servers": bs, "group.id": "g-off", "enable.auto.commit": False})
    p.send_offsets_to_transaction([TopicPartition("in", 0, 9)], c.consumer_group_metadata(), 10)
    c.close()
    groups = broker.broker.groups
    assert ("in", 0) in groups.pending_txn_partitions("g-off")
    [pid] = {e["producer_id"] for e in broker.broker.logs.get_log("__consumer_offsets", 0)
             .producers() if e["current_txn_start_offset"] >= 0}
    epoch = next(e["producer_epoch"] for e in broker.broker.logs.get_log("__consumer_offsets", 0)
                 .producers() if e["producer_id"] == pid)
    errors = _markers(broker.port, VERSIONS[-1], [
        _marker(pid, epoch, True, [("__consumer_offsets", 0), ("__consumer_offsets", 5)])])
    assert errors == {(pid, "__consumer_offsets", 0): 0, (pid, "__consumer_offsets", 5): 3}
    assert groups.pending_txn_partitions("g-off") == set()
    assert groups.committed("g-off")[("in", 0)]["offset"] == 9
