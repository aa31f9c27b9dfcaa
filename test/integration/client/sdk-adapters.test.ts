/**
 * The three WeChat SDKs, wired by their adapters, against the real service — dist/index.js in two
 * child processes behind an API Gateway-like HTTP endpoint and a Lambda Invoke endpoint (the real
 * `@aws-sdk/client-lambda`), one real memcached — and the simulator's business endpoint.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { httpTransport } from '../../../lib/client/http-transport.ts';
import { invokeTransport } from '../../../lib/client/invoke-transport.ts';
import { TokenClient } from '../../../lib/client/token-client.ts';
import { CLASSIC_FIRST, startWorld, uniquePrefix, type World } from '../../support/fixtures.ts';
import { instancePool } from '../../support/instances.ts';
import { CLIENT_KEY, TEST_APPID } from '../../support/secrets.ts';
import { SDK_NAMES, type SdkName, wireSdk } from '../../unit/client/sdk-business.ts';
import { FUNCTION_NAME, type ServiceEndpoint, startServiceEndpoint } from './service-endpoint.ts';

let world: World;
let endpoint: ServiceEndpoint | undefined;
const pool = instancePool();

beforeAll(async () => {
  world = await startWorld();
});
afterEach(async () => {
  await endpoint?.close();
  endpoint = undefined;
  await pool.closeAll();
  delete process.env.AWS_ENDPOINT_URL_LAMBDA;
});
afterAll(async () => {
  await world.close();
});

/** A fresh service (its own cache key prefix) with both channels in front of it. */
async function freshService(env: Record<string, string> = {}): Promise<ServiceEndpoint> {
  const instances = await pool.spawn(2, world.env({ CACHE_KEY_PREFIX: uniquePrefix('sdk'), ...env }));
  endpoint = await startServiceEndpoint(instances);
  return endpoint;
}

function client(channel: 'http' | 'invoke', service: ServiceEndpoint): TokenClient {
  if (channel === 'http') {
    return new TokenClient({
      appid: TEST_APPID,
      transport: httpTransport({ baseUrl: service.baseUrl, key: CLIENT_KEY }),
    });
  }
  // The Lambda client is created by the transport and reads its endpoint from the environment.
  process.env.AWS_ENDPOINT_URL_LAMBDA = service.lambdaEnv().AWS_ENDPOINT_URL_LAMBDA;
  return new TokenClient({ appid: TEST_APPID, transport: invokeTransport({ functionName: FUNCTION_NAME }) });
}

const CASES = SDK_NAMES.flatMap((name) =>
  (['http', 'invoke'] as const).map((channel) => [name, channel] as const),
);

describe.each(CASES)('%s over %s', (name: SdkName, channel) => {
  it('60 business calls (20 at once, then 40 one by one) all succeed on one token fetch and one service call', async () => {
    const service = await freshService();
    world.sim.resetCounters();
    const sdk = wireSdk(name, client(channel, service), world.sim.baseUrl);
    const first = await Promise.all(Array.from({ length: 20 }, () => sdk.call()));
    const rest = [];
    for (let i = 0; i < 40; i++) rest.push(await sdk.call());
    for (const answer of [...first, ...rest]) expect(answer.ip_list.length).toBeGreaterThan(0);
    expect(world.sim.calls.business).toBe(60);
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
    expect(service.calls.map((c) => `${c.channel} ${c.action}`)).toEqual([`${channel} get_token`]);
  });

  it('a token killed by an outside fetcher: one report, one retry, the call succeeds, the service fetches once', async () => {
    // A classic token from the start (a cold cache is otherwise served a stable one, which no classic
    // fetch kills), and reports honoured at any age.
    const service = await freshService({ ...CLASSIC_FIRST, PASSIVE_REFRESH_MIN_AGE_SECONDS: '0' });
    const sdk = wireSdk(name, client(channel, service), world.sim.baseUrl);
    await sdk.call();
    const held = world.sim.tokensIssued(TEST_APPID).at(-1);
    expect(held?.kind).toBe('classic');
    world.sim.resetCounters();
    // Two outside fetches: the first makes the service's token the previous one, the second kills it.
    world.sim.rotateExternally(TEST_APPID);
    world.sim.rotateExternally(TEST_APPID);
    expect(world.sim.tokenStatus(held?.token ?? '')).toBe('invalidated');
    expect((await sdk.call()).ip_list.length).toBeGreaterThan(0);
    expect((await sdk.call()).ip_list.length).toBeGreaterThan(0);
    expect(service.count('refresh_token')).toBe(1);
    // The rejected call, its retry, the next call.
    expect(world.sim.calls.business).toBe(3);
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
  });

  it("its JS-SDK config is the service's signature: no getticket call by the SDK", async () => {
    const service = await freshService();
    const sdk = wireSdk(name, client(channel, service), world.sim.baseUrl);
    const config = await sdk.jsConfig('https://example.com/page?from=test');
    expect(config).toMatchObject({ appId: TEST_APPID });
    expect(String(config.signature)).toMatch(/^[0-9a-f]{40}$/);
    expect(service.calls.map((c) => c.action)).toEqual(['jssdk_config']);
  });
});
