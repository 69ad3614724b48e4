"""Which peers are trusted proxies (``CHAT_TRUSTED_PROXIES``): addresses or networks, compared
as IP addresses, not strings, so ``10.0.0.0/8`` covers its addresses and an IPv4-mapped IPv6
peer (``::ffff:127.0.0.1``, as a dual-stack socket reports one) matches its IPv4 entry.

Only a trusted peer's ``X-Real-IP`` and ``X-Forwarded-Proto`` are believed: an entry that matched
nothing would make every client look like nginx (one address, so one client's failures throttle
everyone), and one that matched too much would let clients name their own address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """The entries as networks (an address is a network of one); ``ValueError`` naming the first
    entry that is neither."""
    parsed: list[Network] = []
    for entry in entries:
        if "%" in entry:  # a zone would be ignored in the comparison: refuse rather than widen
            raise ValueError(f"{entry!r} has an IPv6 zone; list the address without it")
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
        parsed.append(_unmapped(network))
    return tuple(parsed)


def _unmapped(network: Network) -> Network:
    """An IPv4-mapped entry (``::ffff:10.0.0.1``, as a dual-stack socket reports a peer) as the
    IPv4 network it stands for, since peers are compared as IPv4."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def is_trusted(peer: str | None, trusted_proxies: Sequence[str]) -> bool:
    """Whether the socket's peer address is one of the trusted proxies."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks(tuple(trusted_proxies)))
