"""Tests for L{chatsvc.chat.rate.Buckets}: buckets by owner, kept only while they matter."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Buckets


class BucketsTests(SynchronousTestCase):
    """One bucket per owner, forgotten once full again unless in use."""

    def test_onePerOwner(self) -> None:
        """An owner gets the same bucket until it is forgotten; owners do not share."""
        buckets: Buckets[str] = Buckets(1.0, 2, most=10)
        first = buckets.get("a", 0.0)
        self.assertIs(buckets.get("a", 0.0), first)
        self.assertIsNot(buckets.get("b", 0.0), first)

    def test_forgetOnlyWhenFull(self) -> None:
        """A spent bucket is kept (forgetting it would refill it); a full one goes."""
        buckets: Buckets[str] = Buckets(1.0, 2, most=10)
        buckets.get("a", 0.0).take(0.0)
        buckets.forget("a", 0.5)
        self.assertIn("a", buckets)
        buckets.forget("a", 1.0)
        self.assertNotIn("a", buckets)

    def test_sweepKeepsWhatIsInUse(self) -> None:
        """Past C{most} buckets, the full ones go, but not those in use."""
        used = {"kept"}
        buckets: Buckets[str] = Buckets(1.0, 2, most=2, inUse=used.__contains__)
        buckets.get("kept", 0.0)
        buckets.get("idle", 0.0)
        buckets.get("new", 0.0)
        self.assertEqual(("kept" in buckets, "idle" in buckets, "new" in buckets), (True, False, True))
        buckets.discard("kept")
        self.assertNotIn("kept", buckets)
