"""Consumer groups and committed offsets, as state machines whose durable
state changes only by replaying records of the `__consumer_offsets` topic:
the same code path serves requests and loads state at start-up."""

from strom.coordinator.coordinator import GroupCoordinator

__all__ = ["GroupCoordinator"]
