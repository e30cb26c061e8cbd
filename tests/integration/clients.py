"""Produce and consume through each real client library, the same way a
user would. Each `produce_*` sends `records` [(key, value, headers)] in
order to partition 0 and returns when the client reports them delivered;
each `consume_*` reads `count` records from partition 0 by assignment and
returns [(offset, key, value, headers)]."""

import asyncio
import json
import subprocess
import time

BIG = 3 * 1024 * 1024


def produce_confluent(bootstrap, topic, records, acks, compression):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "compression.type": compression,
                  "message.max.bytes": BIG, "linger.ms": 5})
    errors = []
    for key, value, headers in records:
        p.produce(topic, key=key, value=value, headers=headers or None, partition=0,
                  on_delivery=lambda err, msg: err and errors.append(err))
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors


def consume_confluent(bootstrap, topic, count):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "test", "enable.auto.commit": False,
                  "fetch.max.bytes": BIG, "max.partition.fetch.bytes": BIG})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 30
    while len(out) < count and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert not m.error(), m.error()
        out.append((m.offset(), m.key(), m.value(), list(m.headers() or [])))
    c.close()
    return out


def produce_kafka_python(bootstrap, topic, records, acks, compression):
    from kafka import KafkaProducer

    acks = {"all": "all", "1": 1, "0": 0}[acks]
    p = KafkaProducer(bootstrap_servers=bootstrap, acks=acks,
                      compression_type=None if compression == "none" else compression,
                      max_request_size=BIG, linger_ms=5)
    futures = [p.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in records]
    p.flush(30)
    for f in futures:
        f.get(timeout=30)
    p.close()


def consume_kafka_python(bootstrap, topic, count):
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                      max_partition_fetch_bytes=BIG, fetch_max_bytes=BIG)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    out = []
    deadline = time.monotonic() + 30
    while len(out) < count and time.monotonic() < deadline:
        for msgs in c.poll(timeout_ms=200).values():
            out += [(m.offset, m.key, m.value, [(k, v) for k, v in m.headers]) for m in msgs]
    c.close()
    return out


def produce_aiokafka(bootstrap, topic, records, acks, compression):
    from aiokafka import AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks={"all": "all", "1": 1, "0": 0}[acks],
                             compression_type=None if compression == "none" else compression,
                             max_request_size=BIG, linger_ms=5)
        await p.start()
        try:
            futures = [await p.send(topic, key=k, value=v, headers=h, partition=0)
                       for k, v, h in records]
            await asyncio.gather(*futures)
        finally:
            await p.stop()

    asyncio.run(run())


def consume_aiokafka(bootstrap, topic, count):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=BIG, fetch_max_bytes=BIG)
        await c.start()
        out = []
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            deadline = time.monotonic() + 30
            while len(out) < count and time.monotonic() < deadline:
                batches = await c.getmany(timeout_ms=200)
                for msgs in batches.values():
                    out += [(m.offset, m.key, m.value, list(m.headers)) for m in msgs]
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def produce_kcat(bootstrap, topic, records, acks, compression, tmp_path):
    """kcat reads lines: key and value split at ':', an empty value is
    null (-Z); every record gets the same headers (-H)."""
    path = tmp_path / "kcat-input.txt"
    path.write_bytes(b"".join(k + b":" + (v or b"") + b"\n" for k, v, _ in records))
    headers = records[0][2]
    args = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-K", ":", "-Z",
            "-X", f"acks={acks}", "-X", f"message.max.bytes={BIG}", "-z", compression,
            "-l", str(path)]
    for hk, hv in headers:
        args += ["-H", f"{hk}={hv.decode()}"]
    subprocess.run(args, check=True, timeout=60, capture_output=True)


def consume_kcat(bootstrap, topic, count):
    proc = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-c", str(count),
         "-J", "-X", f"fetch.max.bytes={BIG}", "-X", f"receive.message.max.bytes={BIG + 100000}"],
        check=True, timeout=60, capture_output=True,
    )
    out = []
    for line in proc.stdout.splitlines():
        m = json.loads(line)
        key = m["key"].encode() if m["key"] is not None else None
        value = m["payload"].encode() if m["payload"] is not None else None
        h = m.get("headers") or []
        headers = [(h[i], h[i + 1].encode()) for i in range(0, len(h), 2)]
        out.append((m["offset"], key, value, headers))
    return out


def consume_to_end(bootstrap, topic, partition=0):
    """Every record of a partition, from offset 0 to its end (confluent-kafka,
    partition EOF), as [(offset, key, value)]; no end in 10 s fails."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    try:
        while True:
            msg = c.poll(10)
            assert msg is not None, "no end of partition in 10 s"
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    return out
                raise AssertionError(msg.error())
            out.append((msg.offset(), msg.key(), msg.value()))
    finally:
        c.close()
