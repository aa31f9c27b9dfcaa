/**
 * Configuration: the only reader of `process.env` in the service. Parsed once per container, at the
 * edge; every failure names the variable and says what a valid value looks like.
 */

import {
  type Env,
  invalid,
  nonEmpty,
  readBoolean,
  readEnum,
  readInt,
  readMatch,
  readOptionalInt,
  readUrl,
} from './config-values.ts';
import { type TicketType, type TokenApi, WECHAT_APPID_PATTERN } from './domain.ts';
import { ServiceError } from './errors.ts';
import { UPSTREAM_MAX_ATTEMPTS, worstUpstreamCallMs } from './wechat/retry-policy.ts';

/**
 * The refresh lock ends its holder's upstream call this long before the lease runs out, leaving
 * time to write the record and release (lib/token/lock.ts: a 1.5-s lease margin plus 0.5 s).
 */
export const LOCK_HEADROOM_MS = 2000;

/** Where the appid/secret pairs and HTTP client keys come from. */
export type CredentialSource =
  | {
      kind: 'secrets_manager';
      secretId: string;
      /**
       * WECHAT_SECRET_PREFIX: an app entry without `secret` has its AppSecret in the secret named this
       * prefix + appid (JSON `{"secret":"…"}`); undefined → every entry must carry its secret.
       */
      secretPrefix: string | undefined;
    }
  /** Local runs only: one app from WECHAT_APPID/WECHAT_APPSECRET (and an optional local client key). */
  | {
      kind: 'env';
      appid: string;
      secret: string;
      tokenApi: TokenApi;
      tickets: TicketType[];
      clientKey: string | undefined;
    };

/** What to fetch for a `classic` app whose record is missing (lost, flushed, or never written). */
export type MissingRecordPolicy =
  /** A stable token first; classic again once every promise made before the loss has run out (lifetime.ts). */
  | 'stable_first'
  /** A classic token at once: it may kill tokens handed out before the loss, whatever they were promised. */
  | 'classic';

/** What to do for a `classic` app when Memcached is down and no valid token is held in memory. */
export type CacheOutagePolicy =
  /** Fetch a stable token instead: a separate token that classic fetches never invalidate. */
  | 'stable_fallback'
  /** Fetch a classic token anyway (each instance may then invalidate the others' tokens). */
  | 'classic'
  /** Answer 503 cache_unavailable. */
  | 'fail';

/**
 * How Memcached is reached. Defaults follow the endpoint name: ElastiCache Serverless
 * (`….serverless.….cache.amazonaws.com`) speaks only TLS and the text protocol; a configuration
 * endpoint (`….cfg.….cache.amazonaws.com`) lists the nodes of a node-based cluster.
 */
export interface CacheTopologyConfig {
  /** MEMCACHED_PROTOCOL: `binary` (memjs) or `text`. */
  protocol: 'binary' | 'text';
  /** MEMCACHED_TLS: connect with TLS, verifying the server certificate. */
  tls: boolean;
  /** MEMCACHED_AUTO_DISCOVERY: the one MEMCACHED_SERVERS entry is a configuration endpoint. */
  autoDiscovery: boolean;
  /** MEMCACHED_DISCOVERY_INTERVAL_SECONDS: how often the node list is asked for (default 60). */
  discoveryIntervalSeconds: number;
}

export interface Config {
  /** `host:port` entries; undefined → in-process store (local runs only). */
  memcachedServers: string[] | undefined;
  /** Protocol, TLS and Auto Discovery of MEMCACHED_SERVERS. */
  memcachedTopology: CacheTopologyConfig;
  /** Per-request Memcached timeout. */
  memcachedTimeoutMs: number;
  /** Namespace of every cache key; the record format version is appended by the store. */
  cacheKeyPrefix: string;
  credentials: CredentialSource;
  /** How long the parsed secret is kept in memory. */
  secretCacheSeconds: number;
  /** After WeChat rejected the secret, at most one re-read per this many seconds per instance. */
  secretRereadSeconds: number;
  /** How long past `secretCacheSeconds` the last good secret is still used while it cannot be read again. */
  secretGraceSeconds: number;
  wechatApiBaseUrl: string;
  /** WeCom's API origin (WECOM_API_BASE_URL, default `https://qyapi.weixin.qq.com`): gettoken and its tickets. */
  wecomApiBaseUrl: string;
  /** How long before a token's expiry a refresh starts (scaled down for short-lived tokens). */
  refreshWindowSeconds: number;
  /** A reported token younger than this is not refreshed. */
  passiveRefreshMinAgeSeconds: number;
  /** Accepted passive refreshes per appid per WeChat quota day (UTC+8). */
  passiveRefreshDailyBudget: number;
  /**
   * Lease of the refresh lock, whole seconds: covers the worst upstream call with its retries (see
   * {@link minimumLockLeaseSeconds}); that minimum is the default.
   */
  lockLeaseSeconds: number;
  /** Timeout of one upstream attempt. */
  upstreamTimeoutMs: number;
  /** Bound on the per-instance memory copy of a record; below WeChat's 300 s overlap. */
  memoryCacheSeconds: number;
  /** How long a credential/IP failure is remembered (shared through the cache) before WeChat is asked again. */
  failureMemorySeconds: number;
  /** The service answers this long before the invocation's deadline. */
  deadlineMarginMs: number;
  /**
   * The Lambda function's timeout (FUNCTION_TIMEOUT_SECONDS, which serverless.yml passes: Lambda does
   * not expose it); when set, the deadline margin and the lock lease are checked against it.
   */
  functionTimeoutSeconds: number | undefined;
  cacheOutagePolicy: CacheOutagePolicy;
  missingRecordPolicy: MissingRecordPolicy;
  /** How often the EventBridge schedule runs (serverless.yml); requests leave it this head start. */
  scheduleIntervalSeconds: number;
  /** While the 45009 breaker is open, WeChat is asked again at most this often per app and upstream. */
  quotaBreakerProbeSeconds: number;
  /** How many (app, kind) refreshes one schedule run makes at once (SCHEDULE_CONCURRENCY). */
  scheduleConcurrency: number;
  /**
   * The schedule asks WeChat's getApiQuota for an app at most this often, fleet-wide
   * (QUOTA_CHECK_INTERVAL_SECONDS); 0 turns the schedule's checks off (`status` can still ask).
   */
  quotaCheckIntervalSeconds: number;
  logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
}

/** Reads and validates the configuration. Throws `config_invalid` naming the variable. */
export function loadConfig(env: Env = process.env): Config {
  const memcachedServers = readServers(env, 'MEMCACHED_SERVERS');
  const upstreamTimeoutMs = readInt(env, 'UPSTREAM_TIMEOUT_MS', 3000, 100, 60_000);
  const deadlineMarginMs = readInt(env, 'DEADLINE_MARGIN_MS', 250, 20, 10_000);
  const functionTimeoutSeconds = readOptionalInt(env, 'FUNCTION_TIMEOUT_SECONDS', 1, 900);
  if (functionTimeoutSeconds !== undefined) {
    const workMs = functionTimeoutSeconds * 1000 - deadlineMarginMs;
    if (workMs < upstreamTimeoutMs) {
      throw invalid(
        'DEADLINE_MARGIN_MS',
        `(${deadlineMarginMs} ms) leaves ${Math.max(0, workMs)} ms of the function's ${functionTimeoutSeconds}-s timeout ` +
          `(FUNCTION_TIMEOUT_SECONDS) for the work, less than one WeChat attempt (UPSTREAM_TIMEOUT_MS, ${upstreamTimeoutMs} ms): ` +
          `it must be at most ${functionTimeoutSeconds * 1000 - upstreamTimeoutMs} ms, or the function's timeout longer`,
      );
    }
  }
  const lease = minimumLockLeaseSeconds({ upstreamTimeoutMs, deadlineMarginMs, functionTimeoutSeconds });
  const lockLeaseSeconds = readInt(env, 'LOCK_LEASE_SECONDS', lease.seconds, 1, 900);
  if (lockLeaseSeconds < lease.seconds) {
    throw invalid(
      'LOCK_LEASE_SECONDS',
      `must be at least ${lease.seconds} s: the refresh lock must outlast ${lease.why}, plus ` +
        `${LOCK_HEADROOM_MS / 1000} s to write the result; got ${lockLeaseSeconds} (leave it unset to get the minimum)`,
    );
  }
  return {
    memcachedServers,
    memcachedTopology: readCacheTopology(env, memcachedServers ?? []),
    memcachedTimeoutMs: readInt(env, 'MEMCACHED_TIMEOUT_MS', 250, 10, 10_000),
    cacheKeyPrefix: readMatch(
      env,
      'CACHE_KEY_PREFIX',
      'wts',
      /^[a-z0-9_-]{1,32}$/,
      'lower-case letters, digits, _ or -, at most 32',
    ),
    credentials: readCredentialSource(env),
    secretCacheSeconds: readInt(env, 'SECRET_CACHE_SECONDS', 300, 0, 86_400),
    secretRereadSeconds: readInt(env, 'SECRET_REREAD_SECONDS', 30, 0, 3600),
    secretGraceSeconds: readInt(env, 'SECRET_GRACE_SECONDS', 3600, 0, 86_400),
    wechatApiBaseUrl: readUrl(env, 'WECHAT_API_BASE_URL', 'https://api.weixin.qq.com'),
    wecomApiBaseUrl: readUrl(env, 'WECOM_API_BASE_URL', 'https://qyapi.weixin.qq.com'),
    refreshWindowSeconds: readInt(env, 'TOKEN_REFRESH_WINDOW_SECONDS', 900, 1, 7000),
    passiveRefreshMinAgeSeconds: readInt(env, 'PASSIVE_REFRESH_MIN_AGE_SECONDS', 300, 0, 7200),
    passiveRefreshDailyBudget: readInt(env, 'PASSIVE_REFRESH_DAILY_BUDGET', 100, 0, 100_000),
    lockLeaseSeconds,
    upstreamTimeoutMs,
    memoryCacheSeconds: readInt(env, 'MEMORY_CACHE_SECONDS', 60, 0, 240),
    failureMemorySeconds: readInt(env, 'FAILURE_MEMORY_SECONDS', 30, 0, 3600),
    deadlineMarginMs,
    functionTimeoutSeconds,
    scheduleIntervalSeconds: readInt(env, 'SCHEDULE_INTERVAL_SECONDS', 300, 0, 3600),
    quotaBreakerProbeSeconds: readInt(env, 'QUOTA_BREAKER_PROBE_SECONDS', 600, 1, 86_400),
    scheduleConcurrency: readInt(env, 'SCHEDULE_CONCURRENCY', 16, 1, 256),
    quotaCheckIntervalSeconds: readInt(env, 'QUOTA_CHECK_INTERVAL_SECONDS', 3600, 0, 86_400),
    cacheOutagePolicy: readEnum(
      env,
      'CACHE_OUTAGE_POLICY',
      ['stable_fallback', 'classic', 'fail'],
      'stable_fallback',
    ),
    missingRecordPolicy: readEnum(env, 'MISSING_RECORD_POLICY', ['stable_first', 'classic'], 'stable_first'),
    logLevel: readEnum(env, 'LOG_LEVEL', ['DEBUG', 'INFO', 'WARN', 'ERROR'], 'INFO', (v) => v.toUpperCase()),
  };
}

/**
 * The shortest lock lease that covers the worst upstream call: every attempt of one call timing out
 * with the longest backoffs between them (lib/wechat/retry-policy.ts), or — when the function's
 * timeout is known and shorter — the whole invocation, which bounds every call; plus
 * {@link LOCK_HEADROOM_MS}. A shorter lease would cut the holder's retries short (the lock stops its
 * call before the lease ends, so that a successor never races it).
 */
export function minimumLockLeaseSeconds(settings: {
  upstreamTimeoutMs: number;
  deadlineMarginMs: number;
  functionTimeoutSeconds: number | undefined;
}): { seconds: number; why: string } {
  const { upstreamTimeoutMs, deadlineMarginMs, functionTimeoutSeconds } = settings;
  const callMs = worstUpstreamCallMs(upstreamTimeoutMs);
  let boundMs = callMs;
  let why =
    `the worst WeChat call, ${UPSTREAM_MAX_ATTEMPTS} attempts of UPSTREAM_TIMEOUT_MS (${upstreamTimeoutMs} ms) ` +
    `with their backoffs (${callMs} ms)`;
  if (functionTimeoutSeconds !== undefined) {
    const invocationMs = functionTimeoutSeconds * 1000 - deadlineMarginMs;
    if (invocationMs < boundMs) {
      boundMs = invocationMs;
      why =
        `the longest WeChat call an invocation can make, FUNCTION_TIMEOUT_SECONDS (${functionTimeoutSeconds} s) ` +
        `less DEADLINE_MARGIN_MS (${invocationMs} ms)`;
    }
  }
  return { seconds: Math.ceil((boundMs + LOCK_HEADROOM_MS) / 1000), why };
}

/** Secrets Manager names: letters, digits and /_+=.@-, at most 512 with the appid (18) appended. */
const SECRET_PREFIX = /^[A-Za-z0-9/_+=.@-]{1,494}$/;
const SECRET_PREFIX_RULE =
  'the start of Secrets Manager secret names (letters, digits and /_+=.@-, at most 494), such as wechat/apps/';

function readCredentialSource(env: Env): CredentialSource {
  const secretId = nonEmpty(env, 'WECHAT_SECRET_ID');
  const secretPrefix = readMatch(env, 'WECHAT_SECRET_PREFIX', undefined, SECRET_PREFIX, SECRET_PREFIX_RULE);
  if (secretId !== undefined) return { kind: 'secrets_manager', secretId, secretPrefix };
  if (secretPrefix !== undefined) {
    throw invalid(
      'WECHAT_SECRET_PREFIX',
      'is set, but per-app secrets are read only with WECHAT_SECRET_ID (the secret listing the apps): set it, ' +
        'or unset WECHAT_SECRET_PREFIX',
    );
  }
  const appid = nonEmpty(env, 'WECHAT_APPID');
  const secret = nonEmpty(env, 'WECHAT_APPSECRET');
  if (appid === undefined || secret === undefined) {
    throw new ServiceError(
      'config_invalid',
      'no credentials configured: set WECHAT_SECRET_ID to the Secrets Manager secret holding the apps ' +
        '(or, for a local run, WECHAT_APPID and WECHAT_APPSECRET)',
    );
  }
  if (!WECHAT_APPID_PATTERN.test(appid))
    throw invalid('WECHAT_APPID', 'must look like wx followed by 16 hex digits');
  const tickets = (nonEmpty(env, 'WECHAT_TICKETS') ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  for (const t of tickets) {
    if (t !== 'jsapi' && t !== 'wx_card')
      throw invalid('WECHAT_TICKETS', `lists "${t}"; allowed: jsapi, wx_card`);
  }
  const clientKey = nonEmpty(env, 'WECHAT_CLIENT_KEY');
  if (clientKey !== undefined && clientKey.length < 16) {
    throw invalid('WECHAT_CLIENT_KEY', 'must be at least 16 characters');
  }
  return {
    kind: 'env',
    appid,
    secret,
    tokenApi: readEnum(env, 'WECHAT_TOKEN_API', ['classic', 'stable'], 'classic'),
    tickets: tickets as TicketType[],
    clientKey,
  };
}

function readServers(env: Env, name: string): string[] | undefined {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return undefined;
  const servers = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const server of servers) {
    // memjs splits an entry at its first colon, so it cannot reach an IPv6 literal, bracketed or not.
    if (server.startsWith('[') || (server.match(/:/g) ?? []).length > 1) {
      throw invalid(
        name,
        `entry "${server.slice(0, 80)}" is an IPv6 address, which the Memcached client cannot connect to: use the ` +
          'host name of the cluster (ElastiCache endpoints are names, dual-stack ones included), or an IPv4 address',
      );
    }
    const match = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(server);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65_535) {
      throw invalid(
        name,
        `entry "${server}" is not host:port (for example my-cache.abc123.cfg.use1.cache.amazonaws.com:11211)`,
      );
    }
  }
  if (servers.length === 0) throw invalid(name, 'lists no server');
  return servers;
}

/** ElastiCache Serverless endpoint names: `<name>.serverless.<region>.cache.amazonaws.com`. */
const SERVERLESS_NAME = /\.serverless\./i;
/** Configuration endpoints of node-based clusters: `<name>.<id>.cfg.<region>.cache.amazonaws.com`. */
const CONFIG_ENDPOINT_NAME = /\.cfg\./i;

function readCacheTopology(env: Env, servers: string[]): CacheTopologyConfig {
  const hosts = servers.map((s) => s.slice(0, s.lastIndexOf(':')));
  const serverless = hosts.some((h) => SERVERLESS_NAME.test(h));
  const configEndpoint = hosts.some((h) => CONFIG_ENDPOINT_NAME.test(h));
  const protocol = readEnum(
    env,
    'MEMCACHED_PROTOCOL',
    ['binary', 'text'],
    serverless ? 'text' : 'binary',
    (v) => v.toLowerCase(),
  );
  const tls = readBoolean(env, 'MEMCACHED_TLS', serverless);
  const autoDiscovery = readBoolean(env, 'MEMCACHED_AUTO_DISCOVERY', configEndpoint);
  if (serverless && protocol === 'binary') {
    throw invalid(
      'MEMCACHED_PROTOCOL',
      'is binary, but MEMCACHED_SERVERS names an ElastiCache Serverless endpoint, which speaks only the text ' +
        'protocol (the binary protocol is deprecated since memcached 1.6): set it to text, or leave it unset',
    );
  }
  if (serverless && !tls) {
    throw invalid(
      'MEMCACHED_TLS',
      'is false, but MEMCACHED_SERVERS names an ElastiCache Serverless endpoint, which accepts only TLS ' +
        'connections: set it to true, or leave it unset',
    );
  }
  if (autoDiscovery && servers.length !== 1) {
    throw invalid(
      'MEMCACHED_AUTO_DISCOVERY',
      `is true, so MEMCACHED_SERVERS must be exactly one entry, the cluster's configuration endpoint ` +
        `(….cfg.….cache.amazonaws.com:11211); it has ${servers.length}`,
    );
  }
  if (autoDiscovery && serverless) {
    throw invalid(
      'MEMCACHED_AUTO_DISCOVERY',
      'is true, but ElastiCache Serverless has no configuration endpoint (its one endpoint spreads the keys ' +
        'itself): leave it unset',
    );
  }
  return {
    protocol,
    tls,
    autoDiscovery,
    discoveryIntervalSeconds: readInt(env, 'MEMCACHED_DISCOVERY_INTERVAL_SECONDS', 60, 1, 3600),
  };
}
