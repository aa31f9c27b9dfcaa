/**
 * One WeChat fetch per token lifetime across instances: separate OS processes (as Lambda instances
 * are) running dist/index.js against one real memcached and the WeChat simulator.
 */
import { describe, expect, it } from 'vitest';
import { CLASSIC_FIRST, uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import { TEST_APPID, TEST_APPID_2, TEST_APPID_STABLE } from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };
type ErrorBody = { error: { code: string } };

const files = worldPerFile();
const pool = files.pool;
const spawnMany = pool.spawn;
const unique = uniquePrefix;

describe('cold start across instances', () => {
  it('4 processes × 25 concurrent cold get_token on an empty cache make exactly 1 WeChat fetch', async () => {
    files.world.sim.resetCounters();
    const procs = await spawnMany(4, files.world.env({ CACHE_KEY_PREFIX: unique('cold') }));
    const bodies = await Promise.all(
      procs.flatMap((p) => Array.from({ length: 25 }, () => p.invoke<TokenBody>({ appid: TEST_APPID }))),
    );
    expect(bodies).toHaveLength(100);
    expect(files.world.sim.calls.token + files.world.sim.calls.stableToken).toBe(1);
    console.log(
      `cold start: 4 processes × 25 calls → ${files.world.sim.calls.token + files.world.sim.calls.stableToken} fetch`,
    );
    const tokens = new Set(bodies.map((b) => b.access_token));
    expect(tokens.size).toBe(1);
    for (const token of tokens) expect(files.world.sim.tokenStatus(token)).toBe('valid');
  });
});

describe('passive refresh', () => {
  it('200 concurrent reports of the current token make at most 1 fetch, and every reporter gets the new token', async () => {
    const env = files.world.env({ CACHE_KEY_PREFIX: unique('storm'), PASSIVE_REFRESH_MIN_AGE_SECONDS: '0' });
    const procs = await spawnMany(4, env);
    const current = await procs[0]!.invoke<TokenBody>({ appid: TEST_APPID });
    files.world.sim.resetCounters();
    const reports = await Promise.all(
      procs.flatMap((p) =>
        Array.from({ length: 50 }, () =>
          p.invoke<TokenBody>({
            action: 'refresh_token',
            appid: TEST_APPID,
            invalid_token: current.access_token,
          }),
        ),
      ),
    );
    expect(files.world.sim.calls.token).toBe(1);
    const returned = new Set(reports.map((r) => r.access_token));
    expect(returned.has(current.access_token)).toBe(false);
    expect(returned.size).toBe(1);
    for (const token of returned) expect(files.world.sim.tokenStatus(token)).toBe('valid');

    // Late reports of the replaced token, or of a token never issued, change nothing.
    files.world.sim.resetCounters();
    const [fresh] = [...returned];
    const late = await Promise.all([
      ...procs.map((p) =>
        p.invoke<TokenBody>({
          action: 'refresh_token',
          appid: TEST_APPID,
          invalid_token: current.access_token,
        }),
      ),
      ...procs.map((p) =>
        p.invoke<TokenBody>({ action: 'refresh_token', appid: TEST_APPID, invalid_token: 'made-up-token' }),
      ),
    ]);
    expect(files.world.sim.calls.token).toBe(0);
    for (const body of late) expect(body.access_token).toBe(fresh);
  });

  it('a token killed by a fetcher outside the service, reported by 60 callers, is replaced with exactly 1 fetch', async () => {
    // An outside fetcher kills classic tokens: the app holds a classic one from the start.
    const env = files.world.env({
      CACHE_KEY_PREFIX: unique('killed'),
      PASSIVE_REFRESH_MIN_AGE_SECONDS: '0',
      ...CLASSIC_FIRST,
    });
    const procs = await spawnMany(3, env);
    const ours = await procs[0]!.invoke<TokenBody>({ appid: TEST_APPID });
    // Two outside fetches: the token before last dies at once.
    files.world.sim.rotateExternally(TEST_APPID);
    files.world.sim.rotateExternally(TEST_APPID);
    const check = await fetch(
      `${files.world.sim.baseUrl}/cgi-bin/get_api_domain_ip?access_token=${ours.access_token}`,
    );
    expect(((await check.json()) as { errcode?: number }).errcode).toBe(40001);
    files.world.sim.resetCounters();
    const reports = await Promise.all(
      procs.flatMap((p) =>
        Array.from({ length: 20 }, () =>
          p.invoke<TokenBody>({
            action: 'refresh_token',
            appid: TEST_APPID,
            invalid_token: ours.access_token,
          }),
        ),
      ),
    );
    expect(files.world.sim.calls.token).toBe(1);
    for (const body of reports) expect(files.world.sim.tokenStatus(body.access_token)).toBe('valid');
  });

  it('refuses with 429 refresh_rejected once the daily budget is used up', async () => {
    const env = files.world.env({
      CACHE_KEY_PREFIX: unique('budget'),
      PASSIVE_REFRESH_MIN_AGE_SECONDS: '0',
      PASSIVE_REFRESH_DAILY_BUDGET: '1',
    });
    const [p] = await spawnMany(1, env);
    const first = await p!.invoke<TokenBody>({ appid: TEST_APPID });
    const second = await p!.invoke<TokenBody>({
      action: 'refresh_token',
      appid: TEST_APPID,
      invalid_token: first.access_token,
    });
    expect(second.access_token).not.toBe(first.access_token);
    files.world.sim.resetCounters();
    const refused = await p!.invoke<ErrorBody>({
      action: 'refresh_token',
      appid: TEST_APPID,
      invalid_token: second.access_token,
    });
    expect(refused.error.code).toBe('refresh_rejected');
    expect(files.world.sim.calls.token).toBe(0);
  });
});

describe('stable mode', () => {
  it('makes only stable calls, and force refreshes only from a passive refresh, 30 s apart', async () => {
    files.world.sim.resetCounters();
    const env = files.world.env({ CACHE_KEY_PREFIX: unique('stable'), PASSIVE_REFRESH_MIN_AGE_SECONDS: '0' });
    const procs = await spawnMany(2, env);
    const bodies = await Promise.all(
      procs.flatMap((p) =>
        Array.from({ length: 10 }, () => p.invoke<TokenBody>({ appid: TEST_APPID_STABLE })),
      ),
    );
    expect(new Set(bodies.map((b) => b.access_token)).size).toBe(1);
    expect(files.world.sim.calls.token).toBe(0);
    expect(files.world.sim.calls.stableToken).toBe(1);
    expect(files.world.sim.calls.stableTokenForce).toBe(0);
    const current = bodies[0]!.access_token;
    const refreshed = await procs[0]!.invoke<TokenBody>({
      action: 'refresh_token',
      appid: TEST_APPID_STABLE,
      invalid_token: current,
    });
    expect(refreshed.access_token).not.toBe(current);
    expect(files.world.sim.calls.stableTokenForce).toBe(1);
    const again = await procs[1]!.invoke<ErrorBody>({
      action: 'refresh_token',
      appid: TEST_APPID_STABLE,
      invalid_token: refreshed.access_token,
    });
    expect(again.error.code).toBe('refresh_rejected');
    expect(files.world.sim.calls.stableTokenForce).toBe(1);
    expect(files.world.sim.calls.token).toBe(0);
  });
});

describe('a crashed lock holder', () => {
  it('is taken over after its lease, and the app recovers', async () => {
    const env = files.world.env({
      CACHE_KEY_PREFIX: unique('crash'),
      // The shortest lease that covers a 550-ms upstream timeout with its retries (config bound).
      LOCK_LEASE_SECONDS: '5',
      UPSTREAM_TIMEOUT_MS: '550',
      ...CLASSIC_FIRST,
    });
    const [holder, survivor] = await spawnMany(2, env);
    files.world.sim.resetCounters();
    files.world.sim.inject({ endpoint: 'token', latencyMs: 5000 });
    const pending = holder!.invoke({ appid: TEST_APPID_2 }).catch(() => 'crashed');
    // Wait until the holder's request reached WeChat: it holds the lock now.
    for (let i = 0; i < 100 && files.world.sim.calls.token === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(files.world.sim.calls.token).toBe(1);
    process.kill(holder!.pid, 'SIGKILL');
    expect(await pending).toBe('crashed');
    const started = Date.now();
    const body = await survivor!.invoke<TokenBody>({ appid: TEST_APPID_2 }, 10_000);
    const waitedMs = Date.now() - started;
    expect(files.world.sim.tokenStatus(body.access_token)).toBe('valid');
    expect(files.world.sim.calls.token).toBe(2);
    // It waited for the lease (5 s from the holder's add), not for its whole deadline.
    expect(waitedMs).toBeLessThan(6000);
    // A WARN line travels on stderr, which is not ordered with the reply on stdout: wait for it.
    const isTakeover = (l: Record<string, unknown>) => l.event === 'lock.wait';
    for (let i = 0; i < 100 && !survivor!.logs().some(isTakeover); i++)
      await new Promise((r) => setTimeout(r, 20));
    const takeover = survivor!.logs().find(isTakeover);
    expect(takeover?.outcome).toBe('takeover');
    // The dead holder's request still reaches WeChat late and issues a token, as a real one could:
    // let it land here (on this test's own appid) rather than during a later test.
    for (
      let i = 0;
      i < 150 &&
      files.world.sim.tokensIssued(TEST_APPID_2).filter((t) => t.issuedAtMs >= started - 5000).length < 2;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
  });
});
