"""WriteTxnMarkers (27): write COMMIT or ABORT control batches.

In a cluster the transaction coordinator sends this to partition leaders;
here the coordinator writes its markers itself, so the request comes from
operators: an admin client's abort_transaction (`strom txn abort`, Kafka's
`kafka-transactions.sh abort`) ends a hanging transaction on one partition
with an ABORT marker.

Per marker and partition, as Kafka's KafkaApis.handleWriteTxnMarkersRequest:
an ordinary partition (internal ones included) gets the control batch
(`PartitionLog.append_marker`, which refuses an epoch older than the
partition's for that producer: INVALID_PRODUCER_EPOCH); a partition of
`__consumer_offsets` is handed to the group coordinator (`complete_txn`:
marker plus replay, so pending transactional offsets become committed or
are dropped). The answer waits until every marker is durable (acks=all), and
parked read_committed fetches are woken because the LSO moved. A missing
topic or partition is UNKNOWN_TOPIC_OR_PARTITION, a coordinator epoch
older than the partition's for that producer TRANSACTION_COORDINATOR_FENCED;
the other partitions of the request are still written. Kafka requires the
ClusterAction permission for this request; this broker has no ACLs yet, so,
like every other API here, it is open to every client that connects. A
marker this node's coordinator could never have written (a coordinator
epoch above 0, a producer epoch above the coordinator's) is refused:
stored, it would hold the partition's LSO for good.
The v2 `transaction_version` field is read and ignored: markers are
written the classic way (transaction.version 2 is not advertised).
"""

import logging

from kio.schema.errors import ErrorCode

from strom.broker.handlers.errors import error_code
from strom.broker.router import api
from strom.coordinator.records import OFFSETS_TOPIC
from strom.coordinator.transactions import COORDINATOR_EPOCH
from strom.logsafe import printable
from strom.protocol.errors import KafkaError
from strom.records.errors import InvalidRecordError
from strom.storage import StorageError

log = logging.getLogger(__name__)

# The group coordinator not being ready is, to the sender, a leader that is
# not ready yet (Kafka translates these the same way): it retries.
_NOT_READY = {ErrorCode.coordinator_not_available, ErrorCode.coordinator_load_in_progress,
              ErrorCode.not_coordinator}


@api(27)
async def handle_write_txn_markers(ctx, request):
    broker = ctx.broker
    results = []
    durable = []  # (entry, plog, future)
    offsets = []  # (entry, marker): __consumer_offsets, after the plain appends
    for marker in request.markers:
        topics = []
        refusal = _refusal(broker.txns, marker)
        if refusal is not None:
            log.warning("%s marker for producer %d (epoch %d, coordinator epoch %d) from %r "
                        "refused: %s", _kind(marker), marker.producer_id, marker.producer_epoch,
                        marker.coordinator_epoch, ctx.header.client_id, refusal[1])
        for t in marker.topics:
            topic = broker.logs.find_topic(t.name)
            parts = []
            for index in t.partition_indexes:
                entry = {"partition_index": index, "error_code": ErrorCode.none}
                parts.append(entry)
                if topic is None or not 0 <= index < topic.partitions:
                    entry["error_code"] = ErrorCode.unknown_topic_or_partition
                    continue
                if refusal is not None:
                    entry["error_code"] = refusal[0]
                    continue
                if t.name == OFFSETS_TOPIC:
                    offsets.append((entry, marker))
                    continue
                plog = topic.logs[index]
                try:
                    result = plog.append_marker(marker.producer_id, marker.producer_epoch,
                                                marker.transaction_result, marker.coordinator_epoch)
                except (StorageError, InvalidRecordError, KafkaError) as e:
                    entry["error_code"] = error_code(e)
                    log.warning("%s marker for producer %d (epoch %d) on %s-%d from %r refused: %s",
                                _kind(marker), marker.producer_id, marker.producer_epoch,
                                printable(t.name), index, ctx.header.client_id, printable(e))
                    continue
                durable.append((entry, plog, broker.wait_durable(plog, result.last_offset + 1)))
            topics.append({"name": t.name, "partitions": parts})
        results.append({"producer_id": marker.producer_id, "topics": topics})
    for entry, plog, fut in durable:
        error = await fut
        broker.notifier.notify(plog)  # the LSO moved: read_committed fetches may answer
        if error is not None:
            entry["error_code"] = ErrorCode.kafka_storage_error
    for entry, marker in offsets:
        try:
            await broker.groups.complete_txn(marker.producer_id, marker.producer_epoch,
                                             marker.transaction_result, marker.coordinator_epoch)
        except (StorageError, InvalidRecordError, KafkaError) as e:
            code = error_code(e)
            entry["error_code"] = ErrorCode.not_leader_or_follower if code in _NOT_READY else code
            log.warning("%s marker for producer %d on %s from %r refused: %s", _kind(marker),
                        marker.producer_id, OFFSETS_TOPIC, ctx.header.client_id, printable(e))
    for marker, result in zip(request.markers, results):
        written = [f"{t['name']}-{p['partition_index']}" for t in result["topics"]
                   for p in t["partitions"] if p["error_code"] == ErrorCode.none]
        if written:  # an operator's abort: worth a line in the broker's log
            log.info("%s marker for producer %d (epoch %d) written to %s on request of %r",
                     _kind(marker), marker.producer_id, marker.producer_epoch,
                     printable(", ".join(written)), ctx.header.client_id)
    return ctx.respond({"markers": results})


def _refusal(txns, marker) -> tuple[ErrorCode, str] | None:
    """A marker this node's coordinator could never have sent. Stored in
    the partition, a coordinator epoch above the only one there is (0)
    would fence every marker the coordinator writes for that producer, and
    an epoch above the coordinator's for a transactional producer would
    fence that producer: either leaves the partition's LSO held for good."""
    if marker.coordinator_epoch > COORDINATOR_EPOCH:
        return (ErrorCode.invalid_request,
                f"coordinator epoch above this node's ({COORDINATOR_EPOCH})")
    current = txns.current_epoch(marker.producer_id)
    if current is not None and marker.producer_epoch > current:
        return (ErrorCode.invalid_producer_epoch,
                f"producer epoch above its coordinator's ({current})")
    return None


def _kind(marker) -> str:
    return "COMMIT" if marker.transaction_result else "ABORT"
