/**
 * The HTTP port of the WeChat client: one request in, one classified outcome out. The real adapter
 * (undici-transport.ts) is loaded on the first upstream call only, so that the cache-hit path never
 * pays for an HTTP library; tests pass fakes. This module holds types only.
 *
 * Failures are outcomes, not exceptions, because the client's retry rule depends on one question
 * only the adapter can answer: could WeChat have processed the request?
 */

/** One HTTP exchange with WeChat. */
export interface HttpRequest {
  method: 'GET' | 'POST';
  /** Carries the AppSecret (classic token) or an access token (ticket): never log or echo it. */
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Connect, headers and body together must finish within this many milliseconds. */
  timeoutMs: number;
  /** A body longer than this many bytes is not read to the end: outcome `too_large`. */
  maxBodyBytes: number;
}

/**
 * What became of a request. `code` is a diagnostic identifier (`ECONNRESET`, `UND_ERR_SOCKET`, …):
 * upper-case letters, digits and underscores only, never a message or a URL.
 */
export type HttpOutcome =
  /** WeChat answered; `text` is the whole body, decoded as UTF-8. */
  | { kind: 'response'; status: number; text: string }
  /**
   * The request cannot have reached WeChat (connection refused, name not resolved, no route, connect
   * timeout): sending it again cannot issue a second token.
   */
  | { kind: 'not_sent'; code: string }
  /** The exchange ran out of time; WeChat may have processed the request. */
  | { kind: 'timeout'; code: string }
  /** The connection failed after the request may have left (reset, closed mid-answer). */
  | { kind: 'interrupted'; code: string }
  /** WeChat answered with a body larger than `maxBodyBytes`. */
  | { kind: 'too_large'; status: number };

/** Performs one request. Resolves with an outcome for every network failure; rejects only on a bug. */
export interface HttpTransport {
  send(request: HttpRequest): Promise<HttpOutcome>;
}
