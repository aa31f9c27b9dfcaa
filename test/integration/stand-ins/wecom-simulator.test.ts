/** The WeCom stand-in itself: WeCom's answers, errors and limits, over real HTTP with a moved clock. */
import { afterEach, describe, expect, it } from 'vitest';
import {
  startWeComSimulator,
  type WeComSimulator,
  type WeComSimulatorOptions,
} from '../../../local/stand-ins/wecom-simulator.ts';
import {
  WECOM_CORP_A,
  WECOM_CORP_B,
  WECOM_SECRET_A1,
  WECOM_SECRET_A2,
  WECOM_SECRET_B1,
  WECOM_SIMULATOR_APPS,
} from '../../support/secrets.ts';

let t = Date.UTC(2025, 0, 15, 4, 0, 0);
let sim: WeComSimulator | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function start(options: Partial<WeComSimulatorOptions> = {}): Promise<WeComSimulator> {
  sim = await startWeComSimulator({
    apps: WECOM_SIMULATOR_APPS,
    now: () => t,
    ...options,
  });
  return sim;
}

type Body = { errcode: number; errmsg: string; access_token?: string; ticket?: string; expires_in?: number };
const get = async (s: WeComSimulator, path: string) =>
  (await (await fetch(`${s.baseUrl}${path}`)).json()) as Body;
const token = (s: WeComSimulator, corpid: string, secret: string) =>
  get(s, `/cgi-bin/gettoken?corpid=${corpid}&corpsecret=${secret}`);

describe('WeCom simulator', () => {
  it('gettoken: errcode 0 with the token; 41002, 41004, 40013, 40001 and 40091 in that order of checks', async () => {
    const s = await start();
    const ok = await token(s, WECOM_CORP_A, WECOM_SECRET_A1);
    expect(ok).toMatchObject({ errcode: 0, errmsg: 'ok', expires_in: 7200 });
    expect(ok.access_token).toMatch(/^WC_/);
    expect((await get(s, `/cgi-bin/gettoken?corpsecret=${WECOM_SECRET_A1}`)).errcode).toBe(41002);
    expect((await get(s, `/cgi-bin/gettoken?corpid=${WECOM_CORP_A}`)).errcode).toBe(41004);
    expect((await token(s, 'ww00000000000000ff', WECOM_SECRET_A1)).errcode).toBe(40013);
    expect((await token(s, WECOM_CORP_A, 'not-a-secret-of-anyone')).errcode).toBe(40001);
    expect((await token(s, WECOM_CORP_A, WECOM_SECRET_B1)).errcode).toBe(40091);
    expect(s.calls.gettoken).toBe(6);
  });

  it('each call issues a new token and leaves the earlier ones valid; revoked → 40014, expired → 42001', async () => {
    const s = await start();
    const first = (await token(s, WECOM_CORP_A, WECOM_SECRET_A1)).access_token as string;
    const second = (await token(s, WECOM_CORP_A, WECOM_SECRET_A1)).access_token as string;
    expect(first).not.toBe(second);
    expect((await get(s, `/cgi-bin/get_api_domain_ip?access_token=${first}`)).errcode).toBe(0);
    s.revoke(second);
    expect((await get(s, `/cgi-bin/get_api_domain_ip?access_token=${second}`)).errcode).toBe(40014);
    expect((await get(s, '/cgi-bin/get_jsapi_ticket?access_token=made-up')).errcode).toBe(40014);
    expect((await get(s, '/cgi-bin/get_jsapi_ticket')).errcode).toBe(41001);
    t += 7200_000;
    expect(s.tokenStatus(first)).toBe('expired');
    expect((await get(s, `/cgi-bin/ticket/get?access_token=${first}&type=agent_config`)).errcode).toBe(42001);
    t -= 7200_000;
  });

  it('a ticket is the same while it lives, with the full expires_in; each kind has its own', async () => {
    const s = await start();
    const at = (await token(s, WECOM_CORP_A, WECOM_SECRET_A1)).access_token as string;
    const one = await get(s, `/cgi-bin/get_jsapi_ticket?access_token=${at}`);
    t += 3600_000;
    const two = await get(s, `/cgi-bin/get_jsapi_ticket?access_token=${at}`);
    const agent = await get(s, `/cgi-bin/ticket/get?access_token=${at}&type=agent_config`);
    t -= 3600_000;
    expect(two).toMatchObject({ errcode: 0, ticket: one.ticket, expires_in: 7200 });
    expect(agent.ticket).not.toBe(one.ticket);
    expect(s.ticketsIssued(`${WECOM_CORP_A}:1000002`, 'jsapi')).toEqual([one.ticket]);
  });

  it('hourly ticket limits per app and per corp answer 45009, and lift an hour later', async () => {
    const s = await start({ ticketHourlyLimitPerApp: 3, ticketHourlyLimitPerCorp: 5 });
    const a1 = (await token(s, WECOM_CORP_A, WECOM_SECRET_A1)).access_token as string;
    const a2 = (await token(s, WECOM_CORP_A, WECOM_SECRET_A2)).access_token as string;
    const codes = async (at: string, n: number) =>
      Promise.all(
        Array.from({ length: n }, () => get(s, `/cgi-bin/get_jsapi_ticket?access_token=${at}`)),
      ).then((bodies) => bodies.map((b) => b.errcode));
    expect(await codes(a1, 4)).toEqual([0, 0, 0, 45009]);
    expect(await codes(a2, 3)).toEqual([0, 0, 45009]);
    t += 3600_000;
    expect(await codes(a1, 1)).toEqual([0]);
    t -= 3600_000;
  });

  it('gettoken has a per-minute limit per corp; injected 60020 names the egress IP', async () => {
    const s = await start({ gettokenPerMinutePerCorp: 2, egressIp: '198.51.100.9' });
    expect((await token(s, WECOM_CORP_A, WECOM_SECRET_A1)).errcode).toBe(0);
    expect((await token(s, WECOM_CORP_A, WECOM_SECRET_A2)).errcode).toBe(0);
    expect((await token(s, WECOM_CORP_A, WECOM_SECRET_A1)).errcode).toBe(45009);
    expect((await token(s, WECOM_CORP_B, WECOM_SECRET_B1)).errcode).toBe(0);
    s.inject({ endpoint: 'gettoken', errcode: 60020 });
    const refused = await token(s, WECOM_CORP_B, WECOM_SECRET_B1);
    expect(refused.errcode).toBe(60020);
    expect(refused.errmsg).toContain('from ip: 198.51.100.9');
  });

  it('with sameTokenWhileValid, gettoken answers the live token and its remaining life', async () => {
    const s = await start({ sameTokenWhileValid: true });
    const first = await token(s, WECOM_CORP_A, WECOM_SECRET_A1);
    t += 100_000;
    const again = await token(s, WECOM_CORP_A, WECOM_SECRET_A1);
    t -= 100_000;
    expect(again).toMatchObject({ access_token: first.access_token, expires_in: 7100 });
  });
});
