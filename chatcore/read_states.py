"""Members' read documents (``reads``) on MongoDB or FerretDB (``chatcore.unread.ReadState``).

The controller that owns a channel's partition is the only writer of that channel's documents,
so it reads, changes in memory and replaces them without races; the management service and the
controllers' membership answers only read them, by user.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import (
    WRITE_COMMANDS_IN_FLIGHT,
    Document,
    bulk_write_chunked,
    database_unavailable,
    each_bounded,
    each_keyed,
)
from chatcore.single_flight import SingleFlight
from chatcore.unread import BEFORE_FIRST, ChannelHead, ReadState, Unread, unread_all


def read_from_doc(doc: Mapping[str, Any] | None) -> ReadState:
    if doc is None:
        return ReadState()
    return ReadState(
        seq=int(doc.get(s.READ_SEQ, BEFORE_FIRST)),
        count=int(doc.get(s.READ_COUNT, 0)),
        dms=tuple(int(x) for x in doc.get(s.READ_DMS, ())),
        mentions=tuple(int(x) for x in doc.get(s.READ_MENTIONS, ())),
        own=tuple(int(x) for x in doc.get(s.READ_OWN, ())),
        # Documents, not pairs: FerretDB 1.24 stores no array inside an array.
        dm_from=tuple(
            (int(d[s.READ_DM_SEQ]), str(d[s.READ_DM_SENDER]))
            for d in doc.get(s.READ_DM_FROM, ())
            if isinstance(d, Mapping) and s.READ_DM_SEQ in d and s.READ_DM_SENDER in d
        ),
    )


class MongoReadStates:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._reads = db[s.READS]

    async def of_user(self, user_id: str) -> dict[str, ReadState]:
        """The user's read state per channel (channels never read are absent)."""
        try:
            docs = await self._reads.find({s.READ_USER_ID: user_id}).to_list(length=None)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return {str(d[s.READ_CHANNEL_ID]): read_from_doc(d) for d in docs}

    async def load(self, channel_id: str, users: Iterable[str]) -> dict[str, ReadState | None]:
        """Each user's read state in the channel; None for one never written."""
        return (await self.load_many({channel_id: users})).get(channel_id, {})

    async def load_many(
        self, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, ReadState | None]]:
        """``load`` for several channels, a bounded number of lookups in flight at once."""
        pairs = [(c, u) for c, users in wanted.items() for u in dict.fromkeys(users)]

        async def one(pair: tuple[str, str]) -> ReadState | None:
            doc = await self._reads.find_one({s.ID: s.read_id(*pair)})
            return None if doc is None else read_from_doc(doc)

        try:
            found = await each_bounded(one, pairs)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        out: dict[str, dict[str, ReadState | None]] = {c: {} for c in wanted}
        for (channel, user), state in zip(pairs, found, strict=True):
            out[channel][user] = state
        return out

    async def save(self, channel_id: str, states: Mapping[str, ReadState]) -> None:
        """Replace each user's document (the channel's one writer calls this)."""
        await self.save_many({channel_id: states})

    async def save_many(
        self,
        states: Mapping[str, Mapping[str, ReadState]],
        *,
        in_flight: int = WRITE_COMMANDS_IN_FLIGHT,
    ) -> None:
        """``save`` for several channels, a few documents per command (see
        ``chatcore.mongo.WRITES_PER_COMMAND``), ``in_flight`` commands at once."""
        replaces = [
            ReplaceOne(
                {s.ID: s.read_id(channel_id, user_id)},
                {
                    s.READ_CHANNEL_ID: channel_id,
                    s.READ_USER_ID: user_id,
                    s.READ_SEQ: state.seq,
                    s.READ_COUNT: state.count,
                    s.READ_DMS: list(state.dms),
                    s.READ_MENTIONS: list(state.mentions),
                    s.READ_OWN: list(state.own),
                    s.READ_DM_FROM: [
                        {s.READ_DM_SEQ: seq, s.READ_DM_SENDER: sender}
                        for seq, sender in state.dm_from
                    ],
                },
                upsert=True,
            )
            for channel_id, by_user in states.items()
            for user_id, state in by_user.items()
        ]
        if not replaces:
            return
        try:
            await bulk_write_chunked(self._reads, replaces, in_flight)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


class UnreadReader:
    """What a user has not read in some channels: their read documents (one query) and the
    channels' heads (one lookup each, shared by everyone asking for the same channel meanwhile,
    and for ``head_max_age_s`` after: a storm of a team's members connecting reads its head a
    few times, not once per member)."""

    def __init__(self, db: AsyncDatabase[Document], *, head_max_age_s: float = 0.0) -> None:
        heads = MongoChannelHeads(db)
        self._heads = SingleFlight(heads.head, max_age_s=head_max_age_s)
        self._reads = MongoReadStates(db)

    async def _heads_of(self, channel_ids: Sequence[str]) -> dict[str, ChannelHead]:
        return await each_keyed(self._heads.get, channel_ids)

    async def unread(self, user_id: str, channel_ids: Sequence[str]) -> dict[str, Unread]:
        if not channel_ids:
            return {}
        heads, reads = await asyncio.gather(
            self._heads_of(channel_ids), self._reads.of_user(user_id)
        )
        return unread_all(heads, reads, user_id, channel_ids)
