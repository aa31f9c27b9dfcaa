/**
 * HTTP routing on both payload versions: the route comes from API Gateway's route information
 * (REST `resource`, HTTP API `routeKey`), so stages and custom-domain base path mappings do not
 * matter; the raw path is only the fallback for events without a route.
 */
import { describe, expect, it } from 'vitest';
import { TEST_APPID } from '../../support/secrets.ts';
import { type Body, bearer, type ProxyAnswer, parse, v1, v2, world } from './harness.ts';

const TOKEN_QUERY = { appid: TEST_APPID };

async function ask(event: unknown): Promise<{ status: number; body: Body | undefined; raw: ProxyAnswer }> {
  const w = world();
  const raw = await w.instance().invoke<ProxyAnswer>(event);
  return { status: raw.statusCode, body: parse(raw), raw };
}

describe('HTTP API (payload 2.0) routes by routeKey', () => {
  it('serves GET /token on the $default stage', async () => {
    const { status, body } = await ask(v2('GET', '/token', { query: TOKEN_QUERY, headers: bearer() }));
    expect(status).toBe(200);
    expect(body?.access_token).toBe('AT-1');
  });

  it('serves a named stage, whose name prefixes rawPath', async () => {
    const event = v2('GET', '/token', {
      query: TOKEN_QUERY,
      headers: bearer(),
      stage: 'prod',
      rawPath: '/prod/token',
    });
    expect((await ask(event)).status).toBe(200);
  });

  it('serves behind a custom domain whatever the raw path says (routeKey wins)', async () => {
    const event = v2('GET', '/token', { query: TOKEN_QUERY, headers: bearer(), rawPath: '/wechat/v1/token' });
    expect((await ask(event)).status).toBe(200);
  });

  it('fills a greedy {proxy+} route from pathParameters', async () => {
    const event = v2('POST', '/token/refresh', {
      routeKey: 'ANY /{proxy+}',
      pathParameters: { proxy: 'token/refresh' },
      headers: bearer(),
      body: JSON.stringify({ appid: TEST_APPID, invalid_token: 'AT-unknown' }),
    });
    const { status, body } = await ask(event);
    expect(status).toBe(200);
    expect(body?.access_token).toBe('AT-1');
  });

  it('falls back to rawPath less the stage for the catch-all $default route, which names no path', async () => {
    const event = v2('GET', '/token', {
      routeKey: '$default',
      rawPath: '/prod/token',
      stage: 'prod',
      query: TOKEN_QUERY,
      headers: bearer(),
    });
    expect((await ask(event)).status).toBe(200);
  });

  it('decodes a base64 body (isBase64Encoded)', async () => {
    const event = v2('POST', '/token/refresh', {
      headers: bearer(),
      body: JSON.stringify({ appid: TEST_APPID, invalid_token: 'AT-unknown' }),
      base64: true,
    });
    const { status, body } = await ask(event);
    expect(status).toBe(200);
    expect(body?.access_token).toBe('AT-1');
  });

  it('answers HEAD /healthz with the status and no body', async () => {
    const { status, raw } = await ask(v2('HEAD', '/healthz', { routeKey: 'ANY /healthz' }));
    expect(status).toBe(200);
    expect(raw.body).toBe('');
    expect(raw.headers['content-type']).toBe('application/json');
  });

  it('answers GET /healthz without a key, with the cache state', async () => {
    const { status, body } = await ask(v2('GET', '/healthz'));
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'ok', cache: 'ok' });
    // The topology it sees, without host names (the caller is not authenticated).
    expect(body?.topology).toEqual({
      kind: 'memory',
      nodes: 1,
      protocol: null,
      tls: false,
      auto_discovery: false,
    });
  });

  it('reads lower-case headers and comma-joined query values as HTTP API sends them', async () => {
    const event = v2('GET', '/token', {
      query: { appid: `${TEST_APPID},${TEST_APPID}` },
      headers: { authorization: bearer().Authorization },
    });
    const { status, body } = await ask(event);
    // Duplicate query strings arrive comma-joined: not an appid.
    expect(status).toBe(400);
    expect(body?.error?.code).toBe('invalid_request');
  });
});

describe('REST API (payload 1.0) routes by resource', () => {
  it('serves GET /token', async () => {
    const { status, body } = await ask(v1('GET', '/token', { query: TOKEN_QUERY, headers: bearer() }));
    expect(status).toBe(200);
    expect(body?.access_token).toBe('AT-1');
  });

  it('serves behind a custom domain base path mapping, whose key prefixes path', async () => {
    const event = v1('GET', '/token', { path: '/wechat/token', query: TOKEN_QUERY, headers: bearer() });
    expect((await ask(event)).status).toBe(200);
  });

  it('fills a greedy /{proxy+} resource from pathParameters', async () => {
    const event = v1('GET', '/{proxy+}', {
      path: '/wechat/token',
      pathParameters: { proxy: 'token' },
      query: TOKEN_QUERY,
      headers: bearer(),
    });
    expect((await ask(event)).status).toBe(200);
  });

  it('keeps header names in the client’s case and a null query', async () => {
    const { status, body } = await ask(
      v1('GET', '/token', { headers: { AUTHORIZATION: bearer().Authorization } }),
    );
    // Authenticated (the header was found), then the missing appid is the input error.
    expect(status).toBe(400);
    expect(body?.error?.message).toContain('appid is required');
  });

  it('decodes a base64 body', async () => {
    const event = v1('POST', '/token/refresh', {
      headers: bearer(),
      body: JSON.stringify({ appid: TEST_APPID, invalid_token: 'AT-unknown' }),
      base64: true,
    });
    expect((await ask(event)).status).toBe(200);
  });

  it('answers HEAD /healthz without a body', async () => {
    const { status, raw } = await ask(v1('HEAD', '/healthz'));
    expect(status).toBe(200);
    expect(raw.body).toBe('');
  });

  it('falls back to path for an event without resource', async () => {
    const event = { ...v1('GET', '/token', { query: TOKEN_QUERY, headers: bearer() }), resource: undefined };
    expect((await ask(event)).status).toBe(200);
  });
});

describe('routes and methods that do not exist', () => {
  it('answers 404 route_not_found naming the routes', async () => {
    const { status, body } = await ask(v2('GET', '/tokens'));
    expect(status).toBe(404);
    expect(body?.error?.code).toBe('route_not_found');
    expect(body?.error?.message).toContain('/token');
  });

  it('answers 405 method_not_allowed naming the method to use', async () => {
    const { status, body } = await ask(v1('DELETE', '/token'));
    expect(status).toBe(405);
    expect(body?.error?.message).toContain('GET');
  });
});
