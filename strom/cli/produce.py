"""`strom produce TOPIC`: one record per input line."""

import json
import sys

from strom.cli.common import check_reachable, client_config, command, fail, parse_pairs, say


def register(subparsers) -> None:
    p = command(subparsers, "produce", produce,
                "Produce records from stdin or a file: one line, one record.")
    p.add_argument("topic")
    p.add_argument("--file", "-f", help="read lines from a file, not stdin")
    p.add_argument("--key-separator", "-K", help="split each line into key SEP value")
    p.add_argument("--header", "-H", action="append", help="key=value header, repeatable")
    p.add_argument("--json", dest="json_input", action="store_true",
                   help='each line is {"key", "value", "headers", "partition"}')
    p.add_argument("--partition", "-p", type=int)
    p.add_argument("--acks", default="all", choices=["0", "1", "all", "-1"])
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])


def produce(args) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    topic, partition, separator = args.topic, args.partition, args.key_separator

    metadata = check_reachable(AdminClient(client_config(args.bootstrap)), args.bootstrap)
    if topic in metadata.topics and metadata.topics[topic].error is not None:
        fail(f"unknown topic {topic!r}")
    headers = list(parse_pairs(args.header, "--header").items())
    producer = Producer(client_config(args.bootstrap, acks=args.acks,
                                      **{"compression.type": args.compression, "linger.ms": 5}))
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err.str())

    try:
        lines = open(args.file) if args.file else sys.stdin
    except OSError as e:
        fail(f"cannot read {args.file}: {e.strerror}")
    count = 0
    for line_no, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line and not args.json_input:
            continue
        key, value, part, hdrs = None, line, partition, headers
        if args.json_input:
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
        elif separator is not None:
            if separator not in line:
                fail(f"line {line_no} has no key separator {separator!r}")
            key, value = line.split(separator, 1)
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
    say(f"produced {count} record(s) to {topic}")
