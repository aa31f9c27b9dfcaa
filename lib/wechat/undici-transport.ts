/**
 * The real HTTP transport: undici's `request` over one keep-alive `Agent`. It is its own bundle
 * (dist/wechat-http.js, see scripts/build.mjs), loaded by the WeChat client on its first upstream
 * call, so the cache-hit path and cold start never load undici.
 *
 * `Agent` and `request` come from their own modules, not from undici's index: the index loads all of
 * undici (fetch, WebSocket, caches, mocks), which doubles the bundle (≈ 535 KB instead of ≈ 290 KB)
 * and the time the first upstream call of an instance spends loading it. undici is pinned to one
 * version; a moved module fails the build, and the transport tests exercise both.
 */
import type { Dispatcher } from 'undici';
import request from 'undici/lib/api/api-request.js';
import Agent from 'undici/lib/dispatcher/agent.js';
import type { HttpOutcome, HttpRequest, HttpTransport } from './transport.ts';

/** Tunables of the connection pool; the defaults suit Lambda talking to api.weixin.qq.com. */
export interface UndiciTransportOptions {
  /**
   * TCP and TLS handshake limit, in milliseconds (default 1000). Kept well under the attempt timeout:
   * a connect timeout proves the request was never sent, so even a classic call may be tried again.
   * undici checks it on a half-second tick, so it fires up to about a second late.
   */
  connectTimeoutMs?: number;
  /** How long an idle connection is kept for the next call, in milliseconds (default 4000). */
  keepAliveTimeoutMs?: number;
}

/** Errors after which WeChat cannot have seen the request: the connection was never established. */
const NOT_SENT: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const TIMEOUTS: ReadonlySet<string> = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** Header and body limits of the pool; each request narrows them to its own timeout. */
const POOL_IO_TIMEOUT_MS = 10_000;

/** {@link HttpTransport} over undici. Call `close` to release the pooled connections. */
export class UndiciTransport implements HttpTransport {
  readonly #agent: InstanceType<typeof Agent>;

  constructor(options: UndiciTransportOptions = {}) {
    this.#agent = new Agent({
      connect: { timeout: options.connectTimeoutMs ?? 1000 },
      headersTimeout: POOL_IO_TIMEOUT_MS,
      bodyTimeout: POOL_IO_TIMEOUT_MS,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 4000,
      keepAliveMaxTimeout: 60_000,
    });
  }

  async send(req: HttpRequest): Promise<HttpOutcome> {
    const timeoutMs = Math.max(1, Math.floor(req.timeoutMs));
    const signal = AbortSignal.timeout(timeoutMs);
    let response: Dispatcher.ResponseData;
    try {
      const url = new URL(req.url);
      response = await request.call(this.#agent, {
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: req.method,
        ...(req.headers ? { headers: req.headers } : {}),
        ...(req.body !== undefined ? { body: req.body } : {}),
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      return classify(err, signal);
    }
    const status = response.statusCode;
    const chunks: Buffer[] = [];
    let bytes = 0;
    try {
      for await (const chunk of response.body) {
        const buffer = chunk as Buffer;
        bytes += buffer.length;
        // Leaving the loop destroys the body (and its connection): the rest is never buffered.
        if (bytes > req.maxBodyBytes) return { kind: 'too_large', status };
        chunks.push(buffer);
      }
    } catch (err) {
      const outcome = classify(err, signal);
      // Headers arrived, so the request was sent: whatever failed now, WeChat may have acted on it.
      return outcome.kind === 'not_sent' ? { kind: 'interrupted', code: outcome.code } : outcome;
    }
    return { kind: 'response', status, text: Buffer.concat(chunks).toString('utf8') };
  }

  /** Closes idle connections and waits for running requests. */
  async close(): Promise<void> {
    await this.#agent.close();
  }
}

function classify(err: unknown, signal: AbortSignal): HttpOutcome {
  // The attempt's own deadline: the request may have been sent, or be in WeChat's hands.
  if (signal.aborted) return { kind: 'timeout', code: 'ATTEMPT_TIMEOUT' };
  const code = errorCode(err);
  if (NOT_SENT.has(code)) return { kind: 'not_sent', code };
  if (TIMEOUTS.has(code)) return { kind: 'timeout', code };
  return { kind: 'interrupted', code };
}

/**
 * The error's code only (`ECONNRESET`, `UND_ERR_SOCKET`, …), never its message: messages may name
 * the host or the path. A connection tried on several addresses fails with an AggregateError.
 */
function errorCode(err: unknown): string {
  const candidates: unknown[] = [err];
  if (err instanceof AggregateError) candidates.push(...err.errors);
  if (err instanceof Error) candidates.push(err.cause);
  for (const candidate of candidates) {
    const code = (candidate as { code?: unknown } | null | undefined)?.code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,39}$/.test(code)) return code;
  }
  return 'UNKNOWN';
}
