"""A small async client for the chat backend: log in, connect, send with acks, receive, resume.

from chatclient import ChatClient, login

session = await login("http://127.0.0.1:8080", "ada@example.com", "correct horse battery")
async with await ChatClient.connect("ws://127.0.0.1:8080/v1/ws", session.access_token) as chat:
    ack = await chat.send(team_id, "hello")
    event = await chat.receive()

``ChatClient`` is the bare socket. ``SyncedClient`` follows the whole contract (resume through
the changes feed after ``hello``, on ``resync`` and after reconnects, dedupe) and keeps a gap-free
``Timeline`` with edits, deletes, reactions and threads applied; ``chatclient.http`` has the REST
calls (edit, delete, react, mark_read, presence, thread, changes).
"""

from chatclient.client import Ack, ChatClient, SendFailed
from chatclient.http import (
    ApiError,
    AuthSession,
    changes_page,
    history,
    history_page,
    login,
    logout,
    register,
)
from chatclient.synced import SyncedClient
from chatclient.timeline import Timeline

__all__ = [
    "Ack",
    "ApiError",
    "AuthSession",
    "ChatClient",
    "SendFailed",
    "SyncedClient",
    "Timeline",
    "changes_page",
    "history",
    "history_page",
    "login",
    "logout",
    "register",
]
