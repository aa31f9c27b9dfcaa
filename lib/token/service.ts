/**
 * The token service: one WeChat fetch per token lifetime, however many instances ask.
 *
 * For a (kind, appid) — kind is access_token or a ticket; appid a WeChat appid or a WeCom
 * `corpid:agentid` — the algorithm is:
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
 * Passive refresh: a report that token X failed refreshes only when X is still the current token,
 * min age old and within the daily budget; every reporter then gets the new token, and X is dead for
 * good (reported.ts). Beside the algorithm: the quota guard (upstream-guard.ts), how each kind is
 * fetched — including the record-loss rule, a missing classic record gets a stable token first
 * (fetchers.ts, lifetime.ts) — and the cache outage (outage.ts).
 */

import {
  type CallContext,
  type FetchReason,
  type Served,
  type TicketType,
  type TokenKind,
  type TokenRecord,
  ticketType,
} from '../domain.ts';
import { ServiceError } from '../errors.ts';
import { requireApp } from '../secrets/credentials.ts';
import { type FetchContext, type FetcherDeps, type Target, ticketTarget, tokenTarget } from './fetchers.ts';
import { passiveMinAgeMs, userRefreshAtMs } from './lifetime.ts';
import { isCacheDown, type LockHandle, RefreshLock } from './lock.ts';
import { MemoryCopies } from './memory-copy.ts';
import { Outage } from './outage.ts';
import { type QuotaResetResult, resetQuota } from './quota-reset.ts';
import { QuotaWatch } from './quota-watch.ts';
import {
  buildRecord,
  encodeRecord,
  type Fetched,
  hashJitter,
  readRecord,
  recordTtlSeconds,
} from './record.ts';
import { ReportedTokens } from './reported.ts';
import type { RefreshMode, ScheduledOutcome, TokenServiceDeps } from './service-deps.ts';
import { UpstreamGuard } from './upstream-guard.ts';

export type { ScheduledOutcome, TokenServiceDeps, TokenServiceSettings } from './service-deps.ts';

/** How long a reported token of unknown life is remembered as dead: WeChat's longest token life. */
const DEAD_TOKEN_MEMORY_MS = 7_200_000;
const POLL_FIRST_MS = 20;
const POLL_MAX_MS = 250;

export class TokenService {
  readonly #deps: TokenServiceDeps;
  readonly #lock: RefreshLock;
  readonly #memory: MemoryCopies;
  readonly #guard: UpstreamGuard;
  readonly #outage: Outage;
  readonly #reported: ReportedTokens;
  readonly #fetchers: FetcherDeps;
  /** getApiQuota checks and the outside-fetcher alarm (quota-watch.ts). */
  readonly quota: QuotaWatch;

  constructor(deps: TokenServiceDeps) {
    this.#deps = deps;
    const { store, clock, telemetry, settings, secrets } = deps;
    this.#lock = new RefreshLock(store, clock, settings.lockLeaseSeconds);
    this.#memory = new MemoryCopies(settings);
    this.#guard = new UpstreamGuard({ store, clock, telemetry, settings });
    this.#reported = new ReportedTokens({ store, clock, cacheKeyPrefix: settings.cacheKeyPrefix });
    this.#outage = new Outage({
      store,
      clock,
      telemetry,
      secrets,
      memory: this.#memory,
      reported: this.#reported,
      policy: settings.cacheOutagePolicy,
      buildRecord: (target, fetched) => this.#buildRecord(target, fetched, null),
    });
    this.#fetchers = { wechat: deps.wechat, secrets, clock, guard: this.#guard, settings };
    this.quota = new QuotaWatch({
      ...this.#fetchers,
      store,
      telemetry,
      settings,
      tokens: {
        get: (appid, ctx) => this.getAccessToken(appid, ctx),
        refresh: (appid, invalid, ctx) => this.refreshAccessToken(appid, invalid, ctx),
      },
    });
  }

  /** The access token of `appid`. Errors: unknown_appid, wechat_*, cache_unavailable, refresh_in_progress, secrets_*. */
  async getAccessToken(appid: string, ctx: CallContext): Promise<Served> {
    return this.#get(tokenTarget(this.#fetchers, appid), ctx);
  }

  /** A JS-SDK (`jsapi`) or card (`wx_card`) ticket of `appid`, through the same machinery as tokens. */
  async getTicket(appid: string, type: TicketType, ctx: CallContext): Promise<Served> {
    return this.#get(this.#ticketTarget(appid, type), ctx);
  }

  /**
   * Passive refresh: a consumer reports that `invalidToken` was rejected by WeChat (40001/42001).
   * Errors as getAccessToken, plus refresh_rejected (budget, or stable force spacing).
   */
  async refreshAccessToken(appid: string, invalidToken: string, ctx: CallContext): Promise<Served> {
    const target = tokenTarget(this.#fetchers, appid);
    let current: TokenRecord | null;
    try {
      current = await this.#read(target);
    } catch (err) {
      if (isCacheDown(err)) return this.#outage.serve(target, ctx, err as ServiceError, invalidToken);
      throw err;
    }
    // Lost or never written: whatever is fetched now replaces the reported token, never it.
    if (!current) return this.#get(target, ctx, invalidToken);
    const now = this.#deps.clock.now();
    if (current.value === invalidToken) this.quota.reportedInvalid(current, now);
    if (
      current.value !== invalidToken ||
      now - current.fetchedAtMs < passiveMinAgeMs(current, this.#deps.settings)
    ) {
      // An older or unknown token, or one too young to be dead: the current token is the answer.
      return this.#memory.serveRecord(current, now, 'cache');
    }
    return this.#refreshUnderLock(target, ctx, current, {
      reason: 'passive',
      replaceGeneration: current.generation,
      avoid: invalidToken,
    });
  }

  /** The schedule: refresh (kind, appid) if its record is missing or inside the refresh window. */
  async refreshIfDue(appid: string, kind: TokenKind, ctx: CallContext): Promise<ScheduledOutcome> {
    const target = this.#targetOf(appid, kind);
    const current = await this.#read(target);
    const now = this.#deps.clock.now();
    if (current && now < current.refreshAtMs && now < current.expiresAtMs) return 'fresh';
    await requireApp(this.#deps.secrets, appid);
    const lock = await this.#lock.acquire(target.keys.lock);
    if (!lock) return 'in_progress';
    const served = await this.#refreshHolding(target, ctx, current, lock, { reason: 'schedule' });
    if (served.source === 'peer') return 'fresh';
    return served.source === 'stale' ? 'served_stale' : 'refreshed';
  }

  /**
   * The cached record of (kind, appid), or null: the schedule's order (closest to expiry first) and
   * `status`. Never served from here. Throws `cache_unavailable`.
   */
  async record(appid: string, kind: TokenKind): Promise<TokenRecord | null> {
    return this.#read(this.#targetOf(appid, kind));
  }

  /** Operator action: WeChat's clear_quota/v2 for `appid`, then its quota breakers close (quota-reset.ts). */
  async clearQuota(appid: string, ctx: CallContext): Promise<QuotaResetResult> {
    return resetQuota({ ...this.#fetchers, telemetry: this.#deps.telemetry }, appid, ctx);
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

  // ---- the algorithm, in the order of the header ---------------------------------------------

  /** `avoid`: a value a consumer reported as rejected by WeChat — never the answer. */
  async #get(target: Target, ctx: CallContext, avoid?: string): Promise<Served> {
    const { clock, settings } = this.#deps;
    // 1. Memory copy, unless its value was reported dead.
    let memory = this.#memory.get(target.keys.record);
    if (memory && (memory.record.value === avoid || this.#reported.knownDead(memory.record.value))) {
      memory = undefined;
    }
    if (memory) {
      const now = clock.now();
      if (
        now - memory.confirmedAtMs < settings.memoryCacheSeconds * 1000 &&
        now < userRefreshAtMs(memory.record, this.#deps.settings) &&
        this.#memory.guaranteedUntilMs(memory) > now
      ) {
        if (this.#outage.owesWriteBack(target.keys.record)) await this.#outage.writeBack(target, memory, now);
        return this.#memory.serve(memory, now, 'memory');
      }
    }
    // 2. Memcached.
    let current: TokenRecord | null;
    try {
      current = await this.#read(target);
    } catch (err) {
      if (isCacheDown(err)) return this.#outage.serve(target, ctx, err as ServiceError, avoid);
      throw err;
    }
    const now = clock.now();
    if (current && now < userRefreshAtMs(current, this.#deps.settings) && now < current.expiresAtMs) {
      return this.#memory.serveRecord(current, now, 'cache');
    }
    if (!current && memory && (await this.#outage.writeBack(target, memory, now)) === 'written') {
      return this.#memory.serve(memory, now, 'memory');
    }
    // 3. Inside the window, expired or missing.
    const reason: FetchReason = !current ? 'missing' : now < current.expiresAtMs ? 'window' : 'expired';
    return this.#refreshUnderLock(target, ctx, current, avoid === undefined ? { reason } : { reason, avoid });
  }

  /** 3. Try the lock: won → 4; lost → 5, until a peer's value arrives or its lease lapses. */
  async #refreshUnderLock(
    target: Target,
    ctx: CallContext,
    current: TokenRecord | null,
    mode: RefreshMode,
  ): Promise<Served> {
    const { clock, telemetry } = this.#deps;
    await requireApp(this.#deps.secrets, target.appid); // unknown_appid before touching the lock
    const waitStartedAtMs = clock.now();
    for (;;) {
      let lock: LockHandle | null;
      try {
        lock = await this.#lock.acquire(target.keys.lock);
      } catch (err) {
        if (isCacheDown(err)) return this.#outage.serve(target, ctx, err as ServiceError, mode.avoid);
        throw err;
      }
      if (lock) return this.#refreshHolding(target, ctx, current, lock, mode);

      // 5. Lost: someone else is fetching.
      const now = clock.now();
      if (mode.replaceGeneration === undefined && current && now < current.expiresAtMs) {
        return this.#memory.serveRecord(current, now, 'cache');
      }
      const outcome = await this.#waitForPeer(target, ctx, current, mode);
      const waited = { kind: target.kind, appid: target.appid, waitedMs: clock.now() - waitStartedAtMs };
      if (outcome.kind === 'served') {
        telemetry.emit({ event: 'lock.wait', ...waited, outcome: 'peer' });
        return outcome.served;
      }
      telemetry.emit({ event: 'lock.wait', ...waited, outcome: 'takeover' });
      current = outcome.latest;
      if (
        mode.replaceGeneration !== undefined &&
        current &&
        current.generation > mode.replaceGeneration &&
        current.value !== mode.avoid
      ) {
        return this.#memory.serveRecord(current, clock.now(), 'peer');
      }
    }
  }

  /** 4. Holding the lock: re-read, fetch, write while still held, release. 6 on a failed fetch. */
  async #refreshHolding(
    target: Target,
    ctx: CallContext,
    current: TokenRecord | null,
    lock: LockHandle,
    mode: RefreshMode,
  ): Promise<Served> {
    const { clock, store, telemetry } = this.#deps;
    try {
      const latest = await this.#read(target);
      const now = clock.now();
      if (latest && latest.value !== mode.avoid) {
        const peerReplaced =
          mode.replaceGeneration !== undefined
            ? latest.generation > mode.replaceGeneration
            : latest.generation > (current?.generation ?? 0) &&
              now < latest.refreshAtMs &&
              now < latest.expiresAtMs;
        const stillFresh = mode.reason === 'schedule' && now < latest.refreshAtMs && now < latest.expiresAtMs;
        if (peerReplaced || stillFresh) return this.#memory.serveRecord(latest, now, 'peer');
      }
      const base = latest ?? current;
      const fetchCtx: FetchContext = {
        deadlineAtMs: Math.min(ctx.deadlineAtMs, this.#lock.fetchDeadlineMs(lock)),
        reason: mode.reason,
        current: base,
        force: mode.reason === 'passive',
      };
      if (mode.reason === 'passive') {
        await this.#guard.admitPassive(
          target.appid,
          // Whether the refresh will be a stable force refresh (WeChat's own limits then apply).
          async () =>
            (base?.classicNotBeforeMs ?? 0) > clock.now() ||
            (await requireApp(this.#deps.secrets, target.appid)).tokenApi === 'stable',
        );
      }

      let fetched: Fetched;
      try {
        fetched = await target.fetch(fetchCtx);
      } catch (err) {
        // 6. Serve the last valid value rather than fail.
        if (err instanceof ServiceError) await this.#guard.shareHolderFailure(target.keys.failed, err);
        const valid = base && clock.now() < base.expiresAtMs && mode.reason !== 'passive' ? base : null;
        if (valid && err instanceof ServiceError) {
          telemetry.emit({
            event: 'token.stale_served',
            kind: target.kind,
            appid: target.appid,
            code: err.code,
            errcode: err.errcode,
          });
          return this.#memory.serveRecord(valid, clock.now(), 'stale');
        }
        throw err;
      }
      if (mode.avoid !== undefined && fetched.grant.value === mode.avoid) {
        throw new ServiceError(
          'wechat_unavailable',
          `WeChat still hands out the ${target.kind} of appid ${target.appid} that was reported invalid; retry shortly`,
        );
      }
      const record = this.#buildRecord(target, fetched, base);
      if (mode.avoid !== undefined) {
        // The reported token is replaced: dead for good, here and (through the cache) everywhere.
        const until = base?.value === mode.avoid ? base.expiresAtMs : clock.now() + DEAD_TOKEN_MEMORY_MS;
        await this.#reported.markDead(target, mode.avoid, until);
      }
      let written = false;
      try {
        written = await this.#lock.stillHeld(lock);
        if (written)
          await store.set(target.keys.record, encodeRecord(record), recordTtlSeconds(record, clock.now()));
      } catch (err) {
        if (!isCacheDown(err)) throw err;
        written = false;
      }
      if (!written) {
        // The new value is valid, but peers cannot see it and may refresh at any moment: serve it
        // with the promise of a value that is due for refresh now.
        telemetry.emit({ event: 'record.unshared', kind: target.kind, appid: target.appid });
        const unshared = { ...record, refreshAtMs: Math.min(record.refreshAtMs, clock.now()) };
        return this.#memory.serveRecord(unshared, clock.now(), 'wechat');
      }
      return this.#memory.serveRecord(record, clock.now(), 'wechat');
    } finally {
      await this.#lock.release(lock);
    }
  }

  /** 5. Poll with jitter for the holder's write, bounded by the deadline; share its failure; take over a lapsed lease. */
  async #waitForPeer(
    target: Target,
    ctx: CallContext,
    current: TokenRecord | null,
    mode: RefreshMode,
  ): Promise<{ kind: 'served'; served: Served } | { kind: 'takeover'; latest: TokenRecord | null }> {
    const { clock } = this.#deps;
    const floorGeneration = mode.replaceGeneration ?? current?.generation ?? 0;
    let delayMs = POLL_FIRST_MS;
    for (;;) {
      const jittered = delayMs / 2 + clock.random() * delayMs;
      if (clock.now() + jittered >= ctx.deadlineAtMs) {
        this.#deps.telemetry.emit({
          event: 'lock.wait',
          kind: target.kind,
          appid: target.appid,
          waitedMs: 0,
          outcome: 'timeout',
        });
        throw new ServiceError(
          'refresh_in_progress',
          `another instance is refreshing the ${target.kind} of appid ${target.appid} and did not finish in the time this request had; retry`,
        );
      }
      await clock.sleep(jittered);
      delayMs = Math.min(delayMs * 2, POLL_MAX_MS);
      const latest = await this.#read(target);
      const now = clock.now();
      if (
        latest &&
        latest.generation > floorGeneration &&
        latest.value !== mode.avoid &&
        now < latest.expiresAtMs
      ) {
        return { kind: 'served', served: this.#memory.serveRecord(latest, now, 'peer') };
      }
      if (!(await this.#lock.isHeld(target.keys.lock))) {
        // Released without a new value: the holder failed. Share its failure rather than repeat the call.
        const failure = await this.#guard.holderFailure(target.keys.failed);
        if (failure) throw failure;
        return { kind: 'takeover', latest };
      }
    }
  }

  // ---- helpers -------------------------------------------------------------------------------

  #targetOf(appid: string, kind: TokenKind): Target {
    return kind === 'access_token'
      ? tokenTarget(this.#fetchers, appid)
      : this.#ticketTarget(appid, ticketType(kind));
  }

  #ticketTarget(appid: string, type: TicketType): Target {
    return ticketTarget(
      this.#fetchers,
      {
        get: (id, ctx) => this.getAccessToken(id, ctx),
        refresh: (id, invalid, ctx) => this.refreshAccessToken(id, invalid, ctx),
      },
      appid,
      type,
    );
  }

  #read(target: Target): Promise<TokenRecord | null> {
    return readRecord(this.#deps.store, this.#deps.telemetry, target);
  }

  #buildRecord(target: Target, fetched: Fetched, previous: TokenRecord | null): TokenRecord {
    const { settings, instanceId } = this.#deps;
    const jitter = (this.#deps.jitter ?? hashJitter)(target.kind, target.appid);
    return buildRecord(target, fetched, previous, jitter, settings, instanceId);
  }
}
