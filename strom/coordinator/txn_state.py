"""The state of one transactional id and Kafka's transitions between its
states (TransactionMetadata.scala), as pure functions: each takes the
current state and returns the next one (to be written to
`__transaction_state` and then replayed) or the error to answer.

    Empty ------------- AddPartitions/AddOffsets -----------> Ongoing
    Ongoing ---- EndTxn(commit) ---> PrepareCommit --markers--> CompleteCommit
    Ongoing ---- EndTxn(abort) ----> PrepareAbort ---markers--> CompleteAbort
    Ongoing ---- InitProducerId / timeout: PrepareEpochFence (epoch + 1) -> PrepareAbort
    Complete* -- AddPartitions --> Ongoing;  Empty/Complete* -- InitProducerId --> Empty
    Empty/Complete* -- transactional.id.expiration.ms idle --> Dead (tombstone)

PrepareEpochFence and Dead are never stored: the first becomes the
PrepareAbort record that carries the bumped epoch, the second the
tombstone. Only the classic protocol (transaction.version < 2) exists
here: EndTxn does not bump the epoch.
"""

from dataclasses import dataclass, replace

from kio.schema.errors import ErrorCode

from strom.coordinator.txn_records import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    EMPTY,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
_SHORT_MAX = 2**15 - 1

# States without an open transaction: an idle id in one of them may expire.
EXPIRABLE = frozenset({EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT})


def is_epoch_exhausted(epoch: int) -> bool:
    """Clients never get Short.MaxValue, so the coordinator can always fence."""
    return epoch >= _SHORT_MAX - 1


@dataclass(frozen=True)
class TxnMetadata:
    transactional_id: str
    producer_id: int
    previous_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    timeout_ms: int
    state: str
    partitions: frozenset  # of (topic, partition)
    txn_start_timestamp: int
    txn_last_update_timestamp: int

    @classmethod
    def fresh(cls, transactional_id: str, producer_id: int, timeout_ms: int, now: int):
        """A transactional id seen for the first time: nothing stored yet."""
        return cls(transactional_id, producer_id, NO_PRODUCER_ID, NO_PRODUCER_EPOCH,
                   NO_PRODUCER_EPOCH, timeout_ms, EMPTY, frozenset(), -1, now)

    @classmethod
    def from_value(cls, transactional_id: str, value: dict):
        return cls(transactional_id, value["producer_id"], value["previous_producer_id"],
                   value["producer_epoch"], value["last_producer_epoch"], value["timeout_ms"],
                   value["state"], frozenset(value["partitions"]), value["txn_start_timestamp"],
                   value["txn_last_update_timestamp"])

    def value(self) -> dict:
        return {"producer_id": self.producer_id, "previous_producer_id": self.previous_producer_id,
                "producer_epoch": self.producer_epoch,
                "last_producer_epoch": self.last_producer_epoch, "timeout_ms": self.timeout_ms,
                "state": self.state, "partitions": [list(tp) for tp in sorted(self.partitions)],
                "txn_start_timestamp": self.txn_start_timestamp,
                "txn_last_update_timestamp": self.txn_last_update_timestamp}


def valid_expected_producer(meta: TxnMetadata, producer_id: int, producer_epoch: int) -> bool:
    """KIP-360: the producer id an InitProducerId names may re-initialise
    this id if it is new, is the current one (the epoch is checked when
    bumped), or the previous one with an exhausted epoch (a retry after a
    rotation whose answer was lost)."""
    return (meta.producer_epoch == NO_PRODUCER_EPOCH or producer_id == meta.producer_id
            or (producer_id == meta.previous_producer_id and is_epoch_exhausted(producer_epoch)))


def init_producer(meta: TxnMetadata, timeout_ms: int, expected_epoch: int | None, now: int,
                  allocate) -> "TxnMetadata | ErrorCode":
    """InitProducerId on an id with no open transaction (Empty, Complete*):
    the epoch is bumped, or a new producer id starts at epoch 0 when the
    epoch is exhausted. `expected_epoch` is the client's (v3+), or None."""
    if is_epoch_exhausted(meta.producer_epoch) and expected_epoch in (None, meta.producer_epoch):
        return replace(meta, producer_id=allocate(), previous_producer_id=meta.producer_id,
                       producer_epoch=0,
                       last_producer_epoch=(NO_PRODUCER_EPOCH if expected_epoch is None
                                            else meta.producer_epoch),
                       timeout_ms=timeout_ms, state=EMPTY, partitions=frozenset(),
                       txn_start_timestamp=-1, txn_last_update_timestamp=now)
    if is_epoch_exhausted(meta.producer_epoch):
        return ErrorCode.producer_fenced  # an older epoch of an exhausted producer id
    if expected_epoch is None:
        epoch, last = meta.producer_epoch + 1, NO_PRODUCER_EPOCH
    elif meta.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == meta.producer_epoch:
        epoch, last = meta.producer_epoch + 1, meta.producer_epoch
    elif expected_epoch == meta.last_producer_epoch:
        # A retry of a bump whose answer was lost: the same epoch again.
        epoch, last = meta.producer_epoch, meta.last_producer_epoch
    else:
        return ErrorCode.producer_fenced
    return replace(meta, previous_producer_id=meta.producer_id, producer_epoch=epoch,
                   last_producer_epoch=last, timeout_ms=timeout_ms, state=EMPTY,
                   partitions=frozenset(), txn_start_timestamp=-1, txn_last_update_timestamp=now)


def check_producer(meta: TxnMetadata | None, producer_id: int, producer_epoch: int) -> ErrorCode:
    """AddPartitions/AddOffsets/TxnOffsetCommit: the request's producer must
    be this id's current one."""
    if meta is None or meta.producer_id != producer_id:
        return ErrorCode.invalid_producer_id_mapping
    if meta.producer_epoch != producer_epoch:
        return ErrorCode.producer_fenced
    return ErrorCode.none


def add_partitions(meta: TxnMetadata, partitions, now: int) -> "TxnMetadata | ErrorCode":
    if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
        return ErrorCode.concurrent_transactions
    new = frozenset(partitions)
    if meta.state == ONGOING and new <= meta.partitions:
        return ErrorCode.none  # nothing to write
    start = now if meta.state in EXPIRABLE else meta.txn_start_timestamp
    return replace(meta, state=ONGOING, partitions=meta.partitions | new,
                   txn_start_timestamp=start, txn_last_update_timestamp=now)


def end_txn(meta: TxnMetadata | None, producer_id: int, producer_epoch: int, commit: bool,
            from_client: bool, now: int) -> "TxnMetadata | ErrorCode":
    """EndTxn (or the coordinator's own abort, with the fencing epoch):
    Prepare*, ErrorCode.none for a retry of what is already complete, or
    the error."""
    if meta is None or meta.producer_id != producer_id:
        return ErrorCode.invalid_producer_id_mapping
    if (from_client and producer_epoch != meta.producer_epoch) or producer_epoch < meta.producer_epoch:
        return ErrorCode.producer_fenced
    state = meta.state
    if state == ONGOING:
        new = replace(meta, state=PREPARE_COMMIT if commit else PREPARE_ABORT,
                      txn_last_update_timestamp=now)
        if producer_epoch != meta.producer_epoch:  # the fence: the abort carries the new epoch
            new = replace(new, producer_epoch=producer_epoch, last_producer_epoch=NO_PRODUCER_EPOCH)
        return new
    if state == COMPLETE_COMMIT:
        return ErrorCode.none if commit else ErrorCode.invalid_txn_state
    if state == COMPLETE_ABORT:
        return ErrorCode.none if not commit else ErrorCode.invalid_txn_state
    if state == PREPARE_COMMIT:
        return ErrorCode.concurrent_transactions if commit else ErrorCode.invalid_txn_state
    if state == PREPARE_ABORT:
        return ErrorCode.concurrent_transactions if not commit else ErrorCode.invalid_txn_state
    return ErrorCode.invalid_txn_state  # Empty: no transaction to end


def complete(meta: TxnMetadata, now: int) -> TxnMetadata:
    """Every marker is durable: Prepare* -> Complete*."""
    return replace(meta, state=COMPLETE_COMMIT if meta.state == PREPARE_COMMIT else COMPLETE_ABORT,
                   partitions=frozenset(), txn_last_update_timestamp=now)
