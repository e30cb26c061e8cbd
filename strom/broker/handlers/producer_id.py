"""InitProducerId (22): producer ids for idempotent and transactional
producers.

Without a transactional id every request gets a fresh id at epoch 0, as
Kafka answers it, also when it names its current id and epoch (KIP-360,
v3+): the new id restarts its sequence numbers, and no client can bump the
epoch of an id that is not its own (a transactional producer's, say). Ids
come from the LogManager, which persists their allocation in blocks so an
id is never handed out twice, even across a crash.

With a transactional id the transaction coordinator answers (a bump that
fences the id's previous producer, aborting its open transaction first).
Clients before v4 do not know PRODUCER_FENCED: they get
INVALID_PRODUCER_EPOCH, as Kafka answers them.

Served up to v5: v6 adds KIP-939's two-phase commit (enable_2pc,
keep_prepared_txn), which this broker does not implement.
"""

from kio.schema.errors import ErrorCode

from strom.broker.router import api
from strom.protocol.build import ms


@api(22, max_version=5)
def handle_init_producer_id(ctx, request):
    if request.transactional_id is not None:
        return _transactional(ctx, request)
    return ctx.respond({"throttle_time": 0, "error_code": 0,
                        "producer_id": ctx.broker.logs.allocate_producer_id(), "producer_epoch": 0})


async def _transactional(ctx, request):
    error, producer_id, epoch = await ctx.broker.txns.init_producer_id(
        request.transactional_id, ms(request.transaction_timeout),
        getattr(request, "producer_id", -1), getattr(request, "producer_epoch", -1))
    if error == ErrorCode.producer_fenced and ctx.version < 4:
        error = ErrorCode.invalid_producer_epoch
    return ctx.respond({"throttle_time": 0, "error_code": error,
                        "producer_id": producer_id, "producer_epoch": epoch})
