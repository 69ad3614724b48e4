"""Who may hold no socket, told again to each relay stream as it opens.

``user_disabled`` and ``session_ended`` events reach a relay once, on the stream of the controller
that consumed them. A relay whose stream to that controller was down at that moment never hears
of them, and the sockets they should have closed would live on until their tokens expire. So each
new stream starts with the current state written as those same events: every disabled account
and every ended login whose tokens still live. This is state, not history — a re-enabled account
is not in it — and applying it twice changes nothing, so a relay that heard the live event loses
nothing by hearing it again.

The state is the controllers' cached read (directory.py: at most a second old, read whole for
the handshakes anyway), so a stream's opening costs no query of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatcore.errors import ChatError
from chatcore.logging import get_logger
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.directory import Directory, ShutOut
from services.controller.streams import RelayStream

_log = get_logger("controller.shutouts")

# Deliveries per batch: a few dozen bytes each, so a batch stays far below gRPC's message limit.
BATCH_DELIVERIES = 1000
RETRY_S = 1.0


def shut_out_batches(
    state: ShutOut, *, ts_ms: int, per_batch: int = BATCH_DELIVERIES
) -> list[chat_pb2.DeliveryBatch]:
    """The state as ``user_disabled`` and ``session_ended`` events, in batches."""
    events = [
        chat_pb2.MembershipEvent(
            user_id=user_id, change=chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED, ts_ms=ts_ms
        )
        for user_id in sorted(state.disabled)
    ]
    events += [
        chat_pb2.MembershipEvent(
            user_id=user_id,
            change=chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED,
            session_id=session_id,
            ts_ms=ts_ms,
        )
        for user_id in sorted(state.ended)
        for session_id in state.ended[user_id]
        if user_id not in state.disabled  # every login of a disabled account is refused anyway
    ]
    return [
        chat_pb2.DeliveryBatch(
            deliveries=[chat_pb2.Delivery(membership=e) for e in events[i : i + per_batch]]
        )
        for i in range(0, len(events), per_batch)
    ]


async def tell_shut_outs(
    directory: Directory,
    stream: RelayStream,
    *,
    now_ms: Callable[[], int],
    retry_s: float = RETRY_S,
) -> None:
    """Queue the state on a stream just opened; while the database is away, try again."""
    while stream.reason is None:
        try:
            state = await directory.shut_out()
        except ChatError as exc:
            _log.warning("shut_outs_unavailable", relay_id=stream.relay_id, error=exc.message)
            await asyncio.sleep(retry_s)
            continue
        batches = shut_out_batches(state, ts_ms=now_ms())
        if batches and not stream.offer(batches):
            # A million entries at the default queue size: not met in practice, but said.
            _log.warning("shut_outs_not_queued", relay_id=stream.relay_id, batches=len(batches))
        return
