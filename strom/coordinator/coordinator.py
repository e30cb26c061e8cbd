"""GroupCoordinator: the classic consumer-group protocol and committed
offsets for every group, on the broker's event loop.

Durable state lives in `__consumer_offsets` (records.py): a handler
validates a request, `_append` writes its records (acks=all: after the
fsync) and then replays them through `replay`, the same function that
rebuilds offsets and groups at start-up. Membership during a rebalance is
in memory, as in Kafka; the outcome (generation, leader, protocol,
members and their assignments) is written when the leader syncs.

Transactional offsets (TxnOffsetCommit) are written in a transactional
batch and stay pending (txn_offsets.py) until the transaction's COMMIT or
ABORT control batch in this topic is replayed; start-up replays control
batches as well (offsets_load.py), so a restart rebuilds pending and
committed offsets exactly.

Timers (one task, every 100 ms): members whose session timed out are
removed, a rebalance past its deadline completes without the members that
did not rejoin, and committed offsets of empty groups expire after
`offsets.retention.minutes`.
"""

import asyncio
import logging
import time
import uuid

from kio.schema.errors import ErrorCode

from strom.coordinator import records as rec
from strom.coordinator.consumer_group import ConsumerGroups
from strom.coordinator.offsets_load import load_offsets_topic
from strom.coordinator.replay import internal_log, log_skipped, restore_config
from strom.coordinator.txn_offsets import PendingOffsets, TransactionalOffsets
from strom.coordinator.group import (
    COMPLETING_REBALANCE,
    DEAD,
    EMPTY,
    PREPARING_REBALANCE,
    STABLE,
    Group,
    Member,
)
from strom.logsafe import printable
from strom.protocol.errors import KafkaError, error_for
from strom.records import Record, build_batch
from strom.storage import LogWriteError, StorageError, UnknownTopicError
from strom.storage.producer_state import InvalidProducerEpochError

log = logging.getLogger(__name__)

_OFFSETS_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024),
                         "retention.ms": "-1"}

_TICK_S = 0.1
_BATCH_BYTES = 256 * 1024  # well under the offsets topic's max.message.bytes


class GroupCoordinator(TransactionalOffsets):
    def __init__(self, logs, wait_durable, *, initial_rebalance_delay_ms: int = 0,
                 offsets_retention_ms: int = 7 * 24 * 3600 * 1000,
                 consumer_heartbeat_interval_ms: int = 1000,
                 consumer_session_timeout_ms: int = 45000):
        self.logs = logs
        self.wait_durable = wait_durable
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.offsets_retention_ms = offsets_retention_ms
        self.groups: dict[str, Group] = {}
        # group -> (topic, partition) -> {"offset", "leader_epoch", "metadata", "commit_timestamp"}
        self.offsets: dict[str, dict[tuple[str, int], dict]] = {}
        # offset of the record each committed offset was replayed from: a
        # transaction's offsets replace a commit only if written after it
        self._offset_records: dict[rec.OffsetKey, int] = {}
        self.pending_txn = PendingOffsets()
        # producer id -> replays of its TxnOffsetCommits still in flight: a
        # marker is replayed only after them (they are earlier in the log)
        self._txn_writes: dict[int, set[asyncio.Future]] = {}
        self._timer: asyncio.Task | None = None
        self.plog = None  # __consumer_offsets-0, once it exists
        self._last_expiry = 0.0
        self.consumer_groups = ConsumerGroups(self._topic_partitions, consumer_heartbeat_interval_ms,
                                              consumer_session_timeout_ms)

    def _topic_partitions(self, names: list[str]) -> dict[str, int]:
        return {n: self.logs.topics[n].partitions for n in names if n in self.logs.topics}

    def consumer_heartbeat(self, group_id, member_id, epoch, *args) -> dict:
        """ConsumerGroupHeartbeat (KIP-848). A group id is either classic or
        consumer-protocol while it has members, not both."""
        classic = self.groups.get(group_id)
        if classic is not None and classic.members:
            return self.consumer_groups._error(
                ErrorCode.group_id_not_found, "the group uses the classic protocol", member_id)
        return self.consumer_groups.heartbeat(group_id, member_id, epoch, *args)

    # -- start-up: replay the offsets topic ------------------------------------

    async def start(self) -> None:
        self._timer = asyncio.create_task(self._tick())
        if rec.OFFSETS_TOPIC not in self.logs.topics:
            return  # created by the first write (_offsets_log), as Kafka does
        restore_config(self.logs, rec.OFFSETS_TOPIC, _OFFSETS_TOPIC_CONFIG)
        self.plog = self.logs.get_log(rec.OFFSETS_TOPIC, 0)
        count, skipped = load_offsets_topic(self.plog, self.replay, self.replay_marker)
        if count:
            log.info("loaded %d groups and committed offsets of %d groups from %d records",
                     len(self.groups), len(self.offsets), count)
        log_skipped(rec.OFFSETS_TOPIC, skipped)

    def _offsets_log(self):
        """The offsets topic, created on first use: a broker that never sees
        a consumer group does not pay for it (three fsyncs at start-up)."""
        if self.plog is None:
            self.plog = internal_log(self.logs, rec.OFFSETS_TOPIC, _OFFSETS_TOPIC_CONFIG)
        return self.plog

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer = None

    def replay(self, key, value: dict | None, loading: bool = False, producer_id: int = -1,
               record_offset: int = -1) -> None:
        """Apply one record. `producer_id` is that of a transactional batch
        (else -1): its offsets stay pending until the producer's marker."""
        if isinstance(key, rec.OffsetKey):
            if value is not None and producer_id >= 0:
                self.pending_txn.add(producer_id, key, value, record_offset)
                return
            offsets = self.offsets.setdefault(key.group, {})
            if value is None:
                offsets.pop((key.topic, key.partition), None)
                self._offset_records.pop(key, None)
                self.pending_txn.remove_key(key)
                if not offsets:
                    del self.offsets[key.group]
            else:
                offsets[(key.topic, key.partition)] = value
                self._offset_records[key] = record_offset
            return
        if value is None:
            group = self.groups.pop(key.group, None)
            if group:
                group.state = DEAD
            return
        group = self.groups.get(key.group)
        if group is None:
            group = self.groups[key.group] = Group(key.group)
        group.generation = value["generation"]
        group.protocol_type = value["protocol_type"]
        group.protocol = value["protocol"]
        group.leader = value["leader"]
        if loading:
            # After a restart, members keep their place if they heartbeat
            # within their session timeout: no rebalance for a broker restart.
            group.members = {}
            group.static = {}
            for m in value["members"]:
                member = Member(m["member_id"], m["group_instance_id"], m["client_id"],
                                m["client_host"], m["session_timeout_ms"], m["rebalance_timeout_ms"],
                                value["protocol_type"] or "",
                                [(value["protocol"], rec.unb64(m["subscription"]))],
                                rec.unb64(m["assignment"]))
                group.members[member.member_id] = member
                if member.group_instance_id:
                    group.static[member.group_instance_id] = member.member_id
            group.state = STABLE if group.members else EMPTY
        else:
            for m in value["members"]:
                member = group.members.get(m["member_id"])
                if member is not None:
                    member.assignment = rec.unb64(m["assignment"])

    async def _append(self, entries: list[tuple[object, dict | None]], producer_id: int = -1,
                      producer_epoch: int = -1) -> None:
        """Write records to the offsets topic, wait for the fsync, replay.
        With a producer id: one transactional batch of that producer's."""
        now = int(time.time() * 1000)
        records = [Record(rec.encode_key(k), rec.encode_value(v), now) for k, v in entries]
        plog = self._offsets_log()
        if producer_id >= 0:  # one request's offsets: one batch, as Kafka writes them
            batch = build_batch(records, producer_id=producer_id, producer_epoch=producer_epoch,
                                base_sequence=-1, is_transactional=True)
            written = [(plog.append(batch, validate=False), entries)]
        else:
            # Expiry or a group's deletion may cover more than one batch
            # may hold (max.message.bytes): batches of at most _BATCH_BYTES.
            written, first, size = [], 0, 0
            for i, r in enumerate(records):
                cost = len(r.key) + len(r.value or b"") + 32
                if i > first and size + cost > _BATCH_BYTES:
                    written.append((plog.append(build_batch(records[first:i])), entries[first:i]))
                    first, size = i, 0
                size += cost
            written.append((plog.append(build_batch(records[first:])), entries[first:]))
        error = await self.wait_durable(plog, written[-1][0].last_offset + 1)
        if error is not None:
            raise error_for(ErrorCode.kafka_storage_error, str(error))
        for result, chunk in written:
            for i, (key, value) in enumerate(chunk):
                self.replay(key, value, producer_id=producer_id,
                            record_offset=result.base_offset + i)

    def _group_record(self, group: Group) -> tuple[rec.GroupKey, dict]:
        return rec.GroupKey(group.group_id), {
            "generation": group.generation, "protocol_type": group.protocol_type,
            "protocol": group.protocol, "leader": group.leader,
            "members": [{
                "member_id": m.member_id, "group_instance_id": m.group_instance_id,
                "client_id": m.client_id, "client_host": m.client_host,
                "session_timeout_ms": m.session_timeout_ms,
                "rebalance_timeout_ms": m.rebalance_timeout_ms,
                "subscription": rec.b64(m.metadata_for(group.protocol or "")),
                "assignment": rec.b64(m.assignment),
            } for m in group.members.values()],
        }

    # -- JoinGroup ---------------------------------------------------------------

    async def join(self, group_id: str, member_id: str, instance_id: str | None,
                   protocol_type: str, protocols: list[tuple[str, bytes]], session_ms: int,
                   rebalance_ms: int, client_id: str, client_host: str,
                   require_known_member: bool) -> dict:
        if not group_id:
            return _join_error(ErrorCode.invalid_group_id, member_id)
        group = self.groups.get(group_id)
        if group is None or group.state == DEAD:
            group = self.groups[group_id] = Group(group_id)
        if not group.supports(protocol_type, protocols):
            return _join_error(ErrorCode.inconsistent_group_protocol, member_id)
        now = time.monotonic()
        if not member_id:
            new_id = f"{client_id or 'member'}-{uuid.uuid4()}"
            if instance_id and instance_id in group.static:
                result = self._static_rejoin(group, instance_id, new_id, protocols, session_ms,
                                             rebalance_ms, client_id, client_host)
                return await result if isinstance(result, asyncio.Future) else result
            if require_known_member and not instance_id:
                group.pending[new_id] = now + session_ms / 1000
                return _join_error(ErrorCode.member_id_required, new_id)
            member_id = new_id
        elif member_id not in group.members and member_id not in group.pending:
            if instance_id and instance_id in group.static:
                return _join_error(ErrorCode.fenced_instance_id, member_id)
            return _join_error(ErrorCode.unknown_member_id, member_id)
        elif instance_id and group.static.get(instance_id, member_id) != member_id:
            return _join_error(ErrorCode.fenced_instance_id, member_id)
        group.pending.pop(member_id, None)
        member = group.members.get(member_id)
        if member is None:
            member = Member(member_id, instance_id, client_id, client_host, session_ms,
                            rebalance_ms, protocol_type, protocols)
            group.members[member_id] = member
            if instance_id:
                group.static[instance_id] = member_id
            changed = True
        else:
            changed = member.protocols != protocols
            member.protocols, member.session_timeout_ms = protocols, session_ms
            member.rebalance_timeout_ms = rebalance_ms
        member.last_heartbeat = now
        if group.protocol_type is None or len(group.members) == 1:
            group.protocol_type = protocol_type
        if group.state == STABLE and not changed and member_id != group.leader:
            # A follower rejoining with the same subscription: nothing to do.
            return self._join_result(group, member)
        if group.state == COMPLETING_REBALANCE and not changed:
            return self._join_result(group, member)
        fut = member.join_future = asyncio.get_running_loop().create_future()
        self._prepare_rebalance(group, f"member {member_id} joined")
        self._maybe_complete_join(group)
        return await fut

    def _static_rejoin(self, group, instance_id, new_id, protocols, session_ms, rebalance_ms,
                       client_id, client_host) -> dict:
        """A static member came back (a restart): it takes its old place under
        a new member id, and its old id is fenced. No rebalance when the
        group is stable and its subscription did not change."""
        old = group.members.pop(group.static[instance_id], None)
        member = Member(new_id, instance_id, client_id, client_host, session_ms, rebalance_ms,
                        group.protocol_type or "", protocols,
                        old.assignment if old else b"")
        group.members[new_id] = member
        group.static[instance_id] = new_id
        was_leader = old is not None and group.leader == old.member_id
        if was_leader:
            group.leader = new_id
        if old is not None:
            member.last_heartbeat = time.monotonic()
        if old is not None and old.awaiting_join:
            old.join_future.set_result(_join_error(ErrorCode.fenced_instance_id, old.member_id))
        # As Kafka: a stable group only rebalances when the returning member
        # no longer supports the group's protocol (its subscription bytes
        # may differ, e.g. in owned partitions, after a restart). A returning
        # leader gets the member list with skip_assignment (KIP-814); its
        # SyncGroup then returns the assignment it already had.
        if (group.state == STABLE and old is not None
                and group.protocol in {name for name, _ in protocols}):
            log.info("group %s: static member %s rejoined as %s without a rebalance",
                     printable(group.group_id), printable(instance_id), new_id)
            asyncio.ensure_future(self._append_or_error(  # its new member id outlives a restart
                f"group {group.group_id}: storing static member {instance_id}", [self._group_record(group)]))
            return {**self._join_result(group, member), "skip_assignment": was_leader}
        fut = member.join_future = asyncio.get_running_loop().create_future()
        self._prepare_rebalance(group, f"static member {instance_id} rejoined")
        self._maybe_complete_join(group)
        return fut  # `join` awaits it

    def _join_result(self, group: Group, member: Member) -> dict:
        leader = member.member_id == group.leader
        return {
            "error_code": ErrorCode.none, "generation_id": group.generation,
            "protocol_type": group.protocol_type, "protocol_name": group.protocol,
            "leader": group.leader or "", "member_id": member.member_id, "skip_assignment": False,
            "members": [
                {"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                 "metadata": m.metadata_for(group.protocol)}
                for m in group.members.values()
            ] if leader else [],
        }

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state == PREPARING_REBALANCE:
            return
        now = time.monotonic()
        for m in group.members.values():
            if m.sync_future and not m.sync_future.done():
                m.sync_future.set_result((ErrorCode.rebalance_in_progress, b""))
        if group.state == EMPTY and self.initial_rebalance_delay_ms > 0:
            group.initial_delay_until = now + self.initial_rebalance_delay_ms / 1000
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        group.rebalance_deadline = now + timeout / 1000
        group.state = PREPARING_REBALANCE
        log.info("group %s: preparing rebalance (generation %d): %s",
                 printable(group.group_id), group.generation, printable(reason))

    def _maybe_complete_join(self, group: Group, deadline_passed: bool = False) -> None:
        if group.state != PREPARING_REBALANCE:
            return
        if time.monotonic() < group.initial_delay_until and not deadline_passed:
            return
        if not deadline_passed and any(not m.awaiting_join for m in group.members.values()):
            return
        for m in [m for m in group.members.values() if not m.awaiting_join]:
            log.info("group %s: removing member %s, which did not rejoin in time",
                     printable(group.group_id), printable(m.member_id))
            self._remove_member(group, m)
        group.generation += 1
        if not group.members:
            group.state, group.protocol, group.leader = EMPTY, None, None
            asyncio.ensure_future(self._append_or_error(f"group {group.group_id}: storing it empty",
                                                        [self._group_record(group)]))
            return
        group.protocol = group.select_protocol()
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING_REBALANCE
        log.info("group %s: generation %d with %d member(s), protocol %s",
                 printable(group.group_id), group.generation, len(group.members),
                 printable(group.protocol))
        for m in group.members.values():
            fut, m.join_future = m.join_future, None
            m.assignment = b""
            if fut and not fut.done():
                fut.set_result(self._join_result(group, m))

    def _remove_member(self, group: Group, member: Member) -> None:
        group.members.pop(member.member_id, None)
        if member.group_instance_id and group.static.get(member.group_instance_id) == member.member_id:
            del group.static[member.group_instance_id]
        # Anyone still waiting for this member learns it is gone.
        if member.join_future and not member.join_future.done():
            member.join_future.set_result(_join_error(ErrorCode.unknown_member_id, member.member_id))
        if member.sync_future and not member.sync_future.done():
            member.sync_future.set_result((ErrorCode.unknown_member_id, b""))

    # -- SyncGroup, Heartbeat, LeaveGroup ----------------------------------------

    def _check_member(self, group: Group | None, member_id: str, instance_id: str | None,
                      generation: int | None) -> ErrorCode:
        if group is None or group.state == DEAD:
            return ErrorCode.unknown_member_id
        if instance_id and instance_id in group.static and group.static[instance_id] != member_id:
            return ErrorCode.fenced_instance_id
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation is not None and generation != group.generation:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    async def sync(self, group_id: str, generation: int, member_id: str, instance_id: str | None,
                   assignments: dict[str, bytes]) -> tuple[ErrorCode, bytes, Group | None]:
        group = self.groups.get(group_id)
        error = self._check_member(group, member_id, instance_id, generation)
        if error:
            return error, b"", group
        member = group.members[member_id]
        member.last_heartbeat = time.monotonic()
        if group.state == PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress, b"", group
        if group.state == STABLE:
            return ErrorCode.none, member.assignment, group
        member.sync_future = asyncio.get_running_loop().create_future()
        if member_id == group.leader:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            try:
                await self._append([self._group_record(group)])
            except Exception as e:
                log.error("group %s: could not store the assignment: %s", printable(group_id), e)
            if group.state == COMPLETING_REBALANCE and group.generation == generation:
                group.state = STABLE
                for m in group.members.values():
                    if m.sync_future and not m.sync_future.done():
                        m.sync_future.set_result((ErrorCode.none, m.assignment))
        error, assignment = await member.sync_future
        member.sync_future = None
        return error, assignment, group

    def heartbeat(self, group_id: str, generation: int, member_id: str,
                  instance_id: str | None) -> ErrorCode:
        group = self.groups.get(group_id)
        error = self._check_member(group, member_id, instance_id, None)
        if error:
            return error
        group.members[member_id].last_heartbeat = time.monotonic()
        if generation != group.generation:
            return ErrorCode.illegal_generation
        if group.state == PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave(self, group_id: str, leaving: list[tuple[str, str | None]]) -> list[ErrorCode]:
        group = self.groups.get(group_id)
        results = []
        for member_id, instance_id in leaving:
            if group is None:
                results.append(ErrorCode.unknown_member_id)
                continue
            if instance_id and not member_id:
                member_id = group.static.get(instance_id, "")
            error = self._check_member(group, member_id, instance_id, None)
            results.append(error)
            if error:
                continue
            self._remove_member(group, group.members[member_id])
            log.info("group %s: member %s left", printable(group_id), printable(member_id))
            self._prepare_rebalance(group, f"member {member_id} left")
            self._maybe_complete_join(group)
        return results

    # -- timers ----------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            try:
                self.check_timeouts()
                if time.monotonic() - self._last_expiry > 60:
                    self._last_expiry = time.monotonic()
                    await self.expire_offsets()
            except Exception:
                log.exception("group timers failed")

    def check_timeouts(self) -> None:
        for group_id, member_id, why in self.consumer_groups.expire():
            log.info("group %s: member %s %s", printable(group_id), printable(member_id), why)
        now = time.monotonic()
        for group in list(self.groups.values()):
            for member_id, deadline in list(group.pending.items()):
                if now > deadline:
                    del group.pending[member_id]
            for m in list(group.members.values()):
                if m.awaiting_join:
                    continue
                if now - m.last_heartbeat > m.session_timeout_ms / 1000:
                    log.info("group %s: member %s missed its session timeout (%d ms)",
                             printable(group.group_id), printable(m.member_id),
                             m.session_timeout_ms)
                    self._remove_member(group, m)
                    self._prepare_rebalance(group, f"member {m.member_id} timed out")
            if group.state == PREPARING_REBALANCE:
                self._maybe_complete_join(group, deadline_passed=now >= group.rebalance_deadline)

    async def expire_offsets(self, now_ms: int | None = None) -> int:
        """Committed offsets of groups without members expire
        `offsets.retention.minutes` after their last commit."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        doomed = []
        for group_id, offsets in self.offsets.items():
            group = self.groups.get(group_id)
            if group is not None and group.members:
                continue
            for (topic, partition), value in offsets.items():
                if (now_ms - value["commit_timestamp"] > self.offsets_retention_ms
                        and not self.pending_txn.has(group_id, topic, partition)):
                    doomed.append((rec.OffsetKey(group_id, topic, partition), None))
        if doomed and not await self._append_or_error("expiring offsets", doomed):
            log.info("expired %d committed offsets", len(doomed))
            return len(doomed)
        return 0

    # -- offsets -----------------------------------------------------------------------

    def check_commit(self, group_id: str, generation: int, member_id: str,
                     instance_id: str | None) -> ErrorCode:
        consumer = self.consumer_groups.check_commit(group_id, member_id, generation)
        if consumer is not None:
            return consumer
        group = self.groups.get(group_id)
        if group is None or not group.members:
            # Simple consumers (assign + commit) use generation -1, no member.
            if generation < 0 and not member_id:
                return ErrorCode.none
            return ErrorCode.unknown_member_id if member_id else ErrorCode.illegal_generation
        error = self._check_member(group, member_id, instance_id, generation)
        if error:
            return error
        if group.state == COMPLETING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        group.members[member_id].last_heartbeat = time.monotonic()
        return ErrorCode.none

    async def commit(self, group_id: str,
                     offsets: list[tuple[str, int, int, int, str | None]]) -> ErrorCode:
        """Store committed offsets; the error for all of them if the offsets
        topic cannot take the write."""
        now = int(time.time() * 1000)
        return await self._append_or_error(f"group {group_id}: committing offsets", [
            (rec.OffsetKey(group_id, topic, partition),
             {"offset": offset, "leader_epoch": epoch, "metadata": metadata or "",
              "commit_timestamp": now})
            for topic, partition, offset, epoch, metadata in offsets
        ])

    async def _append_or_error(self, what: str, entries, producer_id: int = -1,
                               producer_epoch: int = -1) -> ErrorCode:
        """`_append`, with a failure of the offsets topic (disk, a config an
        admin set on it) answered with the code Kafka's coordinator uses
        for it, instead of failing the request."""
        try:
            await self._append(entries, producer_id, producer_epoch)
        except InvalidProducerEpochError as e:  # a fenced transactional producer
            log.info("%s: %s", what, e)
            return ErrorCode.invalid_producer_epoch
        except (KafkaError, StorageError) as e:
            log.error("%s: the offsets topic refused the write: %s", what, e)
            if isinstance(e, UnknownTopicError):
                return ErrorCode.coordinator_not_available
            if isinstance(e, LogWriteError) or getattr(e, "code", None) == ErrorCode.kafka_storage_error:
                return ErrorCode.not_coordinator  # retriable: the client finds us again and retries
            return ErrorCode.unknown_server_error
        return ErrorCode.none

    def committed(self, group_id: str) -> dict[tuple[str, int], dict]:
        return self.offsets.get(group_id, {})

    async def delete_group(self, group_id: str) -> ErrorCode:
        group = self.groups.get(group_id)
        consumer = self.consumer_groups.groups.get(group_id)
        pending = self.pending_txn.partitions(group_id)
        if group is None and consumer is None and group_id not in self.offsets and not pending:
            return ErrorCode.group_id_not_found
        if (group is not None and group.members) or (consumer is not None and consumer.members):
            return ErrorCode.non_empty_group
        self.consumer_groups.groups.pop(group_id, None)
        # As Kafka: pending transactional offsets are deleted too.
        entries = [(rec.OffsetKey(group_id, t, p), None)
                   for t, p in set(self.committed(group_id)) | pending]
        entries.append((rec.GroupKey(group_id), None))
        return await self._append_or_error(f"group {group_id}: deleting", entries)

    async def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> dict:
        group = self.groups.get(group_id)
        if group is None and group_id not in self.offsets and not self.pending_txn.partitions(group_id):
            return {"error": ErrorCode.group_id_not_found}
        subscribed = group.subscribed_topics() if group and group.members else set()
        errors = {}
        entries = []
        for topic, partition in partitions:
            if subscribed is None or topic in subscribed:
                errors[(topic, partition)] = ErrorCode.group_subscribed_to_topic
            else:
                errors[(topic, partition)] = ErrorCode.none
                if ((topic, partition) in self.committed(group_id)
                        or self.pending_txn.has(group_id, topic, partition)):
                    entries.append((rec.OffsetKey(group_id, topic, partition), None))
        if entries:
            error = await self._append_or_error(f"group {group_id}: deleting offsets", entries)
            if error:
                return {"error": error}
        return {"error": ErrorCode.none, "partitions": errors}


def _join_error(code: ErrorCode, member_id: str) -> dict:
    return {"error_code": code, "generation_id": -1, "protocol_type": None, "protocol_name": None,
            "leader": "", "member_id": member_id, "skip_assignment": False, "members": []}
