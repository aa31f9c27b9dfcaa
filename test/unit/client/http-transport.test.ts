import { describe, expect, it } from 'vitest';
import { httpTransport } from '../../../lib/client/http-transport.ts';
import type { ServiceRequest } from '../../../lib/client/protocol.ts';
import { APPID, clientFailure } from './fakes.ts';

const KEY = 'client-key-for-unit-tests-0a1b2c';

interface Sent {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
}

function fakeFetch(answer: (sent: Sent) => Response | Promise<Response>) {
  const sent: Sent[] = [];
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const request: Sent = {
      url: String(input),
      method: init?.method ?? 'GET',
      headers: { ...(init?.headers as Record<string, string>) },
      body: init?.body === undefined ? undefined : String(init.body),
    };
    sent.push(request);
    return answer(request);
  }) as typeof globalThis.fetch;
  return { fetch, sent };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

const call = () => ({ deadlineAtMs: Date.now() + 1000, signal: new AbortController().signal });

describe('httpTransport', () => {
  it.each<[ServiceRequest, string, string, string | undefined]>([
    [{ action: 'get_token', appid: APPID }, 'GET', `/prod/token?appid=${APPID}`, undefined],
    [
      { action: 'get_ticket', appid: APPID, type: 'wx_card' },
      'GET',
      `/prod/ticket?appid=${APPID}&type=wx_card`,
      undefined,
    ],
    [
      { action: 'refresh_token', appid: APPID, invalid_token: 'tok-dead' },
      'POST',
      '/prod/token/refresh',
      JSON.stringify({ appid: APPID, invalid_token: 'tok-dead' }),
    ],
    [
      { action: 'jssdk_config', appid: APPID, url: 'https://example.com/p?a=1' },
      'POST',
      '/prod/jssdk/config',
      JSON.stringify({ appid: APPID, url: 'https://example.com/p?a=1' }),
    ],
  ])('sends %o as %s %s with the bearer key', async (request, method, path, body) => {
    const { fetch, sent } = fakeFetch(() => json(200, { ok: true }));
    const transport = httpTransport({ baseUrl: 'https://tokens.example.com/prod/', key: KEY, fetch });
    expect(await transport.send(request, call())).toEqual({ ok: true });
    expect(sent[0]).toMatchObject({ method, url: `https://tokens.example.com${path}`, body });
    expect(sent[0]?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent[0]?.headers['content-type']).toBe(body === undefined ? undefined : 'application/json');
  });

  it("turns the service's error body into its error, with the HTTP status", async () => {
    const { fetch } = fakeFetch(() =>
      json(403, {
        error: { code: 'forbidden', message: 'client billing may not use appid', retryable: false },
      }),
    );
    const transport = httpTransport({ baseUrl: 'https://tokens.example.com', key: KEY, fetch });
    const err = await clientFailure(transport.send({ action: 'get_token', appid: APPID }, call()));
    expect(err).toMatchObject({ code: 'forbidden', status: 403, retryable: false });
  });

  it.each([
    [502, '<html>Bad Gateway</html>', 'service_unreachable', true],
    [503, '{"message":"Service Unavailable"}', 'service_unreachable', true],
    [504, '{"message":"Endpoint request timed out"}', 'service_unreachable', true],
    [429, '{"message":"Too Many Requests"}', 'service_unreachable', true],
    [403, '{"message":"Forbidden"}', 'service_refused', false],
    [404, '{"message":"Not Found"}', 'service_refused', false],
    [200, 'not json', 'service_bad_response', false],
  ])('HTTP %i with %s, no body of the service: %s', async (status, text, code, retryable) => {
    const { fetch } = fakeFetch(() => new Response(text, { status }));
    const transport = httpTransport({ baseUrl: 'https://tokens.example.com', key: KEY, fetch });
    const err = await clientFailure(transport.send({ action: 'get_token', appid: APPID }, call()));
    expect(err).toMatchObject({ code, retryable, status });
    expect(err.message).not.toContain(KEY);
  });

  it('a network failure is service_unreachable naming the error code, never the key', async () => {
    const { fetch } = fakeFetch(() => {
      throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    });
    const transport = httpTransport({ baseUrl: 'https://tokens.example.com', key: KEY, fetch });
    const err = await clientFailure(transport.send({ action: 'get_token', appid: APPID }, call()));
    expect(err).toMatchObject({ code: 'service_unreachable', retryable: true });
    expect(err.message).toContain('ECONNREFUSED');
    expect(err.message).not.toContain(KEY);
  });

  it('an aborted call is deadline_exceeded', async () => {
    const controller = new AbortController();
    const { fetch } = fakeFetch(() => {
      controller.abort();
      throw new DOMException('aborted', 'AbortError');
    });
    const transport = httpTransport({ baseUrl: 'https://tokens.example.com', key: KEY, fetch });
    const err = await clientFailure(
      transport.send({ action: 'get_token', appid: APPID }, { deadlineAtMs: 0, signal: controller.signal }),
    );
    expect(err.code).toBe('deadline_exceeded');
  });

  it.each([
    ['a relative base URL', { baseUrl: '/token', key: KEY }],
    ['a base URL with a query', { baseUrl: 'https://x.example.com/?a=1', key: KEY }],
    ['a base URL with credentials', { baseUrl: 'https://u:p@x.example.com', key: KEY }],
    ['an empty key', { baseUrl: 'https://x.example.com', key: '' }],
    ['a key with a space', { baseUrl: 'https://x.example.com', key: 'a b' }],
  ])('refuses %s: invalid_argument', (_what, options) => {
    expect(() => httpTransport(options)).toThrow(expect.objectContaining({ code: 'invalid_argument' }));
  });
});
