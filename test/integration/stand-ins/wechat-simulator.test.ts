import { Agent, request as httpRequest } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type SimulatorOptions,
  startWeChatSimulator,
  type WeChatSimulator,
} from '../../../local/stand-ins/wechat-simulator.ts';

const APP = { appid: 'wx1111111111111111', secret: '0123456789abcdef0123456789abcdef' };
const OTHER = { appid: 'wx2222222222222222', secret: 'fedcba9876543210fedcba9876543210' };
const START = Date.UTC(2025, 0, 15, 4, 0, 0); // 12:00 in UTC+8
const SEC = 1000;
const MIN = 60 * SEC;
const RID = / rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/;
const TOKEN_CHARS = /^[A-Za-z0-9_-]+$/;

type Body = Record<string, unknown>;

let t = START;
const open: WeChatSimulator[] = [];

beforeEach(() => {
  t = START;
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((sim) => sim.close()));
});

async function start(options: Partial<SimulatorOptions> = {}): Promise<WeChatSimulator> {
  const sim = await startWeChatSimulator({ apps: [APP, OTHER], now: () => t, ...options });
  open.push(sim);
  return sim;
}

async function getJson(sim: WeChatSimulator, path: string): Promise<Body> {
  const res = await fetch(`${sim.baseUrl}${path}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Body;
}

function classic(sim: WeChatSimulator, app: { appid: string; secret: string } = APP): Promise<Body> {
  return getJson(sim, `/cgi-bin/token?grant_type=client_credential&appid=${app.appid}&secret=${app.secret}`);
}

async function classicToken(sim: WeChatSimulator, app = APP): Promise<string> {
  const body = await classic(sim, app);
  expect(typeof body.access_token).toBe('string');
  return body.access_token as string;
}

async function stable(sim: WeChatSimulator, body: unknown, raw?: string): Promise<Body> {
  const res = await fetch(`${sim.baseUrl}/cgi-bin/stable_token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ?? JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Body;
}

function stableFor(sim: WeChatSimulator, forceRefresh = false, app = APP): Promise<Body> {
  return stable(sim, {
    grant_type: 'client_credential',
    appid: app.appid,
    secret: app.secret,
    force_refresh: forceRefresh,
  });
}

function ticket(sim: WeChatSimulator, token: string, type = 'jsapi'): Promise<Body> {
  return getJson(sim, `/cgi-bin/ticket/getticket?access_token=${encodeURIComponent(token)}&type=${type}`);
}

function business(sim: WeChatSimulator, token: string): Promise<Body> {
  return getJson(sim, `/cgi-bin/get_api_domain_ip?access_token=${encodeURIComponent(token)}`);
}

function expectError(body: Body, errcode: number, errmsg?: string): void {
  expect(body.errcode).toBe(errcode);
  expect(body.errmsg).toMatch(RID);
  if (errmsg !== undefined) expect((body.errmsg as string).replace(RID, '')).toBe(errmsg);
  expect(body.access_token).toBeUndefined();
  expect(body.ticket).toBeUndefined();
}

describe('classic token: GET /cgi-bin/token', () => {
  it('answers {access_token, expires_in} with no errcode field', async () => {
    const sim = await start();
    const body = await classic(sim);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in']);
    expect(body.expires_in).toBe(7200);
    const token = body.access_token as string;
    expect(token).toMatch(TOKEN_CHARS);
    expect(token.length).toBeGreaterThanOrEqual(120);
    expect(token.length).toBeLessThanOrEqual(140);
    expect(sim.tokenStatus(token)).toBe('valid');
    expect(sim.tokenInfo(token)).toEqual({
      appid: APP.appid,
      kind: 'classic',
      issuedAtMs: START,
      expiresAtMs: START + 7200 * SEC,
      deadAtMs: START + 7200 * SEC,
    });
  });

  it('answers JSON with a JSON content type', async () => {
    const sim = await start();
    const res = await fetch(
      `${sim.baseUrl}/cgi-bin/token?grant_type=client_credential&appid=${APP.appid}&secret=${APP.secret}`,
    );
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('uses tokenLifetimeSeconds for expires_in, and setTokenLifetime for tokens issued later', async () => {
    const sim = await start({ tokenLifetimeSeconds: 3600 });
    expect((await classic(sim)).expires_in).toBe(3600);
    sim.setTokenLifetime(120);
    const body = await classic(sim);
    expect(body.expires_in).toBe(120);
    expect(sim.tokenInfo(body.access_token as string)?.expiresAtMs).toBe(START + 120 * SEC);
  });

  it.each([
    ['grant_type missing', `appid=${APP.appid}&secret=${APP.secret}`, 40002, 'invalid grant_type'],
    [
      'grant_type wrong',
      `grant_type=authorization_code&appid=${APP.appid}&secret=${APP.secret}`,
      40002,
      undefined,
    ],
    ['appid missing', `grant_type=client_credential&secret=${APP.secret}`, 41002, 'appid missing'],
    ['appid empty', `grant_type=client_credential&appid=&secret=${APP.secret}`, 41002, undefined],
    ['secret missing', `grant_type=client_credential&appid=${APP.appid}`, 41004, 'appsecret missing'],
    [
      'appid unknown',
      `grant_type=client_credential&appid=wx9999999999999999&secret=x`,
      40013,
      'invalid appid',
    ],
    [
      'secret wrong (40001, as WeChat reuses it)',
      `grant_type=client_credential&appid=${APP.appid}&secret=wrong`,
      40001,
      'invalid credential, access_token is invalid or not latest',
    ],
  ])('answers HTTP 200 with an errcode when %s', async (_name, query, errcode, errmsg) => {
    const sim = await start();
    expectError(await getJson(sim, `/cgi-bin/token?${query}`), errcode, errmsg);
    expect(sim.calls.token).toBe(1);
  });

  it('rejects a non-GET request with 43001', async () => {
    const sim = await start();
    const res = await fetch(
      `${sim.baseUrl}/cgi-bin/token?grant_type=client_credential&appid=${APP.appid}&secret=${APP.secret}`,
      { method: 'POST', body: '{}' },
    );
    expect(res.status).toBe(200);
    expectError((await res.json()) as Body, 43001, 'require GET method');
  });

  it('issues a new token on every fetch and keeps the previous one usable for the 5-minute overlap only', async () => {
    const sim = await start();
    const first = await classicToken(sim);
    t += 60 * MIN;
    const second = await classicToken(sim);
    expect(second).not.toBe(first);
    expect(sim.tokenStatus(first)).toBe('valid');
    expect(sim.tokenInfo(first)?.invalidatedAtMs).toBe(t + 5 * MIN);
    expect(sim.tokenInfo(first)?.deadAtMs).toBe(t + 5 * MIN);
    expect((await business(sim, first)).ip_list).toBeDefined();

    t += 5 * MIN - 1;
    expect(sim.tokenStatus(first)).toBe('valid');
    t += 1;
    expect(sim.tokenStatus(first)).toBe('invalidated');
    expectError(await business(sim, first), 40001);
    expect(sim.tokenStatus(second)).toBe('valid');
  });

  it('kills the token before last at once when two classic fetches happen within the overlap', async () => {
    const sim = await start();
    const a = await classicToken(sim);
    t += 10 * SEC;
    const b = await classicToken(sim);
    t += 10 * SEC;
    const c = await classicToken(sim);
    expect(sim.tokenStatus(a)).toBe('invalidated');
    expect(sim.tokenInfo(a)?.invalidatedAtMs).toBe(t);
    expect(sim.tokenStatus(b)).toBe('valid');
    expect(sim.tokenStatus(c)).toBe('valid');
    expectError(await business(sim, a), 40001);
    expect((await business(sim, b)).ip_list).toBeDefined();
  });

  it('lets the previous token die at its natural expiry when that comes before the overlap ends', async () => {
    const sim = await start({ tokenLifetimeSeconds: 600 });
    const a = await classicToken(sim);
    t += 8 * MIN;
    await classicToken(sim);
    const info = sim.tokenInfo(a);
    expect(info?.invalidatedAtMs).toBeUndefined();
    expect(info?.deadAtMs).toBe(START + 10 * MIN);
    t = START + 10 * MIN;
    expect(sim.tokenStatus(a)).toBe('expired');
    expectError(await business(sim, a), 42001);
  });

  it('answers 42001 at the business endpoint once a token is past its natural expiry', async () => {
    const sim = await start();
    const token = await classicToken(sim);
    t += 7200 * SEC - 1;
    expect((await business(sim, token)).ip_list).toEqual(['101.226.103.0/25', '101.226.233.128/25']);
    t += 1;
    expect(sim.tokenStatus(token)).toBe('expired');
    expectError(await business(sim, token), 42001, 'access_token expired');
  });

  it('checks tokens at the business endpoint: missing 41001, unknown 40001', async () => {
    const sim = await start();
    expectError(await getJson(sim, '/cgi-bin/get_api_domain_ip'), 41001, 'access_token missing');
    expectError(await business(sim, 'not-a-token'), 40001);
    expect(sim.tokenStatus('not-a-token')).toBe('unknown');
    expect(sim.tokenInfo('not-a-token')).toBeUndefined();
    expect(sim.calls.business).toBe(2);
  });

  it('keeps apps apart: fetching for one app never touches the other', async () => {
    const sim = await start();
    const a = await classicToken(sim, APP);
    await classicToken(sim, OTHER);
    await classicToken(sim, OTHER);
    expect(sim.tokenStatus(a)).toBe('valid');
    expect(sim.tokenInfo(a)?.invalidatedAtMs).toBeUndefined();
  });
});

describe('stable token: POST /cgi-bin/stable_token', () => {
  it('returns the same token with a decreasing remaining expires_in in normal mode', async () => {
    const sim = await start();
    const first = await stableFor(sim);
    expect(Object.keys(first).sort()).toEqual(['access_token', 'expires_in']);
    expect(first.expires_in).toBe(7200);
    expect(first.access_token as string).toMatch(TOKEN_CHARS);
    expect(sim.tokenInfo(first.access_token as string)?.kind).toBe('stable');

    t += 1000 * SEC + 400;
    const second = await stableFor(sim);
    expect(second.access_token).toBe(first.access_token);
    expect(second.expires_in).toBe(6199);

    t = START + (7200 - 301) * SEC;
    const third = await stableFor(sim);
    expect(third.access_token).toBe(first.access_token);
    expect(third.expires_in).toBe(301);
  });

  it('treats an omitted force_refresh as normal mode', async () => {
    const sim = await start();
    const a = await stable(sim, { grant_type: 'client_credential', appid: APP.appid, secret: APP.secret });
    const b = await stable(sim, { grant_type: 'client_credential', appid: APP.appid, secret: APP.secret });
    expect(b.access_token).toBe(a.access_token);
    expect(sim.calls.stableTokenForce).toBe(0);
  });

  it('issues a new token in the last 5 minutes, and the previous one lives on to its natural expiry', async () => {
    const sim = await start();
    const old = (await stableFor(sim)).access_token as string;
    t = START + (7200 - 300) * SEC;
    const fresh = await stableFor(sim);
    expect(fresh.access_token).not.toBe(old);
    expect(fresh.expires_in).toBe(7200);
    expect(sim.tokenStatus(old)).toBe('valid');
    expect(sim.tokenInfo(old)?.invalidatedAtMs).toBeUndefined();
    expect((await business(sim, old)).ip_list).toBeDefined();

    t = START + 7200 * SEC;
    expect(sim.tokenStatus(old)).toBe('expired');
    expectError(await business(sim, old), 42001);
    expect((await stableFor(sim)).access_token).toBe(fresh.access_token);
  });

  it('keeps stable and classic tokens isolated from each other', async () => {
    const sim = await start();
    const s = (await stableFor(sim)).access_token as string;
    const c1 = await classicToken(sim);
    await classicToken(sim);
    await classicToken(sim);
    expect(sim.tokenStatus(s)).toBe('valid');
    expect(sim.tokenStatus(c1)).toBe('invalidated');
    expect((await stableFor(sim)).access_token).toBe(s);

    const c = await classicToken(sim);
    await stableFor(sim, true);
    t += 31 * SEC;
    await stableFor(sim, true);
    expect(sim.tokenStatus(c)).toBe('valid');
    expect(sim.tokenInfo(c)?.invalidatedAtMs).toBeUndefined();
  });

  it('rejects a non-POST request with 43002', async () => {
    const sim = await start();
    expectError(await getJson(sim, '/cgi-bin/stable_token'), 43002, 'require POST method');
  });

  it.each([
    ['not JSON', 'grant_type=client_credential'],
    ['empty', ''],
    ['a JSON array', '[]'],
  ])('answers 47001 when the body is %s', async (_name, raw) => {
    const sim = await start();
    expectError(await stable(sim, undefined, raw), 47001, 'data format error');
  });

  it.each([
    ['grant_type missing', { appid: APP.appid, secret: APP.secret }, 40002],
    ['grant_type wrong', { grant_type: 'x', appid: APP.appid, secret: APP.secret }, 40002],
    ['appid missing', { grant_type: 'client_credential', secret: APP.secret }, 41002],
    ['secret missing', { grant_type: 'client_credential', appid: APP.appid }, 41004],
    ['appid unknown', { grant_type: 'client_credential', appid: 'wx0000000000000000', secret: 'x' }, 40013],
    ['secret wrong', { grant_type: 'client_credential', appid: APP.appid, secret: 'nope' }, 40001],
  ])('answers an errcode when %s', async (_name, body, errcode) => {
    const sim = await start();
    expectError(await stable(sim, body), errcode);
  });

  it('force refresh issues a new token; the previous one lives at most 5 more minutes', async () => {
    const sim = await start();
    const a = (await stableFor(sim)).access_token as string;
    t += 10 * MIN;
    const b = await stableFor(sim, true);
    expect(b.access_token).not.toBe(a);
    expect(b.expires_in).toBe(7200);
    expect(sim.tokenInfo(a)?.invalidatedAtMs).toBe(t + 5 * MIN);
    expect(sim.tokenStatus(a)).toBe('valid');
    t += 5 * MIN;
    expect(sim.tokenStatus(a)).toBe('invalidated');
    expectError(await business(sim, a), 40001);
  });

  it('does not refresh when force calls are less than 30 s apart, and two forces 30 s apart kill a leaked token', async () => {
    const sim = await start();
    const leaked = (await stableFor(sim)).access_token as string;
    const b = (await stableFor(sim, true)).access_token as string;
    t += 29 * SEC;
    const same = await stableFor(sim, true);
    expect(same.access_token).toBe(b);
    expect(same.expires_in).toBe(7200 - 29);
    expect(sim.tokenStatus(leaked)).toBe('valid');

    t += 1 * SEC;
    const c = (await stableFor(sim, true)).access_token as string;
    expect(c).not.toBe(b);
    expect(sim.tokenStatus(leaked)).toBe('invalidated');
    expect(sim.tokenStatus(b)).toBe('valid');
    expect(sim.tokenInfo(b)?.invalidatedAtMs).toBe(t + 5 * MIN);

    expect(sim.calls.stableToken).toBe(4);
    expect(sim.calls.stableTokenForce).toBe(3);
    expect(sim.calls.stableTokenForceRefreshes).toBe(2);
  });

  it('answers 45009 after 20 force refreshes in a day and allows them again the next day', async () => {
    const sim = await start();
    for (let i = 0; i < 20; i++) {
      expect((await stableFor(sim, true)).access_token).toBeDefined();
      t += 30 * SEC;
    }
    expectError(await stableFor(sim, true), 45009, 'reach max api daily quota limit');
    expect((await stableFor(sim, false)).access_token).toBeDefined();
    expect(sim.calls.stableTokenForceRefreshes).toBe(20);

    t = Date.UTC(2025, 0, 15, 16, 0, 0); // midnight in UTC+8
    expect((await stableFor(sim, true)).access_token).toBeDefined();
    expect(sim.calls.stableTokenForceRefreshes).toBe(21);
  });

  it('honours stableForceDailyLimit and stableForceMinIntervalSeconds options', async () => {
    const sim = await start({ stableForceDailyLimit: 2, stableForceMinIntervalSeconds: 5 });
    const a = (await stableFor(sim, true)).access_token;
    t += 5 * SEC;
    const b = (await stableFor(sim, true)).access_token;
    expect(b).not.toBe(a);
    t += 5 * SEC;
    expectError(await stableFor(sim, true), 45009);
  });
});

describe('tickets: GET /cgi-bin/ticket/getticket', () => {
  it('answers {errcode:0, errmsg:"ok", ticket, expires_in}', async () => {
    const sim = await start();
    const token = await classicToken(sim);
    const body = await ticket(sim, token);
    expect(Object.keys(body).sort()).toEqual(['errcode', 'errmsg', 'expires_in', 'ticket']);
    expect(body.errcode).toBe(0);
    expect(body.errmsg).toBe('ok');
    expect(body.expires_in).toBe(7200);
    expect(sim.ticketStatus(body.ticket as string)).toBe('valid');
  });

  it('returns the same ticket with the FULL expires_in while it lives, then a new one', async () => {
    const sim = await start({ ticketLifetimeSeconds: 7200 });
    const token = (await stableFor(sim)).access_token as string;
    const first = await ticket(sim, token);
    t += 7000 * SEC;
    const again = await ticket(sim, token);
    expect(again.ticket).toBe(first.ticket);
    expect(again.expires_in).toBe(7200);
    expect(sim.ticketStatus(first.ticket as string)).toBe('valid');

    t = START + 7200 * SEC;
    expect(sim.ticketStatus(first.ticket as string)).toBe('expired');
    const token2 = (await stableFor(sim)).access_token as string;
    const next = await ticket(sim, token2);
    expect(next.ticket).not.toBe(first.ticket);
    expect(next.expires_in).toBe(7200);
    expect(sim.ticketsIssued(APP.appid, 'jsapi')).toEqual([
      {
        ticket: first.ticket,
        type: 'jsapi',
        issuedAtMs: START,
        expiresAtMs: START + 7200 * SEC,
        accessToken: token,
      },
      {
        ticket: next.ticket,
        type: 'jsapi',
        issuedAtMs: t,
        expiresAtMs: t + 7200 * SEC,
        accessToken: token2,
      },
    ]);
  });

  it('keeps tickets valid when the access token rotates', async () => {
    const sim = await start();
    const t1 = await classicToken(sim);
    const first = await ticket(sim, t1);
    await classicToken(sim);
    const t3 = await classicToken(sim);
    expect(sim.tokenStatus(t1)).toBe('invalidated');
    expect(sim.ticketStatus(first.ticket as string)).toBe('valid');
    expect((await ticket(sim, t3)).ticket).toBe(first.ticket);
  });

  it('keeps jsapi and wx_card tickets separate', async () => {
    const sim = await start({ ticketLifetimeSeconds: 600 });
    const token = await classicToken(sim);
    const jsapi = await ticket(sim, token, 'jsapi');
    t += 5 * MIN;
    const card = await ticket(sim, token, 'wx_card');
    expect(card.ticket).not.toBe(jsapi.ticket);
    expect(card.expires_in).toBe(600);
    t += 5 * MIN;
    expect(sim.ticketStatus(jsapi.ticket as string)).toBe('expired');
    expect(sim.ticketStatus(card.ticket as string)).toBe('valid');
    expect((await ticket(sim, token, 'wx_card')).ticket).toBe(card.ticket);
    expect(sim.ticketsIssued(APP.appid, 'jsapi')).toHaveLength(1);
    expect(sim.ticketsIssued(APP.appid, 'wx_card')).toHaveLength(1);
    expect(sim.ticketsIssued(OTHER.appid, 'jsapi')).toEqual([]);
  });

  it('keeps each app its own ticket', async () => {
    const sim = await start();
    const a = await ticket(sim, await classicToken(sim, APP));
    const b = await ticket(sim, await classicToken(sim, OTHER));
    expect(a.ticket).not.toBe(b.ticket);
  });

  it('answers 40001 for a dead (invalidated) or unknown token and 42001 for an expired one', async () => {
    const sim = await start();
    const dead = await classicToken(sim);
    await classicToken(sim);
    await classicToken(sim);
    expect(sim.tokenStatus(dead)).toBe('invalidated');
    expectError(await ticket(sim, dead), 40001, 'invalid credential, access_token is invalid or not latest');
    expectError(await ticket(sim, 'garbage'), 40001);

    const s = (await stableFor(sim)).access_token as string;
    t += 7200 * SEC;
    expectError(await ticket(sim, s), 42001, 'access_token expired');
    expect(sim.ticketsIssued(APP.appid, 'jsapi')).toEqual([]);
  });

  it('answers 41001 without access_token and 40097 for a missing or unknown type', async () => {
    const sim = await start();
    const token = await classicToken(sim);
    expectError(await getJson(sim, '/cgi-bin/ticket/getticket?type=jsapi'), 41001);
    expectError(
      await getJson(sim, `/cgi-bin/ticket/getticket?access_token=${encodeURIComponent(token)}`),
      40097,
      'invalid args',
    );
    expectError(await ticket(sim, token, 'wx_jsapi'), 40097);
    expect(sim.ticketStatus('nope')).toBe('unknown');
  });
});

describe('quotas', () => {
  it('answers 45009 over the classic daily quota and resets at midnight UTC+8, not UTC', async () => {
    t = Date.UTC(2025, 0, 15, 15, 0, 0); // 23:00 in UTC+8
    const sim = await start({ classicDailyQuota: 3 });
    for (let i = 0; i < 3; i++) await classicToken(sim);
    expectError(await classic(sim), 45009, 'reach max api daily quota limit');
    expect(sim.calls.token).toBe(4);
    expect((await classic(sim, OTHER)).access_token).toBeDefined();

    t = Date.UTC(2025, 0, 15, 16, 0, 0) - 1; // 23:59:59.999 in UTC+8
    expectError(await classic(sim), 45009);
    t += 1; // midnight in UTC+8
    for (let i = 0; i < 3; i++) await classicToken(sim);
    expectError(await classic(sim), 45009);

    t = Date.UTC(2025, 0, 16, 0, 0, 0); // midnight UTC: same UTC+8 day
    expectError(await classic(sim), 45009);
  });

  it('does not count failed calls against the quota', async () => {
    const sim = await start({ classicDailyQuota: 1 });
    await getJson(sim, `/cgi-bin/token?grant_type=client_credential&appid=${APP.appid}&secret=bad`);
    expect((await classic(sim)).access_token).toBeDefined();
  });

  it('answers 45009 over the stable and ticket quotas', async () => {
    const sim = await start({ stableDailyQuota: 2, ticketDailyQuota: 2 });
    const token = (await stableFor(sim)).access_token as string;
    await stableFor(sim);
    expectError(await stableFor(sim), 45009);
    await ticket(sim, token, 'jsapi');
    await ticket(sim, token, 'wx_card');
    expectError(await ticket(sim, token, 'jsapi'), 45009);
  });

  it('clears quota usage with resetQuota, for one app or all', async () => {
    const sim = await start({ classicDailyQuota: 1 });
    await classicToken(sim, APP);
    await classicToken(sim, OTHER);
    sim.resetQuota(APP.appid);
    expect((await classic(sim, APP)).access_token).toBeDefined();
    expectError(await classic(sim, OTHER), 45009);
    sim.resetQuota();
    expect((await classic(sim, APP)).access_token).toBeDefined();
    expect((await classic(sim, OTHER)).access_token).toBeDefined();
  });
});

describe('quota reset: POST /cgi-bin/clear_quota/v2', () => {
  async function clearQuota(
    sim: WeChatSimulator,
    params: { appid?: string; appsecret?: string },
    how: 'query' | 'body' = 'body',
    method = 'POST',
  ): Promise<Body> {
    const query = how === 'query' ? `?${new URLSearchParams(params as Record<string, string>)}` : '';
    const res = await fetch(`${sim.baseUrl}/cgi-bin/clear_quota/v2${query}`, {
      method,
      ...(how === 'body' && method === 'POST'
        ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(params) }
        : {}),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Body;
  }

  it('clears the app’s daily quotas (appid and appsecret as JSON body or as URL parameters)', async () => {
    const sim = await start({ classicDailyQuota: 1, ticketDailyQuota: 1 });
    const token = await classicToken(sim);
    await ticket(sim, token);
    expectError(await classic(sim), 45009);
    expectError(await ticket(sim, token), 45009);
    expect(await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret })).toEqual({
      errcode: 0,
      errmsg: 'ok',
    });
    const fresh = await classicToken(sim);
    expect((await ticket(sim, fresh)).ticket).toBeDefined();
    expectError(await classic(sim), 45009);
    expect(await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret }, 'query')).toEqual({
      errcode: 0,
      errmsg: 'ok',
    });
    expect((await classic(sim)).access_token).toBeDefined();
    expect(sim.calls.clearQuota).toBe(2);
    expect(sim.callsFor(APP.appid).clearQuota).toBe(2);
    expect(sim.quotaResetsUsed(APP.appid)).toBe(2);
    expect(sim.quotaResetsUsed(OTHER.appid)).toBe(0);
  });

  it('allows 10 resets per app per calendar month in UTC+8, shared with the console’s, then answers 48006', async () => {
    t = Date.UTC(2025, 0, 31, 15, 0, 0); // 23:00 on 31 January in UTC+8
    const sim = await start();
    for (let i = 0; i < 9; i++) {
      expect((await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret })).errcode).toBe(0);
    }
    sim.clearQuotaAsOperator(APP.appid); // the tenth, in the console
    expectError(
      await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret }),
      48006,
      'forbid to clear quota because of reaching the limit',
    );
    expect(() => sim.clearQuotaAsOperator(APP.appid)).toThrow(/48006/);
    expect(sim.quotaResetsUsed(APP.appid)).toBe(10);
    // Another app has its own budget; a new month (UTC+8) brings 10 more.
    expect((await clearQuota(sim, { appid: OTHER.appid, appsecret: OTHER.secret })).errcode).toBe(0);
    t = Date.UTC(2025, 0, 31, 16, 0, 0); // midnight, 1 February in UTC+8
    expect((await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret })).errcode).toBe(0);
  });

  it('checks method, parameters and credentials in WeChat’s order, using no reset on failure', async () => {
    const sim = await start();
    expectError(await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret }, 'query', 'GET'), 43002);
    expectError(await clearQuota(sim, { appsecret: APP.secret }), 41002);
    expectError(await clearQuota(sim, { appid: APP.appid }), 41004);
    expectError(await clearQuota(sim, { appid: 'wx9999999999999999', appsecret: APP.secret }), 40013);
    expectError(await clearQuota(sim, { appid: APP.appid, appsecret: OTHER.secret }), 40001);
    expect(sim.quotaResetsUsed(APP.appid)).toBe(0);
  });

  it('exhaustQuota uses up one endpoint’s daily quota at once', async () => {
    const sim = await start();
    sim.exhaustQuota(APP.appid, 'token');
    expectError(await classic(sim), 45009);
    expect((await stableFor(sim)).access_token).toBeDefined();
    sim.exhaustQuota(APP.appid, 'stable_token');
    expectError(await stableFor(sim), 45009);
    const token = await classicToken(sim, OTHER);
    sim.exhaustQuota(OTHER.appid, 'ticket');
    expectError(await ticket(sim, token), 45009);
  });

  it('can fail on purpose like every endpoint', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'clear_quota', errcode: -1 });
    expectError(await clearQuota(sim, { appid: APP.appid, appsecret: APP.secret }), -1);
    expect(sim.quotaResetsUsed(APP.appid)).toBe(0);
  });
});

describe('fault injection', () => {
  it("answers an injected 40164 with WeChat's errmsg echoing the egress IP", async () => {
    const sim = await start();
    sim.inject({ endpoint: 'token', errcode: 40164 });
    const body = await classic(sim);
    expect(body.errcode).toBe(40164);
    expect(body.errmsg).toMatch(
      /^invalid ip 203\.0\.113\.7 ipv6 ::ffff:203\.0\.113\.7, not in whitelist rid: [0-9a-f-]+$/,
    );
    expect((await classic(sim)).access_token).toBeDefined();
  });

  it('uses the egressIp option in the 40164 errmsg', async () => {
    const sim = await start({ egressIp: '198.51.100.9' });
    sim.inject({ endpoint: 'stable_token', errcode: 40164 });
    const body = await stableFor(sim);
    expectError(body, 40164, 'invalid ip 198.51.100.9 ipv6 ::ffff:198.51.100.9, not in whitelist');
  });

  it('applies a fault `times` times, with a custom errmsg, then answers normally', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'token', errcode: -1, errmsg: 'system busy', times: 2 });
    expectError(await classic(sim), -1, 'system busy');
    expectError(await classic(sim), -1, 'system busy');
    expect((await classic(sim)).access_token).toBeDefined();
    expect(sim.calls.token).toBe(3);
  });

  it('answers an HTTP 502 with a short HTML body', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'token', httpStatus: 502 });
    const res = await fetch(
      `${sim.baseUrl}/cgi-bin/token?grant_type=client_credential&appid=${APP.appid}&secret=${APP.secret}`,
    );
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toContain('502 Bad Gateway');
    expect(sim.calls.token).toBe(1);
  });

  it('resets the connection without answering', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'business', reset: true });
    const token = await classicToken(sim);
    await expect(fetch(`${sim.baseUrl}/cgi-bin/get_api_domain_ip?access_token=${token}`)).rejects.toThrow();
    expect((await business(sim, token)).ip_list).toBeDefined();
    expect(sim.calls.business).toBe(2);
  });

  it('delays the normal answer by latencyMs', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'token', latencyMs: 150 });
    const started = performance.now();
    const body = await classic(sim);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(body.access_token).toBeDefined();
  });

  it('combines latency with an errcode', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'any', latencyMs: 50, errcode: 45011 });
    const started = performance.now();
    expectError(await classic(sim), 45011);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });

  it('matches faults by endpoint and appid, consuming them in FIFO order', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'ticket', errcode: 45009 });
    sim.inject({ endpoint: 'token', errcode: 40164, appid: OTHER.appid });
    sim.inject({ endpoint: 'token', errcode: -1 });
    sim.inject({ endpoint: 'token', errcode: 40243 });
    sim.inject({ endpoint: 'any', errcode: 48001 });

    expect((await stableFor(sim)).errcode).toBe(48001); // only the `any` fault matches stable_token
    expectError(await classic(sim, APP), -1); // skips the OTHER-only fault
    expectError(await classic(sim, OTHER), 40164);
    expectError(await classic(sim, OTHER), 40243);
    const token = await classicToken(sim);
    expectError(await ticket(sim, token), 45009);
    expect((await ticket(sim, token)).errcode).toBe(0);
  });

  it("matches appid faults on ticket and business requests through the token's app", async () => {
    const sim = await start();
    const mine = await classicToken(sim, APP);
    const theirs = await classicToken(sim, OTHER);
    sim.inject({ endpoint: 'business', errcode: 40001, appid: OTHER.appid });
    expect((await business(sim, mine)).ip_list).toBeDefined();
    expectError(await business(sim, theirs), 40001);
  });

  it('drops queued faults with clearFaults', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'any', errcode: -1, times: 5 });
    sim.clearFaults();
    expect((await classic(sim)).access_token).toBeDefined();
  });

  it('counts faulted requests per endpoint and per app', async () => {
    const sim = await start();
    sim.inject({ endpoint: 'any', errcode: -1, times: 3 });
    await classic(sim);
    await stableFor(sim, true);
    await classic(sim, OTHER);
    expect(sim.calls).toMatchObject({
      token: 2,
      stableToken: 1,
      stableTokenForce: 1,
      stableTokenForceRefreshes: 0,
    });
    expect(sim.callsFor(APP.appid)).toMatchObject({
      token: 1,
      stableToken: 1,
      stableTokenForce: 1,
      total: 2,
    });
    expect(sim.callsFor(OTHER.appid)).toMatchObject({ token: 1, total: 1 });
  });
});

describe('counters', () => {
  it('counts every request live, per endpoint and per app, and resets', async () => {
    const sim = await start();
    const calls = sim.calls;
    const token = await classicToken(sim);
    await getJson(sim, '/cgi-bin/token');
    await stableFor(sim);
    await ticket(sim, token);
    await business(sim, token);
    await business(sim, 'unknown-token');
    const res = await fetch(`${sim.baseUrl}/cgi-bin/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as Body).errcode).toBe(-1);

    expect(calls).toEqual({
      token: 2,
      stableToken: 1,
      stableTokenForce: 0,
      stableTokenForceRefreshes: 0,
      ticket: 1,
      business: 2,
      clearQuota: 0,
      quota: 0,
      external: 0,
      total: 7,
    });
    expect(sim.callsFor(APP.appid)).toEqual({
      token: 1,
      stableToken: 1,
      stableTokenForce: 0,
      stableTokenForceRefreshes: 0,
      ticket: 1,
      business: 1,
      clearQuota: 0,
      quota: 0,
      external: 0,
      total: 4,
    });
    expect(sim.callsFor('wx-never-seen').total).toBe(0);

    sim.resetCounters();
    expect(calls.total).toBe(0);
    expect(calls.token).toBe(0);
    expect(sim.callsFor(APP.appid).token).toBe(0);
  });
});

describe('outside parties and secret rotation', () => {
  it('rotateExternally issues a classic token like an outside /cgi-bin/token call', async () => {
    const sim = await start({ classicDailyQuota: 3 });
    const a = await classicToken(sim);
    t += 10 * SEC;
    const b = await classicToken(sim);
    t += 10 * SEC;
    const external = sim.rotateExternally(APP.appid);
    expect(external).toMatch(TOKEN_CHARS);
    expect(sim.tokenInfo(external)?.kind).toBe('classic');
    expect(sim.tokenStatus(a)).toBe('invalidated');
    expect(sim.tokenInfo(b)?.invalidatedAtMs).toBe(t + 5 * MIN);
    expect(sim.calls.external).toBe(1);
    expect(sim.callsFor(APP.appid).external).toBe(1);
    expect(sim.calls.token).toBe(2);
    expect(sim.calls.total).toBe(2);

    expectError(await classic(sim), 45009); // the outside call used the app's quota
    expect(() => sim.rotateExternally(APP.appid)).toThrow(/45009/);
    expect(() => sim.rotateExternally('wx-unknown')).toThrow(/40013/);
  });

  it('setSecret makes the old secret fail with 40001 and the new one work, without killing tokens', async () => {
    const sim = await start();
    const token = await classicToken(sim);
    sim.setSecret(APP.appid, 'new-secret');
    expectError(await classic(sim), 40001);
    expectError(
      await stable(sim, { grant_type: 'client_credential', appid: APP.appid, secret: APP.secret }),
      40001,
    );
    expect((await classic(sim, { appid: APP.appid, secret: 'new-secret' })).access_token).toBeDefined();
    expect(sim.tokenStatus(token)).toBe('valid');
    expect(() => sim.setSecret('wx-unknown', 'x')).toThrow();
  });
});

describe('HTTP behaviour', () => {
  it('serves several requests over one keep-alive connection', async () => {
    const sim = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const path = `/cgi-bin/token?grant_type=client_credential&appid=${APP.appid}&secret=${APP.secret}`;
    const get = () =>
      new Promise<{ reused: boolean; body: Body }>((resolve, reject) => {
        const req = httpRequest(`${sim.baseUrl}${path}`, { agent }, (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            data += chunk;
          });
          res.on('end', () => resolve({ reused: req.reusedSocket, body: JSON.parse(data) as Body }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const first = await get();
      const second = await get();
      expect(first.reused).toBe(false);
      expect(second.reused).toBe(true);
      expect(second.body.access_token).toBeDefined();
    } finally {
      agent.destroy();
    }
  });

  it('closes promptly even with an open keep-alive connection and a pending delayed answer', async () => {
    const sim = await startWeChatSimulator({ apps: [APP], now: () => t });
    await classic(sim);
    sim.inject({ endpoint: 'token', latencyMs: 10_000 });
    const pending = fetch(
      `${sim.baseUrl}/cgi-bin/token?grant_type=client_credential&appid=${APP.appid}&secret=${APP.secret}`,
    ).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = performance.now();
    await sim.close();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(Error);
    await sim.close();
  });

  it('uses the default clock when none is given', async () => {
    const sim = await startWeChatSimulator({ apps: [APP] });
    open.push(sim);
    const before = Date.now();
    const token = await classicToken(sim);
    const info = sim.tokenInfo(token);
    expect(info?.issuedAtMs).toBeGreaterThanOrEqual(before);
    expect(info?.issuedAtMs).toBeLessThanOrEqual(Date.now());
    expect(sim.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});
