"""Fetch (1): read whole batches, long-polling until min_bytes are ready.

Partitions are read in request order until the response max_bytes is
used; the first partition with data returns at least one batch even when
it is larger than the limits (KIP-74), so a consumer never gets stuck.
When fewer than min_bytes are ready and max_wait_ms > 0, the request parks
on the partitions' append notifications. Record data goes into the
response as the bytes read from the log, never concatenated
(protocol/fetch_response.py). No fetch sessions: session_id 0 means
"none", and clients then send full requests.
"""

from kio.schema.errors import ErrorCode

from strom.broker.context import RawResponse
from strom.broker.router import api
from strom.protocol.build import ms
from strom.protocol.fetch_response import FetchPartition, FetchTopic, encode_fetch_response
from strom.storage import LogWriteError, OffsetOutOfRangeError


def _resolve(logs, version, topic_req):
    if version >= 13:
        return logs.find_topic_by_id(topic_req.topic_id)
    return logs.topics.get(topic_req.topic)


def _read(version, request, resolved, max_bytes) -> tuple[list[FetchTopic], int, list]:
    budget = min(request.max_bytes, max_bytes)
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
            part.high_watermark = part.last_stable_offset = plog.high_watermark
            part.log_start_offset = plog.log_start_offset
            limit = min(p.partition_max_bytes, budget - total)
            try:
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
        if await broker.notifier.wait_any(waitable, max_wait / 1000):
            topics, total, waitable = _read(version, request, resolved, max_bytes)
    return RawResponse(encode_fetch_response(version, topics))
