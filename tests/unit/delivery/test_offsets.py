"""Unit tests of bridge.delivery.offsets: only settled offsets are committed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.delivery.offsets import PartitionOffsets

# database=None: no example database written into the shared tree.
FUZZ = settings(max_examples=300, deadline=None, database=None)


class TestPartitionOffsets:
    def test_none_before_any_add(self) -> None:
        po = PartitionOffsets()
        assert po.committable() is None
        po.settle(5)  # settling something unknown changes nothing
        assert po.committable() is None
        assert len(po) == 0

    def test_first_offset_pending(self) -> None:
        po = PartitionOffsets()
        po.add(0)
        # Committing 0 (= "next to read is 0") is a no-op but harmless; it is not > committed -1.
        assert po.committable() == 0
        po.settle(0)
        assert po.committable() == 1

    def test_out_of_order_settles(self) -> None:
        po = PartitionOffsets()
        for offset in range(10, 15):
            po.add(offset)
        assert len(po) == 5
        po.settle(12)
        po.settle(14)
        assert po.committable() == 10
        po.settle(10)
        assert po.committable() == 11
        po.settle(11)
        assert po.committable() == 13
        po.settle(13)
        assert po.committable() == 15  # all settled → highest + 1
        assert len(po) == 0

    def test_committed_marker_prevents_recommit(self) -> None:
        po = PartitionOffsets()
        for offset in (3, 4, 5):
            po.add(offset)
        po.settle(3)
        assert po.committable() == 4
        po.committed = 4  # what the worker does after a successful commit
        assert po.committable() is None
        assert po.committable() is None
        po.settle(5)
        assert po.committable() is None  # 4 still pending and already committed
        po.settle(4)
        assert po.committable() == 6

    def test_committed_marker_same_offset_not_returned(self) -> None:
        po = PartitionOffsets()
        for offset in (3, 4, 5):
            po.add(offset)
        po.settle(3)
        po.committed = po.committable()  # 4
        po.settle(5)
        assert po.committable() is None  # still 4: already committed
        po.settle(4)
        assert po.committable() == 6
        po.committed = 6
        assert po.committable() is None
        po.add(6)
        assert po.committable() is None  # 6 pending == committed
        po.settle(6)
        assert po.committable() == 7

    def test_gaps_do_not_block(self) -> None:
        """Compacted offsets and transaction markers are never added, so never awaited."""
        po = PartitionOffsets()
        for offset in (100, 103, 104, 110):
            po.add(offset)
        for offset in (100, 103):
            po.settle(offset)
        assert po.committable() == 104
        po.settle(104)
        assert po.committable() == 110
        po.settle(110)
        assert po.committable() == 111

    def test_add_after_all_settled(self) -> None:
        po = PartitionOffsets()
        po.add(1)
        po.settle(1)
        assert po.committable() == 2
        po.committed = 2
        po.add(2)
        po.add(5)
        po.settle(5)
        assert po.committable() is None
        po.settle(2)
        assert po.committable() == 6

    @FUZZ
    @given(st.data())
    def test_property_lowest_unsettled_or_past_highest(self, data: st.DataObject) -> None:
        offsets = data.draw(st.sets(st.integers(min_value=0, max_value=10_000), min_size=1,
                                    max_size=60), label="offsets")
        order = data.draw(st.permutations(sorted(offsets)), label="add order")
        settled = data.draw(st.sets(st.sampled_from(sorted(offsets))), label="settled")
        settle_order = data.draw(st.permutations(sorted(settled)), label="settle order")
        po = PartitionOffsets()
        # Interleave: add everything, checking committable() between settles too.
        for offset in order:
            po.add(offset)
        for offset in settle_order:
            po.settle(offset)
            target = po.committable()
            pending = offsets - set(settle_order[: settle_order.index(offset) + 1])
            assert target == (min(pending) if pending else max(offsets) + 1)
        unsettled = offsets - settled
        target = po.committable()
        assert target == (min(unsettled) if unsettled else max(offsets) + 1)
        assert all(target <= u for u in unsettled)
        assert len(po) == len(unsettled)

    @FUZZ
    @given(st.lists(st.tuples(st.sampled_from(["add", "settle", "commit"]),
                              st.integers(min_value=0, max_value=40)), max_size=80))
    def test_property_interleaved_with_commits(self, ops: list[tuple[str, int]]) -> None:
        """Monotonic adds (as Kafka delivers them), settles and commits in any interleaving."""
        po = PartitionOffsets()
        added: set[int] = set()
        settled: set[int] = set()
        next_offset = 0
        committed = -1
        for op, value in ops:
            if op == "add":
                next_offset += value % 3  # gaps of 0..2 offsets
                po.add(next_offset)
                added.add(next_offset)
                next_offset += 1
            elif op == "settle" and added:
                offset = sorted(added)[value % len(added)]
                po.settle(offset)
                settled.add(offset)
            else:
                target = po.committable()
                if target is not None:
                    committed = po.committed = target
            target = po.committable()
            unsettled = added - settled
            if not added:
                assert target is None
                continue
            expected = min(unsettled) if unsettled else max(added) + 1
            assert target == (expected if expected > committed else None)
            if target is not None:
                assert all(target <= u for u in unsettled)
