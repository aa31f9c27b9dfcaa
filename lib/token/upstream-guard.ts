/**
 * Quota protection around every WeChat call: calls are counted per appid per WeChat day; a
 * credential, IP or quota failure is remembered in the cache (45009 until the quota day ends) so that
 * no other request or instance repeats it; a lock holder's failure is shared with the requests
 * waiting on it; passive refreshes are admitted against their daily budget and, for stable tokens,
 * WeChat's force-refresh limits.
 *
 * The quota breaker (45009) closes before the day ends in two ways. An operator may reset the quota
 * (WeChat's console, or the `clear_quota` action): while the breaker is open, one caller in the
 * whole fleet re-probes WeChat per QUOTA_BREAKER_PROBE_SECONDS per app and upstream — the one whose
 * Memcached `add` of the probe marker succeeds — and its success closes the breaker for everyone.
 * The `clear_quota` action closes every breaker of the app at once. The cache is asked before this
 * instance's own copy of a failure, which only stands in while the cache cannot answer: a breaker
 * closed anywhere is closed everywhere.
 */
import type { ApiEndpoint, FetchReason, TokenKind } from '../domain.ts';
import { ERROR_CATALOGUE, type ErrorCode, ServiceError } from '../errors.ts';
import type { Clock, KeyValueStore, Telemetry } from '../ports.ts';
import { STABLE_FORCE_SPACING_MS } from './lifetime.ts';
import { passiveKeys, type UpstreamName, upstreamKeys } from './record.ts';

export interface UpstreamGuardSettings {
  cacheKeyPrefix: string;
  /** How long a credential/IP failure is remembered before WeChat is asked again. */
  failureMemorySeconds: number;
  passiveRefreshDailyBudget: number;
  /**
   * While a quota breaker is open, WeChat is asked again at most this often per app and upstream,
   * fleet-wide (QUOTA_BREAKER_PROBE_SECONDS). Default 600.
   */
  quotaBreakerProbeSeconds?: number;
}

/** Every guarded upstream: an app's quota breakers, all closed by a quota reset. */
export const UPSTREAMS: readonly UpstreamName[] = ['token', 'stable_token', 'ticket_jsapi', 'ticket_wx_card'];

/** The endpoint each guarded upstream calls (the name its events carry). */
const ENDPOINT_OF: Record<UpstreamName, ApiEndpoint> = {
  token: 'token',
  stable_token: 'stable_token',
  ticket_jsapi: 'ticket',
  ticket_wx_card: 'ticket',
  wecom_gettoken: 'wecom_gettoken',
  wecom_ticket_jsapi: 'wecom_jsapi_ticket',
  wecom_ticket_agent_config: 'wecom_agent_config_ticket',
};

/**
 * WeCom's frequency limit (45009) blocks an API for a minute or an hour (wechat-facts §6): remembered
 * this long, fleet-wide, so that no instance asks during the block. Not a daily quota, no breaker.
 */
const WECOM_FREQUENCY_BLOCK_SECONDS = 60;

const DEFAULT_PROBE_SECONDS = 600;

/** Failures remembered across requests and instances: asking again would fail the same way. */
const REMEMBERED: ReadonlySet<string> = new Set([
  'wechat_credentials_rejected',
  'wechat_ip_not_whitelisted',
  'wechat_ip_confirmation_required',
]);

/** Calls this close to the end of a WeChat day may be counted by WeChat on the next one. */
const EDGE_SECONDS = 60;

/** The last failure of an upstream is shown (status) this long after it happened. */
const LAST_ERROR_SECONDS = 86_400;

/** An upstream's last failure, as `status` shows it. */
export interface LastError {
  code: string;
  errcode?: number;
  atMs?: number;
}

/** What `status` shows of one upstream of an app: never a token or a secret. */
export interface UpstreamStatus {
  /** The 45009 quota breaker. */
  breaker: 'open' | 'closed';
  /** A credential or IP failure remembered now (no call goes to WeChat meanwhile). */
  remembered: string | null;
  lastError: LastError | null;
  /** Today's calls (UTC+8 day) by every instance; null when the cache could not say. */
  todaysCalls: number | null;
}

/** A lock holder's failure is kept this long for the requests waiting on it. */
const HOLDER_FAILURE_SECONDS = 2;
/** WeChat's limit on stable-token force refreshes per appid per day. */
const STABLE_FORCE_DAILY_LIMIT = 20;

export class UpstreamGuard {
  readonly #store: KeyValueStore;
  readonly #clock: Pick<Clock, 'now'>;
  readonly #telemetry: Telemetry;
  readonly #settings: UpstreamGuardSettings;
  /** Failures remembered by this instance too, for when the cache cannot be asked. */
  readonly #failures = new Map<string, { error: ServiceError; untilMs: number }>();
  /** Probe markers of this instance, for when the cache cannot be asked: key → when the next probe may run. */
  readonly #probes = new Map<string, number>();
  /**
   * Calls this instance made whose count did not reach the cache (it could not be asked): counter key
   * → how many. The outside-fetcher check adds them to the shared count rather than suspect a fetcher.
   */
  readonly #uncounted = new Map<string, number>();

  constructor(deps: {
    store: KeyValueStore;
    clock: Pick<Clock, 'now'>;
    telemetry: Telemetry;
    settings: UpstreamGuardSettings;
  }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#telemetry = deps.telemetry;
    this.#settings = deps.settings;
  }

  /**
   * Counts the call, refuses it while a failure is remembered (except for the one quota probe per
   * interval), remembers credential/IP/quota failures, and closes a quota breaker when its probe
   * succeeds.
   */
  async call<T>(
    upstream: UpstreamName,
    target: { kind: TokenKind; appid: string },
    reason: FetchReason,
    run: (countRetry: () => void) => Promise<T>,
  ): Promise<T> {
    const { appid, kind } = target;
    const keys = upstreamKeys(this.#settings.cacheKeyPrefix, upstream, appid);
    const endpoint = endpointOf(upstream);
    const remembered = await this.#remembered(keys.failure);
    if (remembered) {
      if (remembered.code !== 'wechat_quota_exhausted' || !(await this.#mayProbe(keys.failure))) {
        throw remembered;
      }
      this.#telemetry.emit({ event: 'quota.probe', upstream: endpoint, breaker: upstream, appid });
    }
    const probing = remembered !== null;
    // Every attempt is counted (WeChat's quota counts attempts too), before it is sent: a count read
    // after WeChat's own is never behind it for the service's calls.
    const count = () => this.#count(keys);
    count();
    this.#telemetry.emit({ event: 'upstream.fetch', upstream: endpoint, kind, appid, reason });
    let result: T;
    try {
      result = await run(count);
    } catch (err) {
      if (err instanceof ServiceError) {
        this.#store
          .set(keys.lastError, encodeFailure(err, this.#clock.now()), LAST_ERROR_SECONDS)
          .catch(() => {});
        this.#telemetry.emit({
          event: 'upstream.error',
          upstream: endpoint,
          kind,
          appid,
          code: err.code,
          errcode: err.errcode,
        });
        const ttlSeconds =
          err.code === 'wechat_quota_exhausted'
            ? secondsToQuotaDayEnd(this.#clock.now())
            : REMEMBERED.has(err.code)
              ? this.#settings.failureMemorySeconds
              : err.errcode === 45009 && upstream.startsWith('wecom_')
                ? WECOM_FREQUENCY_BLOCK_SECONDS
                : 0;
        // The first probe comes one interval after the breaker opened (or after the last probe). The
        // marker goes first: a caller that sees the breaker must find it, or it would probe at once.
        if (err.code === 'wechat_quota_exhausted') await this.#markProbe(keys.failure);
        if (ttlSeconds > 0) await this.#remember(keys.failure, err, ttlSeconds);
      }
      throw err;
    }
    if (probing) {
      await this.#close(keys.failure);
      this.#telemetry.emit({ event: 'quota.breaker_closed', breaker: upstream, appid, by: 'probe' });
    }
    return result;
  }

  /**
   * Closes every quota breaker of `appid` (its quota was reset with clear_quota): the next call of
   * every instance goes to WeChat. Returns the upstreams whose breaker was open.
   */
  async closeQuotaBreakers(appid: string): Promise<UpstreamName[]> {
    const closed: UpstreamName[] = [];
    for (const upstream of UPSTREAMS) {
      const key = upstreamKeys(this.#settings.cacheKeyPrefix, upstream, appid).failure;
      const open = (await this.#remembered(key))?.code === 'wechat_quota_exhausted';
      if (!open) continue;
      await this.#close(key);
      closed.push(upstream);
      this.#telemetry.emit({ event: 'quota.breaker_closed', breaker: upstream, appid, by: 'clear_quota' });
    }
    return closed;
  }

  /**
   * Today's (WeChat quota day, UTC+8) upstream calls of `appid`: `calls` as counted by every instance
   * plus the ones this instance could not count in the cache; `slack`, the calls made in the last
   * minute of the day before (WeChat's clock may count them today). Null when the cache cannot say.
   */
  async todaysCalls(
    upstream: UpstreamName,
    appid: string,
    day = quotaDay(this.#clock.now()),
  ): Promise<{ calls: number; slack: number } | null> {
    const keys = upstreamKeys(this.#settings.cacheKeyPrefix, upstream, appid);
    const key = keys.dailyCalls(day);
    let texts: Array<string | null>;
    try {
      texts = await Promise.all([this.#store.get(key), this.#store.get(keys.edgeCalls(day))]);
    } catch {
      return null;
    }
    const [counted, slack] = texts.map((t) => (t !== null && /^\d+$/.test(t.trim()) ? Number(t.trim()) : 0));
    return { calls: (counted ?? 0) + (this.#uncounted.get(key) ?? 0), slack: slack ?? 0 };
  }

  /** What `status` shows of one upstream of `appid`. Throws `cache_unavailable`. */
  async describe(upstream: UpstreamName, appid: string): Promise<UpstreamStatus> {
    const keys = upstreamKeys(this.#settings.cacheKeyPrefix, upstream, appid);
    const [failure, last, calls] = await Promise.all([
      this.#store.get(keys.failure),
      this.#store.get(keys.lastError),
      this.todaysCalls(upstream, appid),
    ]);
    const remembered = decodeFailure(failure);
    const lastError = decodeFailure(last, true);
    const atMs = lastError && last !== null ? (JSON.parse(last) as { atMs?: unknown }).atMs : undefined;
    return {
      breaker: remembered?.code === 'wechat_quota_exhausted' ? 'open' : 'closed',
      remembered: remembered?.code ?? null,
      lastError: lastError && {
        code: lastError.code,
        ...(lastError.errcode === undefined ? {} : { errcode: lastError.errcode }),
        ...(typeof atMs === 'number' ? { atMs } : {}),
      },
      todaysCalls: calls?.calls ?? null,
    };
  }

  #count(keys: ReturnType<typeof upstreamKeys>): void {
    const now = this.#clock.now();
    const key = keys.dailyCalls(quotaDay(now));
    const toDayEnd = secondsToQuotaDayEnd(now);
    this.#store.increment(key, toDayEnd + 3600).catch(() => {
      this.#uncounted.set(key, (this.#uncounted.get(key) ?? 0) + 1);
    });
    if (toDayEnd <= EDGE_SECONDS) {
      this.#store.increment(keys.edgeCalls(quotaDay(now + 86_400_000)), toDayEnd + 86_400).catch(() => {});
    }
  }

  /** Forgets a remembered failure (the secret was rotated: the next call may succeed). */
  async forget(upstream: UpstreamName, appid: string): Promise<void> {
    const key = upstreamKeys(this.#settings.cacheKeyPrefix, upstream, appid).failure;
    this.#failures.delete(key);
    await this.#store.delete(key).catch(() => {});
  }

  /** A lock holder's failure, kept briefly under `key` for the requests waiting on it. */
  async shareHolderFailure(key: string, error: ServiceError): Promise<void> {
    await this.#store.set(key, encodeFailure(error), HOLDER_FAILURE_SECONDS).catch(() => {});
  }

  /** The failure a lock holder shared under `key`, if any. Throws `cache_unavailable`. */
  async holderFailure(key: string): Promise<ServiceError | null> {
    return decodeFailure(await this.#store.get(key), true);
  }

  /**
   * Passive refresh admission: the daily budget, and for stable tokens WeChat's force-refresh limits.
   * Throws `refresh_rejected`.
   */
  async admitPassive(appid: string, stable: () => Promise<boolean>): Promise<void> {
    const now = this.#clock.now();
    const day = quotaDay(now);
    const keys = passiveKeys(this.#settings.cacheKeyPrefix, appid);
    const ttl = secondsToQuotaDayEnd(now) + 3600;
    const budget = this.#settings.passiveRefreshDailyBudget;
    const accepted = await this.#store.increment(keys.accepted(day), ttl);
    if (accepted > budget) {
      throw new ServiceError(
        'refresh_rejected',
        `passive refresh budget of ${budget} a day is used up for appid ${appid}; ` +
          'the current token is still the one WeChat issued last: check the reporting service uses this appid, ' +
          'or raise PASSIVE_REFRESH_DAILY_BUDGET',
      );
    }
    if (!(await stable())) return;
    const spaced = await this.#store.add(keys.forceSpacing, '1', Math.ceil(STABLE_FORCE_SPACING_MS / 1000));
    if (!spaced) {
      throw new ServiceError(
        'refresh_rejected',
        `WeChat allows a stable-token force refresh every 30 s; appid ${appid} had one less than 30 s ago: retry after 30 s`,
      );
    }
    const forced = await this.#store.increment(keys.forceCount(day), ttl);
    if (forced > STABLE_FORCE_DAILY_LIMIT) {
      throw new ServiceError(
        'refresh_rejected',
        `WeChat allows ${STABLE_FORCE_DAILY_LIMIT} stable-token force refreshes a day; appid ${appid} has used them: the token is refreshed normally before it expires`,
      );
    }
  }

  /** The shared memory first (a breaker closed by a peer is closed here too); this instance's while the cache cannot answer. */
  async #remembered(key: string): Promise<ServiceError | null> {
    let text: string | null;
    try {
      text = await this.#store.get(key);
    } catch {
      const local = this.#failures.get(key);
      return local && this.#clock.now() < local.untilMs ? local.error : null;
    }
    return decodeFailure(text);
  }

  get #probeSeconds(): number {
    return this.#settings.quotaBreakerProbeSeconds ?? DEFAULT_PROBE_SECONDS;
  }

  /**
   * The probe marker's TTL: Memcached expires items on whole-second ticks, so a TTL of n seconds can
   * end after just over n − 1. One more second keeps the interval between probes at least the setting.
   */
  get #markerSeconds(): number {
    return this.#probeSeconds + 1;
  }

  /** Whether this caller is the one that probes now: the `add` of the probe marker decides, fleet-wide. */
  async #mayProbe(failureKey: string): Promise<boolean> {
    const key = probeKey(failureKey);
    try {
      return await this.#store.add(key, '1', this.#markerSeconds);
    } catch {
      // The cache cannot coordinate: at most one probe per interval from this instance.
      const now = this.#clock.now();
      if (now < (this.#probes.get(key) ?? 0)) return false;
      this.#probes.set(key, now + this.#probeSeconds * 1000);
      return true;
    }
  }

  async #markProbe(failureKey: string): Promise<void> {
    const key = probeKey(failureKey);
    this.#probes.set(key, this.#clock.now() + this.#probeSeconds * 1000);
    await this.#store.set(key, '1', this.#markerSeconds).catch(() => {});
  }

  async #close(failureKey: string): Promise<void> {
    this.#failures.delete(failureKey);
    this.#probes.delete(probeKey(failureKey));
    await this.#store.delete(failureKey).catch(() => {});
    await this.#store.delete(probeKey(failureKey)).catch(() => {});
  }

  async #remember(key: string, error: ServiceError, ttlSeconds: number): Promise<void> {
    this.#failures.set(key, { error, untilMs: this.#clock.now() + ttlSeconds * 1000 });
    await this.#store.set(key, encodeFailure(error), ttlSeconds).catch(() => {});
  }
}

/** The probe marker beside a breaker: whoever adds it probes; it lives one probe interval. */
function probeKey(failureKey: string): string {
  return `${failureKey}:probe`;
}

function endpointOf(upstream: UpstreamName): ApiEndpoint {
  return ENDPOINT_OF[upstream];
}

/** The WeChat quota day, a calendar day in China time (UTC+8): `YYYYMMDD`. */
export function quotaDay(nowMs: number): string {
  return new Date(nowMs + 8 * 3600_000).toISOString().slice(0, 10).replaceAll('-', '');
}

/** Whole seconds until the current WeChat quota day ends (midnight UTC+8), at least 1. */
export function secondsToQuotaDayEnd(nowMs: number): number {
  const dayMs = 86_400_000;
  const shifted = nowMs + 8 * 3600_000;
  const endShifted = Math.floor(shifted / dayMs) * dayMs + dayMs;
  return Math.max(1, Math.ceil((endShifted - shifted) / 1000));
}

function encodeFailure(error: ServiceError, atMs?: number): string {
  return JSON.stringify({ code: error.code, message: error.message, errcode: error.errcode, atMs });
}

/** A stored failure; `anyCode` accepts every catalogue code (a holder's failure shared with its waiters). */
function decodeFailure(text: string | null, anyCode = false): ServiceError | null {
  if (text === null) return null;
  try {
    const raw = JSON.parse(text) as { code?: unknown; message?: unknown; errcode?: unknown };
    if (typeof raw.code !== 'string') return null;
    const known = anyCode
      ? Object.hasOwn(ERROR_CATALOGUE, raw.code)
      : REMEMBERED.has(raw.code) ||
        raw.code === 'wechat_quota_exhausted' ||
        raw.code === 'wechat_rate_limited';
    if (!known) return null;
    if (typeof raw.message !== 'string' || raw.message.length > 1000) return null;
    const errcode =
      typeof raw.errcode === 'number' && Number.isInteger(raw.errcode) ? raw.errcode : undefined;
    return new ServiceError(raw.code as ErrorCode, raw.message, errcode === undefined ? {} : { errcode });
  } catch {
    return null;
  }
}
