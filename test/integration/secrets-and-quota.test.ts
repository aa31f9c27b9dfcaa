/**
 * Production faults at the edges, with the real parts: child-process instances running
 * dist/index.js, the real AWS SDK against the local Secrets Manager endpoint, the WeChat simulator,
 * the run's memcached. Time is compressed through the configuration (SECRET_CACHE_SECONDS=1,
 * QUOTA_BREAKER_PROBE_SECONDS=2).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bearer, httpV2, startWorld, uniquePrefix, type World } from '../support/fixtures.ts';
import { instancePool } from '../support/instances.ts';
import {
  CLIENT_KEY,
  TEST_APPID,
  TEST_APPID_2,
  TEST_SECRET_2,
  TEST_SECRET_ROTATED,
} from '../support/secrets.ts';

type ErrorBody = { error: { code: string; message: string } };
type Answer = {
  access_token?: string;
  ticket?: string;
  cleared?: boolean;
  breakers_closed?: string[];
  statusCode?: number;
  body?: string;
} & Partial<ErrorBody>;

let world: World;
const pool = instancePool();
beforeAll(async () => {
  world = await startWorld();
});
afterEach(async () => {
  await pool.closeAll();
  world.secrets.failNext(0);
  world.sim.clearFaults();
  world.sim.resetCounters();
  world.sim.setSecret(TEST_APPID_2, TEST_SECRET_2);
});
afterAll(async () => {
  await world.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const httpToken = (appid: string) =>
  httpV2('GET', '/token', { query: { appid }, headers: bearer(CLIENT_KEY) });

describe('Secrets Manager failing after the secret cache aged out', () => {
  it('warm instances keep serving with the last good secret, one GetSecretValue per instance per 5 s', async () => {
    const env = world.env({ CACHE_KEY_PREFIX: uniquePrefix('smdown'), SECRET_CACHE_SECONDS: '1' });
    const instances = await pool.spawn(2, env);
    // Warm: each instance reads the secret (an HTTP request needs the client key).
    for (const instance of instances) {
      expect((await instance.invoke<Answer>(httpToken(TEST_APPID))).statusCode).toBe(200);
    }
    await sleep(1100); // the secret cache aged out
    world.secrets.resetCounters();
    world.secrets.failAll('internal');

    const outageMs = 10_000;
    const endAt = Date.now() + outageMs;
    const answers: Answer[] = [];
    await Promise.all(
      instances.map(async (instance) => {
        while (Date.now() < endAt) {
          answers.push(await instance.invoke<Answer>({ appid: TEST_APPID }));
          answers.push(await instance.invoke<Answer>(httpToken(TEST_APPID)));
          await sleep(100);
        }
      }),
    );
    const calls = world.secrets.calls.getSecretValue;
    console.log(
      `Secrets Manager down ${outageMs / 1000} s: ${answers.length} requests on 2 instances, ${calls} GetSecretValue calls`,
    );
    const failed = answers.filter(
      (a) => a.error !== undefined || (a.statusCode !== undefined && a.statusCode !== 200),
    );
    expect(failed).toEqual([]);
    // At most one call per instance per 5 s (the first one as the outage starts).
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(calls).toBeLessThanOrEqual(2 * (Math.ceil(outageMs / 5000) + 1));
    for (const instance of instances) {
      await expect.poll(() => instance.logs().some((l) => l.event === 'secrets.stale_served')).toBe(true);
    }

    // Secrets Manager is back: within the 5 s a failed read is remembered, reads succeed again.
    world.secrets.failNext(0);
    world.secrets.resetCounters();
    await sleep(5100);
    await instances[0]!.invoke<Answer>({ appid: TEST_APPID });
    expect(world.secrets.calls.getSecretValue).toBe(1);
  }, 40_000);
});

describe('WeChat rejecting the AppSecret', () => {
  it('50 invokes on 2 instances read the secret at most 3 times per instance, and ask WeChat once', async () => {
    world.sim.setSecret(TEST_APPID_2, TEST_SECRET_ROTATED); // rotated at WeChat, not in the secret
    const env = world.env({ CACHE_KEY_PREFIX: uniquePrefix('rejected') });
    const instances = await pool.spawn(2, env);
    world.secrets.resetCounters();
    world.sim.resetCounters();
    const answers: Answer[] = [];
    for (let i = 0; i < 25; i++) {
      answers.push(
        ...(await Promise.all(instances.map((instance) => instance.invoke<Answer>({ appid: TEST_APPID_2 })))),
      );
    }
    expect(answers).toHaveLength(50);
    expect(answers.every((a) => a.error?.code === 'wechat_credentials_rejected')).toBe(true);
    const reads = world.secrets.calls.getSecretValue;
    console.log(
      `WeChat rejecting the secret: 50 invokes → ${reads} GetSecretValue, ${world.sim.calls.token + world.sim.calls.stableToken} token calls`,
    );
    // Each instance: its first read, and one re-read after the rejection (SECRET_REREAD_SECONDS 30).
    expect(reads).toBeLessThanOrEqual(2 * 3);
    // One call, classic or (a missing record's first fetch) stable: the rejection is remembered.
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
  });
});

describe('the quota breaker', () => {
  it('closes within one probe interval after the quota was reset in the WeChat console, without a redeploy', async () => {
    const env = world.env({ CACHE_KEY_PREFIX: uniquePrefix('probe'), QUOTA_BREAKER_PROBE_SECONDS: '2' });
    const instances = await pool.spawn(2, env);
    await instances[0]!.invoke<Answer>({ appid: TEST_APPID });
    world.sim.exhaustQuota(TEST_APPID, 'ticket');
    world.sim.resetCounters();
    const getTicket = { action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' };

    // Open: every request fails at once; inside the first probe interval WeChat saw only the call
    // that opened the breaker.
    const openedAt = Date.now();
    let rounds = 0;
    while (Date.now() - openedAt < 1500) {
      const answers = await Promise.all(instances.map((p) => p.invoke<Answer>(getTicket)));
      for (const a of answers) expect(a.error?.code).toBe('wechat_quota_exhausted');
      rounds++;
      await sleep(100);
    }
    expect(rounds).toBeGreaterThan(0);
    if (Date.now() - openedAt < 2000) expect(world.sim.calls.ticket).toBe(1);

    world.sim.clearQuotaAsOperator(TEST_APPID);
    const clearedAt = Date.now();
    let ticket: string | undefined;
    while (!ticket && Date.now() - clearedAt < 6000) {
      const answers = await Promise.all(instances.map((p) => p.invoke<Answer>(getTicket)));
      ticket = answers.find((a) => a.ticket)?.ticket;
      if (!ticket) await sleep(100);
    }
    const closedAfterMs = Date.now() - clearedAt;
    console.log(
      `quota breaker: closed ${closedAfterMs} ms after the console reset; ${world.sim.calls.ticket} getticket calls in all`,
    );
    expect(ticket).toBeDefined();
    expect(closedAfterMs).toBeLessThan(2000 + 1000);
    // The opening call, then one probe per 2 s at most, fleet-wide; the last probe succeeded.
    expect(world.sim.calls.ticket).toBeLessThanOrEqual(1 + Math.ceil((Date.now() - openedAt) / 2000));
  }, 30_000);

  it('the clear_quota action resets the quota at WeChat and closes the breaker at once for every instance', async () => {
    const env = world.env({ CACHE_KEY_PREFIX: uniquePrefix('clear'), QUOTA_BREAKER_PROBE_SECONDS: '600' });
    const [operator, other] = await pool.spawn(2, env);
    world.sim.exhaustQuota(TEST_APPID, 'ticket');
    const getCard = { action: 'get_ticket', appid: TEST_APPID, type: 'wx_card' };
    expect((await other!.invoke<Answer>(getCard)).error?.code).toBe('wechat_quota_exhausted');
    expect((await other!.invoke<Answer>(getCard)).error?.code).toBe('wechat_quota_exhausted');
    const resetsBefore = world.sim.quotaResetsUsed(TEST_APPID);

    const answer = await operator!.invoke<Answer>({ action: 'clear_quota', appid: TEST_APPID });
    expect(answer.cleared).toBe(true);
    expect(answer.breakers_closed).toContain('ticket_wx_card');
    expect(world.sim.quotaResetsUsed(TEST_APPID)).toBe(resetsBefore + 1);
    // No probe interval (600 s) to wait for.
    expect((await other!.invoke<Answer>(getCard)).ticket).toBeDefined();
  });

  it('is not an HTTP route', async () => {
    const [instance] = await pool.spawn(1, world.env({ CACHE_KEY_PREFIX: uniquePrefix('nohttp') }));
    const result = await instance!.invoke<{ statusCode: number }>(
      httpV2('POST', '/clear_quota', {
        headers: bearer(CLIENT_KEY),
        body: JSON.stringify({ appid: TEST_APPID }),
      }),
    );
    expect(result.statusCode).toBe(404);
    expect(world.sim.calls.clearQuota).toBe(0);
  });
});
