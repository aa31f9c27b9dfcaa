/**
 * Soak: the outside-fetcher alarm raises no false alarm over 60 s of steady real-time work — 20-second
 * tokens and tickets refreshed over and over by 3 OS processes running dist/index.js (requests and
 * the schedule on every process, WeChat busy now and then so calls are retried), getApiQuota checked
 * every 2 s against the simulator's real counts — and then, as the control, names the app once a
 * second fetcher takes 3 tokens outside the service (`npm run test:soak`).
 */
import { describe, expect, it } from 'vitest';
import { uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import { TEST_APPID, TEST_APPID_2, TEST_APPID_STABLE } from '../support/secrets.ts';

const files = worldPerFile();
const SCHEDULED = { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} };
const RUN_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Summary {
  quota_checked?: number;
  outside_fetcher_suspected?: string[];
}

describe('the outside-fetcher alarm over a steady run', () => {
  it('60 s of 20-s tokens on 3 processes with quota checks every 2 s: never a false alarm; 3 outside fetches are named at the next check', async () => {
    const { sim } = files.world;
    sim.setTokenLifetime(20);
    sim.setTicketLifetime(20);
    try {
      const env = files.world.env({
        CACHE_KEY_PREFIX: uniquePrefix('steady'),
        QUOTA_CHECK_INTERVAL_SECONDS: '2',
        SCHEDULE_INTERVAL_SECONDS: '2',
        MISSING_RECORD_POLICY: 'classic',
      });
      const procs = await files.pool.spawn(3, env);
      const endAt = Date.now() + RUN_MS;
      const summaries: Summary[] = [];
      let requests = 0;
      let busy = 0;
      await Promise.all([
        ...procs.map(async (p) => {
          while (Date.now() < endAt) {
            await Promise.all([
              p.invoke({ appid: TEST_APPID }),
              p.invoke({ appid: TEST_APPID_2 }),
              p.invoke({ appid: TEST_APPID_STABLE }),
              p.invoke({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' }),
            ]);
            requests += 4;
            await sleep(50);
          }
        }),
        // The schedule, on every process in turn, about every 700 ms.
        (async () => {
          for (let i = 0; Date.now() < endAt; i++) {
            summaries.push(await procs[i % procs.length]!.invoke<Summary>(SCHEDULED));
            await sleep(700);
          }
        })(),
        // WeChat busy now and then for TEST_APPID: the service retries, and counts every attempt (WeChat
        // may count a busy answer or not; the simulator does not), so its count runs ahead of WeChat's.
        (async () => {
          while (Date.now() < endAt) {
            sim.inject({ endpoint: 'token', appid: TEST_APPID, errcode: -1 });
            busy++;
            await sleep(5000);
          }
        })(),
      ]);
      sim.clearFaults();
      const logs = procs.flatMap((p) => p.logs());
      const alarms = logs.filter((l) => l.event === 'quota.outside_fetcher');
      const checks = logs.filter((l) => l.event === 'quota.checked' && l.upstream === 'token');
      const fetches = logs.filter((l) => l.event === 'upstream.fetch').length;
      const retries = logs.filter((l) => l.event === 'upstream.retry').length;
      console.log(
        `quota steady run: ${RUN_MS / 1000} s, 3 processes, ${requests} requests, ${summaries.length} schedule runs, ` +
          `${fetches} WeChat fetches (${retries} retried after ${busy} busy answers), ${checks.length} getApiQuota checks of ` +
          `/cgi-bin/token (WeChat used up to ${Math.max(...checks.map((c) => c.used as number))}): ` +
          `${alarms.length} outside-fetcher alarms`,
      );
      expect(alarms).toEqual([]);
      expect(summaries.every((s) => (s.outside_fetcher_suspected ?? []).length === 0)).toBe(true);
      expect(checks.length).toBeGreaterThanOrEqual(RUN_MS / 2000);
      // The counts compared grew during the run: tokens of 20 s were fetched again and again.
      expect(
        Math.max(...checks.filter((c) => c.appid === TEST_APPID_2).map((c) => c.used as number)),
      ).toBeGreaterThanOrEqual(Math.floor(RUN_MS / 15_000));

      const lastOf = (appid: string) => checks.filter((c) => c.appid === appid).at(-1);
      const busyApp = lastOf(TEST_APPID);
      console.log(
        `quota steady run, last checks: ${TEST_APPID} (retried) WeChat ${busyApp?.used} service ${busyApp?.serviceCount}; ` +
          `${TEST_APPID_2} WeChat ${lastOf(TEST_APPID_2)?.used} service ${lastOf(TEST_APPID_2)?.serviceCount}`,
      );

      // The control: a second fetcher takes 3 tokens of TEST_APPID_2; the next check names the app.
      for (let i = 0; i < 3; i++) sim.rotateExternally(TEST_APPID_2);
      let named: string[] = [];
      const deadline = Date.now() + 10_000;
      while (named.length === 0 && Date.now() < deadline) {
        await sleep(1000);
        named = (await procs[0]!.invoke<Summary>(SCHEDULED)).outside_fetcher_suspected ?? [];
      }
      const line = procs[0]!
        .logs()
        .find((l) => l.event === 'quota.outside_fetcher' && l.evidence === 'quota_count');
      console.log(
        `quota steady run, control: 3 tokens taken outside the service → ${named.join(', ')} named: WeChat ${line?.wechatCount}, service ${line?.serviceCount}`,
      );
      expect(named).toEqual([TEST_APPID_2]);
      expect((line?.wechatCount as number) - (line?.serviceCount as number)).toBe(3);
    } finally {
      sim.setTokenLifetime(7200);
      sim.setTicketLifetime(7200);
    }
  }, 90_000);
});
