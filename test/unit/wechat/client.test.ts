import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../../lib/clock.ts';
import type { TokenApi } from '../../../lib/domain.ts';
import type { ErrorCode, ServiceError } from '../../../lib/errors.ts';
import {
  AmbiguousUpstreamError,
  type FetchLike,
  WeChatClient,
  type WeChatClientOptions,
} from '../../../lib/wechat/client.ts';
import {
  type SimulatorOptions,
  startWeChatSimulator,
  type WeChatSimulator,
} from '../../../local/stand-ins/wechat-simulator.ts';
import { failure } from '../../support/failure.ts';
import { TEST_APPID, TEST_APPID_STABLE, TEST_SECRET, TEST_SECRET_STABLE } from '../../support/secrets.ts';

const CLASSIC_APP = { appid: TEST_APPID, secret: TEST_SECRET };
const STABLE_APP = { appid: TEST_APPID_STABLE, secret: TEST_SECRET_STABLE };
const START = Date.UTC(2025, 0, 15, 4, 0, 0);

/** Simulator and client share one injected clock; the client's backoff sleeps move it. */
let t = START;
let sim: WeChatSimulator | undefined;
let retries: { endpoint: string; reason: string; attempt: number }[] = [];

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function startSim(options: Partial<SimulatorOptions> = {}): Promise<WeChatSimulator> {
  t = START;
  retries = [];
  sim = await startWeChatSimulator({ apps: [CLASSIC_APP, STABLE_APP], now: () => t, ...options });
  return sim;
}

function client(baseUrl: string, options: Partial<WeChatClientOptions> = {}): WeChatClient {
  return new WeChatClient({
    baseUrl,
    attemptTimeoutMs: 2000,
    clock: {
      now: () => t,
      sleep: async (ms) => {
        t += ms;
      },
      random: () => 0.5,
    },
    onRetry: (endpoint, reason, attempt) => retries.push({ endpoint, reason, attempt }),
    ...options,
  });
}

const deadline = () => ({ deadlineAtMs: t + 10_000 });

/** Whether `text` appears anywhere an error could carry it to a log or a caller. */
function leaks(err: ServiceError, text: string): boolean {
  return (
    err.message.includes(text) ||
    JSON.stringify(err.toBody()).includes(text) ||
    inspect(err, { depth: 10 }).includes(text)
  );
}

const apps: Record<TokenApi, { app: typeof CLASSIC_APP; endpoint: 'token' | 'stable_token' }> = {
  classic: { app: CLASSIC_APP, endpoint: 'token' },
  stable: { app: STABLE_APP, endpoint: 'stable_token' },
};
const counted = (s: WeChatSimulator, api: TokenApi) =>
  api === 'classic' ? s.calls.token : s.calls.stableToken;

describe('WeChatClient.fetchAccessToken success', () => {
  it('returns the classic token and WeChat’s expires_in', async () => {
    const s = await startSim({ tokenLifetimeSeconds: 5400 });
    const grant = await client(s.baseUrl).fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    expect(grant.expiresInSeconds).toBe(5400);
    expect(s.tokenStatus(grant.value)).toBe('valid');
    expect(s.tokenInfo(grant.value)).toMatchObject({ appid: TEST_APPID, kind: 'classic' });
    expect(s.calls.token).toBe(1);
    expect(retries).toEqual([]);
  });

  it('returns the same stable token with its remaining lifetime on a second call', async () => {
    const s = await startSim({ tokenLifetimeSeconds: 7200 });
    const c = client(s.baseUrl);
    const first = await c.fetchAccessToken(STABLE_APP, 'stable', deadline());
    const elapsedSeconds = 100;
    t += elapsedSeconds * 1000;
    const second = await c.fetchAccessToken(STABLE_APP, 'stable', deadline());
    expect(first.expiresInSeconds).toBe(7200);
    expect(second.value).toBe(first.value);
    expect(second.expiresInSeconds).toBe(first.expiresInSeconds - elapsedSeconds);
    expect(s.tokenInfo(first.value)).toMatchObject({ appid: TEST_APPID_STABLE, kind: 'stable' });
    expect(s.calls.stableTokenForce).toBe(0);
  });

  it('asks for a new stable token only when forceRefresh is set', async () => {
    const s = await startSim();
    const c = client(s.baseUrl);
    const first = await c.fetchAccessToken(STABLE_APP, 'stable', deadline());
    const forced = await c.fetchAccessToken(STABLE_APP, 'stable', { ...deadline(), forceRefresh: true });
    expect(forced.value).not.toBe(first.value);
    expect(s.calls.stableTokenForce).toBe(1);
    expect(s.calls.stableTokenForceRefreshes).toBe(1);
  });
});

describe('WeChatClient.fetchTicket success', () => {
  it('returns the jsapi and wx_card tickets with WeChat’s expires_in', async () => {
    const s = await startSim({ ticketLifetimeSeconds: 3600 });
    const c = client(s.baseUrl);
    const token = await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    const jsapi = await c.fetchTicket(TEST_APPID, token.value, 'jsapi', deadline());
    const card = await c.fetchTicket(TEST_APPID, token.value, 'wx_card', deadline());
    expect(jsapi.expiresInSeconds).toBe(3600);
    expect(s.ticketStatus(jsapi.value)).toBe('valid');
    expect(s.ticketsIssued(TEST_APPID, 'jsapi').map((i) => i.ticket)).toEqual([jsapi.value]);
    expect(s.ticketsIssued(TEST_APPID, 'wx_card').map((i) => i.ticket)).toEqual([card.value]);
  });
});

/**
 * WeChat's token-endpoint errcodes and how the service must classify them (wechat-facts §3): credentials
 * and IP problems are never retried; -1 (busy) is retried; 45011 waits for the next minute.
 */
const TOKEN_ERRCODES: [errcode: number, code: ErrorCode, status: number, retryable: boolean][] = [
  [40001, 'wechat_credentials_rejected', 502, false],
  [40013, 'wechat_credentials_rejected', 502, false],
  [40125, 'wechat_credentials_rejected', 502, false],
  [40164, 'wechat_ip_not_whitelisted', 502, false],
  [40243, 'wechat_credentials_rejected', 502, false],
  [45009, 'wechat_quota_exhausted', 503, false],
  [45011, 'wechat_rate_limited', 503, true],
  [61004, 'wechat_ip_not_whitelisted', 502, false],
  [89503, 'wechat_ip_confirmation_required', 502, false],
  [89506, 'wechat_ip_confirmation_required', 502, false],
  [89507, 'wechat_ip_confirmation_required', 502, false],
  [48001, 'wechat_rejected', 502, false],
  [-1, 'wechat_unavailable', 503, true],
];

describe.each(['classic', 'stable'] as const)('WeChatClient.fetchAccessToken errcodes (%s)', (api) => {
  const { app, endpoint } = apps[api];

  it.each(TOKEN_ERRCODES)(
    'maps errcode %i to %s (HTTP %i, retryable %s), never echoing the AppSecret',
    async (errcode, code, status, retryable) => {
      const s = await startSim();
      // An errmsg that echoes the AppSecret: the client must scrub it.
      s.inject({ endpoint, errcode, errmsg: `rejected request with secret=${app.secret}`, times: 100 });
      const err = await failure(client(s.baseUrl).fetchAccessToken(app, api, deadline()));
      expect(leaks(err, app.secret)).toBe(false);
      expect(err.code).toBe(code);
      expect(err.status).toBe(status);
      expect(err.retryable).toBe(retryable);
      expect(err.errcode).toBe(errcode);
      expect(err.toBody().error.errcode).toBe(errcode);
      expect(err.message).toContain(app.appid);
      if (errcode === -1) {
        expect(counted(s, api)).toBeGreaterThan(1);
        expect(retries.every((r) => r.reason === '-1')).toBe(true);
      } else {
        expect(counted(s, api)).toBe(1);
        expect(retries).toEqual([]);
      }
    },
  );

  it('names the IP WeChat saw in a 40164 error, without retrying', async () => {
    const ip = `198.51.100.${1 + Math.floor(Math.random() * 250)}`;
    const s = await startSim({ egressIp: ip });
    s.inject({ endpoint, errcode: 40164 });
    const err = await failure(client(s.baseUrl).fetchAccessToken(app, api, deadline()));
    expect(err.code).toBe('wechat_ip_not_whitelisted');
    expect(err.errcode).toBe(40164);
    expect(err.message).toContain(ip);
    expect(err.message).toContain('whitelist');
    expect(counted(s, api)).toBe(1);
  });

  it('reports a wrong AppSecret as rejected credentials without retrying', async () => {
    const s = await startSim();
    const wrong = `${app.secret.slice(0, -4)}0000`;
    const err = await failure(client(s.baseUrl).fetchAccessToken({ ...app, secret: wrong }, api, deadline()));
    expect(err.code).toBe('wechat_credentials_rejected');
    expect(err.errcode).toBe(40001);
    expect(leaks(err, wrong)).toBe(false);
    expect(counted(s, api)).toBe(1);
  });

  it('retries -1 (busy) and returns the token of the third attempt', async () => {
    const s = await startSim();
    s.inject({ endpoint, errcode: -1, times: 2 });
    const grant = await client(s.baseUrl).fetchAccessToken(app, api, deadline());
    expect(s.tokenStatus(grant.value)).toBe('valid');
    expect(counted(s, api)).toBe(3);
    expect(retries).toEqual([
      { endpoint, reason: '-1', attempt: 1 },
      { endpoint, reason: '-1', attempt: 2 },
    ]);
  });

  it.each([
    ['an HTTP 502 from the gateway', { httpStatus: 502 }],
    ['an HTTP 503 from the gateway', { httpStatus: 503 }],
    ['a reset connection', { reset: true }],
  ])(
    'after %s: retries a stable call, but never repeats a classic one (it may have issued a token)',
    async (_kind, fault) => {
      const s = await startSim();
      s.inject({ endpoint, ...fault });
      if (api === 'stable') {
        const grant = await client(s.baseUrl).fetchAccessToken(app, api, deadline());
        expect(s.tokenStatus(grant.value)).toBe('valid');
        expect(counted(s, api)).toBe(2);
        expect(retries).toEqual([{ endpoint, reason: 'wechat_unavailable', attempt: 1 }]);
      } else {
        const err = await failure(client(s.baseUrl).fetchAccessToken(app, api, deadline()));
        expect(err).toBeInstanceOf(AmbiguousUpstreamError);
        expect(err.code).toBe('wechat_unavailable');
        expect(err.retryable).toBe(true);
        expect(counted(s, api)).toBe(1);
        expect(retries).toEqual([]);
      }
    },
  );

  it('never repeats a stable force refresh after an ambiguous failure', async () => {
    if (api === 'classic') return;
    const s = await startSim();
    s.inject({ endpoint, httpStatus: 502 });
    const err = await failure(
      client(s.baseUrl).fetchAccessToken(app, api, { ...deadline(), forceRefresh: true }),
    );
    expect(err).toBeInstanceOf(AmbiguousUpstreamError);
    expect(s.calls.stableTokenForce).toBe(1);
  });

  it.each([
    ['HTTP 502', { httpStatus: 502 }],
    ['reset connections', { reset: true }],
  ])('gives up on persistent %s with wechat_unavailable, never quoting the URL', async (_kind, fault) => {
    const s = await startSim();
    s.inject({ endpoint, ...fault, times: 100 });
    const err = await failure(client(s.baseUrl).fetchAccessToken(app, api, deadline()));
    expect(err.code).toBe('wechat_unavailable');
    expect(err.retryable).toBe(true);
    expect(err.errcode).toBeUndefined();
    expect(counted(s, api)).toBe(api === 'classic' ? 1 : 4);
    expect(leaks(err, app.secret)).toBe(false);
    expect(leaks(err, s.baseUrl)).toBe(false);
  });

  it('treats an HTTP status that is neither 200 nor 5xx as a bad response, without retrying', async () => {
    const s = await startSim();
    s.inject({ endpoint, httpStatus: 403 });
    const err = await failure(client(s.baseUrl).fetchAccessToken(app, api, deadline()));
    expect(err.code).toBe('wechat_bad_response');
    expect(counted(s, api)).toBe(1);
  });
});

describe('WeChatClient quota and deadlines', () => {
  it('says how to reset an exhausted classic quota (45009) with clear_quota/v2', async () => {
    const quota = 2;
    const s = await startSim({ classicDailyQuota: quota });
    const c = client(s.baseUrl);
    for (let i = 0; i < quota; i++) await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    const err = await failure(c.fetchAccessToken(CLASSIC_APP, 'classic', deadline()));
    expect(err.code).toBe('wechat_quota_exhausted');
    expect(err.errcode).toBe(45009);
    expect(err.message).toContain('clear_quota/v2');
    expect(s.calls.token).toBe(quota + 1);
  });

  it('throws wechat_timeout without calling WeChat when the deadline has passed', async () => {
    const s = await startSim();
    const err = await failure(
      client(s.baseUrl).fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs: t }),
    );
    expect(err.code).toBe('wechat_timeout');
    expect(s.calls.total).toBe(0);
  });

  it('gives up with wechat_timeout at the deadline when WeChat is slower (real clock)', async () => {
    const s = await startSim();
    s.inject({ endpoint: 'token', latencyMs: 400 });
    const c = client(s.baseUrl, { clock: systemClock });
    const started = performance.now();
    const err = await failure(c.fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs: Date.now() + 150 }));
    expect(err.code).toBe('wechat_timeout');
    expect(err.status).toBe(503);
    expect(performance.now() - started).toBeLessThan(250);
  });

  it('abandons a stable attempt slower than attemptTimeoutMs and retries inside the deadline (real clock)', async () => {
    const s = await startSim();
    s.inject({ endpoint: 'stable_token', latencyMs: 400 });
    const c = client(s.baseUrl, { clock: systemClock, attemptTimeoutMs: 100 });
    const started = performance.now();
    const grant = await c.fetchAccessToken(STABLE_APP, 'stable', { deadlineAtMs: Date.now() + 2000 });
    expect(s.tokenStatus(grant.value)).toBe('valid');
    expect(s.calls.stableToken).toBe(2);
    expect(retries).toEqual([{ endpoint: 'stable_token', reason: 'wechat_timeout', attempt: 1 }]);
    expect(performance.now() - started).toBeLessThan(400);
  });

  it('abandons a classic attempt slower than attemptTimeoutMs without repeating it (real clock)', async () => {
    const s = await startSim();
    s.inject({ endpoint: 'token', latencyMs: 400 });
    const c = client(s.baseUrl, { clock: systemClock, attemptTimeoutMs: 100 });
    const started = performance.now();
    const err = await failure(
      c.fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs: Date.now() + 2000 }),
    );
    expect(err).toBeInstanceOf(AmbiguousUpstreamError);
    expect(err.code).toBe('wechat_timeout');
    expect(s.calls.token).toBe(1);
    expect(performance.now() - started).toBeLessThan(300);
  });

  it('returns WeChat’s last error instead of sleeping past the deadline', async () => {
    const s = await startSim();
    s.inject({ endpoint: 'token', errcode: -1, times: 100 });
    // The longest backoff the jitter allows, so the deadline is reached after few attempts.
    const random = vi.spyOn(Math, 'random').mockReturnValue(0.999);
    try {
      const deadlineAtMs = t + 250;
      const err = await failure(client(s.baseUrl).fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs }));
      expect(err.code).toBe('wechat_unavailable');
      expect(err.errcode).toBe(-1);
      expect(t).toBeLessThan(deadlineAtMs);
      expect(s.calls.token).toBe(retries.length + 1);
    } finally {
      random.mockRestore();
    }
  });
});

describe('WeChatClient.fetchTicket errcodes', () => {
  it('reports 40001 for a token a later rotation killed, with errcode 40001 and not as bad credentials', async () => {
    const s = await startSim();
    const c = client(s.baseUrl);
    const killed = await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    expect(s.tokenStatus(killed.value)).toBe('invalidated');
    const err = await failure(c.fetchTicket(TEST_APPID, killed.value, 'jsapi', deadline()));
    expect(err.errcode).toBe(40001);
    expect(err.code).not.toBe('wechat_credentials_rejected');
    expect(leaks(err, killed.value)).toBe(false);
    expect(s.calls.ticket).toBe(1);
  });

  it('reports 42001 for an expired token', async () => {
    const lifetime = 7200;
    const s = await startSim({ tokenLifetimeSeconds: lifetime });
    const c = client(s.baseUrl);
    const token = await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    t += lifetime * 1000;
    const err = await failure(c.fetchTicket(TEST_APPID, token.value, 'jsapi', deadline()));
    expect(err.errcode).toBe(42001);
    expect(s.calls.ticket).toBe(1);
  });

  it('scrubs the access token from an errmsg that echoes it', async () => {
    const s = await startSim();
    const c = client(s.baseUrl);
    const token = await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    s.inject({ endpoint: 'ticket', errcode: 40001, errmsg: `invalid credential ${token.value}` });
    const err = await failure(c.fetchTicket(TEST_APPID, token.value, 'jsapi', deadline()));
    expect(err.errcode).toBe(40001);
    expect(leaks(err, token.value)).toBe(false);
  });
});

describe('WeChatClient with malformed answers', () => {
  /** A fetch that answers `body` with `status`, counting calls. */
  function answering(body: string, status = 200) {
    const calls: string[] = [];
    const fetch: FetchLike = async (url) => {
      calls.push(url);
      return new Response(body, { status, headers: { 'content-type': 'application/json' } });
    };
    return { fetch, calls };
  }

  it.each([
    ['HTML', '<html><body>ok</body></html>'],
    ['truncated JSON', '{"access_token":"ACCESS","expires_'],
    ['a JSON array', '[]'],
    ['JSON null', 'null'],
    ['a JSON string', '"ACCESS_TOKEN"'],
    ['no access_token', '{"expires_in":7200}'],
    ['errcode 0 and no access_token', '{"errcode":0,"errmsg":"ok"}'],
    ['an empty access_token', '{"access_token":"","expires_in":7200}'],
    ['an access_token with a space', '{"access_token":"ACCESS TOKEN","expires_in":7200}'],
    ['a 5000-character access_token', JSON.stringify({ access_token: 'A'.repeat(5000), expires_in: 7200 })],
    ['a numeric access_token', '{"access_token":12345,"expires_in":7200}'],
    ['no expires_in', '{"access_token":"ACCESS"}'],
    ['expires_in as a string', '{"access_token":"ACCESS","expires_in":"7200"}'],
    ['expires_in 0', '{"access_token":"ACCESS","expires_in":0}'],
    ['a negative expires_in', '{"access_token":"ACCESS","expires_in":-5}'],
    ['a fractional expires_in', '{"access_token":"ACCESS","expires_in":7200.5}'],
    [
      'a body over 64 KB',
      JSON.stringify({ access_token: 'ACCESS', expires_in: 7200, pad: 'x'.repeat(70_000) }),
    ],
  ])('rejects a 200 answer with %s as wechat_bad_response, without retrying', async (_kind, body) => {
    const { fetch, calls } = answering(body);
    const c = client('https://api.weixin.qq.com', { fetch });
    const err = await failure(c.fetchAccessToken(CLASSIC_APP, 'classic', deadline()));
    expect(err.code).toBe('wechat_bad_response');
    expect(err.status).toBe(502);
    expect(calls).toHaveLength(1);
    expect(leaks(err, TEST_SECRET)).toBe(false);
  });

  it('accepts a success body that carries errcode 0, as the ticket endpoint does', async () => {
    const { fetch } = answering('{"errcode":0,"errmsg":"ok","ticket":"TICKET-1","expires_in":7200}');
    const grant = await client('https://api.weixin.qq.com', { fetch }).fetchTicket(
      TEST_APPID,
      'ACCESS',
      'jsapi',
      deadline(),
    );
    expect(grant).toEqual({ value: 'TICKET-1', expiresInSeconds: 7200 });
  });

  it('rejects a ticket answer without a ticket as wechat_bad_response', async () => {
    const { fetch } = answering('{"errcode":0,"errmsg":"ok","expires_in":7200}');
    const c = client('https://api.weixin.qq.com', { fetch });
    const err = await failure(c.fetchTicket(TEST_APPID, 'ACCESS', 'jsapi', deadline()));
    expect(err.code).toBe('wechat_bad_response');
  });

  it('sends the classic request as GET with the credentials in the query, and the stable one as a JSON POST', async () => {
    const seen: { url: string; method: string | undefined; body: unknown }[] = [];
    const fetch: FetchLike = async (url, init) => {
      seen.push({ url, method: init.method, body: init.body });
      return new Response('{"access_token":"ACCESS","expires_in":7200}', { status: 200 });
    };
    const base = 'https://api.weixin.qq.com';
    const c = client(base, { fetch });
    await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    await c.fetchAccessToken(STABLE_APP, 'stable', { ...deadline(), forceRefresh: true });
    const classic = new URL(seen[0]?.url ?? '');
    expect(`${classic.origin}${classic.pathname}`).toBe(`${base}/cgi-bin/token`);
    expect(seen[0]?.method).toBe('GET');
    expect(Object.fromEntries(classic.searchParams)).toEqual({
      grant_type: 'client_credential',
      appid: CLASSIC_APP.appid,
      secret: CLASSIC_APP.secret,
    });
    expect(seen[1]?.url).toBe(`${base}/cgi-bin/stable_token`);
    expect(seen[1]?.method).toBe('POST');
    expect(JSON.parse(String(seen[1]?.body))).toEqual({
      grant_type: 'client_credential',
      appid: STABLE_APP.appid,
      secret: STABLE_APP.secret,
      force_refresh: true,
    });
  });
});
