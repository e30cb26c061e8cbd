"""KIP-848 consumer-group APIs: ConsumerGroupHeartbeat (68) and
ConsumerGroupDescribe (69). The reconciliation logic is
strom.coordinator.consumer_group; this maps topic names and ids."""


from kio.schema.errors import ErrorCode

from strom.broker.router import api
from strom.protocol.build import ms


def _names_to_ids(logs, assignment: dict[str, list[int]]) -> list[dict]:
    out = []
    for name, partitions in assignment.items():
        topic = logs.topics.get(name)
        if topic is not None:
            out.append({"topic_id": topic.topic_id, "partitions": partitions})
    return out


@api(68)
def handle_consumer_group_heartbeat(ctx, request):
    logs = ctx.broker.logs
    owned = None
    if request.topic_partitions is not None:
        owned = {}
        for tp in request.topic_partitions:
            try:
                owned[logs.get_topic_by_id(tp.topic_id).name] = set(tp.partitions)
            except Exception:
                continue
    result = ctx.broker.groups.consumer_heartbeat(
        request.group_id, request.member_id, request.member_epoch, request.instance_id,
        request.rack_id, ms(request.rebalance_timeout), request.subscribed_topic_names,
        request.server_assignor, owned, ctx.header.client_id or "", ctx.peer.rsplit(":", 1)[0])
    assignment = result.pop("assignment")
    return ctx.respond({
        "throttle_time": 0, **result,
        "assignment": None if assignment is None else
        {"topic_partitions": _names_to_ids(logs, assignment)},
    })


@api(69)
def handle_consumer_group_describe(ctx, request):
    logs = ctx.broker.logs
    groups = ctx.broker.groups.consumer_groups.groups
    out = []
    for group_id in request.group_ids:
        group = groups.get(group_id)
        if group is None:
            out.append({"error_code": ErrorCode.group_id_not_found, "error_message": None,
                        "group_id": group_id, "group_state": "Dead", "group_epoch": -1,
                        "assignment_epoch": -1, "assignor_name": "", "members": [],
                        "authorized_operations": -(2**31)})
            continue

        def tps(assignment):
            return {"topic_partitions": [
                {"topic_id": logs.topics[t].topic_id, "topic_name": t, "partitions": sorted(p)}
                for t, p in assignment.items() if t in logs.topics]}

        out.append({
            "error_code": 0, "error_message": None, "group_id": group_id,
            "group_state": group.state, "group_epoch": group.group_epoch,
            "assignment_epoch": group.assignment_epoch, "assignor_name": group.assignor,
            "members": [{
                "member_id": m.member_id, "instance_id": m.instance_id, "rack_id": m.rack_id,
                "member_epoch": m.member_epoch, "client_id": m.client_id,
                "client_host": "/" + m.client_host, "subscribed_topic_names": m.subscribed,
                "subscribed_topic_regex": None, "assignment": tps(m.assigned),
                "target_assignment": tps(m.target),
            } for m in group.members.values()],
            "authorized_operations": -(2**31),
        })
    return ctx.respond({"throttle_time": 0, "groups": out})


