import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, type ErrorCode, ServiceError, toServiceError } from '../../lib/errors.ts';

/**
 * The HTTP status of every code, as the design assigns them: 400 bad input, 401/403 auth, 404 unknown
 * appid or route, 429 refresh refused, 502 WeChat rejected the call, 503 upstream or cache unavailable
 * or quota exhausted, 500 the deployment's own fault.
 */
const DESIGN_STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  unknown_appid: 404,
  route_not_found: 404,
  method_not_allowed: 405,
  refresh_rejected: 429,
  wechat_credentials_rejected: 502,
  wechat_ip_not_whitelisted: 502,
  wechat_ip_confirmation_required: 502,
  wechat_rejected: 502,
  wechat_bad_response: 502,
  wechat_quota_exhausted: 503,
  wechat_rate_limited: 503,
  wechat_unavailable: 503,
  wechat_timeout: 503,
  refresh_in_progress: 503,
  cache_unavailable: 503,
  secrets_unavailable: 503,
  config_invalid: 500,
  internal_error: 500,
};

/** Codes a caller may retry as-is: transient upstream/cache trouble and a refused (budgeted) refresh. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set([
  'refresh_rejected',
  'wechat_bad_response',
  'wechat_rate_limited',
  'wechat_unavailable',
  'wechat_timeout',
  'refresh_in_progress',
  'cache_unavailable',
  'secrets_unavailable',
]);

const CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

describe('ServiceError', () => {
  it('has exactly the codes the design lists', () => {
    expect([...CODES].sort()).toEqual(Object.keys(DESIGN_STATUS).sort());
  });

  it.each(CODES)('gives %s one HTTP status and one retryability', (code) => {
    const a = new ServiceError(code, 'first');
    const b = new ServiceError(code, 'second', { errcode: 40001, cause: new Error('x') });
    expect(a.status).toBe(DESIGN_STATUS[code]);
    expect(b.status).toBe(a.status);
    expect(a.retryable).toBe(RETRYABLE.has(code));
    expect(b.retryable).toBe(a.retryable);
  });

  it.each(CODES)('serialises %s as exactly {error:{code,message,retryable}} without an errcode', (code) => {
    const message = `what failed for ${code}`;
    const body = new ServiceError(code, message).toBody();
    expect(Object.keys(body)).toEqual(['error']);
    expect(body.error).toStrictEqual({ code, message, retryable: RETRYABLE.has(code) });
  });

  it.each([-1, 0, 40164, 45009])('adds errcode %i to the body when WeChat gave one', (errcode) => {
    const body = new ServiceError('wechat_rejected', 'WeChat said no', { errcode }).toBody();
    expect(body.error).toStrictEqual({
      code: 'wechat_rejected',
      message: 'WeChat said no',
      retryable: false,
      errcode,
    });
  });

  it('keeps the cause for logs but never puts it in the body', () => {
    const cause = new Error('socket hang up at 10.1.2.3');
    const err = new ServiceError('cache_unavailable', 'Memcached get failed', { cause });
    expect(err.cause).toBe(cause);
    expect(JSON.stringify(err.toBody()).includes(cause.message)).toBe(false);
  });

  it('is an Error named ServiceError', () => {
    const err = new ServiceError('forbidden', 'not yours');
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('ServiceError');
    expect(err.message).toBe('not yours');
    expect(err.errcode).toBeUndefined();
  });
});

describe('toServiceError', () => {
  it('returns a ServiceError unchanged', () => {
    const err = new ServiceError('wechat_timeout', 'too slow', { errcode: -1 });
    expect(toServiceError(err)).toBe(err);
  });

  it.each([
    [
      'an Error',
      new Error('connect ECONNREFUSED https://api.weixin.qq.com/cgi-bin/token?secret=hunter2hunter2'),
    ],
    ['a TypeError', new TypeError("Cannot read properties of undefined (reading 'hunter2hunter2')")],
    ['a string', 'hunter2hunter2'],
    ['an object', { secret: 'hunter2hunter2' }],
  ])('turns %s into internal_error with a generic message, keeping it as the cause', (_kind, thrown) => {
    const err = toServiceError(thrown);
    expect(err.code).toBe('internal_error');
    expect(err.status).toBe(500);
    expect(err.cause).toBe(thrown);
    expect(err.message.includes('hunter2hunter2')).toBe(false);
    expect(JSON.stringify(err.toBody()).includes('hunter2hunter2')).toBe(false);
    expect(inspect(err.toBody(), { depth: 10 }).includes('hunter2hunter2')).toBe(false);
  });

  it('does not mistake an error with a code-like property for a ServiceError', () => {
    const lookalike = Object.assign(new Error('lookalike'), { code: 'cache_unavailable' });
    expect(toServiceError(lookalike).code).toBe('internal_error');
  });
});
