"""Decompression is bounded: a compression bomb is refused once its output
passes the limit, without being inflated whole (memory measured in a
child process, where nothing else has raised the peak)."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from strom.records import DecompressionLimitError, InvalidRecordError, validate_batch
from strom.records.codecs import GZIP, LZ4, SNAPPY, ZSTD, compress, decompress
from tests.unit.records.helpers import bomb, fields, raw_batch, record

MiB = 1 << 20


# gzip tops out near 1000:1 and is slow to build: 64 MiB of it is enough.
BOMBS = {GZIP: 64, LZ4: 256, ZSTD: 256, SNAPPY: 64}


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD], ids=["gzip", "snappy", "lz4", "zstd"])
def test_a_bomb_is_refused_at_the_limit_with_memory_bounded(codec, tmp_path):
    path = tmp_path / "bomb"
    path.write_bytes(raw_batch(bomb(codec, BOMBS[codec]), count=1000, codec=codec))
    script = textwrap.dedent(f"""
        import resource, sys, time
        from strom.records import InvalidRecordError, validate_batch
        batch = open({str(path)!r}, "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        try:
            validate_batch(batch, strict=True, max_decompressed={4 * MiB})
        except InvalidRecordError as e:  # zeros: INVALID_RECORD, as Kafka reads them
            print("refused", type(e).__name__, e, file=sys.stderr)
        else:
            raise SystemExit("accepted")
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(grown, time.perf_counter() - t)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    grown_kb, seconds = out.stdout.split()
    # 256 MiB inflated whole would raise the peak by at least that much.
    assert int(grown_kb) < 24 * 1024, f"peak RSS grew by {int(grown_kb) // 1024} MiB"
    assert float(seconds) < 2


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD], ids=["gzip", "snappy", "lz4", "zstd"])
def test_a_bomb_of_garbage_is_invalid_record_and_one_of_good_records_too_large(codec):
    # Kafka streams a compressed batch and stops at the first bad record:
    # zeros are INVALID_RECORD there too. Well-formed records past the
    # limit are MESSAGE_TOO_LARGE (Kafka has no such limit: ours bounds
    # memory and time).
    with pytest.raises(InvalidRecordError) as garbage:
        validate_batch(raw_batch(bomb(codec, 16), count=1000, codec=codec), strict=True,
                       max_decompressed=MiB)
    assert not isinstance(garbage.value, DecompressionLimitError)
    body = b"".join(record(fields(i, value=bytes(100))) for i in range(40_000))
    good = raw_batch(compress(codec, body), count=40_000, codec=codec)
    assert validate_batch(good, strict=True, max_decompressed=len(body)).records_count == 40_000
    with pytest.raises(DecompressionLimitError):
        validate_batch(good, strict=True, max_decompressed=MiB)


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD], ids=["gzip", "snappy", "lz4", "zstd"])
def test_output_up_to_the_limit_decompresses_and_one_byte_more_is_refused(codec):
    data = os.urandom(1000) * 100
    packed = compress(codec, data)
    assert bytes(decompress(codec, packed, len(data))) == data
    with pytest.raises(DecompressionLimitError):
        decompress(codec, packed, len(data) - 1)


def test_raw_snappy_declaring_gigabytes_is_refused_before_allocating():
    declared = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])  # uvarint 2**32 - 1
    start = time.perf_counter()
    with pytest.raises(DecompressionLimitError):
        decompress(SNAPPY, declared + b"\x00" * 10, 4 * MiB)
    assert time.perf_counter() - start < 0.5


def test_a_gzip_trailer_that_understates_the_size_still_stops_at_the_limit():
    packed = bytearray(bomb(GZIP, 16))
    packed[-4:] = (10).to_bytes(4, "little")  # ISIZE: "10 bytes"
    with pytest.raises(InvalidRecordError):  # over the limit, or corrupt: never inflated whole
        decompress(GZIP, bytes(packed), 4 * MiB)


def test_streams_of_several_frames_decompress_whole():
    # The first frame's declared size is only a hint for the buffer.
    for codec in (GZIP, LZ4, ZSTD):
        one = os.urandom(5000)
        two = b"y" * 300_000
        assert bytes(decompress(codec, compress(codec, one) + compress(codec, two))) == one + two
