"""`strom topic create|list|describe|delete|alter`."""

from strom.cli.common import (
    check_reachable,
    client_config,
    command,
    command_group,
    describe_error,
    fail,
    parse_pairs,
    positive,
    print_table,
)


def register(subparsers) -> None:
    sub = command_group(subparsers, "topic", "Create, list, describe, alter and delete topics.")
    p = command(sub, "create", create, "Create a topic.")
    p.add_argument("name")
    p.add_argument("--partitions", "-p", type=positive, default=1)
    p.add_argument("--replication-factor", "-r", type=positive, default=1)
    p.add_argument("--config", "-c", action="append", help="key=value, repeatable")
    p = command(sub, "list", list_, "List topics.")
    p.add_argument("--internal", action="store_true", help="include __internal topics")
    p = command(sub, "describe", describe, "Show a topic's partitions, offsets and non-default configs.")
    p.add_argument("name")
    p = command(sub, "delete", delete, "Delete a topic and all its data.")
    p.add_argument("name")
    p = command(sub, "alter", alter, "Change a topic's configs or grow its partitions.")
    p.add_argument("name")
    p.add_argument("--config", "-c", action="append", help="key=value to set, repeatable")
    p.add_argument("--delete-config", action="append", help="key to reset, repeatable")
    p.add_argument("--partitions", "-p", type=positive, help="grow to this many")


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(bootstrap))
    return admin, check_reachable(admin, bootstrap)


def _wait(futures: dict, timeout: float = 15.0) -> None:
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except Exception as e:
            fail(f"{name}: {describe_error(e)}")


def create(args) -> None:
    from confluent_kafka.admin import NewTopic

    admin, _ = _admin(args.bootstrap)
    topic = NewTopic(args.name, args.partitions, args.replication_factor,
                     config=parse_pairs(args.config, "--config"))
    _wait(admin.create_topics([topic], operation_timeout=15))
    print(f"created topic {args.name} with {args.partitions} partition(s)")


def list_(args) -> None:
    _, metadata = _admin(args.bootstrap)
    rows = [[name, len(metadata.topics[name].partitions)] for name in sorted(metadata.topics)
            if args.internal or not name.startswith("__")]
    print_table(["topic", "partitions"], rows)


def describe(args) -> None:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    name = args.name
    admin, metadata = _admin(args.bootstrap)
    if name not in metadata.topics or metadata.topics[name].error is not None:
        fail(f"unknown topic {name!r}")
    topic = metadata.topics[name]
    consumer = Consumer(client_config(args.bootstrap, **{"group.id": "strom-cli",
                                                         "enable.auto.commit": False}))
    rows = []
    try:
        for p in sorted(topic.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            rows.append([p, topic.partitions[p].leader, low, high, high - low])
    finally:
        consumer.close()
    print(f"{name}: {len(topic.partitions)} partition(s)")
    print_table(["partition", "leader", "start offset", "end offset", "records"], rows)
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=15)
    overrides = [[key, configs[key].value, ConfigSource(configs[key].source).name]
                 for key in sorted(configs) if not configs[key].is_default]
    if overrides:
        print()
        print_table(["config", "value", "source"], overrides)


def delete(args) -> None:
    admin, metadata = _admin(args.bootstrap)
    if args.name not in metadata.topics:
        fail(f"unknown topic {args.name!r}")
    _wait(admin.delete_topics([args.name], operation_timeout=15))
    print(f"deleted topic {args.name}")


def alter(args) -> None:
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        ResourceType,
    )

    name = args.name
    admin, metadata = _admin(args.bootstrap)
    if name not in metadata.topics:
        fail(f"unknown topic {name!r}")
    sets, deletes = parse_pairs(args.config, "--config"), args.delete_config or []
    if not (sets or deletes or args.partitions):
        fail("nothing to change: give --config, --delete-config or --partitions")
    if sets or deletes:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                   for k, v in sets.items()]
        entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE)
                    for k in deletes]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        _wait(admin.incremental_alter_configs([resource]))
    if args.partitions:
        _wait(admin.create_partitions([NewPartitions(name, args.partitions)]))
    print(f"altered topic {name}")
