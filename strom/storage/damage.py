"""Telling damaged bytes in a segment's `.log` from intact batches.

A batch is intact when its header is plausible where it stands (length
within the segment, magic 2, offsets after the batch before it and within
the segment's 32-bit relative range) and its CRC-32C matches. The CRC does
not cover `base_offset`, `batch_length` or `partition_leader_epoch`, so the
plausibility rules are what catch damage there; a flip that keeps the
offsets in order goes unnoticed (Kafka has the same blind spot).

Damaged bytes are quarantined, not cut (except at the very end of a log,
see Segment): a `Damage` is the byte range from the first bad byte to the
next intact batch, found by `find_intact`. Readers skip it as if its offsets
had been compacted away.
"""

from typing import NamedTuple

from strom.records.batch import BATCH_HEADER_SIZE, LOG_OVERHEAD, MAGIC, BatchHeader, validate_batch
from strom.records.errors import InvalidRecordError

_MIN_LENGTH = BATCH_HEADER_SIZE - LOG_OVERHEAD
_SCAN_CHUNK = 1024 * 1024
_MAGIC_AT = 16  # byte of the magic within a batch


class Damage(NamedTuple):
    position: int  # first damaged byte in the `.log`
    end: int  # first byte of the next intact batch, or the segment's size


def plausible(header: BatchHeader, pos: int, size: int, min_base: int, base_offset: int) -> bool:
    """Whether a header at `pos` could start a batch of this segment."""
    return (
        header.batch_length >= _MIN_LENGTH
        and pos + header.batch_length + LOG_OVERHEAD <= size
        and header.magic == MAGIC
        and header.base_offset >= min_base
        and header.last_offset_delta >= 0
        and header.base_offset + header.last_offset_delta - base_offset <= 0xFFFFFFFF
    )


def intact_at(file, pos: int, size: int, min_base: int, base_offset: int) -> BatchHeader | None:
    """The header of the batch at `pos` if it is intact (CRC included), else None."""
    head = file.pread(pos, BATCH_HEADER_SIZE)
    if len(head) < BATCH_HEADER_SIZE:
        return None
    header = BatchHeader.parse(head)
    if not plausible(header, pos, size, min_base, base_offset):
        return None
    raw = file.pread(pos, header.size)
    try:
        validate_batch(raw)
    except InvalidRecordError:
        return None
    return header


def _confirmed(file, pos: int, size: int, min_base: int, base_offset: int) -> bool:
    """An intact batch at `pos`, followed by the segment's end or by another
    intact batch: a batch embedded in a record's value, or CRC-valid by
    chance, is not followed by one."""
    header = intact_at(file, pos, size, min_base, base_offset)
    if header is None:
        return False
    after = pos + header.size
    return after == size or intact_at(file, after, size, header.next_offset, base_offset) is not None


def find_intact(file, pos: int, size: int, min_base: int, base_offset: int) -> int | None:
    """Position of the first intact batch after a bad one at `pos`, or None.

    First where the bad batch's own length points (a flipped byte in the
    records leaves it right), then every place a magic byte could be."""
    head = file.pread(pos, BATCH_HEADER_SIZE)
    if len(head) == BATCH_HEADER_SIZE:
        header = BatchHeader.parse(head)
        nxt = pos + header.size
        if header.batch_length >= _MIN_LENGTH and pos < nxt < size and \
                _confirmed(file, nxt, size, min_base, base_offset):
            return nxt
    start = pos + 1
    while start + BATCH_HEADER_SIZE <= size:
        chunk = file.pread(start + _MAGIC_AT, min(_SCAN_CHUNK, size - start - _MAGIC_AT))
        if not chunk:
            return None
        i = chunk.find(MAGIC.to_bytes(1, "big"))
        while i >= 0:
            if _confirmed(file, start + i, size, min_base, base_offset):
                return start + i
            i = chunk.find(MAGIC.to_bytes(1, "big"), i + 1)
        start += len(chunk)
    return None
