/**
 * The schedule over many apps and the status action, through the handler with a scripted WeChat, an
 * in-process store and a clock the test moves.
 */
import { describe, expect, it } from 'vitest';
import { errorForErrcode } from '../../../lib/wechat/errcodes.ts';
import { FLEET_APPS } from '../../support/secrets.ts';
import { world } from './harness.ts';

const SCHEDULED = { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} };
const [X, Y, Z] = FLEET_APPS as [(typeof FLEET_APPS)[0], (typeof FLEET_APPS)[0], (typeof FLEET_APPS)[0]];
const MINUTE = 60_000;

interface Summary {
  concurrency: number;
  refreshed: Array<{ appid: string; kind: string }>;
  failed: Array<{ appid: string; kind: string; code: string }>;
  fresh: number;
  skipped: number;
  by_code: Record<string, string[]>;
}

/** Three apps without tickets: X, Y and Z, in that order in the secret. */
function threeApps(env: Record<string, string> = {}) {
  const w = world();
  w.secret.text = JSON.stringify({ apps: [X, Y, Z].map(({ appid, secret }) => ({ appid, secret })) });
  const instance = w.instance({
    SCHEDULE_CONCURRENCY: '1',
    QUOTA_CHECK_INTERVAL_SECONDS: '0',
    MISSING_RECORD_POLICY: 'classic',
    ...env,
  });
  return { w, instance };
}

describe('the schedule over many apps', () => {
  it('refreshes the closest to expiry first: a missing record, then the oldest token', async () => {
    const { w, instance } = threeApps();
    await instance.invoke({ appid: Y.appid });
    w.time.advance(10 * MINUTE);
    await instance.invoke({ appid: X.appid });
    // Both inside their refresh window now; Z was never fetched.
    w.time.advance(6400_000); // Y has about 200 s left, X about 800 s: both inside the 900-s window

    const before = w.wechat.tokenCalls.length;
    const summary = await instance.invoke<Summary>(SCHEDULED);
    expect(summary.concurrency).toBe(1);
    expect(w.wechat.tokenCalls.slice(before).map((c) => c.app.appid)).toEqual([Z.appid, Y.appid, X.appid]);
    expect(summary.by_code).toEqual({ refreshed: [Z.appid, Y.appid, X.appid] });
  });

  it('lists a failing app under its code, refreshes the others, and leaves fresh ones alone', async () => {
    const { w, instance } = threeApps({ SCHEDULE_CONCURRENCY: '16' });
    await instance.invoke({ appid: Z.appid });
    const original = w.wechat.tokenResponder;
    w.wechat.tokenResponder = (call, n) =>
      call.app.appid === X.appid
        ? errorForErrcode('token', X.appid, 40164, 'invalid ip 203.0.113.7, not in whitelist')
        : original(call, n);
    const summary = await instance.invoke<Summary>(SCHEDULED);
    expect(summary.concurrency).toBe(16);
    expect(summary.failed).toEqual([
      expect.objectContaining({ appid: X.appid, kind: 'access_token', code: 'wechat_ip_not_whitelisted' }),
    ]);
    expect(summary.by_code).toEqual({
      fresh: [Z.appid],
      refreshed: [Y.appid],
      wechat_ip_not_whitelisted: [X.appid],
    });
    expect(summary.fresh).toBe(1);
    expect(summary.skipped).toBe(0);
    // The invocation line carries the run's metrics.
    const line = w.events('invocation').at(-1)!;
    expect(line).toMatchObject({
      operation: 'schedule',
      code: 'partial',
      ScheduleFailed: 1,
      ScheduleRefreshed: 1,
    });
    expect(typeof line.ScheduleDuration).toBe('number');
  });
});

describe('status (direct invoke)', () => {
  it('shows each kind’s record and each upstream’s counts without a token or secret', async () => {
    const { w, instance } = threeApps();
    await instance.invoke({ appid: X.appid });
    w.time.advance(90_000);
    const body = await instance.invoke<{
      apps: Array<{
        appid: string;
        kinds: Record<
          string,
          { record: Record<string, unknown> | null; upstreams: Record<string, Record<string, unknown>> }
        >;
      }>;
    }>({ action: 'status' });
    expect(body.apps.map((a) => a.appid)).toEqual([X.appid, Y.appid, Z.appid]);
    const x = body.apps[0]!.kinds.access_token!;
    expect(x.record).toMatchObject({ age_seconds: 90, generation: 1, origin: 'classic' });
    expect(x.upstreams.token).toEqual({
      breaker: 'closed',
      remembered_failure: null,
      last_error: null,
      calls_today: 1,
    });
    expect(x.upstreams.stable_token).toMatchObject({ calls_today: 0 });
    expect(body.apps[1]!.kinds.access_token!.record).toBeNull();
    const text = JSON.stringify(body);
    for (const call of w.wechat.tokenCalls) expect(text.includes(call.app.secret)).toBe(false);
    expect(text).not.toMatch(/AT-\d/);
  });
});
