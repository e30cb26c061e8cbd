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

from kio.schema.errors import ErrorCode

from strom.coordinator.group import DEAD, Group
from strom.coordinator.records import OffsetKey


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

    def groups_of(self, producer_id: int) -> set[str]:
        return {key.group for key in self.by_producer.get(producer_id, ())}


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
