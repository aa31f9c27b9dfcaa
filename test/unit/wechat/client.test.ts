import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { TokenApi } from '../../../lib/domain.ts';
import type { ErrorCode, ServiceError } from '../../../lib/errors.ts';
import {
  AmbiguousUpstreamError,
  WeChatClient,
  type WeChatClientOptions,
} from '../../../lib/wechat/client.ts';
import type { HttpOutcome, HttpRequest, HttpTransport } from '../../../lib/wechat/transport.ts';
import { UndiciTransport } from '../../../lib/wechat/undici-transport.ts';
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
/** What the client's clock.random answers: the backoff is `jitter × 100 ms × 2^(attempt-1)`. */
let jitter = 0.5;
/** The real transports the tests opened: their pooled connections are closed after each test. */
let transports: UndiciTransport[] = [];

afterEach(async () => {
  t = START;
  retries = [];
  jitter = 0.5;
  await Promise.all(transports.map((transport) => transport.close()));
  transports = [];
  await sim?.close();
  sim = undefined;
});

async function startSim(options: Partial<SimulatorOptions> = {}): Promise<WeChatSimulator> {
  t = START;
  retries = [];
  sim = await startWeChatSimulator({ apps: [CLASSIC_APP, STABLE_APP], now: () => t, ...options });
  return sim;
}

/** A client over undici (against the simulator) unless the test passes its own transport. */
function client(baseUrl: string, options: Partial<WeChatClientOptions> = {}): WeChatClient {
  let transport = options.transport;
  if (!transport) {
    const undici = new UndiciTransport();
    transports.push(undici);
    transport = undici;
  }
  return new WeChatClient({
    baseUrl,
    transport,
    attemptTimeoutMs: 2000,
    clock: {
      now: () => t,
      sleep: async (ms) => {
        t += ms;
      },
      random: () => jitter,
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

  it('returns WeChat’s last error instead of sleeping past the deadline', async () => {
    const s = await startSim();
    s.inject({ endpoint: 'token', errcode: -1, times: 100 });
    // Nearly the longest backoff the jitter allows: ~100 ms, then ~200 ms would end past the deadline.
    jitter = 0.999;
    const deadlineAtMs = t + 250;
    const err = await failure(client(s.baseUrl).fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs }));
    expect(err.code).toBe('wechat_unavailable');
    expect(err.errcode).toBe(-1);
    expect(t).toBeLessThan(deadlineAtMs);
    expect(s.calls.token).toBe(2);
    expect(retries).toEqual([{ endpoint: 'token', reason: '-1', attempt: 1 }]);
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

/**
 * A transport that answers from a script, one outcome per call (the last one repeats), recording every
 * request. `elapse` moves the shared clock as the exchange would have taken.
 */
function scripted(...steps: { outcome: HttpOutcome; elapse?: (request: HttpRequest) => number }[]) {
  const requests: HttpRequest[] = [];
  const transport: HttpTransport = {
    async send(request) {
      requests.push(request);
      const step = steps[Math.min(requests.length, steps.length) - 1]!;
      t += step.elapse?.(request) ?? 0;
      return step.outcome;
    },
  };
  return { transport, requests };
}

const ok = (body: string, status = 200): HttpOutcome => ({ kind: 'response', status, text: body });
const TOKEN_BODY = '{"access_token":"ACCESS","expires_in":7200}';
/** The transport's own timeout fired: the whole attempt's time has passed. */
const timedOut = {
  outcome: { kind: 'timeout', code: 'ATTEMPT_TIMEOUT' } as const,
  elapse: (r: HttpRequest) => r.timeoutMs,
};
const BASE = 'https://api.weixin.qq.com';

describe('WeChatClient attempt timeouts and the deadline', () => {
  it('gives each attempt attemptTimeoutMs, or less when the deadline is nearer', async () => {
    const { transport, requests } = scripted(timedOut, { outcome: ok(TOKEN_BODY) });
    const c = client(BASE, { transport, attemptTimeoutMs: 100 });
    await c.fetchAccessToken(STABLE_APP, 'stable', { deadlineAtMs: t + 2000 });
    await c.fetchAccessToken(STABLE_APP, 'stable', { deadlineAtMs: t + 40 });
    expect(requests.map((r) => r.timeoutMs)).toEqual([100, 100, 40]);
    expect(requests.every((r) => r.maxBodyBytes === 64 * 1024)).toBe(true);
  });

  it('gives up with wechat_timeout when a classic attempt times out, and does not repeat it', async () => {
    const { transport, requests } = scripted(timedOut, { outcome: ok(TOKEN_BODY) });
    const c = client(BASE, { transport, attemptTimeoutMs: 100 });
    const err = await failure(c.fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs: t + 2000 }));
    expect(err).toBeInstanceOf(AmbiguousUpstreamError);
    expect(err.code).toBe('wechat_timeout');
    expect(err.status).toBe(503);
    expect(requests).toHaveLength(1);
    expect(retries).toEqual([]);
  });

  it('abandons a stable attempt that times out and retries it inside the deadline', async () => {
    const { transport, requests } = scripted(timedOut, { outcome: ok(TOKEN_BODY) });
    const c = client(BASE, { transport, attemptTimeoutMs: 100 });
    const grant = await c.fetchAccessToken(STABLE_APP, 'stable', { deadlineAtMs: t + 2000 });
    expect(grant).toEqual({ value: 'ACCESS', expiresInSeconds: 7200 });
    expect(requests).toHaveLength(2);
    expect(retries).toEqual([{ endpoint: 'stable_token', reason: 'wechat_timeout', attempt: 1 }]);
  });

  it('stops at the deadline when every stable attempt times out, never waiting past it', async () => {
    const { transport, requests } = scripted(timedOut);
    const c = client(BASE, { transport, attemptTimeoutMs: 100 });
    const deadlineAtMs = t + 180;
    const err = await failure(c.fetchAccessToken(STABLE_APP, 'stable', { deadlineAtMs }));
    expect(err.code).toBe('wechat_timeout');
    expect(err).not.toBeInstanceOf(AmbiguousUpstreamError);
    // 100 ms, a 50-ms backoff, then the 30 ms left; a 100-ms backoff would end past the deadline.
    expect(requests.map((r) => r.timeoutMs)).toEqual([100, 30]);
    expect(t).toBe(deadlineAtMs);
  });

  it('throws wechat_timeout without calling WeChat when the deadline has passed', async () => {
    const { transport, requests } = scripted({ outcome: ok(TOKEN_BODY) });
    const err = await failure(
      client(BASE, { transport }).fetchAccessToken(CLASSIC_APP, 'classic', { deadlineAtMs: t }),
    );
    expect(err.code).toBe('wechat_timeout');
    expect(requests).toHaveLength(0);
  });
});

describe('WeChatClient network failures', () => {
  const notSent = { outcome: { kind: 'not_sent', code: 'ECONNREFUSED' } as const };
  const interrupted = { outcome: { kind: 'interrupted', code: 'ECONNRESET' } as const };

  it('retries a classic call that was never sent (connection refused) and returns the token', async () => {
    const { transport, requests } = scripted(notSent, { outcome: ok(TOKEN_BODY) });
    const grant = await client(BASE, { transport }).fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    expect(grant.value).toBe('ACCESS');
    expect(requests).toHaveLength(2);
    expect(retries).toEqual([{ endpoint: 'token', reason: 'wechat_unavailable', attempt: 1 }]);
  });

  it('gives up on a refused connection after 4 attempts with wechat_unavailable naming the code', async () => {
    const { transport, requests } = scripted(notSent);
    const err = await failure(
      client(BASE, { transport }).fetchAccessToken(CLASSIC_APP, 'classic', deadline()),
    );
    expect(err.code).toBe('wechat_unavailable');
    expect(err).not.toBeInstanceOf(AmbiguousUpstreamError);
    expect(err.message).toContain('ECONNREFUSED');
    expect(requests).toHaveLength(4);
    expect(leaks(err, TEST_SECRET)).toBe(false);
    expect(leaks(err, BASE)).toBe(false);
  });

  it.each([
    ['an interrupted connection', async () => interrupted.outcome],
    [
      'a transport that throws',
      async (): Promise<HttpOutcome> => {
        throw new Error(`socket hang up at ${BASE}/cgi-bin/token?secret=${TEST_SECRET}`);
      },
    ],
  ])(
    'treats %s as ambiguous: no classic repeat, and neither URL nor secret in the error',
    async (_kind, send) => {
      const requests: HttpRequest[] = [];
      const transport: HttpTransport = {
        send: (request) => {
          requests.push(request);
          return send();
        },
      };
      const err = await failure(
        client(BASE, { transport }).fetchAccessToken(CLASSIC_APP, 'classic', deadline()),
      );
      expect(err).toBeInstanceOf(AmbiguousUpstreamError);
      expect(err.code).toBe('wechat_unavailable');
      expect(requests).toHaveLength(1);
      expect(leaks(err, TEST_SECRET)).toBe(false);
      expect(leaks(err, BASE)).toBe(false);
    },
  );

  it('repeats a ticket call after an interrupted connection (a ticket fetch invalidates nothing)', async () => {
    const { transport, requests } = scripted(interrupted, {
      outcome: ok('{"errcode":0,"errmsg":"ok","ticket":"TICKET-1","expires_in":7200}'),
    });
    const grant = await client(BASE, { transport }).fetchTicket(TEST_APPID, 'ACCESS', 'jsapi', deadline());
    expect(grant.value).toBe('TICKET-1');
    expect(requests).toHaveLength(2);
  });
});

describe('WeChatClient with malformed answers', () => {
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
    const { transport, requests } = scripted({ outcome: ok(body) });
    const c = client(BASE, { transport });
    const err = await failure(c.fetchAccessToken(CLASSIC_APP, 'classic', deadline()));
    expect(err.code).toBe('wechat_bad_response');
    expect(err.status).toBe(502);
    expect(requests).toHaveLength(1);
    expect(leaks(err, TEST_SECRET)).toBe(false);
  });

  it('rejects an answer the transport stopped reading at the size cap, without retrying', async () => {
    const { transport, requests } = scripted({ outcome: { kind: 'too_large', status: 200 } });
    const err = await failure(client(BASE, { transport }).fetchAccessToken(STABLE_APP, 'stable', deadline()));
    expect(err.code).toBe('wechat_bad_response');
    expect(err.message).toContain('65536 bytes');
    expect(requests).toHaveLength(1);
  });

  it('accepts a success body that carries errcode 0, as the ticket endpoint does', async () => {
    const { transport } = scripted({
      outcome: ok('{"errcode":0,"errmsg":"ok","ticket":"TICKET-1","expires_in":7200}'),
    });
    const grant = await client(BASE, { transport }).fetchTicket(TEST_APPID, 'ACCESS', 'jsapi', deadline());
    expect(grant).toEqual({ value: 'TICKET-1', expiresInSeconds: 7200 });
  });

  it('rejects a ticket answer without a ticket as wechat_bad_response', async () => {
    const { transport } = scripted({ outcome: ok('{"errcode":0,"errmsg":"ok","expires_in":7200}') });
    const c = client(BASE, { transport });
    const err = await failure(c.fetchTicket(TEST_APPID, 'ACCESS', 'jsapi', deadline()));
    expect(err.code).toBe('wechat_bad_response');
  });

  it('sends the classic request as GET with the credentials in the query, and the stable one as a JSON POST', async () => {
    const { transport, requests } = scripted({ outcome: ok(TOKEN_BODY) });
    const c = client(BASE, { transport });
    await c.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    await c.fetchAccessToken(STABLE_APP, 'stable', { ...deadline(), forceRefresh: true });
    const classic = new URL(requests[0]?.url ?? '');
    expect(`${classic.origin}${classic.pathname}`).toBe(`${BASE}/cgi-bin/token`);
    expect(requests[0]?.method).toBe('GET');
    expect(requests[0]?.body).toBeUndefined();
    expect(Object.fromEntries(classic.searchParams)).toEqual({
      grant_type: 'client_credential',
      appid: CLASSIC_APP.appid,
      secret: CLASSIC_APP.secret,
    });
    expect(requests[1]?.url).toBe(`${BASE}/cgi-bin/stable_token`);
    expect(requests[1]?.method).toBe('POST');
    expect(requests[1]?.headers).toEqual({ 'content-type': 'application/json' });
    expect(JSON.parse(String(requests[1]?.body))).toEqual({
      grant_type: 'client_credential',
      appid: STABLE_APP.appid,
      secret: STABLE_APP.secret,
      force_refresh: true,
    });
  });
});

describe('WeChatClient.getApiQuota against the simulator', () => {
  it('answers today’s daily_limit, used and remain of /cgi-bin/token, as WeChat counted them', async () => {
    const s = await startSim();
    const wechat = client(s.baseUrl);
    const { value } = await wechat.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    s.rotateExternally(TEST_APPID);
    const quota = await wechat.getApiQuota(TEST_APPID, value, '/cgi-bin/token', deadline());
    expect(quota).toEqual({ dailyLimit: 2000, used: 2, remain: 1998 });
    expect(s.calls.quota).toBe(1);
  });

  it('answers the ticket endpoint’s quota, and wechat_rejected for a path WeChat does not report (76021)', async () => {
    const s = await startSim();
    const wechat = client(s.baseUrl);
    const { value } = await wechat.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    await wechat.fetchTicket(TEST_APPID, value, 'jsapi', deadline());
    expect(await wechat.getApiQuota(TEST_APPID, value, '/cgi-bin/ticket/getticket', deadline())).toEqual({
      dailyLimit: 100_000,
      used: 1,
      remain: 99_999,
    });
    const err = await failure(wechat.getApiQuota(TEST_APPID, value, '/cgi-bin/no-such-api', deadline()));
    expect(err).toMatchObject({ code: 'wechat_rejected', errcode: 76021 });
  });

  it('reports a killed token as errcode 40001 (the token is dead, not the AppSecret wrong), scrubbed from the message', async () => {
    const s = await startSim();
    const wechat = client(s.baseUrl);
    const { value } = await wechat.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    s.rotateExternally(TEST_APPID);
    s.rotateExternally(TEST_APPID);
    const err = await failure(wechat.getApiQuota(TEST_APPID, value, '/cgi-bin/token', deadline()));
    expect(err).toMatchObject({ code: 'wechat_rejected', errcode: 40001 });
    expect(leaks(err, value)).toBe(false);
  });

  it('retries a busy answer, telling the caller before each repeated attempt', async () => {
    const s = await startSim();
    const wechat = client(s.baseUrl);
    const { value } = await wechat.fetchAccessToken(CLASSIC_APP, 'classic', deadline());
    s.inject({ endpoint: 'quota', errcode: -1, times: 2 });
    let repeated = 0;
    const quota = await wechat.getApiQuota(TEST_APPID, value, '/cgi-bin/token', {
      ...deadline(),
      beforeRetry: () => repeated++,
    });
    expect(quota.used).toBe(1);
    expect(repeated).toBe(2);
    expect(s.calls.quota).toBe(3);
  });

  it('rejects an answer without whole-number quota figures as wechat_bad_response', async () => {
    const transport: HttpTransport = {
      send: async (): Promise<HttpOutcome> => ({
        kind: 'response',
        status: 200,
        text: JSON.stringify({
          errcode: 0,
          errmsg: 'ok',
          quota: { daily_limit: 2000, used: '3', remain: 1997 },
        }),
      }),
    };
    const err = await failure(
      client('http://wechat.invalid', { transport }).getApiQuota(
        TEST_APPID,
        'token',
        '/cgi-bin/token',
        deadline(),
      ),
    );
    expect(err.code).toBe('wechat_bad_response');
  });
});
