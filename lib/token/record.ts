import type { TicketType } from '../config.ts';
import { APPID_PATTERN } from '../config.ts';

/** What a record holds: an access token or one of the two ticket types. */
export type CredentialKind = 'access_token' | 'jsapi_ticket' | 'wx_card_ticket';

/** How the value was obtained, which decides what a later fetch does to it. */
export type Origin = 'classic' | 'stable' | 'ticket';

export function ticketKind(type: TicketType): CredentialKind {
  return type === 'jsapi' ? 'jsapi_ticket' : 'wx_card_ticket';
}

/**
 * One Memcached record per (kind, appid), stored as one JSON value. Times are epoch milliseconds of
 * this service's clock.
 */
export interface CredentialRecord {
  kind: CredentialKind;
  appid: string;
  /** The token or ticket. */
  value: string;
  origin: Origin;
  /** When the request that obtained the value was sent (its life is counted from here: conservative). */
  fetchedAtMs: number;
  /** Natural expiry as WeChat announced it, less a safety margin for clock skew. */
  expiresAtMs: number;
  /** When a refresh may start (the jittered, scaled refresh window), decided by the writer. */
  refreshAtMs: number;
  /** Incremented by every write; lock losers wait for it to move. */
  generation: number;
  /** Which instance wrote it (for logs; never a secret). */
  writer: string;
}

/** The record format version: part of every key, so a format change never reads old values. */
export const RECORD_FORMAT = 'v1';

/** Cache keys: namespaced, versioned, never containing a secret or a token. */
export function recordKeys(prefix: string, kind: CredentialKind, appid: string) {
  const base = `${prefix}:${RECORD_FORMAT}`;
  return {
    record: `${base}:rec:${kind}:${appid}`,
    lock: `${base}:lock:${kind}:${appid}`,
    /** The last lock holder's failure, briefly: its waiters share it instead of repeating the call. */
    failed: `${base}:failed:${kind}:${appid}`,
  };
}

/** The WeChat endpoints whose calls are counted and whose failures are remembered, per appid. */
export type UpstreamName = 'token' | 'stable_token' | 'ticket_jsapi' | 'ticket_wx_card';

export function upstreamKeys(prefix: string, upstream: UpstreamName, appid: string) {
  const base = `${prefix}:${RECORD_FORMAT}`;
  return {
    /** A remembered failure (credentials, IP, quota breaker), shared by every instance. */
    failure: `${base}:fail:${upstream}:${appid}`,
    /** Calls on one WeChat quota day (UTC+8). */
    dailyCalls: (day: string) => `${base}:calls:${upstream}:${appid}:${day}`,
  };
}

export function passiveKeys(prefix: string, appid: string) {
  const base = `${prefix}:${RECORD_FORMAT}`;
  return {
    /** Accepted passive refreshes on one quota day. */
    accepted: (day: string) => `${base}:passive:${appid}:${day}`,
    /** Stable-token force refreshes on one quota day, and the 30-second spacing marker. */
    forceCount: (day: string) => `${base}:force:${appid}:${day}`,
    forceSpacing: `${base}:force-spacing:${appid}`,
  };
}

export function encodeRecord(record: CredentialRecord): string {
  return JSON.stringify(record);
}

const KINDS: ReadonlySet<string> = new Set(['access_token', 'jsapi_ticket', 'wx_card_ticket']);
const ORIGINS: ReadonlySet<string> = new Set(['classic', 'stable', 'ticket']);

/**
 * Parses a cached value; anything that is not exactly a record of this kind and appid (corrupt,
 * truncated, written by something else) is a miss, never an exception.
 */
export function decodeRecord(
  text: string | null,
  kind: CredentialKind,
  appid: string,
): CredentialRecord | null {
  if (text === null || text.length > 8192) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const r = raw as Record<string, unknown>;
  const ok =
    r.kind === kind &&
    KINDS.has(kind) &&
    r.appid === appid &&
    APPID_PATTERN.test(appid) &&
    typeof r.value === 'string' &&
    r.value.length > 0 &&
    r.value.length <= 2048 &&
    typeof r.origin === 'string' &&
    ORIGINS.has(r.origin) &&
    isTime(r.fetchedAtMs) &&
    isTime(r.expiresAtMs) &&
    isTime(r.refreshAtMs) &&
    (r.expiresAtMs as number) > (r.fetchedAtMs as number) &&
    Number.isSafeInteger(r.generation) &&
    (r.generation as number) >= 1 &&
    typeof r.writer === 'string' &&
    r.writer.length <= 64;
  if (!ok) return null;
  return {
    kind,
    appid,
    value: r.value as string,
    origin: r.origin as Origin,
    fetchedAtMs: r.fetchedAtMs as number,
    expiresAtMs: r.expiresAtMs as number,
    refreshAtMs: r.refreshAtMs as number,
    generation: r.generation as number,
    writer: r.writer as string,
  };
}

function isTime(value: unknown): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}
