/**
 * A second fetcher kills the service's token in the middle of a run: four consumer processes (the
 * built client directly, and through each SDK adapter; over HTTP and the real Lambda client) each
 * report the dead token once and retry once, every business call still succeeds, and the service
 * fetches from WeChat exactly once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLASSIC_FIRST, startWorld, uniquePrefix, type World } from '../../support/fixtures.ts';
import { instancePool } from '../../support/instances.ts';
import { CLIENT_KEY, TEST_APPID } from '../../support/secrets.ts';
import type { ConsumerConfig } from './consumer-worker.ts';
import { type Consumer, callsByAction, spawnConsumer } from './consumers.ts';
import { FUNCTION_NAME, type ServiceEndpoint, startServiceEndpoint } from './service-endpoint.ts';

let world: World;
let endpoint: ServiceEndpoint | undefined;
const pool = instancePool();
let consumers: Consumer[] = [];

beforeAll(async () => {
  world = await startWorld();
});
afterEach(async () => {
  for (const consumer of consumers) consumer.kill();
  consumers = [];
  await endpoint?.close();
  await pool.closeAll();
});
afterAll(async () => {
  await world.close();
});

const MIN_AGE_SECONDS = 8;

const MODES: Array<Pick<ConsumerConfig, 'mode' | 'channel'>> = [
  { mode: 'client', channel: 'http' },
  { mode: 'co-wechat-api', channel: 'invoke' },
  { mode: 'wechat-api', channel: 'http' },
  { mode: 'node-easywechat', channel: 'invoke' },
];

describe('a token killed by a second fetcher mid-run', () => {
  it('4 consumers × 200 calls: one report and one retry each, no call fails, the service fetches once', async () => {
    // A classic token (a cold cache is otherwise served a stable one, which classic fetches never kill).
    // A report is honoured once the token is MIN_AGE old; until then (and MIN_AGE more) it is promised,
    // so every consumer still holds it when it is killed at MIN_AGE + 1 s.
    const env = world.env({
      CACHE_KEY_PREFIX: uniquePrefix('kill'),
      PASSIVE_REFRESH_MIN_AGE_SECONDS: String(MIN_AGE_SECONDS),
      ...CLASSIC_FIRST,
    });
    endpoint = await startServiceEndpoint(await pool.spawn(2, env));
    const service = endpoint;
    consumers = MODES.map((m, id) =>
      spawnConsumer(
        {
          id,
          ...m,
          serviceUrl: service.baseUrl,
          key: CLIENT_KEY,
          functionName: FUNCTION_NAME,
          appid: TEST_APPID,
          wechatBaseUrl: world.sim.baseUrl,
          calls: 200,
          durationMs: 12_000,
        },
        service.lambdaEnv(),
      ),
    );
    await Promise.all(consumers.map((c) => c.ready));
    await new Promise((resolve) => setTimeout(resolve, (MIN_AGE_SECONDS + 1) * 1000));
    const held = world.sim.tokensIssued(TEST_APPID).at(-1);
    expect(held?.kind).toBe('classic');
    const businessBeforeKill = world.sim.calls.business;
    world.sim.resetCounters();
    world.sim.rotateExternally(TEST_APPID);
    world.sim.rotateExternally(TEST_APPID);
    expect(world.sim.tokenStatus(held?.token ?? '')).toBe('invalidated');

    const results = await Promise.all(consumers.map((c) => c.result));
    const summary = results.map((r) => ({ mode: r.mode, channel: r.channel, ok: r.ok, ...callsByAction(r) }));
    console.log(
      `outside fetcher: ${JSON.stringify(summary)}; WeChat token fetches after the kill: ${world.sim.calls.token + world.sim.calls.stableToken}`,
    );
    for (const r of results) {
      expect(r.failures).toEqual([]);
      expect(r.ok).toBe(200);
      expect(callsByAction(r)).toEqual({ get_token: 1, refresh_token: 1 });
      expect(r.lateTokens).toBe(0);
      expect(r.unknownTokens).toBe(0);
    }
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
    // Every call once, and each rejected call once more. A consumer starts its calls at a pace, not
    // one after the other: a call still in flight with the dead token when the first rejection came
    // back is rejected too and retried once, without another report (the token is known dead by then).
    // That is 1 rejected call per consumer, 2 when the kill fell between two of its calls in flight.
    const business = businessBeforeKill + world.sim.calls.business;
    expect(business).toBeGreaterThanOrEqual(4 * 200 + 4);
    expect(business).toBeLessThanOrEqual(4 * 200 + 8);
  }, 60_000);
});
