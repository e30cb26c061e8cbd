"""The transaction APIs a producer and an operator use, answered by the
transaction coordinator (`broker.txns`):

- AddPartitionsToTxn (24): v0-3 from clients (one transaction); v4+ from
  brokers, several transactions, each either added or only verified
  (KIP-890 part 1). A partition that does not exist is
  UNKNOWN_TOPIC_OR_PARTITION, an internal topic TOPIC_AUTHORIZATION_FAILED
  (Kafka filters them out as unauthorised), and then the others of that
  transaction OPERATION_NOT_ATTEMPTED: nothing is added.
- AddOffsetsToTxn (25): adds the group's offsets partition.
- EndTxn (26): commit or abort. Served up to v4: v5 is KIP-890 part 2
  (an epoch bump on every transaction, transaction.version 2), which this
  broker does not advertise.
- DescribeTransactions (65), ListTransactions (66).

Versions before PRODUCER_FENCED existed (AddPartitions/AddOffsets/EndTxn
v0-1) get INVALID_PRODUCER_EPOCH instead, as Kafka answers them.
"""

import datetime

from kio.schema.errors import ErrorCode

from strom.broker.router import api
from strom.coordinator import is_internal_topic


def _fenced_for(version: int, first_with_fenced: int, error: ErrorCode) -> ErrorCode:
    if error == ErrorCode.producer_fenced and version < first_with_fenced:
        return ErrorCode.invalid_producer_epoch
    return error


def _topic_results(errors: dict) -> list[dict]:
    topics: dict[str, list[dict]] = {}
    for (topic, partition), error in errors.items():
        topics.setdefault(topic, []).append({"partition_index": partition,
                                             "partition_error_code": error})
    return [{"name": name, "results_by_partition": parts} for name, parts in topics.items()]


def _unknown_partitions(broker, partitions) -> dict | None:
    """Per-partition errors when some partition cannot be added, else None."""
    errors = {}
    for topic, partition in partitions:
        if is_internal_topic(topic):
            errors[(topic, partition)] = ErrorCode.topic_authorization_failed
            continue
        t = broker.logs.topics.get(topic)
        if t is None or not 0 <= partition < t.partitions:
            errors[(topic, partition)] = ErrorCode.unknown_topic_or_partition
    if not errors:
        return None
    return {tp: errors.get(tp, ErrorCode.operation_not_attempted) for tp in partitions}


def _partitions(topics) -> list[tuple[str, int]]:
    seen = {}
    for topic in topics:
        for partition in topic.partitions:
            seen[(topic.name, partition)] = None
    return list(seen)


async def _add_one(ctx, transactional_id, producer_id, producer_epoch, topics,
                   verify_only=False) -> dict:
    broker = ctx.broker
    partitions = _partitions(topics)
    errors = _unknown_partitions(broker, partitions)
    if errors is None:
        if verify_only:
            errors = broker.txns.verify_partitions(transactional_id, producer_id, producer_epoch,
                                                   partitions)
        else:
            errors = await broker.txns.add_partitions(transactional_id, producer_id,
                                                      producer_epoch, partitions)
    return {tp: _fenced_for(ctx.version, 2, e) for tp, e in errors.items()}


@api(24)
async def handle_add_partitions_to_txn(ctx, request):
    if ctx.version < 4:
        errors = await _add_one(ctx, request.v3_and_below_transactional_id,
                                request.v3_and_below_producer_id,
                                request.v3_and_below_producer_epoch,
                                request.v3_and_below_topics)
        return ctx.respond({"throttle_time": 0,
                            "results_by_topic_v3_and_below": _topic_results(errors)})
    results = []
    for txn in request.transactions:
        errors = await _add_one(ctx, txn.transactional_id, txn.producer_id, txn.producer_epoch,
                                txn.topics, txn.verify_only)
        results.append({"transactional_id": txn.transactional_id,
                        "topic_results": _topic_results(errors)})
    return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.none,
                        "results_by_transaction": results})


@api(25)
async def handle_add_offsets_to_txn(ctx, request):
    error = await ctx.broker.txns.add_offsets(request.transactional_id, request.producer_id,
                                              request.producer_epoch, request.group_id)
    return ctx.respond({"throttle_time": 0, "error_code": _fenced_for(ctx.version, 2, error)})


@api(26, max_version=4)
async def handle_end_txn(ctx, request):
    error = await ctx.broker.txns.end_txn(request.transactional_id, request.producer_id,
                                          request.producer_epoch, request.committed)
    return ctx.respond({"throttle_time": 0, "error_code": _fenced_for(ctx.version, 2, error),
                        "producer_id": -1, "producer_epoch": -1})


# kio's datetime fields cannot hold Kafka's -1 ("no transaction started")
# as None: a datetime one millisecond before the epoch encodes as -1.
_NO_TIMESTAMP = datetime.datetime.fromtimestamp(-0.001, tz=datetime.timezone.utc)


@api(65)
def handle_describe_transactions(ctx, request):
    states = ctx.broker.txns.describe(request.transactional_ids)
    for state in states:
        if state["transaction_start_time"] < 0:
            state["transaction_start_time"] = _NO_TIMESTAMP
    return ctx.respond({"throttle_time": 0, "transaction_states": states})


@api(66)
def handle_list_transactions(ctx, request):
    found = ctx.broker.txns.list_transactions(
        request.state_filters, request.producer_id_filters,
        getattr(request, "duration_filter", -1), getattr(request, "transactional_id_pattern", None))
    return ctx.respond({"throttle_time": 0, **found})
