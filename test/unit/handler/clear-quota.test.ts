/**
 * The clear_quota operator action, on direct invoke only: WeChat's clear_quota/v2 with the app's
 * AppSecret, then every quota breaker of the app closes at once; and the breaker's own probe.
 */
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import { errorForErrcode } from '../../../lib/wechat/errcodes.ts';
import { TEST_APPID, TEST_SECRET } from '../../support/secrets.ts';
import { bearer, type ProxyAnswer, parse, v1, v2, world } from './harness.ts';

type Answer = {
  ticket?: string;
  appid?: string;
  cleared?: boolean;
  breakers_closed?: string[];
  resets_per_month?: number;
  note?: string;
  error?: { code: string; message: string; errcode?: number };
};

const GET_TICKET = { action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' };

/** A world whose ticket quota is used up at WeChat; the breaker is open after the first request. */
async function exhaustedTickets(env: Record<string, string> = {}) {
  const w = world(env);
  const wechat = { exhausted: true };
  const original = w.wechat.ticketResponder;
  w.wechat.ticketResponder = (call, n) =>
    wechat.exhausted
      ? errorForErrcode('ticket', TEST_APPID, 45009, 'reach max api daily quota limit')
      : original(call, n);
  const instance = w.instance(env);
  const first = await instance.invoke<Answer>(GET_TICKET);
  expect(first.error?.code).toBe('wechat_quota_exhausted');
  return { w, wechat, instance };
}

describe('clear_quota (direct invoke)', () => {
  it('resets the quota at WeChat with the app’s AppSecret and closes the breaker at once', async () => {
    const { w, wechat, instance } = await exhaustedTickets();
    expect((await instance.invoke<Answer>(GET_TICKET)).error?.code).toBe('wechat_quota_exhausted');
    expect(w.wechat.ticketCalls).toHaveLength(1); // the breaker held the second request

    wechat.exhausted = false;
    const answer = await instance.invoke<Answer>({ action: 'clear_quota', appid: TEST_APPID });
    expect(answer).toMatchObject({
      appid: TEST_APPID,
      cleared: true,
      breakers_closed: ['ticket_jsapi'],
      resets_per_month: 10,
    });
    expect(answer.note).toContain('48006');
    expect(w.wechat.clearQuotaCalls.map((c) => c.appid)).toEqual([TEST_APPID]);
    expect(w.wechat.clearQuotaCalls[0]?.secret === TEST_SECRET).toBe(true);
    expect(JSON.stringify(answer).includes(TEST_SECRET)).toBe(false);

    // No probe interval to wait for: the next request goes to WeChat.
    expect((await instance.invoke<Answer>(GET_TICKET)).ticket).toBeDefined();
    expect(w.events('quota.cleared')).toHaveLength(1);
    expect(w.events('quota.breaker_closed')[0]).toMatchObject({ breaker: 'ticket_jsapi', by: 'clear_quota' });
    expect(w.events('invocation').at(-2)).toMatchObject({ operation: 'clear_quota', code: 'ok' });
  });

  it('closes the breaker for another instance too', async () => {
    const { w, wechat } = await exhaustedTickets();
    const other = w.instance();
    wechat.exhausted = false;
    await other.invoke<Answer>({ action: 'clear_quota', appid: TEST_APPID });
    expect((await w.instance().invoke<Answer>(GET_TICKET)).ticket).toBeDefined();
  });

  it('says when the month’s 10 resets are used up (48006) and leaves the breaker open', async () => {
    const { w, instance } = await exhaustedTickets();
    w.wechat.clearQuotaResponder = () =>
      errorForErrcode(
        'clear_quota',
        TEST_APPID,
        48006,
        'forbid to clear quota because of reaching the limit',
      );
    const answer = await instance.invoke<Answer>({ action: 'clear_quota', appid: TEST_APPID });
    expect(answer.error).toMatchObject({ code: 'wechat_rejected', errcode: 48006 });
    expect(answer.error?.message).toContain('10 quota resets');
    expect((await instance.invoke<Answer>(GET_TICKET)).error?.code).toBe('wechat_quota_exhausted');
    expect(w.wechat.ticketCalls).toHaveLength(1);
  });

  it('answers a timed-out reset as retryable without repeating it (it may have used a reset)', async () => {
    const { w, instance } = await exhaustedTickets();
    w.wechat.clearQuotaResponder = () =>
      new ServiceError('wechat_timeout', 'WeChat clear_quota did not answer in time; retry');
    const answer = await instance.invoke<Answer>({ action: 'clear_quota', appid: TEST_APPID });
    expect(answer.error?.code).toBe('wechat_timeout');
    expect(w.wechat.clearQuotaCalls).toHaveLength(1);
  });

  it('validates its input: appid required, configured', async () => {
    const w = world();
    const instance = w.instance();
    expect((await instance.invoke<Answer>({ action: 'clear_quota' })).error?.code).toBe('invalid_request');
    const unknown = await instance.invoke<Answer>({ action: 'clear_quota', appid: 'wx1111111111111111' });
    expect(unknown.error?.code).toBe('unknown_appid');
    expect(w.wechat.clearQuotaCalls).toEqual([]);
    const bad = await instance.invoke<Answer>({ action: 'clear_everything', appid: TEST_APPID });
    expect(bad.error?.message).toContain('clear_quota');
  });

  it('is not reachable over HTTP, with or without a key', async () => {
    const w = world();
    const instance = w.instance();
    for (const event of [
      v2('POST', '/clear_quota', { headers: bearer(), body: JSON.stringify({ appid: TEST_APPID }) }),
      v1('POST', '/clear_quota', { headers: bearer(), body: JSON.stringify({ appid: TEST_APPID }) }),
      v2('POST', '/token/refresh', {
        headers: bearer(),
        body: JSON.stringify({ action: 'clear_quota', appid: TEST_APPID, invalid_token: 'x' }),
      }),
      v2('GET', '/token', { headers: bearer(), query: { action: 'clear_quota', appid: TEST_APPID } }),
    ]) {
      const result = await instance.invoke<ProxyAnswer>(event);
      expect([200, 404]).toContain(result.statusCode);
      if (result.statusCode === 404) expect(parse(result)?.error?.code).toBe('route_not_found');
    }
    expect(w.wechat.clearQuotaCalls).toEqual([]);
  });
});

describe('the quota breaker’s probe, through the handler', () => {
  it('closes within one probe interval once the quota was reset in the WeChat console, without a redeploy', async () => {
    const { w, wechat, instance } = await exhaustedTickets({ QUOTA_BREAKER_PROBE_SECONDS: '600' });
    wechat.exhausted = false; // the console reset
    // The probe marker lives the interval and one second more (Memcached's whole-second expiry).
    w.time.advance(600_000);
    expect((await instance.invoke<Answer>(GET_TICKET)).error?.code).toBe('wechat_quota_exhausted');
    expect(w.wechat.ticketCalls).toHaveLength(1);
    w.time.advance(1000);
    expect((await instance.invoke<Answer>(GET_TICKET)).ticket).toBeDefined();
    expect(w.events('quota.probe')).toHaveLength(1);
  });
});
