"""Reading a test socket frame by frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatclient import ChatClient


async def frames_until(
    client: ChatClient, last: Callable[[dict[str, Any]], bool], timeout_s: float = 30
) -> list[dict[str, Any]]:
    """The frames ``client`` receives, in order, up to the first for which ``last`` holds."""
    frames = [await client.receive(timeout_s)]
    while not last(frames[-1]):
        frames.append(await client.receive(timeout_s))
    return frames


async def next_message(client: ChatClient, timeout_s: float = 10) -> dict[str, Any]:
    """The next frame that is not ``presence`` (those come whenever a member's first socket
    opens or last one closes, DESIGN 5b, so they may precede the message a test waits for)."""
    while True:
        frame = await client.receive(timeout_s)
        if frame.get("type") != "presence":
            return frame
