"""
Who a connection comes from, as the limits and the logs of every door see it.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.interfaces import IAddress

__all__ = ["IPV6_PREFIX", "addressOf", "describeAddress"]


def describeAddress(address: IAddress) -> str:
    """A short, readable form of a connection's address: C{host:port}, or a socket path."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return str(address)


IPV6_PREFIX = 64
"""IPv6 addresses count as one address per network of this prefix length: one home, one phone
or one virtual machine is given a whole /64, from which it may use as many addresses as it likes."""


def addressOf(address: IAddress) -> str | None:
    """
    What the limits that count an address's connections together (the per-address connection
    cap, the address's flood limit, its room budget) count a connection's peer as: its IPv4
    address (also when seen as an IPv4-mapped IPv6 address), or its IPv6 /64 network; L{None}
    for a peer without an IP address (a UNIX socket's).
    """
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
