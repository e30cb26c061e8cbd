"""Transactional offsets in the group coordinator, over a real LogManager
in tmp_path: pending until the producer's marker, committed by COMMIT,
dropped by ABORT, and rebuilt exactly by a restart that replays
`__consumer_offsets` (data and control batches). UNSTABLE_OFFSET_COMMIT
through a real broker and a raw OffsetFetch."""

import asyncio
import socket

from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from strom.coordinator import GroupCoordinator
from strom.coordinator.group import EMPTY, Group, Member
from strom.coordinator.records import OFFSETS_TOPIC
from strom.embedded import EmbeddedBroker
from strom.protocol.build import build
from strom.protocol.schemas import encode, request_class, response_class
from strom.records.batch import iter_batches
from strom.broker.waits import LoopWaits
from strom.storage import LogManager

from tests.faults.test_bad_input import read_frame, request_bytes

PID, EPOCH = 4000, 3


def run(tmp_path, body):
    """Run `body(coordinator, logs)` on a fresh event loop over the data in
    tmp_path (a restart when called again), closing everything after."""
    async def main():
        logs = LogManager(str(tmp_path / "data"))
        try:
            waits = LoopWaits(logs.flusher, asyncio.get_running_loop())
            groups = GroupCoordinator(logs, waits.wait)
            await groups.start()
            try:
                return await body(groups, logs)
            finally:
                await groups.stop()
        finally:
            logs.close()
    return asyncio.run(main())


def offsets(*entries):
    return [(topic, partition, offset, -1, "m") for topic, partition, offset in entries]


def committed(groups, group="g"):
    return {tp: v["offset"] for tp, v in groups.committed(group).items()}


async def txn_commit(groups, *entries, pid=PID, group="g", member="", generation=-1,
                     instance=None):
    return await groups.txn_commit(group, pid, EPOCH, member, generation, instance,
                                   offsets(*entries))


def test_pending_until_commit_marker_then_committed(tmp_path):
    async def body(groups, logs):
        errors = await txn_commit(groups, ("in", 0, 10), ("in", 1, 20))
        assert errors == {("in", 0): ErrorCode.none, ("in", 1): ErrorCode.none}
        assert groups.pending_txn_partitions("g") == {("in", 0), ("in", 1)}
        assert committed(groups) == {}
        plog = logs.get_log(OFFSETS_TOPIC, 0)
        [(_, header)] = list(iter_batches(plog.read(0, 1 << 20)))
        assert header.is_transactional and not header.is_control
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (PID, EPOCH, -1)
        await groups.complete_txn(PID, EPOCH, True, 0)
        assert groups.pending_txn_partitions("g") == set()
        assert committed(groups) == {("in", 0): 10, ("in", 1): 20}
    run(tmp_path, body)


def test_abort_drops_pending_and_keeps_the_previous_commit(tmp_path):
    async def body(groups, logs):
        assert await groups.commit("g", offsets(("in", 0, 5))) == ErrorCode.none
        await txn_commit(groups, ("in", 0, 10))
        assert committed(groups) == {("in", 0): 5}
        await groups.complete_txn(PID, EPOCH, False, 0)
        assert groups.pending_txn_partitions("g") == set()
        assert committed(groups) == {("in", 0): 5}
    run(tmp_path, body)


def test_a_marker_ends_only_its_own_producers_offsets(tmp_path):
    async def body(groups, logs):
        await txn_commit(groups, ("in", 0, 10), pid=1)
        await txn_commit(groups, ("in", 1, 20), pid=2)
        await groups.complete_txn(1, EPOCH, True, 0)
        assert committed(groups) == {("in", 0): 10}
        assert groups.pending_txn_partitions("g") == {("in", 1)}
        await groups.complete_txn(1, EPOCH, True, 0)  # a duplicate marker is harmless
        assert groups.pending_txn_partitions("g") == {("in", 1)}
    run(tmp_path, body)


def test_a_plain_commit_written_after_the_txn_offset_wins(tmp_path):
    # As Kafka: the committed offset is the one whose record is later in the log.
    async def body(groups, logs):
        await txn_commit(groups, ("in", 0, 10))
        assert await groups.commit("g", offsets(("in", 0, 7))) == ErrorCode.none
        await groups.complete_txn(PID, EPOCH, True, 0)
        assert committed(groups) == {("in", 0): 7}
    run(tmp_path, body)
    assert run(tmp_path, _committed) == {("in", 0): 7}


async def _committed(groups, logs):
    return committed(groups)


def test_restart_rebuilds_pending_committed_and_aborted_offsets(tmp_path):
    async def before(groups, logs):
        await txn_commit(groups, ("in", 0, 10), pid=1)   # committed
        await groups.complete_txn(1, EPOCH, True, 0)
        await txn_commit(groups, ("in", 1, 20), pid=2)   # aborted
        await groups.complete_txn(2, EPOCH, False, 0)
        await txn_commit(groups, ("in", 2, 30), pid=3)   # still open
        return committed(groups), groups.pending_txn_partitions("g")

    async def after(groups, logs):
        state = committed(groups), groups.pending_txn_partitions("g")
        await groups.complete_txn(3, EPOCH, True, 0)  # the coordinator finishes it
        return state, committed(groups)

    state = run(tmp_path, before)
    assert state == ({("in", 0): 10}, {("in", 2)})
    assert run(tmp_path, after) == (state, {("in", 0): 10, ("in", 2): 30})
    assert run(tmp_path, _committed) == {("in", 0): 10, ("in", 2): 30}


def test_offset_delete_removes_pending_offsets_too(tmp_path):
    async def body(groups, logs):
        await txn_commit(groups, ("in", 0, 10))
        result = await groups.delete_offsets("g", [("in", 0)])
        assert result["error"] == ErrorCode.none
        assert groups.pending_txn_partitions("g") == set()
        await groups.complete_txn(PID, EPOCH, True, 0)
        return committed(groups)
    assert run(tmp_path, body) == {}
    assert run(tmp_path, _committed) == {}


def test_kip447_member_generation_and_instance_checks(tmp_path):
    async def body(groups, logs):
        group = groups.groups["g"] = Group("g")
        group.generation = 4
        member = Member("m-1", "inst-1", "c", "h", 10000, 10000, "consumer", [("range", b"")])
        group.members["m-1"] = member
        group.static["inst-1"] = "m-1"
        group.state = "Stable"
        checks = {
            "ok": dict(member="m-1", generation=4, instance="inst-1"),
            "unknown member": dict(member="m-2", generation=4),
            "old generation": dict(member="m-1", generation=3),
            "fenced instance": dict(member="m-2", generation=4, instance="inst-1"),
            "unknown instance": dict(member="m-1", generation=4, instance="inst-9"),
            "v0-2: no member": dict(),
        }
        got = {}
        for name, kw in checks.items():
            got[name] = (await txn_commit(groups, ("in", 0, 1), **kw))[("in", 0)]
        got["unknown group"] = (await txn_commit(groups, ("in", 0, 1), group="nobody",
                                                 member="m", generation=1))[("in", 0)]
        got["empty group id"] = (await txn_commit(groups, ("in", 0, 1), group=""))[("in", 0)]
        group.members.clear()
        group.state = EMPTY
        got["empty group, generation -1"] = (await txn_commit(groups, ("in", 0, 1)))[("in", 0)]
        return got
    assert run(tmp_path, body) == {
        "ok": ErrorCode.none,
        "unknown member": ErrorCode.unknown_member_id,
        "old generation": ErrorCode.illegal_generation,
        "fenced instance": ErrorCode.fenced_instance_id,
        "unknown instance": ErrorCode.unknown_member_id,
        "v0-2: no member": ErrorCode.none,
        "unknown group": ErrorCode.illegal_generation,
        "empty group id": ErrorCode.invalid_group_id,
        "empty group, generation -1": ErrorCode.none,
    }


def _offset_fetch(port, version, require_stable, partitions=(0, 1)):
    values = {"group_id": "g", "require_stable": require_stable,
              "topics": [{"name": "in", "partition_indexes": list(partitions)}]}
    if version >= 8:
        values = {"require_stable": require_stable, "groups": [
            {"group_id": "g", "topics": values["topics"]}]}
    request = build(request_class(9, version), values)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request_bytes(9, version, encode(request)))
        frame = read_frame(s)
    cls = response_class(9, version)
    response = entity_reader(cls)(frame, 5 if cls.__flexible__ else 4)[0]
    if version >= 8:
        [group] = response.groups
        return group.error_code, {p.partition_index: (p.error_code, p.committed_offset)
                                  for t in group.topics for p in t.partitions}
    return response.error_code, {p.partition_index: (p.error_code, p.committed_offset)
                                 for t in response.topics for p in t.partitions}


def test_offset_fetch_require_stable_answers_unstable_offset_commit(tmp_path):
    with EmbeddedBroker(data_dir=str(tmp_path / "b"), storage="disk") as b:
        b.broker.logs.create_topic("in", 2)

        def on_loop(coro):
            return asyncio.run_coroutine_threadsafe(coro, b._loop).result(10)

        groups = b.broker.groups
        assert on_loop(groups.commit("g", offsets(("in", 1, 3)))) == ErrorCode.none
        on_loop(txn_commit(groups, ("in", 0, 10)))
        for version in (7, 8, 9):
            assert _offset_fetch(b.port, version, True) == (
                ErrorCode.none, {0: (ErrorCode.unstable_offset_commit, -1), 1: (ErrorCode.none, 3)})
            # Without require_stable the committed offset (none yet) is answered.
            assert _offset_fetch(b.port, version, False) == (
                ErrorCode.none, {0: (ErrorCode.none, -1), 1: (ErrorCode.none, 3)})
        on_loop(groups.complete_txn(PID, EPOCH, True, 0))
        for version in (7, 8):
            assert _offset_fetch(b.port, version, True) == (
                ErrorCode.none, {0: (ErrorCode.none, 10), 1: (ErrorCode.none, 3)})


def test_a_fenced_epoch_is_refused_by_the_offsets_partition(tmp_path):
    async def body(groups, logs):
        await txn_commit(groups, ("in", 0, 10))
        await groups.complete_txn(PID, EPOCH + 1, False, 0)  # fenced: aborted with a bumped epoch
        end = logs.get_log(OFFSETS_TOPIC, 0).log_end_offset
        stale = await txn_commit(groups, ("in", 0, 11))  # the old producer, epoch EPOCH
        assert stale == {("in", 0): ErrorCode.invalid_producer_epoch}
        assert logs.get_log(OFFSETS_TOPIC, 0).log_end_offset == end  # nothing written
        assert groups.pending_txn_partitions("g") == set()
        await groups.complete_txn(PID, EPOCH, True, 0)  # a stale marker is dropped, not raised
        assert logs.get_log(OFFSETS_TOPIC, 0).log_end_offset == end
        return committed(groups)
    assert run(tmp_path, body) == {}


def test_offsets_larger_than_the_offsets_topic_takes_are_invalid_commit_offset_size(tmp_path):
    async def body(groups, logs):
        big = [("in", p, 1, -1, "m" * 4000) for p in range(300)]  # ~1.2 MB > max.message.bytes
        errors = await groups.txn_commit("g", PID, EPOCH, "", -1, None, big)
        assert set(errors.values()) == {ErrorCode.invalid_commit_offset_size}
        assert logs.get_log(OFFSETS_TOPIC, 0).log_end_offset == 0
        assert groups.pending_txn_partitions("g") == set()
        plain = await groups.commit("g", [(t, p, o, e, m) for t, p, o, e, m in big])
        assert plain == ErrorCode.invalid_commit_offset_size
    run(tmp_path, body)


def _raw(port, api_key, version, values):
    request = build(request_class(api_key, version), values)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request_bytes(api_key, version, encode(request)))
        frame = read_frame(s)
    cls = response_class(api_key, version)
    return entity_reader(cls)(frame, 5 if cls.__flexible__ else 4)[0]


def _txn_offset_commit(port, version, producer_id, producer_epoch, partitions, metadata=""):
    response = _raw(port, 28, version, {
        "transactional_id": "raw-txn", "group_id": "raw-group", "producer_id": producer_id,
        "producer_epoch": producer_epoch, "generation_id": -1, "member_id": "",
        "topics": [{"name": t, "partitions": [
            {"partition_index": p, "committed_offset": 42, "committed_leader_epoch": -1,
             "committed_metadata": metadata} for p in ps]} for t, ps in partitions]})
    return {(t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions}


def test_txn_offset_commit_handler_checks_the_transaction_first(tmp_path):
    """TxnOffsetCommit over the wire, every version: without the group's
    offsets in an open transaction (AddOffsetsToTxn) it is refused and
    nothing is written; unknown partitions and oversized metadata are
    refused per partition; after AddOffsetsToTxn the offsets are pending."""
    with EmbeddedBroker(data_dir=str(tmp_path / "b"), storage="disk") as b:
        b.broker.logs.create_topic("in", 2)
        init = _raw(b.port, 22, 1, {"transactional_id": "raw-txn", "transaction_timeout": 60000})
        assert init.error_code == ErrorCode.none
        pid, epoch = init.producer_id, init.producer_epoch
        groups = b.broker.groups
        for version in range(6):
            assert _txn_offset_commit(b.port, version, pid + 1000, epoch, [("in", [0])]) == {
                ("in", 0): ErrorCode.invalid_producer_id_mapping}, version
            assert _txn_offset_commit(b.port, version, pid, epoch, [("in", [0])]) == {
                ("in", 0): ErrorCode.invalid_txn_state}, version  # no AddOffsetsToTxn yet
        assert OFFSETS_TOPIC not in b.broker.logs.topics or \
            b.broker.logs.get_log(OFFSETS_TOPIC, 0).log_end_offset == 0
        assert groups.pending_txn_partitions("raw-group") == set()
        added = _raw(b.port, 25, 0, {"transactional_id": "raw-txn", "producer_id": pid,
                                     "producer_epoch": epoch, "group_id": "raw-group"})
        assert added.error_code == ErrorCode.none
        assert _txn_offset_commit(b.port, 3, pid, epoch - 1 if epoch else epoch + 1,
                                  [("in", [0])]) == {("in", 0): ErrorCode.invalid_producer_epoch}
        assert _txn_offset_commit(b.port, 3, pid, epoch, [("in", [0, 7]), ("nope", [0])]) == {
            ("in", 0): ErrorCode.none, ("in", 7): ErrorCode.unknown_topic_or_partition,
            ("nope", 0): ErrorCode.unknown_topic_or_partition}
        assert _txn_offset_commit(b.port, 0, pid, epoch, [("in", [1])], metadata="m" * 5000) == {
            ("in", 1): ErrorCode.offset_metadata_too_large}
        assert groups.pending_txn_partitions("raw-group") == {("in", 0)}
        assert groups.committed("raw-group") == {}
