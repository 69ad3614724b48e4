// The messages between the page (session.ts) and the token worker (worker.ts).
import type { AccessGrant } from "./keeper";

export type AuthRequest =
  | { id: number; op: "login"; email: string; password: string }
  | { id: number; op: "register"; email: string; password: string; name: string }
  | { id: number; op: "resume" }
  | { id: number; op: "current" }
  | { id: number; op: "refresh" }
  | { id: number; op: "logout"; force?: boolean; everywhere?: boolean };

export interface WireError {
  status: number;
  code: string;
  message: string;
  details: Record<string, string> | null;
}

export type AuthReply =
  | { id: number; ok: true; grant: AccessGrant | null; confirmed?: boolean }
  | { id: number; ok: false; error: WireError }
  | { id: null; event: "grant"; grant: AccessGrant }
  | { id: null; event: "logged_out"; reason: string; keep: boolean };
