"""Fetch (1): read whole batches, long-polling until min_bytes are ready.

Partitions are read in request order until the response max_bytes is
used; the first partition with data returns at least one batch even when
it is larger than the limits (KIP-74), so a consumer never gets stuck.
When fewer than min_bytes are ready and max_wait_ms > 0, the request parks
on the partitions' append notifications. Record data goes into the
response as the bytes read from the log, never concatenated
(protocol/fetch_response.py). No fetch sessions: session_id 0 means
"none", and clients then send full requests.

isolation_level 1 (read_committed, KIP-98): only whole batches below the
partition's last stable offset are returned, with the aborted
transactions that overlap them (the client drops those batches itself,
up to each one's ABORT marker), and a parked read_committed fetch waits
until that much is stable, not merely appended: the transaction
coordinator notifies a partition after each marker, which moves its LSO.
At read_uncommitted the hot path stays as it was: last_stable_offset is
answered as the high watermark (Kafka sends the LSO at both levels, but
clients read it only at read_committed; looking it up costs ~1 us per
partition, a lock and the producer state) and aborted_transactions null.
"""

import struct
import time

from kio.schema.errors import ErrorCode

from strom.broker.context import RawResponse
from strom.broker.router import api
from strom.protocol.build import ms
from strom.protocol.fetch_response import FetchPartition, FetchTopic, encode_fetch_response
from strom.storage import LogWriteError, OffsetOutOfRangeError

READ_COMMITTED = 1
# A batch header: base_offset int64 at 0, batch_length int32 at 8 (bytes after
# these 12), last_offset_delta int32 at 23.
_BASE_LENGTH = struct.Struct(">qi")
_DELTA = struct.Struct(">i")


def _resolve(logs, version, topic_req):
    if version >= 13:
        return logs.find_topic_by_id(topic_req.topic_id)
    return logs.topics.get(topic_req.topic)


def _read(version, request, resolved, max_bytes) -> tuple[list[FetchTopic], int, list]:
    budget = min(request.max_bytes, max_bytes)
    read_committed = request.isolation_level == READ_COMMITTED
    total = 0
    waitable = []
    topics = []
    for topic_req, topic in resolved:
        name = topic.name if topic else getattr(topic_req, "topic", "")
        topic_id = topic.topic_id if topic else topic_req.topic_id if version >= 13 else None
        out = FetchTopic(name, topic_id)
        topics.append(out)
        for p in topic_req.partitions:
            part = FetchPartition(p.partition)
            out.partitions.append(part)
            if topic is None or not 0 <= p.partition < topic.partitions:
                part.error_code = (ErrorCode.unknown_topic_id if version >= 13
                                   else ErrorCode.unknown_topic_or_partition)
                continue
            plog = topic.logs[p.partition]
            part.log_start_offset = plog.log_start_offset
            limit = min(p.partition_max_bytes, budget - total)
            try:
                if read_committed:
                    part.high_watermark = plog.high_watermark
                    part.last_stable_offset = plog.last_stable_offset
                    data = _read_committed(plog, part, p.fetch_offset, max(limit, 0), total == 0)
                else:
                    part.high_watermark = part.last_stable_offset = plog.high_watermark
                    # KIP-74: the first batch of the response comes whole even
                    # past the limits; after that, only what fits.
                    data = plog.read(p.fetch_offset, max(limit, 0), min_one=total == 0)
            except OffsetOutOfRangeError:
                part.error_code = ErrorCode.offset_out_of_range
                part.records = b""
                continue
            except LogWriteError:  # the partition's disk failed (logged once, sticky)
                part.error_code = ErrorCode.kafka_storage_error
                part.records = b""
                continue
            part.records = data
            total += len(data)
            waitable.append(plog)
    return topics, total, waitable


def _read_committed(plog, part: FetchPartition, fetch_offset: int, limit: int, min_one: bool):
    """What a read_committed consumer may see at `fetch_offset`: the whole
    batches below the LSO, and the aborted transactions among them (an
    empty list, never null, as Kafka answers read_committed)."""
    lso = part.last_stable_offset
    if plog.log_start_offset <= fetch_offset and lso <= fetch_offset <= plog.log_end_offset:
        part.aborted_transactions = []
        return b""  # nothing stable yet: no read (a parked reader re-reads on every append)
    data = plog.read(fetch_offset, limit, min_one=min_one)
    end, end_offset, n = 0, fetch_offset, len(data)
    while n - end >= 27:
        base_offset, length = _BASE_LENGTH.unpack_from(data, end)
        next_offset = base_offset + _DELTA.unpack_from(data, end + 23)[0] + 1
        if next_offset > lso:
            break  # the LSO falls on a batch boundary: this one and the rest are open
        end += length + 12
        end_offset = next_offset
    if end < n:
        data = memoryview(data)[:end]  # no copy: the encoder takes views
    part.aborted_transactions = plog.aborted_transactions(fetch_offset, end_offset) if end else []
    return data


@api(1, min_version=4)
async def handle_fetch(ctx, request):
    broker = ctx.broker
    version = ctx.version
    resolved = [(t, _resolve(broker.logs, version, t)) for t in request.topics]
    max_bytes = broker.config.fetch_max_bytes
    topics, total, waitable = _read(version, request, resolved, max_bytes)
    max_wait = ms(request.max_wait)
    has_error = any(p.error_code for t in topics for p in t.partitions)
    if total < request.min_bytes and max_wait > 0 and waitable and not has_error:
        if request.isolation_level == READ_COMMITTED:
            topics = await _wait_stable(broker, version, request, resolved, max_bytes,
                                        topics, total, waitable, max_wait / 1000)
        elif await broker.notifier.wait_any(waitable, max_wait / 1000):
            topics, total, waitable = _read(version, request, resolved, max_bytes)
    return RawResponse(encode_fetch_response(version, topics))


async def _wait_stable(broker, version, request, resolved, max_bytes, topics, total, waitable,
                       max_wait_s):
    """Park until min_bytes are stable or max_wait passes. An append inside
    an open transaction wakes the reader without moving the LSO: it reads
    again (no I/O while nothing is stable) and parks for the rest of the wait."""
    deadline = time.monotonic() + max_wait_s
    while total < request.min_bytes:
        left = deadline - time.monotonic()
        if left <= 0 or not await broker.notifier.wait_any(waitable, left):
            break
        if broker.notifier.stopping:
            return topics  # shutting down: answer with what there was
        topics, total, waitable = _read(version, request, resolved, max_bytes)
        if not waitable or any(p.error_code for t in topics for p in t.partitions):
            break
    return topics
