"""RecordBatch v2: header view, CRC-32C, record encode/decode, compression.

Pure functions over bytes; no I/O. See `batch.py` for the byte layout.
"""

from strom.records.batch import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    Compression,
    TimestampType,
    build_batch,
    iter_batches,
    patch_base_offset,
    patch_max_timestamp,
    validate_batch,
)
from strom.records.errors import CorruptRecordError, DecompressionLimitError, InvalidRecordError
from strom.records.record import Header, Record, decode_records

__all__ = [
    "BATCH_HEADER_SIZE",
    "BatchHeader",
    "Compression",
    "CorruptRecordError",
    "DecompressionLimitError",
    "Header",
    "InvalidRecordError",
    "Record",
    "TimestampType",
    "build_batch",
    "decode_records",
    "iter_batches",
    "patch_base_offset",
    "patch_max_timestamp",
    "validate_batch",
]
