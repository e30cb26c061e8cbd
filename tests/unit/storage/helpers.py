import contextlib
import os

from strom.records import Compression, Record, build_batch


def batch(values, *, keys=None, ts=1000, compression=Compression.NONE):
    """A producer-style batch of `values` (bytes or None), timestamps ts, ts+1..."""
    keys = keys or [None] * len(values)
    return build_batch(
        [Record(k, v, ts + i) for i, (k, v) in enumerate(zip(keys, values))],
        compression=compression,
    )


def read_all(plog, start=None):
    """Every record from `start` (default log start) to the end, via read()."""
    from strom.records.batch import batch_records, iter_batches

    offset = plog.log_start_offset if start is None else start
    out = []
    while offset < plog.log_end_offset:
        data = plog.read(offset, 4096)
        if not data:
            break
        for pos, header in iter_batches(data):
            for r in batch_records(data, pos):
                if r.offset >= offset:
                    out.append(r)
            offset = header.next_offset
    return out


@contextlib.contextmanager
def dev_full(disk_file):
    """`disk_file`'s descriptor pointed at /dev/full, a real device whose
    writes fail (ENOSPC) and whose fdatasync and pread fail too; its own
    descriptor is put back afterwards."""
    real_fd, disk_file._fd = disk_file._fd, os.open("/dev/full", os.O_WRONLY)
    try:
        yield
    finally:
        os.close(disk_file._fd)
        disk_file._fd = real_fd
