"""Message ids: 26 characters of Crockford base32, like ULIDs.

Without a ``client_msg_id`` an id is 48 bits of milliseconds then 80 random bits, so ids sort by
acceptance time. With one, the id is derived from (sender, client_msg_id, content), so a retry —
on this relay or another, now or later — gets the same id and the database stores the message
once, while a client that reuses a ``client_msg_id`` for a different message gets a new id and a
new message (never an ack for something that is not stored). An id cannot both be a pure function
of those values and carry the time of a later retry; idempotency wins (docs/decisions.md).
Ordering never depends on ids: ``seq`` orders a channel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_message_id(now_ms: int, random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A time-sortable id: the acceptance time in ms, then 80 random bits."""
    rand = int.from_bytes(random_bytes(10), "big")
    return _base32(((now_ms & (2**48 - 1)) << 80) | rand, 26)


def content_digest(*fields: str) -> bytes:
    """A digest of what a message says (channel, recipient, type, data): part of its identity."""
    return hashlib.sha256("\x00".join(fields).encode()).digest()


def idempotent_message_id(sender: str, client_msg_id: str, content: bytes) -> str:
    """The same id for every retry of one client message (same content) by one sender."""
    digest = hashlib.sha256(f"{sender}\x00{client_msg_id}\x00".encode() + content).digest()
    return _base32(int.from_bytes(digest[:16], "big") >> 2, 26)


def message_id(sender: str, client_msg_id: str, content: bytes, now_ms: int) -> str:
    if client_msg_id:
        return idempotent_message_id(sender, client_msg_id, content)
    return new_message_id(now_ms)
