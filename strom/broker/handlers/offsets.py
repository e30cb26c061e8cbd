"""ListOffsets (2), OffsetForLeaderEpoch (23) and DeleteRecords (21).

Timestamps in ListOffsets: -1 latest (high watermark), -2 earliest
(log start), -3 the record with the largest timestamp (v7+), -4 earliest
local (= earliest: no tiered storage), -5 latest tiered (= latest);
otherwise the first record at or after the timestamp, or offset -1 when
there is none. With isolation_level 1 (read_committed, v2+) the partition
ends at its last stable offset instead of the high watermark, as in
Kafka: latest answers the LSO, and a lookup that finds an offset at or
past it answers offset -1 (nothing a read_committed consumer may see
there yet). Leader epoch is always 0 on a single node. DeleteRecords
of an internal topic is INVALID_TOPIC_EXCEPTION, as in Kafka.
"""

from kio.schema.errors import ErrorCode

from strom.broker.handlers.errors import error_code
from strom.broker.router import api
from strom.coordinator import is_internal_topic
from strom.storage import StorageError

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5
READ_COMMITTED = 1


def _partition_log(logs, name, index):
    topic = logs.topics.get(name)
    if topic is None or not 0 <= index < topic.partitions:
        return None
    return topic.logs[index]


@api(2, min_version=1)
def handle_list_offsets(ctx, request):
    read_committed = getattr(request, "isolation_level", 0) == READ_COMMITTED
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            entry = {"partition_index": p.partition_index, "error_code": 0, "timestamp": -1,
                     "offset": -1, "leader_epoch": 0}
            parts.append(entry)
            plog = _partition_log(ctx.broker.logs, t.name, p.partition_index)
            if plog is None:
                entry["error_code"] = ErrorCode.unknown_topic_or_partition
                continue
            if getattr(p, "current_leader_epoch", -1) > 0:
                entry["error_code"] = ErrorCode.unknown_leader_epoch
                continue
            ts = p.timestamp
            if ts in (LATEST, LATEST_TIERED):
                entry["offset"] = plog.last_stable_offset if read_committed else plog.high_watermark
            elif ts in (EARLIEST, EARLIEST_LOCAL):
                entry["offset"] = plog.log_start_offset
            else:
                found = plog.max_timestamp_offset() if ts == MAX_TIMESTAMP else plog.offset_for_timestamp(ts)
                if found and (not read_committed or found[0] < plog.last_stable_offset):
                    entry["offset"], entry["timestamp"] = found
        topics.append({"name": t.name, "partitions": parts})
    return ctx.respond({"throttle_time": 0, "topics": topics})


@api(23)
def handle_offset_for_leader_epoch(ctx, request):
    topics = []
    for t in request.topics:
        parts = []
        for p in t.partitions:
            entry = {"error_code": 0, "partition": p.partition, "leader_epoch": -1, "end_offset": -1}
            parts.append(entry)
            plog = _partition_log(ctx.broker.logs, t.topic, p.partition)
            if plog is None:
                entry["error_code"] = ErrorCode.unknown_topic_or_partition
            elif p.current_leader_epoch > 0:
                entry["error_code"] = ErrorCode.unknown_leader_epoch
            elif p.leader_epoch == 0:
                entry.update(leader_epoch=0, end_offset=plog.log_end_offset)
            # an epoch above ours is undefined: leader_epoch -1, end_offset -1
        topics.append({"topic": t.topic, "partitions": parts})
    return ctx.respond({"throttle_time": 0, "topics": topics})


@api(21)
def handle_delete_records(ctx, request):
    topics = []
    work = []  # (entry, plog, offset): done off the event loop
    for t in request.topics:
        parts = []
        for p in t.partitions:
            entry = {"partition_index": p.partition_index, "low_watermark": -1, "error_code": 0}
            parts.append(entry)
            plog = _partition_log(ctx.broker.logs, t.name, p.partition_index)
            if plog is None:
                entry["error_code"] = ErrorCode.unknown_topic_or_partition
                continue
            if is_internal_topic(t.name):  # as Kafka: committed offsets are not the client's to drop
                entry["error_code"] = ErrorCode.invalid_topic_exception
                continue
            work.append((entry, plog, plog.high_watermark if p.offset == -1 else p.offset))
        topics.append({"name": t.name, "partitions": parts})
    response = {"throttle_time": 0, "topics": topics}
    if not work:
        return ctx.respond(response)
    return _delete_records(ctx, work, response)


async def _delete_records(ctx, work, response):
    await ctx.broker.off_loop(_delete_records_before, work)
    return ctx.respond(response)


def _delete_records_before(work) -> None:
    """On a worker thread: each partition may fsync its log, write its
    log-start-offset checkpoint and delete segments, which on the loop
    would hold up every other client's requests."""
    for entry, plog, offset in work:
        try:
            entry["low_watermark"] = plog.delete_records_before(offset)
        except StorageError as e:
            entry["error_code"] = error_code(e)
