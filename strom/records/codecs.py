"""Compression codecs of RecordBatch attributes bits 0-2, via cramjam.

Snappy arrives in two shapes: raw blocks (librdkafka, most clients) and the
xerial framing the Java client writes (magic header, then length-prefixed
raw blocks). Decompression accepts both; compression writes xerial, which
every client reads.

Decompression is bounded: a batch of a few KB can inflate to gigabytes (a
compression bomb), so output goes into a buffer of at most `limit` bytes
and a stream that does not fit is refused with DecompressionLimitError
without ever being inflated whole. The buffer starts at the size the stream
declares (snappy's length header, the zstd or lz4 frame's content size,
gzip's ISIZE trailer) or a multiple of the input, and grows by 4x up to the
limit when a stream declares nothing or less than it holds.
"""

import struct

import cramjam

from strom.records.errors import CorruptRecordError, DecompressionLimitError

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

# Decompressed bytes one batch may hold unless a caller says otherwise.
# Kafka's max.message.bytes bounds a batch as stored (compressed); its
# records may be larger, so the log allows max(this, max.message.bytes).
MAX_DECOMPRESSED_BYTES = 8 * 1024 * 1024

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
# cramjam's message when the output buffer is full before the stream ends.
_FULL = "failed to write whole buffer"
_FIRST_GUESS_MIN = 64 * 1024


def compress(codec: int, data: bytes) -> bytes:
    if codec == NONE:
        return data
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == SNAPPY:
        out = bytearray(_XERIAL_HEADER)
        for i in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[i : i + _XERIAL_BLOCK]))
            out += struct.pack(">i", len(block)) + block
        return bytes(out)
    if codec == LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise CorruptRecordError(f"unknown compression codec {codec}")


def decompress(codec: int, data, limit: int = MAX_DECOMPRESSED_BYTES):
    """The decompressed bytes of `data` (a bytes-like object, possibly a
    memoryview of a larger buffer) as a bytearray, at most `limit` of them.

    Raises DecompressionLimitError when the stream holds more than `limit`
    bytes, CorruptRecordError when it does not decompress."""
    if codec == NONE:
        return data
    if codec not in NAMES:
        raise CorruptRecordError(f"unknown compression codec {codec}")
    try:
        if codec == SNAPPY:
            return _snappy(data, limit)
        module = _MODULES[codec]
        # What a stream declares is only a hint (it may lie either way):
        # the decoder, writing into a buffer of at most `limit`, decides.
        size = min(limit, max(_declared_size(codec, data) or 0, 4 * len(data), _FIRST_GUESS_MIN))
        while True:
            out = bytearray(size)
            try:
                del out[module.decompress_into(data, out):]
                return out
            except cramjam.DecompressionError as e:
                if _FULL not in str(e):
                    raise
                if size >= limit:  # `out` holds the first `limit` bytes
                    raise DecompressionLimitError(
                        f"{NAMES[codec]} data decompresses to more than {limit} bytes", out) from None
                size = min(limit, size * 4)
    except cramjam.DecompressionError as e:
        raise CorruptRecordError(f"{NAMES[codec]} data does not decompress: {e}") from None


_MODULES = {GZIP: cramjam.gzip, LZ4: cramjam.lz4, ZSTD: cramjam.zstd}


def _declared_size(codec: int, data) -> int | None:
    """The size a stream's own header or trailer declares, if any: a lower
    bound of its output (exact for a single frame or member)."""
    n = len(data)
    if codec == GZIP:
        # ISIZE: the last member's length mod 2**32, so never above the total.
        return int.from_bytes(data[n - 4 : n], "little") if n >= 18 else None
    if codec == ZSTD:
        if n < 6 or bytes(data[:4]) != b"\x28\xb5\x2f\xfd":
            return None
        descriptor = data[4]
        fcs_flag, single_segment = descriptor >> 6, (descriptor >> 5) & 1
        pos = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
        width = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
        if not width or pos + width > n:
            return None
        size = int.from_bytes(data[pos : pos + width], "little")
        return size + 256 if width == 2 else size
    if codec == LZ4:
        # Frame: magic, FLG (bit 3: content size present), BD, [size u64 le].
        if n < 15 or bytes(data[:4]) != b"\x04\x22\x4d\x18" or not data[4] & 0x08:
            return None
        return int.from_bytes(data[6:14], "little")
    return None


def _snappy(data, limit: int):
    if bytes(data[: len(_XERIAL_MAGIC)]) != _XERIAL_MAGIC:
        size = cramjam.snappy.decompress_raw_len(data)
        if size > limit:
            raise DecompressionLimitError(f"snappy data declares {size} bytes, over the limit of {limit}")
        out = bytearray(size)
        del out[cramjam.snappy.decompress_raw_into(data, out):]
        return out
    # Xerial: sum the blocks' declared lengths before inflating any of them;
    # past the limit, inflate only the blocks before it (the prefix).
    blocks, total, over = [], 0, False
    pos, end = len(_XERIAL_HEADER), len(data)
    while pos < end:
        if pos + 4 > end:
            raise CorruptRecordError("truncated xerial snappy block length")
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if n < 0 or pos + n > end:
            raise CorruptRecordError("truncated xerial snappy block")
        block = data[pos : pos + n]
        size = cramjam.snappy.decompress_raw_len(block)
        if total + size > limit:
            over = True
            break
        total += size
        blocks.append((block, size))
        pos += n
    out = bytearray(total)
    view, at = memoryview(out), 0
    for block, size in blocks:
        at += cramjam.snappy.decompress_raw_into(block, view[at : at + size])
    view.release()
    del out[at:]
    if over:
        raise DecompressionLimitError(f"snappy data declares over {limit} bytes", out)
    return out
