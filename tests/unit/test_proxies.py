"""Trusted proxies are matched as IP addresses and networks, never as strings."""

from __future__ import annotations

import pytest

from chatcore.proxies import is_trusted

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
