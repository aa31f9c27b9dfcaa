/**
 * The foundation end to end: real memcached, the WeChat simulator, and the real AWS SDK client
 * against a local Secrets Manager endpoint, through the handler module and through dist/index.js.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler } from '../../handler/index.ts';
import { bearer, CLASSIC_FIRST, httpV1, httpV2, startWorld, type World } from '../support/fixtures.ts';
import { spawnInstance } from '../support/instances.ts';
import {
  CLIENT_KEY,
  CLIENT_KEY_OTHER,
  TEST_APPID,
  TEST_APPID_2,
  TEST_APPID_UNCONFIGURED,
  TEST_SECRET,
} from '../support/secrets.ts';

type TokenBody = { access_token: string; expires_in: number; expires_at: number };
type ErrorBody = { error: { code: string; message: string; retryable: boolean; errcode?: number } };
type Proxy = { statusCode: number; headers: Record<string, string>; body: string };

let world: World;
beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world.close();
});

async function businessCall(token: string): Promise<Record<string, unknown>> {
  const response = await fetch(
    `${world.sim.baseUrl}/cgi-bin/get_api_domain_ip?access_token=${encodeURIComponent(token)}`,
  );
  return (await response.json()) as Record<string, unknown>;
}

describe('direct invoke get_token', () => {
  it('fetches once, then serves 100 calls — from a fresh instance too — without WeChat or Secrets Manager', async () => {
    world.sim.resetCounters();
    world.secrets.resetCounters();
    const env = world.env({ CACHE_KEY_PREFIX: 'found1' });
    const first = await spawnInstance(env);
    try {
      const body = await first.invoke<TokenBody>({ appid: TEST_APPID });
      expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_at', 'expires_in']);
      expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
      expect(world.secrets.calls.getSecretValue).toBe(1);
      expect(body.expires_in).toBeGreaterThan(0);
      expect(
        Math.abs(body.expires_at - (Math.floor(Date.now() / 1000) + body.expires_in)),
      ).toBeLessThanOrEqual(2);
      expect(await businessCall(body.access_token)).toHaveProperty('ip_list');

      const fresh = await spawnInstance(env);
      try {
        const bodies = await Promise.all([
          ...Array.from({ length: 50 }, () => first.invoke<TokenBody>({ appid: TEST_APPID })),
          ...Array.from({ length: 50 }, () =>
            fresh.invoke<TokenBody>({ action: 'get_token', appid: TEST_APPID }),
          ),
        ]);
        expect(new Set(bodies.map((b) => b.access_token))).toEqual(new Set([body.access_token]));
        expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
        // A cache hit needs no secret: the fresh instance never read Secrets Manager.
        expect(world.secrets.calls.getSecretValue).toBe(1);
        const sources = fresh
          .logs()
          .filter((l) => l.event === 'invocation')
          .map((l) => l.source);
        expect(sources).toHaveLength(50);
        expect(new Set(sources)).toEqual(new Set(['cache']));
        // Once one answer is in, the instance serves from its memory copy.
        await fresh.invoke({ appid: TEST_APPID });
        expect(
          fresh
            .logs()
            .filter((l) => l.event === 'invocation')
            .at(-1)?.source,
        ).toBe('memory');
      } finally {
        await fresh.close();
      }
    } finally {
      await first.close();
    }
  });

  it('answers an unknown appid with 404 unknown_appid and an invalid one with 400, never throwing', async () => {
    const handler = createHandler({ env: world.env() });
    expect(((await handler({ appid: TEST_APPID_UNCONFIGURED })) as ErrorBody).error.code).toBe(
      'unknown_appid',
    );
    for (const event of [
      { appid: 'wx../../etc' },
      { appid: 42 },
      'just a string',
      null,
      [],
      { action: 'drop_tables', appid: TEST_APPID },
    ]) {
      const body = (await handler(event)) as ErrorBody;
      expect(body.error.code).toBe('invalid_request');
      expect(Object.keys(body)).toEqual(['error']);
      expect(body.error.retryable).toBe(false);
    }
  });

  it('returns at once for a warm-up event, on a cold instance, without calling WeChat', async () => {
    world.sim.resetCounters();
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: 'warm1' }) });
    const started = performance.now();
    expect(await handler({ source: 'serverless-plugin-warmup' })).toEqual({ warmed: true });
    expect(performance.now() - started).toBeLessThan(500);
    expect(world.sim.calls.total).toBe(0);
  });
});

describe('schedule', () => {
  it('refreshes missing tokens and tickets, then leaves fresh ones alone', async () => {
    world.sim.resetCounters();
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: 'sched1' }) });
    const event = { source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} };
    const first = (await handler(event)) as {
      refreshed: unknown[];
      fresh: number;
      failed: unknown[];
      apps: number;
    };
    expect(first.apps).toBe(3);
    expect(first.failed).toEqual([]);
    // 3 access tokens + jsapi and wx_card tickets of the first app.
    expect(first.refreshed).toHaveLength(5);
    const callsAfterFirst = world.sim.calls.total;
    const second = (await handler(event)) as { refreshed: unknown[]; fresh: number };
    expect(second.refreshed).toHaveLength(0);
    expect(second.fresh).toBe(5);
    expect(world.sim.calls.total).toBe(callsAfterFirst);
  });
});

describe.each([
  ['HTTP API (v2)', httpV2],
  ['REST API (v1)', httpV1],
])('%s', (_name, makeEvent) => {
  let handler: ReturnType<typeof createHandler>;
  beforeAll(() => {
    handler = createHandler({ env: world.env() });
  });
  const call = async (event: unknown) => {
    const result = (await handler(event)) as Proxy;
    expect(result.headers['content-type']).toBe('application/json');
    return { status: result.statusCode, body: JSON.parse(result.body) as TokenBody & ErrorBody };
  };

  it('serves GET /token with a scoped key', async () => {
    const { status, body } = await call(
      makeEvent('GET', '/token', { query: { appid: TEST_APPID }, headers: bearer(CLIENT_KEY) }),
    );
    expect(status).toBe(200);
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_at', 'expires_in']);
    expect(await businessCall(body.access_token)).toHaveProperty('ip_list');
  });

  it.each([
    ['no Authorization header', {}, 401, 'unauthorized'],
    ['an unknown key', bearer('not-a-known-client-key-123'), 401, 'unauthorized'],
    ['Basic instead of Bearer', { Authorization: `Basic ${CLIENT_KEY}` }, 401, 'unauthorized'],
    ['a key scoped to other appids', bearer(CLIENT_KEY_OTHER), 403, 'forbidden'],
  ])('answers %s with %s', async (_case, headers, status, code) => {
    const result = await call(makeEvent('GET', '/token', { query: { appid: TEST_APPID }, headers }));
    expect(result.status).toBe(status);
    expect(result.body.error.code).toBe(code);
    expect(Object.keys(result.body)).toEqual(['error']);
  });

  it('matches the Authorization header name in any case', async () => {
    const result = await call(
      makeEvent('GET', '/token', {
        query: { appid: TEST_APPID },
        headers: { AUTHORIZATION: `Bearer ${CLIENT_KEY}` },
      }),
    );
    expect(result.status).toBe(200);
  });

  it('answers 404 for an appid the key lists but the secret does not configure', async () => {
    const result = await call(
      makeEvent('GET', '/token', { query: { appid: TEST_APPID_UNCONFIGURED }, headers: bearer(CLIENT_KEY) }),
    );
    expect(result.status).toBe(404);
    expect(result.body.error.code).toBe('unknown_appid');
  });

  it.each([
    ['spaces', 'wx0123 456789abcdef'],
    ['300 characters', `wx${'a'.repeat(298)}`],
    ['a path', '../../etc/passwd'],
    ['control characters', 'wx0123456789abcde\u0000'],
    ['upper-case hex', 'wx0123456789ABCDEF'],
    ['nothing', ''],
  ])('answers 400 for an appid with %s', async (_case, appid) => {
    const result = await call(makeEvent('GET', '/token', { query: { appid }, headers: bearer(CLIENT_KEY) }));
    expect(result.status).toBe(400);
    expect(result.body.error.code).toBe('invalid_request');
  });

  it.each([
    ['a number appid', JSON.stringify({ appid: 42, invalid_token: 'x' })],
    ['an array body', JSON.stringify([TEST_APPID])],
    ['a body that is not JSON', '{"appid":'],
    ['no body', undefined],
  ])('answers 400 for POST /token/refresh with %s', async (_case, body) => {
    const result = await call(
      makeEvent('POST', '/token/refresh', {
        headers: bearer(CLIENT_KEY),
        ...(body === undefined ? {} : { body }),
      }),
    );
    expect(result.status).toBe(400);
    expect(result.body.error.code).toBe('invalid_request');
  });

  it('checks the key before the input: a bad appid without a key is 401', async () => {
    const result = await call(makeEvent('GET', '/token', { query: { appid: '../x' } }));
    expect(result.status).toBe(401);
  });

  it('serves /healthz without a key', async () => {
    const result = await call(makeEvent('GET', '/healthz'));
    expect(result.status).toBe(200);
    // The topology as counts and modes: never a host name (the route needs no key).
    expect(result.body).toEqual({
      status: 'ok',
      cache: 'ok',
      topology: { kind: 'memcached', nodes: 1, protocol: 'binary', tls: false, auto_discovery: false },
    });
  });

  it('answers unknown routes with 404 and wrong methods with 405', async () => {
    expect((await call(makeEvent('GET', '/nope', { headers: bearer(CLIENT_KEY) }))).status).toBe(404);
    const wrong = await call(makeEvent('DELETE', '/token', { headers: bearer(CLIENT_KEY) }));
    expect(wrong.status).toBe(405);
    expect(wrong.body.error.code).toBe('method_not_allowed');
  });
});

describe('WeChat refusals', () => {
  it.each([
    [40001, 'wechat_credentials_rejected', 502],
    [40125, 'wechat_credentials_rejected', 502],
    [40164, 'wechat_ip_not_whitelisted', 502],
    [45009, 'wechat_quota_exhausted', 503],
  ])('errcode %i gives %s (%i), an actionable message and no retry', async (errcode, code, status) => {
    world.sim.resetCounters();
    world.sim.inject({ endpoint: 'token', errcode, times: 5 });
    // Quota: the stable endpoint (the fallback for an exhausted classic quota) is exhausted too.
    if (errcode === 45009) world.sim.inject({ endpoint: 'stable_token', errcode, times: 5 });
    const prefix = `refusal${errcode}`;
    // The classic endpoint's answers: a classic app's first fetch is classic here.
    const handler = createHandler({ env: world.env({ CACHE_KEY_PREFIX: prefix, ...CLASSIC_FIRST }) });
    try {
      const body = (await handler({ appid: TEST_APPID_2 })) as ErrorBody;
      expect(body.error.code).toBe(code);
      expect(body.error.errcode).toBe(errcode);
      expect(body.error.retryable).toBe(false);
      expect(body.error.message).not.toContain(TEST_SECRET);
      if (errcode === 40164) expect(body.error.message).toContain('203.0.113.7');
      if (errcode === 45009) expect(body.error.message).toContain('clear_quota/v2');
      if (code === 'wechat_credentials_rejected') expect(body.error.message).toContain('AppSecret');
      // A credential error re-reads the secret once (rotation); the secret did not change, so no second call.
      expect(world.sim.calls.token).toBe(1);

      const viaHttp = (await handler(
        httpV2('GET', '/token', { query: { appid: TEST_APPID_2 }, headers: bearer(CLIENT_KEY_OTHER) }),
      )) as Proxy;
      expect(viaHttp.statusCode).toBe(status);
      expect((JSON.parse(viaHttp.body) as ErrorBody).error.code).toBe(code);
      // The failure is remembered: the second request did not call WeChat again.
      expect(world.sim.calls.token).toBe(1);
      expect(world.sim.calls.stableToken).toBe(errcode === 45009 ? 1 : 0);
    } finally {
      world.sim.clearFaults();
    }
  });
});

describe('quota exhausted on the classic endpoint', () => {
  it('falls back to the stable endpoint, whose token no classic fetch invalidates', async () => {
    world.sim.resetCounters();
    world.sim.inject({ endpoint: 'token', errcode: 45009, times: 50 });
    const handler = createHandler({
      env: world.env({ CACHE_KEY_PREFIX: 'quotafallback', ...CLASSIC_FIRST }),
    });
    try {
      const bodies = (await Promise.all(
        Array.from({ length: 21 }, () => handler({ appid: TEST_APPID_2 })),
      )) as TokenBody[];
      expect(new Set(bodies.map((b) => b.access_token)).size).toBe(1);
      expect(world.sim.tokenInfo(bodies[0]!.access_token)?.kind).toBe('stable');
      expect(world.sim.calls.token).toBe(1);
      expect(world.sim.calls.stableToken).toBe(1);
    } finally {
      world.sim.clearFaults();
    }
  });
});

describe('the deployable bundle', () => {
  it('runs from a directory where nothing else can be resolved, and importing it does no I/O', async () => {
    const { mkdtempSync, copyFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const dir = mkdtempSync(join(tmpdir(), 'wts-dist-'));
    try {
      // The handler and the HTTP transport it loads on its first WeChat call (dist/wechat-http.js).
      for (const file of ['index.js', 'wechat-http.js']) copyFileSync(join('dist', file), join(dir, file));
      world.sim.resetCounters();
      const script = `
        const started = Date.now();
        const { handler } = require('./index.js');
        const imported = Date.now() - started;
        handler({ appid: '${TEST_APPID}' }, { getRemainingTimeInMillis: () => 5000 }).then((body) => {
          process.stdout.write('@@' + JSON.stringify({ imported, keys: Object.keys(body).sort(), error: body.error?.code }) + '\\n');
          process.exit(0);
        });`;
      // Asynchronously: the simulator answering it lives in this process.
      const { stdout: out } = await promisify(execFile)(process.execPath, ['-e', script], {
        cwd: dir,
        env: {
          PATH: process.env.PATH ?? '',
          WECHAT_APPID: TEST_APPID,
          WECHAT_APPSECRET: TEST_SECRET,
          WECHAT_API_BASE_URL: world.sim.baseUrl,
          MEMCACHED_SERVERS: world.memcachedAddress,
          CACHE_KEY_PREFIX: 'isolated',
        },
        encoding: 'utf8',
      });
      const result = JSON.parse(
        out
          .split('\n')
          .find((l) => l.startsWith('@@'))!
          .slice(2),
      ) as { keys: string[]; error?: string };
      expect(result.error).toBeUndefined();
      expect(result.keys).toEqual(['access_token', 'expires_at', 'expires_in']);
      expect(world.sim.calls.token + world.sim.calls.stableToken).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes one line per invocation that is the access log and its EMF metrics, with a fingerprint instead of the token', async () => {
    const [instance] = [await spawnInstance(world.env({ CACHE_KEY_PREFIX: 'observe1' }))];
    try {
      const body = await instance!.invoke<TokenBody>({ appid: TEST_APPID });
      await instance!.invoke<TokenBody>({ appid: TEST_APPID });
      const lines = instance!.logs();
      const invocations = lines.filter((l) => l.event === 'invocation');
      expect(invocations).toHaveLength(2);
      // A memory hit writes that one line and nothing else.
      expect(lines.filter((l) => l.requestId === invocations[1]!.requestId)).toEqual([invocations[1]]);
      for (const line of invocations) {
        expect(line).toMatchObject({
          event: 'invocation',
          channel: 'invoke',
          operation: 'get_token',
          appid: TEST_APPID,
          code: 'ok',
          level: 'INFO',
        });
        expect(typeof line.durationMs).toBe('number');
        expect(line.fingerprint).toMatch(/^[0-9a-f]{10}$/);
        expect(JSON.stringify(line)).not.toContain(body.access_token);
      }
      expect(invocations.map((l) => l.source)).toEqual(['wechat', 'memory']);
      const emf = lines.filter((l) => typeof l._aws === 'object');
      const served = emf.filter((l) => l.Served === 1);
      expect(served).toEqual(invocations);
      const namespaces = new Set(
        emf.flatMap((l) =>
          (l._aws as { CloudWatchMetrics: Array<{ Namespace: string }> }).CloudWatchMetrics.map(
            (m) => m.Namespace,
          ),
        ),
      );
      expect(namespaces).toEqual(new Set(['WeChatTokenService']));
      // A missing record of a classic app is fetched from the stable endpoint first (lifetime.ts).
      expect(emf.find((l) => l.UpstreamFetches === 1)).toMatchObject({
        event: 'upstream.fetch',
        upstream: 'stable_token',
        reason: 'missing',
      });
    } finally {
      await instance!.close();
    }
  });
});

describe('an invalid configuration', () => {
  it('answers config_invalid naming the variable on every channel, and logs the one line the alarm counts', async () => {
    const instance = await spawnInstance({
      MEMCACHED_SERVERS: 'my-cache.serverless.use1.cache.amazonaws.com:11211',
      MEMCACHED_PROTOCOL: 'binary',
      WECHAT_SECRET_ID: 'x',
    });
    let body: ErrorBody;
    let http: Proxy;
    try {
      body = await instance.invoke<ErrorBody>({ appid: TEST_APPID });
      http = await instance.invoke<Proxy>(httpV2('GET', '/healthz'));
    } finally {
      // Closed first: the log line goes to stderr, which is not ordered with the replies on stdout.
      await instance.close();
    }
    expect(body.error.code).toBe('config_invalid');
    expect(body.error.message).toMatch(/^MEMCACHED_PROTOCOL is binary, but .*only the text protocol/);
    expect(http.statusCode).toBe(500);
    const lines = instance.logs().filter((l) => l.event === 'config.invalid');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 'ERROR', code: 'config_invalid' });
  });
});
