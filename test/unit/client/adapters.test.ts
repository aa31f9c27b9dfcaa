/**
 * The SDK adapters, each against its real package and the WeChat simulator on loopback, with a fake
 * service: its tokens are classic tokens the simulator issued to "someone else" (rotateExternally),
 * so a token the SDK fetched by itself would show in the simulator's counters.
 */
import { MiniApp } from 'node-easywechat';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { easyWechat } from '../../../lib/client/easy-wechat.ts';
import { TokenClientError } from '../../../lib/client/errors.ts';
import type { ServiceRequest } from '../../../lib/client/protocol.ts';
import { TokenClient } from '../../../lib/client/token-client.ts';
import { startWeChatSimulator, type WeChatSimulator } from '../../../local/stand-ins/wechat-simulator.ts';
import { TEST_SECRET } from '../../support/secrets.ts';
import { APPID, errorBody, FakeTransport } from './fakes.ts';
import { SDK_NAMES, wireSdk } from './sdk-business.ts';

let sim: WeChatSimulator;
let transport: FakeTransport;
let current: string | undefined;

/** The fake service: the current token (issued on first ask), a new one for a report of the current one. */
function serve(request: ServiceRequest): unknown {
  const body = (token: string) => ({
    access_token: token,
    expires_in: 300,
    expires_at: Math.floor(Date.now() / 1000) + 300,
  });
  switch (request.action) {
    case 'get_token':
      current ??= sim.rotateExternally(APPID);
      return body(current);
    case 'refresh_token':
      if (request.invalid_token === current) current = sim.rotateExternally(APPID);
      return body(current ?? sim.rotateExternally(APPID));
    case 'get_ticket':
      return {
        ticket: 'ticket-from-the-service',
        expires_in: 300,
        expires_at: Math.floor(Date.now() / 1000) + 300,
      };
    case 'jssdk_config':
      return { appId: APPID, timestamp: 1_736_913_600, nonceStr: 'service-nonce', signature: 'b'.repeat(40) };
  }
}

beforeEach(async () => {
  sim = await startWeChatSimulator({ apps: [{ appid: APPID, secret: TEST_SECRET }] });
  transport = new FakeTransport(serve);
  current = undefined;
});

afterEach(async () => {
  await sim.close();
});

describe.each(SDK_NAMES)('%s adapter', (name) => {
  it('makes business calls with the service token; the SDK never calls a token endpoint', async () => {
    const sdk = wireSdk(name, new TokenClient({ appid: APPID, transport }), sim.baseUrl);
    for (let i = 0; i < 5; i++) expect((await sdk.call()).ip_list.length).toBeGreaterThan(0);
    expect(sim.calls.business).toBe(5);
    expect(sim.calls.token + sim.calls.stableToken).toBe(0);
    expect(transport.requests.map((r) => r.action)).toEqual(['get_token']);
  });

  it('a token killed by an outside fetch is reported once and the call retried once: it succeeds', async () => {
    const sdk = wireSdk(name, new TokenClient({ appid: APPID, transport }), sim.baseUrl);
    await sdk.call();
    const dead = current;
    // Two outside fetches: the first makes the token the previous one, the second kills it at once.
    sim.rotateExternally(APPID);
    sim.rotateExternally(APPID);
    expect(sim.tokenStatus(dead ?? '')).toBe('invalidated');
    sim.resetCounters();
    expect((await sdk.call()).ip_list.length).toBeGreaterThan(0);
    await sdk.call();
    expect(transport.requests.filter((r) => r.action === 'refresh_token')).toEqual([
      { action: 'refresh_token', appid: APPID, invalid_token: dead },
    ]);
    // The failed call, its retry, and the next call.
    expect(sim.calls.business).toBe(3);
    expect(sim.calls.token + sim.calls.stableToken).toBe(0);
  });

  it("a service failure reaches the caller as the client's typed error; the SDK does not fetch by itself", async () => {
    transport.handler = () => errorBody('unknown_appid', false);
    const sdk = wireSdk(name, new TokenClient({ appid: APPID, transport }), sim.baseUrl);
    const err = await sdk.call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TokenClientError);
    expect((err as TokenClientError).code).toBe('unknown_appid');
    expect(sim.calls.total).toBe(0);
  });

  it('its JS-SDK config is the one the service signed: the SDK never asks WeChat for a ticket', async () => {
    const sdk = wireSdk(name, new TokenClient({ appid: APPID, transport }), sim.baseUrl);
    const config = await sdk.jsConfig('https://example.com/page');
    expect(config).toMatchObject({ appId: APPID, nonceStr: 'service-nonce', signature: 'b'.repeat(40) });
    expect(String(config.timestamp)).toBe('1736913600');
    expect(sim.calls.ticket).toBe(0);
    expect(transport.requests).toEqual([
      { action: 'jssdk_config', appid: APPID, url: 'https://example.com/page' },
    ]);
  });
});

describe('node-easywechat MiniApp', () => {
  it('is wired the same way: service tokens, and a dead token reported and the request sent again', async () => {
    const client = new TokenClient({ appid: APPID, transport });
    const app = easyWechat(
      new MiniApp({ app_id: APPID, secret: 'unused', http: { baseURL: `${sim.baseUrl}/` } }),
      client,
    );
    const call = async () =>
      (await app.getClient().get('cgi-bin/get_api_domain_ip')).toObject() as { ip_list?: string[] };
    expect((await call()).ip_list?.length).toBeGreaterThan(0);
    sim.rotateExternally(APPID);
    sim.rotateExternally(APPID);
    expect((await call()).ip_list?.length).toBeGreaterThan(0);
    expect(transport.requests.map((r) => r.action)).toEqual(['get_token', 'refresh_token']);
    expect(sim.calls.token + sim.calls.stableToken).toBe(0);
  });
});
