"""CreateTopics (19), DeleteTopics (20), CreatePartitions (37).

One node: a replication factor other than 1 (or -1, "the default") is
INVALID_REPLICATION_FACTOR; manual assignments may only name this node.
Internal topics (`__consumer_offsets`, ...) belong to the broker: a client
may not create, delete or grow one. Kafka refuses creating its metadata
topic the same way; it lets an admin delete `__consumer_offsets`, which
would leave Strom's group coordinator writing to a deleted log.

The storage work (a directory and fsyncs per partition, topics.json) runs
off the event loop (`broker.off_loop`): a topic may have thousands of
partitions, and other clients' requests must go on being served meanwhile.
"""

from kio.schema.errors import ErrorCode

from strom.broker.handlers.configs import describe_topic_configs
from strom.broker.handlers.errors import error_code
from strom.broker.router import api
from strom.coordinator import is_internal_topic
from strom.storage import StorageError, UnknownTopicError


@api(19, min_version=2)
async def handle_create_topics(ctx, request):
    broker = ctx.broker
    results = []
    for t in request.topics:
        entry = {"name": t.name, "error_code": 0, "error_message": None,
                 "num_partitions": -1, "replication_factor": -1, "configs": None}
        results.append(entry)
        if is_internal_topic(t.name):
            entry.update(error_code=ErrorCode.invalid_request,
                         error_message=f"Creation of internal topic {t.name} is prohibited.")
            continue
        partitions = t.num_partitions if t.num_partitions != -1 else broker.config.num_partitions
        if t.assignments:
            partitions = len(t.assignments)
        try:
            if t.replication_factor not in (-1, 1) or any(
                list(a.broker_ids) != [broker.config.node_id] for a in t.assignments
            ):
                entry.update(error_code=ErrorCode.invalid_replication_factor,
                             error_message="Replication factor must be 1: this cluster has one broker.")
                continue
            configs = {c.name: c.value for c in t.configs}
            topic = await broker.off_loop(broker.create_topic, t.name, partitions, configs,
                                          validate_only=request.validate_only)
        except StorageError as e:
            entry.update(error_code=error_code(e), error_message=str(e))
            continue
        entry.update(topic_id=topic.topic_id, num_partitions=partitions, replication_factor=1,
                     configs=[
                         {"name": c["name"], "value": c["value"], "read_only": False,
                          "config_source": c["config_source"], "is_sensitive": False}
                         for c in describe_topic_configs(topic.config, None)
                     ])
    return ctx.respond({"throttle_time": 0, "topics": results})


@api(20, min_version=1)
async def handle_delete_topics(ctx, request):
    logs = ctx.broker.logs
    if ctx.version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    responses = []
    for name, topic_id in wanted:
        entry = {"name": name, "topic_id": topic_id, "error_code": 0, "error_message": None}
        responses.append(entry)
        try:
            if name is None:
                name = logs.get_topic_by_id(topic_id).name
                entry["name"] = name
            if is_internal_topic(name):
                entry.update(error_code=ErrorCode.invalid_topic_exception,
                             error_message=f"Cannot delete internal topic {name}")
                continue
            topic = await ctx.broker.delete_topic(name)
            entry["topic_id"] = topic.topic_id
        except UnknownTopicError as e:
            code = ErrorCode.unknown_topic_id if name is None else ErrorCode.unknown_topic_or_partition
            entry.update(error_code=code, error_message=str(e))
        except StorageError as e:
            entry.update(error_code=error_code(e), error_message=str(e))
    return ctx.respond({"throttle_time": 0, "responses": responses})


@api(37)
async def handle_create_partitions(ctx, request):
    results = []
    for t in request.topics:
        entry = {"name": t.name, "error_code": 0, "error_message": None}
        results.append(entry)
        if is_internal_topic(t.name):
            entry.update(error_code=ErrorCode.invalid_topic_exception,
                         error_message=f"Cannot add partitions to internal topic {t.name}")
            continue
        try:
            await ctx.broker.off_loop(ctx.broker.logs.create_partitions, t.name, t.count,
                                      validate_only=request.validate_only)
        except StorageError as e:
            entry.update(error_code=error_code(e), error_message=str(e))
    return ctx.respond({"throttle_time": 0, "results": results})
