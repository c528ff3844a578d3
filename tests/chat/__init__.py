"""Tests of the core: events, names, the hub and its rooms, on test doubles."""
