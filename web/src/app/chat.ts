// The signed-in app's state and what changes it, without the DOM: teams, timelines, read state,
// typing, presence, sending, uploads, and the socket's frames. Views read it and call its methods.
import { type Api, ApiError } from "../api/client";
import {
  type AckFrame,
  type Attachment,
  type ErrorFrame,
  type Hello,
  isMessage,
  type MembershipFrame,
  type Message,
  type PresenceFrame,
  type ReadFrame,
  type Team,
  type TeamFrame,
  type TypingFrame,
  type UpdateFrame,
  type User,
} from "../api/types";
import type { Clock } from "../auth/keeper";
import type { SocketHandlers, SocketStatus } from "../net/socket";
import {
  conversationTag,
  plainBody,
  tabTitle,
  tagOf,
  threadTag,
  waitingIn,
  type Names,
  type NotificationText,
} from "../state/attention";
import { Observable } from "../state/observable";
import { PresenceState } from "../state/presence";
import { DEFAULT_EDIT_WINDOW_MS, roleNews, roleOf } from "../state/roles";
import { loadOlder, SyncQueue, syncChannel } from "../state/sync";
import { ChannelTimeline } from "../state/timeline";
import { conversationOf, TypingState } from "../state/typing";
import { dividerAfterLive, listSeenUpTo, newReplies, ReadState } from "../state/unread";
import { textProblem } from "../text/limits";
import { describeDetails } from "../text/teamform";
import { uploadAttachment } from "../upload/upload";
import { shownName } from "../text/bidi";
import { Alerts } from "./alerts";
import { ReadMarks } from "./readmarks";
import { TeamNews } from "./teamnews";
import { type Conversation, type Draft, Outbox, type Pending, type Sender, teamOfBox, type UnsentKeeper, type UploadView } from "./outbox";
import { People } from "./people";
import { byName } from "../text/order";

export interface Notice {
  id: number;
  kind: "error" | "info";
  text: string;
  /** What it is about: a newer notice on the same topic replaces it. */
  topic?: string;
}

/** What the model needs from the socket (ChatSocket, or a fake in tests). */
export interface SocketLike extends Sender {
  start(): void;
  stop(): void;
}

export interface ChatDeps {
  api: Api;
  me: User;
  clock: Clock;
  openSocket(handlers: SocketHandlers): SocketLike;
  newId?: () => string;
  /** Where this tab was (its open team), kept across a reload; nothing is kept without it. */
  place?: Place;
  /** What was typed and not sent, kept across a reload; without it, as long as the page. */
  unsent?: UnsentKeeper;
  /** The tab's title and desktop notifications (app/tab.ts); neither is touched without it. */
  attention?: Attention;
}

/** Where this tab was (sessionStorage in the app): a reload opens it again. */
export interface Place {
  load(): { team: string; conversation: Conversation } | null;
  save(team: string, conversation: Conversation): void;
  /** Nothing to go back to (the team saved was left). */
  forget(): void;
}

export type Permission = "default" | "granted" | "denied";

/** What calls the user back to the tab (app/tab.ts, or a fake in tests). */
export interface Attention {
  /** The title with nothing waiting, and after signing out. */
  readonly base: string;
  title(text: string): void;
  /** Whether notifications may be shown; null where the browser has none. */
  permission(): Permission | null;
  /** Asks the user; the browser allows it only while handling their click. */
  ask(): Promise<void>;
  /** Shows a notification; `open` runs when it is clicked (after the window took focus). */
  show(text: NotificationText, open: () => void): void;
  /** Closes what this page showed with that tag: its conversation is on screen now. */
  dismiss(tag: string): void;
  /** Closes everything this page showed: signed out, its texts must not stay on screen. */
  dismissAll(): void;
  /** Tells the app's other tabs which conversation this one has on screen (null: none). */
  looking(tag: string | null, thread?: string | null): void;
  /** Whether another tab of the app has that conversation (or that `threadTag`) on screen. */
  lookedAtElsewhere(tag: string): boolean;
}

const SYNC_RETRY_MS = 2000;
const RECOUNT_TRIES = 3;
/** A net under the `team` frames (a frame the socket was not there for): see rereadOpenTeam. */
const TEAM_REREAD_MS = 300_000;
/** How often a team read is asked again when a newer write of the team overtook its answer. */
const REREAD_TRIES = 3;
/** A list of teams read this recently still holds at the first hello. */
const TEAMS_FRESH_MS = 2000;
const RECOUNT_AFTER_MS = 700;
const MEMBERS_FRESH_MS = 5000;
const LEAVING_QUIET_MS = 10_000;
const INFO_NOTICE_MS = 8000;
/** Past the server's write-behind of read state (CHAT_CONTROLLER_STATE_FLUSH_MS, 1 s). */
const RECOUNT_BEHIND_MS = 1500;
const JOIN_TRIES = 5;

export class ChatModel extends Observable {
  readonly me: User;
  status: SocketStatus = "connecting";
  statusDetail = "";
  /** The relay of the current socket (hello.relay), shown for support and used by the tests. */
  relay: string | null = null;
  /** How long authors may edit and delete, as the server said in `hello`. */
  editWindowMs = DEFAULT_EDIT_WINDOW_MS;
  readonly teams = new Map<string, Team>();
  readonly timelines = new Map<string, ChannelTimeline>();
  readonly reads = new Map<string, ReadState>();
  readonly typing: TypingState;
  readonly presence = new PresenceState();
  private readonly outbox: Outbox;
  private readonly place: Place | undefined;
  private readonly attention: Attention | undefined;
  private readonly alerts: Alerts | null;
  private readonly people: People;
  /** Names as this page knows them, for notifications and announcements. */
  private readonly names: Names = { user: (id) => this.users.get(id)?.name, team: (id) => this.teams.get(id)?.name };
  /** The title last given to the tab, so an unchanged one is not set again. */
  private shownTitle: string | null = null;
  private unwatchTitle: (() => void) | null = null;
  notices: Notice[] = [];
  /** The team list has been read once: until then "no teams" is not known yet. */
  teamsLoaded = false;
  announcement = "";
  selectedTeam: string | null = null;
  conversation: Conversation = "*";
  threadRoot: string | null = null;
  /** The read mark when the conversation was opened: the "new messages" divider goes after it. */
  dividerAfter: number | null = null;
  /** The read mark when the conversation was opened: replies after it are "new" on their root. */
  private repliesSince: number | null = null;
  /** Threads opened since: their replies are seen, new or not. */
  private openedThreads = new Set<string>();
  /** Set by the view from the document's visibility; a model without a view counts as looking. */
  pageVisible = true;

  private readonly api: Api;
  private readonly clock: Clock;
  private readonly socket: SocketLike;
  private readonly sync: SyncQueue;
  /** When each team's member list was last read, to read it at most every few seconds. */
  private readonly membersReadAt = new Map<string, number>();
  private readonly membersPlanned = new Set<string>();
  /** Each held team's last write, by a count of writes: a slow list read does not undo newer. */
  private teamWrites = 0;
  private readonly teamWrittenAt = new Map<string, number>();
  /** Whether a hello came before: the next one is a reconnection. */
  private greeted = false;
  /** When the list of teams was last read (clock ms). */
  private teamsReadAt = 0;
  /** Super admin transfers of this page's on their way, per team. */
  private readonly transferring = new Map<string, number>();
  private readonly readMarks: ReadMarks;
  private readonly teamNews: TeamNews;
  private readonly olderInFlight = new Map<string, Promise<number>>();
  /** Teams the user is leaving right now. */
  private readonly leaving = new Set<string>();
  private readonly attachments = new Map<string, { at: Promise<Attachment>; until: number }>();
  private noticeSeq = 0;
  private stopped = false;

  constructor(deps: ChatDeps) {
    super();
    this.api = deps.api;
    this.me = { ...deps.me, name: shownName(deps.me.name) };
    this.clock = deps.clock;
    this.place = deps.place;
    this.attention = deps.attention;
    // The title follows every change: live messages, reads here or elsewhere, resumes.
    if (this.attention) {
      this.unwatchTitle = this.subscribe(() => {
        this.showTitle();
        this.tellLooking();
      });
    }
    this.typing = new TypingState(this.me.id);
    this.people = new People(this.api, this.clock, () => this.changed(), this.me);
    this.alerts = this.attention
      ? new Alerts({
          attention: this.attention,
          clock: this.clock,
          me: this.me.id,
          names: this.names,
          ensureUsers: (ids) => this.ensureUsers(ids),
          known: (id) => this.users.has(id),
          lookingAt: (message) => this.lookingAt(message),
          reveal: (message) => this.reveal(message),
          stopped: () => this.stopped,
        })
      : null;
    // Buffering starts at the frame that asks for a resume, not when the resume first runs.
    this.sync = new SyncQueue(
      (team, last) => this.runSync(team, last),
      // Only for a team still held: a retry that fires after the team was dropped must not leave
      // an orphan timeline resuming (buffering) for good.
      (team) => {
        if (this.teams.has(team)) this.timeline(team).beginResume();
      },
    );
    this.socket = deps.openSocket({
      hello: (hello) => this.onHello(hello),
      frame: (frame) => this.onFrame(frame),
      status: (status, detail) => {
        // Offline, the dots would go on saying who was online when the link dropped; grey says
        // "not known" until hello reads the open team's presence again.
        if (status !== "open") this.presence.forgetAll();
        this.status = status;
        this.statusDetail = detail;
        this.changed();
      },
      fatal: (reason) => this.notify("error", reason),
    });
    this.outbox = new Outbox({
      upload: (team, file, progress, signal) => uploadAttachment(this.api, team, file, progress, undefined, undefined, signal),
      socket: this.socket,
      clock: this.clock,
      newId: deps.newId ?? (() => crypto.randomUUID()),
      changed: () => this.changed(),
      announce: (text) => this.announce(text),
      ...(deps.unsent ? { kept: deps.unsent } : {}),
    });
    this.readMarks = new ReadMarks({
      clock: this.clock,
      me: this.me.id,
      timeline: (team) => this.timeline(team),
      read: (team) => this.read(team),
      older: (team) => this.older(team),
      markRead: (team, seq) => this.api.markRead(team, seq),
      changed: () => this.changed(),
      fail: (what, err) => this.fail(what, err),
    });
    this.teamNews = new TeamNews({
      clock: this.clock,
      members: (team) => this.teams.get(team)?.members.length,
      reread: (team) => this.reread(team),
      membersChanged: async (team, members) => {
        this.membersReadAt.set(team, this.clock.now());
        await this.ensureUsers(members);
      },
    });
  }

  async start(): Promise<void> {
    await this.loadTeams(); // which opens a team: the one this tab had open, else the first
    this.socket.start();
    this.clock.setTimeout(() => this.rereadOpenTeam(), TEAM_REREAD_MS);
  }

  /**
   * Renames, role changes and other members joining or leaving come as `team` frames, and every
   * hello after the first reads the teams again (what changed while the socket was away); this
   * slow round is the net under both, for a page on screen for hours.
   */
  private rereadOpenTeam(): void {
    if (this.stopped) return;
    if (this.pageVisible) void this.rereadTeams();
    this.clock.setTimeout(() => this.rereadOpenTeam(), TEAM_REREAD_MS);
  }

  /**
   * The held teams as the server has them now; their counts stay ours (kept from live frames).
   * A team missing from the list is left to its "removed" frame: the list may predate a join.
   */
  private async rereadTeams(): Promise<void> {
    const open = this.selectedTeam;
    if (open) this.membersReadAt.set(open, this.clock.now());
    const asked = this.teamWrites;
    let all: Team[];
    try {
      all = await this.allTeams();
    } catch {
      return; // the next round asks again
    }
    if (this.stopped) return;
    this.teamsReadAt = this.clock.now();
    // A team written since the list was asked for (an event, a change made here) is newer.
    for (const team of all) if (this.teams.has(team.id) && !this.writtenSince(team.id, asked)) this.putTeam(team);
    if (open && this.teams.has(open)) await this.ensureUsers(this.teams.get(open)?.members ?? []);
  }

  stop(): void {
    this.stopped = true;
    this.socket.stop();
    this.readMarks.stop();
    this.outbox.signOut();
    // Signed out: the tab says nothing of this account any more.
    this.unwatchTitle?.();
    this.unwatchTitle = null;
    if (this.attention) {
      this.attention.title(this.attention.base);
      this.attention.dismissAll();
      this.attention.looking(null);
    }
  }

  // --- reading -----------------------------------------------------------------------------

  sortedTeams(): Team[] {
    return [...this.teams.values()].sort((a, b) => byName(a.name, b.name) || a.id.localeCompare(b.id));
  }

  timeline(team: string): ChannelTimeline {
    let t = this.timelines.get(team);
    if (!t) this.timelines.set(team, (t = new ChannelTimeline()));
    return t;
  }

  read(team: string): ReadState {
    let r = this.reads.get(team);
    if (!r) this.reads.set(team, (r = new ReadState(this.me.id)));
    return r;
  }

  /** The messages of a conversation (thread replies live in the thread panel), ascending. */
  view(team: string, conversation: Conversation): Message[] {
    return this.timeline(team)
      .messages()
      .filter((m) => !m.thread_id && conversationOf(m.to, m.from, this.me.id) === conversation);
  }

  /** Per thread root of the open team, its replies from others that came since it was opened. */
  newReplies(team: string): Map<string, number> {
    return newReplies(this.timeline(team).messages(), this.repliesSince, this.me.id, this.openedThreads);
  }

  /** A thread's replies, ascending; a deleted reply is gone (the root's count no longer has it). */
  threadView(team: string, root: string): Message[] {
    return this.timeline(team)
      .messages()
      .filter((m) => m.thread_id === root && !m.deleted);
  }

  pendingIn(team: string, conversation: Conversation, threadId: string | null): Pending[] {
    return this.outbox.in(team, conversation, threadId, this.me.id);
  }

  /** Whether closing the page now would lose something sent (see Outbox.unsaved). */
  unsaved(): boolean {
    return this.outbox.unsaved();
  }

  /** Files being uploaded, and the ones that failed until dismissed. */
  get uploads(): ReadonlyMap<number, UploadView> {
    return this.outbox.uploads;
  }

  /** A refused text on its way back to its box (see Outbox.takeBack). */
  get draft(): Draft | null {
    return this.outbox.draft;
  }

  /** Unseen DMs from a member, counted from what is held (the server counts per team only). */
  dmUnread(team: string, member: string): number {
    const r = this.read(team);
    const lastRead = r.lastRead;
    return this.timeline(team)
      .messages()
      .filter((m) => m.from === member && m.to === this.me.id && !m.deleted && (lastRead === null || m.seq > lastRead) && !r.viewed(m)).length;
  }

  /** Everyone the page has a name for, by id. */
  get users(): ReadonlyMap<string, User> {
    return this.people.users;
  }

  name(user: string): string {
    return this.people.name(user);
  }

  typingNames(): string[] {
    if (!this.selectedTeam) return [];
    return this.typing.who(this.selectedTeam, this.conversation, this.clock.now()).map((u) => this.name(u));
  }

  /** Whether to offer "Turn on notifications": the browser has them and the user was never asked. */
  canAskToNotify(): boolean {
    return this.attention?.permission() === "default";
  }

  /** The user asked for notifications (from their click: the browser asks them nowhere else). */
  async askToNotify(): Promise<void> {
    try {
      await this.attention?.ask();
    } catch {
      // A browser that refuses to ask: nothing changes, the offer stays.
    }
    this.changed();
  }

  // --- selection ---------------------------------------------------------------------------

  selectTeam(team: string): void {
    if (!this.teams.has(team)) return;
    this.selectedTeam = team;
    this.threadRoot = null;
    this.openConversation("*"); // which remembers the place
    const t = this.timeline(team);
    if (!t.loaded && !t.isResuming) void this.sync.request(team);
    void this.ensureUsers(this.teams.get(team)?.members ?? []);
    void this.loadPresence(team);
    // At most every few seconds, and it catches a `team` frame the socket was not there for.
    void this.refreshMembers(team);
  }

  /** The team's member list as the server has it now (at most every few seconds per team). */
  private async refreshMembers(team: string): Promise<void> {
    const now = this.clock.now();
    const readAt = this.membersReadAt.get(team) ?? -Infinity;
    if (readAt > now - MEMBERS_FRESH_MS) {
      // Read moments ago: once more when that read is no longer fresh, not never.
      if (!this.membersPlanned.has(team)) {
        this.membersPlanned.add(team);
        this.clock.setTimeout(() => {
          this.membersPlanned.delete(team);
          void this.refreshMembers(team);
        }, readAt + MEMBERS_FRESH_MS - now);
      }
      return;
    }
    this.membersReadAt.set(team, now);
    const fresh = await this.reread(team);
    if (fresh) await this.ensureUsers(fresh.members);
  }

  /**
   * The team as the server has it now (members, unread counts), put in place of ours while the
   * user is still in it; null when it could not be read, and then ours stays until the next read.
   * Its counts replace ours only when `countsFrom` says they should (see putTeam).
   */
  private async reread(team: string, countsFrom: (fresh: Team) => boolean = () => false): Promise<Team | null> {
    try {
      return await this.readTeam(team, countsFrom);
    } catch {
      return null;
    }
  }

  /** `reread`, with the API's refusal thrown (a 404: the user is no longer in the team). */
  private async readTeam(team: string, countsFrom: (fresh: Team) => boolean = () => false): Promise<Team | null> {
    for (let attempt = 0; attempt < REREAD_TRIES; attempt += 1) {
      if (this.stopped) return null;
      const asked = this.teamWrites;
      const fresh = await this.api.team(team);
      if (this.stopped || !this.teams.has(team)) return null;
      // The team was written while this read was out (a change made here, another read): this
      // answer may be the older one, so it is asked for again rather than put over that.
      if (this.writtenSince(team, asked)) continue;
      this.putTeam(fresh, countsFrom(fresh));
      return fresh;
    }
    return null;
  }

  openConversation(conversation: Conversation): void {
    this.conversation = conversation;
    if (this.selectedTeam) this.place?.save(this.selectedTeam, conversation);
    this.threadRoot = null;
    this.dividerAfter = this.selectedTeam ? this.read(this.selectedTeam).lastRead : null;
    this.repliesSince = this.dividerAfter;
    this.openedThreads.clear();
    this.dismissShown();
    this.changed();
  }

  openThread(root: string | null): void {
    this.threadRoot = root;
    if (root) this.openedThreads.add(root);
    if (root && this.selectedTeam) void this.loadThread(this.selectedTeam, root);
    this.changed();
  }

  async loadOlder(): Promise<number> {
    const team = this.selectedTeam;
    if (!team) return 0;
    try {
      const n = await this.older(team);
      this.changed();
      return n;
    } catch (err) {
      this.fail("Could not load older messages", err);
      return 0;
    }
  }

  /** The team's next older page, one request at a time: the list's paging and the reading back
   * to the read mark share it (two would ask for the same page, and a late answer could say
   * there is more when the other had reached the start). */
  private older(team: string): Promise<number> {
    let asked = this.olderInFlight.get(team);
    if (!asked) {
      asked = loadOlder(this.api, team, this.timeline(team)).finally(() => this.olderInFlight.delete(team));
      this.olderInFlight.set(team, asked);
    }
    return asked;
  }

  /**
   * The view saw every message up to `seq`: in the open conversation's list (`inList`), whose end
   * reads the rest of the channel's log too, or in the thread panel.
   */
  markSeen(seq: number, inList = false): void {
    const team = this.selectedTeam;
    if (!team) return;
    if (inList) {
      const conversation = this.conversation;
      const last = this.view(team, conversation).at(-1);
      const target = listSeenUpTo(seq, last !== undefined && seq >= last.seq, this.timeline(team).cursor);
      this.readMarks.seen(team, target, (m) => conversationOf(m.to, m.from, this.me.id) === conversation);
    } else {
      const root = this.threadRoot;
      this.readMarks.seen(team, seq, (m) => root !== null && (m.id === root || m.thread_id === root));
    }
  }

  /** Where the open conversation's list starts (see ReadMarks.listStart). */
  listStart(team: string): "divider" | "wait" | "bottom" {
    return this.readMarks.listStart(team);
  }

  /** Whether the page is on screen: what arrives while it is hidden gets the divider. */
  setPageVisible(visible: boolean): void {
    this.pageVisible = visible;
    this.dismissShown();
    this.tellLooking();
  }

  /** The notification tag of the conversation on screen; null while the page is not. */
  private shownTag(): string | null {
    return this.pageVisible && this.selectedTeam ? tagOf(this.selectedTeam, this.conversation) : null;
  }

  /** The other tabs hear which conversation this one shows, so that they do not notify it. */
  private tellLooking(): void {
    if (this.stopped) return;
    const shown = this.shownTag();
    this.attention?.looking(shown, shown !== null && this.threadRoot ? threadTag(shown, this.threadRoot) : null);
  }

  /** The open conversation is on screen: its desktop notifications have said what they had to. */
  private dismissShown(): void {
    const shown = this.shownTag();
    if (shown !== null) this.attention?.dismiss(shown);
  }

  // --- sending -----------------------------------------------------------------------------

  /** Sends a text, or returns why the server would refuse it (then nothing is sent). */
  sendText(text: string, threadId: string | null = null): string | null {
    const team = this.selectedTeam;
    if (!team) return "No team is open.";
    const problem = textProblem(text);
    if (problem) return problem;
    const to = threadId ? this.replyTo(team, threadId) : this.conversation;
    this.outbox.send({ channel: team, to, threadId }, "text", text);
    this.typing.sent(team, to);
    return null;
  }

  /** A keystroke in the composer: a typing signal, at most every few seconds. */
  typed(): void {
    const team = this.selectedTeam;
    if (!team || !this.typing.shouldSend(team, this.conversation, this.clock.now())) return;
    this.socket.send({ type: "typing", channel_id: team, to: this.conversation });
  }

  retry(clientMsgId: string): void {
    this.outbox.retry(clientMsgId);
  }

  discard(clientMsgId: string): void {
    this.outbox.discard(clientMsgId);
  }

  takeBack(clientMsgId: string): void {
    this.outbox.takeBack(clientMsgId);
  }

  unsent(key: string): string {
    return this.outbox.unsent(key);
  }

  keepUnsent(key: string, text: string): void {
    // The boxes of a team the user just left or was removed from hand their text over as they
    // close: it could never be sent, so it is not kept.
    if (this.teamsLoaded && !this.teams.has(teamOfBox(key))) return;
    this.outbox.keepUnsent(key, text);
  }

  takeDraft(key: number): void {
    this.outbox.takeDraft(key);
  }

  async sendFile(file: File, threadId: string | null = null): Promise<void> {
    const team = this.selectedTeam;
    if (!team) return;
    const to = threadId ? this.replyTo(team, threadId) : this.conversation;
    await this.outbox.sendFile({ channel: team, to, threadId }, file);
  }

  dismissUpload(key: number): void {
    this.outbox.dismissUpload(key);
  }

  cancelUpload(key: number): void {
    this.outbox.cancelUpload(key);
  }

  async edit(id: string, text: string): Promise<boolean> {
    const team = this.selectedTeam;
    if (!team) return false;
    try {
      const message = await this.api.edit(team, id, text);
      this.timeline(team).applyOutOfBand([message]);
      this.changed();
      return true;
    } catch (err) {
      this.fail("Could not edit the message", err);
      return false;
    }
  }

  async remove(id: string): Promise<void> {
    const team = this.selectedTeam;
    if (!team) return;
    try {
      await this.api.remove(team, id);
      const held = this.timeline(team).get(id);
      if (held) this.timeline(team).applyOutOfBand([{ ...held, deleted: true, data: "" }]);
      this.changed();
    } catch (err) {
      this.fail("Could not delete the message", err);
    }
  }

  async toggleReaction(id: string, emoji: string): Promise<void> {
    const team = this.selectedTeam;
    if (!team) return;
    const mine = this.timeline(team)
      .get(id)
      ?.reactions?.some((r) => r.emoji === emoji && r.users.includes(this.me.id));
    try {
      await this.api.react(team, id, emoji, !mine);
    } catch (err) {
      this.fail("Could not react", err);
    }
  }

  /** The attachment's metadata and a download URL, cached until shortly before it expires. */
  attachment(id: string): Promise<Attachment> {
    const now = this.clock.now();
    const held = this.attachments.get(id);
    if (held && held.until > now) return held.at;
    const at = this.api.attachment(id);
    this.attachments.set(id, { at, until: now + 60_000 });
    at.then(
      (a) => {
        const expires = a.expires_at ? Date.parse(a.expires_at) : now + 60_000;
        this.attachments.set(id, { at, until: Math.max(now, expires - 30_000) });
      },
      () => this.attachments.delete(id),
    );
    return at;
  }

  // --- teams -------------------------------------------------------------------------------

  /** The panel's opening: the team as the server has it now (its roles decide the buttons). */
  async refreshTeam(team: string): Promise<void> {
    try {
      const fresh = await this.readTeam(team);
      if (!fresh) return;
      await this.ensureUsers(fresh.members);
      void this.loadPresence(team);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.dropTeam(team);
      else this.fail("Could not load the team", err);
    }
  }

  async createTeam(name: string, icon: string, tags: string[]): Promise<string | null> {
    return this.teamCall(async () => {
      const team = await this.api.createTeam({ name, ...(icon ? { icon } : {}), ...(tags.length ? { meta_tags: tags } : {}) });
      this.putTeam(team);
      this.selectTeam(team.id);
    });
  }

  updateTeam(team: string, patch: { name?: string; icon?: string; meta_tags?: string[] }): Promise<string | null> {
    return this.teamCall(async (put) => put(await this.api.patchTeam(team, patch)), team);
  }

  /** The super admin makes the team read-only for everyone, or writable again. */
  setTeamActive(team: string, active: boolean): Promise<string | null> {
    return this.teamCall(async (put) => put(await this.api.patchTeam(team, { active })), team);
  }

  addMember(team: string, email: string): Promise<string | null> {
    return this.teamCall(async (put) => {
      let updated: Team;
      try {
        updated = await this.api.addMember(team, email);
      } catch (err) {
        // Nobody to add yet: say what to do rather than the API's "no such user".
        if (err instanceof ApiError && err.status === 404 && err.message.includes("no such user")) {
          throw new Error("nobody has an account with this address yet: ask them to create one here, then add them again");
        }
        throw err;
      }
      put(updated);
      await this.ensureUsers(updated.members);
      // The newcomer's presence frame may come before this answer (and be taken for a stranger's):
      // the team's snapshot says it again.
      void this.loadPresence(team);
    }, team);
  }

  removeMember(team: string, user: string): Promise<string | null> {
    return this.teamCall(async (put) => put(await this.api.removeMember(team, user)), team);
  }

  setAdmin(team: string, user: string, admin: boolean): Promise<string | null> {
    return this.teamCall(async (put) => put(await (admin ? this.api.electAdmin(team, user) : this.api.dismissAdmin(team, user))), team);
  }

  transfer(team: string, user: string): Promise<string | null> {
    // The one change of this page's that changes the user's own role: its frame may be read
    // before its answer, and is no news then.
    this.transferring.set(team, (this.transferring.get(team) ?? 0) + 1);
    return this.teamCall(async (put) => put(await this.api.transferSuperAdmin(team, user)), team).finally(() => {
      const left = (this.transferring.get(team) ?? 1) - 1;
      if (left > 0) this.transferring.set(team, left);
      else this.transferring.delete(team);
    });
  }

  leave(team: string): Promise<string | null> {
    return this.teamCall(async () => {
      // The "removed" frame this causes may come before the answer: it is no news to the leaver.
      this.leaving.add(team);
      const held = this.teams.get(team);
      // The server deletes a team its last member leaves.
      const news = held?.members.length === 1 ? `You left ${held.name}, and it is deleted.` : `You left ${held?.name ?? "the team"}.`;
      try {
        await this.api.leave(team);
        this.dropTeam(team);
        // Said by the shell: the panel that asked goes away with the team.
        this.notify("info", news);
      } finally {
        this.clock.setTimeout(() => this.leaving.delete(team), LEAVING_QUIET_MS);
      }
    }, team);
  }

  dismissNotice(id: number): void {
    this.notices = this.notices.filter((n) => n.id !== id);
    this.changed();
  }

  // --- the socket --------------------------------------------------------------------------

  private onHello(hello: Hello): void {
    this.relay = hello.relay;
    if (typeof hello.edit_window_s === "number") this.editWindowMs = hello.edit_window_s * 1000;
    for (const [team, unread] of Object.entries(hello.unread ?? {})) this.read(team).fromServer(unread);
    const known = new Set(this.teams.keys());
    const channels = new Set(hello.channels);
    // A reconnection, or a first socket greeted well after the list was read (relays were
    // slow): `team` frames of that time never came.
    const stale = this.greeted || (this.teamsLoaded && this.clock.now() - this.teamsReadAt > TEAMS_FRESH_MS);
    this.greeted = true;
    if (channels.size !== known.size || [...channels].some((c) => !known.has(c))) void this.loadTeams();
    else if (stale) void this.rereadTeams();
    else if (!this.teamsLoaded) {
      // The list read failed, but hello says it holds exactly these (none, say): it is known now.
      this.teamsLoaded = true;
      this.changed();
    }
    // Everything held is resumed from its cursor; the open team is loaded if it is not yet.
    for (const [team, t] of this.timelines) {
      if (t.loaded || t.isResuming || team === this.selectedTeam) void this.sync.request(team);
    }
    if (this.selectedTeam) void this.loadPresence(this.selectedTeam);
    // Whatever was sent but never acknowledged goes again: the same client_msg_id, the same id.
    this.outbox.resend();
    this.changed();
  }

  private onFrame(frame: Record<string, unknown>): void {
    if (isMessage(frame)) {
      this.onMessage(frame);
      return;
    }
    switch (frame.type) {
      case "update":
        this.onUpdate(frame as unknown as UpdateFrame);
        break;
      case "ack":
        this.outbox.acked(frame as unknown as AckFrame, (team, id) => this.timeline(team).get(id) !== undefined);
        break;
      case "error":
        this.onError(frame as unknown as ErrorFrame);
        break;
      case "typing":
        this.typing.heard(frame as unknown as TypingFrame, this.clock.now());
        // Expire the indicator even when nothing else happens.
        this.clock.setTimeout(() => this.changed(), 6100);
        break;
      case "membership":
        void this.onMembership(frame as unknown as MembershipFrame);
        break;
      case "team":
        this.teamNews.heard(frame as unknown as TeamFrame);
        break;
      case "read":
        this.onReadElsewhere(frame as unknown as ReadFrame);
        break;
      case "presence": {
        const presence = frame as unknown as PresenceFrame;
        this.presence.apply(presence);
        // Someone added while this page was open: an online newcomer's presence may come
        // before the `team` frame that says so.
        if (presence.status === "online" && this.teams.get(presence.channel_id)?.members.includes(presence.user_id) === false) {
          void this.refreshMembers(presence.channel_id);
        }
        break;
      }
      case "resync":
        for (const [team, t] of this.timelines) if (t.loaded || t.isResuming) void this.sync.request(team);
        // What was missed live was never counted here (after a hello, its unread counts cover
        // the gap; a resync brings none): the server's counts include it.
        void this.loadTeams();
        break;
      default:
        return; // a type this client does not know: ignored, as the contract says
    }
    this.changed();
  }

  private onMessage(message: Message): void {
    const team = message.channel_id;
    if (!this.teams.get(team)?.members.includes(message.from)) void this.refreshMembers(team);
    this.typing.stopped(team, message.to, message.from);
    const t = this.timeline(team);
    // News, not again something held (a page brought it first) or from below what is held (a
    // redelivery): a thread reply shares its seq with its root's change, hence not above.
    const news = !t.get(message.id) && (t.cursor === null || message.seq >= t.cursor);
    t.live(message);
    this.outbox.settle([message]);
    if (this.read(team).onMessage(message)) {
      this.announceMessage(message);
      if (news) this.alerts?.alert(message);
    }
    if (this.pageVisible && this.isOpen(message)) {
      this.dividerAfter = dividerAfterLive(this.dividerAfter, this.view(team, this.conversation), message, this.me.id);
    }
    this.changed();
  }

  private onUpdate(frame: UpdateFrame): void {
    const t = this.timeline(frame.channel_id);
    const before = t.get(frame.message.id);
    t.live(frame);
    if (frame.change === "deleted") this.read(frame.channel_id).onDeleted(frame.message, before);
    // An edit of a message not held (its team not loaded) changes what is known here only at the
    // next read of the counts: what it said before is not known, and replacing the counts kept
    // from live frames with the server's, which trail them, would lose some.
    else if (frame.change === "edited") this.read(frame.channel_id).onEdited(frame.message, before);
  }

  private onError(error: ErrorFrame): void {
    const p = this.outbox.refused(error);
    // Refused for membership (the recipient left, say): the member list here is stale.
    if (p && error.code === "forbidden") void this.refreshMembers(p.channel);
    // Errors without a client_msg_id answer typing signals (rate limits): nothing to show.
  }

  private async onMembership(frame: MembershipFrame): Promise<void> {
    const team = frame.channel_id;
    if (frame.event === "removed") {
      const held = this.teams.get(team);
      this.dropTeam(team);
      // Said once, and not to someone who left by themselves (their own "You left" says it).
      if (held && !this.leaving.has(team)) this.notify("info", `You are no longer a member of ${held.name}.`);
      return;
    }
    try {
      // A team held already is read as any other read of it (not over a newer copy).
      const fresh = this.teams.has(team) ? ((await this.readTeam(team)) ?? this.teams.get(team)) : await this.api.team(team);
      if (!fresh) return;
      if (!this.teams.has(team)) this.putTeam(fresh);
      if (frame.event === "added") {
        // The creator of a team gets "added" too (often before the create call returns): a team
        // whose only member is its super_admin, me, is no news.
        const mine = fresh.super_admin === this.me.id && fresh.members.length === 1;
        if (!mine) this.notify("info", `You were added to ${shownName(fresh.name)}.`);
        // The position the server gives a newcomer (the team read up to their joining) is
        // written within a second or so of this frame: the counts read now may not have it yet.
        if ((fresh.unread?.last_read_seq ?? -1) < 0) this.clock.setTimeout(() => void this.joined(team), RECOUNT_BEHIND_MS);
        // Someone with no team open (a new account's welcome page) is taken to it.
        if (!this.selectedTeam) this.selectTeam(team);
        // History from before the subscription is fetched now; live frames follow.
        const t = this.timeline(team);
        if (t.loaded || team === this.selectedTeam) void this.sync.request(team);
      } else if (fresh.super_admin !== this.me.id) {
        // The super admin made the change (only they can), and the panel said so.
        // From the team as read now, not the event: two changes in quick succession may be
        // answered out of order, and the notice must not contradict what the page shows.
        const now = fresh.active ? "was reactivated: you can write to it again." : "was deactivated: it can be read, not written to.";
        this.notify("info", `${shownName(fresh.name)} ${now}`, `status ${team}`);
      }
    } catch (err) {
      this.fail("Could not load the team", err);
    }
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * Another of the user's sockets marked read up to a seq. Recounted here from the held messages
   * only when they are all of the team above it; otherwise the server's counts, which a read
   * sent before this frame is in, replace ours.
   */
  private onReadElsewhere(frame: ReadFrame): void {
    const team = frame.channel_id;
    const t = this.timelines.get(team);
    const oldest = t?.oldestSeq() ?? null;
    const holdsAllAbove = t !== undefined && t.loaded && !t.isResuming && (!t.hasOlder || (oldest !== null && oldest <= frame.seq));
    const r = this.read(team);
    if (holdsAllAbove) {
      r.readElsewhere(frame.seq, t.messages());
    } else if (r.movedElsewhere(frame.seq)) {
      void this.recount(team);
    }
    this.changed();
  }

  /**
   * The server's counts after the read mark moved elsewhere. They trail the mark by up to a
   * second (the read position is stored behind the fan-out): an answer from before it is asked
   * again, a few times.
   */
  private recount(team: string): Promise<void> {
    return this.rereadUntil(team, (fresh) => this.read(team).current(fresh.unread), RECOUNT_TRIES, RECOUNT_AFTER_MS);
  }

  /**
   * A newcomer's counts once the server has written their joining position (the team read up to
   * that moment): until then it answers -1, everything unread. Asked until it has, a few times.
   */
  private joined(team: string): Promise<void> {
    return this.rereadUntil(team, (fresh) => (fresh.unread?.last_read_seq ?? -1) >= 0, JOIN_TRIES, RECOUNT_BEHIND_MS);
  }

  /**
   * The team read again, its counts taken when `settled` says the answer has what was waited
   * for; an answer that has not yet is asked again after `pauseMs`, at most `tries` more times.
   * Not read at all: ours stay until the next hello.
   */
  private async rereadUntil(team: string, settled: (fresh: Team) => boolean, tries: number, pauseMs: number, attempt = 0): Promise<void> {
    const fresh = await this.reread(team, settled);
    if (fresh && !settled(fresh) && attempt < tries) this.clock.setTimeout(() => void this.rereadUntil(team, settled, tries, pauseMs, attempt + 1), pauseMs);
  }

  private async runSync(team: string, last: () => boolean): Promise<void> {
    if (!this.teams.has(team) || this.stopped) {
      this.timelines.delete(team);
      return;
    }
    const t = this.timeline(team);
    try {
      const created = await syncChannel(this.api, team, t, last);
      this.outbox.settle(created);
      for (const m of created) this.typing.stopped(team, m.to, m.from);
    } catch (err) {
      t.abortResume();
      if (err instanceof ApiError && err.status === 404) {
        this.dropTeam(team);
        return;
      }
      // The socket may be down, or the server busy: try again shortly (frames keep buffering).
      this.clock.setTimeout(() => void this.sync.request(team), SYNC_RETRY_MS);
    } finally {
      this.changed();
    }
  }

  /** A reply goes where its root went: the team, or the DM between the same two people. */
  private replyTo(team: string, root: string): string {
    const message = this.timeline(team).get(root);
    return message ? conversationOf(message.to, message.from, this.me.id) : "*";
  }

  /** Every team of the user, page after page. */
  private async allTeams(): Promise<Team[]> {
    const all: Team[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await this.api.teams(cursor);
      all.push(...page.data);
      const next = page.meta.next_cursor;
      if (!page.meta.has_more || next === null || next === undefined) return all;
      cursor = String(next);
    }
  }

  private async loadTeams(): Promise<void> {
    const asked = this.teamWrites;
    let all: Team[];
    try {
      all = await this.allTeams();
    } catch (err) {
      this.fail("Could not load your teams", err);
      return;
    }
    this.teamsReadAt = this.clock.now();
    // A team written since the list was asked for (joined, created, changed or left meanwhile)
    // is held as it is now: of those the list gives only the counts.
    const since = (id: string) => this.writtenSince(id, asked);
    // After a reconnection the list brings what its `membership` frames would have said: so
    // does the page (a team the reader was in vanishing unexplained, their draft with it).
    const news = this.teamsLoaded;
    const fresh = new Set(all.map((t) => t.id));
    for (const [id, held] of [...this.teams]) {
      if (fresh.has(id) || since(id)) continue;
      this.dropTeam(id);
      if (news && !this.leaving.has(id)) this.notify("info", `You are no longer a member of ${held.name}.`);
    }
    for (const team of all) {
      const added = !this.teams.has(team.id);
      if (since(team.id)) {
        if (!added) this.read(team.id).fromServer(team.unread, true);
        continue;
      }
      this.putTeam(team, true);
      if (news && added) this.notify("info", `You were added to ${shownName(team.name)}.`);
    }
    // What the tab kept unsent for teams left while it was closed can never be sent.
    if (!this.teamsLoaded) this.outbox.keepOnly((id) => this.teams.has(id));
    if (!this.selectedTeam && all[0]) {
      // After a reload, the team and conversation this tab had open; else the first team.
      const before = this.place?.load();
      const team = before && this.teams.has(before.team) ? before.team : (this.sortedTeams()[0]?.id ?? all[0].id);
      this.selectTeam(team);
      const dm = before?.team === team && before.conversation !== "*" ? before.conversation : null;
      if (dm !== null && dm !== this.me.id && this.teams.get(team)?.members.includes(dm)) this.openConversation(dm);
    }
    this.teamsLoaded = true;
    this.changed();
  }

  /**
   * The team as read from the server. Its unread counts replace ours only when `authoritative`
   * (the list read at start, a read asked for the counts); otherwise ours, kept from live frames,
   * stay (see ReadState.fromServer).
   */
  private putTeam(team: Team, authoritative = false, own = false): void {
    const held = this.teams.get(team.id);
    this.teams.set(team.id, { ...team, name: shownName(team.name) });
    // Whichever read brings it (a `team` frame's, the panel's, the one after a reconnection): the
    // reader's own role changed elsewhere, by the super admin or in another tab.
    const was = held ? roleOf(held, this.me.id) : null;
    const now = roleOf(team, this.me.id);
    const handedOver = was === "super_admin" && now === "admin" && this.transferring.has(team.id);
    if (was !== null && !own && !handedOver && was !== now) this.notify("info", roleNews(shownName(team.name), was, now), `role ${team.id}`);
    this.teamWrittenAt.set(team.id, ++this.teamWrites);
    this.read(team.id).fromServer(team.unread, authoritative);
    this.changed();
  }

  /** Whether the team was put or dropped after the moment `asked` (a count of `teamWrites`). */
  private writtenSince(team: string, asked: number): boolean {
    return (this.teamWrittenAt.get(team) ?? 0) > asked;
  }

  private dropTeam(team: string): void {
    this.teams.delete(team);
    if (this.place?.load()?.team === team) this.place.forget();
    // Kept, as a write: a list asked for before the team went must not bring it back.
    this.teamWrittenAt.set(team, ++this.teamWrites);
    this.readMarks.forget(team);
    this.olderInFlight.delete(team);
    this.timelines.delete(team);
    this.reads.delete(team);
    this.presence.forget(team);
    this.outbox.dropTeam(team);
    if (this.selectedTeam === team) {
      this.selectedTeam = null;
      this.threadRoot = null;
      const next = this.sortedTeams()[0];
      if (next) this.selectTeam(next.id);
    }
    this.changed();
  }

  private async loadPresence(team: string): Promise<void> {
    try {
      const asOf = this.presence.mark();
      const list = await this.api.presence(team);
      // Landing while the link is down, it would show as current what no frame can correct;
      // the next hello asks again.
      if (this.status !== "open") return;
      this.presence.snapshot(team, list, asOf);
      this.changed();
    } catch {
      // Before 5b there is no presence route: the dots stay grey ("unknown").
    }
  }

  private async loadThread(team: string, root: string): Promise<void> {
    try {
      const replies: Message[] = [];
      let after: number | undefined;
      for (;;) {
        const page = await this.api.thread(team, root, after);
        replies.push(...page.data);
        const last = page.data[page.data.length - 1];
        if (!page.meta.has_more || !last) break;
        after = last.seq;
      }
      // Replies may be newer than the cursor: they fill in, the cursor stays (DESIGN section 4).
      this.timeline(team).applyOutOfBand(replies);
      this.changed();
    } catch (err) {
      this.fail("Could not load the thread", err);
    }
  }

  /** Looks up the names not known yet (see People). */
  ensureUsers(ids: readonly string[]): Promise<void> {
    return this.people.ensure(ids);
  }

  /**
   * A team change; its refusal as words (null when done). A refusal for role, state or a member
   * no longer there (403, 409, 404) means the page's copy of the team is stale (someone changed
   * roles or members a moment ago, its `team` frame still on its way): the team is read again so the panel shows
   * what is true now.
   */
  private async teamCall(work: (put: (answer: Team) => void) => Promise<void>, team?: string): Promise<string | null> {
    const asked = this.teamWrites;
    const put = (answer: Team) => {
      // Something else wrote the team while this change was out (a `team` frame's read, say):
      // which copy is newer is not known, so the team is read again after the answer is put.
      const overtaken = this.writtenSince(answer.id, asked);
      this.putTeam(answer, false, true);
      if (overtaken) void this.reread(answer.id);
    };
    try {
      await work(put);
      return null;
    } catch (err) {
      const text = readable(err);
      if (team !== undefined && err instanceof ApiError && (err.status === 403 || err.status === 404 || err.status === 409)) {
        void this.reread(team);
      }
      this.announce(text);
      this.changed();
      return text;
    }
  }

  /** Whether the message belongs to the list on screen (the open conversation, not a thread). */
  private isOpen(message: Message): boolean {
    return message.channel_id === this.selectedTeam && !message.thread_id && conversationOf(message.to, message.from, this.me.id) === this.conversation;
  }

  /**
   * Whether the reader has the message on screen, here or in another tab: its conversation; for a
   * thread reply, its thread open (the conversation shows only "1 reply" under the root).
   */
  private lookingAt(message: Message): boolean {
    const tag = conversationTag(message, this.me.id);
    if (message.thread_id) {
      const here = tag === this.shownTag() && this.threadRoot === message.thread_id;
      return here || (this.attention?.lookedAtElsewhere(threadTag(tag, message.thread_id)) ?? false);
    }
    return tag === this.shownTag() || (this.attention?.lookedAtElsewhere(tag) ?? false);
  }

  /** A notification was clicked: its conversation opens, and its thread for a reply. */
  private reveal(message: Message): void {
    const team = message.channel_id;
    if (!this.teams.has(team)) return;
    if (this.selectedTeam !== team) this.selectTeam(team);
    const conversation = conversationOf(message.to, message.from, this.me.id);
    if (this.conversation !== conversation) this.openConversation(conversation);
    if (message.thread_id) this.openThread(message.thread_id);
  }

  /** Mentions (DMs to the reader among them) waiting in every team: the title's number. */
  mentionsWaiting(): number {
    return waitingIn(this.teamReads()).mentions;
  }

  /** The badges' own counts: the sidebar's teams, their ReadState. */
  private teamReads(): ReadState[] {
    return [...this.teams.keys()].map((id) => this.read(id));
  }

  private showTitle(): void {
    if (!this.attention) return;
    const title = tabTitle(this.attention.base, this.teamReads());
    if (title === this.shownTitle) return;
    this.shownTitle = title;
    this.attention.title(title);
  }

  private announceMessage(message: Message): void {
    const teamName = this.teams.get(message.channel_id)?.name ?? "a team";
    const here = this.isOpen(message);
    // As a notification says it: mentions as @Name, an attachment in words ("sent an image").
    const what = plainBody(message, this.names);
    this.announce(here ? `${this.name(message.from)}: ${what}` : `New message from ${this.name(message.from)} in ${teamName}`);
  }

  private announce(text: string): void {
    this.announcement = text;
  }

  /** A notice; one with a `topic` replaces the earlier one of the same topic (the latest state). */
  private notify(kind: Notice["kind"], text: string, topic?: string): void {
    const id = ++this.noticeSeq;
    const others = topic === undefined ? this.notices : this.notices.filter((n) => n.topic !== topic);
    this.notices = [...others.slice(-3), { id, kind, text, ...(topic === undefined ? {} : { topic }) }];
    this.announce(text);
    // News ("You were added to X") goes by itself; an error waits to be read and dismissed.
    if (kind === "info") this.clock.setTimeout(() => this.dismissNotice(id), INFO_NOTICE_MS);
    this.changed();
  }

  private fail(what: string, err: unknown): void {
    this.notify("error", `${what}: ${readable(err)}`);
  }
}

/** An error as a person reads it; a 403 says plainly that the role does not allow it. */
export function readable(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 403) return `Not allowed: ${err.readable}`;
    // Per-field reasons say what to change; the general sentence around them adds nothing.
    if (err.details && Object.keys(err.details).length > 0) return describeDetails(err.details);
    return err.readable;
  }
  return err instanceof Error ? err.message : String(err);
}
