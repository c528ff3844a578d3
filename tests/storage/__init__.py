"""Tests of the storage backends against real SQLite files."""
