"""Classic consumer-group APIs: JoinGroup (11), SyncGroup (14),
Heartbeat (12), LeaveGroup (13), ListGroups (16), DescribeGroups (15),
DeleteGroups (42). The state machine is strom.coordinator."""

from kio.schema.errors import ErrorCode

from strom.broker.router import api
from strom.coordinator.group import DEAD
from strom.protocol.build import ms


@api(11)
async def handle_join_group(ctx, request):
    rebalance = getattr(request, "rebalance_timeout", None)
    result = await ctx.broker.groups.join(
        request.group_id, request.member_id, getattr(request, "group_instance_id", None),
        request.protocol_type, [(p.name, p.metadata) for p in request.protocols],
        ms(request.session_timeout), ms(rebalance) if rebalance is not None else ms(request.session_timeout),
        ctx.header.client_id or "", ctx.peer.rsplit(":", 1)[0],
        require_known_member=ctx.version >= 4,
    )
    return ctx.respond({"throttle_time": 0, **result})


@api(14)
async def handle_sync_group(ctx, request):
    assignments = {a.member_id: a.assignment for a in request.assignments}
    error, assignment, group = await ctx.broker.groups.sync(
        request.group_id, request.generation_id, request.member_id,
        getattr(request, "group_instance_id", None), assignments)
    return ctx.respond({
        "throttle_time": 0, "error_code": error, "assignment": assignment,
        "protocol_type": group.protocol_type if group and not error else None,
        "protocol_name": group.protocol if group and not error else None,
    })


@api(12)
async def handle_heartbeat(ctx, request):
    error = ctx.broker.groups.heartbeat(request.group_id, request.generation_id, request.member_id,
                                        getattr(request, "group_instance_id", None))
    return ctx.respond({"throttle_time": 0, "error_code": error})


@api(13)
async def handle_leave_group(ctx, request):
    if ctx.version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    errors = ctx.broker.groups.leave(request.group_id, leaving)
    top = errors[0] if ctx.version < 3 else ErrorCode.none
    return ctx.respond({"throttle_time": 0, "error_code": top, "members": [
        {"member_id": m, "group_instance_id": i, "error_code": e}
        for (m, i), e in zip(leaving, errors)
    ]})


@api(16)
async def handle_list_groups(ctx, request):
    states = {s.lower() for s in getattr(request, "states_filter", ()) or ()}
    types = {t.lower() for t in getattr(request, "types_filter", ()) or ()}
    groups = []
    coordinator = ctx.broker.groups
    classic_ids = (set(coordinator.groups) | set(coordinator.offsets)) - set(coordinator.consumer_groups.groups)
    for group_id in sorted(classic_ids):
        group = coordinator.groups.get(group_id)
        state = group.state if group else "Empty"
        if state == DEAD or (states and state.lower() not in states):
            continue
        if types and "classic" not in types:
            continue
        groups.append({"group_id": group_id,
                       "protocol_type": (group.protocol_type if group else None) or "consumer",
                       "group_state": state, "group_type": "classic"})
    for group_id, group in sorted(coordinator.consumer_groups.groups.items()):
        if group_id in coordinator.groups or (states and group.state.lower() not in states):
            continue
        if types and "consumer" not in types:
            continue
        groups.append({"group_id": group_id, "protocol_type": "consumer",
                       "group_state": group.state, "group_type": "consumer"})
    return ctx.respond({"throttle_time": 0, "error_code": 0, "groups": groups})


@api(15)
async def handle_describe_groups(ctx, request):
    coordinator = ctx.broker.groups
    out = []
    for group_id in request.groups:
        group = coordinator.groups.get(group_id)
        if group is None:
            state = "Empty" if group_id in coordinator.offsets else "Dead"
            out.append({"error_code": 0, "error_message": None, "group_id": group_id,
                        "group_state": state, "protocol_type": "", "protocol_data": "",
                        "members": [], "authorized_operations": -(2**31)})
            continue
        stable = group.state in ("Stable", "CompletingRebalance")
        out.append({
            "error_code": 0, "error_message": None, "group_id": group_id,
            "group_state": group.state, "protocol_type": group.protocol_type or "",
            "protocol_data": group.protocol or "" if stable else "",
            "members": [{
                "member_id": m.member_id, "group_instance_id": m.group_instance_id,
                "client_id": m.client_id, "client_host": "/" + m.client_host,
                "member_metadata": m.metadata_for(group.protocol) if stable else b"",
                "member_assignment": m.assignment if group.state == "Stable" else b"",
            } for m in group.members.values()],
            "authorized_operations": -(2**31),
        })
    return ctx.respond({"throttle_time": 0, "groups": out})


@api(42)
async def handle_delete_groups(ctx, request):
    results = []
    for group_id in request.groups_names:
        results.append({"group_id": group_id,
                        "error_code": await ctx.broker.groups.delete_group(group_id)})
    return ctx.respond({"throttle_time": 0, "results": results})
