/**
 * The quota breaker: opened by 45009 until the quota day ends, re-probed by one caller in the fleet
 * per probe interval, closed for everyone by a successful probe or by clear_quota. Two guards over
 * one store are two Lambda instances over one Memcached.
 */
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import { MemoryStore } from '../../../lib/store/memory.ts';
import type { UpstreamName } from '../../../lib/token/record.ts';
import { UpstreamGuard } from '../../../lib/token/upstream-guard.ts';
import { errorForErrcode } from '../../../lib/wechat/errcodes.ts';
import { FakeTime, InstrumentedStore, RecordingTelemetry } from '../../fakes/service-fakes.ts';
import { TEST_APPID } from '../../support/secrets.ts';

const PROBE_SECONDS = 600;
/** The probe marker lives one second longer than the interval: Memcached expires on whole-second ticks. */
const PROBE_INTERVAL_MS = (PROBE_SECONDS + 1) * 1000;
const SECOND = 1000;
// 10:00 China time: the quota day has 14 hours left.
const START = Date.UTC(2025, 0, 15, 2, 0, 0);
const TARGET = { kind: 'jsapi_ticket' as const, appid: TEST_APPID };

function fleet(instances = 2) {
  const time = new FakeTime(START);
  const shared = new MemoryStore(time.clock);
  const telemetry = new RecordingTelemetry();
  const stores = Array.from({ length: instances }, () => new InstrumentedStore(shared));
  const guards = stores.map(
    (store) =>
      new UpstreamGuard({
        store,
        clock: time.clock,
        telemetry,
        settings: {
          cacheKeyPrefix: 'wts',
          failureMemorySeconds: 30,
          passiveRefreshDailyBudget: 100,
          quotaBreakerProbeSeconds: PROBE_SECONDS,
        },
      }),
  );
  /** WeChat as the test sets it: exhausted or not; every call counted. */
  const wechat = { exhausted: true, calls: 0 };
  const call = (guard: UpstreamGuard, upstream: UpstreamName = 'ticket_jsapi') =>
    guard
      .call(upstream, TARGET, 'missing', async () => {
        wechat.calls++;
        if (wechat.exhausted)
          throw errorForErrcode('ticket', TEST_APPID, 45009, 'reach max api daily quota limit');
        return 'ticket';
      })
      .then(
        (value) => value,
        (err: ServiceError) => err.code,
      );
  return { time, stores, guards, telemetry, wechat, call };
}

describe('the quota breaker', () => {
  it('opens on 45009: nobody in the fleet calls WeChat again within the probe interval', async () => {
    const f = fleet();
    expect(await f.call(f.guards[0]!)).toBe('wechat_quota_exhausted');
    expect(f.wechat.calls).toBe(1);
    for (let i = 0; i < 20; i++) {
      expect(await f.call(f.guards[i % 2]!)).toBe('wechat_quota_exhausted');
      f.time.advance(((PROBE_SECONDS - 1) * SECOND) / 20);
    }
    expect(f.wechat.calls).toBe(1);
  });

  it('lets exactly one caller of the fleet probe per interval, and stays open while WeChat still answers 45009', async () => {
    const f = fleet(3);
    await f.call(f.guards[0]!);
    for (let interval = 1; interval <= 3; interval++) {
      f.time.advance(PROBE_INTERVAL_MS);
      const answers = await Promise.all(f.guards.flatMap((g) => [f.call(g), f.call(g)]));
      expect(answers.every((a) => a === 'wechat_quota_exhausted')).toBe(true);
      expect(f.wechat.calls).toBe(1 + interval);
    }
    expect(f.telemetry.of('quota.probe')).toHaveLength(3);
    expect(f.telemetry.of('quota.breaker_closed')).toEqual([]);
  });

  it('closes for the whole fleet within one interval once the quota was reset at WeChat (the console)', async () => {
    const f = fleet();
    await f.call(f.guards[0]!);
    f.wechat.exhausted = false; // an operator reset the quota in the WeChat console
    f.time.advance(PROBE_INTERVAL_MS - 1);
    expect(await f.call(f.guards[1]!)).toBe('wechat_quota_exhausted');
    f.time.advance(1);
    expect(await f.call(f.guards[1]!)).toBe('ticket'); // the probe
    expect(await f.call(f.guards[0]!)).toBe('ticket'); // closed for the other instance too
    expect(f.wechat.calls).toBe(3);
    expect(f.telemetry.of('quota.breaker_closed')).toEqual([
      { event: 'quota.breaker_closed', breaker: 'ticket_jsapi', appid: TEST_APPID, by: 'probe' },
    ]);
  });

  it('without any probe, still closes when the quota day ends (midnight China time)', async () => {
    const f = fleet();
    await f.call(f.guards[0]!);
    f.wechat.exhausted = false;
    f.time.advance(14 * 3600 * SECOND);
    // The breaker expired with the day; no probe was needed.
    const probesBefore = f.telemetry.of('quota.probe').length;
    expect(await f.call(f.guards[0]!)).toBe('ticket');
    expect(f.telemetry.of('quota.probe')).toHaveLength(probesBefore);
  });

  it('clear_quota closes every open breaker of the app at once, fleet-wide, and says which', async () => {
    const f = fleet();
    await f.call(f.guards[0]!, 'ticket_jsapi');
    await f.call(f.guards[0]!, 'token');
    f.wechat.exhausted = false;
    expect(await f.guards[1]!.closeQuotaBreakers(TEST_APPID)).toEqual(['token', 'ticket_jsapi']);
    // Instance 0 opened the breakers and keeps its own copy; the cache, asked first, says closed.
    expect(await f.call(f.guards[0]!, 'ticket_jsapi')).toBe('ticket');
    expect(await f.call(f.guards[0]!, 'token')).toBe('ticket');
    expect(await f.guards[1]!.closeQuotaBreakers(TEST_APPID)).toEqual([]);
  });

  it('never probes through a remembered credentials failure', async () => {
    const f = fleet();
    const rejected = (g: UpstreamGuard) =>
      g.call('token', { kind: 'access_token', appid: TEST_APPID }, 'missing', async () => {
        f.wechat.calls++;
        throw errorForErrcode('token', TEST_APPID, 40001, 'invalid credential');
      });
    await rejected(f.guards[0]!).catch(() => {});
    f.time.advance(29 * SECOND);
    const err = await rejected(f.guards[1]!).catch((e: ServiceError) => e);
    expect((err as ServiceError).code).toBe('wechat_credentials_rejected');
    expect(f.wechat.calls).toBe(1);
    expect(f.telemetry.of('quota.probe')).toEqual([]);
  });

  it('while the cache is down, keeps its own breaker and probes at most once per interval per instance', async () => {
    const f = fleet(1);
    const guard = f.guards[0]!;
    await f.call(guard);
    f.stores[0]!.down = true;
    expect(await f.call(guard)).toBe('wechat_quota_exhausted');
    expect(f.wechat.calls).toBe(1);
    f.time.advance(PROBE_INTERVAL_MS);
    f.wechat.exhausted = false;
    expect(await f.call(guard)).toBe('ticket');
    expect(await f.call(guard)).toBe('ticket');
    expect(f.wechat.calls).toBe(3);
  });

  it('a probe that fails otherwise (WeChat busy) leaves the breaker open until the next interval', async () => {
    const f = fleet();
    await f.call(f.guards[0]!);
    f.time.advance(PROBE_INTERVAL_MS);
    const busy = await f.guards[0]!.call('ticket_jsapi', TARGET, 'missing', async () => {
      throw new ServiceError('wechat_unavailable', 'WeChat is busy');
    }).catch((e: ServiceError) => e.code);
    expect(busy).toBe('wechat_unavailable');
    f.wechat.exhausted = false;
    expect(await f.call(f.guards[1]!)).toBe('wechat_quota_exhausted');
    f.time.advance(PROBE_INTERVAL_MS);
    expect(await f.call(f.guards[1]!)).toBe('ticket');
  });
});
