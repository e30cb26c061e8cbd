"""One record inside a RecordBatch v2 body.

    length: varint          bytes after this field
    attributes: int8        unused, 0
    timestamp_delta: varlong   relative to the batch's base_timestamp
    offset_delta: varint    relative to the batch's base_offset
    key_length: varint      -1 for a null key
    key: bytes
    value_length: varint    -1 for a null value (a tombstone)
    value: bytes
    headers_count: varint
    headers: (key_length varint, key utf-8, value_length varint, value)*
"""

from dataclasses import dataclass, field

from strom.records.errors import CorruptRecordError
from strom.records.varint import read_varint, write_varint


@dataclass(frozen=True, slots=True)
class Header:
    key: str
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    headers: tuple[Header, ...] = field(default=())
    offset_delta: int | None = None
    # Absolute offset, filled in by decode when the batch header is known.
    offset: int | None = None


def _read_bytes(buf, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_varint(buf, pos)
    if n < 0:
        return None, pos
    if pos + n > len(buf):
        raise CorruptRecordError("record field runs past the batch")
    return bytes(buf[pos : pos + n]), pos + n


def decode_records(body, header) -> list[Record]:
    """Decode `header.records_count` records from an uncompressed body."""
    out = []
    pos = 0
    for _ in range(header.records_count):
        length, pos = read_varint(body, pos)
        end = pos + length
        if length < 0 or end > len(body):
            raise CorruptRecordError("record length runs past the batch")
        pos += 1  # attributes
        ts_delta, pos = read_varint(body, pos)
        offset_delta, pos = read_varint(body, pos)
        key, pos = _read_bytes(body, pos)
        value, pos = _read_bytes(body, pos)
        n_headers, pos = read_varint(body, pos)
        headers = []
        for _ in range(n_headers):
            hkey, pos = _read_bytes(body, pos)
            hvalue, pos = _read_bytes(body, pos)
            headers.append(Header((hkey or b"").decode("utf-8", "replace"), hvalue))
        if pos != end:
            raise CorruptRecordError("record length does not match its fields")
        out.append(
            Record(
                key, value, header.base_timestamp + ts_delta, tuple(headers),
                offset_delta, header.base_offset + offset_delta,
            )
        )
    if pos != len(body):
        raise CorruptRecordError("bytes left over after the last record")
    return out


def find_timestamp(body, header, timestamp: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record in an uncompressed body
    whose timestamp is >= `timestamp`: reads each record's length and
    deltas only (ListOffsets by time; no Record objects)."""
    pos, end = 0, len(body)
    base_timestamp, base_offset = header.base_timestamp, header.base_offset
    for _ in range(header.records_count):
        length, pos = read_varint(body, pos)
        record_end = pos + length
        if length < 6 or record_end > end:
            raise CorruptRecordError("record length runs past the batch")
        ts_delta, p = read_varint(body, pos + 1)
        if base_timestamp + ts_delta >= timestamp:
            offset_delta, _ = read_varint(body, p)
            return base_offset + offset_delta, base_timestamp + ts_delta
        pos = record_end
    return None


def _write_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        write_varint(out, -1)
    else:
        write_varint(out, len(data))
        out += data


def encode_record(out: bytearray, r: Record, offset_delta: int, timestamp_delta: int) -> None:
    body = bytearray(b"\x00")
    write_varint(body, timestamp_delta)
    write_varint(body, offset_delta)
    _write_bytes(body, r.key)
    _write_bytes(body, r.value)
    write_varint(body, len(r.headers))
    for h in r.headers:
        _write_bytes(body, h.key.encode())
        _write_bytes(body, h.value)
    write_varint(out, len(body))
    out += body
