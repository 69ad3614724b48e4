"""Gap-free live delivery: a client that follows the contract sees every acked message once.

Each test makes a live delivery fail in a way the relay cannot prevent — a subscription that
takes a while (or longer than the relay waits), a cut relay-controller stream, a controller killed
after committing a batch it never streamed, a membership added while its subscription is held
back — and checks that the contract (``hello`` after confirmed subscriptions, ``resync`` after
any lost stream or late confirmation, resume by cursor, dedupe by id) still leaves every listener
with exactly the acknowledged messages, in one order. The races are exercised over many rounds;
a graceful controller restart, by contrast, must need no resync at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from chatclient import Ack, ChatClient, SyncedClient, login, logout
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.controller.hooks import ControllerHooks
from services.relay.controller_link import ControllerLink
from services.relay.server import start as start_relay
from tests.hold import Hold
from tests.integration.crash_env import ControllerProcess, crashable_pipeline
from tests.integration.frames import frames_until
from tests.integration.pipeline_env import (
    PASSWORD,
    Pipeline,
    User,
    start_pipeline,
    wait_link_up,
)
from tests.team_docs import add_member
from tests.waiting import until

# Held back in the controller before each subscription change: the window in which a relay that
# greeted a socket at once (before the change was in force) would lose messages.
SLOW_SUBSCRIBE_S = 0.3
# Rounds of each race; every round gives every listener its own real exercise of the window.
ROUNDS = 6
# Controller SIGKILLs in a row within one pipeline. Each costs about 10 s: the successor's
# consumer waits for the killed member's group session to expire.
CRASHES = 5
# Crashes between commit and stream write per pipeline, for each of two batch positions.
LIVES = 3


async def _slow_subscription() -> None:
    await asyncio.sleep(SLOW_SUBSCRIBE_S)


@pytest.fixture(scope="module")
async def slow_pipe(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """A pipeline whose controller takes a while to apply every subscription change."""
    pipeline = await start_pipeline(
        settings,
        tmp_path_factory.mktemp("gap-keys"),
        hooks=ControllerHooks(before_subscription_change=_slow_subscription),
    )
    yield pipeline
    await pipeline.stop()


@pytest.fixture(scope="module")
async def gated_pipe(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Pipeline, Hold]]:
    """A pipeline whose controller holds subscription changes back while the test says so."""
    hold = Hold()
    pipeline = await start_pipeline(
        settings,
        tmp_path_factory.mktemp("gated-keys"),
        hooks=ControllerHooks(before_subscription_change=hold),
        relay_subscribe_timeout_s=10.0,
    )
    yield pipeline, hold
    hold.open()
    await pipeline.stop()


class _Senders:
    """Sockets sending numbered messages to one team, each as soon as its previous one is acked:
    ``count`` each, or (``count=None``) until ``done``."""

    def __init__(self, clients: Sequence[ChatClient], team: str, count: int | None = None) -> None:
        self._clients = list(clients)
        self.acks: list[Ack] = []
        # When each ack arrived (event loop time), in the order of ``acks``.
        self.acked_at: list[float] = []
        self._stopping = False
        tag = uuid.uuid4().hex[:8]
        self._tasks = [
            asyncio.create_task(self._send(c, team, f"{tag}-s{n}", count))
            for n, c in enumerate(clients)
        ]

    async def _send(self, client: ChatClient, team: str, name: str, count: int | None) -> None:
        i = 0
        while i < count if count is not None else not self._stopping:
            ack = await client.send(team, f"{name} m{i}", client_msg_id=f"{name}-{i}", timeout=60)
            self.acks.append(ack)
            self.acked_at.append(asyncio.get_running_loop().time())
            i += 1
            await asyncio.sleep(random.uniform(0, 0.01))

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for at in self.acked_at if start <= at <= end)

    async def until_acked(self, count: int, timeout_s: float = 60) -> None:
        """Until ``count`` messages in all are acked (a sender's failure is raised here)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.acks) < count:
            for task in self._tasks:
                if task.done():
                    task.result()
                    raise AssertionError(f"a sender stopped at {len(self.acks)} acks")
            assert asyncio.get_running_loop().time() < deadline, f"{len(self.acks)} acked"
            await asyncio.sleep(0.02)

    async def more(self, count: int) -> None:
        """Until ``count`` more messages are acked than now."""
        await self.until_acked(len(self.acks) + count)

    async def done(self) -> set[str]:
        """Stop (after the message in hand) and return every acked id."""
        self._stopping = True
        await asyncio.gather(*self._tasks)
        return {a.id for a in self.acks}

    async def stop(self) -> None:
        """Stop, whatever state the senders are in, and close their sockets."""
        self._stopping = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await _closing(*self._clients)


async def _converged(listeners: Sequence[SyncedClient], team: str, acked: set[str]) -> None:
    """Every listener shows exactly the acked messages, each once, all in the same order."""
    for listener in listeners:

        def complete(lst: SyncedClient = listener) -> bool:
            return _ids(lst, team) >= acked

        try:
            await listener.wait_for(complete, 60)
        except TimeoutError:
            missing = acked - _ids(listener, team)
            raise AssertionError(
                f"{len(missing)} of {len(acked)} acked messages never shown "
                f"(resyncs {listener.resyncs}, reconnects {listener.reconnects})"
            ) from None
    orders = [[m["id"] for m in lst.timeline.messages(team)] for lst in listeners]
    for order in orders:
        assert len(order) == len(set(order)), "a message was shown twice"
        assert set(order) == acked, f"{len(acked - set(order))} missing, extra {set(order) - acked}"
    assert all(order == orders[0] for order in orders), "listeners disagree on the order"


async def _flowing(listener: SyncedClient, team: str, senders: _Senders, count: int) -> None:
    """Until ``listener`` shows the next ``count`` messages acked from now: the controller
    running now has stored them (deliveries flow again)."""
    await senders.more(count)
    wanted = {a.id for a in senders.acks[-count:]}
    await listener.wait_for(lambda: _ids(listener, team) >= wanted, 60)


def _ids(listener: SyncedClient, team: str) -> set[str]:
    return {m["id"] for m in listener.timeline.messages(team)}


async def _team_of(pipe: Pipeline, size: int) -> tuple[list[User], str]:
    users = list(await asyncio.gather(*(pipe.user() for _ in range(size))))
    return users, await pipe.team(users)


async def _closing(*clients: SyncedClient | ChatClient) -> None:
    for client in clients:
        await client.close()


@contextlib.asynccontextmanager
async def _traffic(
    pipe: Pipeline,
    team: str,
    *,
    listen: Sequence[tuple[User, int]],
    send: Sequence[tuple[User, int]],
) -> AsyncIterator[tuple[list[SyncedClient], _Senders]]:
    """Listeners following the contract and senders streaming to ``team``, each on its relay
    (``(user, relay)``); all stopped and closed at the end."""
    listeners = [await pipe.synced(user, relay) for user, relay in listen]
    senders = _Senders([await pipe.connect(user, relay) for user, relay in send], team)
    try:
        yield listeners, senders
    finally:
        await senders.stop()
        await _closing(*listeners)


@pytest.mark.parametrize("round_", range(ROUNDS))
async def test_sockets_greeted_while_a_subscription_is_slow_miss_nothing(
    slow_pipe: Pipeline, round_: int
) -> None:
    """Listeners each subscribing afresh (0.3 s) while their team's messages flow miss nothing."""
    teams = [await _team_of(slow_pipe, 2) for _ in range(4)]
    # Team k's sender holds the team on relay k % 2; its listener joins the other relay, which
    # does not hold the team yet: every join is a fresh, slow subscription.
    senders = [
        _Senders([await slow_pipe.connect(users[0], k % 2)], team)
        for k, (users, team) in enumerate(teams)
    ]
    listeners: list[SyncedClient] = []
    try:
        for k, (users, _team) in enumerate(teams):
            await senders[k].more(5)
            loop = asyncio.get_running_loop()
            asked = loop.time()
            listeners.append(await slow_pipe.synced(users[1], (k + 1) % 2))
            greeted = loop.time()
            # The window was real: hello waited for the held subscription while the team's
            # messages were being acked (a relay greeting at once would have lost them live).
            assert greeted - asked >= SLOW_SUBSCRIBE_S
            assert senders[k].acked_between(asked, greeted) >= 1
        for k, (_users, team) in enumerate(teams):
            await senders[k].more(10)
            await _converged([listeners[k]], team, await senders[k].done())
    finally:
        for sender in senders:
            await sender.stop()
        await _closing(*listeners)


@pytest.mark.parametrize("round_", range(ROUNDS))
async def test_a_cut_controller_stream_makes_its_sockets_resync(
    slow_pipe: Pipeline, round_: int
) -> None:
    """Cutting a relay's controller stream mid-stream, 3 times, ends in resyncs and no gap."""
    users, team = await _team_of(slow_pipe, 4)
    link = slow_pipe.relays[1].relay.link
    loop = asyncio.get_running_loop()
    listen = [(u, 1) for u in users[1:]]
    async with _traffic(slow_pipe, team, listen=listen, send=[(users[0], 0)]) as (
        listeners,
        senders,
    ):
        for _ in range(3):
            await senders.more(20)
            cut_at = loop.time()
            await _cut_and_back(link)
            # Messages were acked while the relay had no stream: really lost live.
            assert senders.acked_between(cut_at, loop.time()) >= 1
        await senders.more(20)
        await _converged(listeners, team, await senders.done())
        assert [listener.resyncs for listener in listeners] == [3, 3, 3]


async def _cut_and_back(link: ControllerLink) -> None:
    """Cut the link's controller stream and wait until a new one is UP."""
    reconnects = link.reconnects
    link.cut(link.addresses[0])
    await until(lambda: link.reconnects > reconnects and link.all_up, timeout_s=30)


@contextlib.asynccontextmanager
async def _crashing(
    settings: Settings, tmp_path: Path, after_commits: int
) -> AsyncIterator[tuple[Pipeline, ControllerProcess]]:
    env = {
        "TEST_CRASH_AFTER_COMMITS": str(after_commits),
        "TEST_CRASH_MARKER": str(tmp_path / "crashed"),
    }
    async with crashable_pipeline(
        settings,
        tmp_path,
        module="tests.integration.crashing_controller",
        env=env,
        # Each life consumes only once a relay is back: its lost batch is one a listener missed.
        controller_start_grace_s=60.0,
    ) as crash_env:
        yield crash_env


@pytest.mark.parametrize("after_commits", [3, 12])
async def test_kill_9_between_commit_and_stream_write_is_covered_by_resync(
    settings: Settings, tmp_path: Path, after_commits: int
) -> None:
    """Batches committed but never streamed (SIGKILL, three in a row) reach every listener."""
    async with _crashing(settings, tmp_path, after_commits) as (pipe, controller):
        users, team = await _team_of(pipe, 4)
        listen = [(u, n % 2) for n, u in enumerate(users[1:])]
        async with _traffic(pipe, team, listen=listen, send=[(users[0], 0)]) as (
            listeners,
            senders,
        ):
            for crash in range(LIVES):
                assert await controller.wait_exit(60) == -9
                armed = crash < LIVES - 1
                if armed:
                    (tmp_path / "crashed").unlink()  # the next life crashes the same way
                await controller.start(may_crash=armed)
            await senders.more(20)
            await _converged(listeners, team, await senders.done())
            # Both relays were back before each life consumed: every crash cost each a resync.
            assert all(listener.resyncs >= LIVES for listener in listeners)


async def test_three_senders_three_listeners_one_order_across_controller_kills(
    settings: Settings, tmp_path: Path
) -> None:
    """Three senders, three listeners on two relays, five controller SIGKILLs: one order."""
    async with crashable_pipeline(settings, tmp_path) as (pipe, controller):
        users, team = await _team_of(pipe, 6)
        listen = [(u, n % 2) for n, u in enumerate(users[3:])]
        send = [(u, n % 2) for n, u in enumerate(users[:3])]
        async with _traffic(pipe, team, listen=listen, send=send) as (listeners, senders):
            for _ in range(CRASHES):
                await _flowing(listeners[0], team, senders, 20)
                await controller.kill()
                await controller.start()
            await _flowing(listeners[0], team, senders, 20)
            await _converged(listeners, team, await senders.done())
            assert all(listener.resyncs >= CRASHES for listener in listeners)
            stored = await pipe.db.messages.find(
                {"channel_id": team}, {"id": 1, "seq": 1}
            ).to_list()
            assert [d["id"] for d in sorted(stored, key=lambda d: d["seq"])] == [
                m["id"] for m in listeners[0].timeline.messages(team)
            ]


async def test_a_graceful_controller_restart_mid_stream_needs_no_resync(
    settings: Settings, tmp_path: Path
) -> None:
    """SIGTERM mid-stream, three times, restarted each time: no resync, nothing lost."""
    # One relay, and the successor waits for it before consuming: its start gate waits for the
    # first relay only, so a second relay back after the consumer started is rightly owed one.
    async with crashable_pipeline(settings, tmp_path, controller_start_grace_s=60.0) as (
        pipe,
        controller,
    ):
        await pipe.drop_relay(1)
        users, team = await _team_of(pipe, 4)
        listen = [(u, 0) for u in users[1:]]
        async with _traffic(pipe, team, listen=listen, send=[(users[0], 0)]) as (
            listeners,
            senders,
        ):
            for _ in range(3):
                await _flowing(listeners[0], team, senders, 20)
                await controller.stop()
                assert controller.proc is not None
                assert controller.proc.returncode == 0
                await controller.start()
            await _flowing(listeners[0], team, senders, 20)
            await _converged(listeners, team, await senders.done())
            assert [(lst.resyncs, lst.reconnects) for lst in listeners] == [(0, 0)] * 3


async def test_a_confirmation_later_than_the_timeout_greets_then_resyncs(
    gated_pipe: tuple[Pipeline, Hold],
) -> None:
    """Held past CHAT_RELAY_SUBSCRIBE_TIMEOUT_S: hello anyway, resync once confirmed, no gap."""
    pipe, hold = gated_pipe
    users, team = await _team_of(pipe, 2)
    sender = await pipe.connect(users[0], 0)
    impatient = await start_relay(
        dataclasses.replace(pipe.settings, relay_id="impatient", relay_subscribe_timeout_s=0.5),
        port=0,
    )
    listener: SyncedClient | None = None
    senders: _Senders | None = None
    try:
        await wait_link_up(impatient)
        hold.close()
        url = f"ws://127.0.0.1:{impatient.port}/v1/ws"
        listener = SyncedClient(url, pipe.api_url, users[1].token)
        await listener.start()  # greeted while its subscription is still held back
        assert hold.held == 1
        senders = _Senders([sender], team)
        await senders.more(20)  # fanned out while the relay is not subscribed yet
        assert listener.resyncs == 0
        hold.open()
        await until(lambda: listener is not None and listener.resyncs == 1, timeout_s=30)
        await senders.more(20)
        await _converged([listener], team, await senders.done())
        assert listener.resyncs == 1
    finally:
        hold.open()
        await (senders.stop() if senders is not None else sender.close())
        if listener is not None:
            await listener.close()
        await impatient.stop()


async def test_an_added_member_is_told_once_subscribed_then_misses_nothing(
    gated_pipe: tuple[Pipeline, Hold],
) -> None:
    """`membership added` waits for the held subscription; then every message reaches the member."""
    pipe, hold = gated_pipe
    owner, member = await pipe.user(), await pipe.user()
    team, lobby = await pipe.team([owner]), await pipe.team([owner, member])
    sender = await pipe.connect(owner, 0)
    # The member's sockets on the other relay: one read frame by frame, one following the contract.
    watcher = await pipe.connect(member, 1)
    listener = await pipe.synced(member, 1)
    senders = _Senders([sender], team)
    try:
        await senders.more(10)
        hold.close()
        await add_member(pipe.db, team, member.id)
        await pipe.membership_event(team, member.id, chat_pb2.MEMBERSHIP_CHANGE_ADDED)
        await until(
            lambda: hold.held == 1, timeout_s=30
        )  # the member's relay asked to subscribe the team
        await senders.more(20)  # fanned out while that relay is not subscribed yet
        marker = await sender.send(lobby, "marker")
        before = await frames_until(watcher, lambda f: f.get("id") == marker.id)
        assert [f for f in before if f.get("type") == "membership"] == []
        hold.open()
        after = await frames_until(watcher, lambda f: f.get("type") == "membership")
        assert after[-1] == {"type": "membership", "channel_id": team, "event": "added"}
        await senders.more(20)
        await _converged([listener], team, await senders.done())
    finally:
        hold.open()
        await senders.stop()
        await _closing(listener, watcher)


async def test_a_relay_cut_off_when_a_logout_went_out_closes_its_sockets_once_back(
    gated_pipe: tuple[Pipeline, Hold],
) -> None:
    """The logout's event goes out while one relay has no stream: that relay still closes the
    login's socket (1008 "session ended") once its stream is back."""
    pipe, hold = gated_pipe
    bob = await pipe.user()
    await pipe.team([bob])
    phone = await login(pipe.auth_url, bob.email, PASSWORD)
    heard = await ChatClient.connect(pipe.ws_url(0), phone.access_token)
    missed = await ChatClient.connect(pipe.ws_url(1), phone.access_token)
    link = pipe.relays[1].relay.link
    try:
        hold.close()
        link.cut(link.addresses[0])
        await until(lambda: hold.held == 1, timeout_s=30)  # its new stream waits at the door
        await logout(pipe.auth_url, phone.refresh_token)
        # The event was fanned out: the relay that had its stream closed its socket.
        await asyncio.wait_for(heard.conn.wait_closed(), 15)
        assert missed.close_code is None
        hold.open()
        await asyncio.wait_for(missed.conn.wait_closed(), 15)
        assert (missed.conn.close_code, missed.conn.close_reason) == (1008, "session ended")
    finally:
        hold.open()
        await _closing(heard, missed)
