/**
 * The cache record of one (kind, appid) and the keys beside it: how a record is built from what
 * WeChat granted, encoded, validated when read back, and how long Memcached keeps it.
 */
import {
  APPID_PATTERN,
  type Grant,
  type Origin,
  type TokenKind,
  type TokenRecord,
  weComApp,
} from '../domain.ts';
import type { KeyValueStore, Telemetry } from '../ports.ts';
import { type LifetimeSettings, naturalExpiryMs, refreshAtMs, unknownAgeRecheckMs } from './lifetime.ts';

/** The record format version: part of every key, so a format change never reads old values. */
export const RECORD_FORMAT = 'v1';

/** Cache keys: namespaced, versioned, never containing a secret or a token. */
export interface RecordKeys {
  record: string;
  lock: string;
  failed: string;
}

export function recordKeys(prefix: string, kind: TokenKind, appid: string): RecordKeys {
  const base = `${prefix}:${RECORD_FORMAT}`;
  return {
    record: `${base}:rec:${kind}:${appid}`,
    lock: `${base}:lock:${kind}:${appid}`,
    /** The last lock holder's failure, briefly: its waiters share it instead of repeating the call. */
    failed: `${base}:failed:${kind}:${appid}`,
  };
}

/**
 * A guarded upstream: an endpoint, and for getticket the ticket kind (each kind's calls are counted
 * and its failures remembered on their own); WeCom's gettoken and its two ticket calls.
 */
export type UpstreamName =
  | 'token'
  | 'stable_token'
  | 'ticket_jsapi'
  | 'ticket_wx_card'
  | 'wecom_gettoken'
  | 'wecom_ticket_jsapi'
  | 'wecom_ticket_agent_config';

export function upstreamKeys(prefix: string, upstream: UpstreamName, appid: string) {
  const base = `${prefix}:${RECORD_FORMAT}`;
  return {
    /** A remembered failure (credentials, IP, quota breaker), shared by every instance. */
    failure: `${base}:fail:${upstream}:${appid}`,
    /** Calls on one WeChat quota day (UTC+8). */
    dailyCalls: (day: string) => `${base}:calls:${upstream}:${appid}:${day}`,
    /** Calls made in the last minute of the day before `day`: WeChat may count them on `day`. */
    edgeCalls: (day: string) => `${base}:calls-edge:${upstream}:${appid}:${day}`,
    /** The last failure, whatever it was, for `status` (a day). */
    lastError: `${base}:lasterr:${upstream}:${appid}`,
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

export function encodeRecord(record: TokenRecord): string {
  return JSON.stringify(record);
}

const KINDS: ReadonlySet<string> = new Set([
  'access_token',
  'jsapi_ticket',
  'wx_card_ticket',
  'agent_config_ticket',
]);
const ORIGINS: ReadonlySet<string> = new Set(['classic', 'stable', 'wecom', 'ticket']);

/**
 * Parses a cached value; anything that is not exactly a record of this kind and appid (corrupt,
 * truncated, written by something else) is a miss, never an exception.
 */
export function decodeRecord(text: string | null, kind: TokenKind, appid: string): TokenRecord | null {
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
    r.writer.length <= 64 &&
    (r.classicNotBeforeMs === undefined || isTime(r.classicNotBeforeMs)) &&
    (r.ageUnknown === undefined || (r.ageUnknown === true && r.origin === 'ticket')) &&
    (r.bornWithinMs === undefined ||
      (Number.isSafeInteger(r.bornWithinMs) && (r.bornWithinMs as number) > 0));
  if (!ok) return null;
  return Object.freeze({
    kind,
    appid,
    value: r.value as string,
    origin: r.origin as Origin,
    fetchedAtMs: r.fetchedAtMs as number,
    expiresAtMs: r.expiresAtMs as number,
    refreshAtMs: r.refreshAtMs as number,
    generation: r.generation as number,
    writer: r.writer as string,
    ...(r.classicNotBeforeMs === undefined ? {} : { classicNotBeforeMs: r.classicNotBeforeMs as number }),
    ...(r.ageUnknown ? { ageUnknown: true as const } : {}),
    ...(r.bornWithinMs === undefined ? {} : { bornWithinMs: r.bornWithinMs as number }),
  });
}

function isTime(value: unknown): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/** How soon a WeCom token handed back past its counted life is asked for again. */
const WECOM_DYING_TOKEN_RECHECK_MS = 5000;

/** What one upstream call produced: the grant, how it was obtained, and when the request was sent. */
export interface Fetched {
  grant: Grant;
  origin: Origin;
  sentAtMs: number;
  /** A stable token fetched for a classic app after a record loss: when classic fetches may resume. */
  classicNotBeforeMs?: number;
}

/**
 * The record for a value just fetched. `previous` is the record it replaces, if any: when WeChat
 * handed back the same value (a stable token inside its life, an existing ticket), the value's life
 * still counts from when it was first seen. A ticket with no previous record has an unknown age.
 */
export function buildRecord(
  target: { kind: TokenKind; appid: string },
  fetched: Fetched,
  previous: TokenRecord | null,
  jitter: number,
  settings: LifetimeSettings,
  writer: string,
): TokenRecord {
  const { grant, origin, sentAtMs } = fetched;
  const base = { kind: target.kind, appid: target.appid, value: grant.value, origin, writer };
  const generation = (previous?.generation ?? 0) + 1;
  if (origin === 'ticket') {
    const wecom = weComApp(target.appid) !== undefined;
    return { ...base, generation, ...ticketLife(grant, sentAtMs, previous, jitter, settings, wecom) };
  }

  let fetchedAtMs = sentAtMs;
  let expiresAtMs = naturalExpiryMs(sentAtMs, grant.expiresInSeconds);
  const same = previous !== null && previous.value === grant.value;
  // A stable token handed back again keeps the life counted from when it was first seen.
  if (same) fetchedAtMs = previous.fetchedAtMs;
  let refresh = refreshAtMs(fetchedAtMs, expiresAtMs, origin, jitter, settings);
  if (same && origin === 'wecom') {
    if (sentAtMs < previous.expiresAtMs) {
      // WeCom handed back the token it holds: asking again before it expires would get it again
      // (lifetime.ts). It lives no longer than first counted, and is asked for again at its end.
      expiresAtMs = Math.min(expiresAtMs, previous.expiresAtMs);
      refresh = expiresAtMs;
    } else {
      // Past the life first counted WeCom still hands it back: alive for a moment more, whatever
      // expires_in says. Nothing is promised, and it is asked for again shortly.
      expiresAtMs = Math.min(expiresAtMs, sentAtMs + WECOM_DYING_TOKEN_RECHECK_MS);
      refresh = sentAtMs;
    }
  }
  return {
    ...base,
    fetchedAtMs,
    expiresAtMs,
    refreshAtMs: Math.max(refresh, fetchedAtMs + 1),
    generation,
    ...(fetched.classicNotBeforeMs === undefined ? {} : { classicNotBeforeMs: fetched.classicNotBeforeMs }),
  };
}

/**
 * A ticket's life. WeChat answers an existing ticket with the full `expires_in` again, so a ticket's
 * life counts from when it was first seen, and a ticket seen with no record of that has an unknown
 * age: nothing is promised, and it is asked for again every `unknownAgeRecheckMs` until WeChat hands
 * out a different one. That one was issued after the previous answer was asked for, so its life counts
 * from then (`bornWithinMs` says how much earlier than its first sight that may be). Past the life
 * counted, a ticket WeChat still hands back is alive for an unknown while: nothing is promised, and it
 * is asked for again at a pace set by how uncertain its birth was — fast enough that the next ticket's
 * birth is known closely.
 */
function ticketLife(
  grant: Grant,
  sentAtMs: number,
  previous: TokenRecord | null,
  jitter: number,
  settings: LifetimeSettings,
  wecom: boolean,
): Pick<TokenRecord, 'fetchedAtMs' | 'expiresAtMs' | 'refreshAtMs' | 'ageUnknown' | 'bornWithinMs'> {
  const lifeMs = grant.expiresInSeconds * 1000;
  const same = previous !== null && previous.value === grant.value;
  const unknown = (recheckMs: number, bornWithinMs?: number) => ({
    fetchedAtMs: sentAtMs,
    expiresAtMs: sentAtMs + lifeMs,
    refreshAtMs: sentAtMs + recheckMs,
    ageUnknown: true as const,
    ...(bornWithinMs ? { bornWithinMs } : {}),
  });
  if (previous === null) return unknown(unknownAgeRecheckMs(lifeMs, wecom));
  if (same && previous.ageUnknown) {
    // Still the same: ask again at the same pace.
    return unknown(Math.max(1, previous.refreshAtMs - previous.fetchedAtMs), previous.bornWithinMs);
  }
  if (!same) {
    // New since the previous answer: born no earlier than when that answer was asked for.
    const bornAtMs = previous.ageUnknown ? previous.fetchedAtMs : sentAtMs;
    const expiresAtMs = bornAtMs + lifeMs;
    const refresh = refreshAtMs(bornAtMs, expiresAtMs, 'ticket', jitter, settings);
    return {
      fetchedAtMs: bornAtMs,
      expiresAtMs,
      refreshAtMs: Math.max(bornAtMs + 1, refresh),
      ...(sentAtMs > bornAtMs ? { bornWithinMs: sentAtMs - bornAtMs } : {}),
    };
  }
  if (sentAtMs < previous.expiresAtMs) {
    // The value we hold, handed back inside the life counted from its first sight.
    return {
      fetchedAtMs: previous.fetchedAtMs,
      expiresAtMs: previous.expiresAtMs,
      refreshAtMs: Math.max(previous.fetchedAtMs + 1, previous.expiresAtMs),
      ...(previous.bornWithinMs ? { bornWithinMs: previous.bornWithinMs } : {}),
    };
  }
  return unknown(dyingRecheckMs(previous.bornWithinMs ?? 0), previous.bornWithinMs);
}

/** How often a ticket past its counted life is asked for again: a tenth of its birth's uncertainty. */
function dyingRecheckMs(bornWithinMs: number): number {
  return Math.max(200, Math.floor(bornWithinMs / 10));
}

/**
 * Reads the record of `target`; anything that is not a valid record of it counts as missing and is
 * reported (`record.invalid`). Throws `cache_unavailable`.
 */
/** The last record decoded per cache key, with the text it came from. */
const lastDecoded = new Map<string, { text: string; record: TokenRecord }>();
/** Records of this many (kind, appid) pairs are kept decoded; past that the memo starts again. */
const DECODED_KEPT = 4096;

export async function readRecord(
  store: KeyValueStore,
  telemetry: Telemetry,
  target: { kind: TokenKind; appid: string; keys: RecordKeys },
): Promise<TokenRecord | null> {
  const text = await store.get(target.keys.record);
  const last = lastDecoded.get(target.keys.record);
  // Between refreshes every read returns the same text: decode it once (records are never changed).
  if (text !== null && last?.text === text) return last.record;
  const record = decodeRecord(text, target.kind, target.appid);
  if (record) {
    if (lastDecoded.size >= DECODED_KEPT) lastDecoded.clear();
    lastDecoded.set(target.keys.record, { text: text as string, record });
  }
  if (text !== null && record === null) {
    telemetry.emit({ event: 'record.invalid', kind: target.kind, appid: target.appid });
  }
  return record;
}

/** Memcached TTL of a record: WeChat's lifetime, so a dead token disappears by itself. */
export function recordTtlSeconds(record: TokenRecord, now: number): number {
  return Math.max(1, Math.ceil((record.expiresAtMs - now) / 1000) + 1);
}

/** A stable per-(kind, appid) number in [0, 1): every instance computes the same refresh moment. */
export function hashJitter(kind: TokenKind, appid: string): number {
  let h = 2166136261;
  for (const ch of `${kind}:${appid}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) / 2 ** 32;
}
