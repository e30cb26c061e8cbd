"""Storage benchmark: PartitionLog appends and reads against raw file writes
measured in the same run. Prints medians of several interleaved rounds and
ratios to the baseline.

    python -m bench.storage [--rounds 5] [--mib 256]
"""

import argparse
import os
import statistics
import tempfile
import time

from strom.broker.waits import LoopWaits
from strom.records import Record, build_batch
from strom.storage import LogConfig, PartitionLog
from strom.storage.files import LOG_SUFFIX, DiskFile, DiskMedium
from strom.storage.flusher import Flusher


def make_batch(size: int) -> bytes:
    n = max(size // 1024, 1)
    return build_batch([Record(None, os.urandom(1000), 1_700_000_000_000 + i) for i in range(n)])


def raw_write(path: str, chunk: bytes, total: int, fsync: bool) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t = time.perf_counter()
    for _ in range(total // len(chunk)):
        os.write(fd, chunk)
        if fsync:
            os.fdatasync(fd)
    elapsed = time.perf_counter() - t
    os.close(fd)
    os.remove(path)
    return total / elapsed


def log_append(d: str, chunk: bytes, total: int, fsync: bool, medium=DiskMedium) -> float:
    plog = PartitionLog(medium(d), "b-0", LogConfig({"retention.ms": "-1"}))
    t = time.perf_counter()
    for _ in range(total // len(chunk)):
        plog.append(chunk)
        if fsync:
            plog.flush()
    elapsed = time.perf_counter() - t
    plog.delete()
    return total / elapsed


class _CountingFile(DiskFile):
    """A `.log` whose appends only count bytes."""

    def append(self, buffers, total: int) -> None:
        self.size += total


class _CountingMedium(DiskMedium):
    def open(self, path: str):
        if path.endswith(LOG_SUFFIX):
            return _CountingFile(self._p(path), self.file_cache)
        return super().open(path)


def own_work_us(d: str, chunk: bytes, n: int = 20_000) -> float:
    """Strom's own time per append (validation, offsets, index), with the
    kernel's write taken out: what the append ratio is made of."""
    return len(chunk) / log_append(d, chunk, n * len(chunk), False, _CountingMedium) * 1e6


def log_read(d: str, chunk: bytes, total: int) -> float:
    plog = PartitionLog(DiskMedium(d), "r-0", LogConfig({"retention.ms": "-1"}))
    for _ in range(total // len(chunk)):
        plog.append(chunk)
    t = time.perf_counter()
    offset, read = 0, 0
    while offset < plog.log_end_offset:
        data = plog.read(offset, 1 << 20)
        read += len(data)
        from strom.records.batch import iter_batches

        for _, h in iter_batches(data):
            offset = h.next_offset
    elapsed = time.perf_counter() - t
    plog.delete()
    return read / elapsed


def concurrent_appends(d: str, chunk: bytes, writers: int, per_writer: int, group: bool) -> float:
    """Appends/s with `writers` concurrent producers on one event loop, as
    in the broker: each appends, then waits until its append is durable.
    With group commit the wait is the broker's (`LoopWaits`); without,
    every append is followed by its own fsync."""
    import asyncio

    os.sync()  # earlier runs' dirty pages are not written back during this one
    plog = PartitionLog(DiskMedium(d), "g-0", LogConfig({"retention.ms": "-1"}))
    flusher = Flusher()

    async def run():
        waits = LoopWaits(flusher, asyncio.get_running_loop())

        async def work():
            for _ in range(per_writer):
                r = plog.append(chunk)
                if group:
                    await waits.wait(plog, r.last_offset + 1)
                else:
                    plog.flush()
                    await asyncio.sleep(0)

        t = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(writers)))
        return time.perf_counter() - t

    elapsed = asyncio.run(run())
    flusher.close()
    plog.delete()
    return writers * per_writer / elapsed


def raw_concurrent_writes(path: str, chunk: bytes, writers: int, per_writer: int, mode: str) -> float:
    """concurrent_appends with no Strom code, to show what the machine
    allows. `mode`: "each" (os.write, then its own fdatasync), "thread"
    (Strom's group commit: the waits of a loop pass go to one thread, which
    fdatasyncs once; one call_soon_threadsafe wakes the writers) or "loop"
    (the loop fdatasyncs itself at the end of the pass: no thread hand-offs,
    but nothing else runs meanwhile, which a broker cannot afford)."""
    import asyncio
    import queue
    import threading

    os.sync()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    rounds: queue.SimpleQueue = queue.SimpleQueue()

    async def run():
        loop = asyncio.get_running_loop()
        waiting = []

        def resolve(futures):
            for f in futures:
                f.set_result(None)

        def flusher():
            while (futures := rounds.get()) is not None:
                os.fdatasync(fd)
                loop.call_soon_threadsafe(resolve, futures)

        def hand_over():
            if mode == "loop":
                os.fdatasync(fd)
                resolve(waiting[:])
            else:
                rounds.put(waiting[:])
            waiting.clear()

        async def work():
            for _ in range(per_writer):
                os.write(fd, chunk)
                if mode == "each":
                    os.fdatasync(fd)
                    await asyncio.sleep(0)
                    continue
                fut = loop.create_future()
                if not waiting:
                    loop.call_soon(hand_over)
                waiting.append(fut)
                await fut

        thread = threading.Thread(target=flusher)
        thread.start()
        t = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(writers)))
        elapsed = time.perf_counter() - t
        rounds.put(None)
        thread.join()
        return elapsed

    elapsed = asyncio.run(run())
    os.close(fd)
    os.remove(path)
    return writers * per_writer / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=256, help="data per throughput run")
    args = ap.parse_args()
    total = args.mib << 20
    d = tempfile.mkdtemp(prefix="strom-bench-")
    results: dict[str, list[float]] = {}

    def rec(name, value):
        results.setdefault(name, []).append(value)

    b16, b1m = make_batch(16 << 10), make_batch(1 << 20)
    for _ in range(args.rounds):  # interleave systems within each round
        for label, chunk in (("16KiB", b16), ("1MiB", b1m)):
            rec(f"raw write {label}", raw_write(f"{d}/raw", chunk, total, False))
            rec(f"log append {label}", log_append(d, chunk, total, False))
            n = 64 << 20 if label == "1MiB" else 8 << 20
            rec(f"raw write+fdatasync {label}", raw_write(f"{d}/raw", chunk, n, True))
            rec(f"log append+flush {label}", log_append(d, chunk, n, True))
            rec(f"log read {label}", log_read(d, chunk, total // 4))
        rec("16KiB append, Strom's own work (us)", own_work_us(d, b16))
        rec("8 writers, fsync per append", concurrent_appends(d, b16, 8, 200, False))
        rec("8 writers, group commit", concurrent_appends(d, b16, 8, 200, True))
        for mode, name in (("each", "fsync per write"), ("thread", "group commit"),
                           ("loop", "fsync on the loop")):
            rec(f"8 raw writers, {name}", raw_concurrent_writes(f"{d}/raw", b16, 8, 200, mode))

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nstorage benchmark: {args.rounds} rounds, medians (min-max)\n")
    for k, v in results.items():
        unit = "appends/s" if "writers" in k else "us" if "(us)" in k else "MB/s"
        scale = 1e6 if unit == "MB/s" else 1
        print(f"  {k:34s} {med[k] / scale:10.1f} {unit:9s} ({min(v) / scale:.1f}-{max(v) / scale:.1f})")
    print("\nratios")
    for label in ("16KiB", "1MiB"):
        print(f"  append / raw write {label:6s}            {med[f'log append {label}'] / med[f'raw write {label}']:.2f}  (goal >= 0.70)")
        print(f"  append+flush / write+fdatasync {label:6s} {med[f'log append+flush {label}'] / med[f'raw write+fdatasync {label}']:.2f}")
    raw_us = len(b16) / med["raw write 16KiB"] * 1e6  # one os.write of the batch
    own_us = med["16KiB append, Strom's own work (us)"]
    print(f"  16KiB: os.write {raw_us:.1f} us, Strom's own work {own_us:.1f} us: "
          f"ceiling {raw_us / (raw_us + own_us):.2f}")
    print(f"  group commit / fsync per append (8 writers, 16KiB) "
          f"{med['8 writers, group commit'] / med['8 writers, fsync per append']:.2f}  (goal >= 5)")
    raw_each = med["8 raw writers, fsync per write"]
    print(f"  the same with raw syscalls, no Strom code         "
          f"{med['8 raw writers, group commit'] / raw_each:.2f}  (the design's ceiling here)")
    print(f"  raw, fsync on the loop (no thread hand-offs)      "
          f"{med['8 raw writers, fsync on the loop'] / raw_each:.2f}")
    os.rmdir(d) if not os.listdir(d) else None


if __name__ == "__main__":
    main()
