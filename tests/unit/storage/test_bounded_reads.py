"""Reads that look inside batches (ListOffsets by timestamp, the max
timestamp) use the header where it answers and decompress at most the
bounded amount otherwise: a bomb already on disk (written before appends
were validated) costs neither seconds nor its inflated size."""

import time
import tracemalloc

from strom.records import Compression, Record, TimestampType, build_batch
from strom.storage import LogConfig, PartitionLog
from tests.unit.records.helpers import bomb, raw_batch

MiB = 1 << 20


def open_log(medium):
    return PartitionLog(medium, "t-0", LogConfig({}))


def test_offset_for_timestamp_over_a_stored_bomb_is_fast_and_bounded(medium_factory):
    plog = open_log(medium_factory())
    plog.append(build_batch([Record(None, b"a", 1000), Record(None, b"b", 1001)]))
    # 256 MiB of zstd zeros, claiming timestamps 2000..3000: appended
    # without validation, as a log written by an older Strom may hold it.
    plog.append(raw_batch(bomb(4, 256), count=1000, codec=4, base_timestamp=2000,
                          max_timestamp=3000), validate=False)
    plog.append(build_batch([Record(None, b"c", 4000)]))
    tracemalloc.start()
    try:
        start = time.perf_counter()
        found = plog.offset_for_timestamp(2500)
        maximum = plog.max_timestamp_offset()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found == (2, 3000)  # the batch's first offset: never after the one wanted
    assert maximum == (1002, 4000)
    assert plog.offset_for_timestamp(3500) == (1002, 4000)
    assert elapsed < 1.0
    assert peak < 32 * MiB, f"{peak // MiB} MiB allocated"


def test_offset_for_timestamp_answers_from_headers_or_deltas(medium_factory):
    plog = open_log(medium_factory())
    plog.append(build_batch([Record(None, b"%d" % i, 1000 + 10 * i) for i in range(50)],
                            compression=Compression.ZSTD))
    plog.append(build_batch([Record(None, b"x", 5000)], compression=Compression.GZIP))
    plog.append(build_batch([Record(None, b"y", 6000), Record(None, b"z", 6001)],
                            timestamp_type=TimestampType.LOG_APPEND_TIME))
    assert plog.offset_for_timestamp(0) == (0, 1000)
    assert plog.offset_for_timestamp(1205) == (21, 1210)
    assert plog.offset_for_timestamp(1490) == (49, 1490)
    assert plog.offset_for_timestamp(1491) == (50, 5000)
    assert plog.offset_for_timestamp(5500) == (51, 6001)  # LogAppendTime: one time for the batch
    assert plog.offset_for_timestamp(7000) is None
