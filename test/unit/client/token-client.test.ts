import { describe, expect, it } from 'vitest';
import { TokenClientError } from '../../../lib/client/errors.ts';
import { TokenClient, type TokenClientOptions } from '../../../lib/client/token-client.ts';
import { deferred } from '../../fakes/service-fakes.ts';
import { APPID, clientFailure, errorBody, FakeClientClock, FakeTransport, hang, tokenBody } from './fakes.ts';

function setup(options: Partial<TokenClientOptions> = {}) {
  const clock = new FakeClientClock();
  const transport = new FakeTransport();
  const client = new TokenClient({ appid: APPID, transport, clock, ...options });
  return { clock, transport, client };
}

describe('TokenClient: the per-process cache', () => {
  it('keeps a token until expires_at less 2 s (10 % of a 600-s promise is more), then asks again', async () => {
    const { clock, transport, client } = setup();
    let n = 0;
    transport.handler = () => tokenBody(clock, `tok-${++n}`, 600);
    const expiresAtMs = (Math.floor(clock.now() / 1000) + 600) * 1000;
    expect(await client.getToken()).toBe('tok-1');
    clock.t = expiresAtMs - 2_001;
    expect(await client.getToken()).toBe('tok-1');
    expect(transport.count('get_token')).toBe(1);
    clock.t = expiresAtMs - 2_000;
    expect(await client.getToken()).toBe('tok-2');
    expect(transport.count('get_token')).toBe(2);
  });

  it('uses a skew of 10 % of expires_in when that is under 2 s', async () => {
    const { clock, transport, client } = setup();
    let n = 0;
    transport.handler = () => tokenBody(clock, `tok-${++n}`, 10);
    const expiresAtMs = (Math.floor(clock.now() / 1000) + 10) * 1000;
    await client.getToken();
    clock.t = expiresAtMs - 1_001;
    expect(await client.getToken()).toBe('tok-1');
    clock.t = expiresAtMs - 1_000;
    expect(await client.getToken()).toBe('tok-2');
  });

  it('never keeps a token longer than expires_in counted from the request, however late expires_at says', async () => {
    const { clock, transport, client } = setup();
    const sentAtMs = clock.now();
    // A service clock an hour ahead, and an answer that took 3 s.
    transport.handler = async () => {
      clock.t += 3_000;
      return {
        access_token: 'tok-late',
        expires_in: 20,
        expires_at: Math.floor(sentAtMs / 1000) + 3_600 + 20,
      };
    };
    await client.getToken();
    expect(client.validForMs('tok-late')).toBe(sentAtMs + 20_000 - 2_000 - clock.now());
  });

  it('hands a token promised for 0 s to that call only and never caches it', async () => {
    const { clock, transport, client } = setup();
    let n = 0;
    transport.handler = () => tokenBody(clock, `tok-${++n}`, 0);
    expect(await client.getToken()).toBe('tok-1');
    expect(await client.getToken()).toBe('tok-2');
    expect(client.validForMs('tok-2')).toBe(0);
  });

  it('never hands out a cached token at or after its expires_at, across a whole promise', async () => {
    const { clock, transport, client } = setup();
    const handedOut: { token: string; atMs: number }[] = [];
    const expiresAt = new Map<string, number>();
    let n = 0;
    transport.handler = () => {
      const body = tokenBody(clock, `tok-${++n}`, 7);
      expiresAt.set(body.access_token, body.expires_at * 1000);
      return body;
    };
    for (let step = 0; step < 400; step++) {
      handedOut.push({ token: await client.getToken(), atMs: clock.now() });
      clock.t += 97;
    }
    const late = handedOut.filter((h) => h.atMs >= (expiresAt.get(h.token) ?? 0));
    expect(late).toEqual([]);
    // About one call per 7-s promise (less the 0.7-s skew) over 38.8 s.
    expect(transport.count('get_token')).toBeGreaterThanOrEqual(6);
    expect(transport.count('get_token')).toBeLessThanOrEqual(7);
  });

  it('100 concurrent getToken() on an empty cache make one service call and all get its token', async () => {
    const { clock, transport, client } = setup();
    const answer = deferred<unknown>();
    transport.handler = () => answer.promise;
    const all = Promise.all(Array.from({ length: 100 }, () => client.getToken()));
    await clock.advance(0);
    answer.resolve(tokenBody(clock, 'tok-shared', 300));
    expect(new Set(await all)).toEqual(new Set(['tok-shared']));
    expect(transport.requests).toEqual([{ action: 'get_token', appid: APPID }]);
    expect(clock.pending).toBe(0);
  });

  it('forceFetch asks the service although the cached token is valid', async () => {
    const { clock, transport, client } = setup();
    let n = 0;
    transport.handler = () => tokenBody(clock, `tok-${++n}`, 300);
    await client.getToken();
    expect(await client.getToken({ forceFetch: true })).toBe('tok-2');
    expect(await client.getToken()).toBe('tok-2');
    expect(transport.count('get_token')).toBe(2);
  });
});

describe('TokenClient: errors and retries', () => {
  it("maps the service's error body to a TokenClientError with its code, retryable and errcode", async () => {
    const { transport, client } = setup();
    transport.handler = () => errorBody('wechat_ip_not_whitelisted', false, 40164);
    const err = await clientFailure(client.getToken());
    expect(err).toMatchObject({ code: 'wechat_ip_not_whitelisted', retryable: false, errcode: 40164 });
    expect(err.message).toContain('wechat_ip_not_whitelisted for the test');
    expect(transport.requests).toHaveLength(1);
  });

  it('does not retry an error the service says is not retryable', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => errorBody('unknown_appid', false);
    const err = await clientFailure(clock.settle(client.getToken()));
    expect(err.code).toBe('unknown_appid');
    expect(transport.requests).toHaveLength(1);
  });

  it('retries a retryable error with jittered exponential backoff and succeeds once the service recovers', async () => {
    const { clock, transport, client } = setup();
    const startedAt = clock.now();
    const sentAt: number[] = [];
    transport.handler = () => {
      sentAt.push(clock.now() - startedAt);
      return sentAt.length <= 3
        ? errorBody('wechat_unavailable', true, -1)
        : tokenBody(clock, 'tok-back', 300);
    };
    expect(await clock.settle(client.getToken())).toBe('tok-back');
    // Delays of ¾ of 100, 200, 400 ms (random() = 0.5).
    expect(sentAt).toEqual([0, 75, 225, 525]);
    expect(clock.pending).toBe(0);
  });

  it('gives up at the deadline with the last error, having never waited past it', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => errorBody('cache_unavailable', true);
    const startedAt = clock.now();
    const err = await clientFailure(clock.settle(client.getToken({ deadlineMs: 3_000 })));
    expect(err.code).toBe('cache_unavailable');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/gave up after \d+ attempts/);
    expect(clock.now() - startedAt).toBeLessThanOrEqual(3_000);
    // 0, 75, 225, 525, 1125, 2125 (then 1500 more would pass the deadline).
    expect(transport.requests).toHaveLength(6);
    expect(clock.pending).toBe(0);
  });

  it('aborts an attempt that is still running at the deadline: deadline_exceeded', async () => {
    const { clock, transport, client } = setup({ deadlineMs: 1_500 });
    transport.handler = (_request, call) => hang(call);
    const startedAt = clock.now();
    const err = await clientFailure(clock.settle(client.getToken()));
    expect(err.code).toBe('deadline_exceeded');
    expect(clock.now() - startedAt).toBe(1_500);
    expect(transport.calls[0]?.signal.aborted).toBe(true);
    expect(transport.calls[0]?.deadlineAtMs).toBe(startedAt + 1_500);
  });

  it('a caller with a shorter deadline stops waiting at its own, while the shared call goes on for the longer one', async () => {
    const { clock, transport, client } = setup();
    const answer = deferred<unknown>();
    transport.handler = () => answer.promise;
    const short = clientFailure(client.getToken({ deadlineMs: 500 }));
    const long = client.getToken({ deadlineMs: 5_000 });
    await clock.advance(500);
    expect((await short).code).toBe('deadline_exceeded');
    expect(transport.calls[0]?.signal.aborted).toBe(false);
    await clock.advance(1_000);
    answer.resolve(tokenBody(clock, 'tok-slow', 300));
    expect(await long).toBe('tok-slow');
    expect(transport.requests).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });

  it.each([
    ['no access_token', { expires_in: 300, expires_at: 1 }],
    ['an empty access_token', { access_token: '', expires_in: 300, expires_at: 1 }],
    ['a token with a space', { access_token: 'a b', expires_in: 300, expires_at: 1 }],
    ['a negative expires_in', { access_token: 'tok', expires_in: -1, expires_at: 1 }],
    ['a fractional expires_in', { access_token: 'tok', expires_in: 1.5, expires_at: 1 }],
    ['expires_in as a string', { access_token: 'tok', expires_in: '300', expires_at: 1 }],
    ['a promise of more than a day', { access_token: 'tok', expires_in: 86_401, expires_at: 1 }],
    ['no expires_at', { access_token: 'tok', expires_in: 300 }],
    ['an array', [1, 2]],
    ['null', null],
    ['an error body without retryable', { error: { code: 'wechat_unavailable', message: 'x' } }],
    [
      'an error body with a fractional errcode',
      { error: { code: 'x', message: 'x', retryable: true, errcode: 1.5 } },
    ],
  ])('answers service_bad_response, without retrying, for %s', async (_what, body) => {
    const { clock, transport, client } = setup();
    transport.handler = () => body;
    const err = await clientFailure(clock.settle(client.getToken()));
    expect(err.code).toBe('service_bad_response');
    expect(transport.requests).toHaveLength(1);
  });

  it('keeps the raw code and the retryability of an error code it does not know', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => errorBody('brand_new_code', false);
    const err = await clientFailure(clock.settle(client.getToken()));
    expect(err).toMatchObject({
      code: 'unknown_service_code',
      serviceCode: 'brand_new_code',
      retryable: false,
    });
  });

  it('a transport that throws something else fails the call once, as a bug', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => {
      throw new TypeError('boom');
    };
    const err = await clientFailure(clock.settle(client.getToken()));
    expect(err).toMatchObject({ code: 'service_unreachable', retryable: false });
    expect(transport.requests).toHaveLength(1);
  });

  it.each([
    ['an appid that is not a WeChat appid', { appid: 'wxABC' }],
    ['a deadline of 0', { deadlineMs: 0 }],
    ['a deadline that is not a number', { deadlineMs: Number.NaN }],
    ['no transport', { transport: undefined as never }],
  ])('refuses %s: invalid_argument', (_what, options) => {
    expect(() => setup(options)).toThrow(TokenClientError);
    try {
      setup(options);
    } catch (err) {
      expect((err as TokenClientError).code).toBe('invalid_argument');
    }
  });
});

describe('TokenClient: reporting a token WeChat rejected', () => {
  it('sends refresh_token with the token and caches the token the service answers', async () => {
    const { clock, transport, client } = setup();
    transport.handler = (request) =>
      tokenBody(clock, request.action === 'get_token' ? 'tok-old' : 'tok-new', 300);
    await client.getToken();
    expect(await client.reportInvalid('tok-old')).toBe('tok-new');
    expect(transport.requests[1]).toEqual({
      action: 'refresh_token',
      appid: APPID,
      invalid_token: 'tok-old',
    });
    expect(await client.getToken()).toBe('tok-new');
    expect(transport.requests).toHaveLength(2);
  });

  it('coalesces concurrent reports of one token into one call, and getToken() waits for it', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => tokenBody(clock, 'tok-old', 300);
    await client.getToken();
    const answer = deferred<unknown>();
    transport.handler = () => answer.promise;
    const reports = Promise.all(Array.from({ length: 50 }, () => client.reportInvalid('tok-old')));
    const gets = Promise.all(Array.from({ length: 50 }, () => client.getToken()));
    await clock.advance(0);
    answer.resolve(tokenBody(clock, 'tok-new', 300));
    expect(new Set([...(await reports), ...(await gets)])).toEqual(new Set(['tok-new']));
    expect(transport.requests.map((r) => r.action)).toEqual(['get_token', 'refresh_token']);
  });

  it('a report of a token this process already replaced costs no call', async () => {
    const { clock, transport, client } = setup();
    transport.handler = (request) =>
      tokenBody(clock, request.action === 'get_token' ? 'tok-old' : 'tok-new', 300);
    await client.getToken();
    await client.reportInvalid('tok-old');
    expect(await client.reportInvalid('tok-old')).toBe('tok-new');
    expect(transport.count('refresh_token')).toBe(1);
  });

  it('when the service answers the reported token itself, hands it out but never caches it again', async () => {
    const { clock, transport, client } = setup();
    transport.handler = () => tokenBody(clock, 'tok-same', 300);
    await client.getToken();
    expect(await client.reportInvalid('tok-same')).toBe('tok-same');
    await client.getToken();
    await client.getToken();
    expect(transport.requests.map((r) => r.action)).toEqual([
      'get_token',
      'refresh_token',
      'get_token',
      'get_token',
    ]);
  });

  it('refuses something that is not a token: invalid_argument, no call', async () => {
    const { transport, client } = setup();
    expect((await clientFailure(client.reportInvalid('has space'))).code).toBe('invalid_argument');
    expect(transport.requests).toHaveLength(0);
  });
});

describe('TokenClient.withToken', () => {
  function withService() {
    const context = setup();
    let generation = 1;
    context.transport.handler = (request) => {
      if (request.action === 'refresh_token') generation++;
      return tokenBody(context.clock, `tok-${generation}`, 300);
    };
    return context;
  }

  it.each([
    ['40001 in the result', (token: string) => (token === 'tok-1' ? { errcode: 40001 } : { ok: token })],
    ['42001 in the result', (token: string) => (token === 'tok-1' ? { errcode: 42001 } : { ok: token })],
    ['40014 in the result', (token: string) => (token === 'tok-1' ? { errcode: 40014 } : { ok: token })],
    [
      'a thrown SDK error with code 40001',
      (token: string) => {
        if (token === 'tok-1') throw Object.assign(new Error('invalid credential'), { code: 40001 });
        return { ok: token };
      },
    ],
  ])('on %s reports the token and calls once more with the new one', async (_what, business) => {
    const { transport, client } = withService();
    const seen: string[] = [];
    const result = await client.withToken((token) => {
      seen.push(token);
      return business(token);
    });
    expect(result).toEqual({ ok: 'tok-2' });
    expect(seen).toEqual(['tok-1', 'tok-2']);
    expect(transport.requests.map((r) => r.action)).toEqual(['get_token', 'refresh_token']);
  });

  it('retries once only: a second rejection is returned as it is, with no second report', async () => {
    const { transport, client } = withService();
    const result = await client.withToken(() => ({ errcode: 40001 }));
    expect(result).toEqual({ errcode: 40001 });
    expect(transport.count('refresh_token')).toBe(1);
  });

  it('leaves other errcodes and other errors alone', async () => {
    const { transport, client } = withService();
    expect(await client.withToken(() => ({ errcode: 45009 }))).toEqual({ errcode: 45009 });
    await expect(
      client.withToken(() => {
        throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
      }),
    ).rejects.toThrow('reset');
    expect(transport.count('refresh_token')).toBe(0);
  });

  it('reads the errcode where errcodeOf says', async () => {
    const { transport, client } = withService();
    const result = await client.withToken((token) => ({ body: { errcode: token === 'tok-1' ? 40001 : 0 } }), {
      errcodeOf: (r) => (r as { body?: { errcode?: number } }).body?.errcode,
    });
    expect(result).toEqual({ body: { errcode: 0 } });
    expect(transport.count('refresh_token')).toBe(1);
  });

  it('10 concurrent business calls that all fail on one token cause one report', async () => {
    const { transport, client } = withService();
    await client.getToken();
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        client.withToken(async (token) => (token === 'tok-1' ? { errcode: 40001 } : { ok: token })),
      ),
    );
    expect(results).toEqual(Array.from({ length: 10 }, () => ({ ok: 'tok-2' })));
    expect(transport.count('refresh_token')).toBe(1);
  });

  it('a warm call makes no service call at all', async () => {
    const { transport, client } = withService();
    await client.getToken();
    for (let i = 0; i < 100; i++) await client.withToken((token) => token);
    expect(transport.requests).toHaveLength(1);
  });
});

describe('TokenClient: tickets and wx.config', () => {
  it('caches each ticket type apart, like the token', async () => {
    const { clock, transport, client } = setup();
    transport.handler = (request) => ({
      ticket: `ticket-${request.action === 'get_ticket' ? request.type : '?'}`,
      expires_in: 300,
      expires_at: Math.floor(clock.now() / 1000) + 300,
    });
    expect(await client.getTicket('jsapi')).toBe('ticket-jsapi');
    expect(await client.getTicket('wx_card')).toBe('ticket-wx_card');
    expect(await client.getTicket('jsapi')).toBe('ticket-jsapi');
    expect(transport.requests).toEqual([
      { action: 'get_ticket', appid: APPID, type: 'jsapi' },
      { action: 'get_ticket', appid: APPID, type: 'wx_card' },
    ]);
  });

  it('refuses a ticket type WeChat does not have', async () => {
    const { client } = setup();
    expect((await clientFailure(client.getTicket('card' as never))).code).toBe('invalid_argument');
  });

  it('answers the signed wx.config and never caches it', async () => {
    const { transport, client } = setup();
    const body = { appId: APPID, timestamp: 1_736_913_600, nonceStr: 'n0nce_-', signature: 'a'.repeat(40) };
    transport.handler = () => body;
    expect(await client.jssdkConfig('https://example.com/page?x=1')).toEqual(body);
    await client.jssdkConfig('https://example.com/page?x=1');
    expect(transport.requests).toHaveLength(2);
    expect(transport.requests[0]).toEqual({
      action: 'jssdk_config',
      appid: APPID,
      url: 'https://example.com/page?x=1',
    });
  });

  it('refuses a wx.config signed for another appid: service_bad_response', async () => {
    const { transport, client } = setup();
    transport.handler = () => ({
      appId: 'wxfedcba9876543210',
      timestamp: 1,
      nonceStr: 'n',
      signature: 'a'.repeat(40),
    });
    expect((await clientFailure(client.jssdkConfig('https://example.com/'))).code).toBe(
      'service_bad_response',
    );
  });

  it.each([
    ['a relative URL', '/relative'],
    ['an ftp URL', 'ftp://example.com/'],
    ['a URL with a space', 'https://example.com/a b'],
    ['a URL over 2048 characters', `https://example.com/${'a'.repeat(2048)}`],
  ])('refuses %s without asking the service', async (_what, url) => {
    const { transport, client } = setup();
    expect((await clientFailure(client.jssdkConfig(url))).code).toBe('invalid_argument');
    expect(transport.requests).toHaveLength(0);
  });
});
