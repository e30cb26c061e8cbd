"""TransactionCoordinator: Kafka's transactions (KIP-98, KIP-447, KIP-360)
for every transactional id, on the broker's event loop.

Durable state lives in `__transaction_state` (txn_records.py; internal,
compacted, one partition, created on first use). A request is validated
against the current state (txn_state.py computes the next one), the next
state is appended (acks=all: after the fsync) and only then replayed by
`replay`, the same function that loads the topic at start-up. While a
transition is being written the id has a pending state (memory only, as
Kafka's `pendingState`): other requests for it get CONCURRENT_TRANSACTIONS,
except that AddPartitions/AddOffsets/InitProducerId first wait (up to
`_SETTLE_S`) for the markers of the id's previous transaction and for a
transition being written, which is what the client's retry would find,
without its backoff.

Ending a transaction (EndTxn, or the coordinator's own abort):
PrepareCommit/PrepareAbort is made durable and the request answered; then
a COMMIT/ABORT control batch is appended to every partition of the
transaction (for `__consumer_offsets` through the group coordinator,
which replays it), each waited for until durable and its parked fetches
woken; then CompleteCommit/CompleteAbort is appended, without waiting for
its fsync (the id's next transition is written behind it). Start-up finishes
every Prepare* it replays the same way (a duplicate marker is harmless),
so no partition's last stable offset is left hanging by a crash.

Timers (one task): Ongoing transactions older than their timeout are
aborted with an epoch bump (Kafka's PrepareEpochFence), so the stalled
producer's next request is fenced; ids idle for
`transactional.id.expiration.ms` are tombstoned.
"""

import asyncio
import logging
import time

from kio.schema.errors import ErrorCode

from strom import crashpoints
from strom.coordinator import txn_records as rec
from strom.coordinator import txn_state as st
from strom.coordinator.records import OFFSETS_TOPIC
from strom.coordinator.replay import internal_log, log_skipped, replay_log, restore_config
from strom.logsafe import printable
from strom.protocol.errors import KafkaError, error_for
from strom.records import Record, build_batch
from strom.storage import LogWriteError, StorageError, UnknownTopicError
from strom.storage.producer_state import InvalidProducerEpochError

log = logging.getLogger(__name__)

_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024),
                 "retention.ms": "-1"}
COORDINATOR_EPOCH = 0  # one node: the coordinator is never moved, so never fenced
_RETRY_BACKOFF_S = (0.05, 5.0)  # markers / Complete* after a storage error: first, cap
# A request for an id whose last transaction is still being completed
# waits this long for it before answering CONCURRENT_TRANSACTIONS: the
# answer is the same as the client's retry would get, without its backoff
# (librdkafka: 20 ms per AddPartitionsToTxn, i.e. per transaction).
_SETTLE_S = 1.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    def __init__(self, logs, wait_durable, groups, notifier, *,
                 transaction_max_timeout_ms: int = 900_000,
                 transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000,
                 abort_timed_out_interval_ms: int = 10_000,
                 remove_expired_interval_ms: int = 3_600_000):
        self.logs = logs
        self.wait_durable = wait_durable
        self.groups = groups  # its complete_txn() ends a transaction's offsets
        self.notifier = notifier  # notify(plog) after a marker: LSO moved
        self.transaction_max_timeout_ms = transaction_max_timeout_ms
        self.transactional_id_expiration_ms = transactional_id_expiration_ms
        self.abort_timed_out_interval_ms = abort_timed_out_interval_ms
        self.remove_expired_interval_ms = remove_expired_interval_ms
        self.transactions: dict[str, st.TxnMetadata] = {}
        self._by_producer: dict[int, str] = {}  # producer id -> transactional id
        self._pending: dict[str, str] = {}  # transactional id -> state being written
        self._completions: dict[str, asyncio.Task] = {}
        self._writes: dict[str, asyncio.Future] = {}  # transactional id -> its _transit
        self._timer: asyncio.Task | None = None
        self.plog = None  # __transaction_state-0, once it exists

    # -- start-up: replay, then finish what was prepared ------------------------

    async def start(self) -> None:
        if rec.TRANSACTION_STATE_TOPIC in self.logs.topics:
            restore_config(self.logs, rec.TRANSACTION_STATE_TOPIC, _TOPIC_CONFIG)
            self.plog = self.logs.get_log(rec.TRANSACTION_STATE_TOPIC, 0)
            count, skipped = replay_log(self.plog, self._replay_raw)
            if count:
                log.info("loaded %d transactional ids from %d records", len(self.transactions), count)
            log_skipped(rec.TRANSACTION_STATE_TOPIC, skipped)
        prepared = [tid for tid, m in self.transactions.items()
                    if m.state in (rec.PREPARE_COMMIT, rec.PREPARE_ABORT)]
        for tid in prepared:
            log.info("transactional id %s: finishing %s left by the last run",
                     printable(tid), self.transactions[tid].state)
            self._start_completion(tid)
        if prepared:
            # Markers first, so readers find no LSO held by a finished
            # transaction; bounded, as a failing disk retries for ever.
            await asyncio.wait([self._completions[t] for t in prepared if t in self._completions],
                               timeout=10)
        self._timer = asyncio.create_task(self._tick())

    def _replay_raw(self, key: bytes, value: bytes | None, producer_id: int = -1,
                    offset: int = -1) -> None:
        """One record's bytes, as written (replay_log also passes where they
        are, which this state does not need)."""
        k = rec.decode_key(key)
        self.replay(k, rec.decode_value(value))

    def _state_log(self):
        if self.plog is None:
            self.plog = internal_log(self.logs, rec.TRANSACTION_STATE_TOPIC, _TOPIC_CONFIG)
        return self.plog

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None
        running = list(self._completions.values())
        if running:  # let markers in flight finish; start-up redoes any that do not
            await asyncio.wait(running, timeout=5)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    # -- the state machine's only writer ------------------------------------------

    def replay(self, key: rec.TxnKey, value: dict | None) -> None:
        tid = key.transactional_id
        old = self.transactions.get(tid)
        if old is not None and self._by_producer.get(old.producer_id) == tid:
            del self._by_producer[old.producer_id]
        if value is None:
            self.transactions.pop(tid, None)
            return
        meta = st.TxnMetadata.from_value(tid, value)
        self.transactions[tid] = meta
        self._by_producer[meta.producer_id] = tid

    async def _write(self, entries: list[tuple[str, st.TxnMetadata | None]],
                     durable: bool = True) -> ErrorCode:
        """Append states (None: a tombstone), wait for the fsync, replay.
        A failure of the topic is answered with the code Kafka's coordinator
        uses for it. `durable=False` (Complete* only) replays once appended:
        the next write to the topic, whose fsync covers it, is the next
        thing anyone waits for (see `_complete`)."""
        now = _now_ms()
        encoded = [(rec.encode_key(rec.TxnKey(tid)), rec.encode_value(None if m is None else m.value()))
                   for tid, m in entries]
        try:
            plog = self._state_log()
            result = plog.append(build_batch([Record(k, v, now) for k, v in encoded]))
            if durable:
                error = await self.wait_durable(plog, result.last_offset + 1)
                if error is not None:
                    raise error_for(ErrorCode.kafka_storage_error, str(error))
        except (KafkaError, StorageError) as e:
            log.error("%s refused a write for %s: %s", rec.TRANSACTION_STATE_TOPIC,
                      printable(", ".join(t for t, _ in entries)[:200]), e)
            if isinstance(e, UnknownTopicError):
                return ErrorCode.coordinator_not_available
            if isinstance(e, LogWriteError) or getattr(e, "code", None) == ErrorCode.kafka_storage_error:
                return ErrorCode.not_coordinator  # retriable: the client finds us again
            return ErrorCode.unknown_server_error
        for key, value in encoded:  # the very bytes start-up would replay
            self._replay_raw(key, value)
        return ErrorCode.none

    async def _settle(self, tid: str) -> None:
        """Wait (bounded) for the markers of `tid`'s ending transaction, and
        for a transition of it being written (librdkafka sends
        AddOffsetsToTxn while its AddPartitionsToTxn is in its fsync; an
        answer of CONCURRENT_TRANSACTIONS costs it retry.backoff.ms)."""
        deadline = time.monotonic() + _SETTLE_S
        while True:
            task = self._completions.get(tid) or self._writes.get(tid)
            left = deadline - time.monotonic()
            if task is None or left <= 0:
                return
            await asyncio.wait([task], timeout=left)  # never cancels it

    async def _transit(self, meta: st.TxnMetadata) -> ErrorCode:
        tid = meta.transactional_id
        self._pending[tid] = meta.state
        done = self._writes[tid] = asyncio.get_running_loop().create_future()
        try:
            return await self._write([(tid, meta)])
        finally:
            self._pending.pop(tid, None)
            if self._writes.get(tid) is done:
                del self._writes[tid]
            done.set_result(None)

    # -- InitProducerId ------------------------------------------------------------

    async def init_producer_id(self, transactional_id: str, transaction_timeout_ms: int,
                               producer_id: int = -1, producer_epoch: int = -1
                               ) -> tuple[ErrorCode, int, int]:
        """(error, producer_id, producer_epoch)."""
        tid = transactional_id
        if not tid:
            return ErrorCode.invalid_request, -1, -1
        if not 0 < transaction_timeout_ms <= self.transaction_max_timeout_ms:
            return ErrorCode.invalid_transaction_timeout, -1, -1
        if (producer_id == -1) != (producer_epoch == -1):
            return ErrorCode.invalid_request, -1, -1
        await self._settle(tid)
        if tid in self._pending:
            return ErrorCode.concurrent_transactions, -1, -1
        now = _now_ms()
        meta = self.transactions.get(tid)
        if meta is None:
            meta = st.TxnMetadata.fresh(tid, self.logs.allocate_producer_id(),
                                        transaction_timeout_ms, now)
        if producer_id != -1 and not st.valid_expected_producer(meta, producer_id, producer_epoch):
            return ErrorCode.producer_fenced, -1, -1
        if meta.state in (rec.PREPARE_COMMIT, rec.PREPARE_ABORT):
            return ErrorCode.concurrent_transactions, -1, -1
        if meta.state == rec.ONGOING:
            # Fence the producer of the open transaction and abort it; this
            # caller retries (the answer) and then gets an epoch of its own.
            epoch = meta.producer_epoch + 1  # never handed out: exhausted ids rotate first
            log.info("transactional id %s: a new producer fences epoch %d, aborting its open "
                     "transaction", printable(tid), meta.producer_epoch)
            error = await self._end(tid, meta.producer_id, epoch, False, from_client=False)
            return (error or ErrorCode.concurrent_transactions), -1, -1
        new = st.init_producer(meta, transaction_timeout_ms,
                               None if producer_id == -1 else producer_epoch, now,
                               self.logs.allocate_producer_id)
        if isinstance(new, ErrorCode):
            return new, -1, -1
        error = await self._transit(new)
        if error:
            return error, -1, -1
        log.info("transactional id %s: producer id %d epoch %d", printable(tid),
                 new.producer_id, new.producer_epoch)
        return ErrorCode.none, new.producer_id, new.producer_epoch

    # -- AddPartitionsToTxn, AddOffsetsToTxn -------------------------------------------

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ErrorCode]:
        error = await self._add(transactional_id, producer_id, producer_epoch, partitions)
        return {tp: error for tp in partitions}

    async def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          group_id: str) -> ErrorCode:
        return await self._add(transactional_id, producer_id, producer_epoch, [(OFFSETS_TOPIC, 0)])

    async def _add(self, tid: str, producer_id: int, producer_epoch: int, partitions) -> ErrorCode:
        if not tid:
            return ErrorCode.invalid_request
        await self._settle(tid)
        meta = self.transactions.get(tid)
        error = st.check_producer(meta, producer_id, producer_epoch)
        if error:
            return error
        if tid in self._pending:
            return ErrorCode.concurrent_transactions
        new = st.add_partitions(meta, partitions, _now_ms())
        if isinstance(new, ErrorCode):
            return new
        return await self._transit(new)

    def verify_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                          partitions: list[tuple[str, int]]) -> dict[tuple[str, int], ErrorCode]:
        """AddPartitionsToTxn v4+ verify_only (KIP-890 part 1): whether each
        partition is in the open transaction, without adding it."""
        if not transactional_id:
            return {tp: ErrorCode.invalid_request for tp in partitions}
        meta = self.transactions.get(transactional_id)
        error = st.check_producer(meta, producer_id, producer_epoch)
        if not error and meta.state in (rec.PREPARE_COMMIT, rec.PREPARE_ABORT):
            error = ErrorCode.concurrent_transactions
        if error:
            return {tp: error for tp in partitions}
        return {tp: ErrorCode.none if tp in meta.partitions else ErrorCode.transaction_abortable
                for tp in partitions}

    def current_epoch(self, producer_id: int) -> int | None:
        """The epoch of a transactional producer id, None for other ids."""
        tid = self._by_producer.get(producer_id)
        return None if tid is None else self.transactions[tid].producer_epoch

    def check_partition(self, producer_id: int, producer_epoch: int, topic: str,
                        partition: int) -> ErrorCode:
        """Whether a transactional write by this producer to this partition
        (Produce, or TxnOffsetCommit on `__consumer_offsets`) belongs to its
        open transaction: ErrorCode.none, or the error Kafka's partition
        verification answers (a fenced epoch is INVALID_PRODUCER_EPOCH there)."""
        tid = self._by_producer.get(producer_id)
        if tid is None:
            return ErrorCode.invalid_producer_id_mapping
        meta = self.transactions[tid]
        if producer_epoch != meta.producer_epoch:
            return ErrorCode.invalid_producer_epoch
        pending = self._pending.get(tid)
        if pending == rec.PREPARE_ABORT:
            # Being fenced (a new instance, or the timeout) with a bumped
            # epoch: what Kafka answers once the bump is written.
            return ErrorCode.invalid_producer_epoch
        if pending is not None and pending != rec.ONGOING:
            # Ending: a write now would open a transaction behind its markers.
            return ErrorCode.invalid_txn_state
        if meta.state != rec.ONGOING or (topic, partition) not in meta.partitions:
            return ErrorCode.invalid_txn_state
        return ErrorCode.none

    # -- EndTxn ---------------------------------------------------------------------

    async def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                      commit: bool) -> ErrorCode:
        return await self._end(transactional_id, producer_id, producer_epoch, commit,
                               from_client=True)

    async def _end(self, tid: str, producer_id: int, producer_epoch: int, commit: bool,
                   from_client: bool) -> ErrorCode:
        if not tid:
            return ErrorCode.invalid_request
        meta = self.transactions.get(tid)
        new = st.end_txn(meta, producer_id, producer_epoch, commit, from_client, _now_ms())
        if new in (ErrorCode.invalid_producer_id_mapping, ErrorCode.producer_fenced):
            return new
        if tid in self._pending:
            return ErrorCode.concurrent_transactions
        if isinstance(new, ErrorCode):
            return new
        # A failed write changed nothing (state changes only by replay), so
        # a fence that failed bumps from the same stored epoch next time.
        error = await self._transit(new)
        if error:
            return error
        self._start_completion(tid)
        return ErrorCode.none

    def _start_completion(self, tid: str) -> None:
        meta = self.transactions[tid]
        # Blocks other transitions until Complete* is written, as Kafka's
        # pending state does while its markers are sent.
        self._pending[tid] = st.complete(meta, 0).state
        task = asyncio.get_running_loop().create_task(self._complete(tid))
        self._completions[tid] = task

    async def _complete(self, tid: str) -> None:
        # Two turns of the loop: the EndTxn answer is written before any marker.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        crashpoints.reached("txn.after_prepare")
        meta = self.transactions[tid]
        commit = meta.state == rec.PREPARE_COMMIT
        delay = _RETRY_BACKOFF_S[0]
        failing = False
        try:
            remaining = sorted(meta.partitions)
            while True:
                try:
                    if remaining and crashpoints.armed("txn.mid_markers"):
                        # The first alone, so that the crash falls between
                        # markers (a real crash may too: the markers' fsyncs
                        # are independent, and start-up rewrites them all).
                        await self._write_markers(meta, commit, remaining[:1])
                        remaining = remaining[1:]
                        crashpoints.reached("txn.mid_markers")
                    if remaining:
                        # One round of fsyncs for all (the first alone cost a
                        # round more per transaction of several partitions).
                        await self._write_markers(meta, commit, remaining)
                        remaining = []
                    crashpoints.reached("txn.before_complete")
                    # Appended after every marker is durable, not waited for:
                    # lost in a crash, start-up replays Prepare* and writes
                    # the markers again (harmless); the id's next transition
                    # (AddPartitions, InitProducerId) is written behind it in
                    # the same log and its fsync makes this durable first.
                    # The fsync cost one of the ~5 per transaction on the
                    # path of the next AddPartitionsToTxn.
                    error = await self._write([(tid, st.complete(meta, _now_ms()))],
                                              durable=False)
                    if error:
                        raise StorageError(f"writing {rec.TRANSACTION_STATE_TOPIC}: {error.name}")
                    break
                except Exception as e:  # noqa: BLE001 (a bug must not leave it prepared for ever)
                    if not failing:
                        log.error("transactional id %s: ending its transaction (%s) failed, "
                                  "retrying until it succeeds: %s", printable(tid),
                                  "commit" if commit else "abort", e,
                                  exc_info=not isinstance(e, (KafkaError, StorageError)))
                        failing = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_BACKOFF_S[1])
            if failing:
                log.info("transactional id %s: transaction ended after retries", printable(tid))
        finally:
            self._pending.pop(tid, None)
            self._completions.pop(tid, None)

    async def _write_markers(self, meta: st.TxnMetadata, commit: bool, partitions) -> None:
        """Append the marker to each partition, then wait until all are durable."""
        waits = []
        failure = None
        for topic, partition in partitions:
            if topic == OFFSETS_TOPIC:
                waits.append((None, asyncio.ensure_future(self.groups.complete_txn(
                    meta.producer_id, meta.producer_epoch, commit, COORDINATOR_EPOCH))))
                continue
            try:
                plog = self.logs.get_log(topic, partition)
            except (UnknownTopicError, KeyError, IndexError):
                log.info("transactional id %s: %s-%d no longer exists; no marker for it",
                         printable(meta.transactional_id), printable(topic), partition)
                continue
            try:
                result = plog.append_marker(meta.producer_id, meta.producer_epoch, commit,
                                            COORDINATOR_EPOCH)
            except InvalidProducerEpochError as e:
                # A newer epoch already wrote here: this transaction's data
                # was ended by it (as Kafka drops such a marker).
                log.error("transactional id %s: %s-%d refused the marker: %s",
                          printable(meta.transactional_id), printable(topic), partition, e)
                continue
            except StorageError as e:  # the others are still written and waited for
                failure = failure or e
                continue
            waits.append((plog, self.wait_durable(plog, result.last_offset + 1)))
        for plog, fut in waits:
            try:
                error = await fut
            except InvalidProducerEpochError as e:  # from the offsets partition
                log.error("transactional id %s: %s-0 refused the marker: %s",
                          printable(meta.transactional_id), OFFSETS_TOPIC, e)
                continue
            except (KafkaError, StorageError) as e:
                error = e
            if error is not None:
                failure = failure or error
            elif plog is not None:
                self.notifier.notify(plog)  # parked read_committed fetches see the LSO move
        if failure is not None:
            raise failure if isinstance(failure, Exception) else StorageError(str(failure))

    # -- timers -----------------------------------------------------------------------

    async def _tick(self) -> None:
        last_expiry = time.monotonic()
        while True:
            await asyncio.sleep(self.abort_timed_out_interval_ms / 1000)
            try:
                await self.abort_timed_out()
                if time.monotonic() - last_expiry >= self.remove_expired_interval_ms / 1000:
                    last_expiry = time.monotonic()
                    await self.expire_transactional_ids()
            except Exception:
                log.exception("transaction timers failed")

    async def abort_timed_out(self, now_ms: int | None = None) -> int:
        """Abort, fencing their producers, the Ongoing transactions older
        than their timeout. Returns how many were aborted."""
        now = _now_ms() if now_ms is None else now_ms
        doomed = [m for tid, m in self.transactions.items()
                  if m.state == rec.ONGOING and tid not in self._pending
                  and m.txn_start_timestamp + m.timeout_ms < now]
        results = await asyncio.gather(*[
            self._end(m.transactional_id, m.producer_id, m.producer_epoch + 1, False,
                      from_client=False)
            for m in doomed])
        aborted = 0
        for m, error in zip(doomed, results):
            if error:
                log.warning("transactional id %s: aborting its timed-out transaction failed: %s",
                            printable(m.transactional_id), error.name)
            else:
                aborted += 1
                log.info("transactional id %s: transaction open for more than %d ms aborted, "
                         "producer epoch %d fenced", printable(m.transactional_id),
                         m.timeout_ms, m.producer_epoch)
        return aborted

    async def expire_transactional_ids(self, now_ms: int | None = None) -> int:
        """Tombstone ids without an open transaction that have been idle for
        `transactional.id.expiration.ms`."""
        now = _now_ms() if now_ms is None else now_ms
        doomed = [tid for tid, m in self.transactions.items()
                  if m.state in st.EXPIRABLE and tid not in self._pending
                  and m.txn_last_update_timestamp <= now - self.transactional_id_expiration_ms]
        if not doomed:
            return 0
        expired = 0
        for chunk in _chunks(doomed, _TOMBSTONE_BATCH_BYTES):
            for tid in chunk:
                self._pending[tid] = rec.DEAD
            try:
                error = await self._write([(tid, None) for tid in chunk])
            finally:
                for tid in chunk:
                    self._pending.pop(tid, None)
            if error:
                break
            expired += len(chunk)
        if expired:
            log.info("expired %d transactional id(s) idle for %d ms", expired,
                     self.transactional_id_expiration_ms)
        return expired

    # -- DescribeTransactions, ListTransactions ------------------------------------------

    def describe(self, transactional_ids) -> list[dict]:
        out = []
        for tid in transactional_ids:
            meta = self.transactions.get(tid) if tid else None
            if meta is None:
                out.append({"transactional_id": tid, "transaction_state": "",
                            "error_code": (ErrorCode.invalid_request if not tid
                                           else ErrorCode.transactional_id_not_found),
                            "producer_id": -1, "producer_epoch": -1, "transaction_timeout": 0,
                            "transaction_start_time": -1, "topics": []})
                continue
            topics: dict[str, list[int]] = {}
            for topic, partition in sorted(meta.partitions):
                topics.setdefault(topic, []).append(partition)
            out.append({"transactional_id": tid, "error_code": ErrorCode.none,
                        "transaction_state": meta.state, "producer_id": meta.producer_id,
                        "producer_epoch": meta.producer_epoch,
                        "transaction_timeout": meta.timeout_ms,
                        "transaction_start_time": meta.txn_start_timestamp,
                        "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()]})
        return out

    def list_transactions(self, state_filters=(), producer_id_filters=(),
                          duration_filter_ms: int = -1, transactional_id_pattern: str | None = None
                          ) -> dict:
        states = {s for s in state_filters if s in rec.ALL_STATES}
        unknown = [s for s in state_filters if s not in rec.ALL_STATES]
        producers = set(producer_id_filters)
        pattern = None
        if transactional_id_pattern:
            pattern = _compile_pattern(transactional_id_pattern)
            if pattern is None:
                return {"error_code": ErrorCode.invalid_regular_expression,
                        "unknown_state_filters": [], "transaction_states": []}
        now = _now_ms()
        found = []
        for tid, meta in self.transactions.items():
            if producers and meta.producer_id not in producers:
                continue
            if state_filters and meta.state not in states:
                continue
            if duration_filter_ms >= 0 and now - meta.txn_start_timestamp <= duration_filter_ms:
                continue
            if pattern is not None and not pattern.fullmatch(tid):
                continue
            found.append({"transactional_id": tid, "producer_id": meta.producer_id,
                          "transaction_state": meta.state})
        return {"error_code": ErrorCode.none, "unknown_state_filters": unknown,
                "transaction_states": found}


# A batch of tombstones stays well under max.message.bytes (1 MiB by
# default): 20,000 idle ids of 60 characters were one 2 MB batch, refused
# at every pass, so no id ever expired again.
_TOMBSTONE_BATCH_BYTES = 256 * 1024


def _chunks(ids: list[str], limit: int):
    chunk, size = [], 0
    for tid in ids:
        cost = len(tid.encode()) + 64  # key JSON and record overhead
        if chunk and size + cost > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(tid)
        size += cost
    if chunk:
        yield chunk


def _compile_pattern(text: str):
    """ListTransactions' transactional_id_pattern (KIP-1152) with RE2, whose
    matching time is linear: with Python's `re` a pattern such as `(a+)+`
    against one id of 35 characters held the event loop for about an
    hour. None for a pattern RE2 does not accept (INVALID_REGULAR_EXPRESSION)."""
    import re2  # only ListTransactions with a pattern needs it

    options = re2.Options()
    options.log_errors = False  # a client's bad pattern is answered, not printed to stderr
    try:
        return re2.compile(text, options)
    except re2.error:
        return None
