"""Tests of the line door against in-memory transports (and a few loopback sockets)."""
