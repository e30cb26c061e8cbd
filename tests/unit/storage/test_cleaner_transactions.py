"""Compaction of a log with transactions: aborted data goes, committed data
is compacted like any other, nothing at or past the LSO is touched, and
markers stay as long as Kafka keeps them."""

from strom.records import Record, build_batch
from strom.records.batch import BatchHeader, iter_batches
from strom.storage import LogConfig, PartitionLog, cleaner
from strom.storage.files import DiskMedium

from .helpers import read_all

NOW = 10_000_000
OLD = NOW - 100_000
EXPIRY = 10_000  # producers idle longer than this: their last batches are not kept


def compacted(tmp_path, clean=False):
    return PartitionLog(DiskMedium(str(tmp_path)), "c-0", LogConfig({
        "cleanup.policy": "compact", "segment.bytes": "400", "retention.ms": "-1",
        "delete.retention.ms": "1000"}), clean=clean)


def txn(pid, seq, kvs, ts=OLD):
    return build_batch([Record(k, v, ts) for k, v in kvs], producer_id=pid, producer_epoch=0,
                       base_sequence=seq, is_transactional=True)


def put(plog, key, value, ts=OLD):
    plog.append(build_batch([Record(key, value, ts)]))


def fill(plog, n=12):
    for i in range(n):
        put(plog, b"filler%d" % i, b"x" * 40)


def controls(plog):
    out = []
    for seg in plog.segments:
        for _, h, _raw in seg.batches():
            if h.is_control:
                out.append((h.base_offset, h.records_count, bool(h.attributes & 0x40)))
    return out


def test_aborted_data_is_dropped_and_committed_kept(tmp_path):
    plog = compacted(tmp_path)
    plog.append(txn(1, 0, [(b"a", b"a-committed"), (b"b", b"b-committed")]))  # 0-1
    plog.append_marker(1, 0, True, 0, now=OLD)  # 2
    plog.append(txn(2, 0, [(b"a", b"a-aborted"), (b"c", b"c-aborted")]))  # 3-4
    abort = plog.append_marker(2, 0, False, 0, now=OLD).base_offset  # 5
    fill(plog)
    plog.roll()
    put(plog, b"z", b"active", NOW)
    assert plog.aborted_transactions(0, 6) == [(2, 3)]
    cleaner.clean(plog, NOW, producer_id_expiration_ms=EXPIRY)
    values = {r.key: r.value for r in read_all(plog) if r.key in (b"a", b"b", b"c")}
    # the newer aborted `a` neither survives nor supersedes the committed one
    assert values == {b"a": b"a-committed", b"b": b"b-committed"}
    assert [r.offset for r in read_all(plog) if r.key in (b"a", b"b")] == [0, 1]
    # the ABORT marker stays (its data was there this pass), with its index entry
    assert abort in [c[0] for c in controls(plog)]
    assert plog.aborted_transactions(0, 6) == [(2, 3)]
    plog.close()
    plog = compacted(tmp_path, clean=True)
    assert plog.aborted_transactions(0, 6) == [(2, 3)]  # the cleaned .txnindex was written


def test_markers_go_after_their_data_and_delete_retention(tmp_path):
    plog = compacted(tmp_path)
    plog.append(txn(1, 0, [(b"k", b"v1")]))  # 0
    commit = plog.append_marker(1, 0, True, 0, now=OLD).base_offset  # 1
    plog.append(txn(2, 0, [(b"j", b"aborted")]))  # 2
    abort = plog.append_marker(2, 0, False, 0, now=OLD).base_offset  # 3
    put(plog, b"k", b"v2")  # supersedes the committed k
    fill(plog)
    plog.roll()
    put(plog, b"z", b"active", NOW)
    cleaner.clean(plog, NOW, producer_id_expiration_ms=EXPIRY)
    # data seen this pass: both markers stay untouched
    assert [(o, n, h) for o, n, h in controls(plog)] == [(commit, 1, False), (abort, 1, False)]
    cleaner.clean(plog, NOW + 10, producer_id_expiration_ms=EXPIRY)
    # no data left behind them: stamped with a delete horizon, still there
    assert controls(plog) == [(commit, 1, True), (abort, 1, True)]
    assert plog.aborted_transactions(0, 4) == []  # nothing left for a reader to drop
    plog.close()
    plog = compacted(tmp_path)  # every batch checked again (as after a crash): all stay
    assert controls(plog) == [(commit, 1, True), (abort, 1, True)]
    assert plog.log_end_offset > abort and plog.ongoing_transactions() == {}
    cleaner.clean(plog, NOW + 500, producer_id_expiration_ms=EXPIRY)
    assert len(controls(plog)) == 2  # delete.retention.ms (1000) has not passed
    cleaner.clean(plog, NOW + 1100, producer_id_expiration_ms=EXPIRY)
    assert controls(plog) == []
    assert {r.key: r.value for r in read_all(plog)}[b"k"] == b"v2"


def test_nothing_at_or_past_the_lso_is_cleaned(tmp_path):
    plog = compacted(tmp_path)
    put(plog, b"k", b"old")
    fill(plog, 8)
    plog.roll()
    lso = plog.append(txn(5, 0, [(b"k", b"in-open-txn")])).base_offset
    fill(plog, 8)
    put(plog, b"dup", b"1")
    put(plog, b"dup", b"2")
    plog.roll()
    put(plog, b"z", b"active", NOW)
    assert plog.last_stable_offset == lso
    before = {s.base_offset: open(s.log_file.path, "rb").read() for s in plog.segments
              if s.next_offset > lso}
    cleaner.clean(plog, NOW, producer_id_expiration_ms=EXPIRY)
    after = {s.base_offset: open(s.log_file.path, "rb").read() for s in plog.segments
             if s.next_offset > lso}
    assert after == before  # the segments reaching past the LSO are as they were
    # the open transaction's `k` may still abort: the committed `k` stays
    assert [r.value for r in read_all(plog) if r.key == b"k"] == [b"old", b"in-open-txn"]
    plog.append_marker(5, 0, True, 0, now=OLD)
    plog.roll()
    put(plog, b"z", b"active", NOW)
    cleaner.clean(plog, NOW, producer_id_expiration_ms=EXPIRY)
    # decided now: the committed transaction's k supersedes the old one
    assert [r.value for r in read_all(plog) if r.key == b"k"] == [b"in-open-txn"]
    assert [r.value for r in read_all(plog) if r.key == b"dup"] == [b"2"]


def test_an_aborted_producers_last_batch_stays_as_a_header(tmp_path):
    """The producers' last five batches rule holds for aborted data too: the
    batch is emptied, its header stays, and so does the marker."""
    plog = compacted(tmp_path)
    plog.append(txn(2, 0, [(b"j", b"aborted")], ts=NOW - 50))
    plog.append_marker(2, 0, False, 0, now=NOW - 50)
    fill(plog)
    plog.roll()
    put(plog, b"z", b"active", NOW)
    cleaner.clean(plog, NOW)  # producer 2 is recent: its batches are retained
    first = plog.segments[0]
    headers = [h for _, h in first.headers()]
    assert headers[0].producer_id == 2 and headers[0].records_count == 0
    assert headers[1].is_control and headers[1].records_count == 1
    assert b"aborted" not in b"".join(r.value or b"" for r in read_all(plog))
    assert plog.aborted_transactions(0, 2) == [(2, 0)]


def test_a_swap_interrupted_by_a_crash_leaves_no_stale_txnindex(tmp_path):
    """replace_segments removes the first segment's `.txnindex` before the
    swap begins: wherever a crash stops it, the next load rebuilds it."""
    plog = compacted(tmp_path)
    plog.append(txn(2, 0, [(b"j", b"aborted")]))
    plog.append_marker(2, 0, False, 0, now=OLD)
    fill(plog)
    plog.roll()
    put(plog, b"z", b"active", NOW)
    plog.close()
    d = tmp_path / "c-0"
    first = sorted(d.glob("*.log"))[0]
    stem = first.name[: -len(".log")]
    # a crash between the `.cleaned` -> `.swap` rename and the `.swap` -> `.log` one
    (d / (first.name + ".swap")).write_bytes(first.read_bytes())
    (d / f"{stem}.txnindex").unlink()
    plog = compacted(tmp_path, clean=True)
    assert not list(d.glob("*.swap"))
    assert plog.aborted_transactions(0, 2) == [(2, 0)]
    assert (d / f"{stem}.txnindex").stat().st_size == 34


def test_a_plain_record_past_the_lso_supersedes_nothing(tmp_path):
    """K=v1 visible, then a transaction opens, then plain K=v2: v2 is past
    the LSO, so a read_committed reader cannot see it yet, and v1 must stay
    (Kafka's offset map stops at the first uncleanable offset)."""
    plog = compacted(tmp_path)
    put(plog, b"K", b"v1")  # 0
    plog.roll()
    plog.append(txn(1, 0, [(b"T", b"t")]))  # 1: open, LSO = 1
    put(plog, b"K", b"v2")  # 2
    plog.roll()
    assert plog.last_stable_offset == 1
    cleaner.clean(plog, NOW)
    visible = [(r.offset, r.value) for r in read_all(plog) if r.offset < plog.last_stable_offset]
    assert visible == [(0, b"v1")]


def test_a_record_in_the_active_segment_supersedes_nothing(tmp_path):
    plog = compacted(tmp_path)
    put(plog, b"K", b"v1")  # 0
    plog.roll()
    put(plog, b"K", b"v2")  # 1, active
    cleaner.clean(plog, NOW)
    assert [(r.offset, r.value) for r in read_all(plog)] == [(0, b"v1"), (1, b"v2")]
