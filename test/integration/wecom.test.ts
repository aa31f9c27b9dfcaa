/**
 * WeCom apps (`corpid:agentid`) on the same machinery as WeChat's: separate OS processes running
 * dist/index.js against one real memcached, the real Secrets Manager client and the WeCom simulator.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHandler } from '../../handler/index.ts';
import {
  bearer,
  httpV1,
  httpV2,
  uniquePrefix,
  WECOM_APP_WRONG_CORP,
  WECOM_SECRET_ID,
  worldPerFile,
} from '../support/fixtures.ts';
import { sign } from '../support/jssdk.ts';
import {
  CLIENT_KEY_WECOM,
  TEST_APPID,
  WECOM_APP_A1,
  WECOM_APP_A2,
  WECOM_CORP_A,
  WECOM_SECRET_A1,
} from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };
type ErrorBody = { error: { code: string; message: string; retryable: boolean; errcode?: number } };
type Signed = { timestamp: number; nonceStr: string; signature: string };

const files = worldPerFile();
const wecom = () => files.world.wecom;
/** The WeCom secret, a cache of its own. */
const env = (name: string, extra: Record<string, string> = {}) =>
  files.world.env({ WECHAT_SECRET_ID: WECOM_SECRET_ID, CACHE_KEY_PREFIX: uniquePrefix(name), ...extra });
const business = async (token: string) =>
  (
    (await (await fetch(`${wecom().baseUrl}/cgi-bin/get_api_domain_ip?access_token=${token}`)).json()) as {
      errcode: number;
    }
  ).errcode;

afterEach(() => wecom().clearFaults());

describe('one gettoken per token life, across instances', () => {
  it('4 processes × 25 concurrent cold get_token of a WeCom app make exactly 1 gettoken call', async () => {
    const procs = await files.pool.spawn(4, env('wc-cold'));
    wecom().resetCounters();
    const bodies = await Promise.all(
      procs.flatMap((p) => Array.from({ length: 25 }, () => p.invoke<TokenBody>({ appid: WECOM_APP_A1 }))),
    );
    console.log(`WeCom cold start: 4 processes × 25 calls → ${wecom().calls.gettoken} gettoken call`);
    expect(wecom().calls.gettoken).toBe(1);
    const tokens = new Set(bodies.map((b) => b.access_token));
    expect(tokens.size).toBe(1);
    const [token] = [...tokens] as [string];
    expect(wecom().tokensIssued(WECOM_APP_A1)).toEqual([token]);
    expect(await business(token)).toBe(0);
    // The promise ends at the scheduled refresh: 7200 s less the margin and the refresh window.
    for (const body of bodies) {
      expect(body.expires_in).toBeGreaterThan(7200 - 900 - 10 - 5);
      expect(body.expires_in).toBeLessThanOrEqual(7200 - 900 + 225);
    }
  });

  it('two agents of one corp get two independent tokens, each from its own Secret', async () => {
    const handler = createHandler({ env: env('wc-agents') });
    wecom().resetCounters();
    const [a1, a2] = (await Promise.all([
      handler({ appid: WECOM_APP_A1 }),
      handler({ appid: WECOM_APP_A2 }),
    ])) as [TokenBody, TokenBody];
    const a1Again = (await handler({ appid: WECOM_APP_A1 })) as TokenBody;
    console.log(
      `two agents of corp A: gettoken ${wecom().callsFor(WECOM_APP_A1).gettoken} + ${wecom().callsFor(WECOM_APP_A2).gettoken}, tokens distinct: ${a1.access_token !== a2.access_token}`,
    );
    expect(a1.access_token).not.toBe(a2.access_token);
    expect(a1Again.access_token).toBe(a1.access_token);
    expect(wecom().callsFor(WECOM_APP_A1).gettoken).toBe(1);
    expect(wecom().callsFor(WECOM_APP_A2).gettoken).toBe(1);
    expect(wecom().tokensIssued(WECOM_APP_A1)).toContain(a1.access_token);
    expect(wecom().tokensIssued(WECOM_APP_A2)).toContain(a2.access_token);
    // Revoking one agent's token leaves the other's alone.
    wecom().revoke(a1.access_token);
    expect(await business(a2.access_token)).toBe(0);
  });

  it('a token WeCom revokes early, reported by 60 callers in 3 processes, is replaced with exactly 1 gettoken call', async () => {
    // The token is seconds old, under the default PASSIVE_REFRESH_MIN_AGE_SECONDS (300): for WeCom no
    // promise rests on it, and the first report of a revoked token replaces it (lifetime.ts).
    const procs = await files.pool.spawn(3, env('wc-revoked'));
    const ours = await procs[0]!.invoke<TokenBody>({ appid: WECOM_APP_A1 });
    wecom().revoke(ours.access_token);
    expect(await business(ours.access_token)).toBe(40014);
    wecom().resetCounters();
    const reports = await Promise.all(
      procs.flatMap((p) =>
        Array.from({ length: 20 }, () =>
          p.invoke<TokenBody>({
            action: 'refresh_token',
            appid: WECOM_APP_A1,
            invalid_token: ours.access_token,
          }),
        ),
      ),
    );
    console.log(`WeCom early revocation: 60 reports → ${wecom().calls.gettoken} gettoken call`);
    expect(wecom().calls.gettoken).toBe(1);
    const replaced = new Set(reports.map((r) => r.access_token));
    expect(replaced.size).toBe(1);
    expect(replaced.has(ours.access_token)).toBe(false);
    for (const token of replaced) expect(await business(token)).toBe(0);
    // Later requests get the new token, never the revoked one.
    const later = await procs[2]!.invoke<TokenBody>({ appid: WECOM_APP_A1 });
    expect(replaced.has(later.access_token)).toBe(true);
    expect(wecom().calls.gettoken).toBe(1);
  });
});

describe("WeCom's errors: the documented error or retry, with bounded upstream calls", () => {
  it('60020: wechat_ip_not_whitelisted naming the egress IP, not retried, remembered', async () => {
    const handler = createHandler({ env: env('wc-60020') });
    wecom().inject({ endpoint: 'gettoken', errcode: 60020, times: 10 });
    wecom().resetCounters();
    const first = (await handler({ appid: WECOM_APP_A1 })) as ErrorBody;
    const second = (await handler({ appid: WECOM_APP_A1 })) as ErrorBody;
    console.log(`60020: 2 requests → ${wecom().calls.gettoken} gettoken call; ${first.error.code}`);
    expect(first.error).toMatchObject({
      code: 'wechat_ip_not_whitelisted',
      errcode: 60020,
      retryable: false,
    });
    expect(first.error.message).toContain('203.0.113.7');
    expect(first.error.message).toContain('trusted IPs');
    expect(second.error.code).toBe('wechat_ip_not_whitelisted');
    expect(wecom().calls.gettoken).toBe(1);
  });

  it('40091 (a Secret of another corp): wechat_credentials_rejected, not retried, remembered', async () => {
    const handler = createHandler({ env: env('wc-40091') });
    wecom().resetCounters();
    const first = (await handler({ appid: WECOM_APP_WRONG_CORP })) as ErrorBody;
    const second = (await handler({ appid: WECOM_APP_WRONG_CORP })) as ErrorBody;
    console.log(`40091: 2 requests → ${wecom().calls.gettoken} gettoken call; ${first.error.code}`);
    expect(first.error).toMatchObject({
      code: 'wechat_credentials_rejected',
      errcode: 40091,
      retryable: false,
    });
    expect(first.error.message).toContain('Secret');
    expect(first.error.message).not.toContain('test-wecom-secret');
    expect(second.error.code).toBe('wechat_credentials_rejected');
    expect(wecom().calls.gettoken).toBe(1);
  });

  it('45033 (concurrency limit): wechat_rate_limited at once, not a quota breaker; the next request succeeds', async () => {
    const handler = createHandler({ env: env('wc-45033') });
    wecom().inject({ endpoint: 'gettoken', errcode: 45033 });
    wecom().resetCounters();
    const limited = (await handler({ appid: WECOM_APP_A1 })) as ErrorBody;
    const callsWhenLimited = wecom().calls.gettoken;
    const next = (await handler({ appid: WECOM_APP_A1 })) as TokenBody;
    console.log(
      `45033: ${limited.error.code} after ${callsWhenLimited} call; next request → token after ${wecom().calls.gettoken} calls`,
    );
    expect(limited.error).toMatchObject({ code: 'wechat_rate_limited', errcode: 45033, retryable: true });
    expect(limited.error.message).not.toContain('midnight');
    expect(callsWhenLimited).toBe(1);
    expect(next.access_token).toBeDefined();
    expect(wecom().calls.gettoken).toBe(2);
  });

  it('45009 (frequency limit): wechat_rate_limited, remembered for the minute WeCom blocks, never until midnight', async () => {
    const handler = createHandler({ env: env('wc-45009') });
    wecom().inject({ endpoint: 'gettoken', errcode: 45009 });
    wecom().resetCounters();
    const bodies = (await Promise.all(
      Array.from({ length: 5 }, () => handler({ appid: WECOM_APP_A1 })),
    )) as ErrorBody[];
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const later = (await handler({ appid: WECOM_APP_A1 })) as ErrorBody;
    console.log(`45009: 6 requests over 2 s → ${wecom().calls.gettoken} gettoken call`);
    for (const body of [...bodies, later]) {
      expect(body.error).toMatchObject({ code: 'wechat_rate_limited', errcode: 45009 });
      expect(body.error.message).not.toContain('midnight');
    }
    expect(wecom().calls.gettoken).toBe(1);
  });

  it('-1 (busy): retried within the request, at most 3 times', async () => {
    const handler = createHandler({ env: env('wc-busy') });
    wecom().inject({ endpoint: 'gettoken', errcode: -1, times: 2 });
    wecom().resetCounters();
    const recovered = (await handler({ appid: WECOM_APP_A1 })) as TokenBody;
    const callsRecovered = wecom().calls.gettoken;
    const other = createHandler({ env: env('wc-busy2') });
    wecom().inject({ endpoint: 'gettoken', errcode: -1, times: 20 });
    wecom().resetCounters();
    const failed = (await other({ appid: WECOM_APP_A1 })) as ErrorBody;
    console.log(
      `-1: twice then ok → ${callsRecovered} calls; always busy → ${wecom().calls.gettoken} calls, ${failed.error.code}`,
    );
    expect(recovered.access_token).toBeDefined();
    expect(callsRecovered).toBe(3);
    expect(failed.error).toMatchObject({ code: 'wechat_unavailable', errcode: -1, retryable: true });
    expect(wecom().calls.gettoken).toBe(4);
  });
});

const url = 'https://work.example.com/approve?id=7#/detail';
const signedUrl = 'https://work.example.com/approve?id=7';

describe('wx.config and wx.agentConfig', () => {
  it('100 jssdk_config calls in 2 processes (half of them agent_config) make 1 call of each ticket, and both signatures verify', async () => {
    const procs = await files.pool.spawn(2, env('wc-sign'));
    wecom().resetCounters();
    const bodies = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        procs[i % 2]!.invoke<Signed & Record<string, unknown>>({
          action: 'jssdk_config',
          appid: WECOM_APP_A1,
          url,
          ...(i % 4 < 2 ? { agent_config: true } : {}),
        }),
      ),
    );
    const calls = wecom().callsFor(WECOM_APP_A1);
    console.log(
      `WeCom signing: 100 configs → gettoken ${calls.gettoken}, get_jsapi_ticket ${calls.jsapiTicket}, ticket/get agent_config ${calls.agentConfigTicket}`,
    );
    expect(calls).toMatchObject({ gettoken: 1, jsapiTicket: 1, agentConfigTicket: 1 });
    const [jsapi] = wecom().ticketsIssued(WECOM_APP_A1, 'jsapi') as [string];
    const [agent] = wecom().ticketsIssued(WECOM_APP_A1, 'agent_config') as [string];
    bodies.forEach((body, i) => {
      if (i % 4 < 2) {
        expect(Object.keys(body).sort()).toEqual(['agentid', 'corpid', 'nonceStr', 'signature', 'timestamp']);
        expect(body).toMatchObject({ corpid: WECOM_CORP_A, agentid: '1000002' });
        expect(body.signature).toBe(sign(agent, { appId: WECOM_CORP_A, ...body }, signedUrl));
      } else {
        expect(Object.keys(body).sort()).toEqual(['appId', 'nonceStr', 'signature', 'timestamp']);
        expect(body.appId).toBe(WECOM_CORP_A);
        expect(body.signature).toBe(sign(jsapi, { appId: WECOM_CORP_A, ...body }, signedUrl));
      }
    });
  });

  it('agent_config is refused for a WeChat appid, and wx_card for a WeCom app', async () => {
    const handler = createHandler({ env: env('wc-refuse') });
    const wechat = (await handler({
      action: 'jssdk_config',
      appid: TEST_APPID,
      url,
      agent_config: true,
    })) as ErrorBody;
    const card = (await handler({ action: 'get_ticket', appid: WECOM_APP_A1, type: 'wx_card' })) as ErrorBody;
    expect(wechat.error.code).toBe('invalid_request');
    expect(wechat.error.message).toContain('WeCom');
    expect(card.error.code).toBe('invalid_request');
    expect(card.error.message).toContain('agent_config');
  });
});

describe('every channel takes corpid:agentid', () => {
  it('HTTP path, query and body, with a client key scoped to the WeCom app', async () => {
    const handler = createHandler({ env: env('wc-http') });
    const auth = { headers: bearer(CLIENT_KEY_WECOM) };
    const viaQuery = (await handler(
      httpV2('GET', '/token', { ...auth, query: { appid: WECOM_APP_A1 } }),
    )) as {
      statusCode: number;
      body: string;
    };
    expect(viaQuery.statusCode).toBe(200);
    const token = (JSON.parse(viaQuery.body) as TokenBody).access_token;
    const ticket = (await handler(
      httpV1('GET', '/ticket', { ...auth, query: { appid: WECOM_APP_A1, type: 'agent_config' } }),
    )) as { statusCode: number; body: string };
    expect(ticket.statusCode).toBe(200);
    expect(JSON.parse(ticket.body).ticket).toBe(wecom().ticketsIssued(WECOM_APP_A1, 'agent_config').at(-1));
    const config = (await handler(
      httpV2('POST', '/jssdk/config', {
        ...auth,
        body: JSON.stringify({ appid: WECOM_APP_A1, url, agent_config: true }),
      }),
    )) as { statusCode: number; body: string };
    expect(config.statusCode).toBe(200);
    expect(JSON.parse(config.body)).toMatchObject({ corpid: WECOM_CORP_A, agentid: '1000002' });
    const forbidden = (await handler(
      httpV2('GET', '/token', { ...auth, query: { appid: WECOM_APP_A2 } }),
    )) as {
      statusCode: number;
    };
    expect(forbidden.statusCode).toBe(403);
    const malformed = (await handler(
      httpV2('GET', '/token', { ...auth, query: { appid: `${WECOM_CORP_A}:01000002` } }),
    )) as { statusCode: number };
    expect(malformed.statusCode).toBe(400);
    expect(await business(token)).toBe(0);
  });

  it('the schedule refreshes WeCom tokens and tickets beside WeChat apps, and reports the misconfigured one', async () => {
    const handler = createHandler({ env: env('wc-schedule') });
    wecom().resetCounters();
    const summary = (await handler({ source: 'aws.events', 'detail-type': 'Scheduled Event' })) as {
      apps: number;
      refreshed: Array<{ appid: string; kind: string }>;
      failed: Array<{ appid: string; kind: string; code: string; message: string }>;
    };
    console.log(
      `schedule: ${summary.refreshed.length} refreshed, ${summary.failed.length} failed; gettoken ${wecom().calls.gettoken}`,
    );
    expect(summary.apps).toBe(4);
    expect(summary.refreshed).toEqual(
      expect.arrayContaining([
        { appid: TEST_APPID, kind: 'access_token' },
        { appid: WECOM_APP_A1, kind: 'access_token' },
        { appid: WECOM_APP_A1, kind: 'jsapi_ticket' },
        { appid: WECOM_APP_A1, kind: 'agent_config_ticket' },
        { appid: WECOM_APP_A2, kind: 'access_token' },
        { appid: WECOM_APP_A2, kind: 'agent_config_ticket' },
      ]),
    );
    expect(summary.failed).toEqual([
      expect.objectContaining({
        appid: WECOM_APP_WRONG_CORP,
        kind: 'access_token',
        code: 'wechat_credentials_rejected',
      }),
    ]);
    expect(JSON.stringify(summary)).not.toContain(WECOM_SECRET_A1);
    expect(wecom().calls.gettoken).toBe(3);
  });
});
