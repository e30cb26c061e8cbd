"""Index lookups against a sorted map, as Kafka's OffsetIndexTest does."""

from bisect import bisect_right

from hypothesis import given
from hypothesis import strategies as st

from strom.storage.files import MemoryMedium
from strom.storage.index import OffsetIndex, TimeIndex


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 500)), max_size=60),
       st.lists(st.integers(0, 4000), max_size=30))
def test_offset_index_lookup_matches_a_sorted_map(steps, probes):
    medium = MemoryMedium()
    index = OffsetIndex(medium.open("i"))
    model = {}
    rel, pos = 0, 0
    for d_rel, d_pos in steps:
        index.append(rel, pos)
        model[rel] = pos
        rel += d_rel
        pos += d_pos
    keys = sorted(model)
    for probe in probes:
        i = bisect_right(keys, probe)
        assert index.lookup(probe) == (model[keys[i - 1]] if i else 0)
    # Persisted entries load back identically.
    index.write_pending()
    again = OffsetIndex(medium.open("i"))
    again.load(log_size=pos + 1)
    assert list(again.relative_offsets) == keys


@given(st.lists(st.tuples(st.integers(-5, 50), st.integers(0, 3)), max_size=60),
       st.lists(st.integers(-10, 3000), max_size=30))
def test_time_index_keeps_only_increasing_timestamps(steps, probes):
    index = TimeIndex(MemoryMedium().open("t"))
    ts, rel, model = 0, 0, {}
    for d_ts, d_rel in steps:
        ts += d_ts
        rel += d_rel
        if not model or ts > max(model):
            model[ts] = rel
        index.maybe_append(ts, rel)
    keys = sorted(model)
    assert list(index.timestamps) == keys
    for probe in probes:
        i = bisect_right(keys, probe - 1)
        assert index.lookup(probe) == (model[keys[i - 1]] if i else 0)


def test_suspect_index_is_rebuilt(tmp_path):
    from strom.storage import LogConfig, PartitionLog
    from strom.storage.files import DiskMedium

    from .helpers import batch, read_all

    medium = DiskMedium(str(tmp_path))
    plog = PartitionLog(medium, "t-0", LogConfig({"index.interval.bytes": "100"}))
    for i in range(50):
        plog.append(batch([b"x" * 40]))
    plog.close()
    index_path = tmp_path / "t-0" / "00000000000000000000.index"
    good = index_path.read_bytes()
    assert len(good) > 8 * 10
    index_path.write_bytes(good[:-3] + b"\xff\xff\xff")  # garbage entry, ragged size
    plog = PartitionLog(medium, "t-0", LogConfig({"index.interval.bytes": "100"}), clean=True)
    assert index_path.read_bytes() == good
    assert [r.offset for r in read_all(plog, 33)][0] == 33


@given(st.lists(st.integers(1, 6), min_size=1, max_size=80), st.sampled_from([64, 300, 4096]),
       st.booleans())
def test_reads_at_every_offset_find_the_batch_holding_it(sizes, interval, reopen):
    """The sparse index plus the tail cache (batches since the last index
    entry) find, for every offset, the batch that holds it, fresh and after
    a reload (which rebuilds the cache from the last index entry)."""
    from strom.records.batch import BatchHeader
    from strom.storage.segment import Segment
    from tests.unit.storage.helpers import batch

    medium = MemoryMedium()
    seg = Segment(medium, "d", 100, interval)
    spans, offset = [], 100
    for n in sizes:
        raw = bytearray(batch([b"v" * 20] * n))
        raw[:8] = offset.to_bytes(8, "big")
        seg.append([raw], len(raw), [(0, BatchHeader.parse(raw))])
        spans.append((offset, offset + n - 1))
        offset += n
    if reopen:
        seg.offset_index.write_pending()
        seg = Segment(medium, "d", 100, interval)
        seg.load()
    for first, last in spans:
        for o in range(first, last + 1):
            header = BatchHeader.parse(seg.read(o, 1))
            assert (header.base_offset, header.last_offset) == (first, last)
    assert seg.read(offset, 1000) == b""
