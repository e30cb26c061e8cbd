"""Transactional offset commits (KIP-98, KIP-447): the offsets a
transactional producer commits for a group with TxnOffsetCommit, pending
until its transaction ends.

They are stored like any commit, as offset records in `__consumer_offsets`,
but in a transactional batch carrying the producer's id and epoch; the
transaction ends with a COMMIT or ABORT control batch for that producer in
the same partition. Replay (serving and start-up alike) keeps them here per
producer id; the control batch moves them to the committed offsets
(COMMIT) or drops them (ABORT). As in Kafka's OffsetMetadataManager, a
pending offset becomes the committed one only if its record is later in
the log than the committed offset's record (a plain OffsetCommit written
while the transaction was open wins), and an offset tombstone (OffsetDelete,
DeleteGroups) removes pending offsets of that partition too.

Who may commit (`check_txn_commit`) follows Kafka's validation for
TxnOffsetCommit: as OffsetCommit, except that a group in a rebalance is
not refused and a request without member and generation (v0-2) is
accepted whatever the group's state.
"""

import asyncio
import logging
import time

from kio.schema.errors import ErrorCode

from strom.coordinator import records as rec
from strom.coordinator.group import DEAD, Group
from strom.coordinator.records import OffsetKey
from strom.protocol.errors import error_for
from strom.storage import StorageError
from strom.storage.producer_state import CoordinatorFencedError, InvalidProducerEpochError

log = logging.getLogger(__name__)


class PendingOffsets:
    """Pending transactional offsets: producer id -> key -> (value, record
    offset), and which producers have some for each group."""

    def __init__(self):
        self.by_producer: dict[int, dict[OffsetKey, tuple[dict, int]]] = {}
        self.producers_by_group: dict[str, set[int]] = {}

    def add(self, producer_id: int, key: OffsetKey, value: dict, record_offset: int) -> None:
        self.by_producer.setdefault(producer_id, {})[key] = (value, record_offset)
        self.producers_by_group.setdefault(key.group, set()).add(producer_id)

    def remove_key(self, key: OffsetKey) -> None:
        """An offset tombstone: no transaction keeps an offset for it."""
        for producer_id in self.producers_by_group.get(key.group, ()):
            self.by_producer.get(producer_id, {}).pop(key, None)

    def end(self, producer_id: int) -> dict[OffsetKey, tuple[dict, int]]:
        """The producer's transaction ended: its pending offsets, forgotten here."""
        pending = self.by_producer.pop(producer_id, None) or {}
        for group in {key.group for key in pending}:
            producers = self.producers_by_group.get(group)
            if producers is not None:
                producers.discard(producer_id)
                if not producers:
                    del self.producers_by_group[group]
        return pending

    def has(self, group: str, topic: str, partition: int) -> bool:
        key = OffsetKey(group, topic, partition)
        return any(key in self.by_producer.get(pid, ())
                   for pid in self.producers_by_group.get(group, ()))

    def partitions(self, group: str) -> set[tuple[str, int]]:
        out = set()
        for producer_id in self.producers_by_group.get(group, ()):
            for key in self.by_producer.get(producer_id, ()):
                if key.group == group:
                    out.add((key.topic, key.partition))
        return out


def check_txn_commit(group: Group | None, consumer_error: ErrorCode | None, member_id: str,
                     generation_id: int, instance_id: str | None) -> ErrorCode:
    """Kafka's TxnOffsetCommit validation. `consumer_error` is the KIP-848
    group's answer when the group uses the consumer protocol (None if not)."""
    if consumer_error is not None:
        # A stale member epoch is ILLEGAL_GENERATION to a transactional producer.
        return ErrorCode.illegal_generation if consumer_error == ErrorCode.stale_member_epoch \
            else consumer_error
    if group is None or group.state == DEAD:
        # A simple consumer's group (assign + commit) needs no membership.
        return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
    if generation_id < 0 and not group.members:
        return ErrorCode.none
    if generation_id >= 0 or member_id or instance_id is not None:
        if instance_id is not None:
            known = group.static.get(instance_id)
            if known is None:
                return ErrorCode.unknown_member_id
            if known != member_id:
                return ErrorCode.fenced_instance_id
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation:
            return ErrorCode.illegal_generation
    return ErrorCode.none


class TransactionalOffsets:
    """GroupCoordinator's TxnOffsetCommit side, kept here by concern: it
    uses the coordinator's `offsets`, `_offset_records`, `pending_txn`,
    `_txn_writes`, `groups`, `consumer_groups`, `_append_or_error`,
    `_offsets_log` and `wait_durable`."""

    def replay_marker(self, producer_id: int, commit: bool) -> None:
        """A COMMIT or ABORT control batch for `producer_id`: its pending
        offsets become committed (unless a later commit replaced them), or
        are dropped."""
        pending = self.pending_txn.end(producer_id)
        if not commit:
            return
        for key, (value, record_offset) in pending.items():
            if self._offset_records.get(key, -1) < record_offset:
                self.offsets.setdefault(key.group, {})[(key.topic, key.partition)] = value
                self._offset_records[key] = record_offset

    async def txn_commit(self, group_id: str, producer_id: int, producer_epoch: int,
                         member_id: str, generation_id: int, group_instance_id: str | None,
                         offsets: list[tuple[str, int, int, int, str | None]]
                         ) -> dict[tuple[str, int], ErrorCode]:
        """Store `offsets` [(topic, partition, offset, leader_epoch, metadata)]
        as pending offsets of `producer_id`'s open transaction (the caller
        checked with the transaction coordinator that it has one, with
        this group's offsets in it): one transactional batch, durable
        before the answer."""
        if producer_id < 0:  # not a transactional producer's
            error = ErrorCode.invalid_producer_id_mapping
        else:
            error = ErrorCode.invalid_group_id if not group_id else check_txn_commit(
                self.groups.get(group_id),
                self.consumer_groups.check_commit(group_id, member_id, generation_id),
                member_id, generation_id, group_instance_id)
        if error or not offsets:
            return {(t, p): error for t, p, *_ in offsets}
        now = int(time.time() * 1000)
        entries = [(rec.OffsetKey(group_id, topic, partition),
                    {"offset": offset, "leader_epoch": epoch, "metadata": metadata or "",
                     "commit_timestamp": now})
                   for topic, partition, offset, epoch, metadata in offsets]
        replayed = asyncio.get_running_loop().create_future()
        writes = self._txn_writes.setdefault(producer_id, set())
        writes.add(replayed)
        try:
            error = await self._append_or_error(
                f"group {group_id}: transactional offsets of producer {producer_id}", entries,
                producer_id, producer_epoch)
        finally:
            replayed.set_result(None)
            writes.discard(replayed)
            if not writes:
                self._txn_writes.pop(producer_id, None)
        return {(t, p): error for t, p, *_ in offsets}

    async def complete_txn(self, producer_id: int, producer_epoch: int, commit: bool,
                           coordinator_epoch: int) -> None:
        """The transaction coordinator ends `producer_id`'s transaction in
        the offsets topic: its marker is written, then replayed (pending
        transactional offsets become committed, or are dropped)."""
        plog = self._offsets_log()
        earlier = list(self._txn_writes.get(producer_id, ()))
        try:
            result = plog.append_marker(producer_id, producer_epoch, commit, coordinator_epoch)
        except (InvalidProducerEpochError, CoordinatorFencedError) as e:
            # A newer epoch already ended this producer's transaction here
            # (its marker was replayed then): as Kafka, this one is dropped.
            log.warning("%s: marker refused, dropped: %s", rec.OFFSETS_TOPIC, e)
            return
        except (StorageError, OSError) as e:
            raise error_for(ErrorCode.kafka_storage_error, str(e)) from e
        error = await self.wait_durable(plog, result.last_offset + 1)
        if error is not None:
            raise error_for(ErrorCode.kafka_storage_error, str(error))
        if earlier:
            await asyncio.gather(*earlier)
        self.replay_marker(producer_id, commit)

    def pending_txn_partitions(self, group_id: str) -> set[tuple[str, int]]:
        """(topic, partition) of the group's offsets pending in a transaction."""
        return self.pending_txn.partitions(group_id)

    def has_pending_txn_offset(self, group_id: str, topic: str, partition: int) -> bool:
        return self.pending_txn.has(group_id, topic, partition)
