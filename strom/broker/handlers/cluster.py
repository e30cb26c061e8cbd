"""DescribeCluster (60): this one broker, which is also the controller."""

from strom.broker.router import api


@api(60)
def handle_describe_cluster(ctx, request):
    c = ctx.broker.config
    host, port = c.advertised
    return ctx.respond({
        "throttle_time": 0, "error_code": 0, "error_message": None,
        "endpoint_type": getattr(request, "endpoint_type", 1),
        "cluster_id": ctx.broker.logs.cluster_id, "controller_id": c.node_id,
        "brokers": [{"broker_id": c.node_id, "host": host, "port": port, "rack": None,
                     "is_fenced": False}],
        "cluster_authorized_operations": -(2**31),
    })
