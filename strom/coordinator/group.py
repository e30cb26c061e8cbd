"""A classic consumer group: members, generation, chosen protocol, leader.

States (Kafka's names): Empty -> PreparingRebalance -> CompletingRebalance
-> Stable, back to PreparingRebalance whenever a member joins, leaves,
changes its subscription or misses its session timeout; Dead once deleted.

Members wait on futures: `join_future` until the rebalance completes,
`sync_future` until the leader hands in the assignments. Static members
(`group.instance.id`) keep their place across restarts: `static` maps an
instance id to its current member id, and an older member id for the
same instance is fenced.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

EMPTY = "Empty"
PREPARING_REBALANCE = "PreparingRebalance"
COMPLETING_REBALANCE = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_future: asyncio.Future | None = None
    sync_future: asyncio.Future | None = None
    last_heartbeat: float = field(default_factory=time.monotonic)

    def metadata_for(self, protocol: str) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None and not self.join_future.done()


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)  # member id -> deadline
    rebalance_deadline: float = 0.0
    initial_delay_until: float = 0.0

    @property
    def is_empty(self) -> bool:
        return not self.members

    def supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        names = {name for name, _ in protocols}
        return all(names & {n for n, _ in m.protocols} for m in self.members.values()) and bool(
            self.candidate_protocols() & names
        )

    def candidate_protocols(self) -> set[str]:
        sets = [{n for n, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def select_protocol(self) -> str:
        """Each member votes for its most preferred protocol that all
        members support; the most votes win (ties: first in preference)."""
        candidates = self.candidate_protocols()
        votes = Counter()
        for m in self.members.values():
            for name, _ in m.protocols:
                if name in candidates:
                    votes[name] += 1
                    break
        return max(votes, key=lambda n: votes[n]) if votes else ""

    def subscribed_topics(self) -> set[str] | None:
        """Topics in the members' consumer-protocol subscriptions, or None
        when they cannot be read (another protocol type)."""
        if self.protocol_type != "consumer" or not self.protocol:
            return None
        topics = set()
        for m in self.members.values():
            topics |= parse_subscription(m.metadata_for(self.protocol))
        return topics


def parse_subscription(metadata: bytes) -> set[str]:
    """Topics of a ConsumerProtocolSubscription (version int16, then an
    array of int16-length strings). Later fields are not needed here."""
    import struct

    try:
        count = struct.unpack_from(">i", metadata, 2)[0]
        pos, topics = 6, set()
        for _ in range(max(count, 0)):
            n = struct.unpack_from(">h", metadata, pos)[0]
            topics.add(metadata[pos + 2 : pos + 2 + n].decode())
            pos += 2 + n
        return topics
    except (struct.error, UnicodeDecodeError):
        return set()
