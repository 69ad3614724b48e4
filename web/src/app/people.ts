// Who is who, by user id: the names the page shows, looked up once each, a few at a time.
import { type Api, ApiError } from "../api/client";
import { type BusyRetry, whileBusy } from "../api/retry";
import type { User } from "../api/types";
import type { Clock } from "../auth/keeper";
import { Slots } from "../state/slots";
import { shownName } from "../text/bidi";

const LOOKUPS_AT_ONCE = 6;
/** A busy server (429: nginx allows a burst of lookups per address, and a big team's list asks
 * for every member at once) is asked again after a pause; a network failure (0) too. */
const LOOKUP_RETRY: BusyRetry = {
  tries: 5,
  pauseMs: 1000,
  busy: (err) => err instanceof ApiError && (err.status === 429 || err.status === 503 || err.status === 0),
};

export class People {
  readonly users = new Map<string, User>();
  private readonly fetches = new Map<string, Promise<void>>();
  /** Name lookups in flight at once: a big team's members are not all asked for in one burst. */
  private readonly lookups = new Slots(LOOKUPS_AT_ONCE);
  /** Users the server would not show (deleted, or not visible): their name stays "…". */
  private readonly unknown = new Set<string>();
  /** Names told by `profile` frames while that user's lookup was in flight. */
  private readonly renamedMeanwhile = new Map<string, string>();

  constructor(
    private readonly api: Pick<Api, "user">,
    private readonly clock: Clock,
    /** Called when a name arrived. */
    private readonly changed: () => void,
    me: User,
  ) {
    this.users.set(me.id, me);
  }

  /** A user as the page now knows them (the signed-in user renamed). */
  known(user: User): void {
    this.users.set(user.id, user);
    this.changed();
  }

  /** A user renamed themselves (a `profile` frame): one not looked up yet gets the new name
   * from the lookup when the page needs it; one being looked up gets it once the lookup is
   * back (its answer may predate the rename). */
  renamed(id: string, name: string): void {
    const shown = shownName(name);
    if (this.fetches.has(id)) this.renamedMeanwhile.set(id, shown);
    const known = this.users.get(id);
    if (!known || known.name === shown) return;
    this.users.set(id, { ...known, name: shown });
    this.changed();
  }

  /** The name, or "…" while it is looked up (once) or when it cannot be. */
  name(id: string): string {
    const known = this.users.get(id);
    // An author who left the team, or a member added since the list was read: look them up once.
    if (!known && !this.unknown.has(id)) void this.ensure([id]);
    return known?.name ?? "…";
  }

  /** Looks up every one not known yet; resolves once each lookup has ended, found or not. */
  async ensure(ids: readonly string[]): Promise<void> {
    await Promise.all(
      ids
        .filter((id) => !this.users.has(id) && !this.unknown.has(id))
        .map((id) => {
          let f = this.fetches.get(id);
          if (!f) {
            f = this.lookups.run(() => this.lookUp(id)).finally(() => this.fetches.delete(id));
            this.fetches.set(id, f);
          }
          return f;
        }),
    );
  }

  /** One user's name; only a user that does not exist, or a server that stays busy, leaves the
   * name unknown until the next load. */
  private async lookUp(id: string): Promise<void> {
    try {
      const u = await whileBusy(this.clock, LOOKUP_RETRY, () => this.api.user(id));
      this.users.set(id, { ...u, name: this.renamedMeanwhile.get(id) ?? shownName(u.name) });
      this.changed();
    } catch {
      this.unknown.add(id);
    } finally {
      this.renamedMeanwhile.delete(id);
    }
  }
}
