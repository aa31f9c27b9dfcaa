/**
 * The service's vocabulary: one name for one idea. Everything here is data; nothing does I/O.
 *
 * - A *token kind* is what one cache record holds: the access token or one of the two tickets.
 * - An *app* is one configured WeChat appid with its AppSecret (`AppConfig`); the secret is never
 *   called a credential of the token, and never leaves `lib/secrets` and the WeChat client.
 * - A *record* is what the cache stores for one (kind, appid).
 */

/** What one record holds: the access token or one of the ticket kinds. */
export type TokenKind = 'access_token' | 'jsapi_ticket' | 'wx_card_ticket' | 'agent_config_ticket';

/**
 * A ticket type: `jsapi` (WeChat's JS-SDK ticket, or WeCom's enterprise jsapi_ticket), `wx_card`
 * (WeChat's card api_ticket), `agent_config` (a WeCom app's ticket for `wx.agentConfig`).
 */
export type TicketType = 'jsapi' | 'wx_card' | 'agent_config';

/** Which WeChat endpoint issues an app's access tokens. */
export type TokenApi = 'classic' | 'stable';

/** Which endpoint issues an app's access tokens: one of WeChat's two, or WeCom's `gettoken` (`wecom`). */
export type TokenSource = TokenApi | 'wecom';

/** How a record's value was obtained, which decides what a later fetch does to it. */
export type Origin = TokenSource | 'ticket';

/** Where a served value came from, reported per request as data. */
export type Source = 'memory' | 'cache' | 'wechat' | 'peer' | 'stale';

/** Why the service called WeChat. */
export type FetchReason =
  | 'missing'
  | 'window'
  | 'expired'
  | 'passive'
  | 'schedule'
  | 'outage'
  | 'ticket_retry'
  /** A stable token for a getApiQuota check whose access token WeChat called dead. */
  | 'quota_check';

/**
 * The WeChat endpoints the service calls: `/cgi-bin/token`, `/cgi-bin/stable_token`,
 * `/cgi-bin/ticket/getticket`, the operator action `/cgi-bin/clear_quota/v2`, and getApiQuota
 * (`/cgi-bin/openapi/quota/get`).
 */
export type Endpoint = 'token' | 'stable_token' | 'ticket' | 'clear_quota' | 'quota';

/**
 * The WeCom endpoints: `/cgi-bin/gettoken`, `/cgi-bin/get_jsapi_ticket` and
 * `/cgi-bin/ticket/get?type=agent_config`.
 */
export type WeComEndpoint = 'wecom_gettoken' | 'wecom_jsapi_ticket' | 'wecom_agent_config_ticket';

/** Every upstream endpoint, WeChat's and WeCom's. */
export type ApiEndpoint = Endpoint | WeComEndpoint;

/** WeChat appids: `wx` followed by 16 lower-case hex digits. */
export const WECHAT_APPID_PATTERN = /^wx[0-9a-f]{16}$/;

/**
 * A WeCom self-built app: `corpid:agentid`. Corp IDs are `ww` (older corps: `wx`) followed by 16
 * lower-case hex digits; agent IDs are digits without a leading zero (one app, one spelling).
 */
export const WECOM_APP_ID_PATTERN = /^(w[wx][0-9a-f]{16}):([1-9][0-9]{0,9})$/;

/**
 * Every app id the service serves, on every channel, in client-key scopes and in cache keys: a
 * WeChat appid or a WeCom `corpid:agentid` (at most 29 printable characters, no space: safe in a
 * Memcached key).
 */
export const APPID_PATTERN = /^(?:wx[0-9a-f]{16}|w[wx][0-9a-f]{16}:[1-9][0-9]{0,9})$/;

/** The corp and agent of a WeCom app id, or undefined for a WeChat appid. */
export function weComApp(appid: string): { corpid: string; agentid: string } | undefined {
  const match = WECOM_APP_ID_PATTERN.exec(appid);
  return match ? { corpid: match[1] as string, agentid: match[2] as string } : undefined;
}

/** One configured app: a WeChat app, or a WeCom app (`tokenApi` `wecom`, `appid` `corpid:agentid`). */
export interface AppConfig {
  appid: string;
  /**
   * The AppSecret (WeCom: the app's Secret): sent to the token endpoints only; never logged, cached
   * or returned. Absent when it lives in its own secret (WECHAT_SECRET_PREFIX + the app's secret
   * name), read on first use through `SecretSource.appSecret` (see `requireCredentials`).
   */
  secret?: string;
  tokenApi: TokenSource;
  /** Ticket types the schedule keeps fresh for this app. */
  tickets: TicketType[];
}

/** An HTTP client: identified by the SHA-256 of its key, scoped to a list of appids. */
export interface ClientKey {
  id: string;
  keySha256: Buffer;
  appids: ReadonlySet<string>;
}

/** An app with its AppSecret at hand: what WeChat's token endpoints and clear_quota take. */
export type AppWithSecret = AppConfig & { secret: string };

/** The parsed credentials secret: the apps and the HTTP clients. */
export interface Credentials {
  apps: ReadonlyMap<string, AppConfig>;
  clients: readonly ClientKey[];
}

/**
 * One cache record per (kind, appid), stored as one JSON value. Times are epoch milliseconds of this
 * service's clock.
 */
export interface TokenRecord {
  kind: TokenKind;
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
  /**
   * A classic app's record rebuilt after its record went missing: until then it is refreshed from the
   * stable endpoint, because tokens handed out before the loss may still be promised (lifetime.ts).
   */
  classicNotBeforeMs?: number;
  /**
   * A ticket first seen with no record of when WeChat issued it: WeChat answers an existing ticket
   * with the full `expires_in` again, so its remaining life is unknown and nothing is promised.
   */
  ageUnknown?: true;
  /** A ticket: how much earlier than `fetchedAtMs` WeChat may have issued it (its birth's uncertainty). */
  bornWithinMs?: number;
}

/** What WeChat granted: an opaque value and the lifetime it announced. */
export interface Grant {
  value: string;
  /** WeChat's `expires_in`, counted from when WeChat answered. */
  expiresInSeconds: number;
}

export function ticketKind(type: TicketType): TokenKind {
  return `${type}_ticket`;
}

export function ticketType(kind: Exclude<TokenKind, 'access_token'>): TicketType {
  return kind.slice(0, -'_ticket'.length) as TicketType;
}

/** WeChat's getApiQuota answer for one endpoint (`quota{daily_limit, used, remain}`). */
export interface ApiQuota {
  dailyLimit: number;
  used: number;
  remain: number;
}

/** Every call carries the invocation's deadline (epoch ms): no wait or fetch goes past it. */
export interface CallContext {
  deadlineAtMs: number;
}

/** A value served to a caller, with where it came from and what is promised about it. */
export interface Served {
  kind: TokenKind;
  appid: string;
  value: string;
  source: Source;
  /** Seconds the value is guaranteed to stay valid (see token/lifetime.ts). */
  expiresIn: number;
  /** Epoch seconds: now + expiresIn. */
  expiresAt: number;
  generation: number;
  /** When the value was obtained from WeChat (epoch ms). */
  fetchedAtMs: number;
}
