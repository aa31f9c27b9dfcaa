/**
 * The refresh algorithm of lib/token/service.ts, branch by branch (the numbers follow the brief of
 * the algorithm: memory → store → lock → fetch → write; lock losers; stale; passive refresh; quota;
 * credentials; cache outage; tickets; promises; the schedule).
 *
 * Two TokenService instances over ONE MemoryStore are two Lambda instances over one Memcached. Time
 * is a fake clock; sleeping advances it; races are deferred WeChat answers settled by the test.
 */
import { describe, expect, it } from 'vitest';
import type { CacheOutagePolicy } from '../../../lib/config.ts';
import type { AppConfig, CallContext, Served, TokenKind, TokenRecord } from '../../../lib/domain.ts';
import { ServiceError } from '../../../lib/errors.ts';
import type { SecretSource } from '../../../lib/ports.ts';
import { StaticCredentials } from '../../../lib/secrets/credentials.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import { decodeRecord, encodeRecord, recordKeys, upstreamKeys } from '../../../lib/token/record.ts';
import { TokenService, type TokenServiceSettings } from '../../../lib/token/service.ts';
import { quotaDay, secondsToQuotaDayEnd } from '../../../lib/token/upstream-guard.ts';
import { errorForErrcode } from '../../../lib/wechat/errcodes.ts';
import {
  FakeTime,
  FakeWeChat,
  flush,
  InstrumentedStore,
  RecordingTelemetry,
  RotatingCredentials,
  type TokenCall,
  track,
  until,
} from '../../fakes/service-fakes.ts';
import {
  TEST_APPID,
  TEST_APPID_2,
  TEST_APPID_STABLE,
  TEST_APPID_UNCONFIGURED,
  TEST_SECRET,
  TEST_SECRET_ROTATED,
  TEST_SECRET_STABLE,
} from '../../support/secrets.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
/** wechat-facts §1: after a refresh WeChat keeps the previous token alive for 5 minutes. */
const WECHAT_OVERLAP_MS = 5 * MINUTE;
/** 10:00 in China (UTC+8) on 2024-01-15, off the whole second so that rounding is exercised. */
const T0 = Date.UTC(2024, 0, 15, 2, 0, 0) + 637;
/** Midnight in China (UTC+8) at the end of T0's day: WeChat's quota day ends (16:00 UTC). */
const CHINA_MIDNIGHT = Date.UTC(2024, 0, 16, 0, 0, 0) - 8 * HOUR;

const DEFAULTS: TokenServiceSettings = {
  cacheKeyPrefix: 'ut',
  memoryCacheSeconds: 60,
  failureMemorySeconds: 30,
  cacheOutagePolicy: 'stable_fallback',
  // Most tests exercise the classic algorithm from the first fetch; the loss rule has its own tests.
  missingRecordPolicy: 'classic',
  refreshWindowSeconds: 900,
  passiveRefreshMinAgeSeconds: 300,
  passiveRefreshDailyBudget: 100,
  quotaCheckIntervalSeconds: 3600,
  lockLeaseSeconds: 10,
  // No head start for requests in most tests: they refresh at refreshAtMs like the schedule.
  scheduleIntervalSeconds: 0,
};

interface WorldOptions {
  app?: Partial<AppConfig>;
  settings?: Partial<TokenServiceSettings>;
  credentials?: SecretSource;
  startAt?: number;
}

/** One Memcached, one WeChat, one clock, and two instances `a` and `b` of the service. */
function world(options: WorldOptions = {}) {
  const time = new FakeTime(options.startAt ?? T0);
  const memcached = new MemoryStore(time.clock);
  const settings: TokenServiceSettings = { ...DEFAULTS, ...options.settings };
  const app: AppConfig = {
    appid: TEST_APPID,
    secret: TEST_SECRET,
    tokenApi: 'classic',
    tickets: ['jsapi', 'wx_card'],
    ...options.app,
  };
  const credentials = options.credentials ?? new StaticCredentials(app);
  const wechat = new FakeWeChat();
  const telemetry = new RecordingTelemetry();
  const stores = new Map<string, InstrumentedStore>();
  const instance = (instanceId: string) => {
    const store = new InstrumentedStore(memcached);
    stores.set(instanceId, store);
    return new TokenService({
      store,
      secrets: credentials,
      wechat,
      clock: time.clock,
      telemetry,
      settings,
      instanceId,
      jitter: () => 0,
    });
  };
  const a = instance('a');
  const b = instance('b');
  const keys = (kind: TokenKind = 'access_token') => recordKeys(settings.cacheKeyPrefix, kind, app.appid);
  return {
    time,
    memcached,
    settings,
    app,
    appid: app.appid,
    wechat,
    telemetry,
    a,
    b,
    storeOf: (instanceId: 'a' | 'b') => stores.get(instanceId)!,
    /** An invocation with `budgetMs` left. */
    ctx: (budgetMs = 20 * SECOND): CallContext => ({ deadlineAtMs: time.t + budgetMs }),
    keys,
    /** The record as Memcached holds it now. */
    record: async (kind: TokenKind = 'access_token'): Promise<TokenRecord> => {
      const record = decodeRecord(await memcached.get(keys(kind).record), kind, app.appid);
      if (!record) throw new Error(`no ${kind} record in the store`);
      return record;
    },
  };
}

const secretRejected = (appid = TEST_APPID) =>
  errorForErrcode('token', appid, 40001, 'invalid credential, access_token is invalid or not latest');
const upstreamDown = () =>
  new ServiceError('wechat_unavailable', 'WeChat token answered HTTP 502; retry shortly');
const ticketTokenDead = () =>
  errorForErrcode('ticket', TEST_APPID, 40001, 'invalid credential, access_token is invalid or not latest');

/**
 * Brings the jsapi ticket `value` in with a known age: a first ticket has an unknown age (WeChat
 * re-answers an existing ticket with its full life), and a different ticket at the recheck is new.
 */
async function knownAgeTicket(w: ReturnType<typeof world>, value: string): Promise<Served> {
  w.wechat.ticketResponder = () => ({ value: `${value}-before`, expiresInSeconds: 7200 });
  await w.a.getTicket(w.appid, 'jsapi', w.ctx());
  w.time.t = (await w.record('jsapi_ticket')).refreshAtMs;
  w.wechat.ticketResponder = () => ({ value, expiresInSeconds: 7200 });
  const served = await w.a.getTicket(w.appid, 'jsapi', w.ctx());
  expect((await w.record('jsapi_ticket')).ageUnknown).toBeUndefined();
  return served;
}

function expectConsistentExpiry(served: Served, nowMs: number): void {
  expect(served.expiresIn).toBeGreaterThanOrEqual(0);
  expect(served.expiresAt).toBe(Math.floor(nowMs / 1000) + served.expiresIn);
}

describe('1. the per-instance memory copy', () => {
  it('serves the memory copy (memory) without reading the store while it is younger than memoryCacheSeconds', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    expect(fetched.source).toBe('wechat');
    const readsBefore = w.storeOf('a').reads.length;

    w.time.advance(w.settings.memoryCacheSeconds * SECOND - 1);
    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'memory', value: fetched.value, generation: 1 });
    expect(w.storeOf('a').reads.length).toBe(readsBefore);
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('reads the store again (cache) once the memory copy is memoryCacheSeconds old', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    const readsBefore = w.storeOf('a').reads.length;

    w.time.advance(w.settings.memoryCacheSeconds * SECOND);
    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'cache', value: fetched.value });
    expect(w.storeOf('a').reads.slice(readsBefore)).toContain(w.keys().record);
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('does not serve the memory copy inside the refresh window, however young the copy', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    const record = await w.record();
    w.time.t = record.refreshAtMs - 30 * SECOND;
    expect((await w.a.getAccessToken(w.appid, w.ctx())).source).toBe('cache'); // confirms the copy now
    const confirmedAtMs = w.time.t;

    w.time.t = record.refreshAtMs;
    expect(w.time.t - confirmedAtMs).toBeLessThan(w.settings.memoryCacheSeconds * SECOND);
    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'wechat', generation: 2 });
    expect(w.wechat.tokenCalls).toHaveLength(2);
  });

  it('does not serve the memory copy past its guarantee, even while younger than memoryCacheSeconds', async () => {
    // A short min age makes the promise (min age + min(overlap, min age)) shorter than the memory bound.
    const w = world({ settings: { passiveRefreshMinAgeSeconds: 60, memoryCacheSeconds: 240 } });
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    expect(fetched.expiresIn).toBeLessThan(w.settings.memoryCacheSeconds);

    w.time.advance((fetched.expiresIn - 1) * SECOND);
    const inside = await w.a.getAccessToken(w.appid, w.ctx());
    expect(inside.source).toBe('memory');
    expect(inside.expiresIn).toBeGreaterThanOrEqual(0);

    w.time.advance(2 * SECOND);
    const past = await w.a.getAccessToken(w.appid, w.ctx());
    expect(past).toMatchObject({ source: 'cache', value: fetched.value });
    expect(past.expiresIn).toBeGreaterThan(0);
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });
});

describe('2. the store record', () => {
  it('serves a record another instance wrote (cache) while it is outside the refresh window, without fetching', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());

    w.time.advance(10 * MINUTE);
    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'cache', value: fetched.value, generation: 1 });
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expectConsistentExpiry(served, w.time.t);
  });

  const validRecord = (overrides: Partial<TokenRecord>) =>
    encodeRecord({
      kind: 'access_token',
      appid: TEST_APPID,
      value: 'AT-planted',
      origin: 'classic',
      fetchedAtMs: T0,
      expiresAtMs: T0 + 2 * HOUR,
      refreshAtMs: T0 + HOUR,
      generation: 3,
      writer: 'x',
      ...overrides,
    });

  it.each([
    ['text that is not JSON', 'not json at all'],
    ['a truncated JSON value', validRecord({}).slice(0, 40)],
    ['a JSON array', '[1,2,3]'],
    ['a record of another appid', validRecord({ appid: TEST_APPID_2 })],
    ['a record of another kind', validRecord({ kind: 'jsapi_ticket' })],
    ['a record with generation 0', validRecord({ generation: 0 })],
    ['a record that expires before it was fetched', validRecord({ expiresAtMs: T0 - 1 })],
  ])('treats %s in the store as missing: fetches and records a warning', async (_what, corrupt) => {
    const w = world();
    await w.memcached.set(w.keys().record, corrupt, 3600);

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'wechat', value: 'AT-1', generation: 1 });
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(w.telemetry.of('record.invalid')).toContainEqual({
      event: 'record.invalid',
      kind: 'access_token',
      appid: w.appid,
    });
    expect((await w.record()).value).toBe('AT-1');
  });

  it('a valid record planted in the store is served as is (the check above is not just "anything planted")', async () => {
    const w = world();
    await w.memcached.set(w.keys().record, validRecord({}), 3600);
    const served = await w.a.getAccessToken(w.appid, w.ctx());
    expect(served).toMatchObject({ source: 'cache', value: 'AT-planted', generation: 3 });
    expect(w.wechat.tokenCalls).toHaveLength(0);
  });
});

describe('2b. an emptied cache (Memcached restarted or flushed)', () => {
  it('puts a memory copy that is within its guarantee back with add, serves it (memory) and does not fetch', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    await w.memcached.delete(w.keys().record);
    w.time.advance(w.settings.memoryCacheSeconds * SECOND); // the copy alone would no longer be served
    expect(w.settings.memoryCacheSeconds).toBeLessThan(fetched.expiresIn);

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'memory', value: fetched.value, generation: 1 });
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(await w.record()).toMatchObject({ value: fetched.value, generation: 1, writer: 'a' });
    expect(w.telemetry.of('record.written_back')).toEqual([
      { event: 'record.written_back', kind: 'access_token', appid: w.appid },
    ]);
    expect(await w.b.getAccessToken(w.appid, w.ctx())).toMatchObject({
      source: 'cache',
      value: fetched.value,
    });
  });

  it("never overwrites a peer's write: when the put-back loses, the peer's token is served", async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    await w.memcached.delete(w.keys().record);
    w.time.advance(w.settings.memoryCacheSeconds * SECOND);
    // Between a's read ("empty") and its put-back, b fetches and writes a token of its own.
    w.storeOf('a').beforeAdd = async () => {
      await w.b.getAccessToken(w.appid, w.ctx());
    };

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ value: 'AT-2', source: 'peer' });
    expect(await w.record()).toMatchObject({ value: 'AT-2', writer: 'b' });
    expect(w.wechat.tokenCalls).toHaveLength(2);
  });

  it('fetches instead once the memory copy is past its guarantee', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    await w.memcached.delete(w.keys().record);
    w.time.advance((fetched.expiresIn + 1) * SECOND);

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'wechat', value: 'AT-2' });
    expect(w.wechat.tokenCalls).toHaveLength(2);
  });
});

describe('2c. a lost record of a classic app (the default policy, stable_first)', () => {
  const lossWorld = (settings: Partial<TokenServiceSettings> = {}) =>
    world({ settings: { missingRecordPolicy: 'stable_first', ...settings } });

  it('fetches a stable token for a missing record, and marks when classic fetches may resume', async () => {
    const w = lossWorld();
    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'wechat', value: 'AT-1' });
    expect(w.wechat.tokenCalls.map((c) => [c.api, c.forceRefresh])).toEqual([['stable', false]]);
    const record = await w.record();
    expect(record.origin).toBe('stable');
    // Promises made before the loss are kept: min age (300 s) from when the loss was found.
    expect(record.classicNotBeforeMs).toBe(w.time.t + w.settings.passiveRefreshMinAgeSeconds * SECOND);
  });

  it('goes back to classic at the first refresh after classicNotBeforeMs', async () => {
    const w = lossWorld();
    await w.a.getAccessToken(w.appid, w.ctx());
    const stable = await w.record();
    expect(stable.refreshAtMs).toBeGreaterThan(stable.classicNotBeforeMs!);
    w.time.t = stable.refreshAtMs;

    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('refreshed');

    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['stable', 'classic']);
    const classic = await w.record();
    expect(classic).toMatchObject({ origin: 'classic', value: 'AT-2', generation: 2 });
    expect(classic.classicNotBeforeMs).toBeUndefined();
  });

  it('stays on the stable endpoint for a refresh before classicNotBeforeMs (a short stable life)', async () => {
    const w = lossWorld();
    // A stable token handed out near the end of its life: WeChat answers the remaining seconds.
    w.wechat.tokenResponder = (_call, n) => ({ value: `AT-${n}`, expiresInSeconds: n === 1 ? 320 : 7200 });
    await w.a.getAccessToken(w.appid, w.ctx());
    const first = await w.record();
    w.time.t = first.refreshAtMs;
    expect(w.time.t).toBeLessThan(first.classicNotBeforeMs!);

    await w.b.refreshIfDue(w.appid, 'access_token', w.ctx());

    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['stable', 'stable']);
    expect((await w.record()).classicNotBeforeMs).toBe(first.classicNotBeforeMs);
  });

  // A report is accepted only once the token is min age old, which is when classic fetches may resume:
  // a classic token replaces it (and leaves the stable token alone: the two never invalidate each other).
  it('answers an accepted report of the stable token with a classic token, without a stable force refresh', async () => {
    const w = lossWorld();
    const served = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);

    await w.b.refreshAccessToken(w.appid, served.value, w.ctx());

    expect(w.wechat.tokenCalls.map((c) => [c.api, c.forceRefresh])).toEqual([
      ['stable', false],
      ['classic', false],
    ]);
  });

  it('waits a whole token life less the overlap when passive refresh is off (nothing bounds older promises sooner)', async () => {
    const w = lossWorld({ passiveRefreshDailyBudget: 0 });
    await w.a.getAccessToken(w.appid, w.ctx());
    expect((await w.record()).classicNotBeforeMs).toBe(w.time.t + (7200 - 300) * SECOND);
  });

  it('finds a second loss from the stable record and starts over from then', async () => {
    const w = lossWorld();
    await w.a.getAccessToken(w.appid, w.ctx());
    await w.memcached.delete(w.keys().record);
    w.time.advance(
      w.settings.memoryCacheSeconds * SECOND + (w.settings.passiveRefreshMinAgeSeconds + 60) * SECOND,
    );

    await w.b.getAccessToken(w.appid, w.ctx());

    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['stable', 'stable']);
    expect((await w.record()).classicNotBeforeMs).toBe(
      w.time.t + w.settings.passiveRefreshMinAgeSeconds * SECOND,
    );
  });

  it('leaves stable apps alone: a missing record is fetched as always', async () => {
    const w = lossWorld();
    w.wechat.tokenResponder = () => ({ value: 'ST-1', expiresInSeconds: 7200 });
    const stableApp = world({
      app: { tokenApi: 'stable' },
      settings: { missingRecordPolicy: 'stable_first' },
    });
    await stableApp.a.getAccessToken(stableApp.appid, stableApp.ctx());
    expect((await stableApp.record()).classicNotBeforeMs).toBeUndefined();
  });
});

describe('2d. a reported token is dead for good', () => {
  it('never writes back a copy of a token whose report was accepted, after the record was lost', async () => {
    const w = world();
    const first = await w.a.getAccessToken(w.appid, w.ctx());
    await w.b.getAccessToken(w.appid, w.ctx()); // b holds a copy of AT-1 too
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);
    await w.a.refreshAccessToken(w.appid, first.value, w.ctx()); // accepted: AT-2 replaces AT-1
    await w.memcached.delete(w.keys().record); // then the record is lost
    w.time.advance(w.settings.memoryCacheSeconds * SECOND);

    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served.value).not.toBe(first.value);
    expect(w.telemetry.of('record.written_back')).toEqual([]);
    expect((await w.record()).value).not.toBe(first.value);
  });

  it('never returns the reported token when the record is missing and a memory copy of it is held', async () => {
    const w = world();
    const first = await w.a.getAccessToken(w.appid, w.ctx());
    await w.memcached.delete(w.keys().record);

    const served = await w.a.refreshAccessToken(w.appid, first.value, w.ctx());

    expect(served.value).not.toBe(first.value);
    expect(served.source).toBe('wechat');
    // And no later request on that instance gets it back from its memory copy.
    w.time.advance(SECOND);
    expect((await w.a.getAccessToken(w.appid, w.ctx())).value).toBe(served.value);
  });

  it('does not serve a reported token from the memory copy during a cache outage', async () => {
    const w = world({ settings: { cacheOutagePolicy: 'stable_fallback' } });
    const first = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);
    const renewed = await w.a.refreshAccessToken(w.appid, first.value, w.ctx());
    expect(renewed.value).toBe('AT-2');
    w.storeOf('a').down = true;

    // The outage reads nothing; the copy held is AT-2, never AT-1.
    const during = await w.a.getAccessToken(w.appid, w.ctx());
    expect(during.value).toBe('AT-2');
  });

  it('answers cache_unavailable during an outage rather than hand back a reported stable token WeChat hands out again', async () => {
    const w = world({ settings: { cacheOutagePolicy: 'stable_fallback' } });
    w.wechat.tokenResponder = () => ({ value: 'ST-same', expiresInSeconds: 7200 });
    w.storeOf('a').down = true;

    await expect(w.a.refreshAccessToken(w.appid, 'ST-same', w.ctx())).rejects.toMatchObject({
      code: 'cache_unavailable',
    });
    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['stable']);
  });

  it('answers wechat_unavailable rather than hand back the token reported, should WeChat hand it out again', async () => {
    const w = world({ app: { tokenApi: 'stable' } });
    w.wechat.tokenResponder = () => ({ value: 'ST-same', expiresInSeconds: 7200 });
    await w.a.getAccessToken(w.appid, w.ctx());
    await w.memcached.delete(w.keys().record);

    await expect(w.b.refreshAccessToken(w.appid, 'ST-same', w.ctx())).rejects.toMatchObject({
      code: 'wechat_unavailable',
    });
  });
});

describe('3. missing → lock → fetch → write', () => {
  it('fetches a missing token while holding the lock, writes generation 1 and releases the lock (wechat)', async () => {
    const w = world();
    w.wechat.holdTokens();
    const startedAtMs = w.time.t;
    const pending = w.a.getAccessToken(w.appid, w.ctx());
    await until(() => w.wechat.tokenCalls.length === 1, 'the fetch');

    expect(await w.memcached.get(w.keys().lock)).not.toBeNull();
    const call = w.wechat.tokenCalls[0]!;
    expect(call).toMatchObject({
      api: 'classic',
      forceRefresh: false,
      app: { appid: w.appid, secret: TEST_SECRET },
    });
    // The fetch may not outlive the lock's lease.
    expect(call.deadlineAtMs).toBeLessThan(startedAtMs + w.settings.lockLeaseSeconds * SECOND);
    call.answer.resolve({ value: 'AT-first', expiresInSeconds: 7200 });

    expect(await pending).toMatchObject({ source: 'wechat', value: 'AT-first', generation: 1 });
    expect(await w.record()).toMatchObject({
      value: 'AT-first',
      generation: 1,
      writer: 'a',
      origin: 'classic',
      fetchedAtMs: startedAtMs,
    });
    expect(await w.memcached.get(w.keys().lock)).toBeNull();
    expect(w.telemetry.of('upstream.fetch')).toEqual([
      { event: 'upstream.fetch', upstream: 'token', kind: 'access_token', appid: w.appid, reason: 'missing' },
    ]);
  });

  it("gives the record a Memcached TTL of about WeChat's expires_in, so a dead token disappears by itself", async () => {
    const w = world();
    const grant = { value: 'AT-ttl', expiresInSeconds: 7200 };
    w.wechat.tokenResponder = () => grant;
    await w.a.getAccessToken(w.appid, w.ctx());

    const write = w.storeOf('a').sets.find((s) => s.key === w.keys().record)!;
    expect(write.ttlSeconds).toBeLessThanOrEqual(grant.expiresInSeconds + 2);
    expect(write.ttlSeconds).toBeGreaterThanOrEqual(grant.expiresInSeconds - 60);
    const record = await w.record();
    expect(record.expiresAtMs).toBeLessThanOrEqual(T0 + grant.expiresInSeconds * SECOND);

    w.time.t = record.expiresAtMs - 1;
    expect(await w.memcached.get(w.keys().record)).not.toBeNull();
    w.time.t = T0 + (grant.expiresInSeconds + 2) * SECOND;
    expect(await w.memcached.get(w.keys().record)).toBeNull();
  });

  it('writes generation 2 at the next refresh, from whichever instance refreshes', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    const first = await w.record();

    w.time.t = first.refreshAtMs;
    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'wechat', value: 'AT-2', generation: 2 });
    expect(await w.record()).toMatchObject({
      value: 'AT-2',
      generation: 2,
      writer: 'b',
      fetchedAtMs: first.refreshAtMs,
    });
    expect(w.telemetry.of('upstream.fetch').map((e) => e.reason)).toEqual(['missing', 'window']);
  });
});

describe('4. inside the refresh window', () => {
  it('lets one instance refresh while a lock loser on another instance is served the still-valid token at once (cache)', async () => {
    const w = world();
    const old = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.wechat.holdTokens();

    const refreshing = track(w.a.getAccessToken(w.appid, w.ctx()));
    await until(() => w.wechat.tokenCalls.length === 2, 'the refresh');
    const sleepsBefore = w.time.sleeps.length;
    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'cache', value: old.value, generation: 1 });
    expect(served.expiresIn).toBeGreaterThan(0);
    expect(w.time.sleeps.length).toBe(sleepsBefore); // it did not wait
    expect(refreshing.settled()).toBe(false);

    w.wechat.tokenCalls[1]!.answer.resolve({ value: 'AT-new', expiresInSeconds: 7200 });
    expect(await refreshing.promise).toMatchObject({ source: 'wechat', value: 'AT-new', generation: 2 });
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect((await w.b.getAccessToken(w.appid, w.ctx())).value).toBe('AT-new');
  });
});

describe('5. lock lost with no valid token', () => {
  it("waits for the winner's write and serves it (peer), without fetching", async () => {
    const w = world();
    w.wechat.holdTokens();
    w.time.gated = true;
    const winner = w.a.getAccessToken(w.appid, w.ctx());
    await until(() => w.wechat.tokenCalls.length === 1, 'the winner to fetch');

    const waiter = track(w.b.getAccessToken(w.appid, w.ctx()));
    await until(() => w.time.parked === 1, 'the loser to wait');
    expect(waiter.settled()).toBe(false);

    w.wechat.tokenCalls[0]!.answer.resolve({ value: 'AT-won', expiresInSeconds: 7200 });
    expect((await winner).source).toBe('wechat');
    await w.time.wakeUntilSettled([waiter.promise]);

    expect(await waiter.promise).toMatchObject({ source: 'peer', value: 'AT-won', generation: 1 });
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(w.telemetry.of('lock.wait').map((e) => e.outcome)).toEqual(['peer']);
  });

  it('gives up with refresh_in_progress when the deadline comes before the winner writes', async () => {
    const w = world();
    w.wechat.holdTokens();
    void w.a.getAccessToken(w.appid, w.ctx(60 * SECOND));
    await until(() => w.wechat.tokenCalls.length === 1, 'the winner to fetch');

    const budgetMs = 2 * SECOND;
    expect(budgetMs).toBeLessThan(w.settings.lockLeaseSeconds * SECOND); // the lease outlives the wait
    const startedAtMs = w.time.t;
    await expect(w.b.getAccessToken(w.appid, w.ctx(budgetMs))).rejects.toMatchObject({
      code: 'refresh_in_progress',
    });

    expect(w.time.t).toBeLessThanOrEqual(startedAtMs + budgetMs);
    expect(w.time.sleeps.length).toBeGreaterThan(1); // it polled
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(w.telemetry.of('lock.wait').map((e) => e.outcome)).toEqual(['timeout']);
  });

  it("takes over when the winner crashed and its lease lapsed; the crashed holder's late answer is not written", async () => {
    const w = world();
    w.wechat.holdTokens();
    const crashed = w.a.getAccessToken(w.appid, w.ctx(60 * SECOND));
    await until(() => w.wechat.tokenCalls.length === 1, 'the first holder to fetch');

    const startedAtMs = w.time.t;
    const takingOver = w.b.getAccessToken(w.appid, w.ctx(60 * SECOND));
    await until(() => w.wechat.tokenCalls.length === 2, 'the waiter to take over');

    expect(w.time.t - startedAtMs).toBeGreaterThanOrEqual(w.settings.lockLeaseSeconds * SECOND);
    w.wechat.tokenCalls[1]!.answer.resolve({ value: 'AT-takeover', expiresInSeconds: 7200 });
    expect(await takingOver).toMatchObject({ source: 'wechat', value: 'AT-takeover', generation: 1 });
    expect(w.telemetry.of('lock.wait').map((e) => e.outcome)).toContain('takeover');
    expect(await w.record()).toMatchObject({ value: 'AT-takeover', writer: 'b' });

    // The first holder answers long after its lease: it must not overwrite its successor's record.
    w.wechat.tokenCalls[0]!.answer.resolve({ value: 'AT-late', expiresInSeconds: 7200 });
    await crashed;
    expect((await w.record()).value).toBe('AT-takeover');
    expect(w.telemetry.of('record.unshared')).toContainEqual({
      event: 'record.unshared',
      kind: 'access_token',
      appid: w.appid,
    });
  });
});

describe('6. lock won, but a peer wrote meanwhile', () => {
  it("serves the peer's record (peer) without fetching when the token was missing", async () => {
    const w = world();
    // b has read "missing"; just before b's lock attempt, a runs a whole refresh.
    w.storeOf('b').beforeAdd = async () => {
      await w.a.getAccessToken(w.appid, w.ctx());
    };

    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'peer', value: 'AT-1', generation: 1 });
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it("serves the peer's newer generation (peer) without fetching when the token was inside the window", async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.storeOf('b').beforeAdd = async () => {
      await w.a.getAccessToken(w.appid, w.ctx());
    };

    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'peer', value: 'AT-2', generation: 2 });
    expect(w.wechat.tokenCalls).toHaveLength(2);
  });
});

describe('7. the refresh fails', () => {
  it('serves the old token (stale), warns and counts it, while the old token is still valid', async () => {
    const w = world();
    const old = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.wechat.tokenResponder = upstreamDown;

    const served = await w.b.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'stale', value: old.value, generation: 1 });
    expect(served.expiresIn).toBeGreaterThan(0);
    expectConsistentExpiry(served, w.time.t);
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(w.telemetry.of('token.stale_served')).toEqual([
      { event: 'token.stale_served', kind: 'access_token', appid: w.appid, code: 'wechat_unavailable' },
    ]);
    expect(await w.memcached.get(w.keys().lock)).toBeNull();
  });

  it('propagates the failure with its code once the old token has expired', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).expiresAtMs;
    w.wechat.tokenResponder = upstreamDown;

    await expect(w.b.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({ code: 'wechat_unavailable' });
    expect(w.telemetry.of('upstream.fetch').map((e) => e.reason)).toEqual(['missing', 'expired']);
    expect(w.telemetry.of('token.stale_served')).toHaveLength(0);
  });

  it('propagates the failure with its code when there was no token at all', async () => {
    const w = world();
    w.wechat.tokenResponder = upstreamDown;
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({ code: 'wechat_unavailable' });
    expect(await w.memcached.get(w.keys().lock)).toBeNull();
  });

  it('does not remember a transient failure: the next request asks WeChat again', async () => {
    const w = world();
    w.wechat.tokenResponder = upstreamDown;
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({ code: 'wechat_unavailable' });
    w.wechat.tokenResponder = () => ({ value: 'AT-back', expiresInSeconds: 7200 });
    expect(await w.b.getAccessToken(w.appid, w.ctx())).toMatchObject({ source: 'wechat', value: 'AT-back' });
    expect(w.wechat.tokenCalls).toHaveLength(2);
  });
});

describe('8. passive refresh', () => {
  const minAgeMs = (w: ReturnType<typeof world>) => w.settings.passiveRefreshMinAgeSeconds * SECOND;

  it('returns the current token without fetching when the reported token is not the current one', async () => {
    const w = world();
    const current = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(minAgeMs(w) + SECOND);

    const served = await w.b.refreshAccessToken(w.appid, 'AT-some-older-token', w.ctx());

    expect(served).toMatchObject({ source: 'cache', value: current.value, generation: 1 });
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('returns the current token without fetching when the reported token is younger than the minimum age', async () => {
    const w = world();
    const current = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(minAgeMs(w) - SECOND);

    const served = await w.b.refreshAccessToken(w.appid, current.value, w.ctx());

    expect(served).toMatchObject({ source: 'cache', value: current.value });
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('fetches a token when there is none at all (missing), whatever was reported', async () => {
    const w = world();
    const served = await w.a.refreshAccessToken(w.appid, 'AT-unknown', w.ctx());
    expect(served).toMatchObject({ source: 'wechat', value: 'AT-1' });
    expect(w.wechat.tokenCalls[0]!.forceRefresh).toBe(false);
  });

  it('refreshes exactly once for 50 concurrent reporters over two instances; every reporter gets the new token', async () => {
    const w = world();
    const reported = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(minAgeMs(w) + SECOND);
    w.wechat.holdTokens();
    w.time.gated = true;

    const reports = Array.from({ length: 50 }, (_, i) =>
      (i % 2 === 0 ? w.a : w.b).refreshAccessToken(w.appid, reported.value, w.ctx()),
    );
    await until(() => w.wechat.tokenCalls.length === 2 && w.time.parked === 49, 'one fetch and 49 waiters');
    w.wechat.tokenCalls[1]!.answer.resolve({ value: 'AT-replacement', expiresInSeconds: 7200 });
    await w.time.wakeUntilSettled(reports);
    const served = await Promise.all(reports);

    expect(new Set(served.map((s) => s.value))).toEqual(new Set(['AT-replacement']));
    expect(served.filter((s) => s.source === 'wechat')).toHaveLength(1);
    expect(served.filter((s) => s.source === 'peer')).toHaveLength(49);
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(w.telemetry.of('upstream.fetch').map((e) => e.reason)).toEqual(['missing', 'passive']);
    expect(await w.record()).toMatchObject({ value: 'AT-replacement', generation: 2 });
  });

  it('does not serve the reported token as stale when the passive refresh fails: the error propagates', async () => {
    const w = world();
    const reported = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(minAgeMs(w) + SECOND);
    w.wechat.tokenResponder = upstreamDown;

    await expect(w.b.refreshAccessToken(w.appid, reported.value, w.ctx())).rejects.toMatchObject({
      code: 'wechat_unavailable',
    });
    expect(w.telemetry.of('token.stale_served')).toHaveLength(0);
  });

  it('rejects a passive refresh (refresh_rejected) once the daily budget is used, until the WeChat day ends (midnight UTC+8)', async () => {
    const w = world({
      settings: { passiveRefreshDailyBudget: 1, passiveRefreshMinAgeSeconds: 60 },
      startAt: CHINA_MIDNIGHT - 10 * MINUTE,
    });
    const first = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(minAgeMs(w) + SECOND);
    const second = await w.a.refreshAccessToken(w.appid, first.value, w.ctx());
    expect(second).toMatchObject({ source: 'wechat', generation: 2 });
    expect(second.value).not.toBe(first.value);

    w.time.advance(minAgeMs(w) + SECOND);
    await expect(w.b.refreshAccessToken(w.appid, second.value, w.ctx())).rejects.toMatchObject({
      code: 'refresh_rejected',
    });
    w.time.t = CHINA_MIDNIGHT - SECOND;
    await expect(w.a.refreshAccessToken(w.appid, second.value, w.ctx())).rejects.toMatchObject({
      code: 'refresh_rejected',
    });
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(await w.memcached.get(w.keys().lock)).toBeNull();

    w.time.t = CHINA_MIDNIGHT + SECOND;
    const third = await w.b.refreshAccessToken(w.appid, second.value, w.ctx());
    expect(third).toMatchObject({ source: 'wechat', generation: 3 });
    expect(w.wechat.tokenCalls).toHaveLength(3);
  });

  it('answers unknown_appid for an appid that is not configured, without fetching', async () => {
    const w = world();
    await expect(w.a.refreshAccessToken(TEST_APPID_UNCONFIGURED, 'AT-x', w.ctx())).rejects.toMatchObject({
      code: 'unknown_appid',
    });
    expect(w.wechat.tokenCalls).toHaveLength(0);
  });
});

describe('9. stable-token apps', () => {
  const stableWorld = () =>
    world({
      app: { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE, tokenApi: 'stable' },
      settings: { passiveRefreshMinAgeSeconds: 10 },
    });
  // WeChat: force refreshes at least 30 s apart, at most 20 a day (wechat-facts §2).
  const FORCE_SPACING_MS = 30 * SECOND;
  const FORCE_PER_DAY = 20;

  it('fetches with api stable and forceRefresh false for normal gets', async () => {
    const w = stableWorld();
    const served = await w.a.getAccessToken(w.appid, w.ctx());
    expect(served.source).toBe('wechat');
    expect(w.wechat.tokenCalls[0]).toMatchObject({
      api: 'stable',
      forceRefresh: false,
      app: { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE },
    });
    expect((await w.record()).origin).toBe('stable');
  });

  it('asks for a forced refresh on passive refresh, and rejects a second one within 30 s (refresh_rejected)', async () => {
    const w = stableWorld();
    const first = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);

    const forced = await w.a.refreshAccessToken(w.appid, first.value, w.ctx());
    expect(forced).toMatchObject({ source: 'wechat', generation: 2 });
    expect(w.wechat.tokenCalls[1]).toMatchObject({ api: 'stable', forceRefresh: true });

    const forcedAtMs = w.time.t;
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);
    expect(w.time.t - forcedAtMs).toBeLessThan(FORCE_SPACING_MS); // old enough, but too soon for WeChat
    await expect(w.b.refreshAccessToken(w.appid, forced.value, w.ctx())).rejects.toMatchObject({
      code: 'refresh_rejected',
    });
    expect(w.wechat.tokenCalls).toHaveLength(2);

    w.time.advance(FORCE_SPACING_MS);
    const again = await w.b.refreshAccessToken(w.appid, forced.value, w.ctx());
    expect(again).toMatchObject({ source: 'wechat', generation: 3 });
    expect(w.wechat.tokenCalls[2]).toMatchObject({ api: 'stable', forceRefresh: true });
  });

  it('rejects the force refresh after the 20th of the day (refresh_rejected)', async () => {
    const w = stableWorld();
    let current = await w.a.getAccessToken(w.appid, w.ctx());
    for (let i = 0; i < FORCE_PER_DAY; i++) {
      w.time.advance(FORCE_SPACING_MS + SECOND);
      current = await (i % 2 === 0 ? w.a : w.b).refreshAccessToken(w.appid, current.value, w.ctx());
      expect(current.source).toBe('wechat');
    }
    expect(w.wechat.tokenCalls.filter((c) => c.forceRefresh)).toHaveLength(FORCE_PER_DAY);

    w.time.advance(FORCE_SPACING_MS + SECOND);
    await expect(w.a.refreshAccessToken(w.appid, current.value, w.ctx())).rejects.toMatchObject({
      code: 'refresh_rejected',
    });
    expect(w.wechat.tokenCalls).toHaveLength(1 + FORCE_PER_DAY);
  });
});

describe('10. the quota breaker (45009)', () => {
  /** WeChat answers 45009 at `exhausted` endpoints and grants tokens at the others. */
  const quotaOf =
    (...exhausted: ('classic' | 'stable')[]) =>
    (call: TokenCall, n: number) =>
      exhausted.includes(call.api)
        ? errorForErrcode(
            call.api === 'classic' ? 'token' : 'stable_token',
            TEST_APPID,
            45009,
            'reach max api daily quota limit rid: 65a0-1',
          )
        : { value: `AT-${n}`, expiresInSeconds: 7200 };

  it('fails every request on both instances with wechat_quota_exhausted, calling WeChat only for one probe per endpoint per probe interval until the quota day ends', async () => {
    const w = world();
    w.wechat.tokenResponder = quotaOf('classic', 'stable');
    const exhausted = { code: 'wechat_quota_exhausted', errcode: 45009 };

    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(exhausted);
    const callsWhenOpened = w.wechat.tokenCalls.length;
    expect(callsWhenOpened).toBeGreaterThanOrEqual(1);

    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(exhausted);
    const fromPeer = w.b.getAccessToken(w.appid, w.ctx());
    await expect(fromPeer).rejects.toMatchObject(exhausted);
    await expect(fromPeer).rejects.toThrow(/clear_quota\/v2/);
    expect(w.wechat.tokenCalls).toHaveLength(callsWhenOpened);
    w.time.t = CHINA_MIDNIGHT - SECOND;
    await expect(w.b.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(exhausted);
    // More than a probe interval (600 s) later: one probe of each endpoint, still 45009.
    expect(w.wechat.tokenCalls.slice(callsWhenOpened).map((c) => c.api)).toEqual(['classic', 'stable']);
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(exhausted);
    expect(w.wechat.tokenCalls).toHaveLength(callsWhenOpened + 2);

    w.wechat.tokenResponder = (_call, n) => ({ value: `AT-new-day-${n}`, expiresInSeconds: 7200 });
    w.time.t = CHINA_MIDNIGHT + SECOND;
    expect(await w.a.getAccessToken(w.appid, w.ctx())).toMatchObject({ source: 'wechat' });
    expect(w.wechat.tokenCalls.slice(callsWhenOpened + 2).map((c) => c.api)).toEqual(['classic']);
  });

  it('serves a still-valid token (stale) on both instances while the breaker is open', async () => {
    const w = world();
    const old = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.wechat.tokenResponder = quotaOf('classic', 'stable');

    expect(await w.a.getAccessToken(w.appid, w.ctx())).toMatchObject({ source: 'stale', value: old.value });
    const callsWhenOpened = w.wechat.tokenCalls.length;
    expect(await w.b.getAccessToken(w.appid, w.ctx())).toMatchObject({ source: 'stale', value: old.value });

    expect(w.wechat.tokenCalls).toHaveLength(callsWhenOpened);
    expect(w.telemetry.of('token.stale_served').map((e) => e.code)).toEqual([
      'wechat_quota_exhausted',
      'wechat_quota_exhausted',
    ]);
  });

  it('falls back to the stable endpoint when only the classic quota is used up, and asks classic only to probe the breaker until the quota day ends', async () => {
    const w = world();
    w.wechat.tokenResponder = quotaOf('classic');

    const served = await w.a.getAccessToken(w.appid, w.ctx());
    expect(served.source).toBe('wechat');
    expect(w.wechat.tokenCalls.map((c) => [c.api, c.forceRefresh])).toEqual([
      ['classic', false],
      ['stable', false],
    ]);
    expect((await w.record()).origin).toBe('stable');

    // The next refresh, from the other instance and past the probe interval (600 s), probes classic
    // once (still exhausted), then takes a stable token.
    w.time.t = (await w.record()).refreshAtMs;
    expect((await w.b.getAccessToken(w.appid, w.ctx())).source).toBe('wechat');
    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['classic', 'stable', 'classic', 'stable']);

    // A new quota day: classic again.
    w.wechat.tokenResponder = (_call, n) => ({ value: `AT-${n}`, expiresInSeconds: 7200 });
    w.time.t = CHINA_MIDNIGHT + SECOND;
    expect((await w.a.getAccessToken(w.appid, w.ctx())).source).toBe('wechat');
    expect(w.wechat.tokenCalls.at(-1)?.api).toBe('classic');
  });
});

describe('11. rejected credentials', () => {
  it('remembers a credentials failure for failureMemorySeconds across instances, then asks WeChat again', async () => {
    const w = world();
    w.wechat.tokenResponder = () => secretRejected();
    const rejected = { code: 'wechat_credentials_rejected', errcode: 40001 };

    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(rejected);
    expect(w.wechat.tokenCalls).toHaveLength(1);

    w.time.advance(w.settings.failureMemorySeconds * SECOND - SECOND);
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(rejected);
    await expect(w.b.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject(rejected);
    expect(w.wechat.tokenCalls).toHaveLength(1);

    w.time.advance(2 * SECOND);
    w.wechat.tokenResponder = () => ({ value: 'AT-fixed', expiresInSeconds: 7200 });
    expect(await w.b.getAccessToken(w.appid, w.ctx())).toMatchObject({ source: 'wechat', value: 'AT-fixed' });
    expect(w.wechat.tokenCalls).toHaveLength(2);
  });

  it('ignores a remembered failure that is not a valid one (corrupt cache value) and asks WeChat', async () => {
    const w = world();
    const failureKey = upstreamKeys(w.settings.cacheKeyPrefix, 'token', w.appid).failure;
    await w.memcached.set(failureKey, '{"code":"internal_error","message":"planted"}', 60);
    expect((await w.a.getAccessToken(w.appid, w.ctx())).source).toBe('wechat');
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it.each([
    [40164, 'wechat_ip_not_whitelisted'],
    [89503, 'wechat_ip_confirmation_required'],
  ])('remembers errcode %i (%s) across instances too', async (errcode, code) => {
    const w = world();
    w.wechat.tokenResponder = () =>
      errorForErrcode(
        'token',
        TEST_APPID,
        errcode,
        'invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist',
      );
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({ code, errcode });
    await expect(w.b.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({ code, errcode });
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('re-reads the credentials and retries once with a rotated secret, and succeeds', async () => {
    const base: AppConfig = { appid: TEST_APPID, secret: TEST_SECRET, tokenApi: 'classic', tickets: [] };
    const credentials = new RotatingCredentials(base, TEST_SECRET_ROTATED);
    const w = world({ credentials });
    w.wechat.tokenResponder = (call, n) =>
      call.app.secret === TEST_SECRET_ROTATED
        ? { value: `AT-${n}`, expiresInSeconds: 7200 }
        : secretRejected();

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'wechat', value: 'AT-2' });
    expect(w.wechat.tokenCalls.map((c) => c.app.secret === TEST_SECRET_ROTATED)).toEqual([false, true]);
    expect(credentials.reloads).toBe(1);
    // The failure is not remembered: the other instance is not refused.
    const failureKey = upstreamKeys(w.settings.cacheKeyPrefix, 'token', w.appid).failure;
    expect(await w.memcached.get(failureKey)).toBeNull();
  });

  it('does not retry when the re-read secret is unchanged: one call, the error propagates', async () => {
    const w = world();
    w.wechat.tokenResponder = () => secretRejected();
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({
      code: 'wechat_credentials_rejected',
    });
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });
});

describe('12. cache outage', () => {
  it('serves a valid memory copy (stale) while the cache is down, without fetching', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.memoryCacheSeconds * SECOND + SECOND);
    w.storeOf('a').down = true;

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served).toMatchObject({ source: 'stale', value: fetched.value });
    expectConsistentExpiry(served, w.time.t);
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(w.telemetry.of('token.stale_served')).toEqual([
      { event: 'token.stale_served', kind: 'access_token', appid: w.appid, code: 'cache_unavailable' },
    ]);
  });

  it('fetches a stable token for a classic app under stable_fallback, one fetch shared by 20 concurrent requests', async () => {
    const w = world({ settings: { cacheOutagePolicy: 'stable_fallback' } });
    w.storeOf('a').down = true;
    w.wechat.holdTokens();

    const requests = Array.from({ length: 20 }, () => w.a.getAccessToken(w.appid, w.ctx()));
    await until(() => w.wechat.tokenCalls.length > 0, 'the outage fetch');
    for (let i = 0; i < 5; i++) await flush();
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(w.wechat.tokenCalls[0]).toMatchObject({ api: 'stable', forceRefresh: false });
    w.wechat.tokenCalls[0]!.answer.resolve({ value: 'AT-stable-fallback', expiresInSeconds: 7200 });

    const served = await Promise.all(requests);
    expect(served.map((s) => s.value)).toEqual(Array(20).fill('AT-stable-fallback'));
    expect(new Set(served.map((s) => s.source))).toEqual(new Set(['wechat']));
    expect(w.wechat.tokenCalls.filter((c) => c.api === 'classic')).toHaveLength(0);
    // The next request is served from the memory copy.
    expect((await w.a.getAccessToken(w.appid, w.ctx())).source).toBe('memory');
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('answers cache_unavailable under policy fail (classic app), without calling WeChat', async () => {
    const w = world({ settings: { cacheOutagePolicy: 'fail' } });
    w.storeOf('a').down = true;
    await expect(w.a.getAccessToken(w.appid, w.ctx())).rejects.toMatchObject({ code: 'cache_unavailable' });
    expect(w.wechat.tokenCalls).toHaveLength(0);
  });

  it('fetches a classic token under policy classic', async () => {
    const w = world({ settings: { cacheOutagePolicy: 'classic' } });
    w.storeOf('a').down = true;
    expect(await w.a.getAccessToken(w.appid, w.ctx())).toMatchObject({ source: 'wechat', value: 'AT-1' });
    expect(w.wechat.tokenCalls.map((c) => c.api)).toEqual(['classic']);
  });

  it.each<CacheOutagePolicy>(['fail', 'stable_fallback', 'classic'])(
    'fetches a stable app directly under policy %s (a stable fetch invalidates nothing)',
    async (policy) => {
      const w = world({
        app: { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE, tokenApi: 'stable' },
        settings: { cacheOutagePolicy: policy },
      });
      w.storeOf('a').down = true;
      expect((await w.a.getAccessToken(w.appid, w.ctx())).source).toBe('wechat');
      expect(w.wechat.tokenCalls.map((c) => [c.api, c.forceRefresh])).toEqual([['stable', false]]);
    },
  );

  it('serves a valid memory copy (stale) when the cache fails at the lock, after the read', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.storeOf('a').beforeAdd = async () => {
      w.storeOf('a').down = true;
    };
    const served = await w.a.getAccessToken(w.appid, w.ctx());
    expect(served).toMatchObject({ source: 'stale', value: fetched.value });
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  /** a refreshes inside the window; Memcached stops answering between the fetch and the write. */
  async function writeFailsAfterFetch(w: ReturnType<typeof world>, value: string): Promise<Served> {
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.wechat.holdTokens();
    const refreshing = w.a.getAccessToken(w.appid, w.ctx());
    await until(() => w.wechat.tokenCalls.length === 2, 'the refresh');
    w.storeOf('a').down = true;
    w.wechat.tokenCalls[1]!.answer.resolve({ value, expiresInSeconds: 7200 });
    const served = await refreshing;
    w.wechat.tokenResponder = (_call, n) => ({ value: `AT-${n}`, expiresInSeconds: 7200 });
    return served;
  }

  it('serves the token it fetched when the cache fails at the write, and keeps serving it while the cache is down', async () => {
    const w = world();
    const served = await writeFailsAfterFetch(w, 'AT-fetched');

    expect(served).toMatchObject({ source: 'wechat', value: 'AT-fetched' });
    const calls = w.wechat.tokenCalls.length;
    expect((await w.a.getAccessToken(w.appid, w.ctx())).value).toBe('AT-fetched');
    expect(w.wechat.tokenCalls).toHaveLength(calls);
  });

  it('does not write an unshared token back to the cache: peers may already have replaced it', async () => {
    const w = world();
    await writeFailsAfterFetch(w, 'AT-unshared');
    await w.memcached.delete(w.keys().record);
    w.storeOf('a').down = false;
    w.time.advance(w.settings.lockLeaseSeconds * SECOND);
    await w.a.getAccessToken(w.appid, w.ctx());
    expect(await w.memcached.get(w.keys().record)).not.toContain('AT-unshared');
  });

  // A token no other instance can see may be refreshed over by a peer at once: promised at most the overlap.
  it('does not promise an unwritten token beyond what an immediate refresh by a peer leaves it', async () => {
    const w = world();
    const served = await writeFailsAfterFetch(w, 'AT-unwritten');
    w.storeOf('a').down = false;
    w.time.advance(w.settings.lockLeaseSeconds * SECOND); // a could not release its lock: it lapses

    const peerRefreshAtMs = w.time.t;
    expect((await w.b.getAccessToken(w.appid, w.ctx())).source).toBe('wechat'); // the old record was due

    expect(served.expiresAt * SECOND).toBeLessThanOrEqual(peerRefreshAtMs + WECHAT_OVERLAP_MS);
  });

  // During an outage a passive refresh must never answer with the very token the consumer reported dead.
  it('never hands the reported token back during a cache outage', async () => {
    const w = world();
    const reported = await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);
    w.storeOf('a').down = true;

    const outcome = await w.a.refreshAccessToken(w.appid, reported.value, w.ctx()).then(
      (served) => served.value,
      (err: ServiceError) => err.code,
    );

    expect(outcome).not.toBe(reported.value);
  });
});

describe('13. tickets', () => {
  it('fetches the access token first, then the ticket with that token (jsapi)', async () => {
    const w = world();
    const ticket = await w.a.getTicket(w.appid, 'jsapi', w.ctx());

    expect(w.wechat.sequence).toEqual(['token', 'ticket:jsapi']);
    expect(w.wechat.ticketCalls[0]).toMatchObject({ appid: w.appid, accessToken: 'AT-1', type: 'jsapi' });
    expect(ticket).toMatchObject({
      kind: 'jsapi_ticket',
      source: 'wechat',
      value: 'jsapi-ticket-1',
      generation: 1,
    });
    expect(await w.record('jsapi_ticket')).toMatchObject({ value: 'jsapi-ticket-1', origin: 'ticket' });
    expectConsistentExpiry(ticket, w.time.t);
  });

  it('keeps jsapi and wx_card tickets in separate records', async () => {
    const w = world();
    const jsapi = await w.a.getTicket(w.appid, 'jsapi', w.ctx());
    const card = await w.a.getTicket(w.appid, 'wx_card', w.ctx());

    expect(card).toMatchObject({ kind: 'wx_card_ticket', source: 'wechat' });
    expect(card.value).not.toBe(jsapi.value);
    expect(w.wechat.ticketCalls.map((c) => c.type)).toEqual(['jsapi', 'wx_card']);
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect((await w.record('jsapi_ticket')).value).toBe(jsapi.value);
    expect((await w.record('wx_card_ticket')).value).toBe(card.value);
    expect(await w.b.getTicket(w.appid, 'jsapi', w.ctx())).toMatchObject({
      source: 'cache',
      value: jsapi.value,
    });
    expect(await w.b.getTicket(w.appid, 'wx_card', w.ctx())).toMatchObject({
      source: 'cache',
      value: card.value,
    });
    expect(w.wechat.ticketCalls).toHaveLength(2);
  });

  it('on errcode 40001 from getticket refreshes the token passively once and retries once with the new token', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);
    w.wechat.ticketResponder = (call) =>
      call.accessToken === 'AT-1'
        ? ticketTokenDead()
        : { value: 'jsapi-after-retry', expiresInSeconds: 7200 };

    const ticket = await w.b.getTicket(w.appid, 'jsapi', w.ctx());

    expect(ticket).toMatchObject({ source: 'wechat', value: 'jsapi-after-retry' });
    expect(w.wechat.ticketCalls.map((c) => c.accessToken)).toEqual(['AT-1', 'AT-2']);
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(w.telemetry.of('upstream.fetch').map((e) => `${e.upstream}:${e.kind}:${e.reason}`)).toEqual([
      'token:access_token:missing',
      'ticket:jsapi_ticket:missing',
      'token:access_token:passive',
      'ticket:jsapi_ticket:ticket_retry',
    ]);
  });

  it('fails with the error (no loop) when the retry with the new token fails too', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.advance(w.settings.passiveRefreshMinAgeSeconds * SECOND + SECOND);
    w.wechat.ticketResponder = () => ticketTokenDead();

    await expect(w.b.getTicket(w.appid, 'jsapi', w.ctx())).rejects.toMatchObject({
      code: 'wechat_rejected',
      errcode: 40001,
    });
    expect(w.wechat.ticketCalls).toHaveLength(2);
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect(await w.memcached.get(w.keys('jsapi_ticket').lock)).toBeNull();
  });

  it('does not refresh a token younger than the minimum age for a getticket 40001: one ticket call, the error propagates', async () => {
    const w = world();
    w.wechat.ticketResponder = () => ticketTokenDead();
    await expect(w.a.getTicket(w.appid, 'jsapi', w.ctx())).rejects.toMatchObject({
      code: 'wechat_rejected',
      errcode: 40001,
    });
    expect(w.wechat.ticketCalls).toHaveLength(1);
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('promises nothing for a ticket seen with no record, asks again shortly, and counts a new ticket from the previous answer', async () => {
    const w = world();
    w.wechat.ticketResponder = (_call, n) => ({
      value: n <= 2 ? 'jsapi-old' : 'jsapi-new',
      expiresInSeconds: 7200,
    });
    const first = await w.a.getTicket(w.appid, 'jsapi', w.ctx());
    // WeChat answers an existing ticket with the full 7200 s: its age is unknown, so nothing is promised.
    expect(first).toMatchObject({ value: 'jsapi-old', expiresIn: 0, source: 'wechat' });
    const unknown = await w.record('jsapi_ticket');
    expect(unknown).toMatchObject({ ageUnknown: true, refreshAtMs: unknown.fetchedAtMs + 60 * SECOND });

    w.time.t = unknown.refreshAtMs;
    const same = await w.b.getTicket(w.appid, 'jsapi', w.ctx());
    expect(same).toMatchObject({ value: 'jsapi-old', expiresIn: 0 });
    const stillUnknown = await w.record('jsapi_ticket');
    expect(stillUnknown.ageUnknown).toBe(true);

    w.time.t = stillUnknown.refreshAtMs;
    const renewed = await w.a.getTicket(w.appid, 'jsapi', w.ctx());
    // Issued after the previous answer was asked for: its life counts from then.
    expect(renewed.value).toBe('jsapi-new');
    const known = await w.record('jsapi_ticket');
    expect(known.ageUnknown).toBeUndefined();
    expect(known.fetchedAtMs).toBe(stillUnknown.fetchedAtMs);
    expect(known.expiresAtMs).toBe(stillUnknown.fetchedAtMs + 7200 * SECOND);
    expect(renewed.expiresIn).toBe(Math.floor((known.expiresAtMs - w.time.t) / SECOND));
    expect(w.wechat.ticketCalls).toHaveLength(3);
  });

  it("does not extend a ticket's life when WeChat hands the same ticket back with a full expires_in", async () => {
    const w = world();
    const grant = { value: 'jsapi-same', expiresInSeconds: 7200 };
    const first = await knownAgeTicket(w, grant.value);
    w.wechat.ticketResponder = () => grant;
    const firstRecord = await w.record('jsapi_ticket');
    expect(firstRecord.expiresAtMs).toBeLessThanOrEqual(first.fetchedAtMs + grant.expiresInSeconds * SECOND);

    w.time.t = firstRecord.refreshAtMs;
    const again = await w.b.getTicket(w.appid, 'jsapi', w.ctx());

    expect(again).toMatchObject({
      source: 'wechat',
      value: 'jsapi-same',
      generation: 3,
      fetchedAtMs: first.fetchedAtMs,
    });
    expect(w.wechat.ticketCalls).toHaveLength(3);
    const record = await w.record('jsapi_ticket');
    expect(record.expiresAtMs).toBe(firstRecord.expiresAtMs);
    expect(again.expiresAt).toBeLessThanOrEqual(Math.floor(firstRecord.expiresAtMs / 1000));
    expectConsistentExpiry(again, w.time.t);
    // Asking again before it ends gains nothing: it is served without another call.
    w.time.advance(w.settings.memoryCacheSeconds * SECOND);
    expect((await w.a.getTicket(w.appid, 'jsapi', w.ctx())).source).toBe('cache');
    expect(w.wechat.ticketCalls).toHaveLength(3);
  });

  it('asks again when WeChat hands back the ticket after its counted life, and serves the next one', async () => {
    const w = world();
    await knownAgeTicket(w, 'jsapi-dying');
    w.wechat.ticketResponder = (_call, n) => ({
      value: n <= 3 ? 'jsapi-dying' : 'jsapi-next',
      expiresInSeconds: 7200,
    });
    w.time.t = (await w.record('jsapi_ticket')).expiresAtMs;

    const served = await w.b.getTicket(w.appid, 'jsapi', w.ctx());

    expect(served).toMatchObject({ source: 'wechat', value: 'jsapi-next' });
    expect(w.wechat.ticketCalls).toHaveLength(4);
    expect(served.expiresIn).toBeGreaterThan(3600);
  });

  it('keeps a ticket WeChat insists on handing back after its counted life only briefly, after a bounded number of asks', async () => {
    const w = world();
    await knownAgeTicket(w, 'jsapi-dying');
    w.wechat.ticketResponder = () => ({ value: 'jsapi-dying', expiresInSeconds: 7200 });
    w.time.t = (await w.record('jsapi_ticket')).expiresAtMs;

    const served = await w.b.getTicket(w.appid, 'jsapi', w.ctx());

    expect(served.value).toBe('jsapi-dying');
    expect(served.expiresIn).toBeLessThanOrEqual(1);
    expectConsistentExpiry(served, w.time.t);
    const asks = w.wechat.ticketCalls.length - 2;
    expect(asks).toBeGreaterThan(1);
    expect(asks).toBeLessThanOrEqual(4);
  });

  it('answers unknown_appid for a ticket of an appid that is not configured', async () => {
    const w = world();
    await expect(w.a.getTicket(TEST_APPID_UNCONFIGURED, 'jsapi', w.ctx())).rejects.toMatchObject({
      code: 'unknown_appid',
    });
    expect(w.wechat.tokenCalls).toHaveLength(0);
    expect(w.wechat.ticketCalls).toHaveLength(0);
  });
});

describe('14. the guaranteed expires_in', () => {
  /**
   * lifetime.ts: a token may be refreshed passively as soon as it is min-age old, and it then lives
   * the overlap unless a second refresh (itself min-age after the first) kills it sooner.
   */
  const passivePromiseMs = (s: TokenServiceSettings) =>
    s.passiveRefreshMinAgeSeconds * SECOND +
    Math.min(WECHAT_OVERLAP_MS, s.passiveRefreshMinAgeSeconds * SECOND);

  it("promises a fresh classic token about min age + overlap (≈ 590 s with min age 300), not WeChat's 7200 s", async () => {
    const w = world({ settings: { passiveRefreshMinAgeSeconds: 300 } });
    const served = await w.a.getAccessToken(w.appid, w.ctx());

    const bound = passivePromiseMs(w.settings) / SECOND;
    expect(served.expiresIn).toBeLessThanOrEqual(bound);
    expect(served.expiresIn).toBeGreaterThanOrEqual(bound - w.settings.lockLeaseSeconds - 1);
    expectConsistentExpiry(served, w.time.t);
  });

  it("keeps every promise within lifetime.ts's rules across a token's whole life, on both instances", async () => {
    const w = world();
    const lifeSeconds = 7200;
    w.wechat.tokenResponder = (_call, n) => ({ value: `AT-${n}`, expiresInSeconds: lifeSeconds });
    const minAgeMs = w.settings.passiveRefreshMinAgeSeconds * SECOND;
    for (let step = 0; w.time.t < T0 + lifeSeconds * SECOND; step++) {
      const served = await (step % 3 === 0 ? w.a : w.b).getAccessToken(w.appid, w.ctx());
      const now = w.time.t;
      expectConsistentExpiry(served, now);
      const promisedUntilMs = now + served.expiresIn * SECOND;
      // Never beyond WeChat's own expiry of the value.
      expect(promisedUntilMs).toBeLessThanOrEqual(served.fetchedAtMs + lifeSeconds * SECOND);
      // Never beyond the latest moment a passive refresh could start, plus what survives it.
      expect(promisedUntilMs).toBeLessThanOrEqual(
        Math.max(served.fetchedAtMs + minAgeMs, now) + Math.min(WECHAT_OVERLAP_MS, minAgeMs),
      );
      // Never beyond the proactive refresh of that value plus the overlap.
      const record = await w.record();
      if (record.generation === served.generation && record.origin === 'classic') {
        expect(promisedUntilMs).toBeLessThanOrEqual(Math.max(record.refreshAtMs, now) + WECHAT_OVERLAP_MS);
      }
      w.time.advance(97 * SECOND);
    }
    expect(w.wechat.tokenCalls).toHaveLength(2); // one fetch, one proactive refresh in the window
  });

  it('promises no more than a short-lived token lives', async () => {
    const w = world();
    const grant = { value: 'AT-short', expiresInSeconds: 20 };
    w.wechat.tokenResponder = () => grant;
    const served = await w.a.getAccessToken(w.appid, w.ctx());
    expect(served.expiresIn).toBeGreaterThan(0);
    expect(served.expiresIn).toBeLessThan(grant.expiresInSeconds);
    expectConsistentExpiry(served, w.time.t);
  });

  it('promises a stable token handed out in its last 5 minutes no more than WeChat gave it', async () => {
    const w = world({ app: { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE, tokenApi: 'stable' } });
    // wechat-facts §2: a normal stable call in the last 300 s returns the token with what it has left.
    const grant = { value: 'AT-stable-ending', expiresInSeconds: 300 };
    w.wechat.tokenResponder = () => grant;
    const served = await w.a.getAccessToken(w.appid, w.ctx());
    expect(served.expiresIn).toBeGreaterThan(0);
    expect(served.expiresIn).toBeLessThan(grant.expiresInSeconds);
    expect(w.time.t + served.expiresIn * SECOND).toBeLessThanOrEqual((await w.record()).expiresAtMs);
  });

  it('scales the refresh window down for a short-lived token: no refresh on every request', async () => {
    const w = world();
    const grant = { value: 'AT-short', expiresInSeconds: 20 };
    w.wechat.tokenResponder = () => grant;
    await w.a.getAccessToken(w.appid, w.ctx());
    expect(grant.expiresInSeconds).toBeLessThan(w.settings.refreshWindowSeconds);

    w.time.advance(SECOND);
    expect((await w.b.getAccessToken(w.appid, w.ctx())).source).toBe('cache');
    const record = await w.record();
    expect(record.refreshAtMs - record.fetchedAtMs).toBeGreaterThanOrEqual(
      ((record.expiresAtMs - record.fetchedAtMs) / 2) * 0.99,
    );
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('never promises a negative expires_in, even for a stale copy past its guarantee', async () => {
    const w = world();
    const fetched = await w.a.getAccessToken(w.appid, w.ctx());
    // Past the copy's guarantee, before WeChat's expiry; then the cache goes away.
    w.time.advance(fetched.expiresIn * SECOND + 5 * MINUTE);
    w.storeOf('a').down = true;

    const served = await w.a.getAccessToken(w.appid, w.ctx());

    expect(served.source).toBe('stale');
    expect(served.expiresIn).toBe(0);
    expectConsistentExpiry(served, w.time.t);
  });
});

describe('15. the schedule (refreshIfDue)', () => {
  it('gets a head start: inside the window requests keep serving the cached token while the schedule refreshes it', async () => {
    const w = world({ settings: { scheduleIntervalSeconds: 300 } });
    await w.a.getAccessToken(w.appid, w.ctx());
    const first = await w.record();
    w.time.t = first.refreshAtMs + 1;
    expect((await w.b.getAccessToken(w.appid, w.ctx())).source).toBe('cache');
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('refreshed');
    expect(w.wechat.tokenCalls).toHaveLength(2);
    // Without a schedule run, a request refreshes inline once the head start is over.
    const second = await w.record();
    w.time.t = second.refreshAtMs + Math.min(300 * SECOND, (second.expiresAtMs - second.refreshAtMs) / 2) + 1;
    expect((await w.a.getAccessToken(w.appid, w.ctx())).source).toBe('wechat');
  });

  it('reports fresh and fetches nothing while the token is outside the window', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('fresh');
    expect(w.wechat.tokenCalls).toHaveLength(1);
  });

  it('refreshes a token inside the window (refreshed), writing the next generation', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('refreshed');
    expect(await w.record()).toMatchObject({ generation: 2, writer: 'b' });
    expect(w.telemetry.of('upstream.fetch').map((e) => e.reason)).toEqual(['missing', 'schedule']);
  });

  it('fetches a missing token or ticket (refreshed)', async () => {
    const w = world();
    expect(await w.a.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('refreshed');
    expect(await w.a.refreshIfDue(w.appid, 'wx_card_ticket', w.ctx())).toBe('refreshed');
    expect((await w.record('wx_card_ticket')).value).toBe('wx_card-ticket-1');
  });

  it('reports in_progress when another instance holds the lock, without waiting or fetching', async () => {
    const w = world();
    w.wechat.holdTokens();
    void w.a.getAccessToken(w.appid, w.ctx());
    await until(() => w.wechat.tokenCalls.length === 1, 'the holder to fetch');
    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('in_progress');
    expect(w.wechat.tokenCalls).toHaveLength(1);
    expect(w.time.sleeps).toHaveLength(0);
  });

  it('reports served_stale when the refresh fails while the old token is valid', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.wechat.tokenResponder = upstreamDown;
    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('served_stale');
    expect((await w.record()).generation).toBe(1);
  });

  it('reports cache_unavailable when the cache cannot be read', async () => {
    const w = world();
    w.storeOf('a').down = true;
    await expect(w.a.refreshIfDue(w.appid, 'access_token', w.ctx())).rejects.toMatchObject({
      code: 'cache_unavailable',
    });
    expect(w.wechat.tokenCalls).toHaveLength(0);
  });

  it('does not fetch, and reports fresh, when a peer refreshed between its read and its lock', async () => {
    const w = world();
    await w.a.getAccessToken(w.appid, w.ctx());
    w.time.t = (await w.record()).refreshAtMs;
    w.storeOf('b').beforeAdd = async () => {
      await w.a.getAccessToken(w.appid, w.ctx());
    };
    expect(await w.b.refreshIfDue(w.appid, 'access_token', w.ctx())).toBe('fresh');
    expect(w.wechat.tokenCalls).toHaveLength(2);
    expect((await w.record()).writer).toBe('a');
  });
});

describe('cache reachability (for /healthz)', () => {
  it('says whether the cache answers', async () => {
    const w = world();
    expect(await w.a.cacheReachable()).toBe(true);
    w.storeOf('a').down = true;
    expect(await w.a.cacheReachable()).toBe(false);
  });
});

describe('unknown appids and the WeChat quota day', () => {
  it('answers unknown_appid before taking any lock or calling WeChat', async () => {
    const w = world();
    await expect(w.a.getAccessToken(TEST_APPID_UNCONFIGURED, w.ctx())).rejects.toMatchObject({
      code: 'unknown_appid',
    });
    expect(w.storeOf('a').adds).toHaveLength(0); // no lock taken
    expect(w.storeOf('a').sets).toHaveLength(0);
    expect(w.wechat.tokenCalls).toHaveLength(0);
  });

  it('counts the quota day in China time: it changes at 16:00 UTC', () => {
    expect(quotaDay(CHINA_MIDNIGHT - 1)).toBe('20240115');
    expect(quotaDay(CHINA_MIDNIGHT)).toBe('20240116');
    expect(secondsToQuotaDayEnd(CHINA_MIDNIGHT - 90 * SECOND)).toBe(90);
    expect(secondsToQuotaDayEnd(CHINA_MIDNIGHT - 1)).toBe(1);
    expect(secondsToQuotaDayEnd(T0)).toBe(Math.ceil((CHINA_MIDNIGHT - T0) / SECOND));
  });
});
