/**
 * What a failure tells whom: callers that have not authenticated (no key, an unknown key, /healthz)
 * get a generic 5xx message with the request id, and the log line under that id has the details;
 * authenticated callers and direct invoke get the full message (never a secret).
 */
import { describe, expect, it } from 'vitest';
import { ServiceError } from '../../../lib/errors.ts';
import { CLIENT_KEY, TEST_APPID, TEST_SECRET } from '../../support/secrets.ts';
import { bearer, type ProxyAnswer, parse, SECRET_ARN, v1, v2, world } from './harness.ts';

const GENERIC = /^the service could not answer this request; .* request id (\S+)$/;

describe('5xx answers to callers that have not authenticated', () => {
  it('hides the secret ARN behind a generic message with the request id; the log has the details', async () => {
    const w = world();
    w.secret.failing = 'ResourceNotFoundException';
    const result = await w
      .instance()
      .invoke<ProxyAnswer>(
        v2('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer() }),
        'req-abc',
      );
    expect(result.statusCode).toBe(500);
    const error = parse(result)?.error;
    expect(error?.code).toBe('config_invalid');
    expect(error?.retryable).toBe(false);
    expect(error?.message).toMatch(GENERIC);
    expect(error?.message).toContain('req-abc');
    expect(result.body).not.toContain(SECRET_ARN);
    expect(result.body).not.toContain('WECHAT_SECRET_ID');

    const line = w.events('invocation').at(-1);
    expect(line?.requestId).toBe('req-abc');
    expect(line?.code).toBe('config_invalid');
    expect(String(line?.detail)).toContain(SECRET_ARN);
  });

  it('answers a Secrets Manager outage on a cold instance with a generic, retryable 503', async () => {
    const w = world();
    w.secret.failing = 'InternalServiceError';
    const result = await w
      .instance()
      .invoke<ProxyAnswer>(v1('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer() }));
    expect(result.statusCode).toBe(503);
    const error = parse(result)?.error;
    expect(error).toMatchObject({ code: 'secrets_unavailable', retryable: true });
    expect(error?.message).toMatch(GENERIC);
  });

  it('answers an invalid configuration generically over HTTP, also on /healthz, and in full to direct invoke', async () => {
    const w = world({ MEMCACHED_SERVERS: 'cache.internal.example:11211,10.0.0.9:99999' });
    const http = await w.instance().invoke<ProxyAnswer>(v2('GET', '/healthz'), 'req-cfg');
    expect(http.statusCode).toBe(500);
    const httpError = parse(http)?.error;
    expect(httpError?.code).toBe('config_invalid');
    expect(httpError?.message).toMatch(GENERIC);
    expect(http.body).not.toContain('cache.internal.example');
    expect(http.body).not.toContain('MEMCACHED_SERVERS');

    const invoked = await w
      .instance()
      .invoke<{ error: { code: string; message: string } }>({ appid: TEST_APPID });
    expect(invoked.error.code).toBe('config_invalid');
    expect(invoked.error.message).toContain('MEMCACHED_SERVERS');
  });

  it('keeps 4xx messages: they describe the caller’s own request', async () => {
    const w = world();
    const noKey = await w
      .instance()
      .invoke<ProxyAnswer>(v2('GET', '/token', { query: { appid: TEST_APPID } }));
    expect(noKey.statusCode).toBe(401);
    expect(parse(noKey)?.error?.message).toContain('Authorization: Bearer');
    const badKey = await w
      .instance()
      .invoke<ProxyAnswer>(
        v2('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer('not-a-known-key-000') }),
      );
    expect(badKey.statusCode).toBe(401);
    expect(parse(badKey)?.error?.message).toContain('not known');
  });

  it('a generic 503 still tells the caller to retry, and never carries an errcode', async () => {
    const w = world();
    w.secret.failing = 'InternalServiceError';
    const result = await w
      .instance()
      .invoke<ProxyAnswer>(v2('GET', '/token', { headers: bearer('unknown-key-1234567') }));
    const error = parse(result)?.error;
    expect(result.statusCode).toBe(503);
    expect(error?.retryable).toBe(true);
    expect(error?.errcode).toBeUndefined();
  });
});

describe('answers to authenticated callers and direct invoke keep the full message', () => {
  const ipRefused = () =>
    new ServiceError(
      'wechat_ip_not_whitelisted',
      'WeChat /cgi-bin/token answered errcode 40164 (invalid ip 203.0.113.7) for appid wx…: add this IP to the WeChat IP whitelist: 203.0.113.7',
      { errcode: 40164 },
    );

  it('an authenticated HTTP caller sees what to fix', async () => {
    const w = world();
    w.wechat.tokenResponder = ipRefused;
    const result = await w
      .instance()
      .invoke<ProxyAnswer>(v2('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer() }));
    expect(result.statusCode).toBe(502);
    const error = parse(result)?.error;
    expect(error?.code).toBe('wechat_ip_not_whitelisted');
    expect(error?.message).toContain('203.0.113.7');
    expect(error?.errcode).toBe(40164);
  });

  it('direct invoke sees Secrets Manager’s answer with the secret id (IAM authorised it)', async () => {
    const w = world();
    w.secret.failing = 'ResourceNotFoundException';
    const body = await w
      .instance()
      .invoke<{ error: { code: string; message: string } }>({ appid: TEST_APPID });
    expect(body.error.code).toBe('config_invalid');
    expect(body.error.message).toContain(SECRET_ARN);
  });

  it('no answer or log line carries the AppSecret or the client key', async () => {
    const w = world();
    w.wechat.tokenResponder = ipRefused;
    const results = [
      await w.instance().invoke(v2('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer() })),
      await w.instance().invoke({ appid: TEST_APPID }),
    ];
    const everything = JSON.stringify(results) + JSON.stringify(w.lines);
    expect(everything.includes(TEST_SECRET)).toBe(false);
    expect(everything.includes(CLIENT_KEY)).toBe(false);
  });
});
