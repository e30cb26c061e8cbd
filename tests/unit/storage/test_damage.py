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


@pytest.mark.parametrize("content", [b"999999999", b"\x00\x00", b"", b"12x"])
def test_a_wrong_log_start_offset_file_deletes_nothing(tmp_path, content, caplog):
    _fill(tmp_path)
    (tmp_path / "t-0" / "log-start-offset").write_bytes(content)
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    assert plog.log_start_offset == 0
    assert _consume(plog) == list(range(90))
    assert "log-start-offset" in caplog.text


def test_the_maintenance_pass_scrubs_damage_nobody_read(tmp_path):
    """The background scrub of the maintenance thread finds damage after a
    clean stop, though no reader came near it."""
    import time

    from strom.storage import LogManager

    logs = LogManager(str(tmp_path), maintenance_interval_s=3600)
    logs.create_topic("t", 1, {"segment.bytes": "4000", "retention.ms": "-1"})
    plog = logs.get_log("t", 0)
    for i in range(90):
        plog.append(batch([b"v%03d-" % i + b"x" * 60], ts=1000 + i))
    logs.close()
    segment = sorted((tmp_path / "t-0").glob("*.log"))[-2]
    pos, header = _batches(segment)[1]
    _damage(segment, pos + 30, "flip")

    logs = LogManager(str(tmp_path), maintenance_interval_s=0.05)
    try:
        plog = logs.get_log("t", 0)
        assert plog.unverified_bytes > 0  # a clean start checked nothing
        deadline = time.monotonic() + 10
        while plog.unverified_bytes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert plog.unverified_bytes == 0, "the scrub did not finish in 10 s"
        assert plog.damage_found == 1
        assert header.base_offset not in _consume(plog)
    finally:
        logs.close()


@pytest.mark.parametrize("how", ["flip", "length", "negative-length"])
def test_a_time_lookup_over_damage_skips_it_and_ends(tmp_path, how):
    import threading

    logs = _fill(tmp_path)
    batches = _batches(logs[1])
    pos, header = batches[2]
    if how == "negative-length":
        data = bytearray(logs[1].read_bytes())
        data[pos + 8 : pos + 12] = (-12).to_bytes(4, "big", signed=True)  # size 0: a walk never moves
        logs[1].write_bytes(bytes(data))
    else:
        _damage(logs[1], pos + (30 if how == "flip" else 0), how)
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    found = []
    t = threading.Thread(target=lambda: found.append(plog.offset_for_timestamp(1000 + header.base_offset)),
                         daemon=True)
    t.start()
    t.join(10)
    assert found, "the time lookup did not end"
    assert found[0][0] == header.next_offset  # the first intact record at or after the time


def test_an_offset_index_entry_pointing_at_another_batch_skips_nothing(tmp_path):
    """A flipped index entry that still passes the load's sanity checks, but
    names a later batch: readers must not skip the batches before it."""
    logs = _fill(tmp_path)
    index = logs[0].with_suffix(".index")
    entries = [(int.from_bytes(index.read_bytes()[i : i + 4], "big"),
                int.from_bytes(index.read_bytes()[i + 4 : i + 8], "big"))
               for i in range(0, index.stat().st_size, 8)]
    assert len(entries) >= 3
    batches = _batches(logs[0])
    rel, pos = entries[1]
    later = next(p for p, h in batches if p > pos and p < entries[2][1])  # a batch start, not this one
    data = bytearray(index.read_bytes())
    data[12:16] = later.to_bytes(4, "big")
    index.write_bytes(bytes(data))
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", CONFIG, clean=True)
    base = int(logs[0].stem)
    assert _consume(plog) == list(range(90))
    data = plog.read(base + rel, 100, min_one=True)
    assert next(iter_batches(data))[1].base_offset == base + rel
