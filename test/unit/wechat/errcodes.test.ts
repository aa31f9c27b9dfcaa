import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../lib/domain.ts';
import { errorForErrcode, isTransientErrcode, TOKEN_INVALID_ERRCODES } from '../../../lib/wechat/errcodes.ts';
import { TEST_APPID } from '../../support/secrets.ts';

const ENDPOINT_PATHS: Record<Endpoint, string> = {
  token: '/cgi-bin/token',
  stable_token: '/cgi-bin/stable_token',
  ticket: '/cgi-bin/ticket/getticket',
  clear_quota: '/cgi-bin/clear_quota/v2',
  quota: '/cgi-bin/openapi/quota/get',
};

describe('errorForErrcode', () => {
  it('says that 48006 from clear_quota/v2 means the 10 monthly resets are used up', () => {
    const err = errorForErrcode(
      'clear_quota',
      TEST_APPID,
      48006,
      'forbid to clear quota because of reaching the limit',
    );
    expect(err.code).toBe('wechat_rejected');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('10 quota resets');
    expect(err.message).toContain('midnight China time');
  });

  it.each(Object.entries(ENDPOINT_PATHS))(
    'names the %s endpoint path, the errcode and the appid',
    (endpoint, path) => {
      const err = errorForErrcode(endpoint as Endpoint, TEST_APPID, 48001, 'api unauthorized');
      expect(err.message).toContain(path);
      expect(err.message).toContain('48001');
      expect(err.message).toContain(TEST_APPID);
      expect(err.message).toContain('api unauthorized');
      expect(err.errcode).toBe(48001);
    },
  );

  it.each([40001, 40013, 40125, 40243])(
    'treats %i at the ticket endpoint as a dead access token, not as wrong credentials',
    (errcode) => {
      expect(errorForErrcode('token', TEST_APPID, errcode, '').code).toBe('wechat_credentials_rejected');
      const atTicket = errorForErrcode('ticket', TEST_APPID, errcode, '');
      expect(atTicket.code).not.toBe('wechat_credentials_rejected');
      expect(atTicket.errcode).toBe(errcode);
    },
  );

  it.each([
    [
      'an IPv4 address',
      'invalid ip 192.0.2.44 ipv6 ::ffff:192.0.2.44, not in whitelist rid: 1',
      '192.0.2.44',
    ],
    ['an IPv6 address', 'invalid ip 2001:db8::7, not in whitelist', '2001:db8::7'],
  ])('quotes %s from a 40164 errmsg as the IP to whitelist', (_kind, errmsg, ip) => {
    const err = errorForErrcode('token', TEST_APPID, 40164, errmsg);
    expect(err.code).toBe('wechat_ip_not_whitelisted');
    expect(err.message).toContain(`whitelist: ${ip}`);
  });

  it('still says to whitelist the egress IP when the errmsg names none', () => {
    const err = errorForErrcode('stable_token', TEST_APPID, 61004, 'access clientip is not registered');
    expect(err.code).toBe('wechat_ip_not_whitelisted');
    expect(err.message).toContain('whitelist');
  });

  it.each([89501, 89503, 89506, 89507])('asks for an administrator for %i', (errcode) => {
    const err = errorForErrcode('token', TEST_APPID, errcode, '');
    expect(err.code).toBe('wechat_ip_confirmation_required');
    expect(err.message).toMatch(/administrator/);
  });

  it.each([40002, 41002, 41004, 43002, 47001])('calls %i a bug in the service', (errcode) => {
    const err = errorForErrcode('stable_token', TEST_APPID, errcode, '');
    expect(err.code).toBe('wechat_rejected');
    expect(err.message).toContain('bug');
  });

  it.each([48001, 50002, 99999])(
    'rejects the unknown or non-transient errcode %i without retrying',
    (errcode) => {
      const err = errorForErrcode('token', TEST_APPID, errcode, '');
      expect(err.code).toBe('wechat_rejected');
      expect(err.retryable).toBe(false);
    },
  );
});

describe('errcode classes', () => {
  it('retries only -1 (system busy) within a call', () => {
    const known = [-1, 40001, 40013, 40125, 40164, 40243, 45009, 45011, 48001, 61004, 89503, 89506, 89507];
    expect(known.filter(isTransientErrcode)).toEqual([-1]);
  });

  it('knows the business-API errcodes that mean the access token is dead (WxJava’s list)', () => {
    expect([...TOKEN_INVALID_ERRCODES].sort()).toEqual([40001, 40014, 42001]);
    expect(TOKEN_INVALID_ERRCODES.has(48001)).toBe(false);
  });
});
