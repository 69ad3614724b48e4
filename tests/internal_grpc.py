"""A Controller stub that sends the internal token on every call, as relays do."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from grpc import aio

from chatcore.internal_auth import call_metadata
from chatcore.proto.chat.v1 import chat_pb2_grpc


class _AuthedStub:
    def __init__(self, stub: chat_pb2_grpc.ControllerAsyncStub, token: str) -> None:
        self._stub = stub
        self._auth = call_metadata(token)

    def __getattr__(self, name: str) -> object:
        method = getattr(self._stub, name)

        def call(*args: object, **kwargs: object) -> object:
            extra = cast(Iterable[object], kwargs.pop("metadata", None) or ())
            return method(*args, metadata=(*tuple(extra), self._auth), **kwargs)

        return call


def authed_stub(channel: aio.Channel, token: str) -> chat_pb2_grpc.ControllerAsyncStub:
    """The generated stub over ``channel``, every call carrying ``token``."""
    stub: chat_pb2_grpc.ControllerAsyncStub = chat_pb2_grpc.ControllerStub(channel)
    return cast("chat_pb2_grpc.ControllerAsyncStub", _AuthedStub(stub, token))
