"""Damage on disk after a clean stop or a crash: no read returns a batch
whose CRC fails, no reader is stuck below the log end, and only the
damaged batches are lost."""

import pytest

from strom.records.batch import iter_batches, validate_batch
from strom.storage import LogConfig, PartitionLog
from strom.storage.files import DiskMedium

from .helpers import batch

CONFIG = LogConfig({"segment.bytes": "4000", "index.interval.bytes": "300", "retention.ms": "-1"})


def _fill(tmp_path, n=90):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG)
    for i in range(n):
        plog.append(batch([b"v%03d-" % i + b"x" * (50 + i % 40)], ts=1000 + i))
    plog.close()
    return sorted((tmp_path / "t-0").glob("*.log"))


def _batches(path):
    """(position, header) of every batch in a segment file as written."""
    return list(iter_batches(path.read_bytes()))


def _consume(plog):
    """Read to the log end like a consumer; every batch must pass its CRC,
    and the read must reach the end (never stuck)."""
    offset, seen = plog.log_start_offset, []
    for _ in range(10_000):
        if offset >= plog.log_end_offset:
            return seen
        data = plog.read(offset, 700)
        assert data, f"stuck at {offset} below the log end {plog.log_end_offset}"
        for pos, header in iter_batches(data):
            validate_batch(data, pos)
            seen.append(header.base_offset)
            offset = header.next_offset
        assert sum(h.size for _, h in iter_batches(data)) == len(data), "a partial batch was served"
    raise AssertionError("no end")


def _damage(path, pos, how):
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[pos] ^= 0x40
    elif how == "length":
        data[pos + 8 : pos + 12] = (9999).to_bytes(4, "big")
    elif how == "zero":
        data[pos : pos + 600] = bytes(len(data[pos : pos + 600]))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "length", "zero"])
@pytest.mark.parametrize("crash", [False, True])
def test_damage_in_an_earlier_segment_loses_only_those_batches(tmp_path, how, crash):
    logs = _fill(tmp_path)
    victim = logs[1]
    batches = _batches(victim)
    pos, header = batches[3]
    damaged = {h.base_offset for p, h in batches if pos <= p < pos + (600 if how == "zero" else 1)}
    _damage(victim, pos + (30 if how == "flip" else 0), how)
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG,
                        recovery_point=0 if crash else None, clean=not crash)
    seen = _consume(plog)
    assert set(seen) == set(range(90)) - damaged
    assert plog.log_end_offset == 90
    assert plog.damage_found == 1
    assert plog.append(batch([b"after"])).base_offset == 90


@pytest.mark.parametrize("how", ["flip", "length", "zero"])
def test_damage_at_the_end_of_the_log_is_cut_and_readers_reach_the_end(tmp_path, how, caplog):
    logs = _fill(tmp_path)
    batches = _batches(logs[-1])
    pos, header = batches[-2] if how == "zero" else batches[-1]  # zeroes reach the end
    _damage(logs[-1], pos + (40 if how == "flip" else 0), how)
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    seen = _consume(plog)
    assert seen == list(range(header.base_offset))
    assert plog.log_end_offset == header.base_offset
    assert plog.append(batch([b"after"])).base_offset == header.base_offset
    assert _consume(plog)[-1] == header.base_offset


def test_the_scrub_finds_damage_nobody_read(tmp_path, caplog):
    logs = _fill(tmp_path)
    pos, header = _batches(logs[0])[2]
    _damage(logs[0], pos + 30, "flip")
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    assert plog.unverified_bytes > 0 and plog.damage_found == 0
    checked = 0
    while n := plog.scrub(1000):
        checked += n
    assert plog.unverified_bytes == 0
    assert checked >= plog.size - logs[-1].stat().st_size  # every byte once, or about
    assert plog.damage_found == 1
    assert caplog.text.count("quarantined") == 1
    assert header.base_offset not in _consume(plog)
    assert caplog.text.count("quarantined") == 1  # the reader skips it silently


def test_a_wrong_offset_index_costs_no_data(tmp_path):
    """Indexes are derived: one pointing into the middle of a batch makes
    the segment rescanned, not quarantined."""
    logs = _fill(tmp_path)
    index = logs[0].with_suffix(".index")
    data = bytearray(index.read_bytes())
    assert len(data) >= 16
    data[12:16] = (int.from_bytes(data[12:16], "big") + 7).to_bytes(4, "big")  # 2nd entry's position
    index.write_bytes(bytes(data))
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    assert _consume(plog) == list(range(90))
    assert plog.damage_found == 0


def test_garbage_after_the_last_batch_after_a_clean_stop(tmp_path):
    logs = _fill(tmp_path)
    with open(logs[-1], "ab") as f:
        f.write(b"\x07" * 37)
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    assert _consume(plog) == list(range(90))
    assert plog.append(batch([b"after"])).base_offset == 90
    assert _consume(plog) == list(range(91))
