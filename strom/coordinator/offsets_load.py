"""Start-up: replay `__consumer_offsets` from its log start into the group
coordinator, in log order, the same replay that serving uses: offset and
group records, transactional batches (their offsets pending for the
batch's producer) and the COMMIT / ABORT control batches that end them.
"""

from strom.coordinator import records as rec
from strom.coordinator.replay import replay_log


def load_offsets_topic(plog, replay, replay_marker) -> tuple[int, dict[str, tuple[int, int]]]:
    """Replay the offsets topic through `replay(key, value, loading=True,
    producer_id=, record_offset=)` (the producer id of a transactional
    batch, else -1) and `replay_marker(producer_id, commit)` for each
    control batch; returns (records replayed, damage skipped), as
    replay.replay_log counts them."""
    def apply(raw_key: bytes, raw_value: bytes | None, producer_id: int, offset: int) -> None:
        key = rec.decode_key(raw_key)
        replay(key, rec.decode_value(key, raw_value), loading=True, producer_id=producer_id,
               record_offset=offset)

    return replay_log(plog, apply, replay_marker)
