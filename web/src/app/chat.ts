// The signed-in app's state and what changes it, without the DOM: the open team, conversation and
// thread, timelines, read state, typing, presence, and the socket's frames. Views read it and call
// its methods; the teams (Roster), sending (Outbox), notices, what is on screen (OnScreen) and the
// REST actions on messages are modules of their own, tied together here.
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
  type ProfileFrame,
  type ReadFrame,
  type Team,
  type TeamFrame,
  type TypingFrame,
  type UpdateFrame,
  type User,
} from "../api/types";
import type { Clock } from "../auth/keeper";
import type { SocketHandlers, SocketStatus } from "../net/socket";
import { type Names, plainBody, waitingIn } from "../state/attention";
import { Observable } from "../state/observable";
import { PresenceState } from "../state/presence";
import { DEFAULT_EDIT_WINDOW_MS, formerDmPartners } from "../state/roles";
import { loadOlder, SyncQueue, syncChannel } from "../state/sync";
import { ChannelTimeline } from "../state/timeline";
import { conversationOf, TypingState } from "../state/typing";
import { dividerAfterLive, listSeenUpTo, newReplies, newReplyThreads, ownMessageReads, ReadState } from "../state/unread";
import { textProblem } from "../text/limits";
import { decodeMentions } from "../text/mentions";
import { distinctLabels } from "../text/names";
import { uploadAttachment } from "../upload/upload";
import { shownName } from "../text/bidi";
import { Alerts } from "./alerts";
import { ReadMarks } from "./readmarks";
import { type EditOutcome, MessageActions } from "./messages";
import { type Notice, Notices } from "./notices";
import { type Attention, OnScreen } from "./onscreen";
import type { Place } from "./place";
import { Roster } from "./roster";
import { type Conversation, type Draft, Outbox, type Pending, type Sender, type UnsentKeeper, type UploadView } from "./outbox";
import { People } from "./people";

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

const SYNC_RETRY_MS = 2000;
/** A net under the `team` frames (a frame the socket was not there for): see rereadOpenTeam. */
const TEAM_REREAD_MS = 300_000;
/** Files one drop, pick or paste may send. */
export const MAX_FILES_AT_ONCE = 10;

/** A list of teams read this recently still holds at the first hello. */
const TEAMS_FRESH_MS = 2000;

export class ChatModel extends Observable {
  /** The signed-in user (their name changes with `rename`). */
  get me(): User {
    return this.self;
  }
  private self: User;
  status: SocketStatus = "connecting";
  statusDetail = "";
  /** The relay of the current socket (hello.relay), shown for support and used by the tests. */
  relay: string | null = null;
  /** How long authors may edit and delete, as the server said in `hello`. */
  editWindowMs = DEFAULT_EDIT_WINDOW_MS;
  readonly timelines = new Map<string, ChannelTimeline>();
  readonly reads = new Map<string, ReadState>();
  readonly typing: TypingState;
  readonly presence = new PresenceState();
  private readonly outbox: Outbox;
  private readonly place: Place | undefined;
  private readonly onScreen: OnScreen;
  private readonly alerts: Alerts | null;
  private readonly people: People;
  /** Names as this page knows them, for notifications and announcements. */
  private readonly names: Names = { user: (id) => this.users.get(id)?.name, team: (id) => this.teams.get(id)?.name };
  private unwatchTitle: (() => void) | null = null;
  selectedTeam: string | null = null;
  conversation: Conversation = "*";
  threadRoot: string | null = null;
  /** The read mark when the conversation was opened: the "new messages" divider goes after it. */
  dividerAfter: number | null = null;
  /** The read mark when the conversation was opened: replies after it are "new" on their root. */
  private repliesSince: number | null = null;
  /** Per team, live replies from others in threads not opened since they came (session only). */
  private readonly unopenedReplies = new Map<string, Set<string>>();
  /** Threads opened in this visit, and up to which seq their replies were seen there. */
  private readonly openedThreads = new Map<string, number>();
  /** Set by the view from the document's visibility; a model without a view counts as looking. */
  pageVisible = true;

  private readonly api: Api;
  private readonly clock: Clock;
  private readonly socket: SocketLike;
  private readonly sync: SyncQueue;
  private readonly roster: Roster;
  private readonly board: Notices;
  /** Whether a hello came before: the next one is a reconnection. */
  private greeted = false;
  private readonly readMarks: ReadMarks;
  private readonly olderInFlight = new Map<string, Promise<number>>();
  private readonly actions: MessageActions;
  private stopped = false;

  constructor(deps: ChatDeps) {
    super();
    this.api = deps.api;
    this.self = { ...deps.me, name: shownName(deps.me.name) };
    this.clock = deps.clock;
    this.board = new Notices(this.clock, () => this.changed());
    this.place = deps.place;
    this.onScreen = new OnScreen(
      deps.attention,
      this.me.id,
      () => ({ visible: this.pageVisible, team: this.selectedTeam, conversation: this.conversation, thread: this.threadRoot }),
      () => this.teamReads(),
    );
    // The title follows every change: live messages, reads here or elsewhere, resumes.
    if (deps.attention) this.unwatchTitle = this.subscribe(() => this.onScreen.follow());
    this.typing = new TypingState(this.me.id);
    this.people = new People(this.api, this.clock, () => this.changed(), this.me);
    this.alerts = deps.attention
      ? new Alerts({
          attention: deps.attention,
          clock: this.clock,
          me: this.me.id,
          names: this.names,
          ensureUsers: (ids) => this.ensureUsers(ids),
          known: (id) => this.users.has(id),
          lookingAt: (message) => this.onScreen.lookingAt(message),
          inThread: (root) => this.wroteIn(root),
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
      fatal: (reason) => this.board.notify("error", reason),
    });
    this.outbox = new Outbox({
      upload: (team, file, progress, signal) => uploadAttachment(this.api, team, file, progress, undefined, undefined, signal),
      socket: this.socket,
      clock: this.clock,
      newId: deps.newId ?? (() => crypto.randomUUID()),
      changed: () => this.changed(),
      announce: (text) => this.board.announce(text),
      tell: (text) => this.board.notify("info", text),
      ...(deps.unsent ? { kept: deps.unsent } : {}),
    });
    this.readMarks = new ReadMarks({
      clock: this.clock,
      me: this.me.id,
      timeline: (team) => this.timeline(team),
      read: (team) => this.read(team),
      older: (team) => this.older(team),
      joining: (team) => this.roster.joining.has(team),
      markRead: (team, seq) => this.api.markRead(team, seq),
      changed: () => this.changed(),
      fail: (what, err) => this.board.fail(what, err),
    });
    this.actions = new MessageActions({
      api: this.api,
      clock: this.clock,
      me: this.me.id,
      timeline: (team) => this.timeline(team),
      notices: this.board,
      changed: () => this.changed(),
    });
    this.roster = new Roster({
      api: this.api,
      clock: this.clock,
      me: this.me.id,
      notices: this.board,
      place: this.place,
      read: (team) => this.read(team),
      changed: () => this.changed(),
      stopped: () => this.stopped,
      ensureUsers: (ids) => this.ensureUsers(ids),
      loadPresence: (team) => this.loadPresence(team),
      selected: () => this.selectedTeam,
      selectTeam: (team) => this.selectTeam(team),
      listed: (all, first) => this.listed(all, first),
      joined: (team) => this.joined(team),
      dropped: (team, members) => this.dropped(team, members),
    });
  }

  async start(): Promise<void> {
    await this.roster.load(); // which opens a team: the one this tab had open, else the first
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
    if (this.pageVisible) void this.roster.reload();
    this.clock.setTimeout(() => this.rereadOpenTeam(), TEAM_REREAD_MS);
  }

  /** The session ended. `keepUnsent` when the user did not choose it: what they were writing,
   * sent or not, waits for their next login in this tab. */
  stop(keepUnsent = false): void {
    this.stopped = true;
    this.socket.stop();
    this.readMarks.stop();
    this.outbox.signOut(keepUnsent, (p) => this.readable(p));
    this.unwatchTitle?.();
    this.unwatchTitle = null;
    this.onScreen.signOut();
  }

  // --- reading -----------------------------------------------------------------------------

  /** The user's teams, by id. */
  get teams(): ReadonlyMap<string, Team> {
    return this.roster.teams;
  }

  /** The team list has been read once: until then "no teams" is not known yet. */
  get teamsLoaded(): boolean {
    return this.roster.loaded;
  }

  sortedTeams(): Team[] {
    return this.roster.sorted();
  }

  get notices(): readonly Notice[] {
    return this.board.list;
  }

  /** The last thing said, for the page's live region. */
  get announcement(): string {
    return this.board.announcement;
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
    const { held, since } = this.freshReplies(team);
    return newReplies(held, since, this.me.id, this.openedThreads);
  }

  /**
   * What counts as a new reply: those since the conversation was opened, and those that came
   * live this session into a thread not opened since (the read mark passes them at the end of
   * the list, so without this a visit elsewhere would take every pointer to them away).
   */
  private freshReplies(team: string): { held: readonly Message[]; since: number | null } {
    const all = this.timeline(team).messages();
    const unopened = this.unopenedReplies.get(team);
    if (!unopened || unopened.size === 0) return { held: all, since: this.repliesSince };
    const since = this.repliesSince;
    return { held: all.filter((m) => unopened.has(m.id) || (since !== null && m.seq > since)), since: Number.NEGATIVE_INFINITY };
  }

  /**
   * The open conversation's threads with new replies from others, newest first, each with its
   * root's author and a plain excerpt when the root is held: the list shows them only beside
   * roots that may be far above the view, so the conversation points to them too.
   */
  threadsWithNewReplies(team: string): { root: string; count: number; author: string | null; excerpt: string }[] {
    const t = this.timeline(team);
    const conversation = this.conversation;
    const { held, since } = this.freshReplies(team);
    const found = newReplyThreads(held, since, this.me.id, this.openedThreads, (m) => conversationOf(m.to, m.from, this.me.id) === conversation);
    return found.map(({ root, count }) => {
      const m = t.get(root);
      return {
        root,
        count,
        author: m ? m.from : null,
        excerpt: !m ? "" : m.deleted ? "a deleted message" : plainBody(m, { user: (id) => this.people.users.get(id)?.name }),
      };
    });
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

  /** Former members the user has DMs with among the held messages (read-only conversations). */
  formerDmPartners(team: string): string[] {
    const members = this.teams.get(team)?.members ?? [];
    return formerDmPartners(this.timeline(team).messages(), members, this.me.id);
  }

  /** Everyone the page has a name for, by id. */
  get users(): ReadonlyMap<string, User> {
    return this.people.users;
  }

  name(user: string): string {
    return this.people.name(user);
  }

  /** How the team's DM list and a DM's header show each person, by id: their name, with their
   * email when another member, or a former DM partner, has a name that looks the same. One call
   * for the whole list: it reads every name, and the former partners from the whole timeline. */
  dmLabels(team: string): Map<string, string> {
    const ids = [...(this.teams.get(team)?.members ?? []), ...this.formerDmPartners(team)].filter((id) => id !== this.me.id);
    return distinctLabels(ids.map((id) => ({ id, name: this.name(id), email: this.users.get(id)?.email ?? null })));
  }

  /** Who is typing in the open conversation's box, or in a thread's (`thread`) in it. */
  typingNames(thread: string | null = null): string[] {
    if (!this.selectedTeam) return [];
    return this.typing.who(this.selectedTeam, this.conversation, this.clock.now(), thread).map((u) => this.name(u));
  }

  /** Whether to offer "Turn on notifications": the browser has them and the user was never asked. */
  canAskToNotify(): boolean {
    return this.onScreen.canAsk();
  }

  /** The user asked for notifications (from their click: the browser asks them nowhere else). */
  async askToNotify(): Promise<void> {
    await this.onScreen.ask();
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
    void this.roster.refreshMembers(team);
  }

  openConversation(conversation: Conversation): void {
    this.conversation = conversation;
    if (this.selectedTeam) this.place?.save(this.selectedTeam, conversation);
    this.threadRoot = null;
    // No mark to go by (none known, or a newcomer's not written yet): no divider, nothing "new".
    const team = this.selectedTeam;
    this.dividerAfter = team && !this.readMarks.unmarked(team) ? this.read(team).lastRead : null;
    this.repliesSince = this.dividerAfter;
    this.openedThreads.clear();
    this.onScreen.dismissShown();
    this.changed();
  }

  openThread(root: string | null): void {
    const team = this.selectedTeam;
    // What the closing thread showed was seen; a reply that comes after it closed is new.
    const closing = this.threadRoot;
    if (closing && closing !== root && team) {
      const shown = this.threadView(team, closing).reduce((top, m) => Math.max(top, m.seq), this.timeline(team).cursor ?? -1);
      this.openedThreads.set(closing, shown);
    }
    this.threadRoot = root;
    if (root) this.openedThreads.set(root, Number.POSITIVE_INFINITY);
    if (root && team) {
      const unopened = this.unopenedReplies.get(team);
      const t = this.timeline(team);
      if (unopened) for (const id of unopened) if (t.get(id)?.thread_id === root) unopened.delete(id);
      void this.actions.loadThread(team, root);
    }
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
      this.board.fail("Could not load older messages", err);
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
    this.onScreen.dismissShown();
    this.onScreen.tellLooking();
  }

  // --- sending -----------------------------------------------------------------------------

  /** Sends a text, or returns why the server would refuse it (then nothing is sent). */
  sendText(text: string, threadId: string | null = null): string | null {
    const team = this.selectedTeam;
    if (!team) return "No team is open.";
    const problem = textProblem(text);
    if (problem) return problem;
    const to = this.addressee(team, threadId);
    this.outbox.send({ channel: team, to, threadId }, "text", text);
    this.typing.sent(team, to, threadId);
    return null;
  }

  /** A keystroke in a composer (a thread's: `threadId`): a typing signal, at most every few
   * seconds, to whom the message would go, naming the thread so pages show it there. */
  typed(threadId: string | null = null): void {
    const team = this.selectedTeam;
    if (!team) return;
    const to = this.addressee(team, threadId);
    if (!this.typing.shouldSend(team, to, this.clock.now(), threadId)) return;
    this.socket.send({ type: "typing", channel_id: team, to, ...(threadId ? { thread_id: threadId } : {}) });
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

  /** A message box opens (see Outbox.openBox) and closes (Outbox.closeBox). */
  openBox(key: string): string {
    return this.outbox.openBox(key);
  }

  closeBox(key: string, text: string): void {
    this.outbox.closeBox(key, text);
  }

  keepUnsent(key: string, text: string): void {
    // Also for a team the user was just removed from (its boxes hand their text over as they
    // close): kept for if they are added back before the tab reloads (Outbox.dropTeam).
    this.outbox.keepUnsent(key, text);
  }

  takeDraft(key: number): void {
    this.outbox.takeDraft(key);
  }

  async sendFile(file: File, threadId: string | null = null): Promise<void> {
    const team = this.selectedTeam;
    if (!team) return;
    const to = this.addressee(team, threadId);
    await this.outbox.sendFile({ channel: team, to, threadId }, file);
  }

  /**
   * Several files (a drop, the picker, a paste): sent one after another, so their messages come
   * in the order given; at most MAX_FILES_AT_ONCE, the rest refused with a notice.
   */
  async sendFiles(files: readonly File[], threadId: string | null = null): Promise<void> {
    if (files.length > MAX_FILES_AT_ONCE) {
      this.board.notify("info", `At most ${MAX_FILES_AT_ONCE} files at a time: the first ${MAX_FILES_AT_ONCE} are sent, attach the other ${files.length - MAX_FILES_AT_ONCE} afterwards.`);
    }
    const team = this.selectedTeam;
    if (!team) return;
    await this.outbox.sendFiles({ channel: team, to: this.addressee(team, threadId), threadId }, files.slice(0, MAX_FILES_AT_ONCE));
  }

  retryUpload(key: number): void {
    this.outbox.retryUpload(key);
  }

  dismissUpload(key: number): void {
    this.outbox.dismissUpload(key);
  }

  cancelUpload(key: number): void {
    this.outbox.cancelUpload(key);
  }

  /** Saves an edit (see MessageActions.edit). */
  async edit(id: string, text: string): Promise<EditOutcome> {
    const team = this.selectedTeam;
    return team ? this.actions.edit(team, id, text) : "retry";
  }

  /** Whether the selected team's message `id` is deleted now (an edit of it cannot be saved). */
  isDeleted(id: string): boolean {
    const team = this.selectedTeam;
    return team !== null && this.timeline(team).get(id)?.deleted === true;
  }

  /** Says that the message being edited was deleted meanwhile (see MessageActions.editGone). */
  editGone(): void {
    this.actions.editGone();
  }

  async remove(id: string): Promise<void> {
    const team = this.selectedTeam;
    if (team) await this.actions.remove(team, id);
  }

  async toggleReaction(id: string, emoji: string): Promise<void> {
    const team = this.selectedTeam;
    if (team) await this.actions.toggleReaction(team, id, emoji);
  }

  /** The attachment's metadata and a download URL (see MessageActions.attachment). */
  attachment(id: string): Promise<Attachment> {
    return this.actions.attachment(id);
  }

  // --- teams (the roster's; see app/roster.ts) ---------------------------------------------

  /** The panel's opening: the team as the server has it now (its roles decide the buttons). */
  refreshTeam(team: string): Promise<void> {
    return this.roster.refresh(team);
  }

  createTeam(name: string, icon: string, tags: string[]): Promise<string | null> {
    return this.roster.create(name, icon, tags);
  }

  updateTeam(team: string, patch: { name?: string; icon?: string; meta_tags?: string[] }): Promise<string | null> {
    return this.roster.update(team, patch);
  }

  setTeamActive(team: string, active: boolean): Promise<string | null> {
    return this.roster.setActive(team, active);
  }

  addMember(team: string, email: string): Promise<string | null> {
    return this.roster.addMember(team, email);
  }

  removeMember(team: string, user: string): Promise<string | null> {
    return this.roster.removeMember(team, user);
  }

  setAdmin(team: string, user: string, admin: boolean): Promise<string | null> {
    return this.roster.setAdmin(team, user, admin);
  }

  transfer(team: string, user: string): Promise<string | null> {
    return this.roster.transfer(team, user);
  }

  leave(team: string): Promise<string | null> {
    return this.roster.leave(team);
  }

  // --- the account -------------------------------------------------------------------------

  /** A new display name for the user; the API's refusal is thrown (the form shows it per field).
   * Other members' pages, and this user's other tabs, hear it in a `profile` frame. */
  async rename(name: string): Promise<void> {
    const user = await this.api.renameMe(name);
    this.self = { ...this.self, name: shownName(user.name) };
    this.people.known(this.self);
    this.changed();
  }

  /** A new password; every other login of the account ends. The refusal is thrown. */
  async changePassword(current: string, next: string): Promise<void> {
    await this.api.changePassword(current, next);
  }

  dismissNotice(id: number): void {
    this.board.dismiss(id);
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
    const stale = this.greeted || (this.teamsLoaded && this.clock.now() - this.roster.readAt > TEAMS_FRESH_MS);
    this.greeted = true;
    if (channels.size !== known.size || [...channels].some((c) => !known.has(c))) void this.roster.load();
    else if (stale) void this.roster.reload();
    else if (!this.teamsLoaded) {
      // The list read failed, but hello says it holds exactly these (none, say): it is known now.
      this.roster.loaded = true;
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
        void this.roster.onMembership(frame as unknown as MembershipFrame);
        break;
      case "team":
        this.roster.heard(frame as unknown as TeamFrame);
        break;
      case "read":
        this.onReadElsewhere(frame as unknown as ReadFrame);
        break;
      case "profile": {
        const { user_id: id, name } = frame as unknown as ProfileFrame;
        if (typeof id !== "string" || typeof name !== "string") break;
        // The user's own new name, from another tab: shown here too.
        if (id === this.me.id) this.self = { ...this.self, name: shownName(name) };
        this.people.renamed(id, name);
        break;
      }
      case "presence": {
        const presence = frame as unknown as PresenceFrame;
        this.presence.apply(presence);
        // Someone added while this page was open: an online newcomer's presence may come
        // before the `team` frame that says so.
        if (presence.status === "online" && this.teams.get(presence.channel_id)?.members.includes(presence.user_id) === false) {
          void this.roster.refreshMembers(presence.channel_id);
        }
        break;
      }
      case "resync":
        for (const [team, t] of this.timelines) if (t.loaded || t.isResuming) void this.sync.request(team);
        // What was missed live was never counted here (after a hello, its unread counts cover
        // the gap; a resync brings none): the server's counts include it.
        void this.roster.load();
        break;
      default:
        return; // a type this client does not know: ignored, as the contract says
    }
    this.changed();
  }

  private onMessage(message: Message): void {
    const team = message.channel_id;
    if (!this.teams.get(team)?.members.includes(message.from)) void this.roster.refreshMembers(team);
    this.typing.stopped(team, message.to, message.from, message.thread_id ?? null);
    const t = this.timeline(team);
    // News, not again something held (a page brought it first) or from below what is held (a
    // redelivery): a thread reply shares its seq with its root's change, hence not above.
    const news = !t.get(message.id) && (t.cursor === null || message.seq >= t.cursor);
    t.live(message);
    this.outbox.settle([message]);
    if (news && message.from === this.me.id) this.ownMessageRead(team, t, message);
    if (news && message.thread_id && message.from !== this.me.id && !(this.selectedTeam === team && this.threadRoot === message.thread_id)) {
      let unopened = this.unopenedReplies.get(team);
      if (!unopened) this.unopenedReplies.set(team, (unopened = new Set()));
      unopened.add(message.id);
    }
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
    if (p && error.code === "forbidden") void this.roster.refreshMembers(p.channel);
    // Errors without a client_msg_id answer typing signals (rate limits): nothing to show.
  }

  // --- internals ---------------------------------------------------------------------------

  /**
   * Another of the user's sockets marked read up to a seq. Recounted here from the held messages
   * only when they are all of the team above it; otherwise the server's counts, which a read
   * sent before this frame is in, replace ours.
   */
  /**
   * The user's own message moved their read mark on the server (no `read` frame says so): the
   * page moves it the same way when it holds everything since the mark, so its badges do not
   * jump at the next reload. Not holding it all, it waits for the server's next numbers.
   */
  private ownMessageRead(team: string, t: ChannelTimeline, own: Message): void {
    const r = this.read(team);
    const from = r.lastRead;
    if (from !== null && t.holdsFrom(from + 1) && ownMessageReads(own, t.messages(), this.me.id, from)) r.readElsewhere(own.seq, t.messages());
  }

  private onReadElsewhere(frame: ReadFrame): void {
    const team = frame.channel_id;
    const t = this.timelines.get(team);
    const r = this.read(team);
    if (t?.holdsFrom(frame.seq)) {
      r.readElsewhere(frame.seq, t.messages());
    } else if (r.movedElsewhere(frame.seq)) {
      void this.roster.recount(team);
    }
    this.changed();
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
      for (const m of created) this.typing.stopped(team, m.to, m.from, m.thread_id ?? null);
    } catch (err) {
      t.abortResume();
      if (err instanceof ApiError && err.status === 404) {
        this.roster.lose(team);
        return;
      }
      // The socket may be down, or the server busy: try again shortly (frames keep buffering).
      this.clock.setTimeout(() => void this.sync.request(team), SYNC_RETRY_MS);
    } finally {
      this.changed();
    }
  }

  /** To whom what is written in the open conversation's box, or a thread's, goes. */
  private addressee(team: string, threadId: string | null): string {
    return threadId ? this.replyTo(team, threadId) : this.conversation;
  }

  /** A reply goes where its root went: the team, or the DM between the same two people. */
  private replyTo(team: string, root: string): string {
    const message = this.timeline(team).get(root);
    return message ? conversationOf(message.to, message.from, this.me.id) : "*";
  }

  /** The list of teams was read: the page opens one if none is open. */
  private listed(all: Team[], first: boolean): void {
    // What the tab kept unsent for teams left while it was closed can never be sent.
    if (first) this.outbox.keepOnly((id) => this.teams.has(id));
    if (!this.selectedTeam && all[0]) {
      // After a reload, the team and conversation this tab had open; else the first team.
      const before = this.place?.load();
      const team = before && this.teams.has(before.team) ? before.team : (this.sortedTeams()[0]?.id ?? all[0].id);
      this.selectTeam(team);
      const dm = before?.team === team && before.conversation !== "*" ? before.conversation : null;
      if (dm !== null && dm !== this.me.id && this.teams.get(team)?.members.includes(dm)) this.openConversation(dm);
    }
  }

  /** The user was added to the team: someone with no team open (a new account's welcome page)
   * is taken to it, and its history is read where it is wanted. */
  private joined(team: string): void {
    if (!this.selectedTeam) this.selectTeam(team);
    // History from before the subscription is fetched now; live frames follow.
    const t = this.timeline(team);
    if (t.loaded || team === this.selectedTeam) void this.sync.request(team);
  }

  /** A pending text as its box shows it: mentions by name, among the team's `members`. */
  private readable(p: Pending, members: readonly string[] = this.teams.get(p.channel)?.members ?? []): string {
    return decodeMentions(p.data, members.map((id) => ({ id, name: this.users.get(id)?.name ?? "" })));
  }

  /** The team is no longer held (left, removed, deleted): nothing of it stays in the page. */
  private dropped(team: string, members: readonly string[]): number {
    this.readMarks.forget(team);
    this.unopenedReplies.delete(team);
    this.olderInFlight.delete(team);
    this.timelines.delete(team);
    this.reads.delete(team);
    this.presence.forget(team);
    const unsent = this.outbox.dropTeam(team, (p) => this.readable(p, members));
    if (this.selectedTeam === team) {
      this.selectedTeam = null;
      this.threadRoot = null;
      const next = this.sortedTeams()[0];
      if (next) this.selectTeam(next.id);
    }
    this.changed();
    return unsent;
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

  /** Looks up the names not known yet (see People). */
  ensureUsers(ids: readonly string[]): Promise<void> {
    return this.people.ensure(ids);
  }

  /** Whether the message belongs to the list on screen (the open conversation, not a thread). */
  private isOpen(message: Message): boolean {
    return message.channel_id === this.selectedTeam && !message.thread_id && conversationOf(message.to, message.from, this.me.id) === this.conversation;
  }

  /** Whether the reader wrote the thread's root or a reply in it (of what the open team's
   * timeline holds: a thread of an old root not held counts only by the reader's replies). */
  private wroteIn(root: string): boolean {
    for (const t of this.timelines.values()) {
      if (t.get(root)?.from === this.me.id) return true;
      if (t.messages().some((m) => m.thread_id === root && m.from === this.me.id)) return true;
    }
    return false;
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

  private announceMessage(message: Message): void {
    const teamName = this.teams.get(message.channel_id)?.name ?? "a team";
    const here = this.isOpen(message);
    // As a notification says it: mentions as @Name, an attachment in words ("sent an image").
    const what = plainBody(message, this.names);
    this.board.announce(here ? `${this.name(message.from)}: ${what}` : `New message from ${this.name(message.from)} in ${teamName}`);
  }

}
