import { describe, expect, it } from 'vitest';
import { type Config, LOCK_HEADROOM_MS, loadConfig, minimumLockLeaseSeconds } from '../../lib/config.ts';
import { APPID_PATTERN } from '../../lib/domain.ts';
import { ServiceError } from '../../lib/errors.ts';
import { CLIENT_KEY, TEST_APPID, TEST_SECRET } from '../support/secrets.ts';

type Env = Record<string, string | undefined>;

/** The smallest environment a deployment has: the credentials secret's id. */
const DEPLOYED: Env = { WECHAT_SECRET_ID: 'prod/wechat-token-service' };
/** A local run: one app from the environment. */
const LOCAL: Env = { WECHAT_APPID: TEST_APPID, WECHAT_APPSECRET: TEST_SECRET };

/** The credential source with known secrets replaced by their names, so a failing assertion prints none. */
function redacted(source: Config['credentials']): unknown {
  return JSON.parse(
    JSON.stringify(source).replaceAll(TEST_SECRET, 'TEST_SECRET').replaceAll(CLIENT_KEY, 'CLIENT_KEY'),
  );
}

/** The ServiceError `loadConfig(env)` throws; fails the test when it does not throw one. */
function configError(env: Env): ServiceError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ServiceError);
    return err as ServiceError;
  }
  throw new Error('loadConfig accepted an environment it should have rejected');
}

describe('loadConfig defaults', () => {
  it('uses the in-process store and the real WeChat API when only the secret id is set', () => {
    const config = loadConfig(DEPLOYED);
    expect(config.memcachedServers).toBeUndefined();
    expect(config.wechatApiBaseUrl).toBe('https://api.weixin.qq.com');
    expect(config.credentials).toEqual({ kind: 'secrets_manager', secretId: DEPLOYED.WECHAT_SECRET_ID });
    // Design: a classic app falls back to the stable endpoint when the cache is down.
    expect(config.cacheOutagePolicy).toBe('stable_fallback');
  });

  it('picks tunables that respect WeChat’s limits and each other', () => {
    const config = loadConfig(DEPLOYED);
    const numeric: (keyof Config)[] = [
      'memcachedTimeoutMs',
      'secretCacheSeconds',
      'refreshWindowSeconds',
      'passiveRefreshMinAgeSeconds',
      'passiveRefreshDailyBudget',
      'lockLeaseSeconds',
      'upstreamTimeoutMs',
      'memoryCacheSeconds',
      'failureMemorySeconds',
      'deadlineMarginMs',
      'secretRereadSeconds',
      'secretGraceSeconds',
      'quotaBreakerProbeSeconds',
    ];
    for (const key of numeric) {
      expect(Number.isInteger(config[key]), key).toBe(true);
      expect(config[key] as number, key).toBeGreaterThan(0);
    }
    // The lease outlives the worst upstream call (4 attempts of 3 s and their backoffs) and the write.
    expect(config.lockLeaseSeconds).toBe(15);
    expect(config.functionTimeoutSeconds).toBeUndefined();
    // One re-read per 30 s after a rejection; the last good secret for an hour while reads fail.
    expect(config.secretRereadSeconds).toBe(30);
    expect(config.secretGraceSeconds).toBe(3600);
    expect(config.quotaBreakerProbeSeconds).toBe(600);
    // A refresh starts well inside a 7200-s token's life.
    expect(config.refreshWindowSeconds).toBeLessThan(7200);
    // Passive refreshes stop below the classic endpoint's daily quota for a new account (2000).
    expect(config.passiveRefreshDailyBudget).toBeLessThan(2000);
    // The per-instance copy lives less than WeChat's 300-s overlap.
    expect(config.memoryCacheSeconds).toBeLessThan(300);
    expect(config.cacheKeyPrefix).toMatch(/^[a-z0-9_-]{1,32}$/);
    expect(['DEBUG', 'INFO', 'WARN', 'ERROR']).toContain(config.logLevel);
  });

  it('treats empty and blank variables as unset', () => {
    const blank = loadConfig({
      ...DEPLOYED,
      MEMCACHED_SERVERS: '  ',
      UPSTREAM_TIMEOUT_MS: '',
      WECHAT_API_BASE_URL: ' ',
      LOG_LEVEL: '',
    });
    expect(blank).toEqual(loadConfig(DEPLOYED));
  });

  it('reads every tunable it is given, trimmed', () => {
    const config = loadConfig({
      ...DEPLOYED,
      MEMCACHED_TIMEOUT_MS: ' 400 ',
      CACHE_KEY_PREFIX: 'wts-staging_2',
      SECRET_CACHE_SECONDS: '0',
      TOKEN_REFRESH_WINDOW_SECONDS: '1200',
      PASSIVE_REFRESH_MIN_AGE_SECONDS: '120',
      PASSIVE_REFRESH_DAILY_BUDGET: '50',
      LOCK_LEASE_SECONDS: '25',
      UPSTREAM_TIMEOUT_MS: '5000',
      SECRET_REREAD_SECONDS: '60',
      SECRET_GRACE_SECONDS: '0',
      QUOTA_BREAKER_PROBE_SECONDS: '120',
      FUNCTION_TIMEOUT_SECONDS: '29',
      MEMORY_CACHE_SECONDS: '30',
      FAILURE_MEMORY_SECONDS: '90',
      DEADLINE_MARGIN_MS: '500',
      CACHE_OUTAGE_POLICY: 'fail',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      memcachedTimeoutMs: 400,
      cacheKeyPrefix: 'wts-staging_2',
      secretCacheSeconds: 0,
      refreshWindowSeconds: 1200,
      passiveRefreshMinAgeSeconds: 120,
      passiveRefreshDailyBudget: 50,
      lockLeaseSeconds: 25,
      upstreamTimeoutMs: 5000,
      secretRereadSeconds: 60,
      secretGraceSeconds: 0,
      quotaBreakerProbeSeconds: 120,
      functionTimeoutSeconds: 29,
      memoryCacheSeconds: 30,
      failureMemorySeconds: 90,
      deadlineMarginMs: 500,
      cacheOutagePolicy: 'fail',
      logLevel: 'DEBUG',
    });
  });

  it('drops trailing slashes from WECHAT_API_BASE_URL so paths can be appended', () => {
    const base = 'http://127.0.0.1:8080/wechat';
    expect(loadConfig({ ...DEPLOYED, WECHAT_API_BASE_URL: `${base}//` }).wechatApiBaseUrl).toBe(base);
  });
});

describe('loadConfig validation', () => {
  it.each([
    ['MEMCACHED_SERVERS', 'localhost'],
    ['MEMCACHED_TIMEOUT_MS', 'fast'],
    ['CACHE_KEY_PREFIX', 'WTS!'],
    ['CACHE_KEY_PREFIX', 'x'.repeat(33)],
    ['SECRET_CACHE_SECONDS', '-5'],
    ['WECHAT_API_BASE_URL', 'api.weixin.qq.com'],
    ['WECHAT_API_BASE_URL', 'ftp://api.weixin.qq.com'],
    ['TOKEN_REFRESH_WINDOW_SECONDS', '0'],
    ['TOKEN_REFRESH_WINDOW_SECONDS', '7200'],
    ['PASSIVE_REFRESH_MIN_AGE_SECONDS', '1.5'],
    ['PASSIVE_REFRESH_DAILY_BUDGET', '1e3'],
    ['LOCK_LEASE_SECONDS', '0'],
    ['UPSTREAM_TIMEOUT_MS', '99'],
    ['UPSTREAM_TIMEOUT_MS', '0x10'],
    ['MEMORY_CACHE_SECONDS', '300'],
    ['FAILURE_MEMORY_SECONDS', 'thirty'],
    ['DEADLINE_MARGIN_MS', '5'],
    ['FUNCTION_TIMEOUT_SECONDS', '0'],
    ['FUNCTION_TIMEOUT_SECONDS', '901'],
    ['SECRET_REREAD_SECONDS', '-1'],
    ['SECRET_GRACE_SECONDS', 'forever'],
    ['QUOTA_BREAKER_PROBE_SECONDS', '0'],
    ['SCHEDULE_CONCURRENCY', '0'],
    ['SCHEDULE_CONCURRENCY', '257'],
    ['QUOTA_CHECK_INTERVAL_SECONDS', 'hourly'],
    ['QUOTA_CHECK_INTERVAL_SECONDS', '86401'],
    ['CACHE_OUTAGE_POLICY', 'retry'],
    ['LOG_LEVEL', 'VERBOSE'],
    ['WECHAT_APPID', 'wx123'],
    ['WECHAT_APPID', 'WX0123456789ABCDEF'],
    ['WECHAT_TICKETS', 'jsapi,card'],
    ['WECHAT_TOKEN_API', 'fast'],
  ])('rejects %s=%j with config_invalid naming the variable', (name, value) => {
    const err = configError({ ...LOCAL, [name]: value });
    expect(err.code).toBe('config_invalid');
    expect(err.status).toBe(500);
    expect(err.message.startsWith(`${name} `)).toBe(true);
    expect(err.message.includes(TEST_SECRET)).toBe(false);
  });

  it('never quotes a too-short WECHAT_CLIENT_KEY in its error', () => {
    const key = CLIENT_KEY.slice(0, 15);
    const err = configError({ ...LOCAL, WECHAT_CLIENT_KEY: key });
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain('WECHAT_CLIENT_KEY');
    expect(err.message.includes(key)).toBe(false);
  });

  it('bounds how much of a bad value it quotes', () => {
    const value = `${'9'.repeat(500)}x`;
    const err = configError({ ...DEPLOYED, UPSTREAM_TIMEOUT_MS: value });
    expect(err.code).toBe('config_invalid');
    expect(err.message.length).toBeLessThan(value.length);
  });
});

describe('MEMCACHED_SERVERS', () => {
  it('splits a comma-separated host:port list and trims each entry', () => {
    const servers = ['cache-1.example.internal:11211', '10.0.0.5:11212', 'localhost:11211'];
    const config = loadConfig({ ...DEPLOYED, MEMCACHED_SERVERS: ` ${servers.join(' , ')} ,` });
    expect(config.memcachedServers).toEqual(servers);
  });

  it('accepts a node-based ElastiCache configuration endpoint', () => {
    const endpoint = 'my-cache.abc123.cfg.use1.cache.amazonaws.com:11211';
    expect(loadConfig({ ...DEPLOYED, MEMCACHED_SERVERS: endpoint }).memcachedServers).toEqual([endpoint]);
  });

  it.each([
    'cache.internal',
    'cache.internal:0',
    'cache.internal:65536',
    'cache.internal:port',
    'tcp://cache.internal:11211',
    'cache.internal:11211:1',
    '10.0.0.5:11211,cache two:11211',
    ', ,',
  ])('rejects %j naming MEMCACHED_SERVERS', (value) => {
    const err = configError({ ...DEPLOYED, MEMCACHED_SERVERS: value });
    expect(err.code).toBe('config_invalid');
    expect(err.message.startsWith('MEMCACHED_SERVERS ')).toBe(true);
  });
});

describe('MEMCACHED_TLS, MEMCACHED_PROTOCOL and MEMCACHED_AUTO_DISCOVERY', () => {
  const SERVERLESS = 'my-cache-abc123.serverless.use1.cache.amazonaws.com:11211';
  const CONFIG_ENDPOINT = 'my-cache.abc123.cfg.use1.cache.amazonaws.com:11211';
  const NODE = 'my-cache.abc123.0001.use1.cache.amazonaws.com:11211';

  it.each([
    ['an ElastiCache Serverless endpoint', SERVERLESS, { protocol: 'text', tls: true, autoDiscovery: false }],
    ['the same in capitals', SERVERLESS.toUpperCase(), { protocol: 'text', tls: true, autoDiscovery: false }],
    ['a configuration endpoint', CONFIG_ENDPOINT, { protocol: 'binary', tls: false, autoDiscovery: true }],
    ['a node endpoint', NODE, { protocol: 'binary', tls: false, autoDiscovery: false }],
    ['several nodes', `${NODE},10.0.0.5:11211`, { protocol: 'binary', tls: false, autoDiscovery: false }],
  ])('infers the defaults from %s', (_what, servers, expected) => {
    const config = loadConfig({ ...DEPLOYED, MEMCACHED_SERVERS: servers });
    expect(config.memcachedTopology).toEqual({ ...expected, discoveryIntervalSeconds: 60 });
  });

  it('takes explicit values over the inferred ones, in any case', () => {
    const config = loadConfig({
      ...DEPLOYED,
      MEMCACHED_SERVERS: CONFIG_ENDPOINT,
      MEMCACHED_TLS: 'TRUE',
      MEMCACHED_PROTOCOL: 'Text',
      MEMCACHED_AUTO_DISCOVERY: 'false',
      MEMCACHED_DISCOVERY_INTERVAL_SECONDS: '5',
    });
    expect(config.memcachedTopology).toEqual({
      protocol: 'text',
      tls: true,
      autoDiscovery: false,
      discoveryIntervalSeconds: 5,
    });
  });

  it('turns Auto Discovery on for any single endpoint when asked to', () => {
    const config = loadConfig({
      ...DEPLOYED,
      MEMCACHED_SERVERS: '127.0.0.1:11211',
      MEMCACHED_AUTO_DISCOVERY: 'true',
    });
    expect(config.memcachedTopology.autoDiscovery).toBe(true);
  });

  it('refuses the binary protocol for ElastiCache Serverless, saying why', () => {
    const err = configError({ ...DEPLOYED, MEMCACHED_SERVERS: SERVERLESS, MEMCACHED_PROTOCOL: 'binary' });
    expect(err.code).toBe('config_invalid');
    expect(err.message).toMatch(/^MEMCACHED_PROTOCOL is binary, but .*Serverless.* only the text protocol/);
  });

  it('refuses plain TCP for ElastiCache Serverless', () => {
    const err = configError({ ...DEPLOYED, MEMCACHED_SERVERS: SERVERLESS, MEMCACHED_TLS: 'false' });
    expect(err.message).toMatch(/^MEMCACHED_TLS is false, but .* accepts only TLS/);
  });

  it('refuses Auto Discovery with more than one entry, or with ElastiCache Serverless', () => {
    expect(configError({ ...DEPLOYED, MEMCACHED_SERVERS: `${CONFIG_ENDPOINT},${NODE}` }).message).toMatch(
      /^MEMCACHED_AUTO_DISCOVERY is true, so MEMCACHED_SERVERS must be exactly one entry.*it has 2/,
    );
    expect(
      configError({ ...DEPLOYED, MEMCACHED_SERVERS: SERVERLESS, MEMCACHED_AUTO_DISCOVERY: 'true' }).message,
    ).toMatch(/^MEMCACHED_AUTO_DISCOVERY is true, but ElastiCache Serverless has no configuration endpoint/);
  });

  it.each([
    ['MEMCACHED_TLS', 'yes'],
    ['MEMCACHED_PROTOCOL', 'ascii'],
    ['MEMCACHED_AUTO_DISCOVERY', '1'],
    ['MEMCACHED_DISCOVERY_INTERVAL_SECONDS', '0'],
  ])('rejects %s=%s naming the variable', (name, value) => {
    const err = configError({ ...DEPLOYED, MEMCACHED_SERVERS: NODE, [name]: value });
    expect(err.code).toBe('config_invalid');
    expect(err.message.startsWith(`${name} `)).toBe(true);
  });
});

describe('MEMCACHED_SERVERS with IPv6 literals', () => {
  it.each([
    '[::1]:11211',
    '[2001:db8::5]:11211',
    '::1:11211',
    '2001:db8::5:11211',
    'cache.internal:11211,[fe80::1]:11211',
  ])('rejects %j clearly: the Memcached client cannot connect to IPv6 literals', (value) => {
    const err = configError({ ...DEPLOYED, MEMCACHED_SERVERS: value });
    expect(err.code).toBe('config_invalid');
    expect(err.message.startsWith('MEMCACHED_SERVERS ')).toBe(true);
    expect(err.message).toContain('IPv6');
    expect(err.message).toContain('host name');
  });
});

describe('LOCK_LEASE_SECONDS covers the worst upstream call', () => {
  // 4 attempts of the timeout, backoffs of at most 100 + 200 + 400 ms, and 2 s to write.
  const cases: Array<[number, number]> = [
    [100, 4],
    [1000, 7],
    [3000, 15],
    [9000, 39],
    [59_999, 243],
  ];

  it.each(cases)('defaults to the minimum for a %i ms upstream timeout (%i s)', (u, lease) => {
    const config = loadConfig({ ...DEPLOYED, UPSTREAM_TIMEOUT_MS: String(u) });
    expect(config.lockLeaseSeconds).toBe(lease);
    expect(minimumLockLeaseSeconds({ ...config }).seconds).toBe(lease);
  });

  it.each(cases)('accepts exactly the minimum for a %i ms timeout (%i s)', (u, lease) => {
    expect(
      loadConfig({ ...DEPLOYED, UPSTREAM_TIMEOUT_MS: String(u), LOCK_LEASE_SECONDS: String(lease) })
        .lockLeaseSeconds,
    ).toBe(lease);
  });

  it.each(cases)('rejects one second less for a %i ms timeout, naming the bound', (u, lease) => {
    const err = configError({
      ...DEPLOYED,
      UPSTREAM_TIMEOUT_MS: String(u),
      LOCK_LEASE_SECONDS: String(lease - 1),
    });
    expect(err.code).toBe('config_invalid');
    expect(err.message.startsWith('LOCK_LEASE_SECONDS must be at least ')).toBe(true);
    expect(err.message).toContain(`at least ${lease} s`);
    expect(err.message).toContain('UPSTREAM_TIMEOUT_MS');
    expect(err.message).toContain('4 attempts');
  });

  it('with the function timeout known, is bounded by the invocation instead when that is shorter', () => {
    // 4 × 3 s + 0.7 s > 10 s − 0.25 s: the invocation ends first.
    const env = { ...DEPLOYED, FUNCTION_TIMEOUT_SECONDS: '10' };
    expect(loadConfig(env).lockLeaseSeconds).toBe(12);
    const err = configError({ ...env, LOCK_LEASE_SECONDS: '11' });
    expect(err.message).toContain('at least 12 s');
    expect(err.message).toContain('FUNCTION_TIMEOUT_SECONDS');
    // A long function timeout leaves the call itself as the bound.
    expect(loadConfig({ ...DEPLOYED, FUNCTION_TIMEOUT_SECONDS: '60' }).lockLeaseSeconds).toBe(15);
  });

  it('matches the WeChat client: every attempt timing out with the longest backoffs fits under the minimum lease', async () => {
    const { WeChatClient } = await import('../../lib/wechat/client.ts');
    const { RefreshLock } = await import('../../lib/token/lock.ts');
    const { MemoryStore } = await import('../../lib/store/memory.ts');
    const timeoutMs = 3000;
    let t = 1_000_000;
    let attempts = 0;
    const clock = {
      now: () => t,
      sleep: async (ms: number) => {
        t += Math.ceil(ms);
      },
      // The longest backoff the jitter can produce.
      random: () => 0.999_999,
    };
    const client = new WeChatClient({
      baseUrl: 'http://wechat.invalid',
      attemptTimeoutMs: timeoutMs,
      clock,
      // Each attempt takes its whole timeout and fails retryably (busy), as the worst call does.
      transport: {
        send: async () => {
          attempts++;
          t += timeoutMs;
          return {
            kind: 'response',
            status: 200,
            text: JSON.stringify({ errcode: -1, errmsg: 'system error' }),
          };
        },
      },
    });
    const lease = minimumLockLeaseSeconds({
      upstreamTimeoutMs: timeoutMs,
      deadlineMarginMs: 250,
      functionTimeoutSeconds: undefined,
    }).seconds;
    const lock = new RefreshLock(new MemoryStore(clock), clock, lease);
    const handle = await lock.acquire('wts:v1:lock:test');
    expect(handle).not.toBeNull();
    const startedAt = t;
    const fetchDeadline = lock.fetchDeadlineMs(handle!);
    const err = await client
      .fetchTicket('wx0123456789abcdef', 'token', 'jsapi', { deadlineAtMs: Number.MAX_SAFE_INTEGER })
      .catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('wechat_unavailable');
    expect(attempts).toBe(4);
    // The whole call, all attempts and backoffs, ends before the lock would have cut it short.
    expect(t).toBeLessThanOrEqual(fetchDeadline);
    expect(fetchDeadline - startedAt).toBeGreaterThanOrEqual(lease * 1000 - LOCK_HEADROOM_MS);
  });
});

describe('DEADLINE_MARGIN_MS and FUNCTION_TIMEOUT_SECONDS', () => {
  it('accepts a margin that leaves one upstream attempt of the function timeout', () => {
    const config = loadConfig({ ...DEPLOYED, FUNCTION_TIMEOUT_SECONDS: '10', DEADLINE_MARGIN_MS: '7000' });
    expect(config.deadlineMarginMs).toBe(7000);
    expect(config.functionTimeoutSeconds).toBe(10);
  });

  it('rejects a margin near the function timeout, naming both and the bound', () => {
    const err = configError({ ...DEPLOYED, FUNCTION_TIMEOUT_SECONDS: '10', DEADLINE_MARGIN_MS: '7001' });
    expect(err.code).toBe('config_invalid');
    expect(err.message.startsWith('DEADLINE_MARGIN_MS ')).toBe(true);
    expect(err.message).toContain('FUNCTION_TIMEOUT_SECONDS');
    expect(err.message).toContain('at most 7000 ms');
  });

  it('rejects a function timeout shorter than one upstream attempt whatever the margin', () => {
    const err = configError({ ...DEPLOYED, FUNCTION_TIMEOUT_SECONDS: '3', DEADLINE_MARGIN_MS: '20' });
    expect(err.message.startsWith('DEADLINE_MARGIN_MS ')).toBe(true);
  });

  it('checks nothing against the timeout when FUNCTION_TIMEOUT_SECONDS is unset (a local run)', () => {
    expect(loadConfig({ ...DEPLOYED, DEADLINE_MARGIN_MS: '10000' }).deadlineMarginMs).toBe(10_000);
  });
});

describe('credentials source', () => {
  it('reads credentials from Secrets Manager when WECHAT_SECRET_ID is set, even with local variables', () => {
    const config = loadConfig({ ...LOCAL, WECHAT_SECRET_ID: ' prod/wechat ' });
    expect(config.credentials).toEqual({ kind: 'secrets_manager', secretId: 'prod/wechat' });
  });

  it('uses WECHAT_APPID and WECHAT_APPSECRET with classic tokens and no tickets by default', () => {
    const config = loadConfig(LOCAL);
    expect(redacted(config.credentials)).toEqual({
      kind: 'env',
      appid: TEST_APPID,
      secret: 'TEST_SECRET',
      tokenApi: 'classic',
      tickets: [],
      clientKey: undefined,
    });
    expect(APPID_PATTERN.test(TEST_APPID)).toBe(true);
  });

  it('reads the local token API, ticket list and client key', () => {
    const config = loadConfig({
      ...LOCAL,
      WECHAT_TOKEN_API: 'stable',
      WECHAT_TICKETS: ' jsapi , wx_card ,',
      WECHAT_CLIENT_KEY: CLIENT_KEY,
    });
    expect(redacted(config.credentials)).toMatchObject({
      kind: 'env',
      tokenApi: 'stable',
      tickets: ['jsapi', 'wx_card'],
      clientKey: 'CLIENT_KEY',
    });
  });

  it('treats a blank WECHAT_SECRET_ID as unset', () => {
    expect(loadConfig({ ...LOCAL, WECHAT_SECRET_ID: '   ' }).credentials.kind).toBe('env');
  });

  it.each([
    ['neither', {}],
    ['only WECHAT_APPID', { WECHAT_APPID: TEST_APPID }],
    ['only WECHAT_APPSECRET', { WECHAT_APPSECRET: TEST_SECRET }],
  ])('rejects %s with config_invalid saying which variables to set', (_case, env) => {
    const err = configError(env);
    expect(err.code).toBe('config_invalid');
    expect(err.message).toContain('WECHAT_SECRET_ID');
    expect(err.message).toContain('WECHAT_APPID');
    expect(err.message).toContain('WECHAT_APPSECRET');
    expect(err.message.includes(TEST_SECRET)).toBe(false);
  });
});

describe('many apps: SCHEDULE_CONCURRENCY, QUOTA_CHECK_INTERVAL_SECONDS and WECHAT_SECRET_PREFIX', () => {
  it('refreshes 16 apps at once and checks quotas hourly by default, with no per-app secrets', () => {
    const config = loadConfig(DEPLOYED);
    expect(config.scheduleConcurrency).toBe(16);
    expect(config.quotaCheckIntervalSeconds).toBe(3600);
    expect(config.credentials).toEqual({ kind: 'secrets_manager', secretId: DEPLOYED.WECHAT_SECRET_ID });
  });

  it('reads the concurrency, the quota interval (0 turns the schedule’s checks off) and the prefix', () => {
    const config = loadConfig({
      ...DEPLOYED,
      SCHEDULE_CONCURRENCY: '64',
      QUOTA_CHECK_INTERVAL_SECONDS: '0',
      WECHAT_SECRET_PREFIX: ' wechat/apps/ ',
    });
    expect(config.scheduleConcurrency).toBe(64);
    expect(config.quotaCheckIntervalSeconds).toBe(0);
    expect(config.credentials).toEqual({
      kind: 'secrets_manager',
      secretId: DEPLOYED.WECHAT_SECRET_ID,
      secretPrefix: 'wechat/apps/',
    });
  });

  it.each([['wechat apps/'], ['wechat/apps/*'], ['x'.repeat(495)]])(
    'rejects the prefix %j, saying what secret names allow',
    (prefix) => {
      const err = configError({ ...DEPLOYED, WECHAT_SECRET_PREFIX: prefix });
      expect(err.code).toBe('config_invalid');
      expect(err.message).toMatch(/^WECHAT_SECRET_PREFIX must be the start of Secrets Manager secret names/);
    },
  );

  it('rejects a prefix without WECHAT_SECRET_ID (a local run has its one secret in the environment)', () => {
    const err = configError({ ...LOCAL, WECHAT_SECRET_PREFIX: 'wechat/apps/' });
    expect(err.message).toMatch(
      /^WECHAT_SECRET_PREFIX is set, but per-app secrets are read only with WECHAT_SECRET_ID/,
    );
    expect(err.message.includes(TEST_SECRET)).toBe(false);
  });
});
