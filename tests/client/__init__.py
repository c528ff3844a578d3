"""Tests of the terminal client, in memory and as a real process."""
