"""In-memory stand-ins for the management service's stores, user directory, Kafka, S3 and clamd.

``MemoryTeamStore`` checks the same preconditions as the MongoDB filters, so the domain's
read-decide-write loop behaves as it does against the database; ``interfere`` lets a test change
the team between the domain's read and its write, as a concurrent request would. The stores run
the same contract tests as their MongoDB implementations (tests/*/test_management_store_contract).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from chatcore.errors import Conflict, Unavailable
from chatcore.kafka import EVENTS_TOPIC
from chatcore.leases import Leases, local_leases
from chatcore.memberships import MembershipEntry
from chatcore.message_state import StoredMessage
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.schema import BROADCAST, PENDING, READY, TEXT, WITHDRAWN
from chatcore.unread import ChannelHead, Unread
from services.management.attachment_store import Attachment
from services.management.clamd import ScanResult
from services.management.events import PROTO_CHANGE, Announcer, EventMetrics, OutboxPublisher
from services.management.membership_index import ACTIVATION
from services.management.model import MembershipChange, OutboxEvent, Team, TeamChanges
from services.management.objects import PresignedPost, StoredObject
from services.management.store import Carrier, ChangeEntry, Walk, entry_order
from services.management.teams import TeamMetrics, TeamService


class MemoryTeamStore:
    def __init__(self) -> None:
        # Emptied teams (their last member left) stay here until their outbox is drained.
        self.teams: dict[str, Team] = {}
        self.outboxes: dict[str, list[OutboxEvent]] = {}
        self.writes = 0
        # Called once before the next conditional write (then cleared): a concurrent change.
        self.interfere: Callable[[MemoryTeamStore], None] | None = None
        # The next N conditional writes match nothing, as if a concurrent change came and went.
        self.fail_next_writes = 0
        # Every method called, in order: proves that rejected input never reached the store.
        self.calls: list[str] = []

    async def insert(self, team: Team, event: OutboxEvent) -> None:
        self.calls.append("insert")
        if team.id in self.teams:
            raise Conflict("a team with this id exists")
        self.teams[team.id] = team
        self.outboxes[team.id] = [event]

    async def get(self, team_id: str) -> Team | None:
        self.calls.append("get")
        team = self.teams.get(team_id)
        return team if team is not None and team.members else None

    async def list_for_member(
        self, user_id: str, *, tag: str | None, after_id: str | None, limit: int
    ) -> list[Team]:
        self.calls.append("list_for_member")
        found = sorted(
            (
                t
                for t in self.teams.values()
                if user_id in t.members
                and (tag is None or tag in t.meta_tags)
                and (after_id is None or t.id > after_id)
            ),
            key=lambda t: t.id,
        )
        return found[:limit]

    def _before_write(self) -> bool:
        """Run the interference hook; False when this write is to miss."""
        hook, self.interfere = self.interfere, None
        if hook is not None:
            hook(self)
        if self.fail_next_writes > 0:
            self.fail_next_writes -= 1
            return False
        return True

    def _write(
        self,
        team_id: str,
        precondition: Callable[[Team], bool],
        change: Callable[[Team], Team],
        event: OutboxEvent | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> tuple[Team, Team] | None:
        if not self._before_write():
            return None
        team = self.teams.get(team_id)
        if team is None or not team.members or not precondition(team):
            return None
        after = change(team)
        self.teams[team_id] = after
        self.outboxes.setdefault(team_id, []).extend((event,) if event is not None else events)
        self.writes += 1
        return team, after

    async def update_settings(
        self,
        team_id: str,
        *,
        actor: str,
        changes: TeamChanges,
        as_super_admin: bool,
        events: Sequence[OutboxEvent] = (),
        as_read: Mapping[str, Any] | None = None,
    ) -> Team | None:
        self.calls.append("update_settings")
        values = changes.fields()
        if changes.meta_tags is not None:
            values["meta_tags"] = changes.meta_tags

        def allowed(t: Team) -> bool:
            stored = {**dataclasses.asdict(t), "meta_tags": list(t.meta_tags)}
            if any(stored[field] != value for field, value in (as_read or {}).items()):
                return False
            return t.super_admin == actor if as_super_admin else actor in t.admins

        result = self._write(
            team_id, allowed, lambda t: dataclasses.replace(t, **values), events=events
        )
        return result[0] if result else None

    async def add_member(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        self.calls.append("add_member")
        result = self._write(
            team_id,
            lambda t: actor in t.admins and user_id not in t.members,
            lambda t: dataclasses.replace(t, members=(*t.members, user_id)),
            event,
        )
        return result[1] if result else None

    async def remove_member(
        self, team_id: str, *, actor: str, user_id: str, as_super_admin: bool, event: OutboxEvent
    ) -> Team | None:
        self.calls.append("remove_member")

        def allowed(t: Team) -> bool:
            if actor == user_id or user_id not in t.members:
                return False
            if as_super_admin:
                return t.super_admin == actor
            return actor in t.admins and user_id not in t.admins

        result = self._write(team_id, allowed, lambda t: _without(t, user_id), event)
        return result[1] if result else None

    async def add_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        self.calls.append("add_admin")
        result = self._write(
            team_id,
            lambda t: t.super_admin == actor and user_id in t.members and user_id not in t.admins,
            lambda t: dataclasses.replace(t, admins=(*t.admins, user_id)),
            event,
        )
        return result[1] if result else None

    async def remove_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        self.calls.append("remove_admin")
        result = self._write(
            team_id,
            lambda t: actor != user_id and t.super_admin == actor and user_id in t.admins,
            lambda t: dataclasses.replace(t, admins=tuple(a for a in t.admins if a != user_id)),
            event,
        )
        return result[1] if result else None

    async def transfer_super_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        self.calls.append("transfer_super_admin")
        result = self._write(
            team_id,
            lambda t: t.super_admin == actor and user_id in t.members,
            lambda t: dataclasses.replace(
                t,
                super_admin=user_id,
                admins=t.admins if user_id in t.admins else (*t.admins, user_id),
            ),
            event,
        )
        return result[1] if result else None

    async def leave(self, team_id: str, *, user_id: str, event: OutboxEvent) -> bool:
        self.calls.append("leave")
        result = self._write(
            team_id,
            lambda t: user_id in t.members and t.super_admin != user_id,
            lambda t: _without(t, user_id),
            event,
        )
        return result is not None

    async def close_if_sole_member(self, team_id: str, *, user_id: str, event: OutboxEvent) -> bool:
        self.calls.append("close_if_sole_member")
        result = self._write(
            team_id,
            lambda t: t.super_admin == user_id and t.members == (user_id,),
            lambda t: dataclasses.replace(t, members=(), admins=(), super_admin=""),
            event,
        )
        return result is not None

    async def outbox(self, team_id: str) -> tuple[OutboxEvent, ...]:
        self.calls.append("outbox")
        return tuple(self.outboxes.get(team_id, ()))

    async def acknowledge(
        self, team_id: str, events: Sequence[OutboxEvent], *, fence: int | None = None
    ) -> None:
        self.calls.append("acknowledge")
        if team_id in self.outboxes:
            self.outboxes[team_id] = [e for e in self.outboxes[team_id] if e not in events]

    async def delete_if_closed(self, team_id: str) -> bool:
        self.calls.append("delete_if_closed")
        team = self.teams.get(team_id)
        if team is None or team.members or self.outboxes.get(team_id):
            return False
        del self.teams[team_id]
        self.outboxes.pop(team_id, None)
        return True

    async def with_pending_outbox(self, *, limit: int) -> list[str]:
        self.calls.append("with_pending_outbox")
        return [t for t, events in self.outboxes.items() if events][:limit]


def _without(team: Team, user_id: str) -> Team:
    return dataclasses.replace(
        team,
        members=tuple(m for m in team.members if m != user_id),
        admins=tuple(a for a in team.admins if a != user_id),
    )


class StoreMemberships:
    """The membership index as it stands once every outbox event is applied: from the store."""

    def __init__(self, teams: MemoryTeamStore) -> None:
        self._teams = teams

    async def teams_of(self, user_id: str) -> list[MembershipEntry]:
        return sorted(
            MembershipEntry(t.id, t.active)
            for t in self._teams.teams.values()
            if user_id in t.members
        )


def team_service(
    teams: MemoryTeamStore,
    users: FakeUserDirectory,
    events: Announcer,
    *,
    teams_per_user_max: int = 1000,
    **options: Any,
) -> TeamService:
    """The team service over in-memory stores, its membership index read from the store."""
    return TeamService(
        teams=teams,
        users=users,
        events=events,
        metrics=TeamMetrics.create(CollectorRegistry()),
        memberships=StoreMemberships(teams),
        teams_per_user_max=teams_per_user_max,
        **options,
    )


class MemoryMembershipIndex:
    """The membership index in memory, reading a team's state from ``teams`` as Mongo does."""

    def __init__(self, teams: MemoryTeamStore | None = None) -> None:
        self.entries: dict[tuple[str, str], bool] = {}
        self._teams = teams
        # The next N applies fail as an unreachable database would.
        self.fail_next = 0

    async def apply(self, team_id: str, event: OutboxEvent) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise Unavailable("database error: ServerSelectionTimeoutError")
        if event.change is MembershipChange.ADDED:
            team = self._teams.teams.get(team_id) if self._teams is not None else None
            self.entries[(team_id, event.user_id)] = team is None or team.active
        elif event.change is MembershipChange.REMOVED:
            self.entries.pop((team_id, event.user_id), None)
        elif event.change in ACTIVATION:
            for key in [k for k in self.entries if k[0] == team_id]:
                self.entries[key] = event.change is MembershipChange.ACTIVATED

    async def teams_of(self, user_id: str) -> list[MembershipEntry]:
        return sorted(MembershipEntry(t, a) for (t, u), a in self.entries.items() if u == user_id)


T = TypeVar("T")


class MemoryMessageStore:
    def __init__(self, messages: list[StoredMessage] | None = None) -> None:
        self.messages = list(messages or [])
        # Applied changes, as the controller would have stored them: each with the channel's
        # team-message count at its seq (what a read position there records).
        self.change_log: list[tuple[ChangeEntry, int]] = []
        self.calls: list[str] = []
        # The bound of a walk, as records of the channel read (visible to the caller or not),
        # as the store's bound on buckets does: None reads to the end.
        self.walk_span: int | None = None

    def _walk(
        self, records: Sequence[tuple[int, T]], keep: Callable[[T], bool], limit: int
    ) -> Walk[T]:
        """``records`` (seq, item) in walking order, read up to ``walk_span`` of them."""
        found: list[T] = []
        for read, (seq, item) in enumerate(records):
            # As the store's buckets do, it never stops between two records of one seq (a
            # reply and its root's thread change).
            bounded = self.walk_span is not None and read >= self.walk_span
            if bounded and len(found) < limit and seq != records[read - 1][0]:
                return Walk(found, records[read - 1][0])
            if keep(item):
                found.append(item)
                if len(found) >= limit:
                    break
        return Walk(found)

    async def message(self, channel_id: str, message_id: str) -> StoredMessage | None:
        self.calls.append("message")
        return next(
            (m for m in self.messages if m.id == message_id and m.channel_id == channel_id), None
        )

    async def thread(
        self, channel_id: str, root_id: str, viewer: str, *, after: int, limit: int
    ) -> list[StoredMessage]:
        replies = [
            m
            for m in self.messages
            if m.channel_id == channel_id
            and m.thread_id == root_id
            and m.seq > after
            and m.visible_to(viewer)
        ]
        return sorted(replies, key=lambda m: m.seq)[:limit]

    async def changes(
        self, channel_id: str, viewer: str, *, after: int, limit: int
    ) -> Walk[ChangeEntry]:
        created = [ChangeEntry(m.seq, "created", m) for m in self.messages]
        entries = [
            e
            for e in (*created, *(entry for entry, _ in self.change_log))
            if e.message.channel_id == channel_id and e.seq > after
        ]
        entries.sort(key=entry_order)
        return self._walk(
            [(e.seq, e) for e in entries], lambda e: e.message.visible_to(viewer), limit
        )

    async def count_at(self, channel_id: str, seq: int, viewer: str | None = None) -> int | None:
        def seen(m: StoredMessage) -> bool:
            return viewer is None or m.visible_to(viewer)

        for m in self.messages:
            if m.channel_id == channel_id and m.seq == seq and seen(m):
                return m.count
        for e, count in self.change_log:
            if e.message.channel_id == channel_id and e.seq == seq and seen(e.message):
                return count
        return None

    async def count_before(self, channel_id: str, seq: int) -> int:
        self.calls.append("count_before")
        below = [m for m in self.messages if m.channel_id == channel_id and m.seq <= seq]
        return max(below, key=lambda m: m.seq).count if below else 0

    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Walk[StoredMessage]:
        self.calls.append("page")
        stored = [m for m in self.messages if m.channel_id == channel_id]
        if after is not None:
            ordered = sorted((m for m in stored if m.seq > after), key=lambda m: m.seq)
        else:
            below = [m for m in stored if before is None or m.seq < before]
            ordered = sorted(below, key=lambda m: m.seq, reverse=True)
        return self._walk(
            [(m.seq, m) for m in ordered],
            lambda m: m.to == "*" or viewer in (m.to, m.sender),
            limit,
        )

    async def carrier(self, channel_id: str, attachment_id: str, viewer: str) -> Carrier:
        self.calls.append("carrier")
        carrying = [
            m
            for m in self.messages
            if m.channel_id == channel_id and m.data == attachment_id and m.type != TEXT
        ]
        if any(m.to == BROADCAST or viewer in (m.to, m.sender) for m in carrying):
            return Carrier.VISIBLE
        return Carrier.HIDDEN if carrying else Carrier.NONE

    async def carried_besides(self, channel_id: str, attachment_id: str, message_id: str) -> bool:
        return any(
            m.channel_id == channel_id
            and m.data == attachment_id
            and m.type != TEXT
            and m.id != message_id
            for m in self.messages
        )


class MemoryAttachmentStore:
    def __init__(self) -> None:
        self.items: dict[str, Attachment] = {}

    async def insert(self, item: Attachment) -> None:
        if item.id in self.items:
            raise Conflict("an attachment with this id exists")
        self.items[item.id] = item

    async def get(self, attachment_id: str) -> Attachment | None:
        return self.items.get(attachment_id)

    async def decide(
        self,
        attachment_id: str,
        status: str,
        *,
        at: datetime,
        reason: str = "",
        stored_key: str = "",
        fence: int | None = None,
    ) -> bool:
        item = self.items.get(attachment_id)
        if item is None or item.status != PENDING:
            return False
        self.items[attachment_id] = dataclasses.replace(
            item, status=status, reason=reason, stored_key=stored_key
        )
        return True

    async def held_by(self, uploader: str, *, since: datetime) -> list[tuple[datetime, int]]:
        return [
            (i.created_at, i.size)
            for i in self.items.values()
            if i.uploader == uploader and i.created_at >= since and i.status in (PENDING, READY)
        ]

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Attachment]:
        found = [i for i in self.items.values() if i.status == PENDING and i.created_at < before]
        return sorted(found, key=lambda i: i.created_at)[:limit]

    async def delete_pending(self, attachment_id: str) -> bool:
        item = self.items.get(attachment_id)
        if item is None or item.status != PENDING:
            return False
        del self.items[attachment_id]
        return True

    async def withdraw(self, attachment_id: str, *, fence: int | None = None) -> None:
        item = self.items.get(attachment_id)
        if item is not None:
            self.items[attachment_id] = dataclasses.replace(item, status=WITHDRAWN)


class MemoryObjects:
    """S3 for attachments: presigned forms and links as plain strings; ``down`` fails every call."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.down = False

    def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_s: int
    ) -> PresignedPost:
        return PresignedPost("http://s3/bucket", {"key": key, "Content-Type": content_type})

    def presign_get(self, key: str, *, content_type: str, disposition: str, expires_s: int) -> str:
        return f"http://s3/bucket/{key}?ct={content_type}&cd={disposition}&exp={expires_s}"

    async def head(self, key: str) -> StoredObject | None:
        self._check()
        found = self.objects.get(key)
        return None if found is None else StoredObject(len(found[0]), found[1])

    async def read(self, key: str, *, max_bytes: int) -> bytes | None:
        self._check()
        found = self.objects.get(key)
        return None if found is None else found[0][: max_bytes + 1]

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self._check()
        self.objects[key] = (data, content_type)

    async def delete(self, key: str) -> None:
        self._check()
        self.objects.pop(key, None)

    def _check(self) -> None:
        if self.down:
            raise Unavailable("s3 down")


class FakeScanner:
    """clamd: anything containing ``EICAR`` is infected; records what it scanned."""

    def __init__(self) -> None:
        self.down = False
        self.scanned: list[bytes] = []

    async def scan(self, data: bytes) -> ScanResult:
        if self.down:
            raise Unavailable("clamd down")
        self.scanned.append(data)
        return ScanResult(False, "Test.EICAR") if b"EICAR" in data else ScanResult(True)


class FakeUserDirectory:
    """Known users by id and email; records every look-up and the token it came with."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.by_email = dict(users or {})  # email -> user id
        self.lookups: list[tuple[str, str]] = []

    async def id_by_email(self, email: str, *, bearer: str) -> str | None:
        self.lookups.append((email, bearer))
        return self.by_email.get(email)

    async def exists(self, user_id: str, *, bearer: str) -> bool:
        self.lookups.append((user_id, bearer))
        return user_id in self.by_email.values()


@dataclass(frozen=True, slots=True)
class Published:
    team_id: str
    user_id: str
    change: MembershipChange
    actor: str


_CHANGES = {proto: change for change, proto in PROTO_CHANGE.items()}


class FakeKafka:
    """A producer's ``send_and_wait``: records what it acknowledges; refuses while ``down``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.down = False
        # Sends to refuse before acknowledging again (a broker failing part-way).
        self.fail_after: int | None = None

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if self.down or (self.fail_after is not None and len(self.records) >= self.fail_after):
            raise ConnectionError("broker unreachable")
        self.records.append({"topic": topic, "value": value, "key": key, "headers": headers})

    @property
    def published(self) -> list[Published]:
        """What Kafka acknowledged, decoded."""
        found = []
        for record in self.records:
            assert record["topic"] == EVENTS_TOPIC
            event = chat_pb2.MembershipEvent.FromString(record["value"])
            assert record["key"] == event.channel_id.encode()
            found.append(
                Published(event.channel_id, event.user_id, _CHANGES[event.change], event.actor)
            )
        return found


class RecordingPublisher:
    """The real outbox publisher over a fake Kafka; ``events`` is what Kafka acknowledged."""

    def __init__(self, store: MemoryTeamStore, *, leases: Leases | None = None) -> None:
        self.kafka = FakeKafka()
        self.index = MemoryMembershipIndex(store)
        self.outbox = OutboxPublisher(
            store,
            self.kafka,
            leases if leases is not None else local_leases("team"),
            EventMetrics.create(CollectorRegistry()),
            self.index,
            send_timeout_s=5.0,
        )

    async def announce(self, team_id: str) -> None:
        await self.outbox.announce(team_id)

    @property
    def events(self) -> list[Published]:
        return self.kafka.published

    def clear(self) -> None:
        self.kafka.records.clear()


class FakeLog:
    """The channel log's producer: what it acknowledged on chat.messages.v1; refuses while down."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.down = False

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.records.append({"topic": topic, "value": value, "key": key, "headers": dict(headers)})

    def changes(self) -> list[chat_pb2.MessageChange]:
        return [
            chat_pb2.MessageChange.FromString(r["value"])
            for r in self.records
            if r["headers"].get("kind") == b"change"
        ]

    def reads(self) -> list[chat_pb2.ReadMarker]:
        return [
            chat_pb2.ReadMarker.FromString(r["value"])
            for r in self.records
            if r["headers"].get("kind") == b"read"
        ]


class FixedUnread:
    """Unread counts as a test sets them (nothing unread and nothing read otherwise)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], Unread] = {}

    async def unread(self, user_id: str, channel_ids: Sequence[str]) -> dict[str, Unread]:
        return {c: self.counts.get((c, user_id), Unread(0, 0, -1)) for c in channel_ids}


class FixedPresence:
    """Presence as a test sets it: the users listed online, everyone else offline."""

    def __init__(self) -> None:
        self.online: set[str] = set()

    async def of_members(self, team_id: str, members: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {"user_id": u, "status": "online" if u in self.online else "offline", "last_seen": None}
            for u in members
        ]


class FixedHeads:
    """Channel heads as a test sets them (an empty channel otherwise)."""

    def __init__(self) -> None:
        self.heads: dict[str, ChannelHead] = {}

    async def head(self, channel_id: str) -> ChannelHead:
        return self.heads.get(channel_id, ChannelHead())


class RecordingWithdrawals:
    """What the message service asked to withdraw."""

    def __init__(self) -> None:
        self.withdrawn: list[str] = []

    async def withdraw(self, attachment_id: str) -> None:
        self.withdrawn.append(attachment_id)
