"""KIP-848 consumer groups: the server assigns partitions, members
reconcile through ConsumerGroupHeartbeat.

Epochs: the group epoch grows whenever membership, a subscription or the
subscribed topics' partitions change; the target assignment is then
recomputed by the server-side assignor (`uniform` or `range`, in
assignors.py, from the previous targets) and gets the same assignment
epoch. Each member moves towards its target in steps:

1. while it still owns partitions that its target gives to someone else,
   it is told to keep only the rest (revocation), and keeps its epoch;
2. once it has revoked, it takes the group's assignment epoch and receives
   its target partitions that no other member still owns; the others
   follow in later heartbeats, when their previous owners have let go.

A static member (group.instance.id) that leaves with epoch -2 keeps its
place and target until its session times out; its next incarnation takes
both, so a restart moves no partition. A member that does not revoke
within its rebalance timeout is removed, as in Kafka.

Membership lives in memory: after a broker restart members get
UNKNOWN_MEMBER_ID and join again with epoch 0, while their committed
offsets (in __consumer_offsets) are kept.
"""

import time
import uuid
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from strom.coordinator.assignors import ASSIGNORS, assign

STABLE, ASSIGNING, RECONCILING, EMPTY = "Stable", "Assigning", "Reconciling", "Empty"
JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH = 0, -1, -2


@dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    rack_id: str | None
    rebalance_timeout_ms: int
    subscribed: list[str] = field(default_factory=list)
    assignor: str | None = None
    member_epoch: int = 0
    previous_epoch: int = -1
    assigned: dict[str, set[int]] = field(default_factory=dict)  # what the member was told
    revoking: set[tuple[str, int]] = field(default_factory=set)  # told to drop, not yet done
    revoke_deadline: float | None = None  # monotonic; fenced when it passes with `revoking` left
    target: dict[str, set[int]] = field(default_factory=dict)
    last_heartbeat: float = field(default_factory=time.monotonic)

    def owns(self) -> set[tuple[str, int]]:
        return {(t, p) for t, ps in self.assigned.items() for p in ps} | self.revoking


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    topology: tuple = ()  # (topic, partitions) of subscribed topics when last assigned

    @property
    def state(self) -> str:
        if not self.members:
            return EMPTY
        if self.assignment_epoch < self.group_epoch:
            return ASSIGNING
        if any(m.member_epoch != self.assignment_epoch or m.assigned != m.target
               for m in self.members.values() if m.member_epoch != STATIC_LEAVE_EPOCH):
            return RECONCILING
        return STABLE

    @property
    def assignor(self) -> str:
        for m in self.members.values():
            if m.assignor:
                return m.assignor
        return ASSIGNORS[0]


class ConsumerGroups:
    """All KIP-848 groups. `topic_partitions(names)` gives {topic: count}
    for existing topics; `topic_id(name)` / `topic_name(id)` map ids."""

    def __init__(self, topic_partitions, heartbeat_interval_ms: int = 1000,
                 session_timeout_ms: int = 45000):
        self.topic_partitions = topic_partitions
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self.groups: dict[str, ConsumerGroup] = {}

    def heartbeat(self, group_id: str, member_id: str, epoch: int, instance_id: str | None,
                  rack_id: str | None, rebalance_timeout_ms: int, subscribed: list[str] | None,
                  assignor: str | None, owned: dict[str, set[int]] | None,
                  client_id: str, client_host: str) -> dict:
        if not group_id:
            return self._error(ErrorCode.invalid_request, "group id is empty", member_id)
        if assignor is not None and assignor not in ASSIGNORS:
            return self._error(ErrorCode.unsupported_assignor,
                               f"assignor {assignor!r}: use one of {', '.join(ASSIGNORS)}", member_id)
        group = self.groups.setdefault(group_id, ConsumerGroup(group_id))
        away = group.members.get(member_id)
        if epoch == STATIC_LEAVE_EPOCH and away is not None and away.instance_id:
            # As Kafka: a static member that leaves "for now" (a restart)
            # keeps its target, so nobody else takes its partitions before
            # it is back or its session times out; no new group epoch.
            away.member_epoch, away.assigned, away.revoking = STATIC_LEAVE_EPOCH, {}, set()
            return {"error_code": 0, "member_id": member_id, "member_epoch": epoch,
                    "heartbeat_interval": self.heartbeat_interval_ms, "assignment": None}
        if epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            if group.members.pop(member_id, None) is not None:
                group.group_epoch += 1
            return {"error_code": 0, "member_id": member_id, "member_epoch": epoch,
                    "heartbeat_interval": self.heartbeat_interval_ms, "assignment": None}
        member = group.members.get(member_id) if member_id else None
        if epoch == JOIN_EPOCH:
            if member is None:
                if not subscribed:
                    return self._error(ErrorCode.invalid_request,
                                       "joining needs subscribed topic names", member_id)
                member_id = member_id or str(uuid.uuid4())
                member = ConsumerMember(member_id, instance_id, client_id, client_host, rack_id,
                                        rebalance_timeout_ms)
                if instance_id:  # a static member replaces its previous incarnation
                    for other in [m for m in group.members.values() if m.instance_id == instance_id]:
                        member.target = other.target  # and keeps its partitions (sticky)
                        del group.members[other.member_id]
                group.members[member_id] = member
                group.group_epoch += 1
            else:
                member.assigned, member.revoking = {}, set()  # a rejoin starts from scratch
        elif member is None:
            return self._error(ErrorCode.unknown_member_id, "unknown member", member_id)
        elif epoch not in (member.member_epoch, member.previous_epoch):
            return self._error(ErrorCode.fenced_member_epoch,
                               f"epoch {epoch}, current {member.member_epoch}", member_id)
        member.last_heartbeat = time.monotonic()
        if subscribed is not None and sorted(subscribed) != sorted(member.subscribed):
            member.subscribed = list(subscribed)
            group.group_epoch += 1
        if assignor is not None and assignor != member.assignor:
            member.assignor = assignor
            group.group_epoch += 1
        if owned is not None:
            # The member reports what it owns: the revocations it finished.
            member.revoking = {(t, p) for t, p in member.revoking if p in owned.get(t, ())}
        self._maybe_assign(group)
        before = {t: set(p) for t, p in member.assigned.items()}
        self._reconcile(group, member)
        changed = member.assigned != before or epoch == JOIN_EPOCH
        return {
            "error_code": 0, "member_id": member_id, "member_epoch": member.member_epoch,
            "heartbeat_interval": self.heartbeat_interval_ms,
            "assignment": {t: sorted(p) for t, p in member.assigned.items()} if changed else None,
        }

    def _maybe_assign(self, group: ConsumerGroup) -> None:
        names = sorted({t for m in group.members.values() for t in m.subscribed})
        partitions = self.topic_partitions(names)
        topology = tuple(sorted(partitions.items()))
        if topology != group.topology:
            group.topology = topology
            group.group_epoch += 1
        if group.assignment_epoch == group.group_epoch:
            return
        targets = assign(group.assignor, group.members, partitions)
        for member_id, target in targets.items():
            group.members[member_id].target = target
        group.assignment_epoch = group.group_epoch

    def _reconcile(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        revoke = {(t, p) for t, ps in member.assigned.items() for p in ps
                  if p not in member.target.get(t, ())}
        if revoke:
            for t, p in revoke:
                member.assigned[t].discard(p)
                if not member.assigned[t]:
                    del member.assigned[t]
            if not member.revoking:
                member.revoke_deadline = time.monotonic() + member.rebalance_timeout_ms / 1000
            member.revoking |= revoke
        if member.revoking:
            return  # the member keeps its epoch until it has revoked
        member.revoke_deadline = None
        if member.member_epoch != group.assignment_epoch:
            member.previous_epoch, member.member_epoch = member.member_epoch, group.assignment_epoch
        missing = {(t, p) for t, ps in member.target.items() for p in ps
                   if p not in member.assigned.get(t, ())}
        if not missing:
            return  # the common heartbeat: reconciled, nothing to look up
        owned_by_others = set()
        for other in group.members.values():
            if other is not member:
                owned_by_others |= other.owns()
        for t, p in missing - owned_by_others:
            member.assigned.setdefault(t, set()).add(p)

    def expire(self) -> list[tuple[str, str, str]]:
        """Remove members whose session timed out, and (as Kafka) members
        that did not revoke within their rebalance timeout, which would
        otherwise keep a newcomer waiting for good; returns (group,
        member, why)."""
        now = time.monotonic()
        gone = []
        for group in self.groups.values():
            for m in list(group.members.values()):
                if now - m.last_heartbeat > self.session_timeout_ms / 1000:
                    why = f"missed its session timeout ({self.session_timeout_ms} ms)"
                elif m.revoking and m.revoke_deadline is not None and now > m.revoke_deadline:
                    why = f"did not revoke within its rebalance timeout ({m.rebalance_timeout_ms} ms)"
                else:
                    continue
                del group.members[m.member_id]
                group.group_epoch += 1
                gone.append((group.group_id, m.member_id, why))
        return gone

    def check_commit(self, group_id: str, member_id: str, epoch: int) -> ErrorCode | None:
        """None when the group is not a consumer-protocol group."""
        group = self.groups.get(group_id)
        if group is None or not group.members:
            return None
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id
        if epoch > member.member_epoch:
            return ErrorCode.fenced_member_epoch
        if epoch < member.member_epoch and epoch != member.previous_epoch:
            return ErrorCode.stale_member_epoch
        return ErrorCode.none

    def _error(self, code: ErrorCode, message: str, member_id: str) -> dict:
        return {"error_code": code, "error_message": message, "member_id": member_id,
                "member_epoch": -1, "heartbeat_interval": self.heartbeat_interval_ms,
                "assignment": None}
