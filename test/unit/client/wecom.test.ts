/** The consumer client with a WeCom app: its id, its tickets, and a signed wx.agentConfig, validated. */
import { describe, expect, it } from 'vitest';
import { httpTransport } from '../../../lib/client/http-transport.ts';
import { TokenClient } from '../../../lib/client/token-client.ts';
import { clientFailure, FakeClientClock, FakeTransport, tokenBody } from './fakes.ts';

const WECOM = 'ww0a1b2c3d4e5f6071:1000002';
const signed = { timestamp: 1_736_913_600, nonceStr: 'n0nce', signature: 'a'.repeat(40) };

function setup(appid = WECOM) {
  const clock = new FakeClientClock();
  const transport = new FakeTransport();
  return { clock, transport, client: new TokenClient({ appid, transport, clock }) };
}

describe('TokenClient for a WeCom app', () => {
  it('takes corpid:agentid and gets its token like any other', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => tokenBody(clock, 'wecom-token', 600);
    expect(await client.getToken()).toBe('wecom-token');
    expect(transport.requests).toEqual([{ action: 'get_token', appid: WECOM }]);
  });

  it('asks for agent_config tickets, never wx_card', async () => {
    const { transport, client } = setup();
    transport.handler = () => ({ ticket: 'agent-ticket', expires_in: 0, expires_at: 0 });
    expect(await client.getTicket('agent_config')).toBe('agent-ticket');
    expect((await clientFailure(client.getTicket('wx_card'))).code).toBe('invalid_argument');
    expect((await clientFailure(setup('wx0123456789abcdef').client.getTicket('agent_config'))).code).toBe(
      'invalid_argument',
    );
  });

  it('agentConfig answers the signed wx.agentConfig of this app, and refuses one of another app', async () => {
    const { transport, client } = setup();
    transport.handler = () => ({ corpid: 'ww0a1b2c3d4e5f6071', agentid: '1000002', ...signed });
    expect(await client.agentConfig('https://work.example.com/a')).toEqual({
      corpid: 'ww0a1b2c3d4e5f6071',
      agentid: '1000002',
      ...signed,
    });
    expect(transport.requests.at(-1)).toEqual({
      action: 'jssdk_config',
      appid: WECOM,
      url: 'https://work.example.com/a',
      agent_config: true,
    });
    transport.handler = () => ({ corpid: 'ww0a1b2c3d4e5f6071', agentid: '1000003', ...signed });
    expect((await clientFailure(client.agentConfig('https://work.example.com/a'))).code).toBe(
      'service_bad_response',
    );
  });

  it("jssdkConfig of a WeCom app is the corp's wx.config: appId is the corpid", async () => {
    const { transport, client } = setup();
    transport.handler = () => ({ appId: 'ww0a1b2c3d4e5f6071', ...signed });
    expect((await client.jssdkConfig('https://work.example.com/a')).appId).toBe('ww0a1b2c3d4e5f6071');
  });

  it('agentConfig is refused for a WeChat appid before anything is sent', async () => {
    const { transport, client } = setup('wx0123456789abcdef');
    expect((await clientFailure(client.agentConfig('https://example.com/'))).code).toBe('invalid_argument');
    expect(transport.requests).toHaveLength(0);
  });

  it('the HTTP transport sends agent_config in the JSON body', async () => {
    const sent: Array<{ url: string; body: unknown }> = [];
    const transport = httpTransport({
      baseUrl: 'https://tokens.example.com',
      key: 'client-key-0123456789',
      fetch: async (url: string | URL | Request, init?: RequestInit) => {
        sent.push({ url: String(url), body: JSON.parse(String(init?.body)) });
        return new Response(JSON.stringify({ corpid: 'ww0a1b2c3d4e5f6071', agentid: '1000002', ...signed }), {
          status: 200,
          headers: { 'content-type': 'application/json' },
        });
      },
    });
    const client = new TokenClient({ appid: WECOM, transport, clock: new FakeClientClock() });
    await client.agentConfig('https://work.example.com/a');
    expect(sent).toEqual([
      {
        url: 'https://tokens.example.com/jssdk/config',
        body: { appid: WECOM, url: 'https://work.example.com/a', agent_config: true },
      },
    ]);
  });
});
