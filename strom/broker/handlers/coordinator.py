"""FindCoordinator (10): this node coordinates every group and every
transactional id.

Key type 0 (group) and 1 (transaction) are answered with this broker, as
Kafka answers them whatever the key (an empty transactional id is refused
later, by InitProducerId). Other key types (2, share groups) have no
coordinator here: INVALID_REQUEST. v4+ batches several keys.
"""

from kio.schema.errors import ErrorCode

from strom.broker.router import api

GROUP, TRANSACTION = 0, 1


def _answer(broker, key, key_type) -> dict:
    host, port = broker.config.advertised
    if key_type not in (GROUP, TRANSACTION):
        return {"key": key, "node_id": -1, "host": "", "port": -1,
                "error_code": ErrorCode.invalid_request,
                "error_message": f"no coordinator of key type {key_type} on this broker"}
    return {"key": key, "node_id": broker.config.node_id, "host": host, "port": port,
            "error_code": 0, "error_message": None}


@api(10)
def handle_find_coordinator(ctx, request):
    key_type = getattr(request, "key_type", GROUP)
    if ctx.version >= 4:
        return ctx.respond({"throttle_time": 0, "coordinators": [
            _answer(ctx.broker, key, key_type) for key in request.coordinator_keys]})
    return ctx.respond({"throttle_time": 0, **_answer(ctx.broker, request.key, key_type)})
