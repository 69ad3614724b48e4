"""Which verified tokens a relay still refuses at the handshake (services/relay/refusals.py)."""

from __future__ import annotations

from chatcore.proto.chat.v1 import chat_pb2
from chatcore.tokens import AccessClaims
from services.relay.hub import Effects
from services.relay.refusals import Refusals

BOB, SID, OTHER_SID = "b" * 32, "c" * 32, "d" * 32


def _claims(sid: str = SID) -> AccessClaims:
    return AccessClaims(sub=BOB, jti="j", iat=0, exp=0, iss="i", aud="a", kid="k", sid=sid)


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


FRESH = chat_pb2.GetMembershipsReply()


def test_the_lookup_answer_refuses_a_disabled_account_and_an_ended_login() -> None:
    """The controllers' answer alone refuses; a login of the user not named stays welcome."""
    refusals = Refusals()
    assert refusals.reason(_claims(), chat_pb2.GetMembershipsReply(disabled=True)) == (
        "account disabled"
    )
    ended = chat_pb2.GetMembershipsReply(ended_sessions=[SID])
    assert refusals.reason(_claims(), ended) == "session ended"
    assert refusals.reason(_claims(OTHER_SID), ended) is None
    assert refusals.reason(_claims(""), ended) is None  # a token from before logins had ids


def test_a_live_event_is_refused_for_the_hold_even_while_the_lookup_lags() -> None:
    """After user_disabled or session_ended news, a lookup a second stale cannot let them in."""
    clock = _Clock()
    refusals = Refusals(hold_s=60, clock=clock)
    refusals.heard(Effects(disabled_users=[BOB]))
    assert refusals.reason(_claims(), FRESH) == "account disabled"
    clock.t += 61
    assert refusals.reason(_claims(), FRESH) is None
    refusals.heard(Effects(ended_sessions=[(BOB, SID)]))
    assert refusals.reason(_claims(), FRESH) == "session ended"
    assert refusals.reason(_claims(OTHER_SID), FRESH) is None


def test_restated_state_arms_nothing_so_an_account_enabled_again_gets_in() -> None:
    """What a controller restates at a stream's opening closes sockets but refuses nobody later."""
    refusals = Refusals()
    refusals.heard(Effects(disabled_now=[BOB], ended_now=[(BOB, SID)]))
    assert refusals.reason(_claims(), FRESH) is None
