"""Gap-free live delivery: a client that follows the contract sees every acked message once.

Each test makes a live delivery fail in a way the relay cannot prevent — a subscription that
takes a while, a cut relay-controller stream, a controller killed after committing a batch it
never streamed — and checks that the contract (``hello`` after confirmed subscriptions, ``resync``
after any lost stream, resume by cursor, dedupe by id) still leaves every listener with exactly
the acknowledged messages, in one order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from chatclient import Ack, ChatClient, SyncedClient
from chatcore.settings import Settings
from services.controller.hooks import ControllerHooks
from services.relay.server import start as start_relay
from tests.hold import Hold
from tests.integration.crash_env import ControllerProcess, crashable_pipeline
from tests.integration.pipeline_env import Pipeline, User, start_pipeline, wait_link_up

# Held back in the controller before each subscription change: the window in which a relay that
# greeted a socket at once (before the change was in force) would lose messages.
SLOW_SUBSCRIBE_S = 0.3


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
    """Sockets sending numbered messages to one team as fast as acks come back."""

    def __init__(self, clients: Sequence[ChatClient], team: str, count: int) -> None:
        self.acks: list[Ack] = []
        self._tasks = [
            asyncio.create_task(self._send(c, team, n, count)) for n, c in enumerate(clients)
        ]

    async def _send(self, client: ChatClient, team: str, n: int, count: int) -> None:
        for i in range(count):
            self.acks.append(
                await client.send(team, f"s{n} m{i}", client_msg_id=f"s{n}-{i}", timeout=60)
            )
            await asyncio.sleep(random.uniform(0, 0.01))

    async def until_acked(self, count: int, timeout_s: float = 60) -> None:
        """Until ``count`` messages in all are acked (a sender's failure is raised here)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.acks) < count:
            for task in self._tasks:
                if task.done():
                    task.result()
            assert asyncio.get_running_loop().time() < deadline, f"{len(self.acks)} acked"
            await asyncio.sleep(0.02)

    async def done(self) -> set[str]:
        await asyncio.gather(*self._tasks)
        return {a.id for a in self.acks}


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


def _ids(listener: SyncedClient, team: str) -> set[str]:
    return {m["id"] for m in listener.timeline.messages(team)}


async def _team_of(pipe: Pipeline, size: int) -> tuple[list[User], str]:
    users = list(await asyncio.gather(*(pipe.user() for _ in range(size))))
    return users, await pipe.team(users)


async def test_sockets_greeted_while_a_subscription_is_slow_miss_nothing(
    slow_pipe: Pipeline,
) -> None:
    """Listeners joining mid-stream, while subscriptions take 0.3 s, end with every message."""
    users, team = await _team_of(slow_pipe, 8)
    senders = _Senders([await slow_pipe.connect(users[0], 0)], team, 150)
    listeners: list[SyncedClient] = []
    # Join one by one while messages flow, alternating relays: each join subscribes afresh
    # on a relay where nobody holds the channel yet, or joins one already held.
    for n, user in enumerate(users[1:]):
        listeners.append(await slow_pipe.synced(user, n % 2))
        await asyncio.sleep(0.1)
    acked = await senders.done()
    await _converged(listeners, team, acked)
    for listener in listeners:
        await listener.close()


async def test_a_cut_controller_stream_makes_its_sockets_resync(slow_pipe: Pipeline) -> None:
    """Cutting a relay's controller stream mid-stream ends in resync and no missing message."""
    users, team = await _team_of(slow_pipe, 4)
    listeners = [await slow_pipe.synced(u, 1) for u in users[1:]]
    senders = _Senders([await slow_pipe.connect(users[0], 0)], team, 200)
    relay = slow_pipe.relays[1].relay
    address = relay.link.addresses[0]
    for _ in range(3):
        await listeners[0].wait_for(lambda: len(listeners[0].timeline.messages(team)) > 20)
        relay.link.cut(address)
        await asyncio.sleep(0.3)
    acked = await senders.done()
    await _converged(listeners, team, acked)
    assert all(listener.resyncs >= 1 for listener in listeners)
    for listener in listeners:
        await listener.close()


@contextlib.asynccontextmanager
async def _crashing(
    settings: Settings, tmp_path: Path, after_commits: int
) -> AsyncIterator[tuple[Pipeline, ControllerProcess]]:
    env = {
        "TEST_CRASH_AFTER_COMMITS": str(after_commits),
        "TEST_CRASH_MARKER": str(tmp_path / "crashed"),
    }
    async with crashable_pipeline(
        settings, tmp_path, module="tests.integration.crashing_controller", env=env
    ) as crash_env:
        yield crash_env


@pytest.mark.parametrize("after_commits", [3, 12])
async def test_kill_9_between_commit_and_stream_write_is_covered_by_resync(
    settings: Settings, tmp_path: Path, after_commits: int
) -> None:
    """A batch committed but never streamed (SIGKILL in between) still reaches every listener."""
    async with _crashing(settings, tmp_path, after_commits) as (pipe, controller):
        users, team = await _team_of(pipe, 4)
        listeners = [await pipe.synced(u, n % 2) for n, u in enumerate(users[1:])]
        senders = _Senders([await pipe.connect(users[0], 0)], team, 200)
        assert await controller.wait_exit(60) == -9
        await controller.start()
        acked = await senders.done()
        await _converged(listeners, team, acked)
        assert all(listener.resyncs >= 1 for listener in listeners)
        for listener in listeners:
            await listener.close()


async def test_three_senders_three_listeners_one_order_across_a_controller_kill(
    settings: Settings, tmp_path: Path
) -> None:
    """Three senders, three listeners on two relays, a controller SIGKILL: one identical order."""
    async with crashable_pipeline(settings, tmp_path) as (pipe, controller):
        users, team = await _team_of(pipe, 6)
        listeners = [await pipe.synced(u, n % 2) for n, u in enumerate(users[3:])]
        senders = _Senders(
            [await pipe.connect(u, n % 2) for n, u in enumerate(users[:3])], team, 80
        )
        await listeners[0].wait_for(lambda: len(listeners[0].timeline.messages(team)) > 40)
        await controller.kill()
        await controller.start()
        acked = await senders.done()
        await _converged(listeners, team, acked)
        stored = await pipe.db.messages.find({"channel_id": team}, {"id": 1, "seq": 1}).to_list()
        assert [d["id"] for d in sorted(stored, key=lambda d: d["seq"])] == [
            m["id"] for m in listeners[0].timeline.messages(team)
        ]
        for listener in listeners:
            await listener.close()


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
    try:
        await wait_link_up(impatient)
        hold.close()
        url = f"ws://127.0.0.1:{impatient.port}/v1/ws"
        listener = SyncedClient(url, pipe.api_url, users[1].token)
        await listener.start()  # greeted while its subscription is still held back
        assert hold.held == 1
        senders = _Senders([sender], team, 60)
        await senders.until_acked(20)  # fanned out while the relay is not subscribed yet
        assert listener.resyncs == 0
        hold.open()
        acked = await senders.done()
        await _converged([listener], team, acked)
        assert listener.resyncs == 1
    finally:
        hold.open()
        if listener is not None:
            await listener.close()
        await sender.close()
        await impatient.stop()
