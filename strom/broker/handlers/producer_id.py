"""InitProducerId (22): producer ids for idempotent producers.

A new producer gets a fresh id at epoch 0. A producer that sends its
current id and epoch (KIP-360, v3+) gets the same id with the epoch
bumped, which restarts its sequence numbers. Ids come from the
LogManager, which persists their allocation in blocks so an id is never
handed out twice, even across a crash.

Transactional ids need a transaction coordinator, which this broker does
not have yet: such requests get INVALID_REQUEST (not retriable, so the
client fails at once with a clear error instead of retrying forever), and
the refusal is logged.
"""

import logging

from kio.schema.errors import ErrorCode

from strom.broker.router import api

log = logging.getLogger(__name__)
_EPOCH_MAX = 2**15 - 1


@api(22)
def handle_init_producer_id(ctx, request):
    if request.transactional_id is not None:
        log.warning("client %r asked for transactional id %r: transactions are not supported yet",
                    ctx.header.client_id, request.transactional_id)
        return ctx.respond({"throttle_time": 0, "error_code": ErrorCode.invalid_request,
                            "producer_id": -1, "producer_epoch": -1})
    producer_id = getattr(request, "producer_id", -1)
    epoch = getattr(request, "producer_epoch", -1)
    if producer_id >= 0 and 0 <= epoch < _EPOCH_MAX:
        epoch += 1
    else:
        producer_id, epoch = ctx.broker.logs.allocate_producer_id(), 0
    return ctx.respond({"throttle_time": 0, "error_code": 0,
                        "producer_id": producer_id, "producer_epoch": epoch})
