"""RecordBatch v2 (magic 2), the unit Strom stores and serves byte-for-byte.

Byte layout (big-endian), 61-byte header then the records:

    offset  size  field
    0       8     base_offset            patched by the broker on append
    8       4     batch_length           bytes after this field (total - 12)
    12      4     partition_leader_epoch
    16      1     magic                  must be 2
    17      4     crc                    CRC-32C of bytes 21..end (unsigned)
    21      2     attributes             bits 0-2 codec, 3 timestamp type,
                                         4 transactional, 5 control,
                                         6 has delete horizon
    23      4     last_offset_delta
    27      8     base_timestamp
    35      8     max_timestamp          patched for LogAppendTime
    43      8     producer_id
    51      2     producer_epoch
    53      4     base_sequence
    57      4     records_count
    61      ...   records, compressed as a whole when the codec is not none

Because the CRC starts at `attributes`, patching base_offset or
partition_leader_epoch never invalidates it; patching max_timestamp does, so
`patch_max_timestamp` recomputes it.
"""

import struct
from enum import IntEnum
from typing import NamedTuple

from strom.records import codecs
from strom.records.errors import CorruptRecordError, DecompressionLimitError, InvalidRecordError
from strom.records.record import Record, decode_records, encode_record, find_timestamp
from strom.records.validate import check_records



def crc32c(data) -> int:  # noqa: F811 (replaced by the C function on first call)
    """CRC-32C, from the `crc32c` package, imported on first use: its
    `__init__` reads package metadata (~20 ms), which start-up need not pay.
    The import rebinds this module's `crc32c`, so later calls go straight
    to the C function."""
    global crc32c
    from crc32c import crc32c

    return crc32c(data)


BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length precede the counted bytes
MAGIC = 2
NO_PRODUCER_ID = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_AND_LENGTH = struct.Struct(">qi")
_Q = struct.Struct(">q")
_I = struct.Struct(">I")


class Compression(IntEnum):
    NONE = codecs.NONE
    GZIP = codecs.GZIP
    SNAPPY = codecs.SNAPPY
    LZ4 = codecs.LZ4
    ZSTD = codecs.ZSTD


class TimestampType(IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class BatchHeader(NamedTuple):
    """The 61-byte header, parsed. A NamedTuple: parsing sits on the produce
    path, and building a tuple is several times cheaper than a dataclass."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @classmethod
    def parse(cls, buf, pos: int = 0) -> "BatchHeader":
        if len(buf) - pos < BATCH_HEADER_SIZE:
            raise CorruptRecordError(
                f"batch header needs {BATCH_HEADER_SIZE} bytes, {len(buf) - pos} left"
            )
        return tuple.__new__(cls, _HEADER.unpack_from(buf, pos))

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & 0x07)

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType((self.attributes >> 3) & 1)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id != NO_PRODUCER_ID


def batch_size_at(buf, pos: int) -> int | None:
    """Total size of the batch starting at `pos`, or None if its length field
    is not fully inside `buf`."""
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    return _OFFSET_AND_LENGTH.unpack_from(buf, pos)[1] + LOG_OVERHEAD


def validate_batch(buf, pos: int = 0, *, strict: bool = False,
                   base_offset: int | None = None,
                   max_decompressed: int = codecs.MAX_DECOMPRESSED_BYTES) -> BatchHeader:
    """Check one batch at `pos` of `buf` and return its header.

    Checks length, magic, CRC-32C and delta consistency. `strict` adds the
    rules for batches fresh from a producer, as Kafka's LogValidator: offset
    deltas dense (last_offset_delta == records_count - 1, which compacted
    batches break), at least one record, no control batch, a sequence
    number when there is a producer id, and every record well formed
    (strom.records.validate), decompressing at most `max_decompressed`
    bytes (DecompressionLimitError beyond). With `base_offset`, the header
    returned carries that base offset (the one the log assigns; the CRC
    does not cover it).
    """
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptRecordError(
            f"batch header needs {BATCH_HEADER_SIZE} bytes, {len(buf) - pos} left"
        )
    # Fields as locals, once: this runs for every batch produced.
    fields = _HEADER.unpack_from(buf, pos)
    _, length, _, magic, crc, attributes, last_delta, _, _, producer_id, _, sequence, count = fields
    if length < BATCH_HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {length} is below the header size")
    end = pos + length + LOG_OVERHEAD
    if end > len(buf):
        raise CorruptRecordError(
            f"batch of {length + LOG_OVERHEAD} bytes is truncated at {len(buf) - pos} bytes"
        )
    if magic != MAGIC:
        raise InvalidRecordError(f"magic {magic} is not supported, only 2")
    actual = crc32c((buf if type(buf) is memoryview else memoryview(buf))[pos + 21 : end])
    if actual != crc:
        raise CorruptRecordError(f"CRC-32C mismatch: header {crc:#010x}, data {actual:#010x}")
    codec = attributes & 0x07
    if codec > codecs.ZSTD:
        raise InvalidRecordError(f"unknown compression codec {codec}")
    if count < 0 or last_delta < 0:
        raise InvalidRecordError("negative records count or last offset delta")
    if count > 0 and last_delta < count - 1:
        raise InvalidRecordError(
            f"last offset delta {last_delta} is below records count {count} - 1"
        )
    if strict:
        if count == 0:
            raise InvalidRecordError("batch holds no records")
        if last_delta != count - 1:
            raise InvalidRecordError(
                f"last offset delta {last_delta} does not match records count {count}"
            )
        if attributes & 0x20:
            raise InvalidRecordError("clients may not write control batches")
        if producer_id >= 0 and sequence < 0:
            raise InvalidRecordError(
                f"producer id {producer_id} with no sequence number ({sequence})")
        if codec == codecs.NONE:
            check_records(buf, count, pos + BATCH_HEADER_SIZE, end)
        else:
            body = memoryview(buf)[pos + BATCH_HEADER_SIZE : end]
            try:
                body = codecs.decompress(codec, body, max_decompressed)
            except DecompressionLimitError as e:
                # Kafka reads a compressed batch as a stream and stops at the
                # first bad record: garbage (as most bombs are) is
                # INVALID_RECORD there. Records well formed up to the limit
                # are a batch too large to inflate here.
                prefix, e.prefix = e.prefix, None
                if prefix is not None:
                    check_records(prefix, count, partial=True)
                raise
            check_records(body, count)
    if base_offset is not None:
        fields = (base_offset, *fields[1:])
    return tuple.__new__(BatchHeader, fields)


def iter_batches(buf, pos: int = 0, end: int | None = None):
    """Yield (position, header) for each complete batch in buf[pos:end].

    Stops quietly at a trailing partial batch; does not check CRCs.
    """
    end = len(buf) if end is None else end
    while end - pos >= BATCH_HEADER_SIZE:
        header = BatchHeader.parse(buf, pos)
        if header.batch_length < BATCH_HEADER_SIZE - LOG_OVERHEAD or pos + header.size > end:
            return
        yield pos, header
        pos += header.size


_BATCH_LENGTH = struct.Struct(">i")
_PRODUCER = struct.Struct(">qh")


def transactional_producer(buf) -> tuple[int, int] | None:
    """(producer_id, producer_epoch) if `buf` (one partition's records in a
    Produce request) holds a transactional batch, else None. One batch, what
    every client sends, costs a length read and a byte test. A
    transactional batch beside others is InvalidRecordError: Kafka allows
    one batch per partition from Produce v3 on. Lengths are the client's:
    the walk only moves forward and never reads past `buf`."""
    end = len(buf)
    if end < BATCH_HEADER_SIZE:
        return None  # not a batch: the append refuses it
    if _BATCH_LENGTH.unpack_from(buf, 8)[0] + LOG_OVERHEAD >= end:
        return _PRODUCER.unpack_from(buf, 43) if buf[22] & 0x10 else None  # attributes, low byte
    pos = 0
    while pos + BATCH_HEADER_SIZE <= end:
        if buf[pos + 22] & 0x10:
            raise InvalidRecordError("a transactional batch must be the only batch of its "
                                     "partition in a produce request")
        pos += max(_BATCH_LENGTH.unpack_from(buf, pos + 8)[0] + LOG_OVERHEAD, BATCH_HEADER_SIZE)
    return None


def patch_base_offset(batch: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    _Q.pack_into(batch, pos, base_offset)


def patch_max_timestamp(batch: bytearray | memoryview, max_timestamp: int, pos: int = 0) -> None:
    """Set max_timestamp and the LogAppendTime bit, then re-sign the batch."""
    header = BatchHeader.parse(batch, pos)
    struct.pack_into(">h", batch, pos + 21, header.attributes | 0x08)
    _Q.pack_into(batch, pos + 35, max_timestamp)
    end = pos + header.size
    _I.pack_into(batch, pos + 17, crc32c(memoryview(batch)[pos + 21 : end]))


def batch_body(buf, pos: int = 0, header: BatchHeader | None = None,
               max_decompressed: int = codecs.MAX_DECOMPRESSED_BYTES):
    """The records of the batch at `pos`, decompressed (at most
    `max_decompressed` bytes: DecompressionLimitError beyond)."""
    header = header or BatchHeader.parse(buf, pos)
    body = memoryview(buf)[pos + BATCH_HEADER_SIZE : pos + header.size]
    if header.attributes & 0x07:
        body = codecs.decompress(header.attributes & 0x07, body, max_decompressed)
    return body


def batch_records(buf, pos: int = 0,
                  max_decompressed: int = codecs.MAX_DECOMPRESSED_BYTES) -> list[Record]:
    """Decode (and decompress, bounded) the records of the batch at `pos`."""
    header = BatchHeader.parse(buf, pos)
    return decode_records(batch_body(buf, pos, header, max_decompressed), header)


# Records whose timestamps ListOffsets reads one by one in a batch, at most
# (about 1 us each); real batches hold at most tens of thousands.
_TIMESTAMP_SCAN_RECORDS = 100_000


def offset_for_timestamp(buf, pos: int = 0, timestamp: int = 0,
                         max_decompressed: int = codecs.MAX_DECOMPRESSED_BYTES
                         ) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record at or after `timestamp` in
    the batch at `pos`, from the header alone where it answers (the batch
    is older, LogAppendTime, or one record), else from the records'
    timestamp deltas, without building Record objects."""
    header = BatchHeader.parse(buf, pos)
    if header.max_timestamp < timestamp:
        return None
    if header.attributes & 0x08:  # LogAppendTime: one time for every record
        return header.base_offset, header.max_timestamp
    if header.records_count == 1 or header.records_count > _TIMESTAMP_SCAN_RECORDS:
        # Past the bound, the batch's first offset: a reader starting there
        # gets a few records early, and the loop is not held for seconds.
        return header.base_offset, header.max_timestamp
    return find_timestamp(batch_body(buf, pos, header, max_decompressed), header, timestamp)


def build_batch(
    records: list[Record],
    *,
    base_offset: int = 0,
    compression: int = Compression.NONE,
    timestamp_type: int = TimestampType.CREATE_TIME,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = 0,
    is_transactional: bool = False,
    is_control: bool = False,
    base_timestamp: int | None = None,
) -> bytes:
    """Encode records (with their `offset_delta` and `timestamp`) as one batch.

    Records keep their own offset deltas, so a compacted batch keeps its
    gaps; `Record.offset_delta` None means "position in the list".
    """
    if not records:
        raise InvalidRecordError("a batch needs at least one record")
    timestamps = [r.timestamp for r in records]
    first_ts = min(timestamps) if base_timestamp is None else base_timestamp
    max_ts = max(timestamps)
    body = bytearray()
    last_delta = 0
    for i, r in enumerate(records):
        delta = i if r.offset_delta is None else r.offset_delta
        last_delta = max(last_delta, delta)
        encode_record(body, r, delta, r.timestamp - first_ts)
    payload = codecs.compress(compression, bytes(body))
    attributes = (
        int(compression)
        | (int(timestamp_type) << 3)
        | (0x10 if is_transactional else 0)
        | (0x20 if is_control else 0)
    )
    out = bytearray(BATCH_HEADER_SIZE) + payload
    _HEADER.pack_into(
        out, 0, base_offset, len(out) - LOG_OVERHEAD, partition_leader_epoch, MAGIC, 0,
        attributes, last_delta, first_ts, max_ts, producer_id, producer_epoch,
        base_sequence, len(records),
    )
    _I.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)
