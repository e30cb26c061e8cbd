import os

import pytest

from strom.records import InvalidRecordError
from strom.records.batch import BatchHeader
from strom.storage import LogConfig, OffsetOutOfRangeError, PartitionLog, RecordTooLargeError
from strom.storage.errors import LogWriteError

from .helpers import batch, dev_full, read_all


def on_dev_full(plog):
    """The active segment's .log on /dev/full (helpers.dev_full)."""
    return dev_full(plog.active.log_file)


def open_log(medium, **configs):
    return PartitionLog(medium, "t-0", LogConfig({k.replace("_", "."): str(v) for k, v in configs.items()}))


def test_offsets_are_dense_and_assigned_by_the_log(medium_factory):
    plog = open_log(medium_factory())
    r1 = plog.append(batch([b"a", b"b", b"c"]))
    r2 = plog.append(batch([b"d"]))
    assert (r1.base_offset, r1.last_offset, r2.base_offset) == (0, 2, 3)
    assert plog.log_end_offset == plog.high_watermark == 4
    assert [r.value for r in read_all(plog)] == [b"a", b"b", b"c", b"d"]
    assert [r.offset for r in read_all(plog)] == [0, 1, 2, 3]


def test_read_returns_at_least_one_whole_batch(medium_factory):
    plog = open_log(medium_factory())
    plog.append(batch([b"x" * 5000]))
    plog.append(batch([b"y"]))
    data = plog.read(0, 10)
    assert BatchHeader.parse(data).size == len(data) > 5000
    assert plog.read(0, 10, min_one=False) == b""
    both = plog.read(0, 1 << 20)
    assert len(both) > len(data)


def test_read_out_of_range_and_at_end(medium_factory):
    plog = open_log(medium_factory())
    plog.append(batch([b"a"]))
    assert plog.read(1, 100) == b""
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(2, 100)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(-1, 100)


def test_roll_by_segment_bytes_and_read_across_segments(medium_factory):
    plog = open_log(medium_factory(), segment_bytes=500)
    for i in range(40):
        plog.append(batch([b"%03d" % i * 10]))
    assert len(plog.segments) > 5
    assert [r.offset for r in read_all(plog)] == list(range(40))
    assert [r.offset for r in read_all(plog, 17)][0] == 17


def test_roll_by_segment_ms(medium_factory):
    plog = open_log(medium_factory(), segment_ms=1000)
    plog.append(batch([b"a"], ts=10_000))
    plog.append(batch([b"b"], ts=10_500))
    assert len(plog.segments) == 1
    plog.append(batch([b"c"], ts=11_001))
    assert [s.base_offset for s in plog.segments] == [0, 2]


def test_offset_for_timestamp(medium_factory):
    plog = open_log(medium_factory(), segment_bytes=300, index_interval_bytes=100)
    for i in range(30):
        plog.append(batch([b"v1", b"v2"], ts=1000 + 10 * i))  # timestamps t, t+1
    assert plog.offset_for_timestamp(0) == (0, 1000)
    assert plog.offset_for_timestamp(1001) == (1, 1001)
    assert plog.offset_for_timestamp(1002) == (2, 1010)
    assert plog.offset_for_timestamp(1150) == (30, 1150)
    assert plog.offset_for_timestamp(1291) == (59, 1291)
    assert plog.offset_for_timestamp(1292) is None
    assert plog.max_timestamp_offset() == (59, 1291)


def test_log_append_time_overrides_timestamps(medium_factory):
    plog = open_log(medium_factory(), message_timestamp_type="LogAppendTime")
    result = plog.append(batch([b"a"], ts=5), now=777_000)
    assert result.log_append_time == 777_000
    header = BatchHeader.parse(plog.read(0, 100))
    assert header.max_timestamp == 777_000 and header.timestamp_type == 1


def test_max_message_bytes(medium_factory):
    plog = open_log(medium_factory(), max_message_bytes=1000)
    with pytest.raises(RecordTooLargeError):
        plog.append(batch([b"x" * 2000]))
    assert plog.log_end_offset == 0


@pytest.mark.parametrize("damage", ["crc", "length", "magic", "deltas"])
def test_bad_batches_are_refused_and_the_log_is_unchanged(medium_factory, damage):
    plog = open_log(medium_factory())
    plog.append(batch([b"good"]))
    before = plog.read(0, 1000)
    raw = bytearray(batch([b"a", b"b"]))
    if damage == "crc":
        raw[-1] ^= 1
    elif damage == "length":
        raw = raw[:-3]
    elif damage == "magic":
        raw[16] = 1
    else:
        raw[26] = 5  # last_offset_delta low byte: 5 for 2 records
    with pytest.raises(InvalidRecordError):
        plog.append(bytes(raw))
    assert plog.log_end_offset == 1
    assert plog.read(0, 1000) == before
    assert plog.append(batch([b"next"])).base_offset == 1


def test_several_batches_in_one_append(medium_factory):
    plog = open_log(medium_factory())
    result = plog.append(batch([b"a", b"b"]) + batch([b"c"]))
    assert (result.base_offset, result.last_offset) == (0, 2)
    assert [r.offset for r in read_all(plog)] == [0, 1, 2]


def test_retention_by_bytes_never_deletes_the_active_segment(medium_factory):
    plog = open_log(medium_factory(), segment_bytes=300, retention_bytes=600)
    for i in range(30):
        plog.append(batch([b"x" * 50]))
    plog.apply_retention()
    assert plog.size <= 600 + 300
    assert plog.log_start_offset == plog.segments[0].base_offset > 0
    assert read_all(plog)[-1].offset == 29
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(0, 100)


def test_retention_by_time(medium_factory):
    plog = open_log(medium_factory(), segment_bytes=300, retention_ms=1000)
    for i in range(10):
        plog.append(batch([b"x" * 100], ts=1000 + i))
    plog.append(batch([b"new" * 40], ts=50_000))
    plog.append(batch([b"newer"], ts=50_001))
    deleted = plog.apply_retention(now=50_500)
    assert deleted > 0
    assert read_all(plog)[0].value == b"new" * 40
    assert plog.log_start_offset == 10


def test_delete_records_moves_log_start_and_survives_reopen(medium_factory):
    medium = medium_factory()
    plog = open_log(medium, segment_bytes=300, retention_ms=-1)
    for i in range(20):
        plog.append(batch([b"x" * 50]))
    assert plog.delete_records_before(7) == 7
    assert read_all(plog)[0].offset == 7
    with pytest.raises(OffsetOutOfRangeError):
        plog.delete_records_before(21)
    plog.close()
    plog = open_log(medium, segment_bytes=300, retention_ms=-1)
    assert plog.log_start_offset == 7
    assert plog.segments[0].base_offset <= 7


def test_close_and_reopen_keeps_everything(medium_factory):
    medium = medium_factory()
    plog = open_log(medium, segment_bytes=400)
    for i in range(25):
        plog.append(batch([b"%d" % i] * 3, ts=2000 + i))
    expected = read_all(plog)
    plog.close()
    again = open_log(medium, segment_bytes=400)
    assert again.log_end_offset == 75
    assert read_all(again) == expected
    assert again.offset_for_timestamp(2010) == (26, 2010)  # batch 8: 2008, 2009, 2010
    assert again.append(batch([b"more"])).base_offset == 75


def test_truncate_to_removes_whole_batches(medium_factory):
    plog = open_log(medium_factory(), segment_bytes=300)
    for i in range(10):
        plog.append(batch([b"a" * 40, b"b" * 40]))
    plog.truncate_to(9)  # inside the batch [8, 9]: the whole batch goes
    assert plog.log_end_offset == 8
    assert plog.append(batch([b"c"])).base_offset == 8
    assert [r.offset for r in read_all(plog)] == list(range(9))


def test_a_failed_write_is_refused_until_a_write_succeeds_again(tmp_path):
    from strom.storage.files import DiskMedium

    plog = open_log(DiskMedium(str(tmp_path)))
    plog.append(batch([b"a"]))
    with on_dev_full(plog):
        with pytest.raises(LogWriteError):
            plog.append(batch([b"b"]))
        with pytest.raises(LogWriteError):
            plog.append(batch([b"b"]))
        assert plog.failed and plog.log_end_offset == 1
    # space again
    assert plog.append(batch([b"c"])).base_offset == 1
    assert not plog.failed
    assert [r.value for r in read_all(plog)] == [b"a", b"c"]


def test_a_failed_fsync_stays_sticky(tmp_path):
    """After a failed fsync the kernel may have dropped the dirty pages:
    nothing can say what is on disk, so the log stays offline."""
    from strom.storage.files import DiskMedium

    plog = open_log(DiskMedium(str(tmp_path)))
    plog.append(batch([b"a"]))
    with on_dev_full(plog), pytest.raises(LogWriteError):
        plog.flush()  # fdatasync fails: EINVAL
    with pytest.raises(LogWriteError):
        plog.append(batch([b"b"]))
    assert plog.failed and plog.log_end_offset == 1


def test_a_failed_fsync_after_a_failed_write_stays_sticky(tmp_path):
    """A write failure is undone by the next successful append; an fsync
    failure after it must not be forgotten with it."""
    from strom.storage.files import DiskMedium

    plog = open_log(DiskMedium(str(tmp_path)))
    plog.append(batch([b"a"]))
    with on_dev_full(plog):
        with pytest.raises(LogWriteError):
            plog.append(batch([b"b"]))  # ENOSPC
        with pytest.raises(LogWriteError):
            plog.flush()  # EINVAL
    with pytest.raises(LogWriteError):
        plog.append(batch([b"c"]))
    assert plog.failed and plog.log_end_offset == 1


def test_compressed_batches_are_stored_as_sent(medium_factory):
    from strom.records import Compression

    plog = open_log(medium_factory())
    raw = batch([b"z" * 1000] * 5, compression=Compression.ZSTD)
    plog.append(raw)
    stored = plog.read(0, 1 << 20)
    assert stored[12:] == raw[12:]  # byte for byte after the offset field
    assert [r.value for r in read_all(plog)] == [b"z" * 1000] * 5


def test_an_append_of_more_batches_than_one_writev_takes(tmp_path):
    """Two buffers per batch: 700 batches exceed IOV_MAX (1024)."""
    from strom.storage.files import DiskMedium

    plog = open_log(DiskMedium(str(tmp_path)))
    result = plog.append(b"".join(batch([b"%d" % i]) for i in range(700)))
    assert (result.base_offset, result.last_offset) == (0, 699)
    assert [r.value for r in read_all(plog)] == [b"%d" % i for i in range(700)]
    plog.close()
    plog = open_log(DiskMedium(str(tmp_path)))
    assert plog.log_end_offset == 700


def test_a_failing_read_takes_the_log_offline(tmp_path):
    from strom.storage.files import DiskMedium

    plog = open_log(DiskMedium(str(tmp_path)))
    plog.append(batch([b"a"]))
    f = plog.active.log_file
    os.close(f._fd)
    f._fd = os.open("/dev/full", os.O_WRONLY)  # pread fails: EBADF
    with pytest.raises(LogWriteError):
        plog.read(0, 4096)
    with pytest.raises(LogWriteError):
        plog.append(batch([b"b"]))


def test_a_start_offset_past_the_log_end_is_ignored_never_deletes(tmp_path, caplog):
    """DeleteRecords fsyncs the data below the new start before writing it,
    so a log-start-offset past the end is damage: the segments win (Kafka's
    loader would delete every segment here)."""
    from strom.storage.files import DiskMedium

    plog = open_log(DiskMedium(str(tmp_path)))
    plog.append(batch([b"a"]))
    plog.append(batch([b"b", b"c"]))
    assert plog.delete_records_before(2) == 2
    assert plog.recovery_point >= 2  # the data below the start is durable
    plog.close()
    (tmp_path / "t-0" / "log-start-offset").write_bytes(b"999999999")
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig(), recovery_point=1)
    assert (plog.log_start_offset, plog.log_end_offset) == (0, 3)
    assert "past the log end offset 3: ignored" in caplog.text
    assert [r.value for r in read_all(plog)] == [b"a", b"b", b"c"]
    plog.apply_retention()
    assert plog.log_start_offset == 0
