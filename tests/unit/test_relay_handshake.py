"""Handshake decisions, the per-user slots, the resync ledger and the gate's single flight."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.datastructures import Headers

from chatcore.proto.chat.v1 import chat_pb2
from services.relay.gate import Gate
from services.relay.handshake import (
    BAD_ORIGIN,
    DRAINING,
    TWO_AUTHORIZATIONS,
    Rejection,
    Route,
    UserSlots,
    request_id,
    split,
    upgrade_token,
)
from services.relay.hub import Session
from services.relay.resync import ResyncLedger
from tests.unit.relay_fakes import FakeAuthority

ORIGINS = ("http://127.0.0.1:8080",)


def test_routes_ignore_the_query() -> None:
    """The route is the path alone; unknown paths are not found."""
    assert split("/v1/ws?token=x") == (Route.WEBSOCKET, "token=x")
    assert split("/readyz")[0] is Route.READYZ
    assert split("/v1/ws/extra")[0] is Route.NOT_FOUND


@pytest.mark.parametrize(
    ("query", "headers", "draining", "expected"),
    [
        ("", {"Authorization": "Bearer abc"}, False, "abc"),
        ("token=qq", {}, False, "qq"),
        ("", {}, True, DRAINING),
        ("", {"Origin": "http://evil.example", "Authorization": "Bearer abc"}, False, BAD_ORIGIN),
        ("", {"Origin": ORIGINS[0], "Authorization": "Bearer abc"}, False, "abc"),
    ],
)
def test_upgrade_token_rules(
    query: str, headers: dict[str, str], draining: bool, expected: str | Rejection
) -> None:
    """Draining, Origin and token presence are decided before any verification."""
    assert upgrade_token(query, headers, origins=ORIGINS, draining=draining) == expected


def test_missing_token_is_a_401_with_the_envelope() -> None:
    """No token at all: 401 with the error envelope carrying the request id."""
    rejection = upgrade_token("", {}, origins=ORIGINS, draining=False)
    assert isinstance(rejection, Rejection)
    assert rejection.status == 401
    body = json.loads(rejection.body("rid-1"))
    assert body["error"]["request_id"] == "rid-1"
    assert body["error"]["code"] == "unauthorized"


def test_a_header_sent_twice_is_refused_with_the_envelope_not_an_error() -> None:
    """Two Origins are a 403 (either may be the evil one), two Authorizations a 401, two
    request ids a fresh one: each an answer in the envelope, not the library's lookup error."""
    token = "Bearer abc"
    for pair in ([ORIGINS[0], "http://evil.example"], ["http://evil.example", ORIGINS[0]]):
        headers = Headers([("Origin", pair[0]), ("Origin", pair[1]), ("Authorization", token)])
        assert upgrade_token("", headers, origins=ORIGINS, draining=False) == BAD_ORIGIN
    twice = Headers([("Authorization", token), ("Authorization", "Bearer other")])
    assert upgrade_token("", twice, origins=ORIGINS, draining=False) == TWO_AUTHORIZATIONS
    assert TWO_AUTHORIZATIONS.status == 401
    ids = Headers([("X-Request-ID", "abc-123"), ("X-Request-ID", "def-456")])
    assert request_id(ids) not in ("abc-123", "def-456")


def test_request_id_is_taken_only_when_it_is_a_plain_token() -> None:
    """A proxy's plain request id is kept; anything else is replaced by a fresh one."""
    assert request_id({"X-Request-ID": "abc-123"}) == "abc-123"
    fresh = request_id({"X-Request-ID": '"><script>'})
    assert fresh != '"><script>'
    assert len(fresh) == 32


def test_user_slots_cap_and_give_back() -> None:
    """A user gets at most the limit; a slot given back can be taken again; nothing lingers."""
    slots = UserSlots(2)
    assert [slots.take("u"), slots.take("u"), slots.take("u")] == [True, True, False]
    slots.give_back("u")
    assert slots.take("u")
    slots.give_back("u")
    slots.give_back("u")
    assert len(slots) == 0


def test_ledger_pays_owed_sockets_or_everyone_after_a_loss() -> None:
    """A controller back after a timeout pays its debtors; after a loss, every greeted socket."""
    a, b, c = (Session(u, object(), {}, greeted=True) for u in "abc")
    ledger = ResyncLedger()
    ledger.owe(a, ["ctl-1"], {})
    ledger.owe(b, ["ctl-2"], {})
    assert ledger.settle("ctl-1", lost=False, greeted=[a, b, c]) == [a]
    assert ledger.settle("ctl-1", lost=False, greeted=[a, b, c]) == []
    ledger.forget(b)
    assert ledger.settle("ctl-2", lost=False, greeted=[a, b, c]) == []
    assert ledger.settle("ctl-2", lost=True, greeted=[a, b, c]) == [a, b, c]


def test_ledger_pays_a_slow_controllers_debtors_at_the_confirmation_they_waited_for() -> None:
    """Owed by an UP but slow controller: paid by the confirmation of its request, not before."""
    a, b, c = (Session(u, object(), {}, greeted=True) for u in "abc")
    pending = Session("p", object(), {})
    ledger = ResyncLedger()
    ledger.owe(a, ["ctl-1"], {"ctl-1": 4})
    ledger.owe(b, ["ctl-1"], {"ctl-1": 7})
    ledger.owe(c, ["ctl-1"], {})  # unreachable when it asked: only the stream's return pays
    ledger.owe(pending, ["ctl-1"], {"ctl-1": 4})
    assert ledger.confirmed("ctl-1", 3) == []
    assert ledger.confirmed("ctl-2", 9) == []
    assert ledger.confirmed("ctl-1", 5) == [a]
    assert ledger.confirmed("ctl-1", 5) == []
    assert ledger.owed_by("ctl-1") == 2
    assert ledger.confirmed("ctl-1", 8) == [b]
    assert ledger.settle("ctl-1", lost=False, greeted=[a, b, c]) == [c]


def test_a_stream_back_up_keeps_a_debt_for_a_request_queued_after_its_opening_one() -> None:
    """Back UP having confirmed its opening request 10: a socket that waited for request 11
    (queued while the stream opened) is not paid yet, but at 11's confirmation."""
    a, b = (Session(u, object(), {}, greeted=True) for u in "ab")
    ledger = ResyncLedger()
    ledger.owe(a, ["ctl-1"], {"ctl-1": 10})
    ledger.owe(b, ["ctl-1"], {"ctl-1": 11})
    assert ledger.settle("ctl-1", lost=False, greeted=[a, b], confirmed=10) == [a]
    assert ledger.owed_by("ctl-1") == 1
    assert ledger.confirmed("ctl-1", 11) == [b]
    ledger.owe(b, ["ctl-1"], {"ctl-1": 12})
    assert ledger.settle("ctl-1", lost=False, greeted=[a, b]) == [b]  # left for good: all due


def test_ledger_owed_twice_by_one_controller_is_paid_when_both_would_be() -> None:
    """The later request of two wins; an unreachable controller's debt waits for its return."""
    a, b = (Session(u, object(), {}, greeted=True) for u in "ab")
    ledger = ResyncLedger()
    ledger.owe(a, ["ctl-1"], {"ctl-1": 4})
    ledger.owe(a, ["ctl-1"], {"ctl-1": 9})
    ledger.owe(b, ["ctl-1"], {"ctl-1": 4})
    ledger.owe(b, ["ctl-1"], {})
    assert ledger.confirmed("ctl-1", 8) == []
    assert ledger.confirmed("ctl-1", 9) == [a]
    assert ledger.confirmed("ctl-1", 99) == []
    assert ledger.settle("ctl-1", lost=False, greeted=[a, b]) == [b]


class _SlowAuthority(FakeAuthority):
    """Counts member-list reads; each one waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.release = asyncio.Event()

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        self.calls += 1
        await self.release.wait()
        return chat_pb2.GetMembersReply(user_ids=["x", "y"], active=True, found=True)


async def test_concurrent_member_lookups_share_one_read() -> None:
    """Fifty DMs to a channel whose members are not cached cost one member-list read."""
    authority = _SlowAuthority()
    gate = Gate(authority)
    lookups = [asyncio.create_task(gate.members_of("t" * 32)) for _ in range(50)]
    await asyncio.sleep(0)
    authority.release.set()
    results = await asyncio.gather(*lookups)
    assert authority.calls == 1
    assert {r for r in results} == {frozenset({"x", "y"})}
