/**
 * The service over API Gateway (HTTP API or REST API), authenticated by a client key
 * (`Authorization: Bearer <key>`), with the platform's `fetch`. The key is sent in that header only
 * and never appears in an error message.
 */
import { TokenClientError } from './errors.ts';
import { type ServiceRequest, throwIfErrorBody } from './protocol.ts';
import type { TokenTransport, TransportCall } from './transport.ts';

/** Options of {@link httpTransport}. */
export interface HttpTransportOptions {
  /** Where the API is deployed, e.g. `https://tokens.example.com` or an execute-api URL with its stage. */
  baseUrl: string;
  /** The client key (its SHA-256 is in the service's credentials secret, scoped to your appids). */
  key: string;
  /** A `fetch` to use instead of the global one (tests, proxies). */
  fetch?: typeof globalThis.fetch;
}

/** Longest answer read: the service's bodies are a few hundred bytes. */
const MAX_BODY_CHARS = 64 * 1024;

/**
 * A transport to the service's HTTP routes: `GET /token`, `POST /token/refresh`, `GET /ticket`,
 * `POST /jssdk/config`. Throws `invalid_argument` for a base URL that is not absolute http(s) or a
 * key that is not 1–512 printable characters.
 */
export function httpTransport(options: HttpTransportOptions): TokenTransport {
  const base = parseBaseUrl(options.baseUrl);
  if (typeof options.key !== 'string' || !/^[\x21-\x7e]{1,512}$/.test(options.key)) {
    throw new TokenClientError(
      'invalid_argument',
      'httpTransport: key must be the client key, 1 to 512 printable ASCII characters without spaces',
    );
  }
  const authorization = `Bearer ${options.key}`;
  const fetchFn = options.fetch ?? globalThis.fetch;
  return {
    async send(request: ServiceRequest, call: TransportCall): Promise<unknown> {
      const route = routeOf(request);
      const url = `${base}${route.path}`;
      const headers: Record<string, string> = { authorization, accept: 'application/json' };
      if (route.body !== undefined) headers['content-type'] = 'application/json';
      let status: number;
      let text: string;
      try {
        const response = await fetchFn(url, {
          method: route.method,
          headers,
          ...(route.body !== undefined ? { body: route.body } : {}),
          signal: call.signal,
          redirect: 'error',
        });
        status = response.status;
        text = await response.text();
      } catch (err) {
        if (call.signal.aborted) {
          throw new TokenClientError(
            'deadline_exceeded',
            `the token service at ${originOf(base)} did not answer ${request.action} before the deadline`,
            { cause: err },
          );
        }
        throw new TokenClientError(
          'service_unreachable',
          `could not reach the token service at ${originOf(base)} (${networkCode(err)})`,
          { cause: err },
        );
      }
      let body: unknown;
      try {
        body = text.length <= MAX_BODY_CHARS ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
      }
      throwIfErrorBody(request, body, status);
      if (status >= 200 && status < 300) {
        if (body === undefined) {
          throw new TokenClientError(
            'service_bad_response',
            `the token service answered ${request.action} with HTTP ${status} and a body that is not JSON`,
            { status },
          );
        }
        return body;
      }
      // No body of the service's: API Gateway itself answered (throttling, a timeout, a crash, a route).
      const retryable = status === 429 || status >= 500;
      throw new TokenClientError(
        retryable ? 'service_unreachable' : 'service_refused',
        `the API in front of the token service answered ${request.action} with HTTP ${status}` +
          (retryable ? '' : ': check the base URL (with its stage) and that the route is deployed'),
        { status },
      );
    },
  };
}

function routeOf(request: ServiceRequest): { method: 'GET' | 'POST'; path: string; body?: string } {
  switch (request.action) {
    case 'get_token':
      return { method: 'GET', path: `/token?${new URLSearchParams({ appid: request.appid })}` };
    case 'get_ticket':
      return {
        method: 'GET',
        path: `/ticket?${new URLSearchParams({ appid: request.appid, type: request.type })}`,
      };
    case 'refresh_token':
      return {
        method: 'POST',
        path: '/token/refresh',
        body: JSON.stringify({ appid: request.appid, invalid_token: request.invalid_token }),
      };
    case 'jssdk_config':
      return {
        method: 'POST',
        path: '/jssdk/config',
        body: JSON.stringify({
          appid: request.appid,
          url: request.url,
          ...(request.agent_config ? { agent_config: true } : {}),
        }),
      };
  }
}

function parseBaseUrl(value: unknown): string {
  let url: URL | undefined;
  try {
    url = typeof value === 'string' ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash) {
    throw new TokenClientError(
      'invalid_argument',
      'httpTransport: baseUrl must be an absolute http(s) URL without query or fragment, e.g. https://tokens.example.com',
    );
  }
  if (url.username || url.password) {
    throw new TokenClientError('invalid_argument', 'httpTransport: baseUrl must not carry credentials');
  }
  return url.href.replace(/\/+$/, '');
}

function originOf(base: string): string {
  return new URL(base).origin;
}

/** A network error's code (ECONNREFUSED, UND_ERR_SOCKET…), never its message. */
function networkCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = cause?.code ?? (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? code : 'network error';
}
