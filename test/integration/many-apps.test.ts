/**
 * Many apps: 300 apps (a third stable, a fifth with a jsapi ticket) in the WeChat simulator with 50 ms
 * of upstream latency, one instance of dist/index.js, the run's memcached and the real AWS SDK
 * against the local Secrets Manager endpoint.
 */
import { describe, expect, it } from 'vitest';
import { uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import { MANY_APPS } from '../support/secrets.ts';

const files = worldPerFile({ apps: MANY_APPS.map(({ appid, secret }) => ({ appid, secret })) });
const SCHEDULED = { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} };
const LIST_ID = 'wechat-token-service/many-apps';
const PREFIX = 'wechat/apps/';
const LATENCY_MS = 50;

interface Summary {
  apps: number;
  concurrency: number;
  refreshed: Array<{ appid: string; kind: string }>;
  fresh: number;
  failed: Array<{ appid: string; kind: string; code: string }>;
  skipped: number;
  by_code: Record<string, string[]>;
  quota_checked: number;
  outside_fetcher_suspected: string[];
  duration_ms: number;
}

/** The list secret: every app, its AppSecret inline or (perApp) in its own secret. */
function listSecret(perApp: boolean): string {
  return JSON.stringify({
    apps: MANY_APPS.map((a) => ({
      appid: a.appid,
      ...(perApp ? {} : { secret: a.secret }),
      token_api: a.tokenApi,
      tickets: a.tickets,
    })),
  });
}

const pairsOf = (apps: typeof MANY_APPS) => apps.reduce((n, a) => n + 1 + a.tickets.length, 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the schedule with 300 apps', () => {
  it('refreshes every due app in one run, 16 at a time; the app answering 40164 is in the summary and delays no other', async () => {
    const { sim, secrets } = files.world;
    const failing = MANY_APPS[0]!;
    secrets.putSecret(LIST_ID, listSecret(false));
    sim.clearFaults();
    // The failing app is first in the list, so it is among the first refreshes of the run.
    sim.inject({ endpoint: 'any', appid: failing.appid, errcode: 40164, latencyMs: LATENCY_MS, times: 1000 });
    sim.inject({ endpoint: 'any', latencyMs: LATENCY_MS, times: 100_000 });
    const [instance] = await files.pool.spawn(
      1,
      files.world.env({ WECHAT_SECRET_ID: LIST_ID, CACHE_KEY_PREFIX: uniquePrefix('many') }),
    );
    const startedAt = Date.now();
    const summary = await instance!.invoke<Summary>(SCHEDULED, 10_000);
    const tookMs = Date.now() - startedAt;
    sim.clearFaults();

    const others = MANY_APPS.filter((a) => a !== failing);
    const lastIssuedMs = Math.max(
      ...others.map((a) => Math.max(...sim.tokensIssued(a.appid).map((t) => t.issuedAtMs))),
    );
    const pairs = pairsOf(MANY_APPS);
    console.log(
      `many apps: 300 apps (${pairs} tokens and tickets), ${LATENCY_MS} ms upstream latency: one schedule run took ` +
        `${summary.duration_ms} ms (${tookMs} ms with the invoke), concurrency ${summary.concurrency}; ` +
        `${summary.refreshed.length} refreshed, ${summary.failed.length} failed ` +
        `(${summary.failed.map((f) => `${f.appid} ${f.code}`).join(', ')}), ${summary.skipped} skipped; ` +
        `the last of the 299 other apps' tokens was issued ${lastIssuedMs - startedAt} ms into the run; ` +
        `${summary.quota_checked} quota checks, ${summary.outside_fetcher_suspected.length} outside fetchers suspected`,
    );
    expect(summary.concurrency).toBe(16);
    expect(summary.apps).toBe(300);
    expect(summary.skipped).toBe(0);
    expect(summary.failed).toEqual([
      expect.objectContaining({
        appid: failing.appid,
        kind: 'access_token',
        code: 'wechat_ip_not_whitelisted',
      }),
    ]);
    expect(summary.by_code.wechat_ip_not_whitelisted).toEqual([failing.appid]);
    // Every other pair was refreshed, in this run.
    expect(summary.refreshed).toHaveLength(pairs - 1);
    expect(summary.by_code.refreshed).toHaveLength(pairs - 1);
    for (const app of others) expect(sim.tokensIssued(app.appid).length).toBeGreaterThan(0);
    // Concurrency at work: sequentially, 300 token fetches alone take 300 × 50 ms = 15 s.
    expect(lastIssuedMs - startedAt).toBeLessThan(6000);
    // Quota checks at scale: every app but the failing one, and no false alarm.
    expect(summary.quota_checked).toBe(299);
    expect(summary.outside_fetcher_suspected).toEqual([]);
  }, 60_000);

  it('cuts one slow app at its share of the run; the others are all refreshed, none waiting for it', async () => {
    const { sim, secrets } = files.world;
    const slow = MANY_APPS[1]!;
    secrets.putSecret(LIST_ID, listSecret(false));
    sim.clearFaults();
    sim.inject({ endpoint: 'any', appid: slow.appid, latencyMs: 8000, times: 1000 });
    sim.inject({ endpoint: 'any', latencyMs: LATENCY_MS, times: 100_000 });
    const [instance] = await files.pool.spawn(
      1,
      files.world.env({
        WECHAT_SECRET_ID: LIST_ID,
        CACHE_KEY_PREFIX: uniquePrefix('slow'),
        QUOTA_CHECK_INTERVAL_SECONDS: '0',
        // Every classic app fetches a new classic token, so the simulator's issue times tell when.
        MISSING_RECORD_POLICY: 'classic',
        // One attempt may take 6 s: the slow app holds its worker that long, the others go on.
        UPSTREAM_TIMEOUT_MS: '6000',
      }),
    );
    const startedAt = Date.now();
    const summary = await instance!.invoke<Summary>(SCHEDULED, 10_000);
    sim.clearFaults();
    const lastIssuedMs = Math.max(
      ...MANY_APPS.filter((a) => a !== slow && a.tokenApi === 'classic').map((a) =>
        Math.max(...sim.tokensIssued(a.appid).map((t) => t.issuedAtMs)),
      ),
    );
    console.log(
      `many apps, one slow (8 s at WeChat): run ${summary.duration_ms} ms; slow app ${JSON.stringify(
        summary.failed.map((f) => f.code),
      )}; the other classic apps' last token issued ${lastIssuedMs - startedAt} ms into the run`,
    );
    expect(summary.failed.map((f) => [f.appid, f.code])).toEqual([[slow.appid, 'wechat_timeout']]);
    expect(summary.refreshed).toHaveLength(pairsOf(MANY_APPS) - 1);
    expect(summary.skipped).toBe(0);
    // The slow call was cut at its share (one 6-s attempt), before WeChat's 8 s and the invocation's
    // 10 s, and every other app was refreshed while it was still waiting.
    expect(summary.duration_ms).toBeLessThan(8000);
    expect(lastIssuedMs - startedAt).toBeLessThan(6000);
  }, 60_000);
});

describe('per-app secrets by WECHAT_SECRET_PREFIX', () => {
  it('a cold instance reads each of 300 app secrets once, however many refreshes and calls use it', async () => {
    const { sim, secrets } = files.world;
    sim.clearFaults();
    secrets.putSecret(LIST_ID, listSecret(true));
    for (const app of MANY_APPS)
      secrets.putSecret(`${PREFIX}${app.appid}`, JSON.stringify({ secret: app.secret }));
    // 4-s tokens: due again within seconds, so the second schedule run refreshes the apps again (every
    // classic app at least: a classic fetch always issues a new token, and a missing record is
    // fetched classic here; a stable app may get back a token issued earlier in this file).
    sim.setTokenLifetime(4);
    sim.setTicketLifetime(4);
    try {
      const [instance] = await files.pool.spawn(
        1,
        files.world.env({
          WECHAT_SECRET_ID: LIST_ID,
          WECHAT_SECRET_PREFIX: PREFIX,
          CACHE_KEY_PREFIX: uniquePrefix('perapp'),
          QUOTA_CHECK_INTERVAL_SECONDS: '0',
          MISSING_RECORD_POLICY: 'classic',
        }),
      );
      secrets.resetCounters();
      sim.resetCounters();
      const first = await instance!.invoke<Summary>(SCHEDULED, 10_000);
      await sleep(3500);
      const second = await instance!.invoke<Summary>(SCHEDULED, 10_000);
      const tokens = await Promise.all(
        MANY_APPS.map((a) => instance!.invoke<{ access_token?: string }>({ appid: a.appid })),
      );
      const perSecret = MANY_APPS.map((a) => secrets.readsOf(`${PREFIX}${a.appid}`));
      const upstream = sim.calls.token + sim.calls.stableToken + sim.calls.ticket;
      console.log(
        `per-app secrets: 300 apps, 2 schedule runs (${first.refreshed.length} + ${second.refreshed.length} refreshes) ` +
          `and 300 get_token, ${upstream} WeChat calls → ${secrets.calls.getSecretValue} GetSecretValue ` +
          `(list ${secrets.readsOf(LIST_ID)}; per app secret min ${Math.min(...perSecret)}, max ${Math.max(...perSecret)})`,
      );
      expect(first.failed).toEqual([]);
      expect(first.refreshed).toHaveLength(pairsOf(MANY_APPS));
      expect(second.failed).toEqual([]);
      expect(second.refreshed.length).toBeGreaterThanOrEqual(
        MANY_APPS.filter((a) => a.tokenApi === 'classic').length,
      );
      expect(tokens.every((t) => typeof t.access_token === 'string')).toBe(true);
      expect(secrets.readsOf(LIST_ID)).toBe(1);
      expect(new Set(perSecret)).toEqual(new Set([1]));
      expect(secrets.calls.getSecretValue).toBe(301);
    } finally {
      sim.setTokenLifetime(7200);
      sim.setTicketLifetime(7200);
    }
  }, 60_000);
});
