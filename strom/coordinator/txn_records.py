"""Records of the internal, compacted `__transaction_state` topic.

One record per state a transactional id enters, keyed by the id, so
compaction keeps each id's latest state. Keys and values are JSON objects
with sorted keys (equal keys are equal bytes):

    key    {"transactional_id", "type": "txn"}
    value  {"last_producer_epoch", "partitions": [[topic, partition], ...],
            "previous_producer_id", "producer_epoch", "producer_id", "state",
            "timeout_ms", "txn_last_update_timestamp", "txn_start_timestamp"}

`state` is one of the states Kafka writes to its transaction log: Empty,
Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort
(PrepareEpochFence and Dead are transient, never stored). `partitions`
is sorted and empty outside Ongoing/Prepare*. A null value (tombstone)
removes the id: `transactional.id.expiration.ms` passed while it was idle.

Unlike Kafka's TransactionLogValue this keeps `last_producer_epoch`, so a
KIP-360 retry of InitProducerId is recognised across a restart too.

Decoding checks every field's type and range, so replay meets only
well-formed records; anything else raises BadRecordError (shared with the
offsets topic's records) whose `kind` names the problem for the one
summary line start-up logs.
"""

from dataclasses import dataclass

from strom.coordinator.records import BadRecordError, dump_json, load_object

TRANSACTION_STATE_TOPIC = "__transaction_state"

EMPTY = "Empty"
ONGOING = "Ongoing"
PREPARE_COMMIT = "PrepareCommit"
PREPARE_ABORT = "PrepareAbort"
COMPLETE_COMMIT = "CompleteCommit"
COMPLETE_ABORT = "CompleteAbort"
PREPARE_EPOCH_FENCE = "PrepareEpochFence"
DEAD = "Dead"

ALL_STATES = (EMPTY, ONGOING, PREPARE_COMMIT, PREPARE_ABORT, COMPLETE_COMMIT, COMPLETE_ABORT,
              DEAD, PREPARE_EPOCH_FENCE)
STORED_STATES = frozenset(ALL_STATES[:6])

_INT16_MAX = 2**15 - 1
_VALUE = {"producer_id": int, "previous_producer_id": int, "producer_epoch": int,
          "last_producer_epoch": int, "timeout_ms": int, "state": str, "partitions": list,
          "txn_start_timestamp": int, "txn_last_update_timestamp": int}


@dataclass(frozen=True)
class TxnKey:
    transactional_id: str


def encode_key(key: TxnKey) -> bytes:
    return dump_json({"type": "txn", "transactional_id": key.transactional_id})


def encode_value(value: dict | None) -> bytes | None:
    return None if value is None else dump_json(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_key(raw: bytes) -> TxnKey:
    obj = load_object(raw, "key")
    if obj.get("type") != "txn":
        raise BadRecordError("key of an unknown type", repr(obj.get("type"))[:80])
    tid = obj.get("transactional_id")
    if not isinstance(tid, str) or not tid:
        raise BadRecordError("txn key with a missing or mistyped field",
                             f"transactional_id={tid!r}"[:120])
    return TxnKey(tid)


def decode_value(raw: bytes | None) -> dict | None:
    """A transaction's stored state, checked field by field."""
    if raw is None:
        return None
    obj = load_object(raw, "value")
    for name, type_ in _VALUE.items():
        value = obj.get(name, ...)
        if not isinstance(value, type_) or isinstance(value, bool):
            raise BadRecordError("txn value with a missing or mistyped field",
                                 f"{name}={value!r}"[:120])
    if obj["state"] not in STORED_STATES:
        raise BadRecordError("txn value with a state that is never stored", obj["state"][:40])
    if not (0 <= obj["producer_id"] and -1 <= obj["previous_producer_id"]
            and 0 <= obj["producer_epoch"] <= _INT16_MAX
            and -1 <= obj["last_producer_epoch"] <= _INT16_MAX and obj["timeout_ms"] > 0):
        raise BadRecordError("txn value with a field out of range",
                             f"producer {obj['producer_id']} epoch {obj['producer_epoch']} "
                             f"timeout {obj['timeout_ms']}"[:120])
    partitions = []
    for entry in obj["partitions"]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and entry[0] and _is_int(entry[1]) and entry[1] >= 0):
            raise BadRecordError("txn value with a malformed partition", repr(entry)[:80])
        partitions.append((entry[0], entry[1]))
    obj["partitions"] = partitions
    return obj
