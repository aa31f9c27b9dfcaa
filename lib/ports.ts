/**
 * The ports the core depends on. Adapters implement them (`lib/store`, `lib/secrets`, `lib/wechat`,
 * `lib/clock.ts`, `lib/telemetry`); tests pass fakes. The core imports nothing else from the outside.
 */
import type { ApiQuota, Credentials, Grant, TicketType, TokenSource } from './domain.ts';
import type { CoreEvent } from './telemetry/events.ts';

/**
 * Shared state: the few Memcached operations the service uses. Values are strings (JSON written by
 * the token layer); TTLs are whole seconds, at most 30 days (Memcached reads a larger number as a Unix
 * time). Adapters throw `cache_unavailable` when the backend cannot answer; absence is `null`, never an
 * error.
 */
export interface KeyValueStore {
  /** The value, or null when the key is absent or expired. */
  get(key: string): Promise<string | null>;
  /** Stores unconditionally. */
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  /** Stores only when the key is absent: true when stored, false when the key already existed. */
  add(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  /** Removes the key; absent keys are not an error. */
  delete(key: string): Promise<void>;
  /** The value with its version (Memcached's CAS unique, opaque), or null when the key is absent. */
  gets(key: string): Promise<{ value: string; cas: string } | null>;
  /**
   * Removes the key only if nobody wrote it since `gets` answered `cas`: true when removed, false when
   * it changed or is gone. The one atomic compare-and-delete Memcached offers.
   */
  deleteIfUnchanged(key: string, cas: string): Promise<boolean>;
  /**
   * Atomically adds 1 and returns the new value; an absent key starts at 1 and lives `ttlSeconds`
   * (the TTL is set only when the counter is created).
   */
  increment(key: string, ttlSeconds: number): Promise<number>;
  /**
   * Calls from now on end by `deadlineAtMs` (epoch ms): the invocation's deadline. A Lambda instance
   * runs one invocation at a time, so the handler sets it as each one starts.
   */
  bound?(deadlineAtMs: number): void;
  /** Releases connections. */
  close(): Promise<void>;
}

/** Where the apps and client keys come from. `reload` bypasses any in-memory copy (secret rotation). */
export interface SecretSource {
  get(options?: { reload?: boolean }): Promise<Credentials>;
  /**
   * The credentials held in memory, whatever their age, without any I/O; undefined before the first
   * read. Sources that hold their credentials from the start (the environment) need not implement it.
   */
  held?(): Credentials | undefined;
  /**
   * The AppSecret of an app whose entry has none: its own secret, WECHAT_SECRET_PREFIX + appid, read
   * on first use and kept like the list. Sources without per-app secrets leave it out. Throws
   * `config_invalid` (missing or malformed secret) or `secrets_unavailable`.
   */
  appSecret?(appid: string, options?: { reload?: boolean }): Promise<string>;
}

/** Every upstream call is bounded by an absolute deadline (epoch ms) derived from the Lambda's remaining time. */
export interface CallOptions {
  deadlineAtMs: number;
  /**
   * Called before each repeated attempt of the call (WeChat busy, not reached): the quota counts
   * attempts, so the service's own count must too.
   */
  beforeRetry?: () => void;
}

/**
 * WeChat's token and ticket endpoints, and WeCom's for WeCom apps (`api` `wecom`, appid
 * `corpid:agentid`). Errors are `ServiceError`s with WeChat's or WeCom's errcode.
 */
export interface WeChatApi {
  fetchAccessToken(
    app: { appid: string; secret: string },
    api: TokenSource,
    options: CallOptions & { forceRefresh?: boolean },
  ): Promise<Grant>;
  fetchTicket(appid: string, accessToken: string, type: TicketType, options: CallOptions): Promise<Grant>;
  /**
   * `POST /cgi-bin/clear_quota/v2` with the appid and AppSecret: resets the app's daily API quotas.
   * WeChat allows 10 resets per account per month, shared with the console's reset (48006 when used up).
   */
  clearQuota(app: { appid: string; secret: string }, options: CallOptions): Promise<void>;
  /**
   * getApiQuota (`POST /cgi-bin/openapi/quota/get`): today's quota of one endpoint (`cgiPath`, such
   * as `/cgi-bin/token`) for the app whose access token is given. Read-only, so retried like a ticket.
   */
  getApiQuota(appid: string, accessToken: string, cgiPath: string, options: CallOptions): Promise<ApiQuota>;
}

/** Time and chance, injected everywhere so tests can move and fix them. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms`: the only real waits in the service (peer polling, retry backoff). */
  sleep(ms: number): Promise<void>;
  /** A number in [0, 1): poll and backoff jitter. */
  random(): number;
}

/** What the core reports about its work, as events of a closed vocabulary (see telemetry/events.ts). */
export interface Telemetry {
  emit(event: CoreEvent): void;
}
