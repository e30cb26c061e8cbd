"""The transaction coordinator's state machine over a real LogManager in
tmp_path: Kafka's transitions and error codes, fencing, timeouts, expiry,
markers in the partitions, and replay of `__transaction_state` giving the
state that serving built (damaged records skipped)."""

import asyncio
import contextlib
import json
import logging

import pytest
from kio.schema.errors import ErrorCode

from strom.broker.notify import AppendNotifier
from strom.broker.waits import LoopWaits
from strom.coordinator import GroupCoordinator
from strom.coordinator import txn_records as rec
from strom.coordinator.records import OFFSETS_TOPIC
from strom.coordinator.transactions import TransactionCoordinator
from strom.records import Record, build_batch
from strom.records.batch import iter_batches
from strom.records.control import ABORT, COMMIT, marker_of
from strom.storage import LogManager

E = ErrorCode
TIMEOUT = 60_000


@contextlib.asynccontextmanager
async def coordinator(path, create=("t", 3), **kw):
    """A coordinator over the data directory `path`, as the broker builds it."""
    logs = await asyncio.to_thread(LogManager, str(path), maintenance_interval_s=3600)
    try:
        if create and create[0] not in logs.topics:
            logs.create_topic(*create)
        waits = LoopWaits(logs.flusher, asyncio.get_running_loop())
        groups = GroupCoordinator(logs, waits.wait)
        await groups.start()
        txns = TransactionCoordinator(logs, waits.wait, groups, AppendNotifier(), **kw)
        await txns.start()
        try:
            yield txns
        finally:
            await txns.stop()
            await groups.stop()
    finally:
        await asyncio.to_thread(logs.close)


def run(coro):
    return asyncio.run(coro)


async def settled(txns, tid, timeout=5.0):
    """Wait until `tid` has no transition in flight (markers written)."""
    async with asyncio.timeout(timeout):
        while tid in txns._pending:
            await asyncio.sleep(0.005)
    return txns.transactions[tid]


def markers(logs, topic, partition):
    """(kind, producer_id, producer_epoch) of every control batch in the partition."""
    plog = logs.get_log(topic, partition)
    data = plog.read(plog.log_start_offset, 1 << 24)
    return [(marker_of(data, pos)[0], h.producer_id, h.producer_epoch)
            for pos, h in iter_batches(data) if h.is_control]


async def begin(txns, tid="app", partitions=(("t", 0),)):
    error, pid, epoch = await txns.init_producer_id(tid, TIMEOUT)
    assert error == E.none
    added = await txns.add_partitions(tid, pid, epoch, list(partitions))
    assert set(added.values()) == {E.none}
    return pid, epoch


# -- InitProducerId -------------------------------------------------------------------


def test_init_allocates_then_bumps_the_epoch(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            error, pid, epoch = await txns.init_producer_id("app", TIMEOUT)
            assert (error, epoch) == (E.none, 0)
            assert txns.transactions["app"].state == rec.EMPTY
            assert await txns.init_producer_id("app", 5000) == (E.none, pid, 1)
            assert txns.transactions["app"].timeout_ms == 5000
            other = await txns.init_producer_id("other", TIMEOUT)
            assert other[0] == E.none and other[1] != pid
    run(body())


@pytest.mark.parametrize("tid, timeout, expected", [
    ("app", 900_001, E.invalid_transaction_timeout),
    ("app", 0, E.invalid_transaction_timeout),
    ("app", -5, E.invalid_transaction_timeout),
    ("", TIMEOUT, E.invalid_request),
])
def test_init_refusals(tmp_path, tid, timeout, expected):
    async def body():
        async with coordinator(tmp_path) as txns:
            assert await txns.init_producer_id(tid, timeout) == (expected, -1, -1)
            assert txns.transactions == {}
            assert rec.TRANSACTION_STATE_TOPIC not in txns.logs.topics  # nothing written
    run(body())


def test_init_accepts_the_max_timeout_and_honours_a_smaller_configured_max(tmp_path):
    async def body():
        async with coordinator(tmp_path, transaction_max_timeout_ms=1000) as txns:
            assert (await txns.init_producer_id("a", 1000))[0] == E.none
            assert (await txns.init_producer_id("b", 1001))[0] == E.invalid_transaction_timeout
    run(body())


def test_kip360_bumps_with_the_current_epoch_and_fences_others(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            _, pid, _ = await txns.init_producer_id("app", TIMEOUT)
            assert await txns.init_producer_id("app", TIMEOUT, pid, 0) == (E.none, pid, 1)
            # The answer was lost: the retry with the old epoch gets the same epoch.
            assert await txns.init_producer_id("app", TIMEOUT, pid, 0) == (E.none, pid, 1)
            assert await txns.init_producer_id("app", TIMEOUT, pid + 100, 1) == (
                E.producer_fenced, -1, -1)
            assert await txns.init_producer_id("app", TIMEOUT, pid, 7) == (E.producer_fenced, -1, -1)
            assert await txns.init_producer_id("app", TIMEOUT, pid, -1) == (E.invalid_request, -1, -1)
            assert await txns.init_producer_id("app", TIMEOUT, -1, 1) == (E.invalid_request, -1, -1)
            # A plain InitProducerId (a new instance) bumps and forgets the last epoch.
            assert await txns.init_producer_id("app", TIMEOUT) == (E.none, pid, 2)
            assert await txns.init_producer_id("app", TIMEOUT, pid, 1) == (E.producer_fenced, -1, -1)
    run(body())


def test_an_exhausted_epoch_rotates_the_producer_id(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            _, pid, _ = await txns.init_producer_id("app", TIMEOUT)
            from dataclasses import replace
            worn = replace(txns.transactions["app"], producer_epoch=32766)
            assert await txns._write([("app", worn)]) == E.none
            error, new_pid, epoch = await txns.init_producer_id("app", TIMEOUT, pid, 32766)
            assert (error, epoch) == (E.none, 0) and new_pid != pid
            meta = txns.transactions["app"]
            assert (meta.previous_producer_id, meta.last_producer_epoch) == (pid, 32766)
            assert txns.check_partition(pid, 32766, "t", 0) == E.invalid_producer_id_mapping
            # The retry of that rotation (answer lost) names the previous id: accepted.
            assert await txns.init_producer_id("app", TIMEOUT, pid, 32766) == (E.none, new_pid, 0)
    run(body())


# -- AddPartitions, check_partition ------------------------------------------------------


def test_add_partitions_and_the_produce_check(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            _, pid, epoch = await txns.init_producer_id("app", TIMEOUT)
            assert txns.check_partition(pid, epoch, "t", 0) == E.invalid_txn_state  # Empty
            assert await txns.add_partitions("app", pid, epoch, [("t", 0), ("t", 1)]) == {
                ("t", 0): E.none, ("t", 1): E.none}
            meta = txns.transactions["app"]
            assert meta.state == rec.ONGOING and meta.partitions == {("t", 0), ("t", 1)}
            assert meta.txn_start_timestamp > 0
            assert txns.check_partition(pid, epoch, "t", 0) == E.none
            assert txns.check_partition(pid, epoch, "t", 2) == E.invalid_txn_state
            assert txns.check_partition(pid, epoch - 1, "t", 0) == E.invalid_producer_epoch
            assert txns.check_partition(pid, epoch + 1, "t", 0) == E.invalid_producer_epoch
            assert txns.check_partition(pid + 9, epoch, "t", 0) == E.invalid_producer_id_mapping
            # Adding what is there writes nothing.
            end = txns.plog.log_end_offset
            assert (await txns.add_partitions("app", pid, epoch, [("t", 1)]))[("t", 1)] == E.none
            assert txns.plog.log_end_offset == end
            assert await txns.add_partitions("app", pid, epoch + 1, [("t", 2)]) == {
                ("t", 2): E.producer_fenced}
            assert await txns.add_partitions("app", pid + 1, epoch, [("t", 2)]) == {
                ("t", 2): E.invalid_producer_id_mapping}
            assert await txns.add_partitions("nope", pid, epoch, [("t", 2)]) == {
                ("t", 2): E.invalid_producer_id_mapping}
            assert await txns.add_partitions("", pid, epoch, [("t", 2)]) == {
                ("t", 2): E.invalid_request}
            assert txns.transactions["app"].partitions == {("t", 0), ("t", 1)}
    run(body())


def test_an_add_while_one_is_written_waits_for_it(tmp_path):
    """librdkafka sends AddOffsetsToTxn while its AddPartitionsToTxn is in
    its fsync: the second waits for the first instead of answering
    CONCURRENT_TRANSACTIONS (the client would back off retry.backoff.ms);
    EndTxn meanwhile is still concurrent."""
    async def body():
        async with coordinator(tmp_path) as txns:
            _, pid, epoch = await txns.init_producer_id("app", TIMEOUT)
            first = asyncio.ensure_future(txns.add_partitions("app", pid, epoch, [("t", 0)]))
            await asyncio.sleep(0)  # the first is waiting for its fsync
            assert "app" in txns._pending
            assert await txns.end_txn("app", pid, epoch, True) == E.concurrent_transactions
            second = asyncio.ensure_future(txns.add_offsets("app", pid, epoch, "g"))
            assert await txns.add_partitions("app", pid, epoch, [("t", 1)]) == {
                ("t", 1): E.none}
            assert await first == {("t", 0): E.none}
            assert await second == E.none
            assert txns.transactions["app"].partitions == {
                ("t", 0), ("t", 1), ("__consumer_offsets", 0)}
    run(body())


def test_verify_partitions(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns)
            assert txns.verify_partitions("app", pid, epoch, [("t", 0), ("t", 1)]) == {
                ("t", 0): E.none, ("t", 1): E.transaction_abortable}
            assert txns.verify_partitions("app", pid, epoch - 1, [("t", 0)]) == {
                ("t", 0): E.producer_fenced}
            assert txns.verify_partitions("zzz", pid, epoch, [("t", 0)]) == {
                ("t", 0): E.invalid_producer_id_mapping}
            assert txns.transactions["app"].partitions == {("t", 0)}  # nothing added
    run(body())


# -- EndTxn ---------------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_end_writes_markers_then_completes(tmp_path, commit):
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns, partitions=[("t", 0), ("t", 2)])
            assert await txns.add_offsets("app", pid, epoch, "group") == E.none
            assert txns.check_partition(pid, epoch, OFFSETS_TOPIC, 0) == E.none
            assert await txns.end_txn("app", pid, epoch, commit) == E.none
            assert txns.transactions["app"].state == (
                rec.PREPARE_COMMIT if commit else rec.PREPARE_ABORT)
            assert txns.check_partition(pid, epoch, "t", 0) == E.invalid_txn_state
            meta = await settled(txns, "app")
            assert meta.state == (rec.COMPLETE_COMMIT if commit else rec.COMPLETE_ABORT)
            assert meta.partitions == frozenset()
            kind = COMMIT if commit else ABORT
            for topic, partition in [("t", 0), ("t", 2), (OFFSETS_TOPIC, 0)]:
                assert markers(txns.logs, topic, partition) == [(kind, pid, epoch)]
            assert markers(txns.logs, "t", 1) == []
            # A retry of the same end succeeds; the contrary one is refused.
            assert await txns.end_txn("app", pid, epoch, commit) == E.none
            assert await txns.end_txn("app", pid, epoch, not commit) == E.invalid_txn_state
            assert markers(txns.logs, "t", 0) == [(kind, pid, epoch)]
            # The next transaction starts from the completed state.
            assert await txns.add_partitions("app", pid, epoch, [("t", 1)]) == {("t", 1): E.none}
            assert txns.transactions["app"].partitions == {("t", 1)}
    run(body())


def test_complete_follows_durable_markers_and_the_next_write_makes_it_durable(tmp_path):
    """Complete* is appended once every marker is durable, without an fsync
    of its own (one fewer per transaction before the next AddPartitionsToTxn);
    the id's next transition is answered only once its fsync covers it."""
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns, partitions=[("t", 0), ("t", 2)])
            assert await txns.end_txn("app", pid, epoch, True) == E.none
            assert (await settled(txns, "app")).state == rec.COMPLETE_COMMIT
            for partition in (0, 2):
                plog = txns.logs.get_log("t", partition)
                assert markers(txns.logs, "t", partition) == [(COMMIT, pid, epoch)]
                assert plog.recovery_point >= plog.log_end_offset  # the marker is durable
            complete_end = txns.plog.log_end_offset
            assert txns.plog.recovery_point < complete_end  # flush.ms: never by itself
            assert await txns.add_partitions("app", pid, epoch, [("t", 1)]) == {("t", 1): E.none}
            assert txns.plog.recovery_point >= complete_end
    run(body())


def test_end_refusals(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            _, pid, epoch = await txns.init_producer_id("app", TIMEOUT)
            assert await txns.end_txn("app", pid, epoch, True) == E.invalid_txn_state  # Empty
            assert await txns.end_txn("app", pid, epoch, False) == E.invalid_txn_state
            assert await txns.end_txn("nope", pid, epoch, True) == E.invalid_producer_id_mapping
            assert await txns.end_txn("", pid, epoch, True) == E.invalid_request
            await txns.add_partitions("app", pid, epoch, [("t", 0)])
            assert await txns.end_txn("app", pid + 1, epoch, True) == E.invalid_producer_id_mapping
            assert await txns.end_txn("app", pid, epoch - 1, True) == E.producer_fenced
            assert await txns.end_txn("app", pid, epoch + 1, True) == E.producer_fenced
            assert txns.transactions["app"].state == rec.ONGOING
            assert markers(txns.logs, "t", 0) == []
    run(body())


def test_ending_while_markers_are_written(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns)
            assert await txns.end_txn("app", pid, epoch, True) == E.none
            assert "app" in txns._pending  # the markers are being written
            assert await txns.end_txn("app", pid, epoch, True) == E.concurrent_transactions
            assert await txns.end_txn("app", pid, epoch, False) == E.concurrent_transactions
            # The next transaction's first AddPartitions waits for the markers
            # instead of sending the client into its retry backoff.
            assert await txns.add_partitions("app", pid, epoch, [("t", 1)]) == {("t", 1): E.none}
            assert markers(txns.logs, "t", 0) == [(COMMIT, pid, epoch)]
            meta = txns.transactions["app"]
            assert (meta.state, meta.partitions) == (rec.ONGOING, {("t", 1)})
    run(body())


# -- fencing and timeouts -------------------------------------------------------------------


def test_a_new_producer_fences_the_open_transaction(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns, partitions=[("t", 0), ("t", 1)])
            assert await txns.init_producer_id("app", TIMEOUT) == (
                E.concurrent_transactions, -1, -1)
            meta = await settled(txns, "app")
            assert (meta.state, meta.producer_epoch) == (rec.COMPLETE_ABORT, epoch + 1)
            assert markers(txns.logs, "t", 0) == [(ABORT, pid, epoch + 1)]
            assert markers(txns.logs, "t", 1) == [(ABORT, pid, epoch + 1)]
            # The fenced producer: every request of its epoch is refused.
            assert await txns.end_txn("app", pid, epoch, True) == E.producer_fenced
            assert await txns.add_partitions("app", pid, epoch, [("t", 0)]) == {
                ("t", 0): E.producer_fenced}
            assert txns.check_partition(pid, epoch, "t", 0) == E.invalid_producer_epoch
            # The new producer's retry gets an epoch of its own.
            assert await txns.init_producer_id("app", TIMEOUT) == (E.none, pid, epoch + 2)
    run(body())


def test_a_timed_out_transaction_is_aborted_and_its_producer_fenced(tmp_path):
    async def body():
        async with coordinator(tmp_path, abort_timed_out_interval_ms=3_600_000) as txns:
            pid, epoch = await begin(txns)
            start = txns.transactions["app"].txn_start_timestamp
            assert await txns.abort_timed_out(start + TIMEOUT) == 0  # not older than its timeout
            assert await txns.abort_timed_out(start + TIMEOUT + 1) == 1
            meta = await settled(txns, "app")
            assert (meta.state, meta.producer_epoch) == (rec.COMPLETE_ABORT, epoch + 1)
            assert markers(txns.logs, "t", 0) == [(ABORT, pid, epoch + 1)]
            assert await txns.end_txn("app", pid, epoch, True) == E.producer_fenced
            assert txns.check_partition(pid, epoch, "t", 0) == E.invalid_producer_epoch
    run(body())


def test_the_timer_aborts_without_being_asked(tmp_path):
    async def body():
        async with coordinator(tmp_path, abort_timed_out_interval_ms=20) as txns:
            _, pid, epoch = await txns.init_producer_id("app", 50)
            await txns.add_partitions("app", pid, epoch, [("t", 0)])
            async with asyncio.timeout(5):
                while txns.transactions["app"].state != rec.COMPLETE_ABORT:
                    await asyncio.sleep(0.01)
            assert markers(txns.logs, "t", 0) == [(ABORT, pid, epoch + 1)]
    run(body())


def test_idle_ids_expire_and_open_ones_do_not(tmp_path):
    async def body():
        async with coordinator(tmp_path, transactional_id_expiration_ms=1000) as txns:
            await txns.init_producer_id("idle", TIMEOUT)
            await begin(txns, "busy")
            now = txns.transactions["idle"].txn_last_update_timestamp
            assert await txns.expire_transactional_ids(now + 999) == 0
            assert await txns.expire_transactional_ids(now + 10_000) == 1
            assert set(txns.transactions) == {"busy"}
            assert txns.describe(["idle"])[0]["error_code"] == E.transactional_id_not_found
        async with coordinator(tmp_path, create=None) as txns:  # the tombstone is replayed
            assert set(txns.transactions) == {"busy"}
            error, pid, epoch = await txns.init_producer_id("idle", TIMEOUT)
            assert (error, epoch) == (E.none, 0)  # a new id, from scratch
    run(body())


# -- replay --------------------------------------------------------------------------------


def test_replay_gives_the_state_serving_built(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            a_pid, a_epoch = await begin(txns, "a", [("t", 0), ("t", 1)])
            b_pid, b_epoch = await begin(txns, "b")
            await txns.end_txn("b", b_pid, b_epoch, True)
            await settled(txns, "b")
            await txns.init_producer_id("c", 7000)
            await txns.init_producer_id("c", 7000)
            served = dict(txns.transactions)
            producers = dict(txns._by_producer)
        async with coordinator(tmp_path, create=None) as txns:
            assert txns.transactions == served
            assert txns._by_producer == producers
            assert txns.check_partition(a_pid, a_epoch, "t", 1) == E.none
    run(body())


def test_start_up_finishes_prepared_transactions(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns, partitions=[("t", 0), ("t", 1)])
            from strom.coordinator import txn_state as st
            prepared = st.end_txn(txns.transactions["app"], pid, epoch, True, True, 1)
            assert await txns._write([("app", prepared)]) == E.none  # a crash before any marker
            assert markers(txns.logs, "t", 0) == []
        async with coordinator(tmp_path, create=None) as txns:
            meta = txns.transactions["app"]
            assert meta.state == rec.COMPLETE_COMMIT  # finished before start() returned
            for partition in (0, 1):
                assert markers(txns.logs, "t", partition) == [(COMMIT, pid, epoch)]
    run(body())


def test_damaged_records_are_skipped_with_one_line(tmp_path, caplog):
    async def body():
        async with coordinator(tmp_path) as txns:
            await begin(txns, "good")
            good = dict(txns.transactions)
            value = json.loads(rec.encode_value(txns.transactions["good"].value()))
            bad = [
                (b"not json", b"{}"),
                (rec.encode_key(rec.TxnKey("x1")), b"[1]"),
                (rec.encode_key(rec.TxnKey("x2")), json.dumps({**value, "state": "Dead"}).encode()),
                (rec.encode_key(rec.TxnKey("x3")), json.dumps({**value, "producer_epoch": "1"}).encode()),
                (rec.encode_key(rec.TxnKey("x4")), json.dumps({**value, "partitions": [["t"]]}).encode()),
                (None, b"{}"),
            ]
            txns.plog.append(build_batch([Record(k, v, 1) for k, v in bad]))
            await begin(txns, "after")
            good["after"] = txns.transactions["after"]
        caplog.set_level(logging.ERROR, logger="strom.coordinator.transactions")
        async with coordinator(tmp_path, create=None) as txns:
            assert txns.transactions == good
        lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(lines) >= 4 and all(rec.TRANSACTION_STATE_TOPIC in line for line in lines)
        assert sum(int(line.split("skipped ")[1].split()[0]) for line in lines) == len(bad)
    run(body())


def test_the_state_topic_is_internal_compacted_and_its_config_restored(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            assert rec.TRANSACTION_STATE_TOPIC not in txns.logs.topics  # created on first use
            await txns.init_producer_id("app", TIMEOUT)
            topic = txns.logs.get_topic(rec.TRANSACTION_STATE_TOPIC)
            assert topic.partitions == 1
            assert topic.config.overrides["cleanup.policy"] == "compact"
            txns.logs.alter_topic_config(rec.TRANSACTION_STATE_TOPIC, {})
        async with coordinator(tmp_path, create=None) as txns:
            topic = txns.logs.get_topic(rec.TRANSACTION_STATE_TOPIC)
            assert topic.config.overrides["cleanup.policy"] == "compact"
            assert "app" in txns.transactions
    run(body())


# -- Describe / List --------------------------------------------------------------------------


def test_describe_and_list(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns, "a", [("t", 2), ("t", 0)])
            _, b_pid, _ = await txns.init_producer_id("b", 5000)
            a, b, missing, empty = txns.describe(["a", "b", "zz", ""])
            assert a["error_code"] == E.none and a["transaction_state"] == "Ongoing"
            assert (a["producer_id"], a["producer_epoch"], a["transaction_timeout"]) == (
                pid, epoch, TIMEOUT)
            assert a["topics"] == [{"topic": "t", "partitions": [0, 2]}]
            assert a["transaction_start_time"] > 0
            assert b["transaction_state"] == "Empty" and b["topics"] == []
            assert missing["error_code"] == E.transactional_id_not_found
            assert empty["error_code"] == E.invalid_request

            def names(**kw):
                out = txns.list_transactions(**kw)
                assert out["error_code"] == E.none
                return sorted(s["transactional_id"] for s in out["transaction_states"])
            assert names() == ["a", "b"]
            assert names(state_filters=["Ongoing"]) == ["a"]
            assert names(producer_id_filters=[b_pid]) == ["b"]
            assert names(duration_filter_ms=3_600_000) == ["b"]  # Empty: start -1, Kafka's arithmetic
            assert names(transactional_id_pattern="a.*") == ["a"]
            out = txns.list_transactions(state_filters=["Ongoing", "Bogus"])
            assert out["unknown_state_filters"] == ["Bogus"]
            assert txns.list_transactions(transactional_id_pattern="(")["error_code"] == (
                E.invalid_regular_expression)
    run(body())


def test_a_partition_deleted_mid_transaction_does_not_hold_it_open(tmp_path):
    async def body():
        async with coordinator(tmp_path) as txns:
            txns.logs.create_topic("gone", 1)
            pid, epoch = await begin(txns, partitions=[("t", 0), ("gone", 0)])
            await asyncio.to_thread(txns.logs.delete_topic, "gone")
            assert await txns.end_txn("app", pid, epoch, True) == E.none
            meta = await settled(txns, "app")
            assert meta.state == rec.COMPLETE_COMMIT
            assert markers(txns.logs, "t", 0) == [(COMMIT, pid, epoch)]
    run(body())
