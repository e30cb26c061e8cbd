"""Produce (0): append record batches; answer per partition.

Batches are validated and stored byte for byte (only base_offset, and for
LogAppendTime max_timestamp, change). acks=0 gets no response, acks=1 is
answered after the write, acks=all (-1) after the group-commit fsync that
covers the append. An idempotent retry of a batch already in the log is
answered with the original offsets and not written twice. Internal topics
(`__consumer_offsets`) are written by the broker only: a client's produce
to one is INVALID_TOPIC_EXCEPTION, as in Kafka.

A transactional batch is accepted only from the current epoch of a
producer whose open transaction holds the partition (the transaction
coordinator's `check_partition`, Kafka's partition verification): else
INVALID_TXN_STATE, or INVALID_PRODUCER_EPOCH for a fenced epoch, and
nothing is appended, so no partition holds a transaction its coordinator
will never end. Such a batch must be alone in its partition's records
(Kafka allows one batch per partition from v3 on).
"""

import logging

from kio.schema.errors import ErrorCode

from strom.broker.context import NO_RESPONSE, RawResponse
from strom.broker.handlers.errors import error_code
from strom.broker.router import api
from strom.coordinator import is_internal_topic
from strom.logsafe import printable
from strom.protocol.produce_response import encode_produce_response
from strom.records.batch import transactional_producer
from strom.records.errors import InvalidRecordError
from strom.storage import StorageError

log = logging.getLogger(__name__)

@api(0)
def handle_produce(ctx, request):
    broker = ctx.broker
    acks = request.acks
    results = []
    durable = []
    for topic_data in request.topic_data:
        name = getattr(topic_data, "name", None)
        topic_id = getattr(topic_data, "topic_id", None)  # v13+ (KIP-516)
        topic = broker.logs.find_topic(name, topic_id)
        if name is None:
            name = topic.name if topic else ""
        partitions = []
        for part in topic_data.partition_data:
            entry = {"index": part.index, "error_code": ErrorCode.none, "base_offset": -1,
                     "log_append_time": -1, "log_start_offset": -1, "record_errors": []}
            partitions.append(entry)
            if acks not in (-1, 0, 1):
                entry["error_code"] = ErrorCode.invalid_required_acks
                continue
            if topic is None or not 0 <= part.index < topic.partitions:
                entry["error_code"] = (ErrorCode.unknown_topic_id if topic_id is not None and topic is None
                                       else ErrorCode.unknown_topic_or_partition)
                continue
            if is_internal_topic(name):  # as Kafka: only the broker writes them
                entry["error_code"] = ErrorCode.invalid_topic_exception
                entry["error_message"] = f"Cannot append to internal topic {name}"
                log.warning("produce to %s-%d from %r refused: internal topic",
                            name, part.index, ctx.header.client_id)
                continue
            plog = topic.logs[part.index]
            try:
                if part.records is None:
                    raise InvalidRecordError("produce request without records")
                records = part.records
                producer = transactional_producer(records)
                if producer is not None:
                    code = broker.txns.check_partition(producer[0], producer[1], name, part.index)
                    if code:
                        entry["error_code"] = code
                        entry["error_message"] = (f"producer {producer[0]} epoch {producer[1]}: "
                                                  f"not in a transaction with this partition")
                        log.warning("transactional produce to %s-%d from %r refused: %s",
                                    printable(name), part.index, ctx.header.client_id, code.name)
                        continue
                result = plog.append(records)
            except (StorageError, InvalidRecordError) as e:
                entry["error_code"] = error_code(e)
                entry["error_message"] = str(e)
                log.warning("produce to %s-%d from %r refused: %s",
                            printable(name), part.index, ctx.header.client_id, printable(e))
                continue
            broker.notifier.notify(plog)
            entry.update(base_offset=result.base_offset, log_append_time=result.log_append_time,
                         log_start_offset=result.log_start_offset)
            if acks == -1:
                durable.append((entry, broker.wait_durable(plog, result.last_offset + 1)))
        results.append({"name": name, "topic_id": topic_id or (topic.topic_id if topic else None),
                        "partition_responses": partitions})
    if acks == 0:
        return NO_RESPONSE
    if durable and not all(fut.done() for _, fut in durable):
        return _answer_when_durable(ctx.version, results, durable)
    for entry, fut in durable:  # in memory, or already fsynced
        _note_error(entry, fut.result())
    return RawResponse([encode_produce_response(ctx.version, results)])


async def _answer_when_durable(version: int, results: list, durable: list) -> RawResponse:
    for entry, fut in durable:
        _note_error(entry, await fut)
    return RawResponse([encode_produce_response(version, results)])


def _note_error(entry: dict, error) -> None:
    if error is not None:
        entry["error_code"] = ErrorCode.kafka_storage_error
        entry["error_message"] = str(error)
