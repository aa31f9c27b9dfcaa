/**
 * WeCom's endpoints in the WeChat client (against the WeCom simulator over undici, with an injected
 * clock) and WeCom's errcodes in the closed catalogue.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { ServiceError } from '../../../lib/errors.ts';
import { WeChatClient } from '../../../lib/wechat/client.ts';
import { errorForErrcode } from '../../../lib/wechat/errcodes.ts';
import { UndiciTransport } from '../../../lib/wechat/undici-transport.ts';
import { startWeComSimulator, type WeComSimulator } from '../../../local/stand-ins/wecom-simulator.ts';
import { failure } from '../../support/failure.ts';
import {
  WECOM_APP_A1,
  WECOM_APP_A2,
  WECOM_CORP_A,
  WECOM_SECRET_A1,
  WECOM_SECRET_A2,
  WECOM_SECRET_B1,
  WECOM_SIMULATOR_APPS,
} from '../../support/secrets.ts';

const START = Date.UTC(2025, 0, 15, 4, 0, 0);
let t = START;
let sim: WeComSimulator | undefined;
const transports: UndiciTransport[] = [];

afterEach(async () => {
  await Promise.all(transports.splice(0).map((transport) => transport.close()));
  await sim?.close();
  sim = undefined;
  t = START;
});

async function setup(options: { sameTokenWhileValid?: boolean } = {}) {
  sim = await startWeComSimulator({
    apps: WECOM_SIMULATOR_APPS,
    now: () => t,
    ...options,
  });
  const transport = new UndiciTransport();
  transports.push(transport);
  const client = new WeChatClient({
    baseUrl: 'http://127.0.0.1:9', // WeChat is never asked for a WeCom app
    wecomBaseUrl: sim.baseUrl,
    transport,
    attemptTimeoutMs: 2000,
    clock: {
      now: () => t,
      sleep: async (ms) => {
        t += ms;
      },
      random: () => 0.5,
    },
  });
  return { sim, client };
}

const deadline = () => ({ deadlineAtMs: t + 10_000 });
const A1 = { appid: WECOM_APP_A1, secret: WECOM_SECRET_A1 };

describe('WeChatClient for a WeCom app', () => {
  it("gettoken with the corp's id and the app's Secret; each agent has its own token", async () => {
    const { sim, client } = await setup();
    const a1 = await client.fetchAccessToken(A1, 'wecom', deadline());
    const a2 = await client.fetchAccessToken(
      { appid: WECOM_APP_A2, secret: WECOM_SECRET_A2 },
      'wecom',
      deadline(),
    );
    expect(a1.expiresInSeconds).toBe(7200);
    expect(a1.value).not.toBe(a2.value);
    expect(sim.tokensIssued(WECOM_APP_A1)).toEqual([a1.value]);
    expect(sim.callsFor(WECOM_APP_A2).gettoken).toBe(1);
  });

  it('the two tickets from their own endpoints, with the access token', async () => {
    const { sim, client } = await setup();
    const token = await client.fetchAccessToken(A1, 'wecom', deadline());
    const jsapi = await client.fetchTicket(WECOM_APP_A1, token.value, 'jsapi', deadline());
    const agent = await client.fetchTicket(WECOM_APP_A1, token.value, 'agent_config', deadline());
    expect(sim.ticketsIssued(WECOM_APP_A1, 'jsapi')).toEqual([jsapi.value]);
    expect(sim.ticketsIssued(WECOM_APP_A1, 'agent_config')).toEqual([agent.value]);
    expect(sim.callsFor(WECOM_APP_A1)).toMatchObject({ jsapiTicket: 1, agentConfigTicket: 1 });
  });

  it('a revoked token at a ticket endpoint is 40014, which the service treats as a dead token', async () => {
    const { sim, client } = await setup();
    const token = await client.fetchAccessToken(A1, 'wecom', deadline());
    sim.revoke(token.value);
    const err = await failure(client.fetchTicket(WECOM_APP_A1, token.value, 'jsapi', deadline()));
    expect(err).toMatchObject({ code: 'wechat_rejected', errcode: 40014 });
    expect((err as ServiceError).message).not.toContain(token.value);
  });

  it("40091 for another corp's Secret, 40013 for an unknown corp; the Secret is never in the error", async () => {
    const { client } = await setup();
    const wrongCorp = await failure(
      client.fetchAccessToken(
        { appid: `${WECOM_CORP_A}:1000009`, secret: WECOM_SECRET_B1 },
        'wecom',
        deadline(),
      ),
    );
    expect(wrongCorp).toMatchObject({ code: 'wechat_credentials_rejected', errcode: 40091 });
    expect(JSON.stringify((wrongCorp as ServiceError).toBody())).not.toContain(WECOM_SECRET_B1);
    const unknown = await failure(
      client.fetchAccessToken(
        { appid: 'ww00000000000000ff:1000002', secret: WECOM_SECRET_A1 },
        'wecom',
        deadline(),
      ),
    );
    expect(unknown).toMatchObject({ code: 'wechat_credentials_rejected', errcode: 40013 });
  });

  it('-1 is retried: 3 retries at most, then wechat_unavailable', async () => {
    const { sim, client } = await setup();
    sim.inject({ endpoint: 'gettoken', errcode: -1, times: 10 });
    const err = await failure(client.fetchAccessToken(A1, 'wecom', deadline()));
    expect(err).toMatchObject({ code: 'wechat_unavailable', errcode: -1 });
    expect(sim.calls.gettoken).toBe(4);
  });

  it('60020 names the egress IP WeCom saw and is not retried', async () => {
    const { sim, client } = await setup();
    sim.inject({ endpoint: 'gettoken', errcode: 60020, times: 5 });
    const err = (await failure(client.fetchAccessToken(A1, 'wecom', deadline()))) as ServiceError;
    expect(err).toMatchObject({ code: 'wechat_ip_not_whitelisted', errcode: 60020 });
    expect(err.message).toContain('trusted IPs (企业可信IP) in the WeCom admin console: 203.0.113.7');
    expect(sim.calls.gettoken).toBe(1);
  });

  it('an ambiguous failure of gettoken is repeated: WeCom documents no invalidation by a second call', async () => {
    const { sim, client } = await setup();
    sim.inject({ endpoint: 'gettoken', httpStatus: 502 });
    const grant = await client.fetchAccessToken(A1, 'wecom', deadline());
    expect(sim.calls.gettoken).toBe(2);
    expect(sim.tokensIssued(WECOM_APP_A1)).toEqual([grant.value]);
  });

  it('the simulator answers the live token with its remaining life when told to (the older documented behaviour)', async () => {
    const { client } = await setup({ sameTokenWhileValid: true });
    const first = await client.fetchAccessToken(A1, 'wecom', deadline());
    t += 1000_000;
    const again = await client.fetchAccessToken(A1, 'wecom', deadline());
    expect(again).toEqual({ value: first.value, expiresInSeconds: 6200 });
  });
});

describe("WeCom's errcodes", () => {
  const at = (errcode: number, errmsg = 'x') =>
    errorForErrcode('wecom_gettoken', WECOM_APP_A1, errcode, errmsg);

  it.each([
    [60020, 'wechat_ip_not_whitelisted'],
    [40013, 'wechat_credentials_rejected'],
    [40001, 'wechat_credentials_rejected'],
    [40091, 'wechat_credentials_rejected'],
    [45009, 'wechat_rate_limited'],
    [45033, 'wechat_rate_limited'],
    [-1, 'wechat_unavailable'],
    [48001, 'wechat_rejected'],
  ])('gettoken errcode %i → %s', (errcode, code) => {
    expect(at(errcode).code).toBe(code);
    expect(at(errcode).message).toContain('/cgi-bin/gettoken');
  });

  it('45009 at WeCom is a frequency limit, never the daily quota of WeChat', () => {
    expect(at(45009).message).not.toContain('midnight');
    expect(errorForErrcode('token', 'wx0123456789abcdef', 45009, 'x').code).toBe('wechat_quota_exhausted');
  });

  it('40001 at a WeCom ticket endpoint is a dead token, not a wrong Secret', () => {
    expect(errorForErrcode('wecom_jsapi_ticket', WECOM_APP_A1, 40001, 'x').code).toBe('wechat_rejected');
    expect(errorForErrcode('wecom_agent_config_ticket', WECOM_APP_A1, 42001, 'x').message).toContain(
      '/cgi-bin/ticket/get',
    );
  });

  it('60020 without an IP in the message still says where to add one', () => {
    expect(at(60020, 'not allow to access from your ip').message).toContain("NAT gateway's Elastic IP");
  });
});
