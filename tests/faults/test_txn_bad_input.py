"""Transactional requests no real client sends, from a raw socket: the error
code Kafka answers, and nothing written: every log (the data partitions,
`__transaction_state`, `__consumer_offsets`) ends where it ended before."""

from kio.schema.errors import ErrorCode

from tests.faults.test_bad_input import assert_still_serving
from tests.faults.txn_raw import RawClient, txn_batch
from tests.integration.conftest import wait_for

TOPIC = "bad-txn"


def log_ends(broker):
    return {(plog.topic, plog.partition): plog.log_end_offset
            for plog in broker.broker.logs.all_logs()}


def started(broker, raw, transactional_id="bad", partitions=(0,)):
    """A producer with an open transaction on `partitions` of TOPIC, one
    record in each: (producer_id, producer_epoch)."""
    if TOPIC not in broker.broker.logs.topics:
        broker.broker.logs.create_topic(TOPIC, 2)
    error, pid, epoch = raw.init_producer_id(transactional_id, 30_000)
    assert error == ErrorCode.none
    if partitions:
        assert raw.add_partitions(transactional_id, pid, epoch, {TOPIC: list(partitions)}) == {
            (TOPIC, p): ErrorCode.none for p in partitions}
        for p in partitions:
            assert raw.produce(TOPIC, p, txn_batch(pid, epoch, 0, [b"in-txn"]),
                               transactional_id=transactional_id) == ErrorCode.none
    return pid, epoch


def test_produce_to_a_partition_not_in_the_transaction(broker):
    with RawClient(broker.port) as raw:
        pid, epoch = started(broker, raw, partitions=(0,))
        before = log_ends(broker)
        error = raw.produce(TOPIC, 1, txn_batch(pid, epoch, 0, [b"outside"]),
                            transactional_id="bad")
        assert error == ErrorCode.invalid_txn_state
        assert log_ends(broker) == before
        # The partition that is in the transaction still takes the next batch.
        assert raw.produce(TOPIC, 0, txn_batch(pid, epoch, 1, [b"inside"]),
                           transactional_id="bad") == ErrorCode.none
        assert log_ends(broker)[(TOPIC, 0)] == before[(TOPIC, 0)] + 1
    assert_still_serving(broker)


def test_transactional_produce_without_add_partitions(broker):
    with RawClient(broker.port) as raw:
        pid, epoch = started(broker, raw, partitions=())
        before = log_ends(broker)
        error = raw.produce(TOPIC, 0, txn_batch(pid, epoch, 0, [b"never-added"]),
                            transactional_id="bad")
        assert error == ErrorCode.invalid_txn_state
        assert log_ends(broker) == before


def test_end_txn_without_a_transaction(broker):
    with RawClient(broker.port) as raw:
        pid, epoch = started(broker, raw, partitions=())
        before = log_ends(broker)
        assert raw.end_txn("bad", pid, epoch, commit=True) == ErrorCode.invalid_txn_state
        assert raw.end_txn("bad", pid, epoch, commit=False) == ErrorCode.invalid_txn_state
        assert log_ends(broker) == before
    assert_still_serving(broker)


def test_contradictory_end_txn_after_commit(broker):
    """A retried EndTxn of a completed commit succeeds; an abort of it is
    INVALID_TXN_STATE and writes nothing."""
    with RawClient(broker.port) as raw:
        pid, epoch = started(broker, raw, partitions=(0, 1))
        assert raw.end_txn("bad", pid, epoch, commit=True) == ErrorCode.none
        plogs = [broker.broker.logs.get_log(TOPIC, p) for p in (0, 1)]
        # One record and a COMMIT marker in each, once the markers are written.
        wait_for(lambda: all(plog.last_stable_offset == plog.high_watermark == 2
                             for plog in plogs), timeout=10, message="the COMMIT markers")
        before = log_ends(broker)
        assert raw.end_txn("bad", pid, epoch, commit=True) == ErrorCode.none
        assert raw.end_txn("bad", pid, epoch, commit=False) == ErrorCode.invalid_txn_state
        assert log_ends(broker) == before


def test_stale_epoch_is_fenced(broker):
    with RawClient(broker.port) as raw:
        pid, old = started(broker, raw, partitions=(0,))
        # A new instance: the open transaction is aborted, the epoch bumped.
        error, pid2, new = wait_for(
            lambda: (r := raw.init_producer_id("bad", 30_000))[0]
            != ErrorCode.concurrent_transactions and r,
            timeout=10, message="InitProducerId past CONCURRENT_TRANSACTIONS")
        assert error == ErrorCode.none and pid2 == pid and new > old
        plog = broker.broker.logs.get_log(TOPIC, 0)
        wait_for(lambda: plog.last_stable_offset == plog.high_watermark == 2, timeout=10,
                 message="the ABORT marker")
        before = log_ends(broker)
        assert raw.add_partitions("bad", pid, old, {TOPIC: [1]}) == {
            (TOPIC, 1): ErrorCode.producer_fenced}
        assert raw.add_offsets("bad", pid, old, "some-group") == ErrorCode.producer_fenced
        assert raw.end_txn("bad", pid, old, commit=True) == ErrorCode.producer_fenced
        # Partition 0 has seen the new epoch (the ABORT marker); 1 has not,
        # but the old epoch's transaction is over either way.
        for p in (0, 1):
            error = raw.produce(TOPIC, p, txn_batch(pid, old, 1, [b"stale"]),
                                transactional_id="bad")
            assert error in (ErrorCode.invalid_producer_epoch, ErrorCode.producer_fenced), (p, error)
        assert log_ends(broker) == before
    assert_still_serving(broker)


def test_unknown_transactional_id(broker):
    broker.broker.logs.create_topic(TOPIC, 2)
    with RawClient(broker.port) as raw:
        before = log_ends(broker)
        assert raw.add_partitions("nobody", 4242, 0, {TOPIC: [0]}) == {
            (TOPIC, 0): ErrorCode.invalid_producer_id_mapping}
        assert raw.add_offsets("nobody", 4242, 0, "g") == ErrorCode.invalid_producer_id_mapping
        assert raw.end_txn("nobody", 4242, 0, commit=True) == ErrorCode.invalid_producer_id_mapping
        error = raw.produce(TOPIC, 0, txn_batch(4242, 0, 0, [b"who"]), transactional_id="nobody")
        assert error in (ErrorCode.invalid_producer_id_mapping, ErrorCode.invalid_txn_state), error
        assert log_ends(broker) == before


def test_add_partitions_with_a_wrong_producer_id(broker):
    with RawClient(broker.port) as raw:
        pid, epoch = started(broker, raw, partitions=(0,))
        before = log_ends(broker)
        assert raw.add_partitions("bad", pid + 1, epoch, {TOPIC: [1]}) == {
            (TOPIC, 1): ErrorCode.invalid_producer_id_mapping}
        assert raw.end_txn("bad", pid + 1, epoch, commit=True) == \
            ErrorCode.invalid_producer_id_mapping
        # Another producer's id in the produce itself: not its transaction.
        error = raw.produce(TOPIC, 1, txn_batch(pid + 1, epoch, 0, [b"wrong-pid"]),
                            transactional_id="bad")
        assert error in (ErrorCode.invalid_producer_id_mapping, ErrorCode.invalid_txn_state), error
        assert log_ends(broker) == before
        # The real transaction is untouched and still commits.
        assert raw.end_txn("bad", pid, epoch, commit=True) == ErrorCode.none


def test_init_producer_id_timeout_above_the_maximum(broker):
    with RawClient(broker.port) as raw:
        before = log_ends(broker)
        error, _, _ = raw.init_producer_id("too-long", 900_001)
        assert error == ErrorCode.invalid_transaction_timeout
        assert log_ends(broker) == before
