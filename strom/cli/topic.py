"""`strom topic create|list|describe|delete|alter`."""

import typer
from rich.table import Table

from strom.cli.common import (
    BootstrapOption,
    check_reachable,
    client_config,
    console,
    fail,
    friendly,
    parse_pairs,
)

app = typer.Typer(help="Create, list, describe, alter and delete topics.", no_args_is_help=True)


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(bootstrap))
    return admin, check_reachable(admin, bootstrap)


def _wait(futures: dict, timeout: float = 15.0) -> None:
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except Exception as e:
            from strom.cli.common import describe_error

            fail(f"{name}: {describe_error(e)}")


@app.command("create")
@friendly
def create(
    name: str,
    partitions: int = typer.Option(1, "--partitions", "-p", min=1),
    replication_factor: int = typer.Option(1, "--replication-factor", "-r", min=1),
    config: list[str] = typer.Option(None, "--config", "-c", help="key=value, repeatable"),
    bootstrap: str = BootstrapOption,
):
    """Create a topic."""
    from confluent_kafka.admin import NewTopic

    admin, _ = _admin(bootstrap)
    topic = NewTopic(name, partitions, replication_factor, config=parse_pairs(config, "--config"))
    _wait(admin.create_topics([topic], operation_timeout=15))
    console.print(f"created topic [bold]{name}[/bold] with {partitions} partition(s)")


@app.command("list")
@friendly
def list_(
    internal: bool = typer.Option(False, "--internal", help="include __internal topics"),
    bootstrap: str = BootstrapOption,
):
    """List topics."""
    _, metadata = _admin(bootstrap)
    table = Table("topic", "partitions")
    for name in sorted(metadata.topics):
        if name.startswith("__") and not internal:
            continue
        table.add_row(name, str(len(metadata.topics[name].partitions)))
    console.print(table)


@app.command("describe")
@friendly
def describe(name: str, bootstrap: str = BootstrapOption):
    """Show a topic's partitions, offsets and non-default configs."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    admin, metadata = _admin(bootstrap)
    if name not in metadata.topics or metadata.topics[name].error is not None:
        fail(f"unknown topic {name!r}")
    topic = metadata.topics[name]
    consumer = Consumer(client_config(bootstrap, **{"group.id": "strom-cli", "enable.auto.commit": False}))
    table = Table("partition", "leader", "start offset", "end offset", "records")
    try:
        for p in sorted(topic.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            table.add_row(str(p), str(topic.partitions[p].leader), str(low), str(high), str(high - low))
    finally:
        consumer.close()
    console.print(f"[bold]{name}[/bold]: {len(topic.partitions)} partition(s)")
    console.print(table)
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(timeout=15)
    overrides = Table("config", "value", "source")
    for key in sorted(configs):
        entry = configs[key]
        if not entry.is_default:
            overrides.add_row(key, str(entry.value), ConfigSource(entry.source).name)
    if overrides.row_count:
        console.print(overrides)


@app.command("delete")
@friendly
def delete(name: str, bootstrap: str = BootstrapOption):
    """Delete a topic and all its data."""
    admin, metadata = _admin(bootstrap)
    if name not in metadata.topics:
        fail(f"unknown topic {name!r}")
    _wait(admin.delete_topics([name], operation_timeout=15))
    console.print(f"deleted topic [bold]{name}[/bold]")


@app.command("alter")
@friendly
def alter(
    name: str,
    config: list[str] = typer.Option(None, "--config", "-c", help="key=value to set, repeatable"),
    delete_config: list[str] = typer.Option(None, "--delete-config", help="key to reset"),
    partitions: int = typer.Option(None, "--partitions", "-p", help="grow to this many"),
    bootstrap: str = BootstrapOption,
):
    """Change a topic's configs or grow its partitions."""
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        ResourceType,
    )

    admin, metadata = _admin(bootstrap)
    if name not in metadata.topics:
        fail(f"unknown topic {name!r}")
    sets, deletes = parse_pairs(config, "--config"), delete_config or []
    if not (sets or deletes or partitions):
        fail("nothing to change: give --config, --delete-config or --partitions")
    if sets or deletes:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sets.items()]
        entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in deletes]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        _wait(admin.incremental_alter_configs([resource]))
    if partitions:
        _wait(admin.create_partitions([NewPartitions(name, partitions)]))
    console.print(f"altered topic [bold]{name}[/bold]")
