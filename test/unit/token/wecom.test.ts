/**
 * WeCom apps on the token machinery: which endpoint every path uses (never WeChat's record-loss or
 * outage fallbacks), the promise derived in lifetime.ts, a token handed back again, the pace of
 * unknown-age tickets against WeCom's hourly limits. Fake clock, fake WeCom, one MemoryStore.
 */
import { describe, expect, it } from 'vitest';
import type { AppConfig, CallContext, TokenRecord } from '../../../lib/domain.ts';
import { ServiceError } from '../../../lib/errors.ts';
import { StaticCredentials } from '../../../lib/secrets/credentials.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import {
  guaranteedUntilMs,
  unknownAgeRecheckMs,
  WECOM_TICKET_RECHECK_MS,
} from '../../../lib/token/lifetime.ts';
import { buildRecord, recordKeys } from '../../../lib/token/record.ts';
import { TokenService, type TokenServiceSettings } from '../../../lib/token/service.ts';
import { errorForErrcode } from '../../../lib/wechat/errcodes.ts';
import { FakeTime, FakeWeChat, InstrumentedStore, RecordingTelemetry } from '../../fakes/service-fakes.ts';
import { WECOM_APP_A1, WECOM_SECRET_A1 } from '../../support/secrets.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2024, 0, 15, 2, 0, 0) + 637;

const SETTINGS: TokenServiceSettings = {
  cacheKeyPrefix: 'ut',
  memoryCacheSeconds: 60,
  failureMemorySeconds: 30,
  cacheOutagePolicy: 'stable_fallback',
  // The defaults of production: a missing WeChat classic record would be fetched from stable_token.
  missingRecordPolicy: 'stable_first',
  refreshWindowSeconds: 900,
  passiveRefreshMinAgeSeconds: 300,
  passiveRefreshDailyBudget: 100,
  lockLeaseSeconds: 10,
  scheduleIntervalSeconds: 300,
  quotaCheckIntervalSeconds: 3600,
};

const APP: AppConfig = {
  appid: WECOM_APP_A1,
  secret: WECOM_SECRET_A1,
  tokenApi: 'wecom',
  tickets: ['jsapi', 'agent_config'],
};

function world(settings: Partial<TokenServiceSettings> = {}) {
  const time = new FakeTime(T0);
  const memcached = new MemoryStore(time.clock);
  const store = new InstrumentedStore(memcached);
  const wechat = new FakeWeChat();
  const telemetry = new RecordingTelemetry();
  const all = { ...SETTINGS, ...settings };
  const service = new TokenService({
    store,
    secrets: new StaticCredentials(APP),
    wechat,
    clock: time.clock,
    telemetry,
    settings: all,
    instanceId: 'a',
    jitter: () => 0,
  });
  const ctx = (): CallContext => ({ deadlineAtMs: time.t + 10 * SECOND });
  const record = async (kind: 'access_token' | 'jsapi_ticket' = 'access_token') =>
    JSON.parse(
      (await memcached.get(recordKeys('ut', kind, APP.appid).record)) ?? 'null',
    ) as TokenRecord | null;
  return { time, memcached, store, wechat, telemetry, service, ctx, record, settings: all };
}

describe('a WeCom app has one token endpoint: gettoken', () => {
  it('a missing record is fetched from gettoken, whatever MISSING_RECORD_POLICY says', async () => {
    const w = world();
    const served = await w.service.getAccessToken(APP.appid, w.ctx());
    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['wecom']);
    expect(w.wechat.tokenCalls[0]?.app).toEqual({ appid: APP.appid, secret: APP.secret });
    const record = await w.record();
    expect(record).toMatchObject({ origin: 'wecom', value: served.value });
    expect(record?.classicNotBeforeMs).toBeUndefined();
  });

  it('a cache outage fetches from gettoken, whatever CACHE_OUTAGE_POLICY says', async () => {
    const w = world();
    w.store.down = true;
    const served = await w.service.getAccessToken(APP.appid, w.ctx());
    expect(served.source).toBe('wechat');
    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['wecom']);
  });

  it('45009 from gettoken is a rate limit remembered for a minute, not a quota breaker until midnight', async () => {
    const w = world();
    w.wechat.tokenResponder = () =>
      errorForErrcode('wecom_gettoken', APP.appid, 45009, 'api freq out of limit, hint: [1]');
    await expect(w.service.getAccessToken(APP.appid, w.ctx())).rejects.toMatchObject({
      code: 'wechat_rate_limited',
    });
    w.time.advance(30 * SECOND);
    await expect(w.service.getAccessToken(APP.appid, w.ctx())).rejects.toMatchObject({
      code: 'wechat_rate_limited',
    });
    expect(w.wechat.tokenCalls).toHaveLength(1);
    w.time.advance(31 * SECOND);
    w.wechat.tokenResponder = (_call, n) => ({ value: `AT-${n}`, expiresInSeconds: 7200 });
    await w.service.getAccessToken(APP.appid, w.ctx());
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(w.telemetry.of('quota.probe')).toHaveLength(0);
  });
});

describe('operator actions', () => {
  it('clear_quota is refused for a WeCom app before anything is sent: WeCom has no quota reset', async () => {
    const w = world();
    await expect(w.service.clearQuota(APP.appid, w.ctx())).rejects.toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('WeCom app'),
    });
    expect(w.wechat.clearQuotaCalls).toHaveLength(0);
  });
});

describe('the promise of a WeCom token (lifetime.ts)', () => {
  it('ends at the scheduled refresh, not at the natural expiry, and passive refresh does not shorten it', async () => {
    const w = world();
    const served = await w.service.getAccessToken(APP.appid, w.ctx());
    const record = (await w.record()) as TokenRecord;
    expect(record.refreshAtMs).toBe(record.expiresAtMs - 900 * SECOND);
    expect(served.expiresIn).toBe(Math.floor((record.refreshAtMs - T0) / 1000));
    // An hour on, well past the passive min age: still promised until the scheduled refresh.
    w.time.advance(HOUR);
    const later = await w.service.getAccessToken(APP.appid, w.ctx());
    expect(later.value).toBe(served.value);
    expect(later.expiresAt).toBe(Math.floor(record.refreshAtMs / 1000));
    expect(guaranteedUntilMs(record, w.time.t, w.settings)).toBe(record.refreshAtMs);
  });

  it('a token handed back again (the older documented behaviour) is not asked for again before it expires', () => {
    const previous = buildRecord(
      { kind: 'access_token', appid: APP.appid },
      { grant: { value: 'WC-1', expiresInSeconds: 7200 }, origin: 'wecom', sentAtMs: T0 },
      null,
      0,
      SETTINGS,
      'a',
    );
    const again = buildRecord(
      { kind: 'access_token', appid: APP.appid },
      // Asked in the refresh window; WeCom answers the same token, even with a full expires_in.
      {
        grant: { value: 'WC-1', expiresInSeconds: 7200 },
        origin: 'wecom',
        sentAtMs: previous.refreshAtMs + SECOND,
      },
      previous,
      0,
      SETTINGS,
      'a',
    );
    expect(again.fetchedAtMs).toBe(previous.fetchedAtMs);
    expect(again.expiresAtMs).toBe(previous.expiresAtMs);
    expect(again.refreshAtMs).toBe(previous.expiresAtMs);
    expect(again.generation).toBe(2);
    // Handed back once more past its counted life: nothing promised, asked for again in 5 s.
    const dying = buildRecord(
      { kind: 'access_token', appid: APP.appid },
      {
        grant: { value: 'WC-1', expiresInSeconds: 9 },
        origin: 'wecom',
        sentAtMs: again.expiresAtMs + SECOND,
      },
      again,
      0,
      SETTINGS,
      'a',
    );
    const askedAt = again.expiresAtMs + SECOND;
    expect(dying.expiresAtMs).toBe(askedAt + 5 * SECOND);
    expect(guaranteedUntilMs(dying, askedAt, SETTINGS)).toBe(askedAt);
  });

  it('when WeCom hands back its live token, requests every 10 s for 4 hours make a few gettoken calls per token life', async () => {
    const w = world();
    // WeCom as the older text documented it: the live token again, with its remaining life.
    let live: { value: string; untilMs: number } | undefined;
    let issued = 0;
    w.wechat.tokenResponder = () => {
      if (!live || w.time.t >= live.untilMs)
        live = { value: `WC-${++issued}`, untilMs: w.time.t + 7200 * SECOND };
      return { value: live.value, expiresInSeconds: Math.floor((live.untilMs - w.time.t) / 1000) };
    };
    const end = T0 + 4 * HOUR;
    while (w.time.t < end) {
      const served = await w.service.getAccessToken(APP.appid, w.ctx());
      expect(served.value).toBe(live?.value);
      expect(served.expiresAt * 1000).toBeLessThanOrEqual(live?.untilMs ?? 0);
      w.time.advance(10 * SECOND);
    }
    console.log(
      `WeCom handing back its live token, 4 h: ${w.wechat.tokenCalls.length} gettoken calls, ${issued} tokens`,
    );
    expect(issued).toBe(2);
    expect(w.wechat.tokenCalls.length).toBeLessThanOrEqual(2 * 5);
  });

  it('an early revocation minutes after the fetch, reported by 10 concurrent callers, makes one gettoken call (no min age)', async () => {
    const w = world();
    expect(w.settings.passiveRefreshMinAgeSeconds).toBe(300);
    const first = await w.service.getAccessToken(APP.appid, w.ctx());
    w.time.advance(2 * MINUTE);
    const reports = await Promise.all(
      Array.from({ length: 10 }, () => w.service.refreshAccessToken(APP.appid, first.value, w.ctx())),
    );
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(new Set(reports.map((r) => r.value))).toEqual(new Set(['AT-2']));
  });
});

describe("WeCom's ticket limits: 100 an hour per app, 400 per corp", () => {
  it('a WeCom ticket of unknown age is asked for again every 5 minutes, a WeChat one every minute', () => {
    expect(unknownAgeRecheckMs(7200 * SECOND, true)).toBe(WECOM_TICKET_RECHECK_MS);
    expect(WECOM_TICKET_RECHECK_MS).toBe(5 * MINUTE);
    expect(unknownAgeRecheckMs(7200 * SECOND)).toBe(MINUTE);
  });

  it('two hours of requests every 10 s for both tickets stay under 100 ticket calls an hour for the app', async () => {
    const w = world();
    // WeCom answers the same ticket for its whole life, with the full expires_in (the worst case for
    // knowing its age), and a new one after it.
    const issued = new Map<string, { value: string; until: number }>();
    let n = 0;
    w.wechat.ticketResponder = (call) => {
      const held = issued.get(call.type);
      if (held && w.time.t < held.until) return { value: held.value, expiresInSeconds: 7200 };
      const fresh = { value: `${call.type}-${++n}`, until: w.time.t + 7200 * SECOND };
      issued.set(call.type, fresh);
      return { value: fresh.value, expiresInSeconds: 7200 };
    };
    const callTimes: number[] = [];
    const end = T0 + 2 * HOUR;
    while (w.time.t < end) {
      const before = w.wechat.ticketCalls.length;
      await w.service.getTicket(APP.appid, 'jsapi', w.ctx());
      await w.service.getTicket(APP.appid, 'agent_config', w.ctx());
      for (let i = before; i < w.wechat.ticketCalls.length; i++) callTimes.push(w.time.t);
      w.time.advance(10 * SECOND);
    }
    let worstHour = 0;
    for (const start of callTimes) {
      worstHour = Math.max(worstHour, callTimes.filter((t) => t >= start && t < start + HOUR).length);
    }
    console.log(
      `WeCom tickets, 2 h of requests every 10 s: ${callTimes.length} ticket calls, worst hour ${worstHour}`,
    );
    expect(worstHour).toBeLessThanOrEqual(2 * (HOUR / WECOM_TICKET_RECHECK_MS) + 2);
    expect(worstHour).toBeLessThan(100);
  });

  it('a ticket refused for the frequency limit keeps the valid ticket in service', async () => {
    const w = world();
    await w.service.getTicket(APP.appid, 'jsapi', w.ctx());
    w.wechat.ticketResponder = () =>
      new ServiceError('wechat_rate_limited', 'WeCom /cgi-bin/get_jsapi_ticket answered errcode 45009', {
        errcode: 45009,
      });
    w.time.advance(10 * MINUTE);
    const served = await w.service.getTicket(APP.appid, 'jsapi', w.ctx());
    expect(served.value).toBe('jsapi-ticket-1');
    expect(served.source).toBe('stale');
  });
});
