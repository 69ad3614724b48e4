"""Who may hold no socket, as the events each relay stream opens with (controller/shutouts.py)."""

from __future__ import annotations

from chatcore.proto.chat.v1 import chat_pb2
from services.controller.directory import ShutOut
from services.controller.shutouts import shut_out_batches
from tests.unit.controller_fakes import membership_events

DISABLED = chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED
ENDED = chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED
SID_A, SID_B, SID_C = "a" * 32, "b" * 32, "c" * 32


def test_state_becomes_the_events_a_relay_already_applies() -> None:
    """Disabled accounts as user_disabled, ended logins as session_ended; none for a disabled
    account's logins (it is refused whole)."""
    state = ShutOut(disabled=frozenset({"u3", "u1"}), ended={"u2": (SID_A, SID_B), "u1": (SID_C,)})
    assert membership_events(shut_out_batches(state, ts_ms=5)) == [
        ("u1", DISABLED, ""),
        ("u3", DISABLED, ""),
        ("u2", ENDED, SID_A),
        ("u2", ENDED, SID_B),
    ]
    told = shut_out_batches(state, ts_ms=5)[0].deliveries
    assert all(d.membership.ts_ms == 5 and d.membership.restated for d in told)


def test_nothing_to_tell_is_no_batch_and_a_long_list_is_split() -> None:
    """An empty state sends nothing; a long one goes in batches of at most ``per_batch``."""
    assert shut_out_batches(ShutOut(frozenset(), {}), ts_ms=0) == []
    many = ShutOut(frozenset(f"u{i}" for i in range(5)), {})
    assert [len(b.deliveries) for b in shut_out_batches(many, ts_ms=0, per_batch=2)] == [2, 2, 1]
