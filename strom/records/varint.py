"""Zig-zag varints as used inside RecordBatch v2 records."""

from strom.records.errors import CorruptRecordError


def read_varint(buf, pos: int) -> tuple[int, int]:
    """Decode a signed zig-zag varint at `pos`; return (value, next_pos)."""
    shift = 0
    raw = 0
    while True:
        try:
            b = buf[pos]
        except IndexError:
            raise CorruptRecordError("truncated varint") from None
        pos += 1
        raw |= (b & 0x7F) << shift
        if not b & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")


def write_varint(out: bytearray, value: int) -> None:
    raw = (value << 1) ^ (value >> 63)
    raw &= 0xFFFFFFFFFFFFFFFF
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
