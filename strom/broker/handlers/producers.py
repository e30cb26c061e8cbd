"""DescribeProducers (61, KIP-664): the producers a partition's producer
state knows (idempotent and transactional), for operators finding a
hanging transaction: id, epoch, last sequence and timestamp, the
coordinator epoch of its last marker, and the first offset of its open
transaction (-1 if none).

As Kafka: an invalid topic name is INVALID_TOPIC_EXCEPTION, an unknown
topic or partition UNKNOWN_TOPIC_OR_PARTITION, each with a message.
"""

from kio.schema.errors import ErrorCode

from strom.broker.router import api
from strom.storage import InvalidTopicError, validate_topic_name


def _partition(logs, name: str, index: int) -> dict:
    out = {"partition_index": index, "error_code": ErrorCode.none, "error_message": None,
           "active_producers": []}
    try:
        validate_topic_name(name)
    except InvalidTopicError as e:
        out.update(error_code=ErrorCode.invalid_topic_exception, error_message=str(e))
        return out
    topic = logs.topics.get(name)
    if topic is None or not 0 <= index < topic.partitions:
        out.update(error_code=ErrorCode.unknown_topic_or_partition,
                   error_message=f"{name}-{index} does not exist")
        return out
    out["active_producers"] = [
        {"producer_id": p["producer_id"], "producer_epoch": p["producer_epoch"],
         "last_sequence": p["last_sequence"], "last_timestamp": p["last_timestamp"],
         "coordinator_epoch": p["coordinator_epoch"],
         "current_txn_start_offset": p["current_txn_start_offset"]}
        for p in topic.logs[index].producers()
    ]
    return out


@api(61)
def handle_describe_producers(ctx, request):
    logs = ctx.broker.logs
    return ctx.respond({"throttle_time": 0, "topics": [
        {"name": t.name, "partitions": [_partition(logs, t.name, i) for i in t.partition_indexes]}
        for t in request.topics
    ]})
