"""TxnOffsetCommit (28): a transactional producer commits a group's
offsets inside its transaction (KIP-98; KIP-447 adds the member id,
generation and group instance id in v3+, checked as OffsetCommit checks
them). The offsets stay pending until the transaction ends
(strom.coordinator.txn_offsets).

Order of checks, as Kafka: partitions of unknown topics are
UNKNOWN_TOPIC_OR_PARTITION; then the transaction coordinator must know the
producer's open transaction with the offsets partition in it
(AddOffsetsToTxn first; a stale epoch is fenced), else its error for every
partition; then the group; metadata over the limit is
OFFSET_METADATA_TOO_LARGE for that partition only. v5 (KIP-890 part 2,
where the commit would add the partition itself) is answered as v4:
transaction.version 2 is not advertised.
"""

from kio.schema.errors import ErrorCode

from strom.broker.handlers.group_offsets import METADATA_MAX_BYTES
from strom.broker.router import api
from strom.coordinator.records import OFFSETS_TOPIC


@api(28)
async def handle_txn_offset_commit(ctx, request):
    broker = ctx.broker
    logs = broker.logs
    errors: dict[tuple[str, int], ErrorCode] = {}
    wanted = []
    for t in request.topics:
        topic = logs.topics.get(t.name)
        for p in t.partitions:
            if topic is None or not 0 <= p.partition_index < topic.partitions:
                errors[(t.name, p.partition_index)] = ErrorCode.unknown_topic_or_partition
            elif p.committed_metadata and len(p.committed_metadata) > METADATA_MAX_BYTES:
                errors[(t.name, p.partition_index)] = ErrorCode.offset_metadata_too_large
            else:
                wanted.append((t.name, p.partition_index, p.committed_offset,
                               getattr(p, "committed_leader_epoch", -1), p.committed_metadata))
    if wanted:
        # No await between this check and txn_commit's append: an EndTxn
        # cannot slip its marker in between (the offsets would then sit
        # behind it, pending for good).
        error = broker.txns.check_partition(request.producer_id, request.producer_epoch,
                                            OFFSETS_TOPIC, 0)
        if error:
            errors.update({(t, p): error for t, p, *_ in wanted})
        else:
            errors.update(await broker.groups.txn_commit(
                request.group_id, request.producer_id, request.producer_epoch,
                getattr(request, "member_id", ""), getattr(request, "generation_id", -1),
                getattr(request, "group_instance_id", None), wanted))
    return ctx.respond({"throttle_time": 0, "topics": [
        {"name": t.name, "partitions": [
            {"partition_index": p.partition_index,
             "error_code": errors[(t.name, p.partition_index)]}
            for p in t.partitions]}
        for t in request.topics]})
