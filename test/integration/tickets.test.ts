/**
 * JS-SDK tickets and signed wx.config through the token machinery, across processes, against the
 * simulator's getticket (which re-answers the same ticket with the full expires_in while it lives).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHandler } from '../../handler/index.ts';
import { bearer, CLASSIC_FIRST, httpV2, startWorld, uniquePrefix, type World } from '../support/fixtures.ts';
import { instancePool } from '../support/instances.ts';
import { type JssdkConfig as Config, sign, signedWith } from '../support/jssdk.ts';
import { CLIENT_KEY, TEST_APPID } from '../support/secrets.ts';

type TicketBody = { ticket: string; expires_in: number; expires_at: number };
type TokenBody = { access_token: string };
type ErrorBody = { error: { code: string; message: string } };

let world: World;
const pool = instancePool();
const unique = uniquePrefix;
beforeAll(async () => {
  world = await startWorld();
});
afterEach(async () => {
  await pool.closeAll();
  world.sim.clearFaults();
});
afterAll(async () => {
  await world.close();
});

describe('jssdk_config', () => {
  it('100 calls across 3 processes make 1 getticket call, and every signature verifies against the issued ticket', async () => {
    const env = world.env({ CACHE_KEY_PREFIX: unique('jssdk') });
    const instances = await pool.spawn(3, env);
    world.sim.resetCounters();
    const url = 'https://shop.example.com/pay?order=42&from=Share%20Link';
    const configs = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        instances[i % 3]!.invoke<Config>({ action: 'jssdk_config', appid: TEST_APPID, url }),
      ),
    );
    expect(world.sim.calls.ticket).toBe(1);
    expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
    const issued = world.sim.ticketsIssued(TEST_APPID, 'jsapi');
    expect(issued).toHaveLength(1);
    for (const config of configs) {
      expect(Object.keys(config).sort()).toEqual(['appId', 'nonceStr', 'signature', 'timestamp']);
      expect(config.appId).toBe(TEST_APPID);
      expect(config.nonceStr).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
      expect(Math.abs(config.timestamp - Date.now() / 1000)).toBeLessThan(5);
      expect(config.signature).toBe(sign(issued[0]!.ticket, config, url));
    }
    expect(new Set(configs.map((c) => c.nonceStr)).size).toBe(100);
  });

  it('signs the URL without its #fragment and otherwise unchanged', async () => {
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: unique('frag') }) });
    const page = 'http://Example.com/a/b?x=1&y=%E4%B8%AD#/route?tab=2';
    const config = (await handler({ action: 'jssdk_config', appid: TEST_APPID, url: page })) as Config;
    expect(signedWith(world.sim, TEST_APPID, config, 'http://Example.com/a/b?x=1&y=%E4%B8%AD')).toBeDefined();
    expect(signedWith(world.sim, TEST_APPID, config, page)).toBeUndefined();
  });

  it.each([
    ['a relative URL', '/pay?order=1'],
    ['a javascript: URL', 'javascript:alert(1)'],
    ['a 5000-character URL', `https://example.com/${'a'.repeat(4980)}`],
    ['no URL', undefined],
  ])('answers %s with 400 invalid_request, over HTTP too', async (_case, url) => {
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: unique('badurl') }) });
    world.sim.resetCounters();
    const body = (await handler({ action: 'jssdk_config', appid: TEST_APPID, url })) as ErrorBody;
    expect(body.error.code).toBe('invalid_request');
    expect(body.error.message).toMatch(/url/);
    const http = (await handler(
      httpV2('POST', '/jssdk/config', {
        headers: bearer(CLIENT_KEY),
        body: JSON.stringify({ appid: TEST_APPID, url }),
      }),
    )) as {
      statusCode: number;
      body: string;
    };
    expect(http.statusCode).toBe(400);
    expect((JSON.parse(http.body) as ErrorBody).error.code).toBe('invalid_request');
    expect(world.sim.calls.total).toBe(0);
  });
});

describe('tickets', () => {
  it('keeps jsapi and wx_card tickets as separate records with separate WeChat calls', async () => {
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: unique('types') }) });
    world.sim.resetCounters();
    const jsapi = (await handler({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' })) as TicketBody;
    const card = (await handler({ action: 'get_ticket', appid: TEST_APPID, type: 'wx_card' })) as TicketBody;
    expect(jsapi.ticket).not.toBe(card.ticket);
    expect(world.sim.calls.ticket).toBe(2);
    await handler({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' });
    await handler({ action: 'get_ticket', appid: TEST_APPID, type: 'wx_card' });
    expect(world.sim.calls.ticket).toBe(2);
    expect(world.sim.ticketStatus(jsapi.ticket)).toBe('valid');
    expect(world.sim.ticketsIssued(TEST_APPID, 'wx_card').map((t) => t.ticket)).toEqual([card.ticket]);
  });

  it('serves GET /ticket over HTTP with a scoped key', async () => {
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: unique('httpticket') }) });
    const result = (await handler(
      httpV2('GET', '/ticket', { query: { appid: TEST_APPID, type: 'jsapi' }, headers: bearer(CLIENT_KEY) }),
    )) as {
      statusCode: number;
      body: string;
    };
    expect(result.statusCode).toBe(200);
    expect(world.sim.ticketStatus((JSON.parse(result.body) as TicketBody).ticket)).toBe('valid');
    const badType = (await handler(
      httpV2('GET', '/ticket', { query: { appid: TEST_APPID, type: 'card' }, headers: bearer(CLIENT_KEY) }),
    )) as {
      statusCode: number;
    };
    expect(badType.statusCode).toBe(400);
  });

  it('recovers from an outside token rotation with one token refresh and one ticket retry', async () => {
    const handler = createHandler({
      // An outside rotation kills classic tokens only.
      env: world.env({
        CACHE_KEY_PREFIX: unique('rotated'),
        PASSIVE_REFRESH_MIN_AGE_SECONDS: '0',
        ...CLASSIC_FIRST,
      }),
    });
    const token = (await handler({ appid: TEST_APPID })) as TokenBody;
    world.sim.rotateExternally(TEST_APPID);
    world.sim.rotateExternally(TEST_APPID);
    expect(world.sim.tokenStatus(token.access_token)).toBe('invalidated');
    world.sim.resetCounters();
    const ticket = (await handler({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' })) as TicketBody;
    expect(world.sim.ticketStatus(ticket.ticket)).toBe('valid');
    expect(world.sim.calls.token).toBe(1);
    expect(world.sim.calls.ticket).toBe(2);
  });

  it('gives up after one retry when the refreshed token is refused too, without looping', async () => {
    const handler = createHandler({
      env: world.env({ CACHE_KEY_PREFIX: unique('noloop'), PASSIVE_REFRESH_MIN_AGE_SECONDS: '0' }),
    });
    await handler({ appid: TEST_APPID });
    world.sim.resetCounters();
    world.sim.inject({ endpoint: 'ticket', errcode: 40001, times: 10 });
    const body = (await handler({ action: 'get_ticket', appid: TEST_APPID, type: 'jsapi' })) as ErrorBody;
    expect(body.error.code).toBe('wechat_rejected');
    expect(world.sim.calls.ticket).toBe(2);
    expect(world.sim.calls.token).toBe(1);
  });
});
