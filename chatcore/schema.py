"""The shared database schema: collection names, field names, statuses and id formats.

Several services read documents another one writes (the controller answers relays from the
``teams`` and ``attachments`` documents the management service keeps, and the management service
reads the ``messages`` the controller stores), so every name that crosses that line is defined
once, here. Pure constants, no I/O.
"""

from __future__ import annotations

import re
from typing import Final

# Collections.
TEAMS: Final = "teams"
MESSAGES: Final = "messages"
ATTACHMENTS: Final = "attachments"
USERS: Final = "users"
# One head document per channel with messages (``chatcore.buckets``); ``_id`` is the channel id.
CHANNELS: Final = "channels"
# Data migrations done, by name (``_id``), so a start does not redo them.
MIGRATIONS: Final = "migrations"
# One small document per (team, member): who belongs to which team, looked up by user at every
# WebSocket handshake without reading the (large) team documents. Written by the management
# service from each team's outbox (so it follows the ``teams`` documents), read by the controller.
MEMBERSHIPS: Final = "memberships"
# The auth service's refresh tokens (``_id`` = the token's SHA-256).
REFRESH_TOKENS: Final = "refresh_tokens"
# Logins ended before their access tokens expired (services/auth/sessions.py): ``_id`` is the
# login's id, the ``sid`` claim of its access tokens. Written by auth, read by every verifier.
ENDED_SESSIONS: Final = "ended_sessions"
ENDED_USER_ID: Final = "user_id"
# Until when the document matters: the login's last access token has expired by then.
ENDED_UNTIL: Final = "until"
# False until the ``session_ended`` event is acknowledged by Kafka (the document is its outbox).
ENDED_PUBLISHED: Final = "published"
# Renames not yet told to the user's teams (services/auth/renames.py): ``_id`` is the user's id,
# one document per user, its ``mark`` new at each rename; deleted once Kafka has every team's
# event (the name told is read from the user's document).
RENAMES: Final = "renames"
RENAME_MARK: Final = "mark"
RENAME_AT: Final = "at"
# Leases (``chatcore.leases``): ``_id`` = "<namespace>:<key>#<epoch>", taken by an insert.
LEASES: Final = "leases"
LEASE_KEY: Final = "key"
LEASE_EPOCH: Final = "epoch"
LEASE_OWNER: Final = "owner"
LEASE_EXPIRES_AT: Final = "expires_at"
LEASE_RELEASED: Final = "released"

# A lone UTF-16 surrogate can come out of JSON's \u escapes but is no character: UTF-8 cannot
# carry it, so no store takes it. A string holding one is refused where it comes in.
SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")

# Every stored id (users, teams, attachments): a uuid4 in hex.
ID_PATTERN: Final = r"^[0-9a-f]{32}$"
ID_RE: Final = re.compile(ID_PATTERN)

# Character classes spelled out (not ``\s``): Python, ECMA-262 and the JSON Schema validators
# disagree on what ``\s`` and ``\d`` mean. CONTROL is Unicode category Cc; SPACE is every character
# ``str.isspace()`` and ``str.strip()`` treat as whitespace (Python 3.11, Unicode 14), the control
# ones included. The strings hold the characters themselves, not regex escapes.
CONTROL: Final = "\x00-\x1f\x7f-\x9f"
SPACE: Final = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

# Invisible formatting characters (soft hyphen, zero-width and bidirectional marks, word joiner,
# byte order mark): inside an identifier they make two different strings look alike.
INVISIBLE: Final = "\xad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"

# Characters that show nothing on their own: the invisible ones above, bidirectional isolates and
# the Arabic letter mark, the combining grapheme joiner, the Hangul fillers, Khmer's inherent
# vowels, Mongolian's free variation selectors and vowel separator, the deprecated format
# controls, variation selectors, interlinear annotation marks and the blank Braille pattern. A
# message of only these and whitespace would be an empty bubble. (Those above U+FFFF, such as tag
# characters, are left out: a pattern without the `u` flag cannot name them in ECMAScript.)
# Of those, two kinds may end a name, never make one: variation selectors choose how the
# character before them looks ("\u2764\ufe0f"), and direction marks (LRM, RLM, ALM) are what
# right-to-left typing leaves after a name.
SELECTORS: Final = "\u180b-\u180d\ufe00-\ufe0f"
MARKS: Final = "\u061c\u200e\u200f"
_SHOWS_NOTHING: Final = (
    "\xad\u200b-\u200d\u202a-\u202e\u2060-\u2064\ufeff\u2066-\u2069\u034f\u115f\u1160\u17b4"
    "\u17b5\u180e\u180f\u206a-\u206f\u2800\u3164\ufff9-\ufffb\uffa0"
)
BLANK: Final = f"{_SHOWS_NOTHING}{MARKS}{SELECTORS}"

# Bidirectional embeddings, overrides and isolates: in a name they reorder what follows, so that
# "Carol \u202eevil" shows as "Carol live" (joiners and direction marks stay allowed: emoji
# sequences and right-to-left scripts need them).
BIDI_CONTROL: Final = "\u202a-\u202e\u2066-\u2069"

# A display name (a user's, a team's): after trimming whitespace, 1-100 characters, none of them a
# control character or a bidirectional override, beginning and ending with one that shows (a
# name of zero-width spaces or Hangul fillers is a blank entry in every list; a variation
# selector or a direction mark may end one).
NAME_MAX: Final = 100
_NAME_FIRST: Final = f"[^{CONTROL}{SPACE}{BIDI_CONTROL}{BLANK}]"
_NAME_LAST: Final = f"[^{CONTROL}{SPACE}{BIDI_CONTROL}{_SHOWS_NOTHING}]"
NAME_PATTERN: Final = (
    f"^[{SPACE}]*{_NAME_FIRST}(?:[^{CONTROL}{BIDI_CONTROL}]{{0,{NAME_MAX - 2}}}{_NAME_LAST})?"
    f"[{SPACE}]*$"
)
NAME_RE: Final = re.compile(NAME_PATTERN)
NAME_RULE: Final = (
    f"1 to {NAME_MAX} characters after trimming, no control characters or text-direction overrides,"
    " beginning and ending with a character that shows"
)

# A user's email (``users.email``) as clients may send it: surrounding whitespace is trimmed and
# the case folded before it is stored or compared; inside, one "@", no whitespace, no control and
# no invisible character, a dot in the domain, at most 64 characters before the "@", 254 in all.
EMAIL_MAX: Final = 254
_EMAIL_CHAR: Final = f"[^@{SPACE}{CONTROL}{INVISIBLE}"
EMAIL_PATTERN: Final = (
    f"^[{SPACE}]*{_EMAIL_CHAR}]{{1,64}}@{_EMAIL_CHAR}.]+(?:\\.{_EMAIL_CHAR}.]+)+[{SPACE}]*$"
)
EMAIL_RE: Final = re.compile(EMAIL_PATTERN)

# Fields of a ``teams`` document (its ``_id`` is the team id).
ID: Final = "_id"
TEAM_NAME: Final = "name"
TEAM_ICON: Final = "icon"
TEAM_ACTIVE: Final = "active"
TEAM_META_TAGS: Final = "meta_tags"
TEAM_MEMBERS: Final = "members"
TEAM_ADMINS: Final = "admins"
TEAM_SUPER_ADMIN: Final = "super_admin"
TEAM_DOC: Final = "doc"
# Membership events stored with the change that caused them, until Kafka has them (the outbox).
TEAM_OUTBOX: Final = "outbox"
# True while ``outbox`` holds anything: a top-level equality, so FerretDB pushes the lookup down.
TEAM_OUTBOX_PENDING: Final = "outbox_pending"

# Fields of a ``memberships`` document (``_id``: ``membership_id(team_id, user_id)``).
MEMBERSHIP_TEAM_ID: Final = "team_id"
MEMBERSHIP_USER_ID: Final = "user_id"
MEMBERSHIP_ACTIVE: Final = "active"


def membership_id(team_id: str, user_id: str) -> str:
    """The ``_id`` of the ``memberships`` document of ``user_id`` in ``team_id``."""
    return f"{team_id}:{user_id}"


# Fields of one outbox entry.
EVENT_ID: Final = "id"
EVENT_USER_ID: Final = "user_id"
EVENT_CHANGE: Final = "change"
EVENT_ACTOR: Final = "actor"
EVENT_TS_MS: Final = "ts_ms"
EVENT_CORRELATION_ID: Final = "correlation_id"

# Fields of a ``messages`` document (written by the controller, ``chatcore.messages``).
MESSAGE_ID: Final = "id"
MESSAGE_CHANNEL_ID: Final = "channel_id"
MESSAGE_SEQ: Final = "seq"
MESSAGE_TO: Final = "to"
MESSAGE_TYPE: Final = "type"
MESSAGE_DATA: Final = "data"
MESSAGE_FROM: Final = "from"
MESSAGE_TS: Final = "ts"
# ``"<channel_id>/<n>"``: the history bucket the message is stored in (``chatcore.buckets``).
MESSAGE_BUCKET: Final = "bucket"
# The life cycle (DESIGN 5b; ``chatcore.message_state``): a reply's root, when it was last edited,
# whether it is a tombstone, its reactions ``[{emoji, users}]``, a root's thread summary
# ``{replies, last_reply_ts}``.
MESSAGE_THREAD_ID: Final = "thread_id"
MESSAGE_EDITED_TS: Final = "edited_ts"
MESSAGE_DELETED: Final = "deleted"
MESSAGE_REACTIONS: Final = "reactions"
MESSAGE_THREAD: Final = "thread"
# Team messages in the channel up to and including this record (on messages and changes alike):
# unread counts are differences of it.
MESSAGE_COUNT: Final = "n"
# The seq of the last change applied to the message: a change consumed twice is applied once.
MESSAGE_LAST_CHANGE: Final = "last_change"
# The users a team text's counted mentions name: as stored, then as its last edit left them
# (absent on messages stored before 2026-12-06 and never edited since): a delete takes them back.
MESSAGE_MENTIONS: Final = "mentions"
# The users edits took a mention of this text away from (absent when none): taken away again when
# an edit or a delete is consumed again, since the read documents that took them may not have
# been stored before a crash or a failed write.
MESSAGE_UNMENTIONED: Final = "unmentioned"

# One document per applied change (``_id``: ``"<channel_id>:<seq>:<change>"``), in the channel's
# buckets like its messages: the ``changes?after=`` feed. ``message`` is the message as the change
# left it (its stored fields); ``to``/``from`` repeat the message's, for visibility.
CHANGES: Final = "changes"
CHANGE_CHANNEL_ID: Final = "channel_id"
CHANGE_SEQ: Final = "seq"
CHANGE_KIND: Final = "change"
CHANGE_MESSAGE_ID: Final = "message_id"
CHANGE_MESSAGE: Final = "message"

# A member's read state in a channel (``_id``: ``"<channel_id>:<user_id>"``), written only by the
# controller that owns the channel's partition: the last seq read and the channel's team-message
# count there, plus the DMs to them and mentions of them since, by seq.
READS: Final = "reads"
READ_CHANNEL_ID: Final = "channel_id"
READ_USER_ID: Final = "user_id"
READ_SEQ: Final = "seq"
READ_COUNT: Final = "n"
READ_DMS: Final = "dms"
READ_MENTIONS: Final = "mentions"
READ_OWN: Final = "own"
READ_DM_FROM: Final = "dm_from"
READ_DM_SEQ: Final = "seq"
READ_DM_SENDER: Final = "from"


def read_id(channel_id: str, user_id: str) -> str:
    """The ``_id`` of a member's ``reads`` document."""
    return f"{channel_id}:{user_id}"


# When each user was last seen online (``_id``: the user id), kept by the management service from
# the presence feed, for users who are offline now.
PRESENCE: Final = "presence"
PRESENCE_LAST_SEEN: Final = "last_seen"

# Fields of a ``channels`` head document: bucket numbers in use are ``low`` to ``high - 1``.
CHANNEL_LOW: Final = "low"
CHANNEL_HIGH: Final = "high"
# Team messages stored in the channel, the seq of the last one counted, the last seq stored, and
# the most recent deleted team messages ``[{seq, from}]`` (unread counts skip them).
CHANNEL_COUNT: Final = "n"
CHANNEL_COUNT_SEQ: Final = "n_seq"
CHANNEL_LAST_SEQ: Final = "last_seq"
CHANNEL_DELETED: Final = "deleted"
# ``to`` of a team message; any other value is the recipient of a DM.
BROADCAST: Final = "*"
# ``type`` of a message whose ``data`` is text; every other type carries an attachment id.
TEXT: Final = "text"

# Fields of a ``users`` document (its ``_id`` is the user id) that other services read.
USER_DISABLED: Final = "disabled"
# When the account was last disabled (kept after it is enabled again).
USER_DISABLED_AT: Final = "disabled_at"

# Fields of an ``attachments`` document (its ``_id`` is the attachment id).
ATTACHMENT_TEAM_ID: Final = "team_id"
ATTACHMENT_KIND: Final = "kind"
ATTACHMENT_STATUS: Final = "status"
ATTACHMENT_FILENAME: Final = "filename"
ATTACHMENT_CONTENT_TYPE: Final = "content_type"
ATTACHMENT_SIZE: Final = "size"
ATTACHMENT_KEY: Final = "key"
ATTACHMENT_UPLOADER: Final = "uploader"
ATTACHMENT_CREATED_AT: Final = "created_at"
ATTACHMENT_COMPLETED_AT: Final = "completed_at"
ATTACHMENT_REASON: Final = "reason"
# Where the scanned bytes of a ready attachment live (absent on ones made ready before it existed,
# whose bytes are at ``key``).
ATTACHMENT_STORED_KEY: Final = "stored_key"

# Attachment statuses: requested, not yet checked / clean, may be sent / refused, bytes deleted.
PENDING: Final = "pending"
READY: Final = "ready"
REJECTED: Final = "rejected"
ATTACHMENT_STATUSES: Final = (PENDING, READY, REJECTED)
# The message carrying it was deleted: its bytes are gone and it answers 404 to everyone.
WITHDRAWN: Final = "withdrawn"
# Message types an attachment may be sent as.
ATTACHMENT_KINDS: Final = ("image", "video", "audio", "file")
