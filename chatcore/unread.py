"""Read state and unread counts without scanning a channel (DESIGN 5b "Read state and mentions").

The controller that owns a channel's partition counts the channel's team messages as it stores
them (each message records the count up to itself), and keeps one read document per member: the
last seq they read with the count there, and the seqs of the DMs to them and of the mentions of
them since. What a member has not read is then a subtraction, minus the deleted team messages
since (the channel's head remembers the most recent ones), plus their unread DMs.

Rules (docs/api.md says them to clients):

* Unread: visible, undeleted messages from others with ``seq`` above the read position; thread
  replies count like any message; a member's own messages never count. A member's own message
  moves their read position to it (as in Slack and Mattermost) unless that would pass a message
  from someone else in another conversation of the team, still unread: a DM to them below a team
  message of theirs, anything unread below a DM of theirs (``ReadState.after_own``). The position
  then stays, and their own team message is remembered so that it does not count.
* Mentions: a DM to the member, or ``<@user_id>`` in a team text, counted when it is stored and
  recounted by the new text when the text is edited.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

# What one read document and one channel head keep at most: beyond, the oldest are forgotten
# (counts then say "at least").
MARKS_MAX = 1000
DELETED_KEPT = 200
# Distinct users one message may mention (more are ignored).
MENTIONS_PER_MESSAGE_MAX = 20
# A position before every record: seqs are Kafka offsets and start at 0, so 0 is a real message
# (the first record of each partition) and cannot also mean "nothing yet".
BEFORE_FIRST = -1

_MENTION_RE = re.compile(r"<@([0-9a-f]{32})>")


def mentioned(text: str) -> list[str]:
    """The user ids ``<@user_id>`` names in a text, in order, each once, at most 20."""
    if "<@" not in text:
        return []  # most texts: a substring test, not a regular-expression scan
    found: list[str] = []
    for match in _MENTION_RE.finditer(text):
        user = match.group(1)
        if user not in found:
            found.append(user)
            if len(found) == MENTIONS_PER_MESSAGE_MAX:
                break
    return found


@dataclass(frozen=True, slots=True)
class DeletedMark:
    """A deleted team message: unread counts since before it skip it (unless it was the
    reader's own, which never counted)."""

    seq: int
    sender: str


@dataclass(frozen=True, slots=True)
class ChannelHead:
    """The channel's counters: team messages stored (``count``, the last one counted at
    ``count_seq``), the last seq stored, and the most recent deleted team messages. Seqs are
    ``BEFORE_FIRST`` while nothing is counted or stored."""

    count: int = 0
    count_seq: int = BEFORE_FIRST
    last_seq: int = BEFORE_FIRST
    deleted: tuple[DeletedMark, ...] = ()

    def with_deleted(self, mark: DeletedMark) -> ChannelHead:
        if any(d.seq == mark.seq for d in self.deleted):
            return self
        return replace(self, deleted=(*self.deleted, mark)[-DELETED_KEPT:])


def _add(marks: tuple[int, ...], seq: int) -> tuple[int, ...]:
    if seq in marks:
        return marks
    return tuple(sorted((*marks, seq)))[-MARKS_MAX:]


@dataclass(frozen=True, slots=True)
class ReadState:
    """One member's read position in one channel (``BEFORE_FIRST``: read nothing yet) and what
    arrived for them since."""

    seq: int = BEFORE_FIRST
    count: int = 0
    dms: tuple[int, ...] = ()
    mentions: tuple[int, ...] = ()
    # The member's own team messages above the position (it stayed below an unread DM): the
    # channel's count has them, and they are not unread to their sender.
    own: tuple[int, ...] = ()
    # Who sent each DM of ``dms`` (seq, sender), where known: a reply in one DM conversation
    # reads that conversation only. Documents written before it have none (sender unknown).
    dm_from: tuple[tuple[int, str], ...] = ()

    def advanced(self, seq: int, count: int) -> ReadState:
        """Read up to ``seq`` (where the channel held ``count`` team messages); forward only."""
        if seq <= self.seq:
            return self
        return ReadState(
            seq=seq,
            count=max(count, self.count),
            dms=tuple(m for m in self.dms if m > seq),
            mentions=tuple(m for m in self.mentions if m > seq),
            own=tuple(m for m in self.own if m > seq),
            dm_from=tuple(d for d in self.dm_from if d[0] > seq),
        )

    def after_own(
        self, seq: int, count: int, *, to: str | None, deleted: tuple[DeletedMark, ...] = ()
    ) -> ReadState:
        """The member sent the message at ``seq`` (``count`` team messages up to it, itself
        included when it is a team message, ``to`` None; else a DM to ``to``). Writing in a
        conversation reads that conversation, not the team's others: the position moves to the
        message only if nothing unread below it is in another conversation — no DM below a
        team message; below a DM, no team message and no DM from anyone but ``to``. Else it
        stays, and a team message is kept in ``own`` so that it does not count. ``deleted``: the
        channel's deleted team messages from others (the head's), which no longer count."""
        if seq <= self.seq:
            return self
        if to is None:
            elsewhere = any(d < seq for d in self.dms)
        else:
            gone = sum(1 for d in deleted if self.seq < d.seq < seq)
            team_below = count - self.count - sum(1 for o in self.own if o < seq) - gone
            senders = dict(self.dm_from) if self.dms else {}
            elsewhere = team_below > 0 or any(d < seq and senders.get(d) != to for d in self.dms)
        # ``own`` keeps MARKS_MAX at most: past that (a thousand posts over one unopened DM)
        # the position moves after all, rather than counting the member's own messages.
        if not elsewhere or (to is None and len(self.own) >= MARKS_MAX):
            return self.advanced(seq, count)
        if to is None:
            return replace(self, own=_add(self.own, seq))
        return self

    def with_dm(self, seq: int, sender: str = "") -> ReadState:
        """A DM to the member at ``seq`` (also a mention), from ``sender`` when known."""
        if seq <= self.seq:
            return self
        dms = _add(self.dms, seq)
        dm_from = self.dm_from
        if sender and seq in dms and all(d[0] != seq for d in dm_from):
            dm_from = tuple(sorted((*dm_from, (seq, sender))))
        kept = set(dms)
        return replace(
            self,
            dms=dms,
            mentions=_add(self.mentions, seq),
            dm_from=tuple(d for d in dm_from if d[0] in kept),
        )

    def with_mention(self, seq: int) -> ReadState:
        if seq <= self.seq:
            return self
        return replace(self, mentions=_add(self.mentions, seq))

    def without(self, seq: int) -> ReadState:
        """The message at ``seq`` was deleted: it no longer counts."""
        return replace(
            self,
            dms=tuple(m for m in self.dms if m != seq),
            mentions=tuple(m for m in self.mentions if m != seq),
            dm_from=tuple(d for d in self.dm_from if d[0] != seq),
        )


@dataclass(frozen=True, slots=True)
class Unread:
    count: int
    mentions: int
    last_read_seq: int

    def public(self) -> dict[str, int]:
        return {
            "count": self.count,
            "mentions": self.mentions,
            "last_read_seq": self.last_read_seq,
        }


def unread(head: ChannelHead, read: ReadState, user_id: str) -> Unread:
    """What ``user_id`` has not read in the channel."""
    team = head.count - read.count - len(read.own)
    gone = sum(1 for d in head.deleted if d.seq > read.seq and d.sender != user_id)
    # The head may be read a moment older than the read document (a hello reuses it for
    # half a second): the team texts that mention the user are unread team messages too, so a
    # badge never says "@1" over "0 unread".
    mentioning = len(set(read.mentions).difference(read.dms))
    return Unread(
        count=max(0, team - gone, mentioning) + len(read.dms),
        mentions=len(read.mentions),
        last_read_seq=read.seq,
    )


def unread_all(
    heads: dict[str, ChannelHead],
    reads: dict[str, ReadState],
    user_id: str,
    channels: Iterable[str],
) -> dict[str, Unread]:
    """``unread`` per channel (a channel without a head or a read document counts from zero)."""
    return {
        c: unread(heads.get(c, ChannelHead()), reads.get(c, ReadState()), user_id) for c in channels
    }
