/** WeChatClient.clearQuota: the request it sends, and how it reads WeChat's answers. */
import { afterEach, describe, expect, it } from 'vitest';
import { AmbiguousUpstreamError, WeChatClient } from '../../../lib/wechat/client.ts';
import type { HttpRequest, HttpTransport } from '../../../lib/wechat/transport.ts';
import { startWeChatSimulator, type WeChatSimulator } from '../../../local/stand-ins/wechat-simulator.ts';
import { failure } from '../../support/failure.ts';
import { TEST_APPID, TEST_SECRET } from '../../support/secrets.ts';

const APP = { appid: TEST_APPID, secret: TEST_SECRET };
let t = Date.UTC(2025, 0, 15, 4, 0, 0);
const clock = {
  now: () => t,
  sleep: async (ms: number) => {
    t += ms;
  },
  random: () => 0.5,
};
let sim: WeChatSimulator | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const client = (baseUrl: string, transport?: HttpTransport) =>
  new WeChatClient({ baseUrl, attemptTimeoutMs: 2000, clock, ...(transport ? { transport } : {}) });
const deadline = () => ({ deadlineAtMs: t + 10_000 });

describe('WeChatClient.clearQuota', () => {
  it('POSTs appid and appsecret to /cgi-bin/clear_quota/v2, as URL parameters and as a JSON body', async () => {
    const sent: HttpRequest[] = [];
    const fake: HttpTransport = {
      send: async (request) => {
        sent.push(request);
        return { kind: 'response', status: 200, text: JSON.stringify({ errcode: 0, errmsg: 'ok' }) };
      },
    };
    await client('https://api.example', fake).clearQuota(APP, deadline());
    expect(sent).toHaveLength(1);
    const url = new URL(sent[0]!.url);
    expect(`${url.origin}${url.pathname}`).toBe('https://api.example/cgi-bin/clear_quota/v2');
    expect(url.searchParams.get('appid')).toBe(TEST_APPID);
    expect(url.searchParams.get('appsecret') === TEST_SECRET).toBe(true);
    expect(sent[0]!.method).toBe('POST');
    const body = JSON.parse(String(sent[0]!.body)) as Record<string, string>;
    expect(body.appid).toBe(TEST_APPID);
    expect(body.appsecret === TEST_SECRET).toBe(true);
  });

  it('succeeds against the simulator and uses one of the month’s resets', async () => {
    sim = await startWeChatSimulator({ apps: [APP], now: () => t });
    sim.exhaustQuota(TEST_APPID, 'token');
    await client(sim.baseUrl).clearQuota(APP, deadline());
    expect(sim.quotaResetsUsed(TEST_APPID)).toBe(1);
  });

  it('answers 48006 as wechat_rejected saying the monthly resets are used up', async () => {
    sim = await startWeChatSimulator({ apps: [APP], now: () => t, quotaResetsPerMonth: 0 });
    const err = await failure(client(sim.baseUrl).clearQuota(APP, deadline()));
    expect(err.code).toBe('wechat_rejected');
    expect(err.errcode).toBe(48006);
    expect(err.message).toContain('/cgi-bin/clear_quota/v2');
    expect(err.message).toContain('10 quota resets');
  });

  it('answers a wrong AppSecret as wechat_credentials_rejected without quoting it', async () => {
    sim = await startWeChatSimulator({
      apps: [{ appid: TEST_APPID, secret: 'another-secret-123' }],
      now: () => t,
    });
    const err = await failure(client(sim.baseUrl).clearQuota(APP, deadline()));
    expect(err.code).toBe('wechat_credentials_rejected');
    expect(err.message.includes(TEST_SECRET)).toBe(false);
  });

  it('retries WeChat busy (-1), which did nothing', async () => {
    sim = await startWeChatSimulator({ apps: [APP], now: () => t });
    sim.inject({ endpoint: 'clear_quota', errcode: -1 });
    await client(sim.baseUrl).clearQuota(APP, deadline());
    expect(sim.calls.clearQuota).toBe(2);
    expect(sim.quotaResetsUsed(TEST_APPID)).toBe(1);
  });

  it('never repeats a call that may have reached WeChat (it may have used a reset)', async () => {
    sim = await startWeChatSimulator({ apps: [APP], now: () => t });
    sim.inject({ endpoint: 'clear_quota', httpStatus: 502 });
    const err = await client(sim.baseUrl)
      .clearQuota(APP, deadline())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AmbiguousUpstreamError);
    expect(sim.calls.clearQuota).toBe(1);
  });
});
