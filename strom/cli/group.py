"""`strom group list|describe|reset-offsets|delete` (works on any Kafka).

`describe` also flags partitions whose group offsets are pending in an open
transaction (a transactional producer's send_offsets_to_transaction, not yet
committed or aborted): OffsetFetch with require_stable answers
UNSTABLE_OFFSET_COMMIT for exactly those partitions.
"""

from datetime import datetime

from strom.cli.common import (
    check_reachable,
    client_config,
    command,
    command_group,
    describe_error,
    fail,
    print_table,
)


def register(subparsers) -> None:
    sub = command_group(subparsers, "group", "List, inspect, reset and delete consumer groups.")
    command(sub, "list", list_, "List consumer groups with their state.")
    p = command(sub, "describe", describe, "State, members and assignments, committed offsets and lag.")
    p.add_argument("group")
    p = command(sub, "reset-offsets", reset_offsets,
                "Move a group's committed offsets on one topic. The group must have no "
                "active members (stop its consumers first), as with Kafka's tools.")
    p.add_argument("group")
    p.add_argument("--topic", "-t", required=True)
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-offset", type=int)
    to.add_argument("--to-datetime", help="ISO date-time or epoch ms")
    p = command(sub, "delete", delete, "Delete a group with no active members, with its committed offsets.")
    p.add_argument("group")


def _admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(bootstrap))
    return admin, check_reachable(admin, bootstrap)


def _result(fut, what: str):
    try:
        return fut.result(timeout=15)
    except Exception as e:
        fail(f"{what}: {describe_error(e)}")


def _describe(admin, group: str, metadata):
    """The group's description, committed offsets, and the partitions whose
    offsets are pending in a transaction."""
    desc = _result(admin.describe_consumer_groups([group])[group], group)
    committed = _committed(admin, group) if desc.state.name != "DEAD" else {}
    owned = {(tp.topic, tp.partition) for m in desc.members for tp in m.assignment.topic_partitions}
    # A group whose only offsets are still pending in a transaction has
    # neither members nor committed offsets to name its partitions: ask for all.
    candidates = set(committed) | owned or {
        (name, p) for name, t in metadata.topics.items() if not name.startswith("__")
        for p in t.partitions}
    pending = _pending(admin, group, candidates)
    if not (desc.members or committed or pending):
        fail(f"unknown group {group!r}")
    return desc, committed, pending


def _committed(admin, group: str) -> dict:
    from confluent_kafka import ConsumerGroupTopicPartitions

    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    result = _result(fut, group)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def _pending(admin, group: str, partitions) -> set:
    """The partitions among `partitions` with pending transactional offsets.
    They are asked for by name: a whole-group fetch lists only partitions
    with a committed offset, not one whose first offset is still pending."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

    if not partitions:
        return set()
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in sorted(partitions)])
    try:
        result = admin.list_consumer_group_offsets([request], require_stable=True)[group].result(timeout=15)
    except Exception:  # a broker without require_stable (OffsetFetch < v7): nothing to flag
        return set()
    return {(tp.topic, tp.partition) for tp in result.topic_partitions
            if tp.error is not None and tp.error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT}


def list_(args) -> None:
    admin, _ = _admin(args.bootstrap)
    result = _result(admin.list_consumer_groups(), "list groups")
    rows = [[g.group_id, g.state.name.lower().replace("_", " "),
             getattr(getattr(g, "type", None), "name", "classic").lower()]
            for g in sorted(result.valid, key=lambda g: g.group_id)]
    print_table(["group", "state", "type"], rows)


def describe(args) -> None:
    from confluent_kafka import Consumer, TopicPartition

    group = args.group
    admin, metadata = _admin(args.bootstrap)
    desc, committed, pending = _describe(admin, group, metadata)
    print(f"{group}: {desc.state.name.lower()}, "
          f"assignor {desc.partition_assignor or '-'}, {len(desc.members)} member(s)")
    owner, members = {}, []
    for m in desc.members:
        parts = sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
        for tp in parts:
            owner[tp] = m.client_id
        members.append([m.member_id, m.client_id, m.host,
                        ", ".join(f"{t}-{p}" for t, p in parts) or "-"])
    if members:
        print_table(["member", "client", "host", "partitions"], members)
    print()
    consumer = Consumer(client_config(args.bootstrap, **{"group.id": f"{group}-strom-cli-lag"}))
    rows = []
    try:
        for topic, p in sorted(set(committed) | set(owner) | pending):
            _, end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            c = committed.get((topic, p))
            rows.append([topic, p, "-" if c is None else c, end,
                         "-" if c is None else max(end - c, 0), owner.get((topic, p), "-"),
                         "pending" if (topic, p) in pending else "-"])
    finally:
        consumer.close()
    print_table(["topic", "partition", "committed", "log end", "lag", "owner", "txn offsets"], rows)


def reset_offsets(args) -> None:
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

    group, topic = args.group, args.topic
    admin, metadata = _admin(args.bootstrap)
    if topic not in metadata.topics:
        fail(f"unknown topic {topic!r}")
    desc = _result(admin.describe_consumer_groups([group])[group], group)
    if desc.members:
        fail(f"group {group!r} has {len(desc.members)} active member(s); stop them first")
    partitions = sorted(metadata.topics[topic].partitions)
    consumer = Consumer(client_config(args.bootstrap, **{"group.id": f"{group}-strom-cli-reset"}))
    try:
        targets = []
        if args.to_datetime is not None:
            when = args.to_datetime
            try:
                ms = int(when) if when.isdigit() else int(datetime.fromisoformat(when).timestamp() * 1000)
            except ValueError:
                fail(f"--to-datetime must be milliseconds or an ISO date-time, got {when!r}")
            found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions],
                                               timeout=15)
        for i, p in enumerate(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if args.to_earliest:
                offset = low
            elif args.to_latest:
                offset = high
            elif args.to_offset is not None:
                offset = min(max(args.to_offset, low), high)
            else:
                offset = found[i].offset if found[i].offset >= 0 else high
            targets.append(TopicPartition(topic, p, offset))
    finally:
        consumer.close()
    fut = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, targets)])[group]
    _result(fut, f"reset {group}")
    print_table(["topic", "partition", "new offset"], [[tp.topic, tp.partition, tp.offset] for tp in targets])


def delete(args) -> None:
    admin, _ = _admin(args.bootstrap)
    _result(admin.delete_consumer_groups([args.group])[args.group], f"delete {args.group}")
    print(f"deleted group {args.group}")
