/**
 * The client is shipped on its own and imports nothing of the service: the lists it repeats must
 * stay equal to the service's.
 */
import { describe, expect, it } from 'vitest';
import { parseRequest } from '../../../handler/operations.ts';
import { CLIENT_ERROR_CODES, SERVICE_ERROR_CODES, TokenClientError } from '../../../lib/client/errors.ts';
import { APPID_PATTERN as CLIENT_APPID_PATTERN, TokenClient } from '../../../lib/client/token-client.ts';
import { TOKEN_INVALID_ERRCODES as CLIENT_TOKEN_INVALID } from '../../../lib/client/wechat-errcode.ts';
import { APPID_PATTERN } from '../../../lib/domain.ts';
import { ERROR_CATALOGUE } from '../../../lib/errors.ts';
import { TOKEN_INVALID_ERRCODES } from '../../../lib/wechat/errcodes.ts';

describe('the client and the service agree', () => {
  it('on every error code of the service and its retryability', () => {
    const service = Object.fromEntries(
      Object.entries(ERROR_CATALOGUE).map(([code, e]) => [code, e.retryable]),
    );
    expect(SERVICE_ERROR_CODES).toEqual(service);
  });

  it('on the errcodes that mean the access token is dead', () => {
    expect([...CLIENT_TOKEN_INVALID].sort()).toEqual([...TOKEN_INVALID_ERRCODES].sort());
  });

  it('on what an appid looks like', () => {
    expect(CLIENT_APPID_PATTERN.source).toBe(APPID_PATTERN.source);
    expect(CLIENT_APPID_PATTERN.flags).toBe(APPID_PATTERN.flags);
  });

  it('on the ticket types of a WeChat app and of a WeCom app', async () => {
    for (const appid of ['wx0123456789abcdef', 'ww0a1b2c3d4e5f6071:1000002']) {
      const client = new TokenClient({
        appid,
        transport: { send: async () => ({ ticket: 'a-ticket', expires_in: 0, expires_at: 0 }) },
      });
      for (const type of ['jsapi', 'wx_card', 'agent_config'] as const) {
        const service = (() => {
          try {
            parseRequest('get_ticket', { appid, type });
            return true;
          } catch {
            return false;
          }
        })();
        const consumer = await client.getTicket(type).then(
          () => true,
          () => false,
        );
        expect({ appid, type, consumer }).toEqual({ appid, type, consumer: service });
      }
    }
  });

  it("the client's own codes are not the service's", () => {
    for (const code of Object.keys(CLIENT_ERROR_CODES))
      expect(Object.hasOwn(ERROR_CATALOGUE, code)).toBe(false);
  });

  it('a TokenClientError takes its retryability from its code unless told', () => {
    expect(new TokenClientError('wechat_unavailable', 'x').retryable).toBe(true);
    expect(new TokenClientError('unknown_appid', 'x').retryable).toBe(false);
    expect(new TokenClientError('service_unreachable', 'x').retryable).toBe(true);
    expect(new TokenClientError('service_unreachable', 'x', { retryable: false }).retryable).toBe(false);
  });
});
