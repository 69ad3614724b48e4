"""A new member's read position: the team's last message when they were added, written to the
channel's log."""

from __future__ import annotations

from chatcore.unread import ChannelHead
from services.management.messages import JoinMarkers
from tests.unit.management_fakes import FakeLog, FixedHeads

TEAM, BOB = "t" * 32, "b" * 32


async def test_a_member_joining_reads_up_to_the_teams_last_message() -> None:
    """The marker carries the seq and count of the team's last message, not the channel's last
    record (a DM between others, which the newcomer's position must not reveal), and says it is
    a join; a channel of others' DMs only gives no marker."""
    heads, log = FixedHeads(), FakeLog()
    heads.heads[TEAM] = ChannelHead(count=4, count_seq=6, last_seq=9)
    await JoinMarkers(heads, log, send_timeout_s=1).joined(TEAM, BOB)
    assert [(m.channel_id, m.user_id, m.seq, m.count, m.joined) for m in log.reads()] == [
        (TEAM, BOB, 6, 4, True)
    ]
    assert log.records[0]["key"] == TEAM.encode()
    heads.heads[TEAM] = ChannelHead(count=0, count_seq=-1, last_seq=9)
    await JoinMarkers(heads, log, send_timeout_s=1).joined(TEAM, BOB)
    assert len(log.records) == 1


async def test_joining_an_empty_channel_writes_no_marker_and_its_first_record_counts() -> None:
    """Nothing stored yet: no read position to write, so the first message (which may sit at
    seq 0, before any position a marker could name) counts as unread; one whose only record is
    at seq 0 reads up to it."""
    heads, log = FixedHeads(), FakeLog()
    await JoinMarkers(heads, log, send_timeout_s=1).joined(TEAM, BOB)
    assert log.records == []
    heads.heads[TEAM] = ChannelHead(count=1, count_seq=0, last_seq=0)
    await JoinMarkers(heads, log, send_timeout_s=1).joined(TEAM, BOB)
    assert [(m.seq, m.count) for m in log.reads()] == [(0, 1)]
