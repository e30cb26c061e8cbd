"""Build batches by hand, including ones no encoder would write: a header
with chosen fields around any payload, re-signed so only the rule under
test can refuse it."""

import struct
import zlib

import cramjam
import lz4.frame
from crc32c import crc32c

from strom.records.varint import write_varint

MiB = 1 << 20
_GZIP, _SNAPPY, _LZ4, _ZSTD = 1, 2, 3, 4

_HEADER = struct.Struct(">qiibIhiqqqhii")


def raw_batch(payload: bytes, count: int, *, last_delta: int | None = None, codec: int = 0,
              attributes: int = 0, producer_id: int = -1, base_sequence: int = -1,
              base_timestamp: int = 1000, max_timestamp: int = 1000) -> bytes:
    out = bytearray(61) + payload
    _HEADER.pack_into(
        out, 0, 0, len(out) - 12, 0, 2, 0, codec | attributes,
        count - 1 if last_delta is None else last_delta, base_timestamp, max_timestamp,
        producer_id, 0, base_sequence, count,
    )
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def resign(batch: bytes | bytearray) -> bytes:
    """Recompute the CRC after editing bytes past the header's CRC field."""
    out = bytearray(batch)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def varint(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def record(body_fields: bytes, length: int | None = None) -> bytes:
    """A record: its length varint (the true length unless given), then
    the fields as given."""
    return varint(len(body_fields) if length is None else length) + body_fields


def fields(offset_delta: int, key: bytes | None = None, value: bytes | None = b"v",
           headers: list[tuple[bytes, bytes | None]] = (), timestamp_delta: int = 0,
           header_count: int | None = None) -> bytes:
    out = b"\x00" + varint(timestamp_delta) + varint(offset_delta)
    out += varint(-1) if key is None else varint(len(key)) + key
    out += varint(-1) if value is None else varint(len(value)) + value
    out += varint(len(headers) if header_count is None else header_count)
    for k, v in headers:
        out += varint(len(k)) + k
        out += varint(-1) if v is None else varint(len(v)) + v
    return out


def bomb(codec: int, mib: int) -> bytes:
    """`mib` MiB of zeros, compressed a chunk at a time (never held whole)."""
    chunk = bytes(MiB)
    if codec == _GZIP:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join(c.compress(chunk) for _ in range(mib)) + c.flush()
    if codec == _LZ4:
        c = lz4.frame.LZ4FrameCompressor()
        return c.begin() + b"".join(c.compress(chunk) for _ in range(mib)) + c.flush()
    if codec == _ZSTD:
        c = cramjam.zstd.Compressor()
        for _ in range(mib):
            c.compress(chunk)
        return bytes(c.finish())
    if codec == _SNAPPY:  # xerial framing: 32 KiB blocks, each declaring its length
        block = bytes(cramjam.snappy.compress_raw(bytes(32 * 1024)))
        framed = len(block).to_bytes(4, "big") + block
        return b"\x82SNAPPY\x00" + (1).to_bytes(4, "big") * 2 + framed * (mib * 32)
    raise ValueError(codec)
