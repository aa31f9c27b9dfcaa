/**
 * Soak: 60 s of real-time load on the WeCom tickets of two agents of one corp, from three OS
 * processes running dist/index.js against one real memcached and the WeCom simulator, which enforces
 * WeCom's hourly ticket limits (400 per corp, 100 per app, per kind) and answers 45009 past them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WECOM_TICKET_RECHECK_MS } from '../../lib/token/lifetime.ts';
import { startWorld, uniquePrefix, WECOM_SECRET_ID } from '../support/fixtures.ts';
import { instancePool } from '../support/instances.ts';
import { sign } from '../support/jssdk.ts';
import { WECOM_APP_A1, WECOM_APP_A2, WECOM_CORP_A } from '../support/secrets.ts';

type Signed = { timestamp: number; nonceStr: string; signature: string; error?: { code: string } };

const pool = instancePool();
afterEach(async () => {
  await pool.closeAll();
});

describe('WeCom tickets under load', () => {
  it("60 s of wx.config and wx.agentConfig for two agents stay far under WeCom's hourly ticket limits", async () => {
    const world = await startWorld();
    try {
      const wecom = world.wecom;
      const env = world.env({ WECHAT_SECRET_ID: WECOM_SECRET_ID, CACHE_KEY_PREFIX: uniquePrefix('wcsoak') });
      const instances = await pool.spawn(3, env);
      wecom.resetCounters();
      const url = 'https://work.example.com/approve?id=7';
      const endAt = Date.now() + 60_000;
      const bad: string[] = [];
      let configs = 0;
      await Promise.all(
        instances.flatMap((instance, i) =>
          [WECOM_APP_A1, WECOM_APP_A2].map(async (appid) => {
            let n = i;
            while (Date.now() < endAt) {
              const agent = n++ % 2 === 0;
              const body = await instance.invoke<Signed>({
                action: 'jssdk_config',
                appid,
                url,
                ...(agent ? { agent_config: true } : {}),
              });
              configs++;
              const issued = wecom.ticketsIssued(appid, agent ? 'agent_config' : 'jsapi');
              if (body.error) bad.push(`${appid}: ${body.error.code}`);
              else if (!issued.some((t) => sign(t, { appId: WECOM_CORP_A, ...body }, url) === body.signature))
                bad.push(`${appid}: a signature over no issued ticket`);
              await new Promise((r) => setTimeout(r, 50));
            }
          }),
        ),
      );
      const a1 = wecom.callsFor(WECOM_APP_A1);
      const a2 = wecom.callsFor(WECOM_APP_A2);
      const corp = {
        jsapi: a1.jsapiTicket + a2.jsapiTicket,
        agent: a1.agentConfigTicket + a2.agentConfigTicket,
      };
      console.log(
        `WeCom tickets, 60 s: ${configs} signed configs from 3 processes; ` +
          `agent ${WECOM_APP_A1}: gettoken ${a1.gettoken}, jsapi ${a1.jsapiTicket}, agent_config ${a1.agentConfigTicket}; ` +
          `agent ${WECOM_APP_A2}: gettoken ${a2.gettoken}, jsapi ${a2.jsapiTicket}, agent_config ${a2.agentConfigTicket}; ` +
          `corp: jsapi ${corp.jsapi}/400, agent_config ${corp.agent}/400 an hour; ` +
          `next ticket call of each at least ${WECOM_TICKET_RECHECK_MS / 1000} s later (≤ ${(2 * 3_600_000) / WECOM_TICKET_RECHECK_MS} an hour per app)`,
      );
      expect(bad).toEqual([]);
      expect(configs).toBeGreaterThan(1000);
      // One fetch of each ticket per agent: the first answer's age is unknown, and it is asked for
      // again only after WECOM_TICKET_RECHECK_MS, which is longer than this run.
      for (const calls of [a1, a2]) {
        expect(calls.gettoken).toBe(1);
        expect(calls.jsapiTicket).toBe(1);
        expect(calls.agentConfigTicket).toBe(1);
      }
      expect(corp.jsapi).toBeLessThanOrEqual(400);
      expect(corp.agent).toBeLessThanOrEqual(400);
    } finally {
      await world.close();
    }
  }, 90_000);
});
