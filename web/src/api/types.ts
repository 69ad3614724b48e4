// The public contract's shapes (shared DESIGN.md sections 5 and 5b), as the client reads them.
// Fields of 5b are optional: a backend without them still works, their features stay quiet.

export type UserId = string;
export type TeamId = string;
export type MessageId = string;

export interface User {
  id: UserId;
  /** Null when another user is not a teammate now (the server shows emails to teammates only). */
  email: string | null;
  name: string;
}

export interface Unread {
  count: number;
  mentions: number;
  last_read_seq?: number | null;
}

export interface Team {
  id: TeamId;
  name: string;
  icon: string;
  active: boolean;
  meta_tags: string[];
  members: UserId[];
  admins: UserId[];
  super_admin: UserId;
  doc: string;
  unread?: Unread;
}

export const MESSAGE_TYPES = ["text", "image", "video", "audio", "file"] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

export interface Reaction {
  emoji: string;
  count: number;
  users: UserId[];
}

export interface Message {
  id: MessageId;
  seq: number;
  channel_id: TeamId;
  to: "*" | UserId;
  type: MessageType;
  data: string;
  from: UserId;
  ts: string;
  thread_id?: MessageId | null;
  edited_ts?: string | null;
  deleted?: boolean;
  reactions?: Reaction[];
  thread?: { replies: number; last_reply_ts: string | null } | null;
}

export type ChangeKind = "created" | "edited" | "deleted" | "reaction" | "thread";

/** One entry of `changes?after=`, and the shape an `update` frame is applied as. */
export interface Change {
  seq: number;
  change: ChangeKind;
  message: Message;
}

export interface Hello {
  type: "hello";
  user_id: UserId;
  channels: TeamId[];
  relay: string;
  heartbeat_s: number;
  unread?: Record<TeamId, { count: number; mentions: number }>;
  /** How long after sending an author may edit or delete (CHAT_EDIT_WINDOW_S). */
  edit_window_s?: number;
}

export interface UpdateFrame {
  type: "update";
  seq: number;
  channel_id: TeamId;
  change: Exclude<ChangeKind, "created">;
  message: Message;
}

export interface AckFrame {
  type: "ack";
  client_msg_id: string;
  id: MessageId;
  seq: number;
  ts: string;
}

export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  client_msg_id?: string | null;
}

export interface TypingFrame {
  type: "typing";
  channel_id: TeamId;
  to: "*" | UserId;
  from: UserId;
  ts: string;
  /** Typing in this thread's reply box (its root's id). */
  thread_id?: MessageId;
}

export interface MembershipFrame {
  type: "membership";
  channel_id: TeamId;
  event: "added" | "removed" | "deactivated" | "activated";
}

/** The team changed (renamed, roles, members): read it again. Not sent for one's own membership. */
export interface TeamFrame {
  type: "team";
  channel_id: TeamId;
  change: "settings" | "roles" | "members";
}

/** A member of the team renamed themselves (one frame per team the socket shares with them). */
export interface ProfileFrame {
  type: "profile";
  channel_id: TeamId;
  user_id: UserId;
  name: string;
}

export interface ReadFrame {
  type: "read";
  channel_id: TeamId;
  seq: number;
}

export interface PresenceFrame {
  type: "presence";
  channel_id: TeamId;
  user_id: UserId;
  status: "online" | "offline";
}

export interface ResyncFrame {
  type: "resync";
}

export type ControlFrame =
  | Hello
  | UpdateFrame
  | AckFrame
  | ErrorFrame
  | TypingFrame
  | MembershipFrame
  | ReadFrame
  | PresenceFrame
  | ResyncFrame;

export interface Presence {
  user_id: UserId;
  status: "online" | "offline";
  last_seen: string | null;
}

export interface Attachment {
  id: string;
  attachment_id: string;
  team_id: TeamId;
  kind: MessageType;
  status: "pending" | "ready" | "rejected";
  filename: string;
  content_type: string;
  size: number;
  uploader: UserId;
  created_at: string;
  url?: string;
  expires_at?: string;
}

export interface UploadTicket extends Attachment {
  upload: { method: "POST"; url: string; fields: Record<string, string>; expires_at: string };
}

/** `{type: text|image|...}` is a message, every other type a control frame (the contract's rule). */
export function isMessage(frame: { type?: unknown }): frame is Message {
  return typeof frame.type === "string" && (MESSAGE_TYPES as readonly string[]).includes(frame.type);
}
