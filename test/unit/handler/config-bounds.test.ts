/**
 * The configuration bounds as a deployment meets them: the first invocation of an instance answers
 * config_invalid naming the variable and the bound (direct invoke in full, HTTP generically), and a
 * setting that is valid but weakens the promise is logged once at cold start.
 */
import { describe, expect, it } from 'vitest';
import { TEST_APPID } from '../../support/secrets.ts';
import { type Env, type ProxyAnswer, parse, v2, world } from './harness.ts';

type ErrorAnswer = { error?: { code: string; message: string } };

async function coldStart(env: Env): Promise<ErrorAnswer> {
  return world(env).instance().invoke<ErrorAnswer>({ appid: TEST_APPID });
}

describe('configuration bounds at cold start', () => {
  it.each<[string, Env, string, string]>([
    [
      'a lock lease shorter than the worst upstream call',
      { UPSTREAM_TIMEOUT_MS: '3000', LOCK_LEASE_SECONDS: '14' },
      'LOCK_LEASE_SECONDS',
      'at least 15 s',
    ],
    [
      'a lock lease shorter than the longest call an invocation can make',
      { FUNCTION_TIMEOUT_SECONDS: '10', LOCK_LEASE_SECONDS: '10' },
      'LOCK_LEASE_SECONDS',
      'at least 12 s',
    ],
    [
      'a deadline margin near the function timeout',
      { FUNCTION_TIMEOUT_SECONDS: '10', DEADLINE_MARGIN_MS: '8000' },
      'DEADLINE_MARGIN_MS',
      'at most 7000 ms',
    ],
    ['an IPv6 Memcached address', { MEMCACHED_SERVERS: '[::1]:11211' }, 'MEMCACHED_SERVERS', 'IPv6'],
  ])(
    'answers config_invalid for %s, naming the variable and the bound',
    async (_case, env, variable, bound) => {
      const answer = await coldStart(env);
      expect(answer.error?.code).toBe('config_invalid');
      expect(answer.error?.message.startsWith(`${variable} `)).toBe(true);
      expect(answer.error?.message).toContain(bound);
    },
  );

  it('answers the same misconfiguration to an HTTP caller without its details', async () => {
    const w = world({ FUNCTION_TIMEOUT_SECONDS: '10', DEADLINE_MARGIN_MS: '8000' });
    const result = await w.instance().invoke<ProxyAnswer>(v2('GET', '/healthz'));
    expect(result.statusCode).toBe(500);
    expect(parse(result)?.error?.code).toBe('config_invalid');
    expect(result.body).not.toContain('DEADLINE_MARGIN_MS');
  });

  it('starts with the settings serverless.yml passes (timeout 10 s, derived lease)', async () => {
    const w = world({ FUNCTION_TIMEOUT_SECONDS: '10' });
    const answer = await w.instance().invoke<{ access_token?: string }>({ appid: TEST_APPID });
    expect(answer.access_token).toBe('AT-1');
    expect(w.events('config.warning')).toEqual([]);
  });
});

describe('PASSIVE_REFRESH_MIN_AGE_SECONDS below the 300-s overlap', () => {
  it('is allowed, and logs one warning at cold start with the promise it leaves', async () => {
    const w = world({ PASSIVE_REFRESH_MIN_AGE_SECONDS: '120', FUNCTION_TIMEOUT_SECONDS: '10' });
    const instance = w.instance();
    for (let i = 0; i < 3; i++) await instance.invoke({ appid: TEST_APPID });
    const warnings = w.events('config.warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      level: 'WARN',
      variable: 'PASSIVE_REFRESH_MIN_AGE_SECONDS',
      value: 120,
      // The min age less one lock lease (12 s): a refresh may be in flight for a lease.
      promiseSeconds: 108,
    });
    expect(String(warnings[0]?.detail)).toContain('108 s');
  });

  it('at 0 (as tests use) warns that a token older than a lease is promised nothing', async () => {
    const w = world({ PASSIVE_REFRESH_MIN_AGE_SECONDS: '0' });
    await w.instance().invoke({ appid: TEST_APPID });
    expect(w.events('config.warning')[0]?.promiseSeconds).toBe(0);
  });

  it('does not warn at 300 or above, or when passive refresh is off', async () => {
    for (const env of [
      { PASSIVE_REFRESH_MIN_AGE_SECONDS: '300' },
      { PASSIVE_REFRESH_MIN_AGE_SECONDS: '0', PASSIVE_REFRESH_DAILY_BUDGET: '0' },
    ]) {
      const w = world(env);
      await w.instance().invoke({ appid: TEST_APPID });
      expect(w.events('config.warning')).toEqual([]);
    }
  });
});
