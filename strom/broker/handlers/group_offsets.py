"""OffsetCommit (8), OffsetFetch (9), OffsetDelete (47): committed offsets,
stored in `__consumer_offsets` (see strom.coordinator.records).

A commit from a group member is checked against the group (member id,
generation, fencing); a commit with generation -1 and no member id is a
simple consumer's (assign + commit) and is accepted while the group has no
members, as Kafka does.

OffsetFetch with require_stable (v7+, sent by read_committed consumers)
answers UNSTABLE_OFFSET_COMMIT, offset -1, for each partition that has
offsets pending in an open transaction (TxnOffsetCommit); the consumer
retries until the transaction ends. As in Kafka, this is a partition
error only: the group's error code stays NONE.
"""

from kio.schema.errors import ErrorCode

from strom.broker.router import api

METADATA_MAX_BYTES = 4096


@api(8, min_version=2)
async def handle_offset_commit(ctx, request):
    coordinator = ctx.broker.groups
    error = coordinator.check_commit(request.group_id, request.generation_id_or_member_epoch,
                                     request.member_id, getattr(request, "group_instance_id", None))
    topics, to_commit, stored = [], [], []
    logs = ctx.broker.logs
    for t in request.topics:
        topic, name = _resolve(logs, t)
        parts = []
        for p in t.partitions:
            code = error
            if not code and (topic is None or not 0 <= p.partition_index < topic.partitions):
                code = (ErrorCode.unknown_topic_id if name is None
                        else ErrorCode.unknown_topic_or_partition)
            if not code and p.committed_metadata and len(p.committed_metadata) > METADATA_MAX_BYTES:
                code = ErrorCode.offset_metadata_too_large
            entry = {"partition_index": p.partition_index, "error_code": code}
            if not code:
                to_commit.append((name, p.partition_index, p.committed_offset,
                                  getattr(p, "committed_leader_epoch", -1), p.committed_metadata))
                stored.append(entry)
            parts.append(entry)
        topics.append({"name": name or "", "topic_id": getattr(t, "topic_id", None),
                       "partitions": parts})
    if to_commit:
        error = await coordinator.commit(request.group_id, to_commit)
        for entry in stored:
            entry["error_code"] = error
    return ctx.respond({"throttle_time": 0, "topics": topics})


def _resolve(logs, t):
    """(topic or None, name or None) for a request entry that names its
    topic by name, or by topic_id in the newest versions (KIP-848)."""
    name = getattr(t, "name", None)
    topic = logs.find_topic(name, getattr(t, "topic_id", None))
    return topic, name if name is not None else (topic.name if topic else None)


def _fetch_group(logs, coordinator, group_id, topics, require_stable=False) -> list[dict]:
    committed = coordinator.committed(group_id)
    if topics is None:
        wanted: dict[str, list[int]] = {}
        for topic, partition in sorted(committed):
            wanted.setdefault(topic, []).append(partition)
    else:
        wanted = {}
        for t in topics:
            _, name = _resolve(logs, t)
            if name is not None:
                wanted[name] = list(t.partition_indexes)
    out = []
    for name, partitions in wanted.items():
        parts = []
        for p in partitions:
            if require_stable and coordinator.has_pending_txn_offset(group_id, name, p):
                parts.append({"partition_index": p, "error_code": ErrorCode.unstable_offset_commit,
                              "committed_offset": -1, "committed_leader_epoch": -1,
                              "metadata": ""})
                continue
            c = committed.get((name, p))
            parts.append({"partition_index": p, "error_code": 0,
                          "committed_offset": c["offset"] if c else -1,
                          "committed_leader_epoch": c["leader_epoch"] if c else -1,
                          "metadata": c["metadata"] if c else ""})
        topic = logs.topics.get(name)
        out.append({"name": name, "topic_id": topic.topic_id if topic else None, "partitions": parts})
    return out


@api(9, min_version=1)
async def handle_offset_fetch(ctx, request):
    coordinator = ctx.broker.groups
    stable = getattr(request, "require_stable", False)
    if ctx.version >= 8:
        return ctx.respond({"throttle_time": 0, "groups": [
            {"group_id": g.group_id, "error_code": 0,
             "topics": _fetch_group(ctx.broker.logs, coordinator, g.group_id, g.topics, stable)}
            for g in request.groups
        ]})
    return ctx.respond({"throttle_time": 0, "error_code": 0,
                        "topics": _fetch_group(ctx.broker.logs, coordinator, request.group_id,
                                               request.topics, stable)})


@api(47)
async def handle_offset_delete(ctx, request):
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    result = await ctx.broker.groups.delete_offsets(request.group_id, wanted)
    errors = result.get("partitions", {})
    topics: dict[str, list] = {}
    for name, p in wanted:
        topics.setdefault(name, []).append(
            {"partition_index": p, "error_code": errors.get((name, p), ErrorCode.none)})
    return ctx.respond({"throttle_time": 0, "error_code": result["error"], "topics": [
        {"name": n, "partitions": parts} for n, parts in topics.items()]})
