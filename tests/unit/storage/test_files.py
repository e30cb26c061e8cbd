"""The bounded file cache: descriptors do not grow with segments."""

import os

from strom.storage import LogConfig, PartitionLog
from strom.storage.files import FDS_PER_PARTITION, DiskMedium

from .helpers import batch, read_all


def _open_under(root) -> int:
    root = os.path.realpath(root)
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(root + "/"):
                n += 1
        except OSError:
            pass
    return n


def test_logs_of_many_segments_holds_a_bounded_number_of_descriptors(tmp_path):
    config = LogConfig({"segment.bytes": "300", "retention.ms": "-1"})
    cap = 4
    medium = DiskMedium(str(tmp_path), max_open_files=cap)
    plogs = [PartitionLog(medium, f"t-{p}", config) for p in range(2)]
    for i in range(40):
        for plog in plogs:
            plog.append(batch([b"v%04d" % i + b"x" * 200]))
    assert all(len(plog.segments) >= 40 for plog in plogs)
    assert _open_under(tmp_path) <= cap + FDS_PER_PARTITION * len(plogs)
    for plog in plogs:  # every segment read again: files reopen on demand
        assert [r.value[:5] for r in read_all(plog)] == [b"v%04d" % i for i in range(40)]
        plog.flush()
    assert _open_under(tmp_path) <= cap + FDS_PER_PARTITION * len(plogs)
    assert medium.file_cache.evictions > 0
    for plog in plogs:
        plog.close()
    assert _open_under(tmp_path) == 0

    medium = DiskMedium(str(tmp_path), max_open_files=cap)
    again = [PartitionLog(medium, f"t-{p}", config, recovery_point=0) for p in range(2)]
    assert _open_under(tmp_path) <= cap + FDS_PER_PARTITION * len(again)
    for plog in again:
        assert len(read_all(plog)) == 40
        assert plog.append(batch([b"after"])).base_offset == 40
        plog.close()


def test_running_out_of_descriptors_gives_back_idle_cached_ones(tmp_path):
    import resource

    config = LogConfig({"segment.bytes": "300", "retention.ms": "-1"})
    medium = DiskMedium(str(tmp_path), max_open_files=10_000)
    plog = PartitionLog(medium, "t-0", config)
    for i in range(40):
        plog.append(batch([b"v%04d" % i + b"x" * 200]))
    assert medium.file_cache.open_files > 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 1, hard))
    try:
        # Every further descriptor must come from the idle cached ones.
        for _ in range(3):
            assert [r.value[:5] for r in read_all(plog)][:40] == [b"v%04d" % i for i in range(40)]
            plog.roll()
            plog.append(batch([b"more"]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not plog.failed
    plog.close()
