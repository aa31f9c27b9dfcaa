/**
 * The client's default transport is imported on the first upstream call, not before, and only once;
 * a deployment without the transport's file fails those calls with a code that says what to fix.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Clock } from '../../../lib/ports.ts';
import { WeChatClient } from '../../../lib/wechat/client.ts';
import type { HttpOutcome } from '../../../lib/wechat/transport.ts';
import { failure } from '../../support/failure.ts';
import { TEST_APPID, TEST_SECRET } from '../../support/secrets.ts';

const TRANSPORT_MODULE = '../../../lib/wechat/undici-transport.ts';
const APP = { appid: TEST_APPID, secret: TEST_SECRET };
const clock: Clock = { now: () => 1_000_000, sleep: async () => {}, random: () => 0.5 };
const deadline = { deadlineAtMs: 1_000_000 + 10_000 };

afterEach(() => {
  vi.doUnmock(TRANSPORT_MODULE);
});

/** A client without a transport: it imports TRANSPORT_MODULE, as mocked by the test, when it needs one. */
const newClient = () =>
  new WeChatClient({ baseUrl: 'https://api.weixin.qq.com', attemptTimeoutMs: 1000, clock });

describe('WeChatClient default transport', () => {
  it('is imported on the first upstream call, not at construction nor for a call already past its deadline, and once only', async () => {
    const loads = { module: 0, transports: 0, requests: 0 };
    vi.doMock(TRANSPORT_MODULE, () => {
      loads.module++;
      return {
        UndiciTransport: class {
          constructor() {
            loads.transports++;
          }
          async send(): Promise<HttpOutcome> {
            loads.requests++;
            return { kind: 'response', status: 200, text: '{"access_token":"ACCESS","expires_in":7200}' };
          }
        },
      };
    });
    const client = newClient();
    expect(loads).toEqual({ module: 0, transports: 0, requests: 0 });
    const late = await failure(client.fetchAccessToken(APP, 'classic', { deadlineAtMs: clock.now() }));
    expect(late.code).toBe('wechat_timeout');
    expect(loads).toEqual({ module: 0, transports: 0, requests: 0 });
    await Promise.all([
      client.fetchAccessToken(APP, 'classic', deadline),
      client.fetchAccessToken(APP, 'stable', deadline),
    ]);
    await client.fetchTicket(TEST_APPID, 'ACCESS', 'jsapi', deadline).catch(() => {});
    expect(loads).toEqual({ module: 1, transports: 1, requests: 3 });
  });

  it('fails with config_invalid naming the missing file when the module cannot be loaded, and tries again on the next call', async () => {
    let available = false;
    vi.doMock(TRANSPORT_MODULE, () => {
      if (!available)
        throw Object.assign(new Error('Cannot find module ./wechat-http.js'), { code: 'MODULE_NOT_FOUND' });
      return {
        UndiciTransport: class {
          async send(): Promise<HttpOutcome> {
            return { kind: 'response', status: 200, text: '{"access_token":"ACCESS","expires_in":7200}' };
          }
        },
      };
    });
    const client = newClient();
    const err = await failure(client.fetchAccessToken(APP, 'classic', deadline));
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain('wechat-http.js');
    available = true;
    expect((await client.fetchAccessToken(APP, 'classic', deadline)).value).toBe('ACCESS');
  });
});
