"""Tests of what every door's connections share, on their own: fake sessions and a clock."""
