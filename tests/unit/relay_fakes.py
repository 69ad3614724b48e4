"""An in-memory stand-in for what the relay's gate asks the controllers (``gate.Authority``)."""

from __future__ import annotations

from chatcore.proto.chat.v1 import chat_pb2


class FakeAuthority:
    """Member lists, attachment checks and stored messages from dicts; subclasses slow or count
    the calls they care about."""

    def __init__(
        self,
        members: dict[str, list[str]] | None = None,
        messages: dict[tuple[str, str], chat_pb2.GetMessageReply] | None = None,
    ) -> None:
        self.members_of = members or {}
        self.messages = messages or {}

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        users = self.members_of.get(channel_id)
        if users is None:
            return chat_pb2.GetMembersReply(found=False)
        return chat_pb2.GetMembersReply(user_ids=users, active=True, found=True)

    async def check_attachment(
        self,
        attachment_id: str,
        channel_id: str,
        kind: chat_pb2.MessageType.ValueType,
        sender: str,
    ) -> chat_pb2.CheckAttachmentReply:
        return chat_pb2.CheckAttachmentReply(ok=True)

    async def message(self, channel_id: str, message_id: str) -> chat_pb2.GetMessageReply:
        return self.messages.get((channel_id, message_id), chat_pb2.GetMessageReply(found=False))
