"""Control batches: the COMMIT and ABORT markers that end a transaction in
a partition (KIP-98), in Kafka's layout.

A control batch has the transactional and control attributes set, the
producer id and epoch of the transaction it ends, base sequence -1, and
one record:

    key    version int16 (0), type int16 (0 ABORT, 1 COMMIT)
    value  version int16 (0), coordinator_epoch int32

Readers skip control batches (clients never hand them to applications);
read_committed consumers use ABORT markers, with the aborted-transaction
index the broker returns, to drop the aborted data before them.
"""

import struct

from strom.records.batch import build_batch, batch_records
from strom.records.errors import InvalidRecordError
from strom.records.record import Record

ABORT, COMMIT = 0, 1

_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")


def build_control_batch(producer_id: int, producer_epoch: int, commit: bool,
                        coordinator_epoch: int, timestamp: int, base_offset: int = 0) -> bytes:
    record = Record(_KEY.pack(0, COMMIT if commit else ABORT), _VALUE.pack(0, coordinator_epoch),
                    timestamp)
    return build_batch([record], base_offset=base_offset, producer_id=producer_id,
                       producer_epoch=producer_epoch, base_sequence=-1,
                       is_transactional=True, is_control=True)


def control_type(key: bytes | None) -> int:
    """ABORT or COMMIT from a control record's key."""
    if key is None or len(key) < _KEY.size:
        raise InvalidRecordError("a control record needs a 4-byte key")
    version, kind = _KEY.unpack_from(key)
    if version < 0 or kind not in (ABORT, COMMIT):
        raise InvalidRecordError(f"control record of unknown type {kind} (version {version})")
    return kind


def marker_of(buf, pos: int = 0) -> tuple[int, int]:
    """(ABORT or COMMIT, coordinator_epoch) of the control batch at `pos`."""
    records = batch_records(buf, pos)
    if len(records) != 1:
        raise InvalidRecordError(f"a control batch holds one record, not {len(records)}")
    kind = control_type(records[0].key)
    value = records[0].value or b""
    epoch = _VALUE.unpack_from(value)[1] if len(value) >= _VALUE.size else -1
    return kind, epoch
