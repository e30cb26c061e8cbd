"""Metadata (3): brokers, cluster id, controller, topics and partitions.

One node (id from config) leads every partition at leader epoch 0, the
same epoch Fetch and OffsetForLeaderEpoch report. Unknown topics are
created when both the request (v4+: allow_auto_topic_creation) and
`auto.create.topics.enable` allow it, with `num.partitions` partitions.
"""

from kio.schema.errors import ErrorCode

from strom.broker.handlers.errors import error_code
from strom.broker.router import api
from strom.coordinator import is_internal_topic
from strom.storage import StorageError, UnknownTopicError, validate_topic_name

_UNKNOWN_OPERATIONS = -(2**31)


def partitions_info(broker, topic) -> list[dict]:
    node = broker.config.node_id
    return [
        {"error_code": 0, "partition_index": p, "leader_id": node, "leader_epoch": 0,
         "replica_nodes": [node], "isr_nodes": [node], "offline_replicas": []}
        for p in range(topic.partitions)
    ]


def topic_info(broker, topic) -> dict:
    return {
        "error_code": 0, "name": topic.name, "topic_id": topic.topic_id,
        "is_internal": is_internal_topic(topic.name), "partitions": partitions_info(broker, topic),
        "topic_authorized_operations": _UNKNOWN_OPERATIONS,
    }


def _error_topic(name, code, topic_id=None) -> dict:
    return {"error_code": code, "name": name, "topic_id": topic_id, "is_internal": False,
            "partitions": [], "topic_authorized_operations": _UNKNOWN_OPERATIONS}


@api(3)
def handle_metadata(ctx, request):
    broker = ctx.broker
    logs = broker.logs
    requested = request.topics
    if requested is None or (ctx.version == 0 and not requested):
        topics = [topic_info(broker, t) for t in list(logs.topics.values())]
    else:
        allow = getattr(request, "allow_auto_topic_creation", True)
        topics = []
        for entry in requested:
            name, topic_id = entry.name, getattr(entry, "topic_id", None)
            try:
                if name is None and topic_id is not None:
                    topic = logs.get_topic_by_id(topic_id)
                else:
                    validate_topic_name(name)
                    topic = logs.topics.get(name)
                    if topic is None:
                        if not (allow and broker.config.auto_create_topics_enable) or name.startswith("__"):
                            raise UnknownTopicError(name)
                        topic = broker.create_topic(name, broker.config.num_partitions)
                topics.append(topic_info(broker, topic))
            except StorageError as e:
                code = error_code(e)
                if name is None and code == ErrorCode.unknown_topic_or_partition:
                    code = ErrorCode.unknown_topic_id
                topics.append(_error_topic(name, code, topic_id))
    host, port = broker.config.advertised
    return ctx.respond({
        "throttle_time": 0,
        "brokers": [{"node_id": broker.config.node_id, "host": host, "port": port, "rack": None}],
        "cluster_id": logs.cluster_id,
        "controller_id": broker.config.node_id,
        "topics": topics,
        "cluster_authorized_operations": _UNKNOWN_OPERATIONS,
    })
