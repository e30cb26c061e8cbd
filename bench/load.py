"""Load check: many idle connections and many concurrent producers, held.

Against `strom serve` in a child process: opens N idle connections (each
completes an ApiVersions exchange, then stays silent), then runs P
aiokafka producers at once (acks=all, R records each, one topic of 8
partitions), then checks that every idle connection is still open and
still answers, that every record was acknowledged and is in the log, and
reports the broker's RSS and open descriptors before and after.

    python -m bench.load [--idle 5000] [--producers 200] [--records 200]

Exits 1 if a connection was dropped or a record is missing.
"""

import argparse
import asyncio
import os
import resource
import signal
import struct
import sys
import tempfile
import time

from bench.broker import rss_mb, start_broker

_API_VERSIONS_V0 = struct.pack(">ihhih", 10, 18, 0, 1, -1)


async def _api_versions(reader, writer) -> bool:
    writer.write(_API_VERSIONS_V0)
    await writer.drain()
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    body = await reader.readexactly(size)
    return struct.unpack_from(">ih", body)[1] == 0  # correlation id, error code


async def _open_idle(port: int, n: int) -> list:
    conns = []
    for start in range(0, n, 500):  # in waves: the listen backlog is finite
        batch = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                       for _ in range(min(500, n - start))))
        oks = await asyncio.gather(*(_api_versions(r, w) for r, w in batch))
        if not all(oks):
            raise RuntimeError("an ApiVersions exchange failed")
        conns += batch
    return conns


async def _produce(bs: str, topic: str, index: int, records: int) -> int:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=5)
    await p.start()
    try:
        futures = [await p.send(topic, b"v%d-%d" % (index, i), key=b"%d" % i)
                   for i in range(records)]
        return len([m for m in await asyncio.gather(*futures) if m.offset >= 0])
    finally:
        await p.stop()


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stop_broker(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


async def run(idle: int, producers: int, records: int) -> int:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from confluent_kafka import Consumer, TopicPartition

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data_dir = tempfile.mkdtemp(prefix="strom-load-")
    proc, port, _ = start_broker(data_dir)
    bs = f"127.0.0.1:{port}"
    failures = 0
    try:
        rss0, fds0 = rss_mb(proc.pid), _open_fds(proc.pid)
        admin = AIOKafkaAdminClient(bootstrap_servers=bs)
        await admin.start()
        await admin.create_topics([NewTopic("load", 8, 1)])
        await admin.close()

        t = time.perf_counter()
        conns = await _open_idle(port, idle)
        print(f"{len(conns)} idle connections open in {time.perf_counter() - t:.1f} s; "
              f"broker RSS {rss_mb(proc.pid):.0f} MB, {_open_fds(proc.pid)} fds")

        t = time.perf_counter()
        acked = await asyncio.gather(*(_produce(bs, "load", i, records) for i in range(producers)),
                                     return_exceptions=True)
        elapsed = time.perf_counter() - t
        errors = [a for a in acked if isinstance(a, BaseException)]
        total = sum(a for a in acked if not isinstance(a, BaseException))
        print(f"{producers} concurrent producers: {total} of {producers * records} records "
              f"acknowledged in {elapsed:.1f} s, {len(errors)} producers failed"
              + (f" (first: {errors[0]!r})" if errors else ""))
        failures += len(errors) + (producers * records - total)

        c = Consumer({"bootstrap.servers": bs, "group.id": "load-check"})
        in_log = sum(c.get_watermark_offsets(TopicPartition("load", p), timeout=10)[1]
                     for p in range(8))
        c.close()
        print(f"records in the log: {in_log}")
        failures += abs(in_log - producers * records)

        alive = await asyncio.gather(*(_api_versions(r, w) for r, w in conns),
                                     return_exceptions=True)
        dropped = sum(1 for a in alive if a is not True)
        print(f"idle connections still answering: {len(conns) - dropped} of {len(conns)}")
        failures += dropped
        print(f"broker RSS {rss0:.0f} -> {rss_mb(proc.pid):.0f} MB, "
              f"fds {fds0} -> {_open_fds(proc.pid)}")
        for _, w in conns:
            w.close()
    finally:
        stop_broker(proc)
    print("OK" if not failures else f"FAILED ({failures} problems)")
    return 1 if failures else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--producers", type=int, default=200)
    ap.add_argument("--records", type=int, default=200)
    args = ap.parse_args()
    sys.exit(asyncio.run(run(args.idle, args.producers, args.records)))


if __name__ == "__main__":
    main()
