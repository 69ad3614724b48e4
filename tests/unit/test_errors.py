"""Error families at the boundaries: a misconfigured service is never the client's bad input."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from chatcore.errors import ChatError, ConfigError, InvalidInput
from chatcore.http import Health, make_app
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.directory import TeamMembers
from services.controller.metrics import ControllerMetrics
from services.controller.registry import SubscriptionRegistry
from services.controller.servicer import ControllerServicer
from services.controller.streams import StreamHub
from services.relay.frames import frame_code
from tests.unit.controller_fakes import MemoryDirectory

TEAM = "t" * 32


class _Misconfigured(MemoryDirectory):
    """A directory whose configuration turns out to be wrong when it is first used."""

    async def members(self, channel_id: str) -> TeamMembers | None:
        raise ConfigError("CHAT_MONGO_URL names no database")


class _Aborted(Exception):
    pass


class _Context:
    """The part of a gRPC servicer context the servicer uses: metadata and ``abort``."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise _Aborted(details)


def _caught_as_invalid(exc: ChatError) -> bool:
    """Whether a boundary's ``except InvalidInput`` takes this error."""
    try:
        raise exc
    except InvalidInput:
        return True
    except ChatError:
        return False


async def _misconfigured(_request: web.Request) -> web.Response:
    raise ConfigError("CHAT_S3_ENDPOINT is not a URL")


async def test_a_config_error_is_never_answered_as_bad_input() -> None:
    """ConfigError escapes ``except InvalidInput``; HTTP says 500, the relay ``unavailable``,
    gRPC INTERNAL: never 422, ``invalid`` or INVALID_ARGUMENT."""
    assert _caught_as_invalid(InvalidInput("bad id"))
    assert not _caught_as_invalid(ConfigError("CHAT_X is malformed"))

    assert frame_code(ConfigError("CHAT_X is malformed")) == "unavailable"

    app = make_app(registry=CollectorRegistry(), health=Health({}), max_body_bytes=2048)
    app.router.add_get("/v1/misconfigured", _misconfigured)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/v1/misconfigured")
        assert resp.status == 500
        error = (await resp.json())["error"]
        # The operator's problem is in the log; the client learns nothing of the configuration.
        assert (error["code"], error["message"]) == ("internal", "internal server error")

    hub = StreamHub(
        SubscriptionRegistry(max_batch_bytes=1 << 20),
        capacity=2,
        metrics=ControllerMetrics.create(CollectorRegistry()),
    )
    context = _Context()
    with pytest.raises(_Aborted):
        await ControllerServicer(hub, _Misconfigured()).GetMembers(
            chat_pb2.GetMembersRequest(channel_id=TEAM), cast(Any, context)
        )
    assert context.code == grpc.StatusCode.INTERNAL
