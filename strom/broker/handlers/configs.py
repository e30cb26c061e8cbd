"""DescribeConfigs (32), AlterConfigs (33), IncrementalAlterConfigs (44).

Topic resources (type 2) have every topic config with its effective value
and source: DYNAMIC_TOPIC_CONFIG (1) for an override, STATIC_BROKER_CONFIG
(4) for a default set on the broker, DEFAULT_CONFIG (5) otherwise. Broker
resources (type 4) list the broker's settings, read-only. AlterConfigs
replaces a topic's overrides; IncrementalAlterConfigs sets, deletes,
appends to or subtracts from single values.
"""

from kio.schema.errors import ErrorCode

from strom.broker.handlers.errors import error_code
from strom.broker.router import api
from strom.storage import TOPIC_CONFIGS, InvalidConfigError, StorageError

TOPIC, BROKER = 2, 4
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5
_SOURCES = {"topic": DYNAMIC_TOPIC_CONFIG, "broker": STATIC_BROKER_CONFIG, "default": DEFAULT_CONFIG}
_TYPES = {"boolean": 1, "string": 2, "int": 3, "long": 5, "double": 6, "list": 7}
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def describe_topic_configs(config, keys) -> list[dict]:
    out = []
    for name in sorted(TOPIC_CONFIGS):
        if keys is not None and name not in keys:
            continue
        d = TOPIC_CONFIGS[name]
        source = _SOURCES[config.source(name)]
        synonyms = [{"name": name, "value": config.raw(name), "source": source}]
        if source == DYNAMIC_TOPIC_CONFIG:
            synonyms.append({"name": name, "value": config.defaults.get(name, d.default),
                             "source": STATIC_BROKER_CONFIG if name in config.defaults else DEFAULT_CONFIG})
        out.append({
            "name": name, "value": config.raw(name), "read_only": False,
            "config_source": source, "is_default": source == DEFAULT_CONFIG,
            "is_sensitive": False, "synonyms": synonyms,
            "config_type": _TYPES.get(d.type, 2), "documentation": d.doc or None,
        })
    return out


def _broker_configs(broker, keys) -> list[dict]:
    c = broker.config
    host, port = c.advertised
    values = {
        "broker.id": str(c.node_id), "node.id": str(c.node_id),
        "listeners": f"PLAINTEXT://{c.host}:{c.port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "log.dirs": c.data_dir or "(memory)", "num.partitions": str(c.num_partitions),
        "auto.create.topics.enable": str(c.auto_create_topics_enable).lower(),
        "socket.request.max.bytes": str(c.socket_request_max_bytes),
        "connections.max.idle.ms": str(c.connections_max_idle_ms),
        "default.replication.factor": "1", "offsets.topic.replication.factor": "1",
    }
    return [
        {"name": k, "value": v, "read_only": True, "config_source": STATIC_BROKER_CONFIG,
         "is_default": False, "is_sensitive": False, "synonyms": [], "config_type": 2,
         "documentation": None}
        for k, v in sorted(values.items()) if keys is None or k in keys
    ]


@api(32, min_version=1)
def handle_describe_configs(ctx, request):
    results = []
    for r in request.resources:
        entry = {"error_code": 0, "error_message": None, "resource_type": r.resource_type,
                 "resource_name": r.resource_name, "configs": []}
        results.append(entry)
        keys = set(r.configuration_keys) if r.configuration_keys is not None else None
        if r.resource_type == TOPIC:
            topic = ctx.broker.logs.topics.get(r.resource_name)
            if topic is None:
                entry.update(error_code=ErrorCode.unknown_topic_or_partition,
                             error_message=f"Topic {r.resource_name} does not exist")
                continue
            configs = describe_topic_configs(topic.config, keys)
        elif r.resource_type == BROKER:
            if r.resource_name not in ("", str(ctx.broker.config.node_id)):
                entry.update(error_code=ErrorCode.invalid_request,
                             error_message=f"Broker {r.resource_name} is not this broker")
                continue
            configs = _broker_configs(ctx.broker, keys)
        else:
            entry.update(error_code=ErrorCode.invalid_request,
                         error_message=f"Resource type {r.resource_type} has no configs here")
            continue
        if not getattr(request, "include_synonyms", False):
            for c in configs:
                c["synonyms"] = []
        entry["configs"] = configs
    return ctx.respond({"throttle_time": 0, "results": results})


def _alter(ctx, request, new_overrides) -> dict:
    responses = []
    for r in request.resources:
        entry = {"error_code": 0, "error_message": None, "resource_type": r.resource_type,
                 "resource_name": r.resource_name}
        responses.append(entry)
        if r.resource_type != TOPIC:
            entry.update(error_code=ErrorCode.invalid_request,
                         error_message="Only topic configs can be altered on this broker")
            continue
        try:
            topic = ctx.broker.logs.get_topic(r.resource_name)
            overrides = new_overrides(topic.config, r.configs)
            ctx.broker.logs.alter_topic_config(r.resource_name, overrides,
                                               validate_only=request.validate_only)
        except StorageError as e:
            entry.update(error_code=error_code(e), error_message=str(e))
    return ctx.respond({"throttle_time": 0, "responses": responses})


@api(33)
def handle_alter_configs(ctx, request):
    return _alter(ctx, request, lambda config, configs: {c.name: c.value for c in configs})


@api(44)
def handle_incremental_alter_configs(ctx, request):
    def apply(config, configs):
        overrides = dict(config.overrides)
        for c in configs:
            if c.config_operation == SET:
                overrides[c.name] = c.value
            elif c.config_operation == DELETE:
                overrides.pop(c.name, None)
            elif c.config_operation in (APPEND, SUBTRACT):
                d = TOPIC_CONFIGS.get(c.name)
                if d is None or d.type != "list":
                    raise_invalid(f"{c.name} is not a list config")
                items = [v for v in config.raw(c.name).split(",") if v]
                change = [v for v in (c.value or "").split(",") if v]
                if c.config_operation == APPEND:
                    items += [v for v in change if v not in items]
                else:
                    items = [v for v in items if v not in change]
                overrides[c.name] = ",".join(items)
            else:
                raise_invalid(f"unknown config operation {c.config_operation}")
        return overrides

    return _alter(ctx, request, apply)


def raise_invalid(message: str):
    raise InvalidConfigError(message)
