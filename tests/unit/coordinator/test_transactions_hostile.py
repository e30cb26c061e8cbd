"""What a hostile or merely large client load does to the transaction
coordinator: a catastrophic ListTransactions pattern, more idle ids than
one batch of tombstones holds, a produce while its producer is being
fenced."""

import asyncio

from strom.coordinator import txn_records as rec
from tests.unit.coordinator.test_transactions import TIMEOUT, E, begin, coordinator, run


def test_a_catastrophic_pattern_is_matched_in_linear_time(tmp_path):
    async def main():
        async with coordinator(tmp_path) as txns:
            for tid in ("a" * 40 + "!", "tx-1", "tx-2"):
                assert (await txns.init_producer_id(tid, TIMEOUT))[0] == E.none
            # With Python's re, `(a+)+` against the first id backtracks
            # for hours; RE2 answers at once.
            found = txns.list_transactions(transactional_id_pattern="(a+)+")
            assert found["error_code"] == E.none and found["transaction_states"] == []
            found = txns.list_transactions(transactional_id_pattern="tx-.*")
            assert sorted(t["transactional_id"] for t in found["transaction_states"]) == [
                "tx-1", "tx-2"]
            bad = txns.list_transactions(transactional_id_pattern="(")
            assert bad["error_code"] == E.invalid_regular_expression
    run(main())


def test_expiry_of_more_ids_than_one_batch_holds(tmp_path):
    """600 ids of 2,000 characters: 1.2 MB of tombstones, over
    max.message.bytes as one batch (which was refused at every pass)."""
    async def main():
        async with coordinator(tmp_path) as txns:
            ids = [f"{i:04d}" + "x" * 1996 for i in range(600)]
            for tid in ids:
                assert (await txns.init_producer_id(tid, TIMEOUT))[0] == E.none
            later = max(m.txn_last_update_timestamp for m in txns.transactions.values()) \
                + txns.transactional_id_expiration_ms + 1
            assert await txns.expire_transactional_ids(later) == len(ids)
            assert not txns.transactions
    run(main())


def test_a_produce_while_its_producer_is_fenced_gets_invalid_producer_epoch(tmp_path):
    async def main():
        async with coordinator(tmp_path) as txns:
            pid, epoch = await begin(txns, "fenced", [("t", 0)])
            fence = asyncio.ensure_future(txns.init_producer_id("fenced", TIMEOUT))
            async with asyncio.timeout(5):
                while txns._pending.get("fenced") != rec.PREPARE_ABORT:
                    await asyncio.sleep(0)
            # Kafka answers this once the bump is written; the old producer
            # learns it is fenced rather than that its transaction is odd.
            assert txns.check_partition(pid, epoch, "t", 0) == E.invalid_producer_epoch
            await fence
    run(main())


def test_offsets_beyond_one_batch_are_committed_expired_and_reloaded(tmp_path):
    """8,000 offsets of a topic with a 200-character name: 2.4 MB of
    records, over max.message.bytes as one batch (the commit, the expiry
    and a group's deletion were each one batch, refused)."""
    from tests.unit.coordinator.test_txn_offsets import offsets
    from tests.unit.coordinator.test_txn_offsets import run as run_groups

    topic = "t" * 200
    wanted = offsets(*[(topic, p, p + 1) for p in range(8000)])

    async def commit(groups, logs):
        assert await groups.commit("big", wanted) == E.none
        assert len(groups.committed("big")) == 8000

    async def expire(groups, logs):
        assert len(groups.committed("big")) == 8000  # replayed from several batches
        far = max(v["commit_timestamp"] for v in groups.committed("big").values()) \
            + groups.offsets_retention_ms + 1
        assert await groups.expire_offsets(far) == 8000
        assert not groups.committed("big")

    async def reload(groups, logs):
        assert not groups.committed("big")

    run_groups(tmp_path, commit)
    run_groups(tmp_path, expire)
    run_groups(tmp_path, reload)
