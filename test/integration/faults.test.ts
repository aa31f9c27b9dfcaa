/**
 * Fault injection: a memcached of this file's own, really killed and really frozen; WeChat busy,
 * failing, slow and refusing; the secret rotated. Instances are separate processes running
 * dist/index.js, each exiting loudly on an unhandled rejection.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type MemcachedProcess, startMemcached } from '../../local/memcached-server.ts';
import {
  CLASSIC_FIRST,
  credentialsSecret,
  SECRET_ID,
  startWorld,
  uniquePrefix,
  type World,
} from '../support/fixtures.ts';
import { instancePool } from '../support/instances.ts';
import { TEST_APPID, TEST_APPID_2, TEST_SECRET_ROTATED } from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };
type ErrorBody = { error: { code: string; message: string; retryable: boolean } };
type Body = Partial<TokenBody> & Partial<ErrorBody>;

let world: World;
let memcached: MemcachedProcess;
const pool = instancePool();
const spawn = pool.spawn;
const unique = uniquePrefix;
beforeAll(async () => {
  world = await startWorld();
  memcached = await startMemcached();
});
afterEach(async () => {
  await pool.closeAll();
  world.sim.clearFaults();
  world.sim.resetCounters();
});
afterAll(async () => {
  await memcached.stop();
  await world.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function env(extra: Record<string, string> = {}) {
  return world.env({ MEMCACHED_SERVERS: memcached.address, CACHE_KEY_PREFIX: unique('f'), ...extra });
}

describe('memcached killed mid-run', () => {
  it('warm instances keep serving, cold ones get a valid token or a clean 503, and the cache is used again after a restart', async () => {
    // A short memory bound, so instances really go to the cache during the outage and after it.
    const e = env({ MEMORY_CACHE_SECONDS: '1' });
    const warm = await spawn(2, e);
    const first = await warm[0]!.invoke<TokenBody>({ appid: TEST_APPID });
    await warm[1]!.invoke<TokenBody>({ appid: TEST_APPID });
    world.sim.resetCounters();

    await memcached.kill();
    await sleep(1100);
    const during = await Promise.all(
      warm.flatMap((w) => Array.from({ length: 50 }, () => w.invoke<Body>({ appid: TEST_APPID }))),
    );
    expect(during.every((b) => b.access_token === first.access_token)).toBe(true);
    expect(world.sim.tokenStatus(first.access_token)).toBe('valid');

    const [cold] = await spawn(1, e);
    const coldBodies = await Promise.all(
      Array.from({ length: 20 }, () => cold!.invoke<Body>({ appid: TEST_APPID })),
    );
    for (const body of coldBodies) {
      if (body.access_token) expect(world.sim.tokenStatus(body.access_token)).toBe('valid');
      else expect(body.error?.code).toBe('cache_unavailable');
    }
    // The cold instance fetched a stable token (which kills nothing), once for its 20 requests.
    expect(world.sim.calls.token).toBe(0);
    expect(world.sim.calls.stableToken).toBeLessThanOrEqual(1);

    await memcached.restart();
    await sleep(1100); // the adapter's fail-fast window after the last failure
    // A warm instance writes its token back to the empty cache...
    await warm[0]!.invoke<TokenBody>({ appid: TEST_APPID });
    world.sim.resetCounters();
    // ...and a new instance is served from it, without calling WeChat.
    const [later] = await spawn(1, e);
    const after = await later!.invoke<TokenBody>({ appid: TEST_APPID });
    expect(after.access_token).toBe(first.access_token);
    expect(world.sim.calls.total).toBe(0);
    expect(later!.logs().find((l) => l.event === 'invocation')?.source).toBe('cache');
  });
});

describe('memcached frozen (SIGSTOP) for 6 s under load', () => {
  it('times cache calls out inside the invocation, keeps warm instances serving, makes at most 1 classic fetch, and uses the cache after', async () => {
    const e = env({ MEMCACHED_TIMEOUT_MS: '200' });
    const procs = await spawn(2, e);
    const first = await procs[0]!.invoke<TokenBody>({ appid: TEST_APPID });
    await procs[1]!.invoke<TokenBody>({ appid: TEST_APPID });
    world.sim.resetCounters();
    memcached.pause();
    const frozenUntil = Date.now() + 6000;
    const slowest: number[] = [];
    const results: Body[] = [];
    // A cold instance during the freeze must go to the (frozen) cache: its calls time out quickly.
    const [coldDuringFreeze] = await spawn(1, e);
    const coldLatencies: number[] = [];
    const coldBodies: Body[] = [];
    try {
      await Promise.all([
        (async () => {
          for (let i = 0; i < 10; i++) {
            const started = Date.now();
            coldBodies.push(await coldDuringFreeze!.invoke<Body>({ appid: TEST_APPID }, 3000));
            coldLatencies.push(Date.now() - started);
            await sleep(300);
          }
        })(),
        ...procs.map(async (p) => {
          while (Date.now() < frozenUntil) {
            const started = Date.now();
            results.push(await p.invoke<Body>({ appid: TEST_APPID }, 3000));
            slowest.push(Date.now() - started);
            await sleep(20);
          }
        }),
      ]);
    } finally {
      memcached.resume();
    }
    expect(results.length).toBeGreaterThan(100);
    expect(results.every((b) => b.access_token === first.access_token)).toBe(true);
    console.log(
      `frozen memcached: warm ${results.length} requests, slowest ${Math.max(...slowest)} ms; cold ${coldBodies.length} requests, ` +
        `latencies ${coldLatencies.join('/')} ms; classic fetches ${world.sim.calls.token}, stable ${world.sim.calls.stableToken}`,
    );
    for (const body of coldBodies) {
      if (body.access_token) expect(world.sim.tokenStatus(body.access_token)).toBe('valid');
      // Or a clean, retryable 503: the cache did not answer, or no time was left for WeChat after it.
      else expect(['cache_unavailable', 'wechat_timeout']).toContain(body.error?.code);
    }
    // The first call finds Memcached unreachable after 200 ms and a 1-s retry on a fresh connection;
    // later calls fail fast or probe once (200 ms): each answer comes inside its 3-s invocation.
    expect(Math.max(...coldLatencies)).toBeLessThan(3000);
    expect(Math.max(...slowest)).toBeLessThan(1000);
    expect(world.sim.calls.token).toBeLessThanOrEqual(1);

    // A cold instance after the thaw reads the cache again.
    await sleep(1100);
    world.sim.resetCounters();
    const [cold] = await spawn(1, e);
    expect((await cold!.invoke<TokenBody>({ appid: TEST_APPID })).access_token).toBe(first.access_token);
    expect(world.sim.calls.total).toBe(0);
  });
});

// These exercise the classic endpoint's faults: a classic app's first fetch is classic here (CLASSIC_FIRST).
describe('WeChat faults', () => {
  it('retries -1 (system busy): twice busy then success is 3 calls and a token', async () => {
    const [p] = await spawn(1, env(CLASSIC_FIRST));
    world.sim.inject({ endpoint: 'token', errcode: -1, times: 2 });
    const body = await p!.invoke<TokenBody>({ appid: TEST_APPID });
    expect(world.sim.tokenStatus(body.access_token!)).toBe('valid');
    expect(world.sim.calls.token).toBe(3);
  });

  it.each([
    ['an HTTP 502', { httpStatus: 502 }],
    ['a connection reset', { reset: true }],
  ])(
    'retries %s — on the stable endpoint, since the classic call may have issued a token',
    async (_case, fault) => {
      const [p] = await spawn(1, env(CLASSIC_FIRST));
      const cached = await p!.invoke<TokenBody>({ appid: TEST_APPID_2 });
      world.sim.resetCounters();
      world.sim.inject({ endpoint: 'token', ...fault });
      const body = await p!.invoke<TokenBody>({ appid: TEST_APPID });
      expect(world.sim.tokenStatus(body.access_token!)).toBe('valid');
      expect(world.sim.tokenInfo(body.access_token!)?.kind).toBe('stable');
      expect(world.sim.calls.token).toBe(1);
      expect(world.sim.calls.stableToken).toBe(1);
      // A stable answer never invalidates a classic token.
      expect(world.sim.tokenStatus(cached.access_token)).toBe('valid');
    },
  );

  it('retries a stable-endpoint 502 on the stable endpoint itself', async () => {
    const [p] = await spawn(1, env());
    world.sim.inject({ endpoint: 'stable_token', httpStatus: 502 });
    const body = await p!.invoke<TokenBody>({
      appid: (await import('../support/secrets.ts')).TEST_APPID_STABLE,
    });
    expect(world.sim.tokenStatus(body.access_token!)).toBe('valid');
    expect(world.sim.calls.stableToken).toBe(2);
    expect(world.sim.calls.token).toBe(0);
  });

  it('does not retry 40164, names the IP, and 21 requests on two instances make at most 6 calls', async () => {
    const procs = await spawn(2, env());
    world.sim.inject({ endpoint: 'any', errcode: 40164, times: 100 });
    const one = await procs[0]!.invoke<ErrorBody>({ appid: TEST_APPID });
    expect(one.error.code).toBe('wechat_ip_not_whitelisted');
    expect(one.error.retryable).toBe(false);
    expect(one.error.message).toContain('203.0.113.7');
    expect(world.sim.calls.total).toBeLessThanOrEqual(2);
    const burst = await Promise.all(
      Array.from({ length: 21 }, (_, i) => procs[i % 2]!.invoke<ErrorBody>({ appid: TEST_APPID_2 })),
    );
    for (const body of burst) expect(body.error.code).toBe('wechat_ip_not_whitelisted');
    expect(world.sim.calls.total).toBeLessThanOrEqual(2 + 6);
    console.log(`40164: 21 requests on 2 instances → ${world.sim.callsFor(TEST_APPID_2).total} calls`);
    expect(world.sim.callsFor(TEST_APPID_2).total).toBeLessThanOrEqual(6);
  });

  it('45009: 21 requests on two instances make at most 3 upstream calls, classic and stable together', async () => {
    const procs = await spawn(2, env());
    world.sim.inject({ endpoint: 'any', errcode: 45009, times: 100 });
    const burst = await Promise.all(
      Array.from({ length: 21 }, (_, i) => procs[i % 2]!.invoke<ErrorBody>({ appid: TEST_APPID })),
    );
    for (const body of burst) {
      expect(body.error.code).toBe('wechat_quota_exhausted');
      expect(body.error.message).toContain('clear_quota/v2');
    }
    console.log(
      `45009: 21 requests → ${world.sim.calls.token} classic + ${world.sim.calls.stableToken} stable calls`,
    );
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBeLessThanOrEqual(3);
  });

  it('answers a retryable wechat_timeout at least 20 ms before the deadline when WeChat is slower than the time left', async () => {
    const [p] = await spawn(1, env(CLASSIC_FIRST));
    // A warm instance (secret read, SDK and connections ready): the budget is WeChat's alone.
    await p!.invoke<TokenBody>({ appid: TEST_APPID });
    const margins: number[] = [];
    for (let i = 0; i < 8; i++) {
      world.sim.resetCounters();
      // Both endpoints are slow: a classic call that times out turns to the stable endpoint.
      world.sim.inject({ endpoint: 'token', latencyMs: 3000 });
      world.sim.inject({ endpoint: 'stable_token', latencyMs: 3000 });
      // Less than WeChat's 3-s answer, with room for the cache calls before it on a busy machine.
      const remainingMs = 1500 + i * 100;
      const started = Date.now();
      const body = await p!.invoke<ErrorBody>({ appid: TEST_APPID_2 }, remainingMs);
      margins.push(remainingMs - (Date.now() - started));
      expect(body.error.code).toBe('wechat_timeout');
      expect(body.error.retryable).toBe(true);
      expect(world.sim.calls.token).toBe(1);
      world.sim.clearFaults();
    }
    console.log(`deadline margins (ms): ${margins.join(', ')}`);
    expect(Math.min(...margins)).toBeGreaterThanOrEqual(20);
  });
});

describe('secret rotation', () => {
  it('recovers without a restart when the secret is rotated in Secrets Manager and at WeChat', async () => {
    const [p] = await spawn(1, env({ PASSIVE_REFRESH_MIN_AGE_SECONDS: '0' }));
    const before = await p!.invoke<TokenBody>({ appid: TEST_APPID });
    world.sim.setSecret(TEST_APPID, TEST_SECRET_ROTATED);
    world.secrets.putSecret(SECRET_ID, credentialsSecret({ secret: TEST_SECRET_ROTATED }));
    world.secrets.resetCounters();
    world.sim.resetCounters();
    const after = await p!.invoke<TokenBody>({
      action: 'refresh_token',
      appid: TEST_APPID,
      invalid_token: before.access_token,
    });
    expect(after.access_token).toBeDefined();
    expect(after.access_token).not.toBe(before.access_token);
    expect(world.sim.tokenStatus(after.access_token)).toBe('valid');
    // One refused call with the old secret, one re-read of the secret, one call with the new one.
    expect(world.sim.calls.token).toBe(2);
    expect(world.secrets.calls.getSecretValue).toBe(1);
    world.sim.setSecret(TEST_APPID, (await import('../support/secrets.ts')).TEST_SECRET);
    world.secrets.putSecret(SECRET_ID, credentialsSecret());
  });
});
