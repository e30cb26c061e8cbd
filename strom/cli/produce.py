"""`strom produce TOPIC`: one record per input line."""

import json
import sys

import typer

from strom.cli.common import (
    BootstrapOption,
    check_reachable,
    client_config,
    err_console,
    fail,
    friendly,
    parse_pairs,
)


@friendly
def produce(
    topic: str,
    file: typer.FileText = typer.Option(None, "--file", "-f", help="read lines from a file, not stdin"),
    key_separator: str = typer.Option(None, "--key-separator", "-K",
                                      help="split each line into key SEP value"),
    header: list[str] = typer.Option(None, "--header", "-H", help="key=value header, repeatable"),
    json_input: bool = typer.Option(False, "--json",
                                    help='each line is {"key", "value", "headers", "partition"}'),
    partition: int = typer.Option(None, "--partition", "-p"),
    acks: str = typer.Option("all", "--acks", help="0, 1 or all"),
    compression: str = typer.Option("none", "--compression", help="none, gzip, snappy, lz4, zstd"),
    bootstrap: str = BootstrapOption,
):
    """Produce records from stdin or a file: one line, one record."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    metadata = check_reachable(AdminClient(client_config(bootstrap)), bootstrap)
    if topic in metadata.topics and metadata.topics[topic].error is not None:
        fail(f"unknown topic {topic!r}")
    headers = list(parse_pairs(header, "--header").items())
    producer = Producer(client_config(bootstrap, acks=acks, **{"compression.type": compression,
                                                                "linger.ms": 5}))
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err.str())

    count = 0
    for line_no, line in enumerate(file or sys.stdin, 1):
        line = line.rstrip("\n")
        if not line and not json_input:
            continue
        key, value, part, hdrs = None, line, partition, headers
        if json_input:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                key, value = obj.get("key"), obj.get("value")
                if value is not None and not isinstance(value, str):
                    value = json.dumps(value)
                part = obj.get("partition", partition)
                hdrs = headers + list((obj.get("headers") or {}).items())
            except (ValueError, AttributeError) as e:
                fail(f"line {line_no} is not a JSON object: {e}")
        elif key_separator is not None:
            if key_separator not in line:
                fail(f"line {line_no} has no key separator {key_separator!r}")
            key, value = line.split(key_separator, 1)
        kwargs = {"headers": hdrs} if hdrs else {}
        if part is not None:
            kwargs["partition"] = part
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    left = producer.flush(30)
    if errors or left:
        fail(f"{len(errors) + left} of {count} records not delivered: {errors[0] if errors else 'timed out'}")
    err_console.print(f"produced {count} record(s) to {topic}")
