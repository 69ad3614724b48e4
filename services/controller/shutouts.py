"""Who may hold no socket, told again to each relay stream as it opens.

``user_disabled`` and ``session_ended`` events reach a relay once, on the stream of the controller
that consumed them. A relay whose stream to that controller was down at that moment never hears
of them, and the sockets they should have closed would live on until their tokens expire. So each
new stream starts with the current state written as those same events, marked ``restated``: the
accounts disabled within an access token's lifetime (read at that moment, so an account enabled
again is not in it; older disables hold no live token) and every ended login whose tokens still
live, both read after the stream opened (an event's document precedes the event, so whatever
the stream may have missed is in the read). The relay closes matching
sockets and, unlike for news, refuses nothing afterwards: its handshake lookups already say who is
disabled or logged out. Applying the state twice changes nothing.
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
            user_id=user_id,
            change=chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED,
            ts_ms=ts_ms,
            restated=True,
        )
        for user_id in sorted(state.disabled)
    ]
    events += [
        chat_pb2.MembershipEvent(
            user_id=user_id,
            change=chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED,
            session_id=session_id,
            ts_ms=ts_ms,
            restated=True,
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
    """Queue the state on a stream just opened; until it is queued, try again every ``retry_s``
    (the database away, the queue full). Ends with the stream."""
    while stream.reason is None:
        try:
            state = await directory.shut_out()
        except ChatError as exc:
            _log.warning("shut_outs_unavailable", relay_id=stream.relay_id, error=exc.message)
        except Exception:
            # A task of its own: nobody above would see this until the stream ends.
            _log.exception("shut_outs_failed", relay_id=stream.relay_id)
        else:
            batches = shut_out_batches(state, ts_ms=now_ms())
            if not batches or stream.offer(batches):
                return
            _log.warning("shut_outs_not_queued", relay_id=stream.relay_id, batches=len(batches))
        await asyncio.sleep(retry_s)
