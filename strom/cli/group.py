"""`strom group list|describe|reset-offsets|delete` (works on any Kafka)."""

from datetime import datetime

import typer
from rich.table import Table

from strom.cli.common import (
    BootstrapOption,
    check_reachable,
    client_config,
    console,
    describe_error,
    fail,
    friendly,
)

app = typer.Typer(help="List, inspect, reset and delete consumer groups.", no_args_is_help=True)


def _admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(bootstrap))
    return admin, check_reachable(admin, bootstrap)


def _result(fut, what: str):
    try:
        return fut.result(timeout=15)
    except Exception as e:
        fail(f"{what}: {describe_error(e)}")


def _describe(admin, group: str):
    desc = _result(admin.describe_consumer_groups([group])[group], group)
    if desc.state.name == "DEAD" or (desc.state.name == "EMPTY" and not desc.members
                                     and not _committed(admin, group)):
        fail(f"unknown group {group!r}")
    return desc


def _committed(admin, group: str) -> dict:
    from confluent_kafka import ConsumerGroupTopicPartitions

    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    result = _result(fut, group)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}


@app.command("list")
@friendly
def list_(bootstrap: str = BootstrapOption):
    """List consumer groups with their state."""
    admin, _ = _admin(bootstrap)
    result = _result(admin.list_consumer_groups(), "list groups")
    table = Table("group", "state", "type")
    for g in sorted(result.valid, key=lambda g: g.group_id):
        table.add_row(g.group_id, g.state.name.lower().replace("_", " "),
                      getattr(getattr(g, "type", None), "name", "classic").lower())
    console.print(table)


@app.command("describe")
@friendly
def describe(group: str, bootstrap: str = BootstrapOption):
    """State, members and assignments, committed offsets and lag."""
    from confluent_kafka import Consumer, TopicPartition

    admin, _ = _admin(bootstrap)
    desc = _describe(admin, group)
    console.print(f"[bold]{group}[/bold]: {desc.state.name.lower()}, "
                  f"assignor {desc.partition_assignor or '-'}, {len(desc.members)} member(s)")
    owner = {}
    members = Table("member", "client", "host", "partitions")
    for m in desc.members:
        parts = sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions)
        for tp in parts:
            owner[tp] = m.client_id
        members.add_row(m.member_id, m.client_id, m.host,
                        ", ".join(f"{t}-{p}" for t, p in parts) or "-")
    if desc.members:
        console.print(members)
    committed = _committed(admin, group)
    keys = sorted(set(committed) | set(owner))
    consumer = Consumer(client_config(bootstrap, **{"group.id": f"{group}-strom-cli-lag"}))
    offsets = Table("topic", "partition", "committed", "log end", "lag", "owner")
    try:
        for topic, p in keys:
            _, end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            c = committed.get((topic, p))
            offsets.add_row(topic, str(p), "-" if c is None else str(c), str(end),
                            "-" if c is None else str(max(end - c, 0)), owner.get((topic, p), "-"))
    finally:
        consumer.close()
    console.print(offsets)


@app.command("reset-offsets")
@friendly
def reset_offsets(
    group: str,
    topic: str = typer.Option(..., "--topic", "-t"),
    to_earliest: bool = typer.Option(False, "--to-earliest"),
    to_latest: bool = typer.Option(False, "--to-latest"),
    to_offset: int = typer.Option(None, "--to-offset"),
    to_datetime: str = typer.Option(None, "--to-datetime", help="ISO date-time or epoch ms"),
    bootstrap: str = BootstrapOption,
):
    """Move a group's committed offsets on one topic. The group must have no
    active members (stop its consumers first), as with Kafka's tools."""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

    chosen = [to_earliest, to_latest, to_offset is not None, to_datetime is not None]
    if sum(chosen) != 1:
        fail("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime")
    admin, metadata = _admin(bootstrap)
    if topic not in metadata.topics:
        fail(f"unknown topic {topic!r}")
    desc = _result(admin.describe_consumer_groups([group])[group], group)
    if desc.members:
        fail(f"group {group!r} has {len(desc.members)} active member(s); stop them first")
    partitions = sorted(metadata.topics[topic].partitions)
    consumer = Consumer(client_config(bootstrap, **{"group.id": f"{group}-strom-cli-reset"}))
    try:
        targets = []
        if to_datetime is not None:
            ms = int(to_datetime) if to_datetime.isdigit() else int(
                datetime.fromisoformat(to_datetime).timestamp() * 1000)
            found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions],
                                               timeout=15)
        for i, p in enumerate(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if to_earliest:
                offset = low
            elif to_latest:
                offset = high
            elif to_offset is not None:
                offset = min(max(to_offset, low), high)
            else:
                offset = found[i].offset if found[i].offset >= 0 else high
            targets.append(TopicPartition(topic, p, offset))
    finally:
        consumer.close()
    fut = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, targets)])[group]
    _result(fut, f"reset {group}")
    table = Table("topic", "partition", "new offset")
    for tp in targets:
        table.add_row(tp.topic, str(tp.partition), str(tp.offset))
    console.print(table)


@app.command("delete")
@friendly
def delete(group: str, bootstrap: str = BootstrapOption):
    """Delete a group with no active members, with its committed offsets."""
    admin, _ = _admin(bootstrap)
    _result(admin.delete_consumer_groups([group])[group], f"delete {group}")
    console.print(f"deleted group [bold]{group}[/bold]")
