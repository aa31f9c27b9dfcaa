/**
 * The service answering 503 `retryable: true` for 3 s (as it does while WeChat is down): a call with
 * time left retries with backoff and succeeds once the service recovers; a call whose deadline comes
 * first fails with the service's code. Errors the service says are not retryable are not retried.
 * Both channels: HTTP, and the real Lambda client.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { httpTransport } from '../../../lib/client/http-transport.ts';
import { invokeTransport } from '../../../lib/client/invoke-transport.ts';
import { TokenClient } from '../../../lib/client/token-client.ts';
import type { TokenTransport } from '../../../lib/client/transport.ts';
import { startWorld, uniquePrefix, type World } from '../../support/fixtures.ts';
import { instancePool } from '../../support/instances.ts';
import { CLIENT_KEY, CLIENT_KEY_OTHER, TEST_APPID, TEST_APPID_UNCONFIGURED } from '../../support/secrets.ts';
import { clientFailure } from '../../unit/client/fakes.ts';
import { FUNCTION_NAME, type ServiceEndpoint, startServiceEndpoint } from './service-endpoint.ts';

let world: World;
let endpoint: ServiceEndpoint;
const pool = instancePool();

beforeAll(async () => {
  world = await startWorld();
  endpoint = await startServiceEndpoint(
    await pool.spawn(2, world.env({ CACHE_KEY_PREFIX: uniquePrefix('outage') })),
  );
  process.env.AWS_ENDPOINT_URL_LAMBDA = endpoint.lambdaEnv().AWS_ENDPOINT_URL_LAMBDA;
});
afterEach(() => {
  endpoint.calls.length = 0;
});
afterAll(async () => {
  delete process.env.AWS_ENDPOINT_URL_LAMBDA;
  await endpoint.close();
  await pool.closeAll();
  await world.close();
});

const transports: Record<'http' | 'invoke', (key?: string) => TokenTransport> = {
  http: (key = CLIENT_KEY) => httpTransport({ baseUrl: endpoint.baseUrl, key }),
  invoke: () => invokeTransport({ functionName: FUNCTION_NAME }),
};

describe.each(['http', 'invoke'] as const)('over %s', (channel) => {
  it('503 retryable for 3 s: a call with a 10-s deadline retries and succeeds once the service recovers', async () => {
    const client = new TokenClient({ appid: TEST_APPID, transport: transports[channel]() });
    endpoint.failFor(3_000);
    const startedAt = Date.now();
    const token = await client.getToken({ deadlineMs: 10_000 });
    const tookMs = Date.now() - startedAt;
    expect(world.sim.tokenStatus(token)).toBe('valid');
    const failed = endpoint.calls.filter((c) => c.failed).length;
    console.log(`outage over ${channel}: ${failed} answers of 503 retryable, then served after ${tookMs} ms`);
    expect(failed).toBeGreaterThanOrEqual(3);
    expect(endpoint.calls.filter((c) => !c.failed)).toHaveLength(1);
    expect(tookMs).toBeGreaterThanOrEqual(2_900);
    expect(tookMs).toBeLessThan(10_000);
  });

  it("a call whose 1-s deadline comes during the outage fails with the service's code, within its deadline", async () => {
    const client = new TokenClient({ appid: TEST_APPID, transport: transports[channel]() });
    endpoint.failFor(3_000);
    const startedAt = Date.now();
    const err = await clientFailure(client.getToken({ deadlineMs: 1_000 }));
    const tookMs = Date.now() - startedAt;
    expect(err).toMatchObject({ code: 'wechat_unavailable', retryable: true, errcode: -1 });
    expect(tookMs).toBeLessThanOrEqual(1_100);
    expect(endpoint.calls.length).toBeGreaterThanOrEqual(2);
    endpoint.failFor(0);
  });
});

describe('errors the service says are not retryable are not retried', () => {
  it('HTTP, a key not scoped to the appid: forbidden (403), one call', async () => {
    const client = new TokenClient({ appid: TEST_APPID, transport: transports.http(CLIENT_KEY_OTHER) });
    const err = await clientFailure(client.getToken());
    expect(err).toMatchObject({ code: 'forbidden', status: 403, retryable: false });
    expect(endpoint.calls).toHaveLength(1);
  });

  it('HTTP, an appid the service does not know: unknown_appid (404), one call', async () => {
    const client = new TokenClient({ appid: TEST_APPID_UNCONFIGURED, transport: transports.http() });
    const err = await clientFailure(client.getToken());
    expect(err).toMatchObject({ code: 'unknown_appid', status: 404, retryable: false });
    expect(endpoint.calls).toHaveLength(1);
  });

  it('invoke, an appid the service does not know: unknown_appid, one call', async () => {
    const client = new TokenClient({ appid: TEST_APPID_UNCONFIGURED, transport: transports.invoke() });
    const err = await clientFailure(client.getToken());
    expect(err).toMatchObject({ code: 'unknown_appid', retryable: false });
    expect(endpoint.calls).toHaveLength(1);
  });
});
