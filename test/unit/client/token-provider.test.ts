import { BaseProvider } from '@aws-lambda-powertools/parameters/base';
import { GetParameterError } from '@aws-lambda-powertools/parameters/errors';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TokenClientError } from '../../../lib/client/errors.ts';
import { TokenProvider } from '../../../lib/client/token-provider.ts';
import { APPID, errorBody, FakeTransport, START_MS, tokenBody } from './fakes.ts';

// Powertools' cache reads the Date: the test moves it (the transport answers at once, no timers run).
beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(START_MS);
});
afterEach(() => {
  vi.useRealTimers();
});

function setup() {
  let n = 0;
  const transport = new FakeTransport(() => tokenBody(Date, `tok-${++n}`, 10));
  return { transport, provider: new TokenProvider({ transport }) };
}

describe('TokenProvider (Powertools Parameters)', () => {
  it('is a Powertools BaseProvider', () => {
    const { provider } = setup();
    expect(provider).toBeInstanceOf(BaseProvider);
    expect(provider).toBeInstanceOf(TokenProvider);
  });

  it('get(appid) answers the access token, and Powertools keeps it for maxAge', async () => {
    const { transport, provider } = setup();
    expect(await provider.get(APPID, { maxAge: 5 })).toBe('tok-1');
    vi.setSystemTime(START_MS + 4_000);
    expect(await provider.get(APPID, { maxAge: 5 })).toBe('tok-1');
    expect(transport.requests).toHaveLength(1);
  });

  it('never keeps a token past its promise, however long maxAge is', async () => {
    const { transport, provider } = setup();
    // Promised 10 s: the client hands it out for 9 s (10 % skew), so Powertools may keep it 9 s.
    expect(await provider.get(APPID, { maxAge: 60 })).toBe('tok-1');
    vi.setSystemTime(START_MS + 8_500);
    expect(await provider.get(APPID, { maxAge: 60 })).toBe('tok-1');
    vi.setSystemTime(START_MS + 10_000);
    expect(await provider.get(APPID, { maxAge: 60 })).toBe('tok-2');
    expect(transport.requests).toHaveLength(2);
  });

  it('forceFetch asks the service again', async () => {
    const { transport, provider } = setup();
    await provider.get(APPID);
    expect(await provider.get(APPID, { forceFetch: true })).toBe('tok-2');
    expect(transport.requests).toHaveLength(2);
  });

  it("a failure is Powertools' GetParameterError with the client's typed error as its cause", async () => {
    const transport = new FakeTransport(() => errorBody('unknown_appid', false));
    const provider = new TokenProvider({ transport });
    const err = await provider.get(APPID).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GetParameterError);
    expect((err as Error).cause).toBeInstanceOf(TokenClientError);
    expect(((err as Error).cause as TokenClientError).code).toBe('unknown_appid');
  });

  it('getMultiple is not supported', async () => {
    const { provider } = setup();
    await expect(provider.getMultiple('/wechat')).rejects.toMatchObject({ code: 'invalid_argument' });
  });
});
