"""The life-cycle pass of a batch: changes, thread summaries and read state, in the log's order.

After the batch's messages are stored (``batch.py``), this pass goes through the batch's records
in consumption order and, with the messages' current state in memory:

* a change record is applied to its message (``changes.apply_change``): stored as a change
  document (the ``changes?after=`` feed) and fanned out as an ``update`` to the sockets that may
  see the message; one that no longer applies is dropped;
* a stored thread reply bumps its root's summary (an ``update`` with change ``thread`` at the
  reply's seq), and a deleted one takes one off it (the same, at the delete's seq);
* read state moves (``chatcore.unread``): a member's own message moves their read position to it
  unless an unread message of another conversation lies below it (``ReadState.after_own``),
  a DM is an unread DM and a mention for its recipient, ``<@id>`` in a team text a mention for a
  member (recounted by the new text when the text is edited), a read marker moves its member
  (and tells their sockets), a delete takes its message out of every count;

then writes everything (change documents first, then messages, then read documents), so that a
crash anywhere leaves the batch to be consumed again and every step to be redone idempotently:
a change at or below a message's ``last_change`` is not applied twice, read state moves forward
only and keeps DMs and mentions as sets of seqs. What it fans out follows each record in order.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from chatcore import schema as s
from chatcore.logging import get_logger
from chatcore.message_state import StoredMessage
from chatcore.messages import to_datetime
from chatcore.mongo import each_bounded
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import ChannelHead, DeletedMark, ReadState, mentioned
from services.controller.changes import (
    CHANGE_NAMES,
    DELETED,
    EDITED,
    THREAD,
    Outcome,
    Result,
    apply_change,
    thread_reply,
    thread_reply_deleted,
)
from services.controller.lifecycle_store import Members, MessageStates, change_doc
from services.controller.records import ChangeItem, Item, MessageItem, ReadItem
from services.controller.registry import Routed

_log = get_logger("controller.lifecycle")


class ReadStore(Protocol):
    """The part of ``chatcore.read_states.MongoReadStates`` the pass uses."""

    async def load_many(
        self, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, ReadState | None]]: ...

    async def save_many(self, states: Mapping[str, Mapping[str, ReadState]]) -> None: ...


@dataclass(slots=True)
class _Pass:
    """What the pass builds in memory before writing."""

    states: dict[str, StoredMessage]
    dirty: dict[str, StoredMessage] = field(default_factory=dict)
    change_docs: list[dict[str, object]] = field(default_factory=list)
    reads: dict[str, dict[str, ReadState]] = field(default_factory=dict)
    reads_dirty: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    extras: dict[int, list[Routed]] = field(default_factory=lambda: defaultdict(list))

    def read(self, channel: str, user: str) -> ReadState:
        return self.reads.get(channel, {}).get(user, ReadState())

    def set_read(self, channel: str, user: str, state: ReadState) -> None:
        if state != self.read(channel, user):
            self.reads.setdefault(channel, {})[user] = state
            self.reads_dirty[channel].add(user)


def _update(seq: int, change: str, state: StoredMessage) -> Routed:
    update = chat_pb2.MessageUpdate(seq=seq, change=change, message=state.to_proto())
    return Routed.to_channel(state.channel_id, chat_pb2.Delivery(update=update))


def _read_update(channel: str, user: str, seq: int) -> Routed:
    read = chat_pb2.ReadUpdate(channel_id=channel, user_id=user, seq=seq)
    return Routed.to_channel(channel, chat_pb2.Delivery(read=read))


# Read states this controller wrote or read since its partitions last moved. It is the only
# writer of its channels' read documents, so they stay true until a partition moves; each DM
# would otherwise cost two more database reads (sender and recipient), on FerretDB about a third
# of its work per message.
_KNOWN_READS_MAX = 200_000
# Changes that move mention counts: a delete takes its mentions back, an edit recounts them.
_RECOUNTING = frozenset((chat_pb2.CHANGE_KIND_DELETE, chat_pb2.CHANGE_KIND_EDIT))


def _counts_mentions(message: StoredMessage) -> bool:
    """Team texts count mentions by their text (a DM is one for its recipient, whatever it says)."""
    return message.is_broadcast and message.type == s.TEXT


class LifecyclePass:
    def __init__(self, messages: MessageStates, reads: ReadStore, members: Members) -> None:
        self.messages = messages
        self._messages = messages
        self._reads = reads
        self._members = members
        self._known_reads: dict[tuple[str, str], ReadState | None] = {}

    def partitions_moved(self) -> None:
        """Forget every read state held: another controller may write them from now on."""
        self._known_reads.clear()

    async def run(
        self,
        items: Sequence[Item],
        stored: Mapping[int, bool],
        counts: Mapping[int, int],
        buckets: Mapping[int, str],
        heads: dict[str, ChannelHead],
    ) -> dict[int, list[Routed]]:
        """Apply the batch's life-cycle effects; what to fan out after each record, by index.

        ``stored``: for each message index, whether it is stored (inserted now or before) and so
        has effects; ``counts`` and ``buckets``: each record's ``n`` and history bucket; ``heads``
        gets the deleted team messages. Raises ``Unavailable`` (retry the batch).
        """
        if not any(isinstance(i, ChangeItem | ReadItem) for i in items) and not any(
            stored.values()
        ):
            return {}
        wanted_ids = [i.change.message_id for i in items if isinstance(i, ChangeItem)]
        wanted_ids += [
            i.message.thread_id
            for n, i in enumerate(items)
            if isinstance(i, MessageItem) and i.message.thread_id and stored.get(n)
        ]
        states = await self._messages.by_id(wanted_ids) if wanted_ids else {}
        # A deleted reply's root is known once the reply is: a second read, for deletes only.
        roots = [
            state.thread_id
            for i in items
            if isinstance(i, ChangeItem) and i.change.kind == chat_pb2.CHANGE_KIND_DELETE
            if (state := states.get(i.change.message_id)) is not None
            and state.thread_id
            and state.thread_id not in states
        ]
        if roots:
            states = {**states, **await self._messages.by_id(roots)}
        work = _Pass(states=dict(states))
        mentions = await self._member_mentions(items, stored, states)
        await self._load_reads(work, items, stored, mentions)

        for index, item in enumerate(items):
            if isinstance(item, MessageItem) and stored.get(index):
                self._message(
                    work, index, item, counts[index], buckets.get(index, ""), heads, mentions
                )
            elif isinstance(item, ChangeItem):
                self._change(
                    work, index, item, counts.get(index, 0), buckets.get(index, ""), heads, mentions
                )
            elif isinstance(item, ReadItem):
                m = item.marker
                position = work.read(m.channel_id, m.user_id).advanced(m.seq, m.count)
                work.set_read(m.channel_id, m.user_id, position)
                if not m.joined:
                    # The position as it stands: a marker below it (late, or from a socket that
                    # saw less) must not tell the other sockets of a lower one.
                    work.extras[index].append(_read_update(m.channel_id, m.user_id, position.seq))

        await self._messages.insert_changes(work.change_docs)
        await self._messages.save(list(work.dirty.values()))
        saving = {
            channel: {u: work.reads[channel][u] for u in users}
            for channel, users in work.reads_dirty.items()
            if users
        }
        await self._reads.save_many(saving)
        for channel, by_user in saving.items():
            self._known_reads.update(((channel, u), st) for u, st in by_user.items())
        return dict(work.extras)

    async def _member_mentions(
        self, items: Sequence[Item], stored: Mapping[int, bool], states: Mapping[str, StoredMessage]
    ) -> dict[tuple[str, str], bool]:
        """Whether each (channel, user) a team text names is a member (mentions of others are
        ignored: they must not start a read state in a team the user is not in)."""
        asked: set[tuple[str, str]] = set()
        for index, item in enumerate(items):
            if isinstance(item, MessageItem) and stored.get(index):
                m = item.message
                if m.to == s.BROADCAST and m.type == chat_pb2.MESSAGE_TYPE_TEXT:
                    asked.update((m.channel_id, u) for u in mentioned(m.data) if u != m.sender)
            elif isinstance(item, ChangeItem) and item.change.kind in _RECOUNTING:
                state = states.get(item.change.message_id)
                if state is not None:
                    asked.update((state.channel_id, u) for u in state.mentioned_users())
                    asked.update((state.channel_id, u) for u in state.unmentioned)
                    if item.change.kind == chat_pb2.CHANGE_KIND_EDIT and _counts_mentions(state):
                        new = mentioned(item.change.data)
                        asked.update((state.channel_id, u) for u in new if u != state.sender)
        pairs = sorted(asked)
        answers = await each_bounded(lambda pair: self._members.is_member(*pair), pairs)
        return dict(zip(pairs, answers, strict=True))

    async def _load_reads(
        self,
        work: _Pass,
        items: Sequence[Item],
        stored: Mapping[int, bool],
        mentions: Mapping[tuple[str, str], bool],
    ) -> None:
        users: dict[str, set[str]] = defaultdict(set)
        for (channel, user), member in mentions.items():
            if member:
                users[channel].add(user)
        for index, item in enumerate(items):
            if isinstance(item, MessageItem) and stored.get(index):
                m = item.message
                users[m.channel_id].add(m.sender)
                if m.to != s.BROADCAST:
                    users[m.channel_id].add(m.to)
            elif isinstance(item, ReadItem):
                users[item.marker.channel_id].add(item.marker.user_id)
            elif isinstance(item, ChangeItem) and item.change.kind == chat_pb2.CHANGE_KIND_DELETE:
                state = work.states.get(item.change.message_id)
                if state is not None and not state.is_broadcast:
                    users[state.channel_id].add(state.to)
        known = self._known_reads
        cached = {(c, u): known[(c, u)] for c in users for u in users[c] if (c, u) in known}
        missing = {c: [u for u in sorted(users[c]) if (c, u) not in cached] for c in sorted(users)}
        loaded = await self._reads.load_many({c: us for c, us in missing.items() if us})
        for channel, members in users.items():
            found = loaded.get(channel, {})
            held = {u: found[u] if u in found else cached[(channel, u)] for u in members}
            work.reads[channel] = {u: st for u, st in held.items() if st is not None}
        if len(known) > _KNOWN_READS_MAX:
            known.clear()
        for channel, found in loaded.items():
            known.update(((channel, u), st) for u, st in found.items())

    def _message(
        self,
        work: _Pass,
        index: int,
        item: MessageItem,
        count: int,
        bucket: str,
        heads: dict[str, ChannelHead],
        mentions: Mapping[tuple[str, str], bool],
    ) -> None:
        m, seq = item.message, item.record.offset
        channel = m.channel_id
        to = None if m.to == s.BROADCAST else m.to
        # Others' deleted team messages below a DM are not unread: they must not hold it.
        gone = () if to is None else heads.get(channel, ChannelHead()).deleted
        others_gone = tuple(d for d in gone if d.sender != m.sender)
        mine = work.read(channel, m.sender).after_own(seq, count, to=to, deleted=others_gone)
        work.set_read(channel, m.sender, mine)
        if to is not None:
            if to != m.sender:
                work.set_read(channel, to, work.read(channel, to).with_dm(seq, m.sender))
        elif m.type == chat_pb2.MESSAGE_TYPE_TEXT:
            for user in mentioned(m.data):
                if user != m.sender and mentions.get((channel, user)):
                    work.set_read(channel, user, work.read(channel, user).with_mention(seq))
        if m.thread_id:
            result = thread_reply(work.states.get(m.thread_id), seq, to_datetime(m.ts_ms))
            self._thread(work, index, result, seq, bucket, count)

    def _thread(
        self, work: _Pass, index: int, result: Result, seq: int, bucket: str, count: int
    ) -> None:
        """A root's thread summary changed at ``seq`` (stored once, fanned out each time)."""
        if result.state is None or result.outcome is Outcome.DROPPED:
            return
        if result.outcome is Outcome.APPLIED:
            self._changed(work, result.state, THREAD, seq, bucket, count)
        work.extras[index].append(_update(seq, THREAD, result.state))

    def _change(
        self,
        work: _Pass,
        index: int,
        item: ChangeItem,
        count: int,
        bucket: str,
        heads: dict[str, ChannelHead],
        mentions: Mapping[tuple[str, str], bool],
    ) -> None:
        change, seq = item.change, item.record.offset
        name = CHANGE_NAMES[change.kind]
        before = work.states.get(change.message_id)
        result = apply_change(before, change, seq)
        if result.outcome is Outcome.DROPPED or result.state is None:
            if logging.getLogger("controller.lifecycle").isEnabledFor(logging.DEBUG):
                _log.debug(
                    "change_dropped",
                    channel_id=change.channel_id,
                    seq=seq,
                    message_id=change.message_id,
                    reason=result.reason,
                )
            return
        state = result.state
        if result.outcome is Outcome.APPLIED:
            if name == EDITED and before is not None and _counts_mentions(before):
                state = self._remention(work, before, state, mentions)
            self._changed(work, state, name, seq, bucket, count)
            if name == DELETED and before is not None:
                self._forget(work, before, heads)
        elif name == DELETED and state.deleted:
            # Applied before, but its effects on counts may not have been stored: they are held
            # until a checkpoint (a crash, a move, a failed write lose them) while the tombstone
            # is written at once. Taking them again changes nothing when they were stored.
            self._forget(work, state, heads)
        elif name == EDITED and _counts_mentions(state) and not state.deleted:
            # The same for an edit: whom the text names now is counted again, and whom edits
            # took the mention from loses it again (neither changes anything when it was stored).
            self._mention_again(work, state, mentions)
        work.extras[index].append(_update(seq, name, state))
        if name == DELETED and state.deleted and state.thread_id:
            # After the delete's own update, as a reply's ``thread`` change follows the reply.
            self._thread(
                work,
                index,
                thread_reply_deleted(work.states.get(state.thread_id), seq),
                seq,
                bucket,
                count,
            )

    def _changed(
        self, work: _Pass, state: StoredMessage, change: str, seq: int, bucket: str, count: int
    ) -> None:
        work.states[state.id] = state
        work.dirty[state.id] = state
        work.change_docs.append(change_doc(change, seq, bucket, count, state))

    def _remention(
        self,
        work: _Pass,
        before: StoredMessage,
        after: StoredMessage,
        mentions: Mapping[tuple[str, str], bool],
    ) -> StoredMessage:
        """An edited team text counts as a mention for whom its new text names: a member no
        longer named loses it, a member newly named gains it while the message is unread to them
        (``with_mention`` ignores a message at or below their read position). Returns the message
        with its counted mentions recorded, which a later edit or delete starts from."""
        channel, seq = before.channel_id, before.seq
        old = set(before.mentioned_users())
        new = [u for u in mentioned(after.data) if u != after.sender]
        gone = sorted(old.difference(new))
        for user in gone:
            if user in work.reads.get(channel, {}):
                work.set_read(channel, user, work.read(channel, user).without(seq))
        for user in new:
            if user not in old and mentions.get((channel, user)):
                work.set_read(channel, user, work.read(channel, user).with_mention(seq))
        # Only members whose mention counted: made-up ids swapped in and out by edits would
        # otherwise grow the list, and a lookup per entry, without bound.
        taken = [u for u in gone if mentions.get((channel, u))]
        dropped = [u for u in (*before.unmentioned, *taken) if u not in new]
        return replace(after, mentions=tuple(new), unmentioned=tuple(dict.fromkeys(dropped)))

    def _mention_again(
        self, work: _Pass, state: StoredMessage, mentions: Mapping[tuple[str, str], bool]
    ) -> None:
        """An edit found applied already: its effect on read state is redone from the stored
        message (idempotent: ``with_mention`` and ``without`` change nothing a second time)."""
        channel, seq = state.channel_id, state.seq
        for user in state.mentioned_users():
            if user != state.sender and mentions.get((channel, user)):
                work.set_read(channel, user, work.read(channel, user).with_mention(seq))
        for user in state.unmentioned:
            if user in work.reads.get(channel, {}):
                work.set_read(channel, user, work.read(channel, user).without(seq))

    def _forget(self, work: _Pass, message: StoredMessage, heads: dict[str, ChannelHead]) -> None:
        """A deleted message stops counting: as a team message, a DM, and a mention."""
        channel = message.channel_id
        if message.is_broadcast:
            head = heads.get(channel, ChannelHead())
            heads[channel] = head.with_deleted(DeletedMark(message.seq, message.sender))
            users = message.mentioned_users()
        else:
            users = [message.to]
        # Whom an edit took the mention from: taken again, in case that was never stored.
        users = [*users, *message.unmentioned]
        for user in users:
            if user in work.reads.get(channel, {}):
                work.set_read(channel, user, work.read(channel, user).without(message.seq))
