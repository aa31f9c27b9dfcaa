/**
 * Quota made visible, and outside fetchers detected.
 *
 * A check asks WeChat's getApiQuota for today's `used`/`daily_limit`/`remain` of `/cgi-bin/token`
 * (and `/cgi-bin/ticket/getticket` for apps with tickets), publishes them as metrics, warns at 80 %
 * used, and compares WeChat's `used` for `/cgi-bin/token` with the service's own count of the same
 * WeChat day (UTC+8). More calls at WeChat than the service made means another process fetches this
 * app's tokens — and every classic fetch kills the token the service handed out 5 minutes later:
 * the most common cause of intermittent 40001. That is `quota.outside_fetcher` (an ERROR line naming
 * the appid, both counts and what to do) and the metric `OutsideFetcherSuspected`.
 *
 * No false alarm, by construction:
 * - the service's count is shared by every instance (a Memcached counter per upstream, app and day,
 *   upstream-guard.ts), counts every attempt (retries included) before it is sent, and adds the calls
 *   an instance could not count in the cache (outage) — so it is never behind WeChat's for the
 *   service's own calls;
 * - WeChat is asked first and the service's count read after: a call in between raises the service's
 *   count, never WeChat's alone;
 * - calls made in the last minute of a day are allowed for on the next one (WeChat's clock may put
 *   them there), and a check that straddles midnight compares nothing;
 * - the service's counts are complete for a day only if the cache has held them since the day began:
 *   the schedule marks each day in the cache as it starts counting it. When that mark is missing or
 *   came late (a first deploy, a flushed or replaced cache, a new CACHE_KEY_PREFIX), the day's first
 *   check takes WeChat's excess as it finds it as the baseline, and later checks compare what was
 *   added since; a counter found lower than at the baseline (lost) takes a new baseline.
 * Only more calls at WeChat than that raise the alarm.
 *
 * The schedule checks each app at most once per QUOTA_CHECK_INTERVAL_SECONDS, fleet-wide: the
 * instance whose Memcached `add` of the app's check marker succeeds checks. The last report is kept
 * in the cache for `status` (until the day ends).
 *
 * A report (passive refresh) of the current token while it still had more than WeChat's 5-minute
 * overlap of its natural life is the same evidence seen from the other side: nothing this service did
 * killed it, so someone else fetched (see {@link killedEarly}).
 */
import {
  type ApiQuota,
  type CallContext,
  type Served,
  type TokenApi,
  type TokenRecord,
  weComApp,
} from '../domain.ts';
import { ServiceError } from '../errors.ts';
import type { Clock, KeyValueStore, SecretSource, Telemetry, WeChatApi } from '../ports.ts';
import { requireApp, requireCredentials } from '../secrets/credentials.ts';
import { TOKEN_INVALID_ERRCODES } from '../wechat/errcodes.ts';
import { OVERLAP_MS } from './lifetime.ts';
import { RECORD_FORMAT, type UpstreamName } from './record.ts';
import { quotaDay, secondsToQuotaDayEnd, type UpstreamGuard, type UpstreamStatus } from './upstream-guard.ts';

/** WeChat's path of the classic token endpoint, as getApiQuota names it. */
export const TOKEN_CGI_PATH = '/cgi-bin/token';
export const TICKET_CGI_PATH = '/cgi-bin/ticket/getticket';
/** `quota.warning` from this share of the daily limit used. */
export const QUOTA_WARNING_RATIO = 0.8;
/** A day whose counting mark was set this soon after it began (China time) is counted completely. */
const COMPLETE_DAY_MARK_MS = 15 * 60_000;

/** One endpoint's figures: WeChat's, and the service's own count of the same day. */
export interface EndpointQuota {
  cgiPath: string;
  wechat: ApiQuota;
  /** Calls the service made today (every instance); null when the cache could not say. */
  serviceCount: number | null;
}

/** What a check found. Stored in the cache for `status` until the WeChat day ends. */
export interface QuotaReport {
  appid: string;
  checkedAtMs: number;
  /** The WeChat quota day (UTC+8), `YYYYMMDD`. */
  day: string;
  token: EndpointQuota;
  ticket?: EndpointQuota;
  outsideFetcherSuspected: boolean;
}

export interface QuotaWatchDeps {
  store: KeyValueStore;
  clock: Pick<Clock, 'now'>;
  telemetry: Telemetry;
  wechat: WeChatApi;
  secrets: SecretSource;
  guard: UpstreamGuard;
  /** The app's access token (getApiQuota needs one), and passive refresh when WeChat calls it dead. */
  tokens: {
    get(appid: string, ctx: CallContext): Promise<Served>;
    refresh(appid: string, invalidToken: string, ctx: CallContext): Promise<Served>;
  };
  settings: { cacheKeyPrefix: string; quotaCheckIntervalSeconds: number };
}

/** Tokens this instance already flagged as killed early (appid:generation), so a report storm logs once. */
const FLAGGED_MAX = 1000;

export class QuotaWatch {
  readonly #deps: QuotaWatchDeps;
  readonly #flagged = new Set<string>();

  constructor(deps: QuotaWatchDeps) {
    this.#deps = deps;
  }

  /**
   * The schedule's check: runs only when no instance checked `appid` within
   * QUOTA_CHECK_INTERVAL_SECONDS (null otherwise, and when the cache cannot coordinate).
   */
  async checkIfDue(appid: string, ctx: CallContext): Promise<QuotaReport | null> {
    const { store, settings, clock } = this.#deps;
    // getApiQuota is WeChat's: WeCom has no such endpoint.
    if (settings.quotaCheckIntervalSeconds <= 0 || weComApp(appid)) return null;
    const now = clock.now();
    await store
      .add(this.#countingKey(quotaDay(now)), String(now), secondsToQuotaDayEnd(now) + 3600)
      .catch(() => false);
    const marker = `${this.#base}:quota-check:${appid}`;
    // One second more: Memcached expires on whole-second ticks (see the quota breaker's probe marker).
    const mine = await store.add(marker, '1', settings.quotaCheckIntervalSeconds + 1).catch(() => false);
    return mine ? this.check(appid, ctx) : null;
  }

  /**
   * Asks WeChat now (the schedule when due, `status` with `check_quota`). Errors: unknown_appid,
   * wechat_* (getApiQuota's or the token's), cache_unavailable, secrets_*.
   */
  async check(appid: string, ctx: CallContext): Promise<QuotaReport> {
    const { clock, guard, tokens, wechat, secrets } = this.#deps;
    const app = await requireApp(secrets, appid);
    if (app.tokenApi === 'wecom') {
      throw new ServiceError(
        'invalid_request',
        `check_quota reads WeChat's getApiQuota; ${appid} is a WeCom app, which has no such endpoint`,
      );
    }
    const day = quotaDay(clock.now());
    let token = (await tokens.get(appid, ctx)).value;
    const ask = async (cgiPath: string): Promise<ApiQuota> => {
      try {
        return await wechat.getApiQuota(appid, token, cgiPath, ctx);
      } catch (err) {
        // The token died under us (someone else fetched?): report it — which flags a token killed
        // early — and ask again with the replacement, or with a stable token if it was not replaced.
        if (!(err instanceof ServiceError) || !TOKEN_INVALID_ERRCODES.has(err.errcode ?? 0)) throw err;
        const refreshed = await tokens.refresh(appid, token, ctx).catch(() => null);
        token =
          refreshed && refreshed.value !== token ? refreshed.value : await this.#stableToken(appid, ctx);
        return wechat.getApiQuota(appid, token, cgiPath, ctx);
      }
    };
    const tokenQuota = await ask(TOKEN_CGI_PATH);
    const ticketQuota = app.tickets.length > 0 ? await ask(TICKET_CGI_PATH) : undefined;
    // The service's counts after WeChat's: a call in between can only raise ours.
    const tokenCalls = await guard.todaysCalls('token', appid, day);
    const report: QuotaReport = {
      appid,
      checkedAtMs: clock.now(),
      day,
      token: { cgiPath: TOKEN_CGI_PATH, wechat: tokenQuota, serviceCount: tokenCalls?.calls ?? null },
      outsideFetcherSuspected: false,
    };
    if (ticketQuota) {
      const counts = await Promise.all([
        guard.todaysCalls('ticket_jsapi', appid, day),
        guard.todaysCalls('ticket_wx_card', appid, day),
      ]);
      const serviceCount = counts.every((c) => c !== null)
        ? counts.reduce((sum, c) => sum + (c?.calls ?? 0), 0)
        : null;
      report.ticket = { cgiPath: TICKET_CGI_PATH, wechat: ticketQuota, serviceCount };
    }
    for (const [upstream, figures] of [
      ['token', report.token],
      ['ticket', report.ticket],
    ] as const) {
      if (figures) this.#publish(appid, upstream, figures);
    }
    const sameDay = quotaDay(clock.now()) === day;
    if (sameDay && tokenCalls !== null) {
      const offset = await this.#baseline(appid, day, tokenQuota.used, tokenCalls.calls);
      if (tokenQuota.used > tokenCalls.calls + tokenCalls.slack + offset) {
        report.outsideFetcherSuspected = true;
        this.#deps.telemetry.emit(
          outsideFetcherEvent(appid, app.tokenApi, tokenQuota.used, tokenCalls.calls, offset),
        );
      }
    }
    await this.#deps.store
      .set(this.#lastKey(appid), JSON.stringify(report), secondsToQuotaDayEnd(clock.now()))
      .catch(() => {});
    return report;
  }

  /**
   * A consumer reported `current` (the cached token) invalid: flags it once per token on this instance
   * when it was killed early ({@link killedEarly}).
   */
  reportedInvalid(current: TokenRecord, nowMs: number): void {
    const event = killedEarly(current, nowMs);
    const key = `${current.appid}:${current.generation}`;
    if (!event || this.#flagged.has(key)) return;
    if (this.#flagged.size >= FLAGGED_MAX) this.#flagged.clear();
    this.#flagged.add(key);
    this.#deps.telemetry.emit(event);
  }

  /**
   * A stable token for a check whose token WeChat called dead and the service did not replace (too
   * young to refresh): WeChat's current stable token, which normal mode hands out without
   * invalidating anything; counted and guarded like every call, never cached or served.
   */
  async #stableToken(appid: string, ctx: CallContext): Promise<string> {
    const { secrets, guard, wechat } = this.#deps;
    const app = await requireCredentials(secrets, appid);
    const grant = await guard.call(
      'stable_token',
      { kind: 'access_token', appid },
      'quota_check',
      (countRetry) =>
        wechat.fetchAccessToken(app, 'stable', { deadlineAtMs: ctx.deadlineAtMs, beforeRetry: countRetry }),
    );
    return grant.value;
  }

  /** `status`: one upstream of `appid` — breaker, remembered failure, last error, today's calls. */
  upstreamStatus(appid: string, upstream: UpstreamName): Promise<UpstreamStatus> {
    return this.#deps.guard.describe(upstream, appid);
  }

  /** The last report of today, from any instance; null when none (or the cache cannot say). */
  async last(appid: string): Promise<QuotaReport | null> {
    const text = await this.#deps.store.get(this.#lastKey(appid)).catch(() => null);
    if (text === null) return null;
    try {
      const report = JSON.parse(text) as QuotaReport;
      return report.appid === appid && report.day === quotaDay(this.#deps.clock.now()) ? report : null;
    } catch {
      return null;
    }
  }

  #publish(appid: string, upstream: 'token' | 'ticket', figures: EndpointQuota): void {
    const { telemetry } = this.#deps;
    const { used, dailyLimit, remain } = figures.wechat;
    telemetry.emit({
      event: 'quota.checked',
      appid,
      upstream,
      used,
      limit: dailyLimit,
      remain,
      serviceCount: figures.serviceCount,
    });
    if (dailyLimit > 0 && used >= dailyLimit * QUOTA_WARNING_RATIO) {
      telemetry.emit({
        event: 'quota.warning',
        appid,
        upstream,
        used,
        limit: dailyLimit,
        detail:
          `${Math.floor((used / dailyLimit) * 100)} % of today's quota of ${figures.cgiPath} is used for appid ${appid} ` +
          `(${used} of ${dailyLimit}); at 100 % WeChat answers 45009 until midnight China time. ` +
          `The service made ${figures.serviceCount ?? 'an unknown number of'} of them: find what else calls it, ` +
          'or reset the quota with the clear_quota action (10 a month)',
      });
    }
  }

  /**
   * WeChat's calls of `day` this service cannot account for because it did not count them (see the
   * header): 0 when the day is counted completely; else the excess the day's first check found, kept
   * in the cache; a new one when the counter went below its value at the baseline (it was lost).
   */
  async #baseline(appid: string, day: string, used: number, serviceCalls: number): Promise<number> {
    const { store, clock } = this.#deps;
    const key = `${this.#base}:quota-base:${appid}:${day}`;
    const stored = await store.get(key).catch(() => null);
    let base: { offset: number; service: number } | null = null;
    try {
      base = stored === null ? null : (JSON.parse(stored) as { offset: number; service: number });
    } catch {
      base = null;
    }
    if (
      base &&
      typeof base.offset === 'number' &&
      typeof base.service === 'number' &&
      serviceCalls >= base.service
    ) {
      return base.offset;
    }
    const mark = await store.get(this.#countingKey(day)).catch(() => null);
    const dayStartMs = clock.now() - (86_400 - secondsToQuotaDayEnd(clock.now())) * 1000;
    const complete = base === null && mark !== null && Number(mark) <= dayStartMs + COMPLETE_DAY_MARK_MS;
    const offset = complete ? 0 : Math.max(0, used - serviceCalls);
    const ttl = secondsToQuotaDayEnd(clock.now()) + 3600;
    await store.set(key, JSON.stringify({ offset, service: serviceCalls }), ttl).catch(() => {});
    return offset;
  }

  #countingKey(day: string): string {
    return `${this.#base}:quota-counting:${day}`;
  }

  get #base(): string {
    return `${this.#deps.settings.cacheKeyPrefix}:${RECORD_FORMAT}`;
  }

  #lastKey(appid: string): string {
    return `${this.#base}:quota-last:${appid}`;
  }
}

/** The alarm line of a quota check: WeChat counted more token calls than the service made. */
function outsideFetcherEvent(
  appid: string,
  tokenApi: TokenApi,
  wechatCount: number,
  serviceCount: number,
  uncounted: number,
) {
  const consequence =
    tokenApi === 'classic'
      ? 'each of its fetches kills the token this service handed out 5 minutes later (consumers see intermittent 40001); switch the app to token_api "stable", whose tokens no classic fetch invalidates'
      : 'the stable tokens this service hands out are not affected, but that process spends the quota of /cgi-bin/token';
  return {
    event: 'quota.outside_fetcher' as const,
    appid,
    evidence: 'quota_count' as const,
    wechatCount,
    serviceCount,
    ...(uncounted > 0 ? { uncounted } : {}),
    detail:
      `WeChat counted ${wechatCount} calls of /cgi-bin/token today (China time) for appid ${appid}; this service made ` +
      `${serviceCount}${uncounted > 0 ? ` (and did not count the day's first ${uncounted}: its counters started late)` : ''}: ` +
      `another process fetches this app's tokens with its AppSecret. Find it (another server, an ` +
      `SDK configured with the AppSecret, a developer tool) and make it ask this service; ${consequence}`,
  };
}

/**
 * Whether a report of `record` (the current token, reported invalid by a consumer) means it was
 * killed early: it still had more than WeChat's 5-minute overlap of its natural life, and this service
 * has not replaced it — so nothing the service did killed it. Then the event says what to do.
 */
export function killedEarly(record: TokenRecord, nowMs: number) {
  // WeCom may revoke a token early by itself (lifetime.ts): no evidence of another fetcher there.
  if (record.kind !== 'access_token' || record.origin === 'wecom' || nowMs >= record.expiresAtMs - OVERLAP_MS)
    return null;
  const ageSeconds = Math.max(0, Math.floor((nowMs - record.fetchedAtMs) / 1000));
  const secondsLeft = Math.floor((record.expiresAtMs - nowMs) / 1000);
  return {
    event: 'quota.outside_fetcher' as const,
    appid: record.appid,
    evidence: 'early_report' as const,
    tokenAgeSeconds: ageSeconds,
    secondsLeft,
    detail:
      `a consumer reported the current access token of appid ${record.appid} invalid ${ageSeconds} s after this service ` +
      `fetched it, ${secondsLeft} s before it expires: this service did not replace it, so another process fetched a ` +
      `token for this app (or WeChat revoked it). Find the other fetcher (compare getApiQuota's count with the ` +
      'service\'s: the status action with "check_quota":true) and make it ask this service; or switch the app to ' +
      'token_api "stable"',
  };
}
