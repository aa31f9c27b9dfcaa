/**
 * Slow is not down: instances are frozen (SIGSTOP/SIGCONT, 300–1500 ms, at random moments, the lock
 * holder included) and their event loops stalled (up to 800 ms) while a cold storm and a storm of
 * reports run against a healthy memcached. Neither a frozen instance nor a stalled one may take the
 * cache for down: exactly one WeChat fetch per storm, no error, no lock left behind.
 */
import { describe, expect, inject, it } from 'vitest';
import { MemcachedStore } from '../../lib/store/memcached.ts';
import { recordKeys } from '../../lib/token/record.ts';
import { CLASSIC_FIRST, uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import type { Instance } from '../support/instances.ts';
import { TEST_APPID } from '../support/secrets.ts';

type Body = { access_token?: string; error?: { code: string } };

const files = worldPerFile();
const pool = files.pool;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const between = (low: number, high: number) => low + Math.floor(Math.random() * (high - low + 1));

/**
 * Freezes and stalls instances at random until stopped; every frozen instance is thawed at the end.
 * An instance gets half a second after each freeze or stall before the next: a stall sent to a frozen
 * instance would queue and run on the thaw, and back-to-back freezes would leave a request no time at
 * all — an instance that never runs is down, not slow.
 */
function chaos(instances: Instance[]) {
  let running = true;
  const counts = { frozen: 0, stalled: 0 };
  const done = (async () => {
    const busyUntil = new Map<number, number>();
    const thaws: Promise<void>[] = [];
    while (running) {
      const target = instances[between(0, instances.length - 1)]!;
      const now = Date.now();
      if ((busyUntil.get(target.pid) ?? 0) <= now) {
        if (Math.random() < 0.5) {
          const ms = between(300, 1500);
          busyUntil.set(target.pid, now + ms + 500);
          process.kill(target.pid, 'SIGSTOP');
          counts.frozen++;
          thaws.push(sleep(ms).then(() => void process.kill(target.pid, 'SIGCONT')));
        } else {
          const ms = between(100, 800);
          busyUntil.set(target.pid, now + ms + 500);
          target.stall(ms);
          counts.stalled++;
        }
      }
      await sleep(between(20, 80));
    }
    await Promise.all(thaws);
  })();
  return {
    counts,
    async stop() {
      running = false;
      await done;
    },
  };
}

describe.each([
  ['a classic app whose first fetch is classic', CLASSIC_FIRST, { storm: [1, 0] }],
  ['the default policy (a missing record is fetched from the stable endpoint)', {}, { storm: [0, 1] }],
])('slow is not down: %s', (_name, policy, expected) => {
  it('6 frozen and stalled instances × 40 cold callers, then 200 reports: one fetch each, no error, no lock left', async () => {
    const prefix = uniquePrefix('stall');
    const env = files.world.env({
      CACHE_KEY_PREFIX: prefix,
      PASSIVE_REFRESH_MIN_AGE_SECONDS: '0',
      ...policy,
    });
    const instances = await pool.spawn(6, env);
    files.world.sim.resetCounters();
    // WeChat answers in 300 ms, so freezes and stalls land while the lock holder is fetching.
    for (const endpoint of ['token', 'stable_token'] as const)
      files.world.sim.inject({ endpoint, latencyMs: 300, times: 50 });
    const noise = chaos(instances);
    let storm: Body[];
    let reports: Body[];
    let stormFetches: number[];
    try {
      storm = await Promise.all(
        instances.flatMap((p) =>
          Array.from({ length: 40 }, () => p.invoke<Body>({ appid: TEST_APPID }, 15_000)),
        ),
      );
      stormFetches = [files.world.sim.calls.token, files.world.sim.calls.stableToken];
      const current = storm[0]!.access_token!;
      files.world.sim.resetCounters();
      reports = await Promise.all(
        instances.flatMap((p) =>
          Array.from({ length: 34 }, () =>
            p.invoke<Body>({ action: 'refresh_token', appid: TEST_APPID, invalid_token: current }, 15_000),
          ),
        ),
      );
    } finally {
      await noise.stop();
      files.world.sim.clearFaults();
    }
    console.log(
      `stalls: ${noise.counts.frozen} freezes and ${noise.counts.stalled} stalls; storm ${storm.length} callers → ` +
        `${stormFetches[0]} classic + ${stormFetches[1]} stable; ${reports.length} reports → ` +
        `${files.world.sim.calls.token} classic + ${files.world.sim.calls.stableToken} stable`,
    );
    // Why the cache was taken for down, if it was (diagnostics for a failure).
    const outages = instances.flatMap((p) =>
      p
        .logs()
        .filter((l) => l.event === 'cache.outage')
        .map((l) => l.detail),
    );
    if (outages.length > 0) console.log(`cache outages: ${[...new Set(outages)].join(' | ')}`);
    expect(noise.counts.frozen).toBeGreaterThanOrEqual(4);
    expect(noise.counts.stalled).toBeGreaterThanOrEqual(4);
    expect(storm.filter((b) => b.error).map((b) => b.error!.code)).toEqual([]);
    expect(new Set(storm.map((b) => b.access_token)).size).toBe(1);
    expect(stormFetches).toEqual(expected.storm);
    expect(reports.filter((b) => b.error).map((b) => b.error!.code)).toEqual([]);
    expect(reports.length).toBe(204);
    const renewed = new Set(reports.map((b) => b.access_token));
    expect(renewed.size).toBe(1);
    expect(renewed.has(storm[0]!.access_token)).toBe(false);
    // The report is accepted once min age has passed (0 here): one classic fetch, nothing else.
    expect([files.world.sim.calls.token, files.world.sim.calls.stableToken]).toEqual([1, 0]);
    for (const token of renewed) expect(files.world.sim.tokenStatus(token!)).toBe('valid');

    // No lock left behind: every holder released its own.
    const store = new MemcachedStore({ servers: [inject('memcachedAddress')], timeoutMs: 1000 });
    try {
      expect(await store.get(recordKeys(prefix, 'access_token', TEST_APPID).lock)).toBeNull();
    } finally {
      await store.close();
    }
  }, 90_000);
});
