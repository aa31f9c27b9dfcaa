/**
 * The `status` operator action (direct invoke only): `{"action":"status","appid"?:…,"check_quota"?:bool}`.
 * For one app, or every app when `appid` is absent: per kind its record (age, generation, writer,
 * seconds left, fingerprint), per upstream its quota breaker, remembered failure, last error and
 * today's calls (the service's; WeChat's from the last getApiQuota check of the day, or a fresh one
 * with `check_quota`). Never a token, a ticket or a secret: values appear as fingerprints.
 */
import { runBounded } from '../lib/bounded.ts';
import {
  APPID_PATTERN,
  type AppConfig,
  type CallContext,
  type TokenKind,
  ticketKind,
} from '../lib/domain.ts';
import { ServiceError, toServiceError } from '../lib/errors.ts';
import { unknownAppid } from '../lib/secrets/credentials.ts';
import { fingerprint } from '../lib/telemetry/fingerprint.ts';
import { ticketUpstream, tokenUpstreams } from '../lib/token/fetchers.ts';
import type { QuotaReport } from '../lib/token/quota-watch.ts';
import type { UpstreamName } from '../lib/token/record.ts';
import { quotaDay } from '../lib/token/upstream-guard.ts';
import type { Container } from './container.ts';

export interface StatusRequest {
  operation: 'status';
  appid: string | undefined;
  checkQuota: boolean;
}

/** Validates `{appid?, check_quota?}`. Throws `invalid_request` naming the field. */
export function parseStatus(fields: Record<string, unknown>): StatusRequest {
  const { appid, check_quota: checkQuota } = fields;
  if (appid !== undefined && (typeof appid !== 'string' || !APPID_PATTERN.test(appid))) {
    throw new ServiceError(
      'invalid_request',
      'appid must be a WeChat appid ("wx" followed by 16 lower-case hex digits), or absent for every app',
    );
  }
  if (checkQuota !== undefined && typeof checkQuota !== 'boolean') {
    throw new ServiceError('invalid_request', 'check_quota must be true or false (default false)');
  }
  return { operation: 'status', appid, checkQuota: checkQuota === true };
}

interface UpstreamBody {
  breaker: 'open' | 'closed';
  remembered_failure: string | null;
  last_error: { code: string; errcode?: number; seconds_ago?: number } | null;
  /** Calls today (WeChat's quota day, UTC+8) by every instance of the service. */
  calls_today: number | null;
}

interface KindBody {
  record: {
    age_seconds: number;
    generation: number;
    writer: string;
    origin: string;
    seconds_left: number;
    refresh_in_seconds: number;
    fingerprint: string;
  } | null;
  upstreams: Partial<Record<UpstreamName, UpstreamBody>>;
}

interface QuotaBody {
  checked_seconds_ago: number;
  outside_fetcher_suspected: boolean;
  token: { used: number; limit: number; remain: number; service_calls: number | null };
  ticket?: { used: number; limit: number; remain: number; service_calls: number | null };
}

export interface AppStatus {
  appid: string;
  token_api: string;
  kinds: Partial<Record<TokenKind, KindBody>>;
  /** WeChat's figures (getApiQuota) of today, when known. */
  quota: QuotaBody | null;
  /** Why something could not be shown (the cache, or a quota check that failed). */
  errors?: Array<{ code: string; message: string }>;
}

export interface StatusBody {
  quota_day: string;
  apps: AppStatus[];
  /** Apps not reached before the invocation's deadline. */
  skipped: string[];
}

/** Answers `status`. Errors: unknown_appid (an appid that is not configured), secrets_*, config_invalid. */
export async function status(
  container: Container,
  request: StatusRequest,
  ctx: CallContext,
): Promise<StatusBody> {
  const { clock, config, secrets } = container;
  const credentials = await secrets.get();
  let apps: AppConfig[];
  if (request.appid === undefined) {
    apps = [...credentials.apps.values()];
  } else {
    const app = credentials.apps.get(request.appid);
    if (!app) throw unknownAppid(request.appid);
    apps = [app];
  }
  const outcomes = await runBounded(
    apps,
    {
      concurrency: config.scheduleConcurrency,
      deadlineAtMs: ctx.deadlineAtMs,
      shareFloorMs: request.checkQuota ? config.upstreamTimeoutMs : 0,
      minStartMs: request.checkQuota ? 300 : 50,
      now: () => clock.now(),
    },
    (app, deadlineAtMs) => appStatus(container, app, request.checkQuota, { deadlineAtMs }),
  );
  const body: StatusBody = { quota_day: quotaDay(clock.now()), apps: [], skipped: [] };
  for (const outcome of outcomes) {
    if (outcome.outcome === 'done') body.apps.push(outcome.value);
    else body.skipped.push(outcome.item.appid);
  }
  return body;
}

async function appStatus(
  container: Container,
  app: AppConfig,
  checkQuota: boolean,
  ctx: CallContext,
): Promise<AppStatus> {
  const { service, clock } = container;
  const out: AppStatus = { appid: app.appid, token_api: app.tokenApi, kinds: {}, quota: null };
  const errors: Array<{ code: string; message: string }> = [];
  const fail = (err: unknown) => {
    const error = toServiceError(err);
    errors.push({ code: error.code, message: error.message });
  };
  let report: QuotaReport | null = null;
  if (checkQuota) {
    report = await service.quota.check(app.appid, ctx).catch((err: unknown) => {
      fail(err);
      return null;
    });
  }
  report ??= await service.quota.last(app.appid);
  const kinds: Array<[TokenKind, UpstreamName[]]> = [['access_token', tokenUpstreams(app)]];
  for (const type of app.tickets) kinds.push([ticketKind(type), [ticketUpstream(app.appid, type)]]);
  for (const [kind, upstreams] of kinds) {
    try {
      out.kinds[kind] = await kindStatus(container, app.appid, kind, upstreams);
    } catch (err) {
      fail(err);
    }
  }
  if (report) {
    const now = clock.now();
    const figures = (e: NonNullable<QuotaReport['ticket']>) => ({
      used: e.wechat.used,
      limit: e.wechat.dailyLimit,
      remain: e.wechat.remain,
      service_calls: e.serviceCount,
    });
    out.quota = {
      checked_seconds_ago: Math.max(0, Math.floor((now - report.checkedAtMs) / 1000)),
      outside_fetcher_suspected: report.outsideFetcherSuspected,
      token: figures(report.token),
      ...(report.ticket ? { ticket: figures(report.ticket) } : {}),
    };
  }
  if (errors.length > 0) out.errors = errors;
  return out;
}

async function kindStatus(
  container: Container,
  appid: string,
  kind: TokenKind,
  upstreams: UpstreamName[],
): Promise<KindBody> {
  const { service, clock } = container;
  const [record, ...described] = await Promise.all([
    service.record(appid, kind),
    ...upstreams.map((u) => service.quota.upstreamStatus(appid, u)),
  ]);
  const now = clock.now();
  const body: KindBody = {
    record: record && {
      age_seconds: Math.floor((now - record.fetchedAtMs) / 1000),
      generation: record.generation,
      writer: record.writer,
      origin: record.origin,
      seconds_left: Math.max(0, Math.floor((record.expiresAtMs - now) / 1000)),
      refresh_in_seconds: Math.floor((record.refreshAtMs - now) / 1000),
      fingerprint: fingerprint(record.value),
    },
    upstreams: {},
  };
  upstreams.forEach((upstream, i) => {
    const s = described[i];
    if (!s) return;
    body.upstreams[upstream] = {
      breaker: s.breaker,
      remembered_failure: s.remembered,
      last_error: s.lastError && {
        code: s.lastError.code,
        ...(s.lastError.errcode === undefined ? {} : { errcode: s.lastError.errcode }),
        ...(s.lastError.atMs === undefined
          ? {}
          : { seconds_ago: Math.max(0, Math.floor((now - s.lastError.atMs) / 1000)) }),
      },
      calls_today: s.todaysCalls,
    };
  });
  return body;
}
