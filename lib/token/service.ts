/**
 * The token service: one WeChat fetch per token lifetime, however many instances ask.
 *
 * For a (kind, appid) — kind is access_token, jsapi_ticket or wx_card_ticket — the algorithm is:
 *
 *   1. Read the per-instance memory copy; serve it while it is outside the refresh window, younger
 *      than MEMORY_CACHE_SECONDS and still under its guarantee (source `memory`).
 *   2. Read the Memcached record; serve it while it is outside the refresh window (`cache`). Requests
 *      see the window one schedule interval late, so that with steady traffic the schedule refreshes.
 *   3. Inside the window, expired or missing: try the refresh lock (see lock.ts).
 *   4. Lock won: read again (a peer may just have written → `peer`), fetch from WeChat, write the
 *      record with generation + 1 only while still holding the lock, release (`wechat`).
 *   5. Lock lost: serve the current record while it is still valid (`cache`); otherwise poll with
 *      jitter for the winner's write, bounded by the invocation's deadline (`peer`); if the winner
 *      released without writing, share its failure; take over when the lease lapsed.
 *   6. The fetch failed but the current record is still valid: serve it, warn, count (`stale`).
 *
 * Passive refresh (a consumer saw 40001 with token X): refresh only when X is still the current
 * token, at least PASSIVE_REFRESH_MIN_AGE_SECONDS old, and within the daily budget; every reporter,
 * lock losers included, then gets the new token; a report of an older or unknown token gets the
 * current one back without any fetch.
 *
 * Quota protection: upstream calls are counted per appid per WeChat day; a credential, IP or quota
 * failure is remembered in the cache (45009 until the quota day ends) so that no other request or
 * instance repeats it; the last valid token is served meanwhile. An exhausted classic quota turns to
 * the stable endpoint, and so does a classic call that failed ambiguously (it may have issued a
 * token: a second classic call would kill the cached one at once).
 *
 * Cache outage: serve the memory copy while valid; otherwise fetch without the shared lock — a stable
 * token (which no classic fetch invalidates) for every app under the default policy — shared by the
 * concurrent requests of this instance.
 */
import type { Clock, Sleep } from '../clock.ts';
import type { CacheOutagePolicy, TicketType, TokenApi } from '../config.ts';
import { ERROR_CATALOGUE, ServiceError } from '../errors.ts';
import type { AppCredentials, CredentialsProvider } from '../secrets/credentials.ts';
import type { KeyValueStore } from '../store.ts';
import type { FetchReason, Source, Telemetry } from '../telemetry.ts';
import { AmbiguousUpstreamError, type Grant, type WeChatApi } from '../wechat/client.ts';
import { TOKEN_INVALID_ERRCODES } from '../wechat/errcodes.ts';
import {
  guaranteedUntilMs,
  type LifetimeSettings,
  naturalExpiryMs,
  refreshAtMs,
  STABLE_FORCE_SPACING_MS,
  secondsUntil,
} from './lifetime.ts';
import { isCacheDown, type LockHandle, RefreshLock } from './lock.ts';
import {
  type CredentialKind,
  type CredentialRecord,
  decodeRecord,
  encodeRecord,
  type Origin,
  passiveKeys,
  recordKeys,
  ticketKind,
  type UpstreamName,
  upstreamKeys,
} from './record.ts';

export interface TokenServiceSettings extends LifetimeSettings {
  cacheKeyPrefix: string;
  memoryCacheSeconds: number;
  failureMemorySeconds: number;
  cacheOutagePolicy: CacheOutagePolicy;
  /** How often the schedule runs: user requests leave it this head start on each refresh. */
  scheduleIntervalSeconds: number;
}

export interface TokenServiceDeps {
  store: KeyValueStore;
  credentials: CredentialsProvider;
  wechat: WeChatApi;
  clock: Clock;
  sleep: Sleep;
  telemetry: Telemetry;
  settings: TokenServiceSettings;
  /** Identifies this instance in records it writes. */
  instanceId: string;
  /** Per-app jitter in [0, 1); defaults to a hash of kind and appid (the same on every instance). */
  jitter?: (kind: CredentialKind, appid: string) => number;
}

/** Every call carries the invocation's deadline (epoch ms): no wait or fetch goes past it. */
export interface CallContext {
  deadlineAtMs: number;
}

/** A value served to a caller, with where it came from and what is promised about it. */
export interface Served {
  kind: CredentialKind;
  appid: string;
  value: string;
  source: Source;
  /** Seconds the value is guaranteed to stay valid (see lifetime.ts). */
  expiresIn: number;
  /** Epoch seconds: now + expiresIn. */
  expiresAt: number;
  generation: number;
  /** When the value was obtained from WeChat (epoch ms). */
  fetchedAtMs: number;
}

/** What the schedule did for one (kind, appid). */
export type ScheduledOutcome = 'fresh' | 'refreshed' | 'in_progress' | 'served_stale';

interface Spec {
  kind: CredentialKind;
  appid: string;
  keys: { record: string; lock: string; failed: string };
  /** Obtains a new value from WeChat. `current` is the record being replaced, if any. */
  fetch(ctx: FetchContext): Promise<{ grant: Grant; origin: Origin; sentAtMs: number }>;
}

interface FetchContext extends CallContext {
  reason: FetchReason;
  current: CredentialRecord | null;
  /** Stable apps: a passive refresh asks WeChat to force a new token. */
  force: boolean;
}

interface MemoryEntry {
  record: CredentialRecord;
  /** When this instance last saw the record as the current one. */
  confirmedAtMs: number;
}

const POLL_FIRST_MS = 20;
const POLL_MAX_MS = 250;

export class TokenService {
  readonly #deps: TokenServiceDeps;
  readonly #lock: RefreshLock;
  readonly #memory = new Map<string, MemoryEntry>();
  /** Failures remembered by this instance too, for when the cache cannot be asked. */
  readonly #failures = new Map<string, { error: ServiceError; untilMs: number }>();
  /** Outage fetches in flight, shared by concurrent requests of this instance. */
  readonly #outageFetches = new Map<string, Promise<CredentialRecord>>();
  /** Records this instance saw the cache fail for: it puts its value back once the cache answers. */
  readonly #writeBackPending = new Set<string>();

  constructor(deps: TokenServiceDeps) {
    this.#deps = deps;
    this.#lock = new RefreshLock(deps.store, deps.clock, deps.settings.lockLeaseSeconds);
  }

  /** The access token of `appid`. Errors: unknown_appid, wechat_*, cache_unavailable, refresh_in_progress, secrets_*. */
  async getAccessToken(appid: string, ctx: CallContext): Promise<Served> {
    return this.#get(this.#tokenSpec(appid), ctx);
  }

  /** A JS-SDK (`jsapi`) or card (`wx_card`) ticket of `appid`, through the same machinery as tokens. */
  async getTicket(appid: string, type: TicketType, ctx: CallContext): Promise<Served> {
    return this.#get(this.#ticketSpec(appid, type), ctx);
  }

  /**
   * Passive refresh: a consumer reports that `invalidToken` was rejected by WeChat (40001/42001).
   * Errors as getAccessToken, plus refresh_rejected (budget, or stable force spacing).
   */
  async refreshAccessToken(appid: string, invalidToken: string, ctx: CallContext): Promise<Served> {
    const spec = this.#tokenSpec(appid);
    let current: CredentialRecord | null;
    try {
      current = await this.#read(spec);
    } catch (err) {
      if (isCacheDown(err)) return this.#outage(spec, ctx, err as ServiceError, invalidToken);
      throw err;
    }
    if (!current) return this.#get(spec, ctx);
    const now = this.#deps.clock.now();
    const { settings } = this.#deps;
    if (
      current.value !== invalidToken ||
      now - current.fetchedAtMs < settings.passiveRefreshMinAgeSeconds * 1000
    ) {
      // An older or unknown token, or one too young to be dead: the current token is the answer.
      return this.#serveRecord(current, now, 'cache');
    }
    return this.#refreshUnderLock(spec, ctx, current, {
      reason: 'passive',
      replaceGeneration: current.generation,
      avoid: invalidToken,
    });
  }

  /** The schedule: refresh (kind, appid) if its record is missing or inside the refresh window. */
  async refreshIfDue(appid: string, kind: CredentialKind, ctx: CallContext): Promise<ScheduledOutcome> {
    const spec =
      kind === 'access_token'
        ? this.#tokenSpec(appid)
        : this.#ticketSpec(appid, kind === 'jsapi_ticket' ? 'jsapi' : 'wx_card');
    const current = await this.#read(spec);
    const now = this.#deps.clock.now();
    if (current && now < current.refreshAtMs && now < current.expiresAtMs) return 'fresh';
    await this.#app(appid);
    const lock = await this.#lock.acquire(spec.keys.lock);
    if (!lock) return 'in_progress';
    const served = await this.#refreshHolding(spec, ctx, current, lock, { reason: 'schedule' });
    if (served.source === 'peer') return 'fresh';
    return served.source === 'stale' ? 'served_stale' : 'refreshed';
  }

  /** Whether the shared cache answers (for /healthz). */
  async cacheReachable(): Promise<boolean> {
    try {
      await this.#deps.store.get(`${this.#deps.settings.cacheKeyPrefix}:health`);
      return true;
    } catch {
      return false;
    }
  }

  // ---- the algorithm -------------------------------------------------------------------------

  async #get(spec: Spec, ctx: CallContext): Promise<Served> {
    const { clock, settings } = this.#deps;
    // 1. Memory copy.
    const memory = this.#memory.get(spec.keys.record);
    if (memory) {
      const now = clock.now();
      if (
        now - memory.confirmedAtMs < settings.memoryCacheSeconds * 1000 &&
        now < this.#userRefreshAtMs(memory.record) &&
        guaranteedUntilMs(memory.record, memory.confirmedAtMs, settings) > now
      ) {
        if (this.#writeBackPending.has(spec.keys.record)) await this.#writeBack(spec, memory, now);
        return this.#serve(memory, now, 'memory');
      }
    }
    // 2. Memcached.
    let current: CredentialRecord | null;
    try {
      current = await this.#read(spec);
    } catch (err) {
      if (isCacheDown(err)) return this.#outage(spec, ctx, err as ServiceError);
      throw err;
    }
    const now = clock.now();
    if (current && now < this.#userRefreshAtMs(current) && now < current.expiresAtMs) {
      return this.#serveRecord(current, now, 'cache');
    }
    if (!current && memory && (await this.#writeBack(spec, memory, now)) === 'written') {
      return this.#serve(memory, now, 'memory');
    }
    // 3. Inside the window, expired or missing.
    const reason: FetchReason = !current ? 'missing' : now < current.expiresAtMs ? 'window' : 'expired';
    return this.#refreshUnderLock(spec, ctx, current, { reason });
  }

  async #refreshUnderLock(
    spec: Spec,
    ctx: CallContext,
    current: CredentialRecord | null,
    mode: { reason: FetchReason; replaceGeneration?: number; avoid?: string },
  ): Promise<Served> {
    await this.#app(spec.appid); // unknown_appid before touching the lock
    const waitStartedAtMs = this.#deps.clock.now();
    for (;;) {
      let lock: LockHandle | null;
      try {
        lock = await this.#lock.acquire(spec.keys.lock);
      } catch (err) {
        if (isCacheDown(err)) return this.#outage(spec, ctx, err as ServiceError, mode.avoid);
        throw err;
      }
      if (lock) return this.#refreshHolding(spec, ctx, current, lock, mode);

      // 5. Lost: someone else is fetching.
      const now = this.#deps.clock.now();
      if (mode.replaceGeneration === undefined && current && now < current.expiresAtMs) {
        return this.#serveRecord(current, now, 'cache');
      }
      const outcome = await this.#waitForPeer(spec, ctx, current, mode.replaceGeneration);
      if (outcome.kind === 'served') {
        this.#deps.telemetry.lockWait(
          spec.kind,
          spec.appid,
          this.#deps.clock.now() - waitStartedAtMs,
          'peer',
        );
        return outcome.served;
      }
      this.#deps.telemetry.lockWait(
        spec.kind,
        spec.appid,
        this.#deps.clock.now() - waitStartedAtMs,
        'takeover',
      );
      current = outcome.latest;
      if (mode.replaceGeneration !== undefined && current && current.generation > mode.replaceGeneration) {
        return this.#serveRecord(current, this.#deps.clock.now(), 'peer');
      }
    }
  }

  /** 4. Holding the lock: re-read, fetch, write while still held, release. */
  async #refreshHolding(
    spec: Spec,
    ctx: CallContext,
    current: CredentialRecord | null,
    lock: LockHandle,
    mode: { reason: FetchReason; replaceGeneration?: number },
  ): Promise<Served> {
    const { clock, store, telemetry } = this.#deps;
    try {
      const latest = await this.#read(spec);
      const now = clock.now();
      if (latest) {
        const peerReplaced =
          mode.replaceGeneration !== undefined
            ? latest.generation > mode.replaceGeneration
            : latest.generation > (current?.generation ?? 0) &&
              now < latest.refreshAtMs &&
              now < latest.expiresAtMs;
        const stillFresh = mode.reason === 'schedule' && now < latest.refreshAtMs && now < latest.expiresAtMs;
        if (peerReplaced || stillFresh) return this.#serveRecord(latest, now, 'peer');
      }
      const base = latest ?? current;
      const fetchCtx: FetchContext = {
        deadlineAtMs: Math.min(ctx.deadlineAtMs, this.#lock.fetchDeadlineMs(lock)),
        reason: mode.reason,
        current: base,
        force: mode.reason === 'passive',
      };
      if (mode.reason === 'passive') await this.#admitPassive(spec.appid, base);

      let fetched: { grant: Grant; origin: Origin; sentAtMs: number };
      try {
        fetched = await spec.fetch(fetchCtx);
      } catch (err) {
        // 6. Serve the last valid value rather than fail.
        if (err instanceof ServiceError) await this.#shareFailure(spec, err);
        const valid = base && clock.now() < base.expiresAtMs && mode.reason !== 'passive' ? base : null;
        if (valid && err instanceof ServiceError) {
          telemetry.staleServed(spec.kind, spec.appid, err.code);
          telemetry.warn('refresh failed; serving the previous value while it is valid', {
            kind: spec.kind,
            appid: spec.appid,
            code: err.code,
            errcode: err.errcode,
          });
          return this.#serveRecord(valid, clock.now(), 'stale');
        }
        throw err;
      }
      const record = this.#newRecord(spec, fetched, base);
      let written = false;
      try {
        written = await this.#lock.stillHeld(lock);
        if (written)
          await store.set(spec.keys.record, encodeRecord(record), recordTtlSeconds(record, clock.now()));
      } catch (err) {
        if (!isCacheDown(err)) throw err;
        written = false;
      }
      if (!written) {
        // The new value is valid, but peers cannot see it and may refresh at any moment: serve it
        // with the promise of a value that is due for refresh now.
        telemetry.warn('could not write the new record (cache failure or lease ended); serving it unshared', {
          kind: spec.kind,
          appid: spec.appid,
        });
        const unshared = { ...record, refreshAtMs: Math.min(record.refreshAtMs, clock.now()) };
        return this.#serveRecord(unshared, clock.now(), 'wechat');
      }
      return this.#serveRecord(record, clock.now(), 'wechat');
    } finally {
      await this.#lock.release(lock);
    }
  }

  async #waitForPeer(
    spec: Spec,
    ctx: CallContext,
    current: CredentialRecord | null,
    replaceGeneration: number | undefined,
  ): Promise<{ kind: 'served'; served: Served } | { kind: 'takeover'; latest: CredentialRecord | null }> {
    const { clock, sleep } = this.#deps;
    const floorGeneration = replaceGeneration ?? current?.generation ?? 0;
    let delayMs = POLL_FIRST_MS;
    for (;;) {
      const jittered = delayMs / 2 + Math.random() * delayMs;
      if (clock.now() + jittered >= ctx.deadlineAtMs) {
        this.#deps.telemetry.lockWait(spec.kind, spec.appid, 0, 'timeout');
        throw new ServiceError(
          'refresh_in_progress',
          `another instance is refreshing the ${spec.kind} of appid ${spec.appid} and did not finish in the time this request had; retry`,
        );
      }
      await sleep(jittered);
      delayMs = Math.min(delayMs * 2, POLL_MAX_MS);
      const latest = await this.#read(spec);
      const now = clock.now();
      if (latest && latest.generation > floorGeneration && now < latest.expiresAtMs) {
        return { kind: 'served', served: this.#serveRecord(latest, now, 'peer') };
      }
      if (!(await this.#lock.isHeld(spec.keys.lock))) {
        // Released without a new value: the holder failed. Share its failure rather than repeat the call.
        const failure = decodeFailure(await this.#deps.store.get(spec.keys.failed), true);
        if (failure) throw failure;
        return { kind: 'takeover', latest };
      }
    }
  }

  /** A lock holder's failure, kept two seconds for the requests waiting on it. */
  async #shareFailure(spec: Spec, error: ServiceError): Promise<void> {
    const body = JSON.stringify({ code: error.code, message: error.message, errcode: error.errcode });
    await this.#deps.store.set(spec.keys.failed, body, 2).catch(() => {});
  }

  /** Passive refresh admission: the daily budget, and for stable apps WeChat's force-refresh limits. */
  async #admitPassive(appid: string, current: CredentialRecord | null): Promise<void> {
    const { store, settings, clock } = this.#deps;
    const day = quotaDay(clock.now());
    const keys = passiveKeys(settings.cacheKeyPrefix, appid);
    const ttl = secondsToQuotaDayEnd(clock.now()) + 3600;
    const accepted = await store.increment(keys.accepted(day), ttl);
    if (accepted > settings.passiveRefreshDailyBudget) {
      throw new ServiceError(
        'refresh_rejected',
        `passive refresh budget of ${settings.passiveRefreshDailyBudget} a day is used up for appid ${appid}; ` +
          'the current token is still the one WeChat issued last: check the reporting service uses this appid, ' +
          'or raise PASSIVE_REFRESH_DAILY_BUDGET',
      );
    }
    if (current?.origin === 'stable' || (await this.#app(appid)).tokenApi === 'stable') {
      const spaced = await store.add(keys.forceSpacing, '1', Math.ceil(STABLE_FORCE_SPACING_MS / 1000));
      if (!spaced) {
        throw new ServiceError(
          'refresh_rejected',
          `WeChat allows a stable-token force refresh every 30 s; appid ${appid} had one less than 30 s ago: retry after 30 s`,
        );
      }
      const forced = await store.increment(keys.forceCount(day), ttl);
      if (forced > 20) {
        throw new ServiceError(
          'refresh_rejected',
          `WeChat allows 20 stable-token force refreshes a day; appid ${appid} has used them: the token is refreshed normally before it expires`,
        );
      }
    }
  }

  /**
   * When a request refreshes inline: a little after the schedule may (one schedule interval, at most
   * half the remaining window), so that with steady traffic the schedule, not a user, waits on WeChat.
   * Promises do not change: they are bounded by `refreshAtMs`, the earliest refresh of either kind.
   */
  #userRefreshAtMs(record: CredentialRecord): number {
    const headStartMs = Math.min(
      this.#deps.settings.scheduleIntervalSeconds * 1000,
      Math.floor((record.expiresAtMs - record.refreshAtMs) / 2),
    );
    return record.refreshAtMs + Math.max(0, headStartMs);
  }

  // ---- cache outage --------------------------------------------------------------------------

  /**
   * Memcached came back empty (restarted, flushed) while this instance still holds a value within
   * its guarantee: put it back — with `add`, so a peer's newer write is never overwritten — and the
   * next new instance is served from the cache instead of fetching.
   */
  async #writeBack(
    spec: Spec,
    memory: MemoryEntry,
    now: number,
  ): Promise<'written' | 'exists' | 'unfit' | 'failed'> {
    const { record } = memory;
    const key = spec.keys.record;
    if (
      now >= record.refreshAtMs ||
      guaranteedUntilMs(record, memory.confirmedAtMs, this.#deps.settings) <= now
    ) {
      this.#writeBackPending.delete(key);
      return 'unfit';
    }
    let added: boolean;
    try {
      added = await this.#deps.store.add(key, encodeRecord(record), recordTtlSeconds(record, now));
    } catch {
      return 'failed';
    }
    this.#writeBackPending.delete(key);
    if (!added) return 'exists';
    this.#deps.telemetry.warn('wrote the value held in memory back to an empty cache', {
      kind: spec.kind,
      appid: spec.appid,
    });
    return 'written';
  }

  /** `avoid`: a value a consumer reported as rejected by WeChat — never the answer. */
  async #outage(spec: Spec, ctx: CallContext, cause: ServiceError, avoid?: string): Promise<Served> {
    const { clock, telemetry, settings } = this.#deps;
    this.#writeBackPending.add(spec.keys.record);
    const memory = this.#memory.get(spec.keys.record);
    const now = clock.now();
    if (memory && memory.record.value !== avoid && now < memory.record.expiresAtMs) {
      telemetry.staleServed(spec.kind, spec.appid, 'cache_unavailable');
      return this.#serve(memory, now, 'stale');
    }
    const app = await this.#app(spec.appid);
    if (spec.kind === 'access_token' && app.tokenApi === 'classic' && settings.cacheOutagePolicy === 'fail')
      throw cause;
    let inFlight = this.#outageFetches.get(spec.keys.record);
    if (!inFlight) {
      inFlight = (async () => {
        const fetched = await spec.fetch({
          deadlineAtMs: ctx.deadlineAtMs,
          reason: 'outage',
          current: null,
          force: false,
        });
        const record = this.#newRecord(spec, fetched, null);
        this.#memory.set(spec.keys.record, { record, confirmedAtMs: clock.now() });
        return record;
      })().finally(() => this.#outageFetches.delete(spec.keys.record));
      this.#outageFetches.set(spec.keys.record, inFlight);
    }
    const record = await inFlight;
    return this.#serveRecord(record, clock.now(), 'wechat');
  }

  // ---- fetchers ------------------------------------------------------------------------------

  #tokenSpec(appid: string): Spec {
    const keys = recordKeys(this.#deps.settings.cacheKeyPrefix, 'access_token', appid);
    return {
      kind: 'access_token',
      appid,
      keys,
      fetch: async (ctx) => {
        let app = await this.#app(appid);
        let api: TokenApi = app.tokenApi;
        if (ctx.reason === 'outage' && this.#deps.settings.cacheOutagePolicy === 'stable_fallback')
          api = 'stable';
        const upstream: UpstreamName = api === 'classic' ? 'token' : 'stable_token';
        const force = api === 'stable' && ctx.force;
        const call = async () => {
          const sentAtMs = this.#deps.clock.now();
          const grant = await this.#deps.wechat.fetchAccessToken(app, api, {
            deadlineAtMs: ctx.deadlineAtMs,
            forceRefresh: force,
          });
          return { grant, origin: api as Origin, sentAtMs };
        };
        try {
          return await this.#upstream(upstream, appid, ctx.reason, call);
        } catch (err) {
          if (!(err instanceof ServiceError)) throw err;
          // Two classic failures turn to the stable endpoint, whose token no classic fetch invalidates:
          // - the daily quota is used up (stable has its own, far larger, quota);
          // - the call failed ambiguously (timeout, reset, gateway error): WeChat may have issued a
          //   token all the same, and a second classic call now would kill the cached token at once.
          if (
            api === 'classic' &&
            (err.code === 'wechat_quota_exhausted' || err instanceof AmbiguousUpstreamError)
          ) {
            api = 'stable';
            try {
              return await this.#upstream('stable_token', appid, ctx.reason, call);
            } catch {
              throw err;
            }
          }
          // Secret rotation: re-read the secret once; if it changed, try once more with the new one.
          if (err.code !== 'wechat_credentials_rejected') throw err;
          const reloaded = (await this.#deps.credentials.get({ reload: true })).apps.get(appid);
          if (!reloaded || reloaded.secret === app.secret) throw err;
          app = reloaded;
          await this.#forget(upstream, appid);
          return this.#upstream(upstream, appid, ctx.reason, call);
        }
      },
    };
  }

  #ticketSpec(appid: string, type: TicketType): Spec {
    const kind = ticketKind(type);
    const keys = recordKeys(this.#deps.settings.cacheKeyPrefix, kind, appid);
    const upstream: UpstreamName = type === 'jsapi' ? 'ticket_jsapi' : 'ticket_wx_card';
    return {
      kind,
      appid,
      keys,
      fetch: async (ctx) => {
        const token = await this.getAccessToken(appid, ctx);
        const once = (accessToken: string, reason: FetchReason) =>
          this.#upstream(upstream, appid, reason, async () => {
            const sentAtMs = this.#deps.clock.now();
            const grant = await this.#deps.wechat.fetchTicket(appid, accessToken, type, ctx);
            return { grant, origin: 'ticket' as const, sentAtMs };
          });
        // At the end of a ticket's life WeChat may still hand back the dying ticket for a moment:
        // ask again shortly rather than serve it, a few times within the deadline.
        const call = async (accessToken: string, reason: FetchReason) => {
          for (let attempt = 1; ; attempt++) {
            const fetched = await once(accessToken, reason);
            const stale =
              ctx.current?.value === fetched.grant.value && fetched.sentAtMs >= ctx.current.expiresAtMs;
            if (!stale || attempt >= 4 || this.#deps.clock.now() + 200 >= ctx.deadlineAtMs) return fetched;
            await this.#deps.sleep(100);
          }
        };
        try {
          return await call(token.value, ctx.reason);
        } catch (err) {
          // getticket answering 40001/42001 means the access token died: refresh it passively, retry once.
          if (
            !(err instanceof ServiceError) ||
            err.errcode === undefined ||
            !TOKEN_INVALID_ERRCODES.has(err.errcode)
          )
            throw err;
          const refreshed = await this.refreshAccessToken(appid, token.value, ctx);
          if (refreshed.value === token.value) throw err;
          return call(refreshed.value, 'ticket_retry');
        }
      },
    };
  }

  /** Counts the call, refuses it while a failure is remembered, remembers credential/IP/quota failures. */
  async #upstream<T>(
    upstream: UpstreamName,
    appid: string,
    reason: FetchReason,
    call: () => Promise<T>,
  ): Promise<T> {
    const { store, clock, settings, telemetry } = this.#deps;
    const keys = upstreamKeys(settings.cacheKeyPrefix, upstream, appid);
    const remembered = await this.#remembered(keys.failure);
    if (remembered) throw remembered;
    const now = clock.now();
    store.increment(keys.dailyCalls(quotaDay(now)), secondsToQuotaDayEnd(now) + 3600).catch(() => {});
    telemetry.upstreamCall(upstream, appid, reason);
    try {
      return await call();
    } catch (err) {
      if (err instanceof ServiceError) {
        telemetry.upstreamError(upstream, appid, err.code, err.errcode);
        const ttlSeconds =
          err.code === 'wechat_quota_exhausted'
            ? secondsToQuotaDayEnd(clock.now())
            : REMEMBERED.has(err.code)
              ? settings.failureMemorySeconds
              : 0;
        if (ttlSeconds > 0) await this.#remember(keys.failure, err, ttlSeconds);
      }
      throw err;
    }
  }

  async #remembered(key: string): Promise<ServiceError | null> {
    const now = this.#deps.clock.now();
    const local = this.#failures.get(key);
    if (local && now < local.untilMs) return local.error;
    let text: string | null;
    try {
      text = await this.#deps.store.get(key);
    } catch {
      return null;
    }
    return decodeFailure(text);
  }

  async #remember(key: string, error: ServiceError, ttlSeconds: number): Promise<void> {
    this.#failures.set(key, { error, untilMs: this.#deps.clock.now() + ttlSeconds * 1000 });
    const body = JSON.stringify({ code: error.code, message: error.message, errcode: error.errcode });
    await this.#deps.store.set(key, body, ttlSeconds).catch(() => {});
  }

  async #forget(upstream: UpstreamName, appid: string): Promise<void> {
    const key = upstreamKeys(this.#deps.settings.cacheKeyPrefix, upstream, appid).failure;
    this.#failures.delete(key);
    await this.#deps.store.delete(key).catch(() => {});
  }

  // ---- records -------------------------------------------------------------------------------

  async #read(spec: Spec): Promise<CredentialRecord | null> {
    const text = await this.#deps.store.get(spec.keys.record);
    const record = decodeRecord(text, spec.kind, spec.appid);
    if (text !== null && record === null) {
      this.#deps.telemetry.warn('ignoring a cache value that is not a valid record', {
        kind: spec.kind,
        appid: spec.appid,
      });
    }
    return record;
  }

  #newRecord(
    spec: Spec,
    fetched: { grant: Grant; origin: Origin; sentAtMs: number },
    previous: CredentialRecord | null,
  ): CredentialRecord {
    const { settings, instanceId } = this.#deps;
    const { grant, origin, sentAtMs } = fetched;
    const jitter = (this.#deps.jitter ?? hashJitter)(spec.kind, spec.appid);
    const same = previous !== null && previous.value === grant.value;
    let fetchedAtMs = sentAtMs;
    let expiresAtMs =
      origin === 'ticket'
        ? sentAtMs + grant.expiresInSeconds * 1000
        : naturalExpiryMs(sentAtMs, grant.expiresInSeconds);
    let refresh = refreshAtMs(fetchedAtMs, expiresAtMs, origin, jitter, settings);
    if (same) {
      // WeChat handed back the value we hold. A ticket's `expires_in` is then the full life again,
      // so its life counts from first sight, and asking again before it ends gains nothing.
      fetchedAtMs = previous.fetchedAtMs;
      if (origin === 'ticket') {
        // Still handed out after the life we counted: alive now, for an unknown while — keep it briefly.
        expiresAtMs =
          previous.expiresAtMs > sentAtMs ? Math.min(expiresAtMs, previous.expiresAtMs) : sentAtMs + 1000;
        refresh = expiresAtMs;
      } else {
        refresh = refreshAtMs(fetchedAtMs, expiresAtMs, origin, jitter, settings);
      }
    }
    return {
      kind: spec.kind,
      appid: spec.appid,
      value: grant.value,
      origin,
      fetchedAtMs,
      expiresAtMs,
      refreshAtMs: Math.max(refresh, fetchedAtMs + 1),
      generation: (previous?.generation ?? 0) + 1,
      writer: instanceId,
    };
  }

  #serveRecord(record: CredentialRecord, now: number, source: Source): Served {
    const entry = { record, confirmedAtMs: now };
    const key = recordKeys(this.#deps.settings.cacheKeyPrefix, record.kind, record.appid).record;
    const held = this.#memory.get(key);
    if (!held || held.record.generation <= record.generation || held.record.value === record.value)
      this.#memory.set(key, entry);
    return this.#serve(entry, now, source);
  }

  #serve(entry: MemoryEntry, now: number, source: Source): Served {
    const until = guaranteedUntilMs(entry.record, entry.confirmedAtMs, this.#deps.settings);
    const expiresIn = secondsUntil(until, now);
    return {
      kind: entry.record.kind,
      appid: entry.record.appid,
      value: entry.record.value,
      source,
      expiresIn,
      expiresAt: Math.floor(now / 1000) + expiresIn,
      generation: entry.record.generation,
      fetchedAtMs: entry.record.fetchedAtMs,
    };
  }

  async #app(appid: string): Promise<AppCredentials> {
    const app = (await this.#deps.credentials.get()).apps.get(appid);
    if (!app) {
      throw new ServiceError(
        'unknown_appid',
        `appid ${appid} is not configured: add it to the apps list of the credentials secret`,
      );
    }
    return app;
  }
}

const REMEMBERED: ReadonlySet<string> = new Set([
  'wechat_credentials_rejected',
  'wechat_ip_not_whitelisted',
  'wechat_ip_confirmation_required',
]);

/** Memcached TTL of a record: WeChat's lifetime, so a dead token disappears by itself. */
function recordTtlSeconds(record: CredentialRecord, now: number): number {
  return Math.max(1, Math.ceil((record.expiresAtMs - now) / 1000) + 1);
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

/** A stable per-(kind, appid) number in [0, 1): every instance computes the same refresh moment. */
function hashJitter(kind: CredentialKind, appid: string): number {
  let h = 2166136261;
  for (const ch of `${kind}:${appid}`) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) / 2 ** 32;
}

/** A stored failure; `anyCode` accepts every catalogue code (a holder's failure shared with its waiters). */
function decodeFailure(text: string | null, anyCode = false): ServiceError | null {
  if (text === null) return null;
  try {
    const raw = JSON.parse(text) as { code?: unknown; message?: unknown; errcode?: unknown };
    if (typeof raw.code !== 'string') return null;
    const known = anyCode
      ? Object.hasOwn(ERROR_CATALOGUE, raw.code)
      : REMEMBERED.has(raw.code) || raw.code === 'wechat_quota_exhausted';
    if (!known) return null;
    if (typeof raw.message !== 'string' || raw.message.length > 1000) return null;
    const errcode =
      typeof raw.errcode === 'number' && Number.isInteger(raw.errcode) ? raw.errcode : undefined;
    return new ServiceError(
      raw.code as keyof typeof ERROR_CATALOGUE,
      raw.message,
      errcode === undefined ? {} : { errcode },
    );
  } catch {
    return null;
  }
}
