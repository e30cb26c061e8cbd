"""RabbitMQ Streams as a peer for W1-W3 (client: rstream, batched sends).

The server is Debian's rabbitmq-server with the rabbitmq_stream plugin
(`make bench` installs both). The peers benchmark starts it for its own
round only and stops it after (`start()`, `stop()`): idle, its Erlang
schedulers still take CPU from whatever else runs on this 2-core machine.
It skips RabbitMQ when `installed()` is false.
"""

import asyncio
import shutil
import socket
import struct
import subprocess
import time

from bench.broker import quantile

HOST, PORT, USER, PASSWORD = "127.0.0.1", 5552, "guest", "guest"


def installed() -> bool:
    try:
        import rstream  # noqa: F401
    except ImportError:
        return False
    return shutil.which("rabbitmq-server") is not None


def _reachable() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=0.5).close()
        return True
    except OSError:
        return False


def start(timeout: float = 90) -> None:
    if _reachable():
        return
    subprocess.run(["rabbitmq-server", "-detached"], check=True, capture_output=True)
    deadline = time.monotonic() + timeout
    while not _reachable():
        if time.monotonic() > deadline:
            raise RuntimeError("RabbitMQ Streams did not start")
        time.sleep(0.5)


def stop() -> None:
    if shutil.which("rabbitmqctl"):
        subprocess.run(["rabbitmqctl", "stop"], capture_output=True, timeout=120)


async def _fresh_stream(name: str):
    from rstream import Producer

    producer = Producer(HOST, PORT, username=USER, password=PASSWORD)
    await producer.start()
    await producer.create_stream(name, exists_ok=True)
    return producer


async def _produce(name: str, n: int, size: int, batch: int = 1000) -> float:
    from rstream import RawMessage

    producer = await _fresh_stream(name)
    confirmed = 0
    done = asyncio.Event()

    async def on_confirm(status):
        nonlocal confirmed
        confirmed += 1
        if confirmed >= n:
            done.set()

    body = b"x" * size
    t = time.perf_counter()
    for i in range(0, n, batch):
        await producer.send_batch(name, [RawMessage(body) for _ in range(min(batch, n - i))],
                                  on_publish_confirm=on_confirm)
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - t
    await producer.close()
    return elapsed


async def _consume(name: str, n: int) -> float:
    from rstream import Consumer, ConsumerOffsetSpecification, OffsetType

    consumer = Consumer(HOST, PORT, username=USER, password=PASSWORD)
    await consumer.start()
    got = 0
    done = asyncio.Event()

    async def on_message(msg, context):
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    t = time.perf_counter()
    await consumer.subscribe(name, on_message, offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST))
    runner = asyncio.create_task(consumer.run())
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - t
    runner.cancel()
    await consumer.close()
    return elapsed


async def _latency(name: str, rate: int, seconds: float) -> list[float]:
    from rstream import Consumer, ConsumerOffsetSpecification, OffsetType, RawMessage

    producer = await _fresh_stream(name)
    consumer = Consumer(HOST, PORT, username=USER, password=PASSWORD)
    await consumer.start()
    lat: list[float] = []
    total = int(rate * seconds)
    done = asyncio.Event()

    async def on_message(msg, context):
        lat.append((time.perf_counter_ns() - struct.unpack(">q", bytes(msg)[:8])[0]) / 1e6)
        if len(lat) >= total:
            done.set()

    await consumer.subscribe(name, on_message, offset_specification=ConsumerOffsetSpecification(OffsetType.NEXT))
    runner = asyncio.create_task(consumer.run())
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # a batch of one is written at once (send() would wait for a timer)
        await producer.send_batch(name, [RawMessage(struct.pack(">q", time.perf_counter_ns()) + b"x" * 92)])
    await asyncio.wait_for(done.wait(), 60)
    runner.cancel()
    await consumer.close()
    await producer.close()
    return lat


def run_round(rec, w1: int, w3_seconds: float) -> None:
    """W1-W3 against RabbitMQ Streams, recorded as system "rabbitmq"."""
    stamp = time.time_ns()
    s1, s2, s3 = f"w1-{stamp}", f"w2-{stamp}", f"w3-{stamp}"
    rec("rabbitmq", "W1 produce 100 B (msg/s)", w1 / asyncio.run(_produce(s1, w1, 100)))
    rec("rabbitmq", "W1 consume 100 B (msg/s)", w1 / asyncio.run(_consume(s1, w1)))
    n2 = 200_000
    rec("rabbitmq", "W2 produce 1 KB (MB/s)", n2 * 1000 / asyncio.run(_produce(s2, n2, 1000)) / 1e6)
    rec("rabbitmq", "W2 consume 1 KB (MB/s)", n2 * 1000 / asyncio.run(_consume(s2, n2)) / 1e6)
    lat = sorted(asyncio.run(_latency(s3, 5000, w3_seconds)))
    for q, label in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
        rec("rabbitmq", f"W3 latency {label} (ms)", quantile(lat, q))
    rec("rabbitmq", "W3 latency max (ms)", lat[-1])
