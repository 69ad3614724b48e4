"""A small async client for the chat backend: log in, connect, send with acks, receive, resume.

from chatclient import ChatClient, login

session = await login("http://127.0.0.1:8080", "ada@example.com", "correct horse battery")
async with await ChatClient.connect("ws://127.0.0.1:8080/v1/ws", session.access_token) as chat:
    ack = await chat.send(team_id, "hello")
    event = await chat.receive()
"""

from chatclient.client import Ack, ChatClient, SendFailed
from chatclient.http import ApiError, AuthSession, history, login, register

__all__ = [
    "Ack",
    "ApiError",
    "AuthSession",
    "ChatClient",
    "SendFailed",
    "history",
    "login",
    "register",
]
