"""`strom consume TOPIC`: print records, plain or as JSON lines."""

import json
import time
from datetime import datetime

import typer

from strom.cli.common import (
    BootstrapOption,
    check_reachable,
    client_config,
    console,
    fail,
    friendly,
)


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


@friendly
def consume(
    topic: str,
    from_beginning: bool = typer.Option(False, "--from-beginning", help="start at the earliest offset"),
    offset: int = typer.Option(None, "--offset", "-o", help="start at this offset"),
    timestamp: str = typer.Option(None, "--timestamp", "-t",
                                  help="start at the first record at or after this time (ms or ISO)"),
    partition: int = typer.Option(None, "--partition", "-p", help="only this partition"),
    count: int = typer.Option(None, "--count", "-n", help="stop after this many records"),
    json_output: bool = typer.Option(False, "--json", help="one JSON object per record"),
    timeout: float = typer.Option(None, "--timeout", help="stop after this many idle seconds"),
    bootstrap: str = BootstrapOption,
):
    """Read records from the end (default), the beginning, an offset or a time."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    metadata = check_reachable(AdminClient(client_config(bootstrap)), bootstrap)
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None:
        fail(f"unknown topic {topic!r}")
    partitions = sorted(meta.partitions)
    if partition is not None:
        if partition not in meta.partitions:
            fail(f"topic {topic!r} has no partition {partition}")
        partitions = [partition]
    consumer = Consumer(client_config(bootstrap, **{
        "group.id": f"strom-cli-{int(time.time() * 1000)}", "enable.auto.commit": False,
        "enable.partition.eof": False,
    }))
    try:
        if timestamp is not None:
            wanted = [TopicPartition(topic, p, _parse_time(timestamp)) for p in partitions]
            assignment = consumer.offsets_for_times(wanted, timeout=15)
            assignment = [tp if tp.offset >= 0 else TopicPartition(topic, tp.partition, OFFSET_END)
                          for tp in assignment]
        else:
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            if offset is not None:
                start = offset
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
            if json_output:
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
    if console.is_terminal:
        console.print(f"[dim]{seen} record(s)[/dim]", highlight=False)
