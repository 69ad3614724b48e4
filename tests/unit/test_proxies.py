"""Trusted proxies are matched as IP addresses and networks, never as strings."""

from __future__ import annotations

import pytest

from chatcore.proxies import is_trusted, networks

TRUSTED = ("127.0.0.1", "::1", "10.1.0.0/16")


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("127.0.0.1", True),
        ("::ffff:127.0.0.1", True),  # a dual-stack socket's view of an IPv4 peer
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),  # the same address written out
        ("10.1.200.3", True),
        ("10.2.0.1", False),
        ("127.0.0.2", False),
        ("fe80::1%eth0", False),
        ("", False),
        (None, False),
        ("unknown", False),
        ("127.0.0.1 ", False),
    ],
)
def test_peers_are_matched_as_addresses(peer: str | None, trusted: bool) -> None:
    """A peer is trusted when its address is one listed or inside a listed network."""
    assert is_trusted(peer, TRUSTED) is trusted


@pytest.mark.parametrize("peer", ["172.28.0.10", "::ffff:172.28.0.10"])
def test_an_entry_written_ipv4_mapped_matches_either_form(peer: str) -> None:
    """``::ffff:172.28.0.10`` (what a dual-stack socket reports, so what an operator copies)
    trusts that proxy however its address comes; a mapped network covers its IPv4 range."""
    assert is_trusted(peer, ("::ffff:172.28.0.10",))
    assert is_trusted(peer, ("::ffff:172.28.0.0/120",))
    assert not is_trusted("172.28.0.11", ("::ffff:172.28.0.10",))


def test_an_entry_with_a_zone_is_refused() -> None:
    """A zone would be ignored when comparing, widening the entry: it is refused instead."""
    with pytest.raises(ValueError, match="zone"):
        networks(("fe80::1%eth0",))
