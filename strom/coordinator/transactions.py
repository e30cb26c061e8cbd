"""TransactionCoordinator: Kafka's transactions (KIP-98, KIP-447, KIP-360)
for every transactional id, on the broker's event loop.

Skeleton: the interface the handlers, the group coordinator and the tests
are written against. The state machine, fed by the records of
`__transaction_state`, fills it in.
"""

from kio.schema.errors import ErrorCode


class TransactionCoordinator:
    def __init__(self, logs, wait_durable, groups, notifier, *,
                 transaction_max_timeout_ms: int = 900_000,
                 transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000,
                 abort_timed_out_interval_ms: int = 10_000):
        self.logs = logs
        self.wait_durable = wait_durable
        self.groups = groups  # its complete_txn() ends a transaction's offsets
        self.notifier = notifier  # notify(plog) after a marker: LSO moved
        self.transaction_max_timeout_ms = transaction_max_timeout_ms
        self.transactional_id_expiration_ms = transactional_id_expiration_ms
        self.abort_timed_out_interval_ms = abort_timed_out_interval_ms

    async def start(self) -> None:
        """Replay `__transaction_state`; finish transactions left prepared."""

    async def stop(self) -> None:
        pass

    async def init_producer_id(self, transactional_id: str, transaction_timeout_ms: int,
                               producer_id: int = -1, producer_epoch: int = -1
                               ) -> tuple[ErrorCode, int, int]:
        """(error, producer_id, producer_epoch)."""
        return ErrorCode.invalid_request, -1, -1

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ErrorCode]:
        return {tp: ErrorCode.invalid_request for tp in partitions}

    async def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          group_id: str) -> ErrorCode:
        return ErrorCode.invalid_request

    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                      commit: bool) -> ErrorCode:
        return ErrorCode.invalid_request

    def check_partition(self, producer_id: int, producer_epoch: int, topic: str,
                        partition: int) -> ErrorCode:
        """Whether a transactional write by this producer to this partition
        (Produce, or TxnOffsetCommit on `__consumer_offsets`) belongs to its
        open transaction: ErrorCode.none, or the error to answer."""
        return ErrorCode.none
