"""Crash recovery of transactions (issue 13 item 6): the broker is SIGKILLed
at each point of EndTxn (strom/crashpoints.py, STROM_CRASH_AT in the broker
process: after the Prepare* record, halfway through the markers, before the
Complete* record) and between produce and EndTxn; after a restart on the
same data every transaction is completed or aborted, the missing markers
are written, no partition's LSO is left behind its high watermark, the
committed records are there exactly once and the aborted ones never."""

import threading

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kio.schema.errors import ErrorCode

from tests.faults.txn_raw import RawClient
from tests.integration.conftest import wait_for

PARTITIONS = 3
TOPIC = "rec"
GROUP = "rec-group"


def setup(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1), NewTopic("src", 1, 1)]).values():
        f.result(10)


# librdkafka 2.16 re-bootstraps when its only broker is gone and then waits
# forever on the decommissioned broker handle its coordinator cache still
# holds: send_offsets_to_transaction after a broker restart hung past its
# timeout. Kafka clusters rarely lose every broker; these tests always do.
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}


def producer(bs, transactional_id="rec-txn"):
    p = Producer({"bootstrap.servers": bs, "transactional.id": transactional_id, "linger.ms": 1,
                  "reconnect.backoff.max.ms": 200, "retry.backoff.max.ms": 200,
                  **NO_REBOOTSTRAP})
    p.init_transactions(10)
    return p


def write(p, bs, tag, src_offset):
    """An open transaction: 5 records `tag-p-i` on every partition and the
    group's offset of `src` 0 at `src_offset`."""
    p.begin_transaction()
    for part in range(PARTITIONS):
        for i in range(5):
            p.produce(TOPIC, value=b"%s-%d-%d" % (tag, part, i), partition=part)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": bs, "group.id": GROUP})
    p.send_offsets_to_transaction([TopicPartition("src", 0, src_offset)],
                                  c.consumer_group_metadata(), 10)
    c.close()
    return {part: [b"%s-%d-%d" % (tag, part, i) for i in range(5)] for part in range(PARTITIONS)}


def end_in_background(p, commit):
    """EndTxn on a thread (the broker dies under it); its outcome in a dict.
    librdkafka retries it against the restarted broker; a retriable error
    after the timeout is retried once more."""
    outcome = {}

    def run():
        for _ in range(2):
            try:
                (p.commit_transaction if commit else p.abort_transaction)(30)
                outcome["ok"] = True
                return
            except KafkaException as e:
                outcome["error"] = e.args[0]
                if not e.args[0].retriable():
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def crash_and_restart(broker, point):
    """Wait for the broker to SIGKILL itself at `point`, then start it again
    on the same data and port without the crash point."""
    assert broker.proc.wait(20) == -9, "".join(broker.output[-30:])
    assert f"crash point {point} reached" in broker.output_text(), "".join(broker.output[-30:])
    broker.env.pop("STROM_CRASH_AT")
    broker.start()


def check_recovered(bs, port, committed, src_offset):
    """Every partition's LSO reaches its high watermark, read_committed
    shows exactly `committed` {partition: [value]}, and the group's offset
    of `src` is `src_offset` (-1: none) and stable."""
    admin = AdminClient({"bootstrap.servers": bs})
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]

    def lso_at_hwm():
        hwm = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                 isolation_level=IsolationLevel.READ_UNCOMMITTED)
        lso = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                 isolation_level=IsolationLevel.READ_COMMITTED)
        return all(hwm[tp].result(10).offset == lso[tp].result(10).offset for tp in tps)

    wait_for(lso_at_hwm, timeout=15, message="every partition's LSO at its high watermark")
    c = Consumer({"bootstrap.servers": bs, "group.id": "check", "enable.auto.commit": False,
                  "enable.partition.eof": True, "isolation.level": "read_committed"})
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got = {p: [] for p in range(PARTITIONS)}
    ends = set()
    while len(ends) < PARTITIONS:
        m = c.poll(10)
        assert m is not None, f"no end of partitions in 10 s (ends {ends}, got {got})"
        if m.error():
            assert m.error().code() == -191, m.error()  # _PARTITION_EOF
            ends.add(m.partition())
        else:
            got[m.partition()].append(m.value())
    c.close()
    assert got == committed
    with RawClient(port) as raw:
        stable = wait_for(lambda: (r := raw.offset_fetch(GROUP, [("src", 0)]))[("src", 0)][0]
                          != ErrorCode.unstable_offset_commit and r,
                          timeout=10, message="stable group offsets")
    assert stable == {("src", 0): (ErrorCode.none, src_offset)}


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
@pytest.mark.parametrize("point", ["txn.after_prepare", "txn.mid_markers", "txn.before_complete"])
def test_sigkill_at_crash_point_during_end_txn(broker_process, point, commit):
    broker = broker_process()
    broker.env["STROM_CRASH_AT"] = point
    broker.start()
    bs = broker.bootstrap_servers
    setup(bs)
    p = producer(bs)
    records = write(p, bs, b"crashed", 7)
    thread, outcome = end_in_background(p, commit)
    crash_and_restart(broker, point)
    check_recovered(bs, broker.port, records if commit else {q: [] for q in range(PARTITIONS)},
                    7 if commit else -1)
    thread.join(40)
    # A retried EndTxn of a completed transaction succeeds (clients retry it
    # after a lost connection), and the producer goes on.
    assert outcome.get("ok"), outcome
    after = write(p, bs, b"after", 9)
    p.commit_transaction(10)
    expected = {q: (records[q] if commit else []) + after[q] for q in range(PARTITIONS)}
    check_recovered(bs, broker.port, expected, 9)
    assert broker.stop() == 0


def test_sigkill_between_produce_and_end_txn_then_commit(broker_process):
    """The open transaction survives the restart (its partitions are in
    __transaction_state): the producer commits it afterwards."""
    broker = broker_process().start()
    bs = broker.bootstrap_servers
    setup(bs)
    p = producer(bs)
    records = write(p, bs, b"open", 5)
    broker.kill()
    broker.start()
    p.commit_transaction(30)
    check_recovered(bs, broker.port, records, 5)
    assert broker.stop() == 0


def test_sigkill_between_produce_and_end_txn_then_fenced(broker_process):
    """The producer never comes back; its successor's InitProducerId aborts
    the open transaction found after the restart."""
    broker = broker_process().start()
    bs = broker.bootstrap_servers
    setup(bs)
    first = producer(bs)
    write(first, bs, b"open", 5)
    broker.kill()
    broker.start()
    second = producer(bs)  # the same transactional.id
    check_recovered(bs, broker.port, {q: [] for q in range(PARTITIONS)}, -1)
    after = write(second, bs, b"next", 6)
    second.commit_transaction(10)
    check_recovered(bs, broker.port, after, 6)
    assert broker.stop() == 0


def test_sigkill_between_produce_and_end_txn_then_timed_out(broker_process):
    """Nobody comes back: the restarted broker aborts the transaction after
    its transaction.timeout.ms."""
    broker = broker_process()
    broker.env["STROM_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS"] = "100"
    broker.start()
    bs = broker.bootstrap_servers
    setup(bs)
    p = Producer({"bootstrap.servers": bs, "transactional.id": "rec-timeout", "linger.ms": 1,
                  "transaction.timeout.ms": 2000, **NO_REBOOTSTRAP})
    p.init_transactions(10)
    write(p, bs, b"open", 5)
    broker.kill()
    broker.start()
    check_recovered(bs, broker.port, {q: [] for q in range(PARTITIONS)}, -1)
    assert broker.stop() == 0
