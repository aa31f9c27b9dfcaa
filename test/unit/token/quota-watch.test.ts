/**
 * getApiQuota checks and the outside-fetcher alarm, against the token service with a scripted WeChat
 * (whose quota answers count the calls it saw), the in-process store and a clock the test moves.
 */
import { describe, expect, it } from 'vitest';
import type { AppConfig } from '../../../lib/domain.ts';
import { ServiceError } from '../../../lib/errors.ts';
import { StaticCredentials } from '../../../lib/secrets/credentials.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { TokenService, type TokenServiceSettings } from '../../../lib/token/service.ts';
import { quotaDay } from '../../../lib/token/upstream-guard.ts';
import { FakeTime, FakeWeChat, RecordingTelemetry } from '../../fakes/service-fakes.ts';
import { TEST_APPID, TEST_SECRET, WECOM_APP_A1, WECOM_SECRET_A1 } from '../../support/secrets.ts';

const HOUR = 3_600_000;
/** Midnight in China (UTC+8), and 10:00 China time the same day. */
const CHINA_MIDNIGHT = Date.UTC(2024, 0, 15, 0, 0, 0) - 8 * HOUR;
const T10 = CHINA_MIDNIGHT + 10 * HOUR;

const SETTINGS: TokenServiceSettings = {
  cacheKeyPrefix: 'qw',
  memoryCacheSeconds: 60,
  failureMemorySeconds: 30,
  cacheOutagePolicy: 'stable_fallback',
  missingRecordPolicy: 'classic',
  refreshWindowSeconds: 900,
  passiveRefreshMinAgeSeconds: 300,
  passiveRefreshDailyBudget: 100,
  lockLeaseSeconds: 10,
  scheduleIntervalSeconds: 0,
  quotaCheckIntervalSeconds: 3600,
};

function world(startAt: number, app: Partial<AppConfig> = {}) {
  const time = new FakeTime(startAt);
  const store = new MemoryStore(time.clock);
  const wechat = new FakeWeChat();
  const telemetry = new RecordingTelemetry();
  const credentials = new StaticCredentials({
    appid: TEST_APPID,
    secret: TEST_SECRET,
    tokenApi: 'classic',
    tickets: [],
    ...app,
  });
  const instance = (instanceId: string) =>
    new TokenService({
      store,
      secrets: credentials,
      wechat,
      clock: time.clock,
      telemetry,
      settings: SETTINGS,
      instanceId,
      jitter: () => 0,
    });
  const ctx = () => ({ deadlineAtMs: time.t + 10_000 });
  return { time, store, wechat, telemetry, a: instance('a'), b: instance('b'), ctx };
}

const suspected = (w: ReturnType<typeof world>) => w.telemetry.of('quota.outside_fetcher');

describe('the quota check', () => {
  it('publishes WeChat’s used, limit and remaining with the service’s own count, and suspects nothing when they agree', async () => {
    const w = world(CHINA_MIDNIGHT + 60_000);
    await w.a.quota.checkIfDue(TEST_APPID, w.ctx()); // marks the day as counted from its start
    await w.a.getAccessToken(TEST_APPID, w.ctx());
    const report = await w.b.quota.check(TEST_APPID, w.ctx());
    expect(report.token.wechat.used).toBe(w.wechat.tokenCalls.length);
    expect(report.token.serviceCount).toBe(w.wechat.tokenCalls.length);
    expect(report.outsideFetcherSuspected).toBe(false);
    expect(w.telemetry.of('quota.checked').at(-1)).toMatchObject({
      appid: TEST_APPID,
      upstream: 'token',
      used: report.token.wechat.used,
      limit: 2000,
      remain: 2000 - report.token.wechat.used,
      serviceCount: report.token.serviceCount,
    });
    expect(suspected(w)).toEqual([]);
  });

  it('names the appid and both counts when WeChat counted calls the service did not make', async () => {
    const w = world(CHINA_MIDNIGHT + 60_000);
    await w.a.quota.checkIfDue(TEST_APPID, w.ctx()); // the day is counted from its start
    await w.a.getAccessToken(TEST_APPID, w.ctx());
    w.wechat.outsideCalls.set(TEST_APPID, 3);
    const report = await w.b.quota.check(TEST_APPID, w.ctx());
    expect(report.outsideFetcherSuspected).toBe(true);
    expect(suspected(w)).toEqual([
      expect.objectContaining({
        appid: TEST_APPID,
        evidence: 'quota_count',
        wechatCount: 4,
        serviceCount: 1,
        detail: expect.stringContaining('switch the app to token_api "stable"'),
      }),
    ]);
  });

  it('counts every attempt, retries included, so WeChat counting retried calls raises no alarm', async () => {
    const w = world(T10);
    let attempts = 0;
    // A WeChat that counts three attempts per call (two busy answers, then the token).
    w.wechat.tokenResponder = (call, n) => {
      call.retries = 2;
      attempts += 3;
      return { value: `AT-${n}`, expiresInSeconds: 7200 };
    };
    w.wechat.quotaResponder = () => ({ dailyLimit: 2000, used: attempts, remain: 2000 - attempts });
    await w.a.quota.check(TEST_APPID, w.ctx()); // baseline (the day was not counted from its start)
    await w.a.getAccessToken(TEST_APPID, w.ctx());
    const report = await w.a.quota.check(TEST_APPID, w.ctx());
    expect(report.token.serviceCount).toBe(3);
    expect(report.outsideFetcherSuspected).toBe(false);
  });

  it('on a day not counted from its start, takes what it finds as the baseline and suspects only what is added after', async () => {
    const w = world(T10);
    w.wechat.outsideCalls.set(TEST_APPID, 5); // calls of the day before the service started counting
    const first = await w.a.quota.check(TEST_APPID, w.ctx());
    expect(first.outsideFetcherSuspected).toBe(false);
    await w.a.getAccessToken(TEST_APPID, w.ctx());
    expect((await w.b.quota.check(TEST_APPID, w.ctx())).outsideFetcherSuspected).toBe(false);
    w.wechat.outsideCalls.set(TEST_APPID, 6);
    expect((await w.b.quota.check(TEST_APPID, w.ctx())).outsideFetcherSuspected).toBe(true);
    expect(suspected(w)[0]).toMatchObject({ wechatCount: 7, serviceCount: 1, uncounted: 5 });
  });

  it('takes a new baseline when the service’s counter went below its value at the last one (the cache lost it)', async () => {
    const w = world(T10);
    await w.a.getAccessToken(TEST_APPID, w.ctx());
    await w.a.quota.check(TEST_APPID, w.ctx());
    await w.store.delete(`qw:v1:calls:token:${TEST_APPID}:${quotaDay(w.time.t)}`);
    expect((await w.a.quota.check(TEST_APPID, w.ctx())).outsideFetcherSuspected).toBe(false);
  });

  it('allows for calls made in the last minute of the day before, which WeChat may count today', async () => {
    const w = world(CHINA_MIDNIGHT - 30_000);
    await w.a.getAccessToken(TEST_APPID, w.ctx()); // 23:59:30 China time
    w.time.t = CHINA_MIDNIGHT + 60_000;
    await w.a.quota.checkIfDue(TEST_APPID, w.ctx());
    // WeChat put that call on the new day.
    w.wechat.quotaResponder = () => ({ dailyLimit: 2000, used: 1, remain: 1999 });
    expect((await w.b.quota.check(TEST_APPID, w.ctx())).outsideFetcherSuspected).toBe(false);
    w.wechat.quotaResponder = () => ({ dailyLimit: 2000, used: 2, remain: 1998 });
    expect((await w.b.quota.check(TEST_APPID, w.ctx())).outsideFetcherSuspected).toBe(true);
  });

  it('warns at 80 % of the daily limit used', async () => {
    const w = world(T10);
    w.wechat.quotaResponder = () => ({ dailyLimit: 2000, used: 1599, remain: 401 });
    await w.a.quota.check(TEST_APPID, w.ctx());
    expect(w.telemetry.of('quota.warning')).toEqual([]);
    w.wechat.quotaResponder = () => ({ dailyLimit: 2000, used: 1600, remain: 400 });
    await w.a.quota.check(TEST_APPID, w.ctx());
    expect(w.telemetry.of('quota.warning')).toEqual([
      expect.objectContaining({ appid: TEST_APPID, upstream: 'token', used: 1600, limit: 2000 }),
    ]);
  });

  it('checks the ticket endpoint too for an app with tickets', async () => {
    const w = world(T10, { tickets: ['jsapi'] });
    await w.a.getTicket(TEST_APPID, 'jsapi', w.ctx());
    const report = await w.a.quota.check(TEST_APPID, w.ctx());
    expect(w.wechat.quotaCalls.map((c) => c.cgiPath)).toEqual([
      '/cgi-bin/token',
      '/cgi-bin/ticket/getticket',
    ]);
    expect(report.ticket).toMatchObject({ wechat: { used: 1 }, serviceCount: 1 });
  });

  it('runs from the schedule at most once per interval per app, whichever instance asks', async () => {
    const w = world(T10);
    expect(await w.a.quota.checkIfDue(TEST_APPID, w.ctx())).not.toBeNull();
    expect(await w.b.quota.checkIfDue(TEST_APPID, w.ctx())).toBeNull();
    w.time.t += 3600_000 - 1000;
    expect(await w.b.quota.checkIfDue(TEST_APPID, w.ctx())).toBeNull();
    w.time.t += 2001;
    expect(await w.b.quota.checkIfDue(TEST_APPID, w.ctx())).not.toBeNull();
    expect(w.wechat.quotaCalls).toHaveLength(2);
  });

  it('asks again with a stable token when WeChat calls the token dead and it is too young to refresh, and flags it as killed early', async () => {
    const w = world(T10);
    await w.a.getAccessToken(TEST_APPID, w.ctx());
    let first = true;
    w.wechat.quotaResponder = (call) => {
      if (first) {
        first = false;
        return new ServiceError('wechat_rejected', 'access_token is invalid or not latest', {
          errcode: 40001,
        });
      }
      return { dailyLimit: 2000, used: call.accessToken === 'AT-2' ? 1 : 0, remain: 1999 };
    };
    const report = await w.a.quota.check(TEST_APPID, w.ctx());
    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['classic', 'stable']);
    expect(w.wechat.quotaCalls.map((c) => c.accessToken)).toEqual(['AT-1', 'AT-2']);
    expect(report.token.wechat.used).toBe(1);
    expect(suspected(w)).toEqual([
      expect.objectContaining({ appid: TEST_APPID, evidence: 'early_report', tokenAgeSeconds: 0 }),
    ]);
  });
});

describe('a report of a token killed early', () => {
  it('is flagged once per token when the current token is reported with more than 5 minutes of its life left', async () => {
    const w = world(T10);
    const served = await w.a.getAccessToken(TEST_APPID, w.ctx());
    w.time.t += 10 * 60_000;
    for (let i = 0; i < 5; i++) await w.b.refreshAccessToken(TEST_APPID, served.value, w.ctx());
    expect(suspected(w)).toEqual([
      expect.objectContaining({ appid: TEST_APPID, evidence: 'early_report', tokenAgeSeconds: 600 }),
    ]);
  });

  it('is not flagged near the token’s natural end, nor for a token that is no longer the current one', async () => {
    const w = world(T10);
    const served = await w.a.getAccessToken(TEST_APPID, w.ctx());
    w.time.t += 6900_000;
    await w.a.refreshAccessToken(TEST_APPID, served.value, w.ctx());
    await w.a.refreshAccessToken(TEST_APPID, 'AT-unknown', w.ctx());
    expect(suspected(w)).toEqual([]);
  });
});

describe('a WeCom app', () => {
  const wecom = { appid: WECOM_APP_A1, secret: WECOM_SECRET_A1, tokenApi: 'wecom' as const };

  it('is never checked: getApiQuota is WeChat’s, and asking for it is a clear error', async () => {
    const w = world(T10, wecom);
    expect(await w.a.quota.checkIfDue(WECOM_APP_A1, w.ctx())).toBeNull();
    await expect(w.a.quota.check(WECOM_APP_A1, w.ctx())).rejects.toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('WeCom app'),
    });
    expect(w.wechat.quotaCalls).toHaveLength(0);
  });

  it('reporting a token WeCom revoked early is not taken for an outside fetcher', async () => {
    const w = world(T10, wecom);
    const served = await w.a.getAccessToken(WECOM_APP_A1, w.ctx());
    w.time.t += 10 * 60_000;
    const next = await w.b.refreshAccessToken(WECOM_APP_A1, served.value, w.ctx());
    expect(next.value).not.toBe(served.value);
    expect(suspected(w)).toEqual([]);
  });
});
