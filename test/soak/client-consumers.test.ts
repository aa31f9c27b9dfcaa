/**
 * Soak: 8 consumer processes on the built client — directly and through each SDK adapter, over HTTP
 * and the real Lambda client — make 1000 business calls each over 60 s against the simulator, whose
 * tokens live 20 s, through the service (dist/index.js in two processes, one real memcached).
 *
 * Per process: no business call fails; no token goes to WeChat at or after the `expires_at` the
 * service promised for it; the service is asked again only once the previous answer's promise ran
 * out (one call per promise window), and no token dies while promised (no reports).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConsumerConfig } from '../integration/client/consumer-worker.ts';
import { type Consumer, callsByAction, spawnConsumer } from '../integration/client/consumers.ts';
import {
  FUNCTION_NAME,
  type ServiceEndpoint,
  startServiceEndpoint,
} from '../integration/client/service-endpoint.ts';
import { startWorld, uniquePrefix, type World } from '../support/fixtures.ts';
import { instancePool } from '../support/instances.ts';
import { CLIENT_KEY, TEST_APPID } from '../support/secrets.ts';

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
  world.sim.setTokenLifetime(7200);
});
afterAll(async () => {
  await world.close();
});

const CALLS = 1000;
const DURATION_MS = 60_000;
const MODES: Array<Pick<ConsumerConfig, 'mode' | 'channel'>> = (
  ['client', 'co-wechat-api', 'wechat-api', 'node-easywechat'] as const
).flatMap((mode) => (['http', 'invoke'] as const).map((channel) => ({ mode, channel })));

describe('consumers on 20-second tokens', () => {
  it('8 processes × 1000 business calls over 60 s: none fails, none sends a token past its expires_at, one service call per promise window', async () => {
    world.sim.setTokenLifetime(20);
    endpoint = await startServiceEndpoint(
      await pool.spawn(2, world.env({ CACHE_KEY_PREFIX: uniquePrefix('soak') })),
    );
    const service = endpoint;
    world.sim.resetCounters();
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
          calls: CALLS,
          durationMs: DURATION_MS,
        },
        service.lambdaEnv(),
      ),
    );
    const results = await Promise.all(consumers.map((c) => c.result));

    const lines = results.map((r) => {
      const calls = callsByAction(r);
      const promises = r.serviceCalls
        .filter((c) => c.expiresIn !== undefined)
        .map((c) => c.expiresIn as number);
      const meanPromise = promises.reduce((a, b) => a + b, 0) / Math.max(1, promises.length);
      return (
        `#${r.id} ${r.mode}/${r.channel}: ${r.ok} ok, ${r.failed} failed; service calls ${JSON.stringify(calls)} ` +
        `(mean promise ${meanPromise.toFixed(1)} s, ${r.earlyGets} early); ${r.tokenRequests} token requests to WeChat, ` +
        `${r.lateTokens} past expires_at; business p50/p99 ${r.latencyMs[0]}/${r.latencyMs[1]} ms`
      );
    });
    const fetches = world.sim.calls.token + world.sim.calls.stableToken;
    console.log(
      `client soak, ${CALLS} calls × ${MODES.length} processes over ${DURATION_MS / 1000} s, 20-s tokens:\n  ${lines.join('\n  ')}\n` +
        `  service invocations: ${service.count()} (${service.count('get_token')} get_token, ${service.count('refresh_token')} refresh_token); ` +
        `WeChat token fetches: ${fetches} (${world.sim.calls.token} token + ${world.sim.calls.stableToken} stable_token)`,
    );
    for (const r of results) {
      expect(r.failures).toEqual([]);
      expect(r.ok).toBe(CALLS);
      expect(r.lateTokens).toBe(0);
      expect(r.unknownTokens).toBe(0);
      expect(r.tokenRequests).toBeGreaterThanOrEqual(CALLS);
      expect(r.earlyGets).toBe(0);
      expect(callsByAction(r).refresh_token ?? 0).toBe(0);
      // One call per promise window: 60 s of promises of at least a few seconds each.
      expect(callsByAction(r).get_token).toBeLessThanOrEqual(20);
    }
    expect(world.sim.calls.business).toBe(CALLS * MODES.length);
  }, 150_000);
});
