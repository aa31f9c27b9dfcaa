/**
 * getApiQuota against the simulator's real counts, the outside-fetcher alarm, and the `status`
 * operator action: dist/index.js in child processes, the run's memcached, the real AWS SDK against
 * the local Secrets Manager endpoint.
 */
import { describe, expect, it } from 'vitest';
import { bearer, httpV2, uniquePrefix, worldPerFile } from '../support/fixtures.ts';
import {
  CLIENT_KEY,
  CLIENT_KEY_OTHER,
  TEST_APPID,
  TEST_APPID_2,
  TEST_APPID_STABLE,
  TEST_SECRET,
  TEST_SECRET_2,
  TEST_SECRET_STABLE,
} from '../support/secrets.ts';

const files = worldPerFile();
const SCHEDULED = { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Summary {
  quota_checked: number;
  outside_fetcher_suspected: string[];
  failed: unknown[];
}
type Line = Record<string, unknown>;

/** A second fetcher outside the service: the AppSecret and WeChat's classic endpoint, as any SDK does it. */
async function fetchOutside(baseUrl: string, appid: string, secret: string): Promise<void> {
  const url = `${baseUrl}/cgi-bin/token?grant_type=client_credential&appid=${appid}&secret=${encodeURIComponent(secret)}`;
  const body = (await (await fetch(url)).json()) as { access_token?: string };
  expect(typeof body.access_token).toBe('string');
}

const outsideLines = (lines: Line[]) => lines.filter((l) => l.event === 'quota.outside_fetcher');

describe('getApiQuota and the outside-fetcher alarm', () => {
  it('a second fetcher that takes 3 tokens is named on the next check, with both counts; none before it', async () => {
    const { sim } = files.world;
    const env = files.world.env({
      CACHE_KEY_PREFIX: uniquePrefix('outside'),
      QUOTA_CHECK_INTERVAL_SECONDS: '1',
      MISSING_RECORD_POLICY: 'classic',
    });
    const [a, b] = await files.pool.spawn(2, env);
    // The service's own classic fetches and a ticket, from both instances.
    await a!.invoke({ appid: TEST_APPID_2 });
    await b!.invoke({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' });
    const first = await a!.invoke<Summary>(SCHEDULED);
    expect(first.quota_checked).toBe(3);
    expect(first.outside_fetcher_suspected).toEqual([]);
    // The checks are due again after the interval: nothing changed, nothing suspected.
    await sleep(2100);
    const quiet = await b!.invoke<Summary>(SCHEDULED);
    expect(quiet.quota_checked).toBe(3);
    expect(quiet.outside_fetcher_suspected).toEqual([]);
    expect(outsideLines([...a!.logs(), ...b!.logs()])).toEqual([]);

    for (let i = 0; i < 3; i++) await fetchOutside(sim.baseUrl, TEST_APPID_2, TEST_SECRET_2);
    await sleep(2100);
    const next = await a!.invoke<Summary>(SCHEDULED);
    expect(next.outside_fetcher_suspected).toEqual([TEST_APPID_2]);
    const lines = outsideLines(a!.logs());
    // Two pieces of evidence: WeChat's count, and the token the service held, killed at once by the
    // outside fetches (the quota check found it dead and reported it).
    expect(lines.map((l) => [l.appid, l.evidence]).sort()).toEqual([
      [TEST_APPID_2, 'early_report'],
      [TEST_APPID_2, 'quota_count'],
    ]);
    const line = lines.find((l) => l.evidence === 'quota_count')!;
    console.log(
      `outside fetcher: 3 tokens taken outside the service → ${line.event} on the next check: appid ${line.appid}, ` +
        `WeChat counted ${line.wechatCount}, the service ${line.serviceCount}; metric OutsideFetcherSuspected=${line.OutsideFetcherSuspected}`,
    );
    expect(line).toMatchObject({ level: 'ERROR', appid: TEST_APPID_2, evidence: 'quota_count' });
    expect((line.wechatCount as number) - (line.serviceCount as number)).toBe(3);
    expect(line.detail).toContain('token_api "stable"');
    // The same line is the metric (EMF).
    expect(line.OutsideFetcherSuspected).toBe(1);
    const directives = (line._aws as { CloudWatchMetrics: Array<{ Metrics: Array<{ Name: string }> }> })
      .CloudWatchMetrics;
    expect(directives.flatMap((d) => d.Metrics.map((m) => m.Name))).toContain('OutsideFetcherSuspected');
    // And the published quota figures are WeChat's real counts.
    const checked = a!.logs().filter((l) => l.event === 'quota.checked' && l.appid === TEST_APPID_2);
    expect(checked.at(-1)).toMatchObject({
      upstream: 'token',
      QuotaUsed: line.wechatCount,
      QuotaLimit: 2000,
    });
  }, 30_000);
});

describe('the status action', () => {
  it('answers for one app and for all apps, with no token, ticket or secret in it', async () => {
    const { sim } = files.world;
    const env = files.world.env({
      CACHE_KEY_PREFIX: uniquePrefix('status'),
      MISSING_RECORD_POLICY: 'classic',
    });
    const [instance] = await files.pool.spawn(1, env);
    await instance!.invoke({ appid: TEST_APPID });
    await instance!.invoke({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' });
    await instance!.invoke({ appid: TEST_APPID_STABLE });
    sim.inject({ endpoint: 'token', appid: TEST_APPID_2, errcode: 40164 });
    await instance!.invoke({ appid: TEST_APPID_2 });

    const one = await instance!.invoke<{
      apps: Array<{
        appid: string;
        kinds: Record<
          string,
          { record: Record<string, unknown> | null; upstreams: Record<string, Record<string, unknown>> }
        >;
        quota: Record<string, unknown> | null;
      }>;
      skipped: string[];
    }>({ action: 'status', appid: TEST_APPID, check_quota: true });
    const all = await instance!.invoke<typeof one>({ action: 'status' });
    const texts = [JSON.stringify(one), JSON.stringify(all)];
    console.log(`status: one app ${texts[0]!.length} bytes, all apps ${texts[1]!.length} bytes`);

    expect(one.apps.map((a) => a.appid)).toEqual([TEST_APPID]);
    const token = one.apps[0]!.kinds.access_token!;
    expect(token.record).toMatchObject({ generation: 1, origin: 'classic' });
    expect(token.record!.seconds_left).toBeGreaterThan(7000);
    expect(typeof token.record!.writer).toBe('string');
    expect(token.upstreams.token).toMatchObject({ breaker: 'closed', calls_today: 1, last_error: null });
    expect(one.apps[0]!.kinds.jsapi_ticket!.record).toMatchObject({ generation: 1, origin: 'ticket' });
    expect(one.apps[0]!.kinds.wx_card_ticket!.record).toBeNull();
    expect(one.apps[0]!.quota).toMatchObject({
      outside_fetcher_suspected: false,
      token: { used: sim.callsFor(TEST_APPID).token, limit: 2000, service_calls: 1 },
      ticket: { service_calls: 1 },
    });

    expect(all.apps.map((a) => a.appid).sort()).toEqual([TEST_APPID, TEST_APPID_2, TEST_APPID_STABLE].sort());
    expect(all.skipped).toEqual([]);
    const failing = all.apps.find((a) => a.appid === TEST_APPID_2)!;
    expect(failing.kinds.access_token!.record).toBeNull();
    expect(failing.kinds.access_token!.upstreams.token!.last_error).toMatchObject({
      code: 'wechat_ip_not_whitelisted',
      errcode: 40164,
    });
    // The quota check of TEST_APPID above is shown to later status calls too.
    expect(all.apps.find((a) => a.appid === TEST_APPID)!.quota).not.toBeNull();

    // No token, ticket or secret in either answer.
    const values = [
      ...[TEST_APPID, TEST_APPID_2, TEST_APPID_STABLE].flatMap((appid) => [
        ...sim.tokensIssued(appid).map((t) => t.token),
        ...sim.ticketsIssued(appid, 'jsapi').map((t) => t.ticket),
      ]),
      TEST_SECRET,
      TEST_SECRET_2,
      TEST_SECRET_STABLE,
      CLIENT_KEY,
      CLIENT_KEY_OTHER,
    ];
    expect(values.length).toBeGreaterThan(5);
    for (const text of texts) for (const value of values) expect(text.includes(value)).toBe(false);
  });

  it('answers unknown_appid and invalid_request as errors, and is not an HTTP route', async () => {
    const [instance] = await files.pool.spawn(1, files.world.env({ CACHE_KEY_PREFIX: uniquePrefix('st2') }));
    expect(await instance!.invoke({ action: 'status', appid: 'wx1111111111111111' })).toMatchObject({
      error: { code: 'unknown_appid' },
    });
    expect(await instance!.invoke({ action: 'status', check_quota: 'yes' })).toMatchObject({
      error: { code: 'invalid_request' },
    });
    const http = await instance!.invoke<{ statusCode: number }>(
      httpV2('GET', '/status', { headers: bearer(CLIENT_KEY) }),
    );
    expect(http.statusCode).toBe(404);
  });
});
