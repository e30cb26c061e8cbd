"""`strom consume TOPIC`: print records, plain or as JSON lines."""

import json
import sys
import time
from datetime import datetime

from strom.cli.common import check_reachable, client_config, command, fail, say


def register(subparsers) -> None:
    p = command(subparsers, "consume", consume,
                "Read records from the end (default), the beginning, an offset or a time.")
    p.add_argument("topic")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    start.add_argument("--offset", "-o", type=int, help="start at this offset")
    start.add_argument("--timestamp", "-t",
                       help="start at the first record at or after this time (ms or ISO)")
    p.add_argument("--partition", "-p", type=int, help="only this partition")
    p.add_argument("--count", "-n", type=int, help="stop after this many records")
    p.add_argument("--json", dest="json_output", action="store_true", help="one JSON object per record")
    p.add_argument("--timeout", type=float, help="stop after this many idle seconds")


def _parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        fail(f"--timestamp must be milliseconds or an ISO date-time, got {text!r}")


def _text(data: bytes | None):
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.hex()


def consume(args) -> None:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic, partition, count, timeout = args.topic, args.partition, args.count, args.timeout
    metadata = check_reachable(AdminClient(client_config(args.bootstrap)), args.bootstrap)
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None:
        fail(f"unknown topic {topic!r}")
    partitions = sorted(meta.partitions)
    if partition is not None:
        if partition not in meta.partitions:
            fail(f"topic {topic!r} has no partition {partition}")
        partitions = [partition]
    consumer = Consumer(client_config(args.bootstrap, **{
        "group.id": f"strom-cli-{int(time.time() * 1000)}", "enable.auto.commit": False,
        "enable.partition.eof": False,
    }))
    try:
        if args.timestamp is not None:
            wanted = [TopicPartition(topic, p, _parse_time(args.timestamp)) for p in partitions]
            assignment = consumer.offsets_for_times(wanted, timeout=15)
            assignment = [tp if tp.offset >= 0 else TopicPartition(topic, tp.partition, OFFSET_END)
                          for tp in assignment]
        else:
            start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
            if args.offset is not None:
                start = args.offset
            assignment = [TopicPartition(topic, p, start) for p in partitions]
        consumer.assign(assignment)
        seen, idle_since = 0, time.monotonic()
        while count is None or seen < count:
            msg = consumer.poll(0.5)
            if msg is None:
                if timeout is not None and time.monotonic() - idle_since > timeout:
                    break
                continue
            if msg.error():
                fail(msg.error().str())
            idle_since = time.monotonic()
            seen += 1
            if args.json_output:
                print(json.dumps({
                    "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                    "timestamp": msg.timestamp()[1], "key": _text(msg.key()),
                    "value": _text(msg.value()),
                    "headers": {k: _text(v) for k, v in (msg.headers() or [])},
                }), flush=True)
            else:
                print(_text(msg.value()) if msg.value() is not None else "", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if sys.stdout.isatty():
        say(f"{seen} record(s)")
