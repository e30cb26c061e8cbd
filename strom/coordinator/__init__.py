"""Consumer groups and committed offsets, as state machines whose durable
state changes only by replaying records of the `__consumer_offsets` topic:
the same code path serves requests and loads state at start-up.

The internal topics are the broker's own (Kafka's `Topic.isInternal`): only
the coordinators write them, so a client's Produce, DeleteRecords,
CreateTopics, CreatePartitions or DeleteTopics on one is refused."""

from strom.coordinator.coordinator import GroupCoordinator
from strom.coordinator.records import OFFSETS_TOPIC
from strom.coordinator.txn_records import TRANSACTION_STATE_TOPIC
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC})


def is_internal_topic(name: str | None) -> bool:
    return name in INTERNAL_TOPICS


__all__ = ["GroupCoordinator", "INTERNAL_TOPICS", "is_internal_topic"]
